//! FTPS (RFC 4217) against both programs and both engines, with real
//! clients: curl (explicit and implicit), lftp, wget, Python's ftplib and ssl
//! (session reuse), openssl s_client (renegotiation), and raw sockets for
//! the bad input. The certificate is made at test time (rcgen). A missing
//! client fails the test, naming its Debian package.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::server::{DROP_UID, clean_env};
use common::tools::{Output, require, run};
use common::tree::{BIG_LEN, big_content, file_content};
use common::*;

server_tests!(
    curl_explicit_download_and_listing,
    curl_implicit,
    curl_required_refuses_clear,
    lftp_ssl_force_protect_data,
    wget_ftps_download,
    python_ftplib_tls13,
    python_ftplib_tls12,
    data_connection_must_resume,
    control_connection_resumes_with_ticket_key,
    control_resumption_without_ticket_key,
    bad_ticket_key_refused,
    garbage_instead_of_client_hello,
    handshake_abandoned_halfway,
    handshake_never_finished,
    clear_client_on_implicit_port,
    renegotiation_refused,
    alert_mid_transfer,
    clear_ftp_unchanged_beside_tls,
);

const LIMIT: Duration = Duration::from_secs(120);

/// A self-signed certificate for localhost and its key, world-readable
/// (ftpd through setpriv reads them as nobody), beside the served root.
fn certificate(t: &Tree) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (t.base.join("cert.pem"), t.base.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn tls_opts(t: &Tree, mode: &str) -> Opts {
    let (c, k) = certificate(t);
    Opts::new()
        .arg("--tls-cert")
        .arg(c.to_str().unwrap())
        .arg("--tls-key")
        .arg(k.to_str().unwrap())
        .arg("--tls")
        .arg(mode)
}

fn start(kind: Kind, mode: &str, more: Opts) -> (Tree, Server) {
    let t = Tree::new();
    let mut opts = tls_opts(&t, mode);
    opts.args.extend(more.args);
    let s = Server::start(kind, &t, opts);
    (t, s)
}

fn host(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

fn client_cmd(prog: &str, home: &Path) -> Command {
    let mut c = Command::new(prog);
    clean_env(&mut c);
    c.env("HOME", home).env("LC_ALL", "C.UTF-8");
    c
}

fn curl(home: &Path, args: &[&str]) -> Output {
    require("curl", "curl");
    let mut c = client_cmd("curl", home);
    c.args(["-sS", "-k", "--max-time", "60", "--connect-timeout", "10"]);
    c.args(args);
    run(c, LIMIT)
}

fn curl_explicit_download_and_listing(kind: Kind) {
    let (t, s) = start(kind, "optional", Opts::new());
    let home = t.scratch("home");
    for fam in FAMILIES {
        let a = s.addr(fam);
        let base = format!("ftp://{}:{}/", host(a), a.port());
        for (path, want) in [("big.bin", big_content()), ("pub/file", file_content())] {
            let out = t.base.join("out.bin");
            let url = format!("{base}{path}");
            let o = curl(
                &home,
                &["--ssl-reqd", "-g", "-o", out.to_str().unwrap(), &url],
            );
            o.assert_success(&format!("curl --ssl-reqd {url}"));
            assert!(std::fs::read(&out).unwrap() == want, "{url}: bytes differ");
        }
        let o = curl(&home, &["--ssl-reqd", "-g", &format!("{base}pub/")]);
        o.assert_success("curl --ssl-reqd LIST");
        assert!(o.stdout_text().contains(" file"), "{}", o.stdout_text());
    }
    s.wait_log_line("a TLS download", |l| {
        l.contains("kind=retr") && l.contains("path=/big.bin") && l.contains("result=ok")
    });
    s.assert_no_crash();
}

fn curl_implicit(kind: Kind) {
    let (t, s) = start(kind, "implicit", Opts::new());
    let home = t.scratch("home");
    for fam in FAMILIES {
        let a = s.addr(fam);
        let url = format!("ftps://{}:{}/pub/file", host(a), a.port());
        let o = curl(&home, &["-g", &url]);
        o.assert_success(&format!("curl {url}"));
        assert!(o.stdout == file_content(), "{url}");
        let url = format!("ftps://{}:{}/", host(a), a.port());
        let o = curl(&home, &["-g", &url]);
        o.assert_success(&format!("curl {url}"));
        assert!(o.stdout_text().contains("big.bin"), "{}", o.stdout_text());
    }
    s.assert_no_crash();
}

fn curl_required_refuses_clear(kind: Kind) {
    let (t, s) = start(kind, "required", Opts::new());
    let home = t.scratch("home");
    let a = s.addr(Family::V4);
    let url = format!("ftp://{}:{}/pub/file", host(a), a.port());
    let o = curl(&home, &[&url]);
    assert!(!o.status.success(), "a clear login was accepted");
    // A clear control connection: the login is refused.
    let mut c = Client::open(&s, Family::V4);
    c.expect("USER anonymous", 530);
    c.expect("PASS x", 530);
    let o = curl(&home, &["--ssl-reqd", &url]);
    o.assert_success("curl --ssl-reqd under --tls required");
    assert!(o.stdout == file_content());
    s.assert_no_crash();
}

fn lftp_ssl_force_protect_data(kind: Kind) {
    require("lftp", "lftp");
    let (t, s) = start(kind, "required", Opts::new());
    let home = t.scratch("home");
    let out = t.base.join("lftp.bin");
    for fam in FAMILIES {
        let a = s.addr(fam);
        let script = format!(
            "set ftp:ssl-force true; set ftp:ssl-protect-data true; \
             set ssl:verify-certificate no; set net:max-retries 1; set net:timeout 10; \
             open -u anonymous,x ftp://{}:{}; get big.bin -o {}; cls -1 pub",
            host(a),
            a.port(),
            out.display()
        );
        let _ = std::fs::remove_file(&out);
        let mut c = client_cmd("lftp", &home);
        c.arg("-c").arg(script);
        let o = run(c, LIMIT);
        o.assert_success("lftp ftp:ssl-force");
        assert!(
            std::fs::read(&out).unwrap() == big_content(),
            "lftp {fam:?}"
        );
        assert!(o.stdout_text().contains("file"), "{}", o.stdout_text());
    }
    s.assert_no_crash();
}

/// wget (GnuTLS) over explicit FTPS: it writes its ChangeCipherSpec and
/// Finished in two sends without TCP_NODELAY, so the data connection's
/// handshake relies on the server acknowledging at once (else each
/// transfer waited for a delayed ACK; measured, not asserted here).
fn wget_ftps_download(kind: Kind) {
    require("wget", "wget");
    let (t, s) = start(kind, "required", Opts::new());
    let home = t.scratch("home");
    let out = t.base.join("wget.bin");
    for fam in FAMILIES {
        let a = s.addr(fam);
        for (path, want) in [("big.bin", big_content()), ("pub/file", file_content())] {
            let url = format!("ftps://{}:{}/{path}", host(a), a.port());
            let _ = std::fs::remove_file(&out);
            let mut c = client_cmd("wget", &home);
            c.args([
                "-q",
                "--no-check-certificate",
                "--tries=1",
                "--timeout=20",
                "-O",
            ])
            .arg(&out)
            .arg(&url);
            run(c, LIMIT).assert_success(&format!("wget {url}"));
            assert!(std::fs::read(&out).unwrap() == want, "{url}: bytes differ");
        }
    }
    s.wait_log_line("a TLS download by wget", |l| {
        l.contains("kind=retr") && l.contains("path=/pub/file") && l.contains("result=ok")
    });
    s.assert_no_crash();
}

/// ftplib's FTP_TLS, made to resume the control connection's session on
/// its data connections (RFC 4217 §10): what vsftpd and FileZilla Server
/// demand too, and what stock ftplib does not do.
const FTPLIB: &str = r#"
import ftplib, ssl, sys
host, port, out, tls12 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == '1'
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if tls12:
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
class Reusing(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=self.sock.session)
            print('DATA', conn.version(), conn.session_reused)
        return conn, size
f = Reusing(context=ctx, timeout=20)
f.connect(host, port)
f.auth()
print('CONTROL', f.sock.version())
f.login('anonymous', 'x@example.invalid')
f.prot_p()
for name, facts in f.mlsd('pub'):
    print('MLSD', name, facts.get('type'))
with open(out, 'wb') as fh:
    f.retrbinary('RETR big.bin', fh.write)
# REST, and TYPE A (LF to CRLF, copied through TLS).
tail = bytearray()
f.retrbinary('RETR big.bin', tail.extend, rest=1000)
print('REST', len(tail), bytes(tail[:8]).hex())
lines = []
f.retrlines('RETR text.txt', lines.append)
print('ASCII', '|'.join(lines))
# Active mode (curl 7.88's active FTPS hangs: its bug 10666).
f.set_pasv(False)
got = bytearray()
f.retrbinary('RETR pub/file', got.extend)
print('ACTIVE', len(got))
f.set_pasv(True)
f.prot_c()
print('CLEAR', len(f.nlst('pub')))
f.quit()
print('DONE')
"#;

fn python_ftplib(kind: Kind, tls12: bool) {
    require("python3", "python3");
    let (t, s) = start(kind, "optional", Opts::new());
    let home = t.scratch("home");
    let out = t.base.join("ftplib.bin");
    let version = if tls12 { "TLSv1.2" } else { "TLSv1.3" };
    for fam in FAMILIES {
        let a = s.addr(fam);
        let mut c = client_cmd("python3", &home);
        c.arg("-c")
            .arg(FTPLIB)
            .arg(a.ip().to_string())
            .arg(a.port().to_string())
            .arg(&out)
            .arg(if tls12 { "1" } else { "0" });
        let o = run(c, LIMIT);
        o.assert_success("python3 ftplib FTP_TLS");
        let text = o.stdout_text();
        assert!(text.contains(&format!("CONTROL {version}")), "{text}");
        assert!(text.contains(&format!("DATA {version} True")), "{text}");
        assert!(
            !text.contains("False"),
            "a data connection did not resume: {text}"
        );
        assert!(text.contains("MLSD file file"), "{text}");
        let rest = format!(
            "REST {} {}",
            BIG_LEN - 1000,
            hex(&big_content()[1000..1008])
        );
        assert!(text.contains(&rest), "{text}");
        assert!(
            text.contains("ASCII line one|line two||the last line"),
            "{text}"
        );
        let active = format!("ACTIVE {}", file_content().len());
        assert!(text.contains(&active), "{text}");
        assert!(text.contains("DONE"), "{text}");
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), BIG_LEN);
        assert!(got == big_content(), "{fam:?}: bytes differ");
    }
    s.assert_no_crash();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn python_ftplib_tls13(kind: Kind) {
    python_ftplib(kind, false);
}

fn python_ftplib_tls12(kind: Kind) {
    python_ftplib(kind, true);
}

/// A data connection whose handshake does not resume the control
/// connection's session (a full handshake, or another control
/// connection's session) is refused with 522; one that resumes works.
const REUSE: &str = r#"
import ftplib, ssl, sys
host, port, tls12 = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1'
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if tls12:
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
def login():
    f = ftplib.FTP_TLS(context=ctx, timeout=20)
    f.connect(host, port)
    f.auth()
    f.login('anonymous', 'x@example.invalid')
    f.prot_p()
    f.voidcmd('TYPE I')
    return f
def fetch(f, session):
    conn = ftplib.FTP.ntransfercmd(f, 'RETR pub/file')[0]
    got = b''
    try:
        s = ctx.wrap_socket(conn, server_hostname=host, session=session)
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
        reused = s.session_reused
    except (ssl.SSLError, OSError) as e:
        reused = 'error'
    try:
        reply = f.getresp()
    except ftplib.Error as e:
        reply = str(e)
    return reply[:3], reused, len(got)
a, b = login(), login()
print('FULL', *fetch(a, None))
print('OTHER', *fetch(a, b.sock.session))
print('OWN', *fetch(a, a.sock.session))
a.quit()
b.quit()
"#;

fn data_connection_must_resume(kind: Kind) {
    require("python3", "python3");
    let (t, s) = start(kind, "optional", Opts::new());
    let home = t.scratch("home");
    for (fam, tls12) in [(Family::V4, false), (Family::V6, true)] {
        let a = s.addr(fam);
        let mut c = client_cmd("python3", &home);
        c.arg("-c")
            .arg(REUSE)
            .arg(a.ip().to_string())
            .arg(a.port().to_string())
            .arg(if tls12 { "1" } else { "0" });
        let o = run(c, LIMIT);
        o.assert_success("python3 session reuse");
        let text = o.stdout_text();
        let line = |what: &str| {
            text.lines()
                .find(|l| l.starts_with(what))
                .unwrap_or_else(|| panic!("no {what} in {text}"))
                .to_string()
        };
        assert!(line("FULL ").starts_with("FULL 522 "), "{text}");
        assert!(line("FULL ").ends_with(" 0"), "data flowed: {text}");
        assert!(line("OTHER ").starts_with("OTHER 522 "), "{text}");
        assert!(line("OTHER ").ends_with(" 0"), "data flowed: {text}");
        let own = format!("OWN 226 True {}", file_content().len());
        assert_eq!(line("OWN "), own, "{text}");
    }
    s.wait_log_line("a refused data connection", |l| {
        l.contains("kind=retr") && l.contains("result=tls-not-resumed")
    });
    s.assert_no_crash();
}

/// A second control connection resumes the first's TLS session; its data
/// connections resume its own session (or the one it resumed), never
/// another control connection's. Mode 13: TLS 1.3 tickets; 12: TLS 1.2
/// tickets; 12id: TLS 1.2 session ids (no tickets).
const CONTROL_RESUME: &str = r#"
import ftplib, ssl, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if mode != '13':
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
if mode == '12id':
    ctx.options |= ssl.OP_NO_TICKET
def login(session):
    f = ftplib.FTP_TLS(context=ctx, timeout=20)
    f.connect(host, port)
    f.voidcmd('AUTH TLS')
    f.sock = ctx.wrap_socket(f.sock, server_hostname=host, session=session)
    f.file = f.sock.makefile('r', encoding=f.encoding)
    f.login('anonymous', 'x@example.invalid')
    f.prot_p()
    f.voidcmd('TYPE I')
    return f
last = [None]
def fetch(f, session):
    conn = ftplib.FTP.ntransfercmd(f, 'RETR pub/file')[0]
    got = b''
    try:
        s = ctx.wrap_socket(conn, server_hostname=host, session=session)
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
        reused = s.session_reused
        last[0] = s.session
    except (ssl.SSLError, OSError) as e:
        reused = 'error'
    try:
        reply = f.getresp()
    except ftplib.Error as e:
        reply = str(e)
    return reply[:3], reused, len(got)
a = login(None)
print('FIRST', a.sock.session_reused)
first = a.sock.session
b = login(first)
print('SECOND', b.sock.session_reused)
c = login(None)
print('OWN', *fetch(b, b.sock.session))
print('RESUMED', *fetch(b, first))
print('OTHER', *fetch(b, c.sock.session))
print('BACK', *fetch(a, b.sock.session))
print('A', *fetch(a, a.sock.session))
from_data = last[0]
print('CHAIN', *fetch(a, from_data))
print('CHAINOTHER', *fetch(c, from_data))
for f in (a, b, c):
    f.quit()
"#;

/// A ticket key file: 48 random bytes, mode 600, owned by whoever reads it.
fn ticket_key(t: &Tree, kind: Kind, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = t.base.join(name);
    use std::io::Read;
    let mut key = [0u8; 48];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut key)
        .unwrap();
    std::fs::write(&path, key).unwrap();
    std::fs::set_permissions(&path, PermissionsExt::from_mode(0o600)).unwrap();
    if kind == Kind::FtpdSetpriv && is_root() {
        std::os::unix::fs::chown(&path, Some(DROP_UID), Some(DROP_UID)).unwrap();
    }
    path
}

