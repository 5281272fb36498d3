//! Real clients against the server: curl, lftp, wget, Python's ftplib,
//! aria2, and ftpd under tcpserver. A missing client is a failure that names
//! the Debian package, never a skip.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::client::crlf_lines;

/// Lines of a client's output: curl converts a listing's CRLF to LF (it
/// transfers listings in ASCII mode), so accept both.
fn text_lines(out: &[u8]) -> Vec<Vec<u8>> {
    out.split_inclusive(|&b| b == b'\n')
        .map(|l| {
            let l = l.strip_suffix(b"\n").unwrap_or(l);
            l.strip_suffix(b"\r").unwrap_or(l).to_vec()
        })
        .collect()
}
use common::parse::{must_ls, show};
use common::server::{DROP_GID, DROP_UID, clean_env, ftpd_path};
use common::tools::{Output, require, run};
use common::tree::{self, BIG_LEN, big_content, file_content};
use common::*;

server_tests!(
    curl_downloads_every_mode,
    curl_listings,
    curl_resume,
    curl_missing_and_hidden,
    lftp_mirror,
    wget_recursive,
    python_ftplib_v4,
    python_ftplib_v6,
    aria2_small_files,
);

const LIMIT: Duration = Duration::from_secs(120);

fn url(s: &Server, fam: Family, path: &str) -> String {
    match s.addr(fam) {
        SocketAddr::V4(a) => format!("ftp://{}:{}/{path}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("ftp://[{}]:{}/{path}", a.ip(), a.port()),
    }
}

/// A client command with a clean environment and HOME in scratch (no
/// user configuration files, no proxies).
fn client_cmd(prog: &str, home: &Path) -> Command {
    let mut c = Command::new(prog);
    clean_env(&mut c);
    c.env("HOME", home).env("LC_ALL", "C.UTF-8");
    c
}

fn curl(home: &Path, args: &[&str]) -> Output {
    require("curl", "curl");
    let mut c = client_cmd("curl", home);
    c.args(["-sS", "--max-time", "60", "--connect-timeout", "10"]);
    c.args(args);
    run(c, LIMIT)
}

fn curl_downloads_every_mode(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let home = t.scratch("home");
    let out = t.base.join("out.bin");
    let out_s = out.to_str().unwrap();
    let u4 = url(&s, Family::V4, "pub/file");
    let u6 = url(&s, Family::V6, "pub/file");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("default (EPSV)", vec![u4.as_str()]),
        ("--ftp-pasv", vec!["--ftp-pasv", u4.as_str()]),
        ("PASV", vec!["--ftp-pasv", "--disable-epsv", u4.as_str()]),
        ("EPRT", vec!["--ftp-port", "127.0.0.1", u4.as_str()]),
        ("-P - (EPRT)", vec!["-P", "-", u4.as_str()]),
        (
            "PORT",
            vec!["--ftp-port", "127.0.0.1", "--disable-eprt", u4.as_str()],
        ),
        ("EPSV over ::1", vec!["-g", u6.as_str()]),
        ("EPRT over ::1", vec!["-g", "-P", "-", u6.as_str()]),
    ];
    for (what, args) in cases {
        let _ = std::fs::remove_file(&out);
        let mut a = vec!["-o", out_s];
        a.extend(args);
        curl(&home, &a).assert_success(&format!("curl {what}"));
        let got = std::fs::read(&out).unwrap();
        assert!(
            got == file_content(),
            "curl {what}: {} bytes differ",
            got.len()
        );
    }
    for (path, want) in [
        ("caf%C3%A9.txt", "café content\n".as_bytes()),
        ("with%20space.txt", b"spaces in the name\n"),
        ("link-to-file", file_content()),
        ("empty", b""),
        ("big.bin", big_content()),
        ("pub/a/b/c/deep.txt", b"deep down\n"),
    ] {
        let _ = std::fs::remove_file(&out);
        curl(&home, &["-o", out_s, &url(&s, Family::V4, path)])
            .assert_success(&format!("curl {path}"));
        assert!(std::fs::read(&out).unwrap() == want, "curl {path}");
    }
}

fn curl_listings(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let home = t.scratch("home");
    for fam in FAMILIES {
        let o = curl(&home, &["-g", &url(&s, fam, "pub/")]);
        o.assert_success("curl LIST");
        let names: BTreeSet<Vec<u8>> = text_lines(&o.stdout)
            .iter()
            .map(|l| must_ls(l).name)
            .collect();
        assert_eq!(
            names,
            tree::public_names(b"pub"),
            "curl LIST pub/ over {fam:?}"
        );
        let o = curl(&home, &["-g", &url(&s, fam, "")]);
        o.assert_success("curl LIST /");
        let names: BTreeSet<Vec<u8>> = text_lines(&o.stdout)
            .iter()
            .map(|l| must_ls(l).name)
            .collect();
        assert_eq!(names, tree::public_names(b""), "curl LIST / over {fam:?}");
        let o = curl(&home, &["-g", "--list-only", &url(&s, fam, "")]);
        o.assert_success("curl NLST");
        let names: BTreeSet<Vec<u8>> = text_lines(&o.stdout).into_iter().collect();
        assert_eq!(names, tree::public_names(b""), "curl NLST over {fam:?}");
    }
}

