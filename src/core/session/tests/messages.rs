//! Messages (banner, welcome, `.message`) and virtual hosts (HOST with
//! `--vhosts`), over the in-memory tree.

use super::*;
use crate::core::memfs::MemTree;
use crate::core::message::Message;

fn with(config: SessionConfig, fs: MemFs) -> T {
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    t.fs = fs;
    t
}

fn messages_tree() -> MemFs {
    let mut fs = tree();
    fs.file(
        "pub/.message",
        0o644,
        b"About pub:\n226 is not the end\n\x1b[2Jgone\n",
    )
    .file("pub/sub/.message", 0o600, b"not for the world")
    .file("private-dir/.message", 0o644, b"inside a private directory")
    .dir("quiet", 0o755);
    fs
}

/// The layout of `--vhosts`: `/0` by default, `/a.example` a host with
/// its own banner and welcome, `/b.example` a host with neither.
fn hosts_tree() -> MemFs {
    let mut fs = MemFs::new();
    fs.vhosts()
        .dir("0", 0o755)
        .file("0/default.txt", 0o644, b"default")
        .dir("a.example", 0o755)
        .file("a.example/a.txt", 0o644, b"aaa")
        .file("a.example/.banner", 0o644, b"This is A.\n220 still A\n")
        .file("a.example/.welcome", 0o644, b"Welcome to A.\n")
        .dir("b.example", 0o755)
        .file("b.example/b.txt", 0o644, b"bb")
        .dir("private.example", 0o700)
        .file("top.txt", 0o644, b"not in any tree");
    fs
}

fn vhosts() -> SessionConfig {
    SessionConfig {
        vhosts: true,
        ..SessionConfig::default()
    }
}

/// Answers `asked` (requests in the order asked, ids from 0 as the
/// session counts them since the last call: the test holds one at a time).
fn answer(t: &mut T, asked: Vec<(Tree<Mem>, FsRequest<Mem>)>) {
    for (tree, request) in asked {
        let id = t.s.next_fs_id.wrapping_sub(1);
        let answer = t.fs.answer(&tree, request);
        t.s.on_fs(id, answer, t.now);
    }
}

/// The filesystem requests asked, with their trees.
fn requests(t: &mut T) -> Vec<(Tree<Mem>, FsRequest<Mem>)> {
    t.run();
    t.held.drain(..).map(|(_, tree, r)| (tree, r)).collect()
}

#[test]
fn a_banner_is_a_multi_line_greeting() {
    let config = SessionConfig {
        banner: Some(Message::parse(
            b"Mirror of example.org\n220 servers\n\nBe nice.\n",
        )),
        ..SessionConfig::default()
    };
    let mut t = session_with(config.clone(), "127.0.0.1:21", "127.0.0.1:40000");
    assert_eq!(
        t.out(),
        "220-Mirror of example.org\r\n 220 servers\r\n\r\nBe nice.\r\n\
         220 aftpd: anonymous read-only FTP server ready.\r\n"
    );
    let quiet = SessionConfig {
        greeting: false,
        ..config
    };
    let mut t = session_with(quiet, "127.0.0.1:21", "127.0.0.1:40000");
    assert_eq!(t.out(), "");
}

#[test]
fn a_welcome_comes_with_the_login() {
    let config = SessionConfig {
        welcome: Some(Message::parse(b"Hello.\n230 files here\n")),
        ..SessionConfig::default()
    };
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    t.out();
    t.send("USER ftp\r\n");
    t.answer = false;
    assert_eq!(
        t.send("PASS x\r\n"),
        "230-Hello.\r\n 230 files here\r\n230 Logged in: anonymous read-only access.\r\n"
    );
    // Without --vhosts there is no welcome file to look for.
    assert!(t.held.is_empty());
    assert_eq!(t.send("PASS x\r\n"), "202 Already logged in.\r\n");
}

#[test]
fn a_directory_message_once_a_session() {
    let config = SessionConfig {
        dir_messages: true,
        ..SessionConfig::default()
    };
    let mut t = with(config, messages_tree());
    t.login();
    assert_eq!(
        t.send("CWD pub\r\n"),
        "250-About pub:\r\n 226 is not the end\r\n?[2Jgone\r\n250 Directory changed.\r\n"
    );
    assert_eq!(t.send("CDUP\r\n"), "250 Directory changed.\r\n");
    // Shown once: the second time in, and the file is not even read.
    t.answer = false;
    assert_eq!(t.send("CWD /pub\r\n"), "");
    let asked = requests(&mut t);
    assert!(matches!(
        asked.as_slice(),
        [(Tree::Default, FsRequest::Stat(_))]
    ));
    answer(&mut t, asked);
    assert_eq!(t.out(), "250 Directory changed.\r\n");
    assert!(requests(&mut t).is_empty());
    t.answer = true;
    // A message the world may not read, or in a directory it may not,
    // is not shown; nor is a missing one.
    assert_eq!(t.send("CWD sub\r\n"), "250 Directory changed.\r\n");
    assert_eq!(t.code("CWD /private-dir\r\n"), 550);
    assert_eq!(t.send("CWD /quiet\r\n"), "250 Directory changed.\r\n");
    // And it is never served or listed: a dotfile.
    assert_eq!(t.code("RETR /pub/.message\r\n"), 550);
    assert_eq!(t.code("SIZE /pub/.message\r\n"), 550);
}