fn control_resume_run(s: &Server, home: &Path, fam: Family, mode: &str) -> String {
    let a = s.addr(fam);
    let mut c = client_cmd("python3", home);
    c.arg("-c")
        .arg(CONTROL_RESUME)
        .arg(a.ip().to_string())
        .arg(a.port().to_string())
        .arg(mode);
    let o = run(c, LIMIT);
    o.assert_success("python3 control resumption");
    o.stdout_text()
}

fn line_of(text: &str, what: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(what))
        .unwrap_or_else(|| panic!("no {what} in {text}"))
        .to_string()
}

fn control_connection_resumes_with_ticket_key(kind: Kind) {
    require("python3", "python3");
    let t = Tree::new();
    let key = ticket_key(&t, kind, "ticket.key");
    let mut opts = tls_opts(&t, "optional");
    opts.args.extend([
        "--tls-ticket-key".to_owned(),
        key.to_str().unwrap().to_owned(),
    ]);
    let s = Server::start(kind, &t, opts);
    let home = t.scratch("home");
    let len = file_content().len();
    let mut runs = vec![(Family::V4, "13"), (Family::V6, "12")];
    if kind.is_supervisor() {
        // Session ids live in the process's memory: not across ftpds.
        runs.push((Family::V4, "12id"));
    }
    for (fam, mode) in runs {
        let text = control_resume_run(&s, &home, fam, mode);
        assert_eq!(line_of(&text, "FIRST "), "FIRST False", "{mode}: {text}");
        assert_eq!(line_of(&text, "SECOND "), "SECOND True", "{mode}: {text}");
        assert_eq!(
            line_of(&text, "OWN "),
            format!("OWN 226 True {len}"),
            "{mode}: {text}"
        );
        assert_eq!(
            line_of(&text, "RESUMED "),
            format!("RESUMED 226 True {len}"),
            "{mode}: {text}"
        );
        // Another control connection's session: refused, no data.
        let other = line_of(&text, "OTHER ");
        assert!(
            other.starts_with("OTHER 522 ") && other.ends_with(" 0"),
            "{mode}: {text}"
        );
        // b's session on a's data connection: b's own tickets are not
        // a's; by session id b holds a's very session, which is a's own.
        let back = line_of(&text, "BACK ");
        if mode == "12id" {
            assert_eq!(back, format!("BACK 226 True {len}"), "{mode}: {text}");
        } else {
            assert!(
                back.starts_with("BACK 522 ") && back.ends_with(" 0"),
                "{mode}: {text}"
            );
        }
        assert_eq!(
            line_of(&text, "A "),
            format!("A 226 True {len}"),
            "{mode}: {text}"
        );
        // The session a data connection left (its ticket, stamped as its
        // control connection's) resumes that control connection's next
        // data connection, and no other control connection's.
        assert_eq!(
            line_of(&text, "CHAIN "),
            format!("CHAIN 226 True {len}"),
            "{mode}: {text}"
        );
        let other = line_of(&text, "CHAINOTHER ");
        assert!(
            other.starts_with("CHAINOTHER 522 ") && other.ends_with(" 0"),
            "{mode}: {text}"
        );
    }
    s.wait_log_line("a refused data connection", |l| {
        l.contains("kind=retr") && l.contains("result=tls-not-resumed")
    });
    s.assert_no_crash();
}