fn curl_resume(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let home = t.scratch("home");
    let out = t.base.join("partial.bin");
    let out_s = out.to_str().unwrap();
    for (fam, extra) in [
        (Family::V4, vec![]),
        (Family::V4, vec!["--ftp-port", "127.0.0.1"]),
        (Family::V6, vec!["-g"]),
    ] {
        std::fs::write(&out, &big_content()[..1024 * 1024 + 7]).unwrap();
        let u = url(&s, fam, "big.bin");
        let mut a = vec!["-C", "-", "-o", out_s];
        a.extend(extra);
        a.push(&u);
        curl(&home, &a).assert_success("curl -C -");
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), BIG_LEN, "resumed size over {fam:?}");
        assert!(got == big_content(), "resumed content over {fam:?}");
    }
    // The log shows the partial transfer's size.
    let rest = (BIG_LEN - (1024 * 1024 + 7)).to_string();
    s.wait_log_line("resumed transfer", |l| {
        l.starts_with("transfer ") && l.contains("path=/big.bin") && l.contains(&rest)
    });
}

fn curl_missing_and_hidden(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let home = t.scratch("home");
    let out = t.base.join("nothing.bin");
    for p in [
        "missing",
        ".secret",
        "private.txt",
        "escape",
        "abs-out",
        "up/passwd",
        "fifo",
    ] {
        let o = curl(
            &home,
            &["-o", out.to_str().unwrap(), &url(&s, Family::V4, p)],
        );
        // 78: CURLE_REMOTE_FILE_NOT_FOUND (RETR or SIZE said 550); 9:
        // CURLE_REMOTE_ACCESS_DENIED (curl's CWD into the directory part
        // said 550).
        let want = if p.contains('/') { 9 } else { 78 };
        assert_eq!(o.status.code(), Some(want), "curl {p}: {}", o.stderr_text());
        let got = std::fs::read(&out).unwrap_or_default();
        assert!(got.is_empty(), "curl {p} got {} bytes", got.len());
    }
}

type Files = BTreeMap<Vec<u8>, Vec<u8>>;

/// Files (relative path -> content) and directories under `dir`.
fn walk(dir: &Path) -> (Files, BTreeSet<Vec<u8>>) {
    fn go(base: &Path, d: &Path, files: &mut Files, dirs: &mut BTreeSet<Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(base)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                dirs.insert(rel);
                go(base, &p, files, dirs);
            } else if md.is_file() {
                files.insert(rel, std::fs::read(&p).unwrap());
            } else {
                panic!("mirror holds a non-file {}", p.display());
            }
        }
    }
    let mut files = BTreeMap::new();
    let mut dirs = BTreeSet::new();
    go(dir, dir, &mut files, &mut dirs);
    (files, dirs)
}

/// Compares a mirror with the public part of the tree, byte for byte.
/// `may_lack` names files the client is known not to fetch.
fn assert_mirror(who: &str, dir: &Path, may_lack: &[&[u8]]) {
    let (files, dirs) = walk(dir);
    let mut want = tree::public_files();
    for name in may_lack {
        if !files.contains_key(*name) {
            eprintln!(
                "note: {who} did not fetch {:?} (a known client limitation)",
                show(name)
            );
            want.remove(*name);
        }
    }
    let got_names: BTreeSet<String> = files.keys().map(|k| show(k)).collect();
    let want_names: BTreeSet<String> = want.keys().map(|k| show(k)).collect();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{who}: mirrored files differ\n got: {got_names:?}\nwant: {want_names:?}"
    );
    for (k, v) in &want {
        assert!(files[k] == *v, "{who}: {} differs", show(k));
    }
    assert_eq!(
        dirs,
        tree::public_dirs(),
        "{who}: mirrored directories differ"
    );
}

