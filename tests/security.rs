//! The archive must not leak and the server must not fall: confinement,
//! publishing rules, FTP bounce, privileges, hostile input.

#[macro_use]
mod common;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::client::{self, accept_bounded, port_arg};
use common::server::{DROP_GID, DROP_UID, ftpd_path};
use common::tree::SECRET_PRIVATE;
use common::*;

server_tests!(
    traversal_attempts_550,
    canary_outside_root_never_served,
    hidden_and_private_never_served,
    nul_in_path,
    port_bounce_refused,
    eprt_bounce_refused,
    port_below_1024_never_connected,
    privileges_dropped,
    hostile_input_does_not_crash,
    tree_owned_by_the_server_user,
    sandboxed_unless_told_not_to,
    links_do_not_publish_what_the_rules_hide,
    unpublished_answers_like_missing,
    devices_answer_like_missing_when_root,
    swapping_links_never_leaks,
    server_users_private_dir_not_served_through_links,
);

fn traversal_attempts_550(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for p in [
            "../../../../etc/passwd",
            "/../etc/passwd",
            "/etc/passwd",
            "%2e%2e/%2e%2e/etc/passwd",
            "..%2f..%2fetc%2fpasswd",
            "pub/../../etc/passwd",
            "escape",
            "up/passwd",
            "./up/passwd",
            "pub/../up/passwd",
            "//etc/passwd",
            "\\..\\..\\etc\\passwd",
        ] {
            c.refused(format!("RETR {p}").as_bytes(), 550);
        }
        c.expect("SIZE up/passwd", 550);
        c.expect("SIZE escape", 550);
        c.expect("MDTM up/passwd", 550);
        c.expect("CWD up", 550);
        c.expect("CWD ../..", 250);
        c.refused(b"RETR etc/passwd", 550);
        c.expect("CWD /pub", 250);
        c.refused(b"RETR ../../etc/passwd", 550);
        c.expect("NOOP", 200);
        c.assert_nothing_leaked();
    }
    s.assert_no_crash();
}

fn canary_outside_root_never_served(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let abs = t.canary_path();
    let abs = abs.to_str().unwrap();
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for p in [
            "../outside-secret.txt",
            "/../outside-secret.txt",
            "../../outside-secret.txt",
            "abs-out",
            "rel-out",
            abs,
        ] {
            c.refused(format!("RETR {p}").as_bytes(), 550);
            c.expect(&format!("SIZE {p}"), 550);
            c.expect(&format!("MDTM {p}"), 550);
            c.expect(&format!("MLST {p}"), 550);
        }
        c.expect("CWD ..", 250);
        c.refused(b"RETR outside-secret.txt", 550);
        // Listings of ".." are listings of the root.
        for cmd in ["LIST ..", "NLST ..", "MLSD ..", "LIST ../..", "LIST -a .."] {
            let d = c.get(cmd);
            assert!(
                client::find(&d, b"outside-secret").is_none(),
                "{cmd} shows the parent of the root"
            );
        }
        let r = c.expect("STAT ..", 213);
        assert!(
            !r.text().contains("outside-secret"),
            "STAT .. shows the parent"
        );
        c.assert_nothing_leaked();
    }
}

fn hidden_and_private_never_served(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    for p in [
        ".secret",
        "/.secret",
        "pub/../.secret",
        ".git/config",
        "pub/.hidden",
        "private.txt",
        "privdir/inside.txt",
        "/privdir/inside.txt",
    ] {
        c.refused(format!("RETR {p}").as_bytes(), 550);
        c.expect(&format!("SIZE {p}"), 550);
        c.expect(&format!("MDTM {p}"), 550);
    }
    c.expect("CWD .git", 550);
    c.expect("CWD privdir", 550);
    c.refused(b"LIST privdir", 550);
    c.refused(b"NLST .git", 550);
    c.refused(b"MLSD privdir", 550);
    c.expect("STAT privdir", 450);
    // REST does not open a way around the rules either.
    c.expect("REST 1", 350);
    c.refused(b"RETR private.txt", 550);
    c.assert_nothing_leaked();
    assert!(client::find(&c.received, SECRET_PRIVATE).is_none());
}