/// Without --tls-ticket-key the supervisor's control connections resume
/// each other's sessions (its keys are in its memory); ftpd's do not
/// (each process has keys of its own), as before.
fn control_resumption_without_ticket_key(kind: Kind) {
    require("python3", "python3");
    let (t, s) = start(kind, "optional", Opts::new());
    let home = t.scratch("home");
    let text = control_resume_run(&s, &home, Family::V4, "13");
    let want = if kind.is_supervisor() {
        "True"
    } else {
        "False"
    };
    assert_eq!(
        line_of(&text, "SECOND "),
        format!("SECOND {want}"),
        "{text}"
    );
    let len = file_content().len();
    assert_eq!(
        line_of(&text, "OWN "),
        format!("OWN 226 True {len}"),
        "{text}"
    );
    let other = line_of(&text, "OTHER ");
    assert!(
        other.starts_with("OTHER 522 ") && other.ends_with(" 0"),
        "{text}"
    );
    s.assert_no_crash();
}

/// A ticket key file others may read, or too short, is refused: exit
/// 100, saying why, before any session.
fn bad_ticket_key_refused(kind: Kind) {
    use std::os::unix::fs::PermissionsExt;
    let t = Tree::new();
    let loose = ticket_key(&t, kind, "loose.key");
    std::fs::set_permissions(&loose, PermissionsExt::from_mode(0o644)).unwrap();
    let short = t.base.join("short.key");
    std::fs::write(&short, [1u8; 16]).unwrap();
    std::fs::set_permissions(&short, PermissionsExt::from_mode(0o600)).unwrap();
    if kind == Kind::FtpdSetpriv && is_root() {
        std::os::unix::fs::chown(&short, Some(DROP_UID), Some(DROP_UID)).unwrap();
    }
    for (key, why) in [(&loose, "open to others"), (&short, "at least 32")] {
        let mut opts = tls_opts(&t, "optional");
        opts.args.extend([
            "--tls-ticket-key".to_owned(),
            key.to_str().unwrap().to_owned(),
        ]);
        let (code, err) = run_to_exit(kind, &t, &opts);
        assert_eq!(code, Some(100), "{}: {err}", key.display());
        assert!(err.contains(why), "{}: {err}", key.display());
    }
}