fn lftp_mirror(kind: Kind) {
    require("lftp", "lftp");
    let (t, s) = setup(kind, Opts::new());
    let home = t.scratch("home");
    let dest = t.base.join("lftp-mirror");
    let a = s.addr(Family::V4);
    let script = format!(
        "set ftp:passive-mode on; set net:max-retries 1; set net:timeout 10; \
         open -u anonymous,x ftp://{}:{}; mirror / {}",
        a.ip(),
        a.port(),
        dest.display()
    );
    let mut c = client_cmd("lftp", &home);
    c.arg("-c").arg(script);
    let o = run(c, LIMIT);
    o.assert_success("lftp mirror");
    assert_mirror("lftp mirror", &dest, &[]);
}

fn wget_recursive(kind: Kind) {
    require("wget", "wget");
    let (t, s) = setup(kind, Opts::new());
    let home = t.scratch("home");
    let dest = t.scratch("wget-mirror");
    let mut c = client_cmd("wget", &home);
    c.args([
        "-r",
        "-l",
        "inf",
        "-nH",
        "--no-verbose",
        "--tries=1",
        "--timeout=10",
        "--restrict-file-names=nocontrol",
        "--no-iri",
        "-P",
    ])
    .arg(&dest)
    .arg(url(&s, Family::V4, ""));
    let o = run(c, LIMIT);
    o.assert_success("wget -r");
    // wget sends a 0xff byte in RETR as it is instead of doubling it
    // (Telnet IAC IAC, RFC 854), so the server sees IAC 'a' and a
    // different name.
    assert_mirror("wget -r", &dest, &[tree::NAME_FF]);
}

const FTPLIB_SCRIPT: &str = r#"
import ftplib, sys
host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
f = ftplib.FTP(timeout=10, encoding='latin-1')
f.connect(host, port)
f.login('anonymous', 'test@example.invalid')
for name, facts in f.mlsd('/'):
    print('MLSD', name.encode('latin-1').hex(),
          ';'.join('%s=%s' % (k, v) for k, v in sorted(facts.items())))
for name in f.nlst():
    print('NLST', name.encode('latin-1').hex())
with open(out, 'wb') as fh:
    f.retrbinary('RETR pub/file', fh.write)
print('SIZE', f.size('pub/file'))
print('PWD', f.pwd())
f.quit()
print('DONE')
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn python_ftplib(kind: Kind, fam: Family) {
    require("python3", "python3");
    let (t, s) = setup(kind, Opts::new());
    let home = t.scratch("home");
    let out = t.base.join("ftplib.bin");
    let a = s.addr(fam);
    let mut c = client_cmd("python3", &home);
    c.arg("-c")
        .arg(FTPLIB_SCRIPT)
        .arg(a.ip().to_string())
        .arg(a.port().to_string())
        .arg(&out);
    let o = run(c, LIMIT);
    o.assert_success("python3 ftplib");
    let text = o.stdout_text();
    let mut mlsd = BTreeMap::new();
    let mut nlst = BTreeSet::new();
    let mut size = None;
    let mut done = false;
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        match parts.next() {
            Some("MLSD") => {
                let name = unhex(parts.next().unwrap());
                let facts = parts.next().unwrap_or("").to_string();
                mlsd.insert(name, facts);
            }
            Some("NLST") => {
                nlst.insert(unhex(parts.next().unwrap()));
            }
            Some("SIZE") => size = Some(parts.next().unwrap().to_string()),
            Some("DONE") => done = true,
            _ => {}
        }
    }
    assert!(done, "ftplib script did not finish: {text}");
    let want = tree::public_names(b"");
    assert_eq!(
        mlsd.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "ftplib mlsd()"
    );
    assert_eq!(nlst, want, "ftplib nlst()");
    let link = &mlsd[&b"link-to-file"[..]];
    assert!(link.contains("type=file"), "{link}");
    assert!(link.contains(&format!("size={}", tree::FILE_LEN)), "{link}");
    assert!(
        std::fs::read(&out).unwrap() == file_content(),
        "ftplib retrbinary"
    );
    assert_eq!(size, Some(tree::FILE_LEN.to_string()));
}

fn python_ftplib_v4(kind: Kind) {
    python_ftplib(kind, Family::V4);
}

fn python_ftplib_v6(kind: Kind) {
    python_ftplib(kind, Family::V6);
}