/// Serving a tree that the server's own user owns (anyone running
/// `tcpserver ... ftpd ./public` on their own files): the kernel would let
/// it read everything, so the publishing rules alone must keep private
/// entries private, including files inside a 0700 directory.
fn tree_owned_by_the_server_user(kind: Kind) {
    let tree = Tree::new();
    if is_root() {
        tree.chown_root(DROP_UID, DROP_GID);
    }
    let s = Server::start(kind, &tree, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for p in [
            "private.txt",
            "privdir/inside.txt",
            "/privdir/inside.txt",
            "privdir/../private.txt",
            ".secret",
            ".git/config",
        ] {
            c.refused(format!("RETR {p}").as_bytes(), 550);
            c.expect(&format!("SIZE {p}"), 550);
            c.expect(&format!("MDTM {p}"), 550);
            c.expect(&format!("MLST {p}"), 550);
        }
        c.expect("CWD privdir", 550);
        c.refused(b"LIST privdir", 550);
        c.refused(b"LIST privdir/inside.txt", 550);
        c.refused(b"NLST privdir", 550);
        c.refused(b"MLSD privdir", 550);
        c.expect("STAT privdir", 450);
        c.expect("STAT privdir/inside.txt", 450);
        let names: std::collections::BTreeSet<Vec<u8>> =
            client::crlf_lines(&c.get("NLST")).into_iter().collect();
        assert_eq!(names, common::tree::public_names(b""));
        // Public files are still served.
        assert_eq!(c.get("RETR one-byte"), b"x");
        c.assert_nothing_leaked();
    }
}

fn nul_in_path(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    for line in [
        &b"RETR pub\0/file"[..],
        b"RETR one-byte\0.txt",
        b"SIZE pub/file\0",
        b"CWD pub\0",
        b"MDTM pub\0/file",
    ] {
        let r = c.cmd_bytes(line);
        assert!(
            matches!(r.code, 501 | 550),
            "{:?} -> {}",
            String::from_utf8_lossy(line),
            r.text()
        );
    }
    let mut pwd = c.expect("PWD", 257).first_line();
    pwd.truncate(7);
    assert_eq!(pwd, "257 \"/\"");
    c.expect("NOOP", 200);
}

/// Listens on `ip:0`; returns the listener.
fn trap(ip: &str) -> TcpListener {
    TcpListener::bind(format!("{ip}:0")).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"))
}

fn assert_untouched(l: &TcpListener, what: &str) {
    if let Ok((_, from)) = accept_bounded(l, Duration::from_millis(700)) {
        panic!("{what}: the server connected from {from}");
    }
}

fn port_bounce_refused(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let l = trap("127.0.0.2");
    let a = l.local_addr().unwrap();
    let mut c = Client::login(&s, Family::V4);
    c.expect(&port_arg(&a), 504);
    c.expect("RETR pub/file", 425);
    c.expect("LIST", 425);
    assert_untouched(&l, "PORT 127.0.0.2");
    // A refused PORT does not disturb a good one given before it.
    let good = trap("127.0.0.1");
    c.expect(&port_arg(&good.local_addr().unwrap()), 200);
    c.expect(&port_arg(&a), 504);
    c.send(b"RETR one-byte");
    let r = c.reply();
    if r.code == 150 {
        let (mut ds, _) = accept_bounded(&good, client::TIMEOUT).unwrap();
        let d = client::read_to_eof(&mut ds, client::TIMEOUT).unwrap();
        assert_eq!(d, b"x");
        assert_eq!(c.reply().code, 226);
    } else {
        assert_eq!(r.code, 425, "{}", r.text());
    }
    assert_untouched(&l, "PORT 127.0.0.2 after a good PORT");
}