/// Runs the program with `opts` (ftpd with its standard input a
/// connected socket) until it exits: its exit code and what it said.
fn run_to_exit(kind: Kind, t: &Tree, opts: &Opts) -> (Option<i32>, String) {
    use std::process::Stdio;
    let mut cmd = if kind.is_supervisor() {
        let mut c = Command::new(common::server::supervisor_path().unwrap());
        clean_env(&mut c);
        if is_root() {
            c.env("UID", DROP_UID.to_string())
                .env("GID", common::server::DROP_GID.to_string());
        }
        c.args(["--listen", "127.0.0.1:0"])
            .args(&opts.args)
            .arg(&t.root);
        c
    } else {
        common::server::ftpd_command(kind, opts, &t.root)
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let stdin: Stdio = if kind.is_supervisor() {
        Stdio::null()
    } else {
        std::os::fd::OwnedFd::from(conn.try_clone().unwrap()).into()
    };
    let stdout: Stdio = if kind.is_supervisor() {
        Stdio::null()
    } else {
        std::os::fd::OwnedFd::from(conn).into()
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running with a bad ticket key");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(client);
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

/// AUTH TLS on a raw connection.
fn raw_auth(s: &Server) -> Client {
    let mut c = Client::open(s, Family::V4);
    c.expect("AUTH TLS", 234);
    c
}

/// The server is still there and serves a clear session.
fn still_serving(s: &Server) {
    let mut c = Client::login(s, Family::V4);
    c.expect("NOOP", 200);
    c.expect("QUIT", 221);
}

fn garbage_instead_of_client_hello(kind: Kind) {
    let (_t, s) = start(kind, "optional", Opts::new());
    let mut c = raw_auth(&s);
    c.send_raw(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    c.expect_eof(Duration::from_secs(20));
    s.wait_log_line("the failed handshake", |l| {
        l.contains("TLS on the control connection failed")
    });
    s.wait_log_line("the session's end", |l| l.contains("reason=tls-error"));
    still_serving(&s);
    s.assert_no_crash();
}

/// The first bytes of a TLS record carrying a ClientHello, and no more.
const HALF_HELLO: &[u8] = b"\x16\x03\x01\x01\x00\x01\x00\x00\xfc\x03\x03";

fn handshake_abandoned_halfway(kind: Kind) {
    let (_t, s) = start(kind, "optional", Opts::new());
    let mut c = raw_auth(&s);
    c.send_raw(HALF_HELLO);
    std::thread::sleep(Duration::from_millis(200));
    c.reset();
    s.wait_log_line("the session's end", |l| {
        l.contains("end peer=") && l.contains("reason=eof")
    });
    still_serving(&s);
    s.assert_no_crash();
}

fn handshake_never_finished(kind: Kind) {
    let (_t, s) = start(kind, "optional", Opts::new().timeout(2));
    let mut c = raw_auth(&s);
    c.send_raw(HALF_HELLO);
    // The idle timeout bounds it; nothing can be said inside TLS.
    c.expect_eof(Duration::from_secs(20));
    s.wait_log_line("the session's end", |l| l.contains("reason=timeout"));
    still_serving(&s);
    s.assert_no_crash();
}

fn clear_client_on_implicit_port(kind: Kind) {
    let (t, s) = start(kind, "implicit", Opts::new().timeout(5));
    let mut c = Client::connect(s.addr(Family::V4));
    // No greeting in clear: the server waits for a ClientHello.
    c.send_raw(b"USER anonymous\r\n");
    let rest = c.expect_eof(Duration::from_secs(20));
    assert!(!rest.windows(3).any(|w| w == b"331"), "a reply in clear");
    s.wait_log_line("the failed handshake", |l| {
        l.contains("TLS on the control connection failed")
    });
    // And a TLS client is served.
    let home = t.scratch("home");
    let a = s.addr(Family::V4);
    let o = curl(
        &home,
        &[&format!("ftps://{}:{}/pub/file", host(a), a.port())],
    );
    o.assert_success("curl ftps:// after garbage");
    s.assert_no_crash();
}

fn renegotiation_refused(kind: Kind) {
    require("openssl", "openssl");
    let (t, s) = start(kind, "optional", Opts::new());
    let a = s.addr(Family::V4);
    // s_client renegotiates on a line "R" (TLS 1.2; TLS 1.3 has none).
    let script = format!(
        "(sleep 1; printf 'USER anonymous\\r\\n'; sleep 1; printf 'R\\n'; sleep 2) | \
         openssl s_client -starttls ftp -tls1_2 -connect 127.0.0.1:{}",
        a.port()
    );
    let mut c = client_cmd("sh", &t.scratch("home"));
    c.arg("-c").arg(script);
    let o = run(c, LIMIT);
    let text = o.stdout_text() + &o.stderr_text();
    assert!(text.contains("331 "), "{text}");
    assert!(text.contains("RENEGOTIATING"), "{text}");
    s.wait_log_line("the refused renegotiation", |l| {
        l.contains("TLS on the control connection failed")
    });
    still_serving(&s);
    s.assert_no_crash();
}

/// A record the server cannot decrypt arrives on the data connection in
/// the middle of a download: that transfer ends (426), the session and
/// the server go on.
const ALERT: &str = r#"
import ftplib, os, socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
f = ftplib.FTP_TLS(context=ctx, timeout=20)
f.connect(host, port)
f.auth()
f.login('anonymous', 'x@example.invalid')
f.prot_p()
f.voidcmd('TYPE I')
conn = ftplib.FTP.ntransfercmd(f, 'RETR huge.bin')[0]
s = ctx.wrap_socket(conn, server_hostname=host, session=f.sock.session)
s.recv(1000)
raw = socket.socket(fileno=os.dup(s.fileno()))
raw.settimeout(20)
# A fatal alert record in clear: under the session's keys it is garbage.
raw.sendall(b'\x15\x03\x03\x00\x02\x02\x28' * 4)
try:
    while raw.recv(1 << 16):
        pass
except OSError:
    pass
try:
    reply = f.getresp()
except ftplib.Error as e:
    reply = str(e)
print('REPLY', reply[:3])
print('NOOP', f.voidcmd('NOOP')[:3])
f.quit()
"#;

fn alert_mid_transfer(kind: Kind) {
    require("python3", "python3");
    let (t, s) = start(kind, "optional", Opts::new());
    // More than the sockets' buffers hold, so the transfer is still on
    // when the bad record comes.
    t.big_file("huge.bin", 48 << 20);
    let a = s.addr(Family::V4);
    let mut c = client_cmd("python3", &t.scratch("home"));
    c.arg("-c")
        .arg(ALERT)
        .arg(a.ip().to_string())
        .arg(a.port().to_string());
    let o = run(c, LIMIT);
    o.assert_success("python3 alert mid-transfer");
    let text = o.stdout_text();
    assert!(text.contains("REPLY 426"), "{text}");
    assert!(text.contains("NOOP 200"), "{text}");
    s.wait_log_line("the broken transfer", |l| {
        l.contains("kind=retr")
            && (l.contains("result=tls-error") || l.contains("result=connection-lost"))
    });
    s.assert_no_crash();
}

/// Beside TLS, a clear session is served as without it.
fn clear_ftp_unchanged_beside_tls(kind: Kind) {
    let (_t, s) = start(kind, "optional", Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        let feat = c.cmd("FEAT");
        assert!(feat.text().contains(" AUTH TLS"), "{}", feat.text());
        assert_eq!(c.cmd("PBSZ 0").code, 503);
        assert_eq!(c.cmd("PROT P").code, 503);
        let x = c.transfer(c.default_mode(), b"RETR pub/file");
        assert_eq!(x.codes(), (150, Some(226)));
        assert!(x.data == file_content());
        c.expect("QUIT", 221);
    }
    s.assert_no_crash();
}

/// The supervisor only: SIGHUP reloads the certificate and key through
/// its helper (the key readable by root only, the files swapped the way
/// certbot does: a symlink moved to new files), for new sessions; a
/// session in progress goes on, and its data connections still resume.
const RELOAD: &str = r#"
import ftplib, os, signal, ssl, sys, time
host, port, pid, live, new_cert, new_key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
class Reusing(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=self.sock.session)
        return conn, size
def login():
    f = Reusing(context=ctx, timeout=20)
    f.connect(host, port)
    f.auth()
    f.login('anonymous', 'x@example.invalid')
    f.prot_p()
    return f
old = login()
first = old.sock.getpeercert(True).hex()
print('FIRST', first)
for name, target in (('cert.pem', new_cert), ('key.pem', new_key)):
    tmp = os.path.join(live, name + '.new')
    os.symlink(target, tmp)
    os.replace(tmp, os.path.join(live, name))
os.kill(pid, signal.SIGHUP)
second = first
for _ in range(100):
    f = login()
    second = f.sock.getpeercert(True).hex()
    f.quit()
    if second != first:
        break
    time.sleep(0.1)
print('SECOND', second)
print('OLD', old.voidcmd('NOOP')[:3])
got = bytearray()
old.retrbinary('RETR pub/file', got.extend)
print('OLDDATA', len(got))
old.quit()
"#;

fn reload_on_sighup(kind: Kind) {
    require("python3", "python3");
    let t = Tree::new();
    let live = t.base.join("live");
    std::fs::create_dir(&live).unwrap();
    let mut pairs = Vec::new();
    for name in ["first", "second"] {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![format!("{name}.example")])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            t.base.join(format!("{name}.crt")),
            t.base.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        // Readable by its owner only: as root, only the helper can read it
        // once the supervisor has dropped its privileges.
        std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let hex: String = cert.der().iter().map(|b| format!("{b:02x}")).collect();
        pairs.push((c, k, hex));
    }
    std::os::unix::fs::symlink(&pairs[0].0, live.join("cert.pem")).unwrap();
    std::os::unix::fs::symlink(&pairs[0].1, live.join("key.pem")).unwrap();
    let opts = Opts::new()
        .arg("--tls-cert")
        .arg(live.join("cert.pem").to_str().unwrap())
        .arg("--tls-key")
        .arg(live.join("key.pem").to_str().unwrap());
    let s = Server::start(kind, &t, opts);
    let a = s.addr(Family::V4);
    let mut c = client_cmd("python3", &t.scratch("home"));
    c.arg("-c")
        .arg(RELOAD)
        .arg(a.ip().to_string())
        .arg(a.port().to_string())
        .arg(s.pids()[0].to_string())
        .arg(&live)
        .arg(&pairs[1].0)
        .arg(&pairs[1].1);
    let o = run(c, LIMIT);
    o.assert_success("python3 reload");
    let text = o.stdout_text();
    assert!(text.contains(&format!("FIRST {}", pairs[0].2)), "{text}");
    assert!(text.contains(&format!("SECOND {}", pairs[1].2)), "{text}");
    assert!(text.contains("OLD 200"), "{text}");
    assert!(
        text.contains(&format!("OLDDATA {}", file_content().len())),
        "{text}"
    );
    s.wait_log_line("the reload", |l| {
        l.contains("SIGHUP: reloaded the TLS certificate")
    });
    s.assert_no_crash();
}

/// The supervisor probes for kTLS at start; without the kernel's `tls`
/// module (these machines) it says so in one line and serves TLS in user
/// space.
fn ktls_fallback(kind: Kind) {
    let (t, s) = start(kind, "optional", Opts::new());
    let line = s.wait_log_line("the kTLS probe", |l| l.contains("kTLS: "));
    let loaded = std::fs::read_to_string("/proc/modules")
        .is_ok_and(|m| m.lines().any(|l| l.starts_with("tls ")));
    if !loaded {
        assert!(line.contains("kTLS: unavailable"), "{line}");
    }
    assert!(line.contains("TLS is done in user space"), "{line}");
    let home = t.scratch("home");
    let a = s.addr(Family::V4);
    let url = format!("ftp://{}:{}/big.bin", host(a), a.port());
    let o = curl(&home, &["--ssl-reqd", &url]);
    o.assert_success("curl --ssl-reqd after the probe");
    assert!(o.stdout == big_content());
    s.assert_no_crash();
}

/// Implicit TLS behind a PROXY header: HAProxy may send the header and
/// the client's ClientHello in one segment; the hello goes to TLS, and
/// the session's peer is the header's client.
const PROXY_HELLO: &str = r#"
import socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
try: obj.do_handshake()
except ssl.SSLWantReadError: pass
hello = out.read()
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 990\r\n" + hello)
while True:
    try:
        obj.do_handshake(); break
    except ssl.SSLWantReadError:
        o = out.read()
        if o: s.sendall(o)
        d = s.recv(65536)
        if not d: raise SystemExit("EOF in handshake")
        inc.write(d)
o = out.read()
if o: s.sendall(o)
buf = b""
while b"\r\n" not in buf:
    try:
        buf += obj.read(1024)
    except ssl.SSLWantReadError:
        d = s.recv(65536)
        if not d: break
        inc.write(d)
print("GREETING", buf.decode().strip())
"#;

fn implicit_tls_behind_proxy(kind: Kind) {
    require("python3", "python3");
    let more = Opts::new()
        .arg("--proxy-protocol")
        .arg("--proxy-from")
        .arg("127.0.0.1");
    let (t, s) = start(kind, "implicit", more);
    let a = s.addr(Family::V4);
    let mut c = client_cmd("python3", &t.scratch("home"));
    c.arg("-c").arg(PROXY_HELLO).arg(a.port().to_string());
    let o = run(c, LIMIT);
    o.assert_success("python3 PROXY header and ClientHello in one write");
    assert!(
        o.stdout_text().contains("GREETING 220 "),
        "{}",
        o.stdout_text()
    );
    s.wait_log_line("the proxied session", |l| {
        l.contains("start peer=192.0.2.7:40000")
    });
    s.assert_no_crash();
}

/// Holds one implicit TLS session: prints the greeting, then waits for
/// its standard input to close.
const HOLD: &str = r#"
import socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, port), timeout=20), server_hostname=host)
print(s.recv(1024).decode().strip(), flush=True)
sys.stdin.read()
"#;