/// aria2 reads the control connection in bulk and then waits for the
/// socket to become readable: a 226 that came in the same read as the 150
/// sits unseen in its buffer until its own `--timeout`, after which it
/// logs "Timeout before receiving transfer complete" (and still reports
/// success). Small files are where that happens; the server waits for the
/// client to close the data connection before its 226, so it cannot.
fn aria2_small_files(kind: Kind) {
    require("aria2c", "aria2");
    let (t, s) = setup(kind, Opts::new());
    let home = t.scratch("home");
    let dir = t.scratch("aria2");
    let files = [
        ("pub/one", 1),
        ("pub/four-kib", 4096),
        ("pub/100-kib", 100 << 10),
    ];
    for (rel, len) in files {
        t.big_file(rel, len);
    }
    let paths = ["empty", "pub/one", "pub/four-kib", "pub/100-kib"];
    for pasv in ["true", "false"] {
        for path in paths {
            let log = dir.join("aria2.log");
            let got = dir.join("got");
            let _ = std::fs::remove_file(&log);
            let _ = std::fs::remove_file(&got);
            let mut c = client_cmd("aria2c", &home);
            c.args([
                "--no-conf",
                "--quiet",
                "--timeout=2",
                "--connect-timeout=5",
                "--max-tries=1",
                "--log-level=info",
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
            ])
            .arg(format!("--ftp-pasv={pasv}"))
            .arg(format!("--log={}", log.display()))
            .arg(format!("--dir={}", dir.display()))
            .arg("--out=got")
            .arg(url(&s, Family::V4, path));
            let what = format!("aria2c {path} (passive: {pasv})");
            run(c, LIMIT).assert_success(&what);
            let want = std::fs::read(t.root.join(path)).unwrap();
            assert!(std::fs::read(&got).unwrap() == want, "{what}: content");
            let log = std::fs::read_to_string(&log).unwrap();
            for bad in [
                "Timeout before receiving transfer complete",
                "Bad status for transfer complete",
            ] {
                assert!(!log.contains(bad), "{what}: aria2 logged {bad:?}:\n{log}");
            }
        }
    }
}

// ---------------------------------------------------------------------
// ftpd under tcpserver (ucspi-tcp-ipv6), as deployed.

struct TcpServer {
    child: Child,
    addr: SocketAddr,
    _stderr: mpsc::Receiver<String>,
}

impl TcpServer {
    /// `tcpserver -v -RHl0 [-B banner] 127.0.0.1 PORT ftpd [ftpd args] ROOT`
    /// on a free port; waits (bounded) for tcpserver's "status" line.
    fn start(root: &Path, banner: Option<&str>, ftpd_args: &[&str]) -> TcpServer {
        require("tcpserver", "ucspi-tcp-ipv6");
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut c = Command::new("tcpserver");
            clean_env(&mut c);
            if is_root() {
                c.env("UID", DROP_UID.to_string())
                    .env("GID", DROP_GID.to_string());
            }
            c.args(["-v", "-RHl0"]);
            if let Some(b) = banner {
                c.arg("-B").arg(b);
            }
            c.arg("127.0.0.1")
                .arg(port.to_string())
                .arg(ftpd_path())
                .args(ftpd_args)
                .arg(root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = c.spawn().expect("spawn tcpserver");
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut seen = Vec::new();
            let ready = loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(l) => {
                        let ok = l.contains("status: 0/");
                        seen.push(l);
                        if ok {
                            break true;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break false,
                }
                if Instant::now() > deadline {
                    break false;
                }
            };
            if ready {
                return TcpServer {
                    child,
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    _stderr: rx,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("tcpserver on port {port} did not start: {seen:?}; retrying");
        }
        panic!("tcpserver did not start in 5 attempts");
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn download_and_list(addr: SocketAddr, greeting: Option<&str>) {
    let mut c = Client::connect(addr);
    let g = c.reply();
    assert_eq!(g.code, 220, "{}", g.text());
    if let Some(want) = greeting {
        assert_eq!(g.first_line(), want, "greeting");
    }
    c.login_only();
    c.expect("TYPE I", 200);
    assert!(c.get("RETR pub/file") == file_content());
    assert!(c.get("RETR big.bin") == big_content());
    let names: BTreeSet<Vec<u8>> = crlf_lines(&c.get("LIST"))
        .iter()
        .map(|l| must_ls(l).name)
        .collect();
    assert_eq!(names, tree::public_names(b""));
    c.expect("QUIT", 221);
    c.expect_eof(Duration::from_secs(5));
    c.assert_nothing_leaked();
}

#[test]
fn tcpserver_download_and_listing() {
    let tree = Tree::new();
    let ts = TcpServer::start(&tree.root, None, &[]);
    download_and_list(ts.addr, None);
    // curl through tcpserver too.
    let home = tree.scratch("home");
    let out = tree.base.join("curl.bin");
    let u = format!("ftp://{}/pub/file", ts.addr);
    curl(&home, &["-o", out.to_str().unwrap(), &u]).assert_success("curl via tcpserver");
    assert!(std::fs::read(&out).unwrap() == file_content());
}

#[test]
fn tcpserver_banner_with_no_greeting() {
    let tree = Tree::new();
    let ts = TcpServer::start(&tree.root, Some("220 hello\r\n"), &["--no-greeting"]);
    download_and_list(ts.addr, Some("220 hello"));
}