#[test]
fn without_dir_messages_no_message_is_looked_for() {
    let mut t = with(SessionConfig::default(), messages_tree());
    t.login();
    t.answer = false;
    t.send("CWD pub\r\n");
    let asked = requests(&mut t);
    assert!(matches!(asked.as_slice(), [(_, FsRequest::Stat(_))]));
    answer(&mut t, asked);
    assert_eq!(t.out(), "250 Directory changed.\r\n");
}

/// A message that does not come in time costs the message, not the CWD
/// or the login.
#[test]
fn a_message_that_never_comes() {
    let config = SessionConfig {
        vhosts: true,
        data_timeout: Duration::from_secs(5),
        welcome: Some(Message::parse(b"Global welcome")),
        ..SessionConfig::default()
    };
    let mut fs = hosts_tree();
    fs.file("0/.welcome", 0o644, b"Default's own welcome");
    let mut t = with(config, fs);
    t.out();
    t.send("USER ftp\r\n");
    t.answer = false;
    assert_eq!(t.send("PASS x\r\nPWD\r\n"), "");
    assert!(matches!(
        requests(&mut t).as_slice(),
        [(Tree::Default, FsRequest::Message { .. })]
    ));
    t.s.on_tick(t.later(5));
    assert_eq!(
        t.out(),
        "230-Global welcome\r\n230 Logged in: anonymous read-only access.\r\n\
         257 \"/\" is the current directory.\r\n"
    );
    // CWD: the Stat answered, the Message not.
    let mut t2 = with(
        SessionConfig {
            dir_messages: true,
            data_timeout: Duration::from_secs(5),
            ..SessionConfig::default()
        },
        messages_tree(),
    );
    t2.login();
    t2.answer = false;
    t2.s.on_control(b"CWD pub\r\n", t2.now);
    let asked = requests(&mut t2);
    assert!(matches!(asked.as_slice(), [(_, FsRequest::Stat(_))]));
    answer(&mut t2, asked);
    assert!(matches!(
        requests(&mut t2).as_slice(),
        [(_, FsRequest::Message { .. })]
    ));
    assert_eq!(t2.out(), "");
    t2.s.on_tick(t2.later(5));
    assert_eq!(t2.out(), "250 Directory changed.\r\n");
    assert!(t2.send("PWD\r\n").starts_with("257 \"/pub\""));
}

#[test]
fn without_host_the_default_tree() {
    let mut t = with(vhosts(), hosts_tree());
    t.login();
    assert_eq!(
        t.send("SIZE default.txt\r\n"),
        "550 SIZE not available in ASCII mode: use TYPE I.\r\n"
    );
    assert_eq!(t.code("TYPE I\r\n"), 200);
    assert_eq!(t.send("SIZE default.txt\r\n"), "213 7\r\n");
    assert_eq!(t.code("SIZE /top.txt\r\n"), 550);
    assert_eq!(t.code("SIZE /a.example/a.txt\r\n"), 550);
    assert_eq!(t.code("CWD ..\r\n"), 250);
    assert_eq!(t.code("SIZE ../../top.txt\r\n"), 550);
    assert!(t.send("PWD\r\n").starts_with("257 \"/\""));
}

#[test]
fn host_selects_a_tree() {
    let config = SessionConfig {
        welcome: Some(Message::parse(b"Global welcome")),
        ..vhosts()
    };
    let mut t = with(config, hosts_tree());
    t.out();
    assert_eq!(
        t.send("HOST A.Example.\r\n"),
        "220-This is A.\r\n 220 still A\r\n220 Host ready: log in with USER and PASS.\r\n"
    );
    assert_eq!(t.code("USER ftp\r\n"), 331);
    // The host's own welcome, not the global one.
    assert_eq!(
        t.send("PASS x\r\n"),
        "230-Welcome to A.\r\n230 Logged in: anonymous read-only access.\r\n"
    );
    assert_eq!(t.code("TYPE I\r\n"), 200);
    assert_eq!(t.send("SIZE a.txt\r\n"), "213 3\r\n");
    assert_eq!(t.code("SIZE /default.txt\r\n"), 550);
    assert_eq!(t.code("RETR .banner\r\n"), 550);
    assert_eq!(t.code("CWD ..\r\n"), 250);
    assert_eq!(t.send("SIZE ../a.txt\r\n"), "213 3\r\n");
    t.answer = false;
    t.send("SIZE a.txt\r\n");
    assert!(matches!(
        requests(&mut t).as_slice(),
        [(Tree::Host(MemTree(dir)), FsRequest::Stat(_))] if dir == b"/a.example"
    ));
}

