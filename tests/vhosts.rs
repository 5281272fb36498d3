//! Virtual hosts (`--vhosts`, HOST of RFC 7151, publicfile's layout)
//! against every server kind: ROOT/0 without HOST, ROOT/NAME after HOST
//! NAME, an unknown name 504, per-host `.banner` and `.welcome` (never
//! served), a host's tree as confined as ROOT, and clients (raw FTP,
//! Python's ftplib, curl and lftp on the default tree).

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::find;
use common::server::{clean_env, ftpd_command, supervisor_path};
use common::tools::{require, run};
use common::tree::CANARY;
use common::*;

server_tests!(
    without_host_the_default_tree,
    host_selects_the_tree,
    host_names,
    a_host_tree_is_confined,
    hosts_are_looked_up_afresh,
    per_host_files_are_never_served,
    ftplib_with_host,
    curl_and_lftp_on_the_default_tree,
);

const SECRET_HOST: &[u8] = b"PRIVATE-HOST-41c9";

fn write(path: &Path, body: &[u8], mode: u32) {
    fs::write(path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// ROOT for `--vhosts`, beside the test tree's own root:
///
/// ```text
/// vroot/                     0755
///   top.txt                  in ROOT itself: in no tree
///   0/                       the default tree
///     default.txt  pub/in-default.txt  .welcome
///   a.example/               .banner .welcome a.txt sub/.message
///     escape -> ../0/default.txt        (climbs out: nowhere)
///     abs -> /0/default.txt             (the host's own /0: nothing)
///   b.example -> a.example   (an alias)
///   private.example/         0700, with a secret
///   file.example             a file, not a tree
///   out.example -> BASE      (leaves ROOT: nowhere)
///   .hidden.example/         a dot-name: never a host
/// ```
fn layout(t: &Tree) -> PathBuf {
    let v = t.base.join("vroot");
    mkdir(&v, 0o755);
    write(&v.join("top.txt"), b"top of ROOT\n", 0o644);
    mkdir(&v.join("0/pub"), 0o755);
    write(&v.join("0/default.txt"), b"the default tree\n", 0o644);
    write(&v.join("0/pub/in-default.txt"), b"in default pub\n", 0o644);
    write(
        &v.join("0/.welcome"),
        b"Welcome to the default host.\n",
        0o644,
    );
    let a = v.join("a.example");
    mkdir(&a.join("sub"), 0o755);
    write(&a.join("a.txt"), b"the a tree\n", 0o644);
    write(
        &a.join(".banner"),
        b"This is a.example.\n220 still the banner\n",
        0o644,
    );
    write(&a.join(".welcome"), b"Welcome to a.example.\n230\n", 0o644);
    write(&a.join("sub/.message"), b"a.example's sub.\n", 0o644);
    symlink("../0/default.txt", a.join("escape")).unwrap();
    symlink("/0/default.txt", a.join("abs")).unwrap();
    symlink("a.example", v.join("b.example")).unwrap();
    mkdir(&v.join("private.example"), 0o755);
    write(&v.join("private.example/secret.txt"), SECRET_HOST, 0o644);
    write(&v.join("private.example/.banner"), SECRET_HOST, 0o644);
    fs::set_permissions(v.join("private.example"), fs::Permissions::from_mode(0o700)).unwrap();
    write(&v.join("file.example"), SECRET_HOST, 0o644);
    symlink(&t.base, v.join("out.example")).unwrap();
    mkdir(&v.join(".hidden.example"), 0o755);
    write(&v.join(".hidden.example/x"), SECRET_HOST, 0o644);
    v
}

fn start(kind: Kind, t: &Tree, extra: &[&str]) -> Server {
    let v = layout(t);
    let mut opts = Opts::new().arg("--vhosts");
    for a in extra {
        opts = opts.arg(*a);
    }
    Server::start_at(kind, t, &v, opts)
}

/// Connects, reads the greeting, optionally sends HOST (which must
/// succeed), logs in, TYPE I.
fn session(s: &Server, fam: Family, host: Option<&str>) -> Client {
    let mut c = Client::open(s, fam);
    if let Some(h) = host {
        c.expect(&format!("HOST {h}"), 220);
    }
    c.login_only();
    c.expect("TYPE I", 200);
    c
}

fn assert_clean(c: &Client) {
    c.assert_nothing_leaked();
    for hay in [&c.received, &c.data_received] {
        assert!(find(hay, SECRET_HOST).is_none(), "a private host leaked");
        assert!(find(hay, b"top of ROOT").is_none(), "ROOT itself leaked");
    }
}

fn without_host_the_default_tree(kind: Kind) {
    let t = Tree::new();
    let s = start(kind, &t, &[]);
    for fam in FAMILIES {
        let mut c = Client::open(&s, fam);
        c.expect("USER anonymous", 331);
        let r = c.expect("PASS x", 230);
        assert_eq!(r.first_line(), "230-Welcome to the default host.");
        c.expect("TYPE I", 200);
        assert_eq!(c.get("RETR default.txt"), b"the default tree\n");
        assert_eq!(c.get("RETR /pub/in-default.txt"), b"in default pub\n");
        let names = c.get("NLST");
        let mut names: Vec<&[u8]> = names
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .collect();
        names.sort();
        assert_eq!(names, [&b"default.txt"[..], b"pub"]);
        for path in [
            "/top.txt",
            "../top.txt",
            "/a.example/a.txt",
            "/0/default.txt",
        ] {
            c.refused(format!("RETR {path}").as_bytes(), 550);
        }
        c.expect("CWD ..", 250);
        let r = c.expect("PWD", 257);
        assert!(r.first_line().starts_with("257 \"/\""));
        assert_clean(&c);
    }
}

fn host_selects_the_tree(kind: Kind) {
    let t = Tree::new();
    let s = start(kind, &t, &["--dir-messages"]);
    for fam in FAMILIES {
        let mut c = Client::open(&s, fam);
        let r = c.expect("HOST a.example", 220);
        let lines: Vec<String> = r
            .lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        assert_eq!(
            lines,
            [
                "220-This is a.example.",
                " 220 still the banner",
                "220 Host ready: log in with USER and PASS."
            ]
        );
        c.expect("USER anonymous", 331);
        let r = c.expect("PASS x", 230);
        assert_eq!(
            r.text(),
            "230-Welcome to a.example.\n 230\n230 Logged in: anonymous read-only access."
        );
        c.expect("TYPE I", 200);
        assert_eq!(c.get("RETR a.txt"), b"the a tree\n");
        assert_eq!(c.expect("SIZE /a.txt", 213).first_line(), "213 11");
        c.refused(b"RETR default.txt", 550);
        let r = c.expect("CWD sub", 250);
        assert_eq!(r.first_line(), "250-a.example's sub.");
        assert!(c.get("LIST").is_empty());
        assert_clean(&c);
    }
}

fn host_names(kind: Kind) {
    let t = Tree::new();
    let s = start(kind, &t, &[]);
    // Lower-cased, a final dot dropped; an alias by symlink; `0` itself.
    for (name, file) in [
        ("A.EXAMPLE.", "a.txt"),
        ("b.example", "a.txt"),
        ("0", "default.txt"),
    ] {
        let mut c = session(&s, Family::V4, Some(name));
        assert!(!c.get(&format!("RETR {file}")).is_empty(), "{name}");
        assert_clean(&c);
    }
    let mut c = Client::open(&s, Family::V4);
    // Unknown, unpublished, not a directory, out of ROOT: RFC 7151's 504.
    for name in [
        "c.example",
        "private.example",
        "file.example",
        "out.example",
        "top.txt",
    ] {
        let r = c.expect(&format!("HOST {name}"), 504);
        assert_eq!(r.first_line(), "504 Unknown host.");
    }
    // Not a host name, so never a path: 501.
    for name in [".hidden.example", "..", ".", "a/b", "../0", "a\\b", "[::1"] {
        c.expect(&format!("HOST {name}"), 501);
    }
    c.expect("HOST", 501);
    // After the failures the session still has the default tree, and
    // after USER there is no HOST.
    c.login_only();
    c.expect("TYPE I", 200);
    assert_eq!(c.get("RETR default.txt"), b"the default tree\n");
    c.expect("HOST a.example", 503);
    assert_clean(&c);
}

/// A host's tree is a root of its own: `..` and absolute symlinks stop
/// at its top, as ROOT's do.
fn a_host_tree_is_confined(kind: Kind) {
    let t = Tree::new();
    let s = start(kind, &t, &[]);
    let mut c = session(&s, Family::V4, Some("a.example"));
    for path in [
        "escape",
        "abs",
        "../0/default.txt",
        "/../0/default.txt",
        "../top.txt",
        "/../../outside-secret.txt",
    ] {
        c.refused(format!("RETR {path}").as_bytes(), 550);
    }
    // Symlinks that lead nowhere inside the tree are not listed.
    let names = c.get("NLST -a");
    let mut names: Vec<&[u8]> = names.split(|&b| b == b'\n').collect();
    names.sort();
    assert_eq!(names, [&b""[..], b"a.txt\r", b"sub\r"]);
    assert!(find(&c.data_received, CANARY).is_none());
    assert_clean(&c);
}

/// HOST looks the name up each time: a host added while the server runs
/// is served at once, one removed is gone.
fn hosts_are_looked_up_afresh(kind: Kind) {
    let t = Tree::new();
    let s = start(kind, &t, &[]);
    let v = t.base.join("vroot");
    let mut c = Client::open(&s, Family::V4);
    c.expect("HOST new.example", 504);
    mkdir(&v.join("new.example"), 0o755);
    write(&v.join("new.example/new.txt"), b"new\n", 0o644);
    let mut c = session(&s, Family::V4, Some("new.example"));
    assert_eq!(c.get("RETR new.txt"), b"new\n");
    fs::remove_dir_all(v.join("new.example")).unwrap();
    let mut d = Client::open(&s, Family::V4);
    d.expect("HOST new.example", 504);
    // The session that had it finds its files gone, and goes on.
    c.refused(b"RETR new.txt", 550);
    c.expect("NOOP", 200);
}

/// `.banner`, `.welcome` and `.message` are dotfiles in the host's tree:
/// read for their replies, never listed, never served.
fn per_host_files_are_never_served(kind: Kind) {
    let t = Tree::new();
    let s = start(kind, &t, &[]);
    for (host, dir) in [(None, "pub"), (Some("a.example"), "sub")] {
        let mut c = session(&s, Family::V4, host);
        let nlst_dir = format!("NLST -a {dir}");
        for listing in ["NLST -a", "LIST -a", "MLSD", &nlst_dir] {
            let got = c.get_mode(c.default_mode(), listing);
            for name in [&b".banner"[..], b".welcome", b".message"] {
                assert!(find(&got, name).is_none(), "{listing}");
            }
        }
        for path in [".banner", ".welcome", "/sub/.message", "sub/../.banner"] {
            c.refused(format!("RETR {path}").as_bytes(), 550);
            c.expect(&format!("SIZE {path}"), 550);
        }
        assert_clean(&c);
    }
}

// ------------------------------------------------------------ clients

const LIMIT: Duration = Duration::from_secs(120);

fn client(prog: &str, home: &Path) -> Command {
    let mut c = Command::new(prog);
    clean_env(&mut c);
    c.env("HOME", home).env("LC_ALL", "C.UTF-8");
    c
}

/// Python's ftplib, which sends HOST as any command: the host's banner
/// and welcome are whole replies to it.
fn ftplib_with_host(kind: Kind) {
    require("python3", "python3");
    let t = Tree::new();
    let s = start(kind, &t, &[]);
    let addr = s.addr(Family::V6);
    let script = format!(
        r#"
import ftplib
f = ftplib.FTP()
f.connect("{ip}", {port}, timeout=20)
h = f.sendcmd("HOST A.Example")
assert h.startswith("220-This is a.example.") and h.endswith("220 Host ready: log in with USER and PASS."), repr(h)
w = f.login()
assert w.startswith("230-Welcome to a.example.") and w.endswith("230 Logged in: anonymous read-only access."), repr(w)
data = []
f.retrbinary("RETR a.txt", data.append)
assert b"".join(data) == b"the a tree\n", data
assert sorted(f.nlst()) == ["a.txt", "sub"], f.nlst()
try:
    f.sendcmd("HOST b.example")
    raise SystemExit("HOST after login accepted")
except ftplib.error_perm as e:
    assert str(e).startswith("503"), e
g = ftplib.FTP()
g.connect("{ip}", {port}, timeout=20)
try:
    g.sendcmd("HOST nowhere.example")
    raise SystemExit("unknown host accepted")
except ftplib.error_perm as e:
    assert str(e).startswith("504"), e
g.login()
data = []
g.retrbinary("RETR default.txt", data.append)
assert b"".join(data) == b"the default tree\n", data
print("ok")
"#,
        ip = addr.ip(),
        port = addr.port()
    );
    let home = t.scratch("home");
    let mut cmd = client("python3", &home);
    cmd.args(["-c", &script]);
    let out = run(cmd, LIMIT);
    out.assert_success("ftplib with HOST");
    assert_eq!(out.stdout_text().trim(), "ok");
}

/// curl and lftp send no HOST: they get ROOT/0, through its welcome.
fn curl_and_lftp_on_the_default_tree(kind: Kind) {
    require("curl", "curl");
    require("lftp", "lftp");
    let t = Tree::new();
    let s = start(kind, &t, &[]);
    let base = format!("ftp://{}/", s.addr(Family::V4));
    let home = t.scratch("home");
    let mut cmd = client("curl", &home);
    cmd.args(["-sS", "--max-time", "60"])
        .arg(format!("{base}pub/in-default.txt"));
    let out = run(cmd, LIMIT);
    out.assert_success("curl");
    assert_eq!(out.stdout, b"in default pub\n");
    let mut cmd = client("lftp", &home);
    let script = format!(
        "set net:max-retries 1; set net:timeout 20; set cmd:fail-exit yes; \
         open {base}; cat default.txt; cat pub/in-default.txt; cls -1a /; bye"
    );
    cmd.args(["-c", &script]);
    let out = run(cmd, LIMIT);
    out.assert_success("lftp");
    let text = out.stdout_text();
    assert_eq!(
        text, "the default tree\nin default pub\n/default.txt\n/pub/\n",
        "{text}"
    );
}

// ------------------------------------------------------------ start

/// `--vhosts` without a published ROOT/0 is a configuration error (100):
/// clients that send no HOST would find nothing.
#[test]
fn without_a_default_tree_the_start_fails() {
    let t = Tree::new();
    let v = t.base.join("vroot-empty");
    mkdir(&v, 0o755);
    mkdir(&v.join("a.example"), 0o755);
    for zero in [None, Some(0o700)] {
        if let Some(mode) = zero {
            mkdir(&v.join("0"), mode);
            fs::set_permissions(v.join("0"), fs::Permissions::from_mode(mode)).unwrap();
        }
        let opts = Opts::new().arg("--vhosts");
        let mut cmd = ftpd_command(Kind::FtpdSetpriv, &opts, &v);
        cmd.stdin(Stdio::null());
        let out = run(cmd, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(100), "ftpd: {}", out.stderr_text());
        assert!(out.stderr_text().contains("/0"), "{}", out.stderr_text());

        let bin = supervisor_path().expect("aftpd-supervisor");
        let mut cmd = Command::new(bin);
        clean_env(&mut cmd);
        cmd.args(["--listen", "127.0.0.1:0", "--vhosts"])
            .arg(&v)
            .stdin(Stdio::null());
        let out = run(cmd, Duration::from_secs(10));
        assert_eq!(
            out.status.code(),
            Some(100),
            "supervisor: {}",
            out.stderr_text()
        );
    }
}
