//! Messages: `--banner` (the 220 greeting), `--welcome` (the 230 after
//! login), `--dir-messages` (a directory's `.message` in the 250 after
//! CWD), against every server kind, with raw FTP and with real clients
//! (curl, lftp, Python's ftplib) that must parse the multi-line replies;
//! the supervisor reading the texts again on SIGHUP.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::{Reply, find};
use common::server::{clean_env, ftpd_command, supervisor_path};
use common::tools::{require, run};
use common::tree;
use common::*;

server_tests!(
    banner_and_welcome,
    no_greeting_wins_over_the_banner,
    dir_messages_once_a_session,
    message_files_are_never_served,
    without_dir_messages_no_message,
    curl_parses_the_messages,
    lftp_parses_the_messages,
    ftplib_parses_the_messages,
);

/// A banner that would end the greeting early in a careless client, and
/// would paint the terminal of a trusting one.
const BANNER: &[u8] = b"Welcome to the example mirror.\n\
220 This line is not the end of the greeting.\n\
\n\
220\n\
2200 neither is this\n\
\tTab, \x1b[31mred\x1b[0m, caf\xc3\xa9.\n";

const BANNER_LINES: &[&str] = &[
    "220-Welcome to the example mirror.",
    " 220 This line is not the end of the greeting.",
    "",
    " 220",
    " 2200 neither is this",
    " Tab, ?[31mred?[0m, café.",
    "220 aftpd: anonymous read-only FTP server ready.",
];

const WELCOME: &[u8] = b"You are in.\r\n230 Not yet the end.\r\n230-Nor this.\r\n";

const WELCOME_LINES: &[&str] = &[
    "230-You are in.",
    " 230 Not yet the end.",
    " 230-Nor this.",
    "230 Logged in: anonymous read-only access.",
];

const PUB_MESSAGE: &[u8] = b"This is pub.\n250 Not the end.\n226 Nor this.\n";

const PUB_LINES: &[&str] = &[
    "250-This is pub.",
    " 250 Not the end.",
    " 226 Nor this.",
    "250 Directory changed.",
];

/// A secret that may never be shown: in a message file the world may not
/// read, in one inside a directory it may not enter, behind a symlink.
const HIDDEN_MESSAGE: &[u8] = b"HIDDEN-MESSAGE-7d1e";