#[test]
fn a_host_without_messages() {
    let config = SessionConfig {
        welcome: Some(Message::parse(b"Global welcome")),
        ..vhosts()
    };
    let mut t = with(config, hosts_tree());
    t.out();
    assert_eq!(
        t.send("HOST b.example\r\n"),
        "220 Host ready: log in with USER and PASS.\r\n"
    );
    t.send("USER ftp\r\n");
    assert_eq!(
        t.send("PASS x\r\n"),
        "230-Global welcome\r\n230 Logged in: anonymous read-only access.\r\n"
    );
    assert_eq!(t.code("TYPE I\r\n"), 200);
    assert_eq!(t.send("SIZE b.txt\r\n"), "213 2\r\n");
}

#[test]
fn unknown_hosts() {
    let mut t = with(vhosts(), hosts_tree());
    t.out();
    for name in ["c.example", "private.example", "top.txt"] {
        assert_eq!(
            t.send(&format!("HOST {name}\r\n")),
            "504 Unknown host.\r\n",
            "{name}"
        );
    }
    // Not a host name at all (the parser's 501), never a path.
    for name in ["..", ".", "../0", "a/b", "a_b", "[::1"] {
        assert_eq!(t.code(&format!("HOST {name}\r\n")), 501, "{name}");
    }
    // A failed HOST leaves the tree as it was.
    assert_eq!(t.code("HOST a.example\r\n"), 220);
    assert_eq!(t.code("HOST nowhere.example\r\n"), 504);
    t.send("USER ftp\r\n");
    t.send("PASS x\r\n");
    t.send("TYPE I\r\n");
    assert_eq!(t.send("SIZE a.txt\r\n"), "213 3\r\n");
    assert_eq!(t.code("HOST b.example\r\n"), 503);
}

#[test]
fn host_before_user_only() {
    let mut t = with(vhosts(), hosts_tree());
    t.out();
    assert_eq!(t.code("USER ftp\r\n"), 331);
    t.answer = false;
    assert_eq!(
        t.send("HOST a.example\r\n"),
        "503 HOST must come before USER.\r\n"
    );
    assert!(requests(&mut t).is_empty());
}

#[test]
fn host_without_vhosts_changes_nothing() {
    let mut t = session();
    t.out();
    t.answer = false;
    assert_eq!(t.send("HOST a.example\r\n"), "220 Host accepted.\r\n");
    assert!(requests(&mut t).is_empty());
}

#[test]
fn pipelined_host_user_pass() {
    let mut t = with(vhosts(), hosts_tree());
    t.out();
    let out = t.send("HOST b.example\r\nUSER ftp\r\nPASS x\r\nTYPE I\r\nSIZE b.txt\r\n");
    assert_eq!(
        out,
        "220 Host ready: log in with USER and PASS.\r\n\
         331 Anonymous login: any password will do.\r\n\
         230 Logged in: anonymous read-only access.\r\n\
         200 Switching to BINARY mode.\r\n213 2\r\n"
    );
}

/// HOST that the filesystem cannot answer in time: 421, and the session
/// ends (the client may connect again).
#[test]
fn a_host_lookup_that_never_comes() {
    let config = SessionConfig {
        data_timeout: Duration::from_secs(5),
        ..vhosts()
    };
    let mut t = with(config, hosts_tree());
    t.out();
    t.answer = false;
    assert_eq!(t.send("HOST a.example\r\n"), "");
    t.s.on_tick(t.later(5));
    assert!(t.out().starts_with("421 "));
    assert!(t.s.is_closed());
}

#[test]
fn a_session_with_a_host_stays_small() {
    let size = std::mem::size_of::<Session<Mem>>();
    assert!(size <= 512, "Session is {size} bytes");
}

#[test]
fn the_default_tree_has_its_own_welcome_too() {
    let mut fs = hosts_tree();
    fs.file("0/.welcome", 0o644, b"Default's own welcome\n");
    let mut t = with(vhosts(), fs);
    t.out();
    t.send("USER ftp\r\n");
    assert_eq!(
        t.send("PASS x\r\n"),
        "230-Default's own welcome\r\n230 Logged in: anonymous read-only access.\r\n"
    );
}

/// A session remembers the last 64 directories it was shown the message
/// of: the 65th back shows the first again.
#[test]
fn shown_is_bounded() {
    let config = SessionConfig {
        dir_messages: true,
        ..SessionConfig::default()
    };
    let mut fs = MemFs::new();
    for i in 0..=64 {
        fs.dir(&format!("d{i}"), 0o755)
            .file(&format!("d{i}/.message"), 0o644, b"here");
    }
    let mut t = with(config, fs);
    t.login();
    for i in 0..=64 {
        assert!(
            t.send(&format!("CWD /d{i}\r\n")).starts_with("250-here"),
            "{i}"
        );
    }
    assert!(t.send("CWD /d64\r\n").starts_with("250 "));
    assert!(t.send("CWD /d0\r\n").starts_with("250-here"));
}