/// Over the session limit under --tls implicit, a client is closed
/// without a word (no 421 in clear where it expects a ServerHello): curl
/// fails at once with a connection error, not a TLS one about garbage,
/// and the server goes on serving.
fn implicit_refusal_is_silent(kind: Kind) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    require("python3", "python3");
    let (t, s) = start(kind, "implicit", Opts::new().arg("--max-sessions").arg("1"));
    let home = t.scratch("home");
    let a = s.addr(Family::V4);
    let mut hold = client_cmd("python3", &home);
    hold.arg("-c")
        .arg(HOLD)
        .arg(a.ip().to_string())
        .arg(a.port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut holder = hold.spawn().unwrap();
    let mut greeting = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut greeting)
        .unwrap();
    assert!(greeting.starts_with("220"), "{greeting}");
    let url = format!("ftps://{}:{}/pub/file", host(a), a.port());
    let o = curl(&home, &[&url]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    // 35: the TLS connect failed; 56: receiving failed (reset). Not 28,
    // a timeout, and no complaint about what the server sent.
    let code = o.status.code();
    assert!(matches!(code, Some(35 | 56 | 7)), "{code:?}: {err}");
    assert!(!err.contains("wrong version"), "{err}");
    assert!(!err.contains("packet length"), "{err}");
    s.wait_log_line("the refusal", |l| l.contains("reason=max-sessions"));
    // The held session ends; the next client is served.
    drop(holder.stdin.take());
    let _ = holder.wait();
    let mut served = false;
    for _ in 0..50 {
        let o = curl(&home, &[&url]);
        if o.status.success() {
            assert!(o.stdout == file_content());
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served, "not served after the held session ended");
    s.assert_no_crash();
}

mod supervisor_only {
    use super::*;

    #[test]
    fn reload_on_sighup_epoll() {
        reload_on_sighup(Kind::Supervisor);
    }

    #[test]
    fn reload_on_sighup_uring() {
        reload_on_sighup(Kind::SupervisorUring);
    }

    #[test]
    fn implicit_tls_behind_proxy_epoll() {
        implicit_tls_behind_proxy(Kind::Supervisor);
    }

    #[test]
    fn implicit_tls_behind_proxy_uring() {
        implicit_tls_behind_proxy(Kind::SupervisorUring);
    }

    #[test]
    fn implicit_refusal_is_silent_epoll() {
        implicit_refusal_is_silent(Kind::Supervisor);
    }

    #[test]
    fn implicit_refusal_is_silent_uring() {
        implicit_refusal_is_silent(Kind::SupervisorUring);
    }

    #[test]
    fn ktls_fallback_epoll() {
        ktls_fallback(Kind::Supervisor);
    }

    #[test]
    fn ktls_fallback_uring() {
        ktls_fallback(Kind::SupervisorUring);
    }
}