fn write(path: &Path, body: &[u8], mode: u32) {
    fs::write(path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The banner and welcome files, outside the root (read before the
/// chroot), and the `.message` files inside it.
fn message_files(t: &Tree) -> (PathBuf, PathBuf) {
    let etc = t.scratch("etc");
    let banner = etc.join("banner");
    let welcome = etc.join("welcome");
    write(&banner, BANNER, 0o644);
    write(&welcome, WELCOME, 0o644);
    write(&t.root.join("pub/.message"), PUB_MESSAGE, 0o644);
    write(&t.root.join("pub/a/.message"), HIDDEN_MESSAGE, 0o600);
    write(&t.root.join("privdir/.message"), HIDDEN_MESSAGE, 0o644);
    write(&t.root.join("pub/a/b/secret"), HIDDEN_MESSAGE, 0o600);
    std::os::unix::fs::symlink("secret", t.root.join("pub/a/b/.message")).unwrap();
    (banner, welcome)
}

fn all_options(banner: &Path, welcome: &Path) -> Opts {
    Opts::new()
        .arg("--banner")
        .arg(banner.to_str().unwrap())
        .arg("--welcome")
        .arg(welcome.to_str().unwrap())
        .arg("--dir-messages")
}

fn lines(r: &Reply) -> Vec<String> {
    r.lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

fn banner_and_welcome(kind: Kind) {
    let t = Tree::new();
    let (banner, welcome) = message_files(&t);
    let s = Server::start(kind, &t, all_options(&banner, &welcome));
    for fam in FAMILIES {
        let mut c = Client::connect(s.addr(fam));
        let greeting = c.reply();
        assert_eq!(greeting.code, 220);
        assert_eq!(lines(&greeting), BANNER_LINES, "{fam:?}");
        c.expect("USER anonymous", 331);
        let r = c.expect("PASS x@y", 230);
        assert_eq!(lines(&r), WELCOME_LINES, "{fam:?}");
        // The session goes on, reply for reply.
        c.expect("NOOP", 200);
        c.expect("PWD", 257);
        c.expect("QUIT", 221);
        c.assert_nothing_leaked();
        assert!(find(&c.received, b"\x1b").is_none(), "an ESC got through");
    }
}

/// `--no-greeting` (for `tcpserver -B`, which prints its own): no 220 at
/// all, banner or not.
fn no_greeting_wins_over_the_banner(kind: Kind) {
    let t = Tree::new();
    let (banner, _) = message_files(&t);
    let opts = Opts::new()
        .arg("--banner")
        .arg(banner.to_str().unwrap())
        .no_greeting();
    let s = Server::start(kind, &t, opts);
    let mut c = Client::connect(s.addr(Family::V4));
    let r = c.expect("USER anonymous", 331);
    assert_eq!(r.lines.len(), 1);
    assert!(find(&c.received, b"Welcome to the example").is_none());
}

fn dir_messages_once_a_session(kind: Kind) {
    let t = Tree::new();
    let (banner, welcome) = message_files(&t);
    let s = Server::start(kind, &t, all_options(&banner, &welcome));
    for fam in FAMILIES {
        let mut c = Client::connect(s.addr(fam));
        c.reply();
        c.login_only();
        let r = c.expect("CWD pub", 250);
        assert_eq!(lines(&r), PUB_LINES);
        // Once a session: not again, by any path.
        for again in ["CWD /", "CWD pub", "CDUP", "CWD /pub/a/..", "CWD /pub"] {
            let r = c.expect(again, 250);
            assert!(!r.is_multiline(), "{again}: {:?}", r.text());
        }
        // None where there is none, or none the world may read.
        for dir in ["/pub/a", "/pub/a/b", "/", "/say\"hi\""] {
            let r = c.expect(&format!("CWD {dir}"), 250);
            assert!(!r.is_multiline(), "{dir}: {:?}", r.text());
        }
        c.expect("CWD /privdir", 550);
        c.expect("QUIT", 221);
        c.assert_nothing_leaked();
        assert!(find(&c.received, HIDDEN_MESSAGE).is_none());
        // A new session sees it again.
        let mut c = Client::connect(s.addr(fam));
        c.reply();
        c.login_only();
        assert_eq!(lines(&c.expect("CWD /pub/", 250)), PUB_LINES);
    }
}

/// A `.message` is a dotfile: no listing shows it, nothing serves it.
fn message_files_are_never_served(kind: Kind) {
    let t = Tree::new();
    let (banner, welcome) = message_files(&t);
    let s = Server::start(kind, &t, all_options(&banner, &welcome));
    let mut c = Client::login(&s, Family::V4);
    for listing in ["NLST pub", "LIST -a pub", "MLSD pub", "NLST -a pub/a/b"] {
        let got = c.get(listing);
        assert!(find(&got, b".message").is_none(), "{listing}");
        assert!(find(&got, HIDDEN_MESSAGE).is_none(), "{listing}");
    }
    let stat = c.expect("STAT pub", 213);
    assert!(!stat.text().contains(".message"));
    for path in ["pub/.message", "/pub/a/b/.message", "privdir/.message"] {
        c.refused(format!("RETR {path}").as_bytes(), 550);
        c.expect(&format!("SIZE {path}"), 550);
        c.expect(&format!("MLST {path}"), 550);
    }
    c.assert_nothing_leaked();
}

fn without_dir_messages_no_message(kind: Kind) {
    let t = Tree::new();
    message_files(&t);
    let s = Server::start(kind, &t, Opts::new());
    let mut c = Client::open(&s, Family::V4);
    let r = c.expect("USER anonymous", 331);
    assert!(!r.is_multiline());
    let r = c.expect("PASS x", 230);
    assert!(!r.is_multiline());
    let r = c.expect("CWD pub", 250);
    assert!(!r.is_multiline(), "{}", r.text());
    assert!(find(&c.received, b"This is pub").is_none());
}

// ------------------------------------------------------------ clients

const LIMIT: Duration = Duration::from_secs(120);

fn url(s: &Server, path: &str) -> String {
    format!("ftp://{}/{path}", s.addr(Family::V4))
}

fn client(prog: &str, home: &Path) -> Command {
    let mut c = Command::new(prog);
    clean_env(&mut c);
    c.env("HOME", home).env("LC_ALL", "C.UTF-8");
    c
}

/// curl walks to the file with CWD (its default), each reply multi-line.
fn curl_parses_the_messages(kind: Kind) {
    require("curl", "curl");
    let t = Tree::new();
    let (banner, welcome) = message_files(&t);
    let s = Server::start(kind, &t, all_options(&banner, &welcome));
    let home = t.scratch("home");
    let mut cmd = client("curl", &home);
    cmd.args(["-sS", "-v", "--max-time", "60"])
        .arg(url(&s, "pub/a/readme.txt"));
    let out = run(cmd, LIMIT);
    out.assert_success("curl through multi-line replies");
    assert_eq!(out.stdout, b"readme in a\n");
    let trace = out.stderr_text();
    assert!(trace.contains("This is pub."), "{trace}");
    assert!(trace.contains("You are in."), "{trace}");
}

/// lftp logs in, changes into `pub` (its message shown) and reads a file.
fn lftp_parses_the_messages(kind: Kind) {
    require("lftp", "lftp");
    let t = Tree::new();
    let (banner, welcome) = message_files(&t);
    let s = Server::start(kind, &t, all_options(&banner, &welcome));
    let home = t.scratch("home");
    let script = format!(
        "set net:max-retries 1; set net:timeout 20; set cmd:fail-exit yes; \
         open {}; cd pub; cat file; cd a; cat readme.txt; bye",
        url(&s, "")
    );
    let mut cmd = client("lftp", &home);
    cmd.args(["-d", "-c", &script]);
    let out = run(cmd, LIMIT);
    out.assert_success("lftp through multi-line replies");
    let want = [tree::file_content(), b"readme in a\n"].concat();
    assert!(out.stdout == want, "lftp: {} bytes", out.stdout.len());
    let trace = out.stderr_text();
    assert!(trace.contains("This is pub."), "{trace}");
}

/// ftplib reads the whole greeting, welcome and CWD replies.
fn ftplib_parses_the_messages(kind: Kind) {
    require("python3", "python3");
    let t = Tree::new();
    let (banner, welcome) = message_files(&t);
    let s = Server::start(kind, &t, all_options(&banner, &welcome));
    let addr = s.addr(Family::V4);
    let script = format!(
        r#"
import ftplib, sys
f = ftplib.FTP()
g = f.connect("{ip}", {port}, timeout=20)
assert g.startswith("220-Welcome to the example mirror."), repr(g)
assert g.endswith("220 aftpd: anonymous read-only FTP server ready."), repr(g)
w = f.login()
assert w.startswith("230-You are in."), repr(w)
assert w.endswith("230 Logged in: anonymous read-only access."), repr(w)
c = f.cwd("pub")
assert c.startswith("250-This is pub.") and c.endswith("250 Directory changed."), repr(c)
assert f.cwd("/pub") == "250 Directory changed.", "twice"
assert f.sendcmd("NOOP").startswith("200 "), "out of step"
data = []
f.retrbinary("RETR a/readme.txt", data.append)
assert b"".join(data) == b"readme in a\n", data
f.quit()
print("ok")
"#,
        ip = addr.ip(),
        port = addr.port()
    );
    let home = t.scratch("home");
    let mut cmd = client("python3", &home);
    cmd.args(["-c", &script]);
    let out = run(cmd, LIMIT);
    out.assert_success("ftplib through multi-line replies");
    assert_eq!(out.stdout_text().trim(), "ok");
}

// ------------------------------------------------- start and SIGHUP

/// A message file that cannot be read is a temporary failure (111) at
/// start, for both programs.
#[test]
fn unreadable_message_files_exit_111() {
    let t = Tree::new();
    let dir = t.scratch("etc");
    let missing = dir.join("missing");
    for (option, file) in [("--banner", &missing), ("--welcome", &dir)] {
        let opts = Opts::new().arg(option).arg(file.to_str().unwrap());
        let mut cmd = ftpd_command(Kind::FtpdSetpriv, &opts, &t.root);
        cmd.stdin(Stdio::null());
        let out = run(cmd, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(111), "ftpd {option}");
        assert!(out.stderr_text().contains(option), "{}", out.stderr_text());

        let bin = supervisor_path().expect("aftpd-supervisor");
        let mut cmd = Command::new(bin);
        clean_env(&mut cmd);
        cmd.args(["--listen", "127.0.0.1:0", option])
            .arg(file)
            .arg(&t.root)
            .stdin(Stdio::null());
        let out = run(cmd, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(111), "supervisor {option}");
        assert!(out.stderr_text().contains(option), "{}", out.stderr_text());
    }
}

fn sighup(s: &Server) {
    let pid = nix::unistd::Pid::from_raw(s.pids()[0] as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

/// SIGHUP: sessions that start afterwards get the texts as they are now
/// (written in place); open sessions keep theirs and go on. A file
/// replaced by a rename cannot be reached from the chroot and sandbox:
/// the log says so and the text stays.
fn sighup_reads_the_messages_again(kind: Kind) {
    let t = Tree::new();
    let (banner, welcome) = message_files(&t);
    let s = Server::start(kind, &t, all_options(&banner, &welcome));
    let mut before = Client::connect(s.addr(Family::V4));
    assert_eq!(lines(&before.reply()), BANNER_LINES);

    // In place, as an editor that keeps the file, or cp, writes it.
    fs::write(&banner, b"The new banner.\n").unwrap();
    fs::write(&welcome, b"The new welcome.\n").unwrap();
    sighup(&s);
    s.wait_log_line("saying the texts were read again", |l| {
        l.contains("SIGHUP: read the banner and welcome again")
    });
    let mut after = Client::connect(s.addr(Family::V4));
    assert_eq!(
        lines(&after.reply()),
        [
            "220-The new banner.",
            "220 aftpd: anonymous read-only FTP server ready."
        ]
    );
    after.expect("USER a", 331);
    let r = after.expect("PASS b", 230);
    assert_eq!(r.first_line(), "230-The new welcome.");
    // The session from before was not dropped, and keeps its texts.
    before.expect("USER a", 331);
    assert_eq!(lines(&before.expect("PASS b", 230)), WELCOME_LINES);
    before.expect("NOOP", 200);

    // Replaced by a rename: said in the log; the text stays.
    let new = banner.with_extension("new");
    fs::write(&new, b"Unreachable banner.\n").unwrap();
    fs::rename(&new, &banner).unwrap();
    sighup(&s);
    s.wait_log_line("about the replaced banner", |l| {
        l.contains("--banner") && l.contains("replaced or removed")
    });
    let mut later = Client::connect(s.addr(Family::V4));
    assert_eq!(later.reply().first_line(), "220-The new banner.");
}

mod sighup {
    use super::*;

    #[test]
    fn supervisor() {
        sighup_reads_the_messages_again(Kind::Supervisor);
    }

    #[test]
    fn supervisor_uring() {
        sighup_reads_the_messages_again(Kind::SupervisorUring);
    }
}