fn eprt_bounce_refused(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let l = trap("127.0.0.2");
    let a = l.local_addr().unwrap();
    let mut c = Client::login(&s, Family::V4);
    c.expect(&client::eprt_arg(&a), 504);
    c.expect("RETR pub/file", 425);
    assert_untouched(&l, "EPRT 127.0.0.2");
    // IPv6 control connection, IPv4 target.
    let l4 = trap("127.0.0.1");
    let mut c6 = Client::login(&s, Family::V6);
    let r = c6.cmd(&client::eprt_arg(&l4.local_addr().unwrap()));
    assert!(
        matches!(r.code, 504 | 522),
        "EPRT to an IPv4 address from an IPv6 control connection: {}",
        r.text()
    );
    c6.expect("RETR pub/file", 425);
    assert_untouched(&l4, "EPRT |1| from IPv6");
}

fn port_below_1024_never_connected(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    // Nothing needs to listen: the point is the replies and that RETR
    // does not try.
    for p in [1u16, 21, 25, 80, 1023] {
        let a = format!("127,0,0,1,{},{}", p >> 8, p & 255);
        c.expect(&format!("PORT {a}"), 504);
        c.expect(&format!("EPRT |1|127.0.0.1|{p}|"), 504);
    }
    c.expect("RETR pub/file", 425);
}

fn proc_status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

fn privileges_dropped(kind: Kind) {
    if !is_root() {
        eprintln!("note: not root; ftpd runs as the caller, nothing to drop");
        return;
    }
    let (t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("NOOP", 200);
    let pids = s.pids();
    assert_eq!(pids.len(), 1, "one session, one server process: {pids:?}");
    let st = proc_status(pids[0]);
    let field = |name: &str| -> Vec<String> {
        st.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in /proc status"))[name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(field("Uid:"), vec![DROP_UID.to_string(); 4], "{st}");
    assert_eq!(field("Gid:"), vec![DROP_GID.to_string(); 4], "{st}");
    // No supplementary groups beyond the session's own gid (djb's
    // prot_gid sets exactly that one).
    let groups = field("Groups:");
    assert!(
        groups.is_empty() || groups == [DROP_GID.to_string()],
        "supplementary groups kept: {groups:?}"
    );
    let root = std::fs::read_link(format!("/proc/{}/root", pids[0])).unwrap();
    match kind {
        Kind::Ftpd | Kind::Supervisor | Kind::SupervisorUring => {
            assert_eq!(
                root, t.root,
                "started as root, the server chroots into ROOT"
            );
        }
        Kind::FtpdSetpriv => {
            assert_eq!(root.to_str(), Some("/"), "unprivileged: no chroot");
        }
    }
    // Capabilities are all gone.
    for capf in ["CapEff:", "CapPrm:"] {
        assert_eq!(field(capf), vec!["0000000000000000".to_string()], "{st}");
    }
}

/// From outside: every process serving a session runs under a seccomp
/// filter (`Seccomp: 2`) with no_new_privs, and `--no-sandbox` turns it
/// off. What the filter and Landlock refuse is shown in tests/sandbox.rs.
fn sandboxed_unless_told_not_to(kind: Kind) {
    for (opts, want) in [(Opts::new(), "2"), (Opts::new().arg("--no-sandbox"), "0")] {
        let (_t, s) = setup(kind, opts);
        let mut c = Client::login(&s, Family::V4);
        // A listing and a download work inside the sandbox.
        assert!(!c.get("LIST /pub").is_empty());
        assert_eq!(c.get("RETR text.txt"), common::tree::TEXT);
        let pids = s.pids();
        assert_eq!(pids.len(), 1, "one session, one server process: {pids:?}");
        let st = proc_status(pids[0]);
        let field = |name: &str| {
            st.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {name} in /proc status:\n{st}"))
                .to_owned()
        };
        assert_eq!(field("Seccomp:"), want, "{st}");
        assert_eq!(field("NoNewPrivs:"), "1", "{st}");
        if kind.is_supervisor() {
            // Every worker thread too.
            for task in std::fs::read_dir(format!("/proc/{}/task", pids[0])).unwrap() {
                let path = task.unwrap().path().join("status");
                let ts = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    ts.lines()
                        .any(|l| l.starts_with("Seccomp:") && l.ends_with(want)),
                    "{}: {ts}",
                    path.display()
                );
            }
            let log = s.log_text();
            let line = match (want, kind) {
                ("0", _) => "sandbox=off",
                (_, Kind::SupervisorUring) => "seccomp=uring",
                _ => "seccomp=epoll",
            };
            assert!(log.contains(line), "{log}");
        }
        c.expect("QUIT", 221);
    }
}

fn hostile_input_does_not_crash(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let before = t.snapshot();
    let mut c = Client::login(&s, Family::V4);
    // Blank lines may be ignored or answered; either way the session
    // goes on and answers the NOOP after them.
    c.send_raw(b"\r\n \r\n\r\r\n\n");
    c.send(b"NOOP");
    let mut n = 0;
    loop {
        let r = c.reply();
        if r.code == 200 {
            break;
        }
        assert!(r.code >= 500 && n < 4, "blank lines: {}", r.text());
        n += 1;
    }
    let lines: Vec<Vec<u8>> = vec![
        vec![0u8; 10],
        b"RETR".to_vec(),
        b"CWD".to_vec(),
        b"LIST \x01\x02\x7f".to_vec(),
        b"MLST \xc3\x28".to_vec(),
        b"PORT ,,,,,".to_vec(),
        b"PORT 999999999999,0,0,1,1,1".to_vec(),
        b"EPRT ||||".to_vec(),
        b"EPRT |2|::1|65536|".to_vec(),
        b"EPSV 99".to_vec(),
        b"REST 18446744073709551615".to_vec(),
        b"TYPE A A A A".to_vec(),
        b"OPTS MLST ;;;;;=;".to_vec(),
        b"OPTS UTF8 MAYBE".to_vec(),
        b"MDTM 20210101000000 pub/file".to_vec(),
        b"SITE UTIME 20200101000000 one-byte".to_vec(),
        [b"CWD ".to_vec(), b"a/".repeat(1000)].concat(),
        [b"CWD ".to_vec(), b"../".repeat(1000)].concat(),
    ];
    for l in &lines {
        let r = c.cmd_bytes(l);
        assert!(
            (200..600).contains(&r.code),
            "{:?} -> {}",
            String::from_utf8_lossy(l),
            r.text()
        );
    }
    c.expect("NOOP", 200);
    c.expect("PWD", 257);
    c.expect("QUIT", 221);
    s.assert_no_crash();
    assert_eq!(before, t.snapshot(), "the tree changed");
}

// ---------------------------------------------------------------------
// Issue 18: symlinks must not publish what the rules hide, and what is
// unpublished must answer exactly what a missing name answers.

/// Contents of files in a 0711 directory: never sent.
const SECRET_711: &[u8] = b"IN-0711-DIR-5c2e\n";
const SECRET_711_SUB: &[u8] = b"IN-0711-SUB-81fa\n";
const DECOY: &[u8] = b"public decoy\n";

/// Every verb that takes a path, in the form the tests send it.
const PATH_VERBS: [&str; 9] = [
    "RETR", "SIZE", "MDTM", "CWD", "LIST", "NLST", "MLSD", "MLST", "STAT",
];

/// A name that does not exist: what every unpublished one must look like.
const MISSING: &str = "/no-such-name-18";

fn mkdir(root: &Path, rel: &str, mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn put(root: &Path, rel: &str, body: &[u8], mode: u32) {
    let p = root.join(rel);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn ln(root: &Path, rel: &str, target: &str) {
    std::os::unix::fs::symlink(target, root.join(rel)).unwrap();
}

/// p711/ (0711) with s.txt and a public sub/ with inner.txt; links from a
/// public directory into it, to a dotfile, and one that is fine.
fn add_issue_tree(root: &Path) {
    mkdir(root, "p711", 0o711);
    put(root, "p711/s.txt", SECRET_711, 0o644);
    mkdir(root, "p711/sub", 0o755);
    put(root, "p711/sub/inner.txt", SECRET_711_SUB, 0o644);
    mkdir(root, "lnk", 0o755);
    ln(root, "lnk/a", "../p711/s.txt");
    ln(root, "lnk/b", "../.secret");
    ln(root, "lnk/c", "../p711/sub");
    ln(root, "lnk/ok", "../one-byte");
}

/// Everything the server answers to `line`, as bytes: its reply lines,
/// and for a data command (over a passive connection) the data and the
/// final reply when it starts one.
fn answer(c: &mut Client, line: &str) -> Vec<u8> {
    let verb = line.split(' ').next().unwrap_or("");
    let mut data = match verb {
        "RETR" | "LIST" | "NLST" | "MLSD" => {
            let addr = c.pasv();
            Some(client::connect_tuned(addr, None, None).unwrap())
        }
        _ => None,
    };
    let join = |r: &common::Reply| r.lines.join(&b"\r\n"[..]);
    let first = c.cmd(line);
    let mut out = join(&first);
    if (100..200).contains(&first.code)
        && let Some(d) = &mut data
    {
        let bytes = client::read_to_eof(d, client::TIMEOUT).unwrap();
        c.data_received.extend_from_slice(&bytes);
        out.extend_from_slice(b"\r\n[data]");
        out.extend_from_slice(&bytes);
        out.extend_from_slice(b"[/data]\r\n");
        out.extend_from_slice(&join(&c.reply()));
    }
    out
}

/// Panics unless every path verb answers `path` exactly as it answers a
/// missing name.
#[track_caller]
fn answers_like_missing(c: &mut Client, path: &str) {
    for verb in PATH_VERBS {
        let missing = answer(c, &format!("{verb} {MISSING}"));
        let got = answer(c, &format!("{verb} {path}"));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&missing),
            "{verb} {path} does not answer as {verb} {MISSING}"
        );
        assert_eq!(got, missing, "{verb} {path}: not byte for byte");
    }
}

/// The names each listing of the working directory shows (the last field
/// of each line: NLST, LIST, MLSD, and the lines of STAT).
fn listed_names(c: &mut Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for verb in ["NLST", "LIST", "MLSD"] {
        for line in client::crlf_lines(&c.get(verb)) {
            let name = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
            out.push((verb.to_string(), String::from_utf8_lossy(name).into_owned()));
        }
    }
    let r = c.expect("STAT .", 213);
    for line in r.inner() {
        let name = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
        out.push((
            "STAT".to_string(),
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    out
}

#[track_caller]
fn assert_lists_only(c: &mut Client, dir: &str, wanted: &[&str]) {
    c.expect(&format!("CWD {dir}"), 250);
    let listed = listed_names(c);
    for (verb, name) in &listed {
        assert!(
            wanted.contains(&name.as_str()),
            "{verb} in {dir} shows {name:?}: {listed:?}"
        );
    }
    for verb in ["NLST", "LIST", "MLSD", "STAT"] {
        for w in wanted {
            assert!(
                listed.iter().any(|(v, n)| v == verb && n == w),
                "{verb} in {dir} lacks {w}: {listed:?}"
            );
        }
    }
    c.expect("CWD /", 250);
}

#[track_caller]
fn assert_no_secret(c: &Client, secrets: &[&[u8]]) {
    c.assert_nothing_leaked();
    for s in secrets {
        assert!(client::find(&c.received, s).is_none(), "LEAK on control");
        assert!(client::find(&c.data_received, s).is_none(), "LEAK on data");
    }
}

/// Issue 18 part 1: a link into a 0711 directory, to a dotfile, or to a
/// public directory inside a 0711 one publishes nothing, by any command;
/// listings leave those links out.
fn links_do_not_publish_what_the_rules_hide(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    add_issue_tree(&t.root);
    let mut c = Client::login(&s, Family::V4);
    for p in [
        "/p711/s.txt",
        "/lnk/a",
        "/lnk/b",
        "/lnk/c",
        "/lnk/c/inner.txt",
    ] {
        answers_like_missing(&mut c, p);
    }
    assert_lists_only(&mut c, "/lnk", &["ok"]);
    assert_eq!(c.get("RETR /lnk/ok"), b"x");
    assert_no_secret(&c, &[SECRET_711, SECRET_711_SUB]);
    s.assert_no_crash();
}

/// Issue 18 part 2: a 0700 or 0711 directory, what is inside them, a
/// FIFO, a unix socket, a 0600 file, and a symlink to each answer every
/// command byte for byte as a missing name does.
fn unpublished_answers_like_missing(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let root = &t.root;
    mkdir(root, "d700", 0o700);
    put(root, "d700/f", SECRET_711, 0o644);
    mkdir(root, "d711", 0o711);
    put(root, "d711/f", SECRET_711, 0o644);
    mkdir(root, "d711/sub", 0o755);
    put(root, "d711/sub/g", SECRET_711_SUB, 0o644);
    drop(std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap());
    std::fs::set_permissions(root.join("sock"), std::fs::Permissions::from_mode(0o777)).unwrap();
    mkdir(root, "kinds", 0o755);
    let targets = [
        "d700",
        "d700/f",
        "d711",
        "d711/f",
        "d711/sub",
        "d711/sub/g",
        "fifo",
        "sock",
        "private.txt",
    ];
    for target in targets {
        ln(
            root,
            &format!("kinds/{}", target.replace('/', "-")),
            &format!("../{target}"),
        );
    }
    let mut c = Client::login(&s, Family::V4);
    for target in targets {
        answers_like_missing(&mut c, &format!("/{target}"));
        answers_like_missing(&mut c, &format!("/kinds/{}", target.replace('/', "-")));
    }
    answers_like_missing(&mut c, "/kinds/d711/f");
    assert_lists_only(&mut c, "/kinds", &[]);
    assert_no_secret(&c, &[SECRET_711, SECRET_711_SUB]);
    s.assert_no_crash();
}

/// As [`unpublished_answers_like_missing`], for a character device and a
/// link to it. Only root can make a device: not as root, this test says
/// so and checks nothing.
fn devices_answer_like_missing_when_root(kind: Kind) {
    if !is_root() {
        eprintln!("note: not root; no device can be made, devices are not covered");
        return;
    }
    let (t, s) = setup(kind, Opts::new());
    let dev =
        std::ffi::CString::new(t.root.join("null").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; makes /dev/null's twin.
    let rc = unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    std::fs::set_permissions(t.root.join("null"), std::fs::Permissions::from_mode(0o666)).unwrap();
    ln(&t.root, "null-link", "null");
    let mut c = Client::login(&s, Family::V4);
    answers_like_missing(&mut c, "/null");
    answers_like_missing(&mut c, "/null-link");
    s.assert_no_crash();
}

/// Issue 18 part 1: a symlink swapped (RENAME_EXCHANGE) between a public
/// decoy and the private file or directory while RETRs go on never
/// serves the private one: the check and the use are one walk.
fn swapping_links_never_leaks(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let root = t.root.clone();
    add_issue_tree(&root);
    mkdir(&root, "decoy", 0o755);
    put(&root, "decoy/s.txt", DECOY, 0o644);
    mkdir(&root, "race", 0o755);
    ln(&root, "race/f", "../decoy/s.txt");
    ln(&root, "race/g", "../p711/s.txt");
    ln(&root, "race/d", "../decoy");
    ln(&root, "race/e", "../p711");
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        thread::spawn(move || {
            let c = |rel: &str| {
                std::ffi::CString::new(root.join(rel).into_os_string().into_encoded_bytes())
                    .unwrap()
            };
            let pairs = [(c("race/f"), c("race/g")), (c("race/d"), c("race/e"))];
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 100_000_000 && Instant::now() < deadline {
                for (a, b) in &pairs {
                    // SAFETY: valid NUL-terminated paths.
                    let rc = unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                    assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
                }
                n += 1;
            }
            n
        })
    };
    let mut c = Client::login(&s, Family::V4);
    let missing = answer(&mut c, &format!("RETR {MISSING}"));
    let (mut served, mut leaked) = (0, 0);
    for i in 0..300 {
        let path = if i % 2 == 0 {
            "/race/f"
        } else {
            "/race/d/s.txt"
        };
        let got = answer(&mut c, &format!("RETR {path}"));
        if client::find(&got, SECRET_711).is_some() {
            leaked += 1;
        } else if got != missing {
            assert!(client::find(&got, DECOY).is_some(), "{path}: {got:?}");
            served += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert_eq!(
        leaked, 0,
        "the private file was served {leaked} times of 300"
    );
    assert!(served > 0 && swaps > 0, "served {served}, swaps {swaps}");
    assert_no_secret(&c, &[SECRET_711]);
    s.assert_no_crash();
}

/// Issue 18 part 1, run as the tree's owner (ftpd_setpriv, or any server
/// not started as root): the kernel would let the server read its own
/// 0700 directory, so only the rules keep it private, through links too.
fn server_users_private_dir_not_served_through_links(kind: Kind) {
    let tree = Tree::new();
    let root = &tree.root;
    mkdir(root, "lnk", 0o755);
    ln(root, "lnk/x", "../privdir/inside.txt");
    ln(root, "lnk/y", "../privdir");
    ln(root, "lnk/z", "../private.txt");
    ln(root, "lnk/ok", "../one-byte");
    if is_root() {
        tree.chown_root(DROP_UID, DROP_GID);
    }
    let s = Server::start(kind, &tree, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    for p in ["/lnk/x", "/lnk/y", "/lnk/y/inside.txt", "/lnk/z"] {
        answers_like_missing(&mut c, p);
    }
    assert_lists_only(&mut c, "/lnk", &["ok"]);
    assert_no_secret(&c, &[]);
    s.assert_no_crash();
}

// ---------------------------------------------------------------------
// ftpd's start-up rules (not parameterised: they are about ftpd itself).

#[test]
fn ftpd_as_root_without_uid_gid_exits_100() {
    if !is_root() {
        eprintln!("note: not root; the exit-100 rule is for root only");
        return;
    }
    let tree = Tree::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cl = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (sv, _) = l.accept().unwrap();
    let mut cmd = Command::new(ftpd_path());
    common::server::clean_env(&mut cmd);
    cmd.arg(&tree.root)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            sv.try_clone().unwrap(),
        )))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(sv)))
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Our copies of the socket go with the Command.
    drop(cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ftpd as root without UID/GID kept running");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(st.code(), Some(100), "exit status; stderr: {err}");
    assert!(
        !err.trim().is_empty(),
        "ftpd must say why it refuses to run"
    );
    // It served nothing.
    cl.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = cl.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"230"),
        "ftpd as root without ids must not serve: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

/// Invalid ids, and root itself as the session user, are configuration
/// errors.
#[test]
fn ftpd_as_root_with_bad_uid_refuses() {
    if !is_root() {
        return;
    }
    let tree = Tree::new();
    for (uid, gid) in [
        ("abc", "65534"),
        ("65534", ""),
        ("", "65534"),
        ("65534", "x"),
    ] {
        let mut cmd = Command::new(ftpd_path());
        common::server::clean_env(&mut cmd);
        cmd.env("UID", uid).env("GID", gid).arg(&tree.root);
        let out = common::tools::run(cmd, Duration::from_secs(10));
        // A configuration error: exit 100, with a reason.
        assert_eq!(
            out.status.code(),
            Some(100),
            "UID={uid:?} GID={gid:?} must be refused: {}",
            out.stderr_text()
        );
        assert!(
            !out.stderr.is_empty(),
            "UID={uid:?} GID={gid:?}: no reason given"
        );
    }
}

/// A root that cannot be opened is a temporary failure (111), whoever runs
/// ftpd.
#[test]
fn ftpd_missing_root_exits_111() {
    let tree = Tree::new();
    let missing = tree.base.join("no-such-root");
    let mut cmd = common::server::ftpd_command(Kind::Ftpd, &Opts::new(), &missing);
    cmd.stdin(Stdio::null());
    let out = common::tools::run(cmd, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(111), "{}", out.stderr_text());
    assert!(!out.stderr.is_empty());
}
