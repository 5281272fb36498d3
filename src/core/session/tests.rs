//! The session core driven with byte strings against a real temporary tree:
//! no sockets.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;
use crate::core::config::SessionConfig;

struct Tree(PathBuf);

impl Tree {
    fn new() -> Tree {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aftpd-session-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pub/sub")).unwrap();
        std::fs::create_dir_all(dir.join(".hidden")).unwrap();
        std::fs::create_dir_all(dir.join("private-dir")).unwrap();
        std::fs::write(dir.join("pub/hello.txt"), b"hello\nworld\n").unwrap();
        std::fs::write(dir.join("pub/q\"uote"), b"q").unwrap();
        std::fs::write(dir.join(".secret"), b"secret").unwrap();
        std::fs::write(dir.join("private.txt"), b"private").unwrap();
        for d in [".", "pub", "pub/sub", ".hidden"] {
            std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for f in ["pub/hello.txt", "pub/q\"uote", ".secret"] {
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(
            dir.join("private.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(
            dir.join("private-dir"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        Tree(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct T {
    s: Session,
    _tree: Tree,
    now: Now,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn session_with(config: SessionConfig, local: &str, peer: &str) -> T {
    let tree = Tree::new();
    let root = Arc::new(crate::fs::Root::open(tree.path()).unwrap());
    let now = Now::get();
    let ends = Endpoints {
        local: Some(addr(local)),
        peer: Some(addr(peer)),
    };
    let s = Session::new(Arc::new(config), root, ends, now);
    T {
        s,
        _tree: tree,
        now,
    }
}

fn session() -> T {
    session_with(SessionConfig::default(), "127.0.0.1:21", "127.0.0.1:40000")
}

impl T {
    /// Everything the session wrote since the last call.
    fn out(&mut self) -> String {
        let o = String::from_utf8_lossy(self.s.output()).into_owned();
        let n = self.s.output().len();
        self.s.consume_output(n);
        o
    }

    fn send(&mut self, line: &str) -> String {
        self.s.on_control(line.as_bytes(), self.now);
        self.out()
    }

    fn login(&mut self) {
        self.out();
        assert!(self.send("USER anonymous\r\n").starts_with("331 "));
        assert!(self.send("PASS x@y\r\n").starts_with("230 "));
        self.actions();
    }

    fn actions(&mut self) -> Vec<Action> {
        let mut v = Vec::new();
        while let Some(a) = self.s.poll_action() {
            v.push(a);
        }
        v
    }

    /// The connection and source of the transfer asked for, if any.
    fn transfer(&mut self) -> Option<(DataConn, Source)> {
        self.actions().into_iter().find_map(|a| match a {
            Action::Transfer { conn, source } => Some((conn, source)),
            _ => None,
        })
    }

    fn code(&mut self, line: &str) -> u16 {
        let r = self.send(line);
        r.get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no reply to {line:?}: {r:?}"))
    }

    /// PASV with the driver's answer simulated.
    fn pasv(&mut self) -> String {
        self.s.on_control(b"PASV\r\n", self.now);
        let acts = self.actions();
        assert!(matches!(acts.as_slice(), [Action::Listen { .. }]));
        self.s.on_listening(Ok(addr("127.0.0.1:50001")), self.now);
        self.out()
    }
}

#[test]
fn greeting_and_login() {
    let mut t = session();
    assert!(t.out().starts_with("220 "));
    assert!(matches!(
        t.actions().as_slice(),
        [Action::Log(Record::SessionStart { .. })]
    ));
    assert_eq!(t.code("PASS x\r\n"), 503);
    assert_eq!(t.code("PWD\r\n"), 530);
    assert_eq!(t.code("RETR x\r\n"), 530);
    assert_eq!(t.code("STOR x\r\n"), 530);
    assert_eq!(t.code("SYST\r\n"), 215);
    assert_eq!(t.code("HOST ftp.example.org\r\n"), 220);
    assert_eq!(t.code("USER ftp\r\n"), 331);
    assert_eq!(t.code("HOST ftp.example.org\r\n"), 503);
    assert_eq!(t.code("PASS\r\n"), 230);
    assert_eq!(t.code("ACCT x\r\n"), 202);
    assert_eq!(t.code("PWD\r\n"), 257);
}

#[test]
fn no_greeting_when_disabled() {
    let config = SessionConfig {
        greeting: false,
        ..SessionConfig::default()
    };
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    assert_eq!(t.out(), "");
    assert_eq!(t.code("USER a\r\n"), 331);
}

#[test]
fn directories() {
    let mut t = session();
    t.login();
    assert_eq!(t.send("PWD\r\n"), "257 \"/\" is the current directory.\r\n");
    assert_eq!(t.code("CWD pub/sub\r\n"), 250);
    assert_eq!(
        t.send("XPWD\r\n"),
        "257 \"/pub/sub\" is the current directory.\r\n"
    );
    assert_eq!(t.code("CDUP\r\n"), 250);
    assert_eq!(t.code("CWD ../../..\r\n"), 250);
    assert!(t.send("PWD\r\n").starts_with("257 \"/\""));
    assert_eq!(t.code("CWD pub/hello.txt\r\n"), 550);
    assert_eq!(t.code("CWD nowhere\r\n"), 550);
    assert_eq!(t.code("CWD .hidden\r\n"), 550);
    assert_eq!(t.code("CWD private-dir\r\n"), 550);
    assert_eq!(t.code("CWD\r\n"), 501);
    assert!(t.send("PWD\r\n").starts_with("257 \"/\""));
}

#[test]
fn pwd_doubles_quotes() {
    let mut t = session();
    t.login();
    // Only directories can be the cwd; fake one through resolve's output.
    t.s.cwd = VPath::resolve(&VPath::root(), b"/a\"b").unwrap();
    assert_eq!(
        t.send("PWD\r\n"),
        "257 \"/a\"\"b\" is the current directory.\r\n"
    );
}

#[test]
fn transfer_parameters() {
    let mut t = session();
    t.login();
    for (cmd, code) in [
        ("TYPE A\r\n", 200),
        ("TYPE A N\r\n", 200),
        ("TYPE I\r\n", 200),
        ("TYPE L 8\r\n", 200),
        ("TYPE E\r\n", 504),
        ("TYPE Q\r\n", 501),
        ("STRU F\r\n", 200),
        ("STRU R\r\n", 504),
        ("MODE S\r\n", 200),
        ("MODE B\r\n", 504),
        ("ALLO 100\r\n", 202),
        ("NOOP\r\n", 200),
        ("FOO\r\n", 500),
        ("SITE CHMOD 777 x\r\n", 500),
        ("SITE\r\n", 501),
        ("AUTH TLS\r\n", 502),
    ] {
        assert_eq!(t.code(cmd), code, "{cmd:?}");
    }
}

#[test]
fn write_verbs_refused() {
    let mut t = session();
    t.login();
    for v in [
        "APPE a",
        "DELE pub/hello.txt",
        "MKD x",
        "XMKD x",
        "RMD pub",
        "XRMD pub",
        "RNFR pub/hello.txt",
    ] {
        assert_eq!(t.code(&format!("{v}\r\n")), 550, "{v}");
    }
    // RFC 959 §5.4 has no 550 for these.
    assert_eq!(t.code("STOR a\r\n"), 553);
    assert_eq!(t.code("STOU\r\n"), 553);
    assert_eq!(t.code("RNTO b\r\n"), 503);
    assert!(t.actions().is_empty());
    // Before login, all of them (and SITE) are 530.
    let mut t = session();
    t.out();
    for v in ["STOR a", "APPE a", "DELE a", "RNTO b", "SITE CHMOD 777 a"] {
        assert_eq!(t.code(&format!("{v}\r\n")), 530, "{v}");
    }
}

#[test]
fn port_only_to_the_client() {
    let mut t = session();
    t.login();
    assert_eq!(t.code("PORT 127,0,0,1,200,10\r\n"), 200);
    assert_eq!(t.code("PORT 127,0,0,2,200,10\r\n"), 504);
    assert_eq!(t.code("PORT 127,0,0,1,0,21\r\n"), 504);
    assert_eq!(t.code("PORT 127,0,0,1\r\n"), 501);
    assert_eq!(t.code("EPRT |1|127.0.0.1|2000|\r\n"), 200);
    assert_eq!(t.code("EPRT |2|::1|2000|\r\n"), 504);
    assert_eq!(t.code("EPRT |3|x|2000|\r\n"), 522);
    assert_eq!(t.code("EPRT garbage\r\n"), 501);
    // The unspecified address of the client's family means the client.
    assert_eq!(t.code("EPRT |2|::|2000|\r\n"), 504);
    for (cmd, port) in [
        ("PORT 0,0,0,0,7,209\r\n", 2001),
        ("EPRT |1|0.0.0.0|2002|\r\n", 2002),
    ] {
        assert_eq!(t.code(cmd), 200, "{cmd}");
        t.send("RETR pub/hello.txt\r\n");
        match t.transfer() {
            Some((DataConn::Active { to, .. }, _)) => {
                assert_eq!(to, addr(&format!("127.0.0.1:{port}")), "{cmd}")
            }
            _ => panic!("{cmd}: no active transfer"),
        }
        t.s.on_transfer_done(
            Err(TransferError::Connect(
                std::io::ErrorKind::ConnectionRefused.into(),
            )),
            t.now,
        );
        assert!(t.out().starts_with("425 "));
    }
}

#[test]
fn passive_replies() {
    let mut t = session();
    t.login();
    assert_eq!(t.pasv(), "227 Entering Passive Mode (127,0,0,1,195,81)\r\n");
    t.s.on_control(b"EPSV\r\n", t.now);
    let acts = t.actions();
    // The old listener is released before the new one is asked for.
    assert!(matches!(
        acts.as_slice(),
        [Action::AbortData, Action::Listen { .. }]
    ));
    t.s.on_listening(Ok(addr("127.0.0.1:50002")), t.now);
    assert_eq!(
        t.out(),
        "229 Entering Extended Passive Mode (|||50002|)\r\n"
    );
    assert_eq!(t.code("EPSV 2\r\n"), 522);
    assert_eq!(t.code("EPSV ALL\r\n"), 200);
    assert_eq!(t.code("PASV\r\n"), 503);
    assert_eq!(t.code("PORT 127,0,0,1,200,10\r\n"), 503);
}

#[test]
fn pasv_refused_on_ipv6() {
    let mut t = session_with(SessionConfig::default(), "[::1]:21", "[::1]:40000");
    t.login();
    assert_eq!(t.code("PASV\r\n"), 522);
    assert_eq!(t.code("EPSV 1\r\n"), 522);
    assert_eq!(t.code("EPRT |2|::1|3000|\r\n"), 200);
}

#[test]
fn mapped_addresses_are_ipv4() {
    let mut t = session_with(
        SessionConfig::default(),
        "[::ffff:127.0.0.1]:21",
        "[::ffff:127.0.0.1]:40000",
    );
    t.login();
    assert!(t.pasv().starts_with("227 "));
    assert!(t.s.data_peer_allowed(&addr("127.0.0.1:5000")));
    assert!(t.s.data_peer_allowed(&addr("[::ffff:127.0.0.1]:5000")));
    assert!(!t.s.data_peer_allowed(&addr("127.0.0.2:5000")));
}

#[test]
fn pasv_address_rule() {
    let config = SessionConfig {
        pasv_address: vec![crate::core::config::PasvRule::parse("127.0.0.0/8=192.0.2.7").unwrap()],
        ..SessionConfig::default()
    };
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    t.login();
    assert_eq!(t.pasv(), "227 Entering Passive Mode (192,0,2,7,195,81)\r\n");
}

#[test]
fn retr_flow() {
    let mut t = session();
    t.login();
    assert_eq!(t.code("RETR pub/hello.txt\r\n"), 425);
    t.pasv();
    assert_eq!(t.code("TYPE I\r\n"), 200);
    assert_eq!(t.send("RETR pub/hello.txt\r\n"), "");
    let acts = t.actions();
    match acts.as_slice() {
        [
            Action::Transfer {
                conn: DataConn::Passive,
                source:
                    Source::File {
                        offset: 0,
                        len: 12,
                        ascii: false,
                        ..
                    },
            },
        ] => {}
        _ => panic!("unexpected actions"),
    }
    // Commands wait behind the transfer, in order.
    assert_eq!(t.send("NOOP\r\n"), "");
    t.s.on_data_connected(t.now);
    assert!(
        t.out()
            .starts_with("150 Opening BINARY mode data connection for /pub/hello.txt (12 bytes)")
    );
    t.s.on_data_progress(12, t.now);
    t.s.on_transfer_done(Ok(12), t.now);
    assert_eq!(t.out(), "226 Transfer complete.\r\n200 NOOP ok.\r\n");
    let acts = t.actions();
    assert!(matches!(acts[0], Action::AbortData));
    match &acts[1] {
        Action::Log(Record::Transfer(r)) => {
            assert_eq!(r.bytes, 12);
            assert_eq!(r.result, "ok");
            assert_eq!(r.path.as_bytes(), b"/pub/hello.txt");
        }
        _ => panic!("no transfer record"),
    }
    // The listener was used up.
    assert_eq!(t.code("RETR pub/hello.txt\r\n"), 425);
}

#[test]
fn retr_refusals_open_no_connection() {
    let mut t = session();
    t.login();
    t.pasv();
    for f in [
        "nothing",
        ".secret",
        "private.txt",
        "pub",
        "../../.secret",
        "pub/sub",
    ] {
        assert_eq!(t.code(&format!("RETR {f}\r\n")), 550, "{f}");
    }
    assert!(t.actions().is_empty());
    assert_eq!(t.code("RETR a\0b\r\n"), 501);
}

#[test]
fn rest_then_retr() {
    let mut t = session();
    t.login();
    t.pasv();
    assert_eq!(t.code("REST 6\r\n"), 350);
    t.send("RETR pub/hello.txt\r\n");
    match t.actions().as_slice() {
        [
            Action::Transfer {
                source: Source::File {
                    offset: 6, len: 6, ..
                },
                ..
            },
        ] => {}
        _ => panic!("REST not applied"),
    }
    t.s.on_data_connected(t.now);
    t.s.on_transfer_done(Ok(6), t.now);
    t.out();
    t.actions();
    t.pasv();
    // Cleared by the RETR before.
    t.send("RETR pub/hello.txt\r\n");
    assert!(matches!(
        t.actions().as_slice(),
        [Action::Transfer {
            source: Source::File {
                offset: 0,
                len: 12,
                ..
            },
            ..
        }]
    ));
    t.s.on_transfer_done(Ok(12), t.now);
    t.out();
    t.actions();
    t.pasv();
    assert_eq!(t.code("REST 13\r\n"), 350);
    assert_eq!(t.code("RETR pub/hello.txt\r\n"), 554);
    assert_eq!(t.code("REST x\r\n"), 501);
}

#[test]
fn abort_during_transfer() {
    let mut t = session();
    t.login();
    t.pasv();
    t.send("RETR pub/hello.txt\r\n");
    t.actions();
    t.s.on_data_connected(t.now);
    t.out();
    // Telnet IP and Synch before ABOR, as RFC 959 describes.
    t.s.on_control(b"\xff\xf4\xff\xf2ABOR\r\n", t.now);
    assert_eq!(
        t.out(),
        "426 Transfer aborted.\r\n226 Abort successful.\r\n"
    );
    assert!(matches!(t.actions().first(), Some(Action::AbortData)));
    // A late completion from the driver is ignored.
    t.s.on_transfer_done(Ok(12), t.now);
    assert_eq!(t.out(), "");
    assert_eq!(t.code("ABOR\r\n"), 226);
    assert_eq!(t.code("NOOP\r\n"), 200);
}

#[test]
fn transfer_failures() {
    let mut t = session();
    t.login();
    for (err, code) in [
        (TransferError::Connect(std::io::Error::other("x")), "425"),
        (TransferError::Connection(std::io::Error::other("x")), "426"),
        (TransferError::Shrunk, "451"),
    ] {
        t.pasv();
        t.send("RETR pub/hello.txt\r\n");
        t.actions();
        t.s.on_transfer_done(Err(err), t.now);
        assert!(t.out().starts_with(code));
        assert!(matches!(t.actions().first(), Some(Action::AbortData)));
    }
}

#[test]
fn timeouts() {
    let config = SessionConfig {
        idle_timeout: Duration::from_secs(60),
        data_timeout: Duration::from_secs(5),
        ..SessionConfig::default()
    };
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    t.login();
    t.pasv();
    t.send("RETR pub/hello.txt\r\n");
    t.actions();
    let later = |t: &T, s: u64| Now {
        mono: t.now.mono + Duration::from_secs(s),
        wall: t.now.wall,
    };
    assert_eq!(
        t.s.next_deadline(),
        Some(t.now.mono + Duration::from_secs(5))
    );
    t.s.on_tick(later(&t, 6));
    assert!(t.out().starts_with("425 "));
    assert!(matches!(t.actions().first(), Some(Action::AbortData)));
    // Idle: 60 s after the last activity (the timeout at +6 s).
    t.s.on_tick(later(&t, 60));
    assert_eq!(t.out(), "");
    t.s.on_tick(later(&t, 67));
    assert!(t.out().starts_with("421 "));
    assert!(t.s.is_closed());
    assert!(matches!(t.actions().last(), Some(Action::Close)));
    assert_eq!(t.s.next_deadline(), None);
}

#[test]
fn a_listing_uses_up_a_rest_marker() {
    for listing in ["LIST", "NLST", "MLSD"] {
        let mut t = session();
        t.login();
        assert_eq!(t.code("REST 3\r\n"), 350);
        t.pasv();
        t.send(&format!("{listing} pub\r\n"));
        t.s.on_data_connected(t.now);
        t.s.on_transfer_done(Ok(10), t.now);
        t.out();
        t.actions();
        t.pasv();
        t.send("RETR pub/hello.txt\r\n");
        match t.transfer() {
            Some((_, Source::File { offset, .. })) => assert_eq!(offset, 0, "after {listing}"),
            _ => panic!("after {listing}: no file transfer"),
        }
    }
}

#[test]
fn data_waits_until_the_150_is_written() {
    let mut t = session();
    t.login();
    t.pasv();
    t.send("RETR pub/hello.txt\r\n");
    t.actions();
    assert!(t.s.data_may_flow(), "nothing announced yet");
    t.s.on_control(b"STAT\r\n", t.now);
    t.s.on_data_connected(t.now);
    assert!(!t.s.data_may_flow());
    // Written in parts: data waits for the last byte of the 150.
    let opening = t.s.output().len();
    assert!(String::from_utf8_lossy(t.s.output()).contains("150 "));
    t.s.consume_output(opening - 1);
    assert!(!t.s.data_may_flow());
    t.s.consume_output(1);
    assert!(t.s.data_may_flow());
    t.s.on_transfer_done(Ok(12), t.now);
    assert!(t.out().starts_with("226 "));
}

#[test]
fn what_is_not_published_reads_as_absent() {
    let mut t = session();
    t.login();
    t.pasv();
    for (cmd, private, missing) in [
        ("SIZE", "private.txt", "nothing.txt"),
        ("MDTM", "private.txt", "nothing.txt"),
        ("RETR", "private.txt", "nothing.txt"),
        ("MLST", "private.txt", "nothing.txt"),
        ("CWD", "private-dir", "nothing"),
        ("MLST", "private-dir/x", "nothing/x"),
        ("LIST", "private-dir", "nothing"),
        ("SIZE", ".secret", "nothing.txt"),
    ] {
        let a = t.send(&format!("{cmd} {private}\r\n"));
        let b = t.send(&format!("{cmd} {missing}\r\n"));
        assert_eq!(a, b, "{cmd}");
        assert!(a.starts_with('4') || a.starts_with('5'), "{cmd}: {a}");
    }
    assert!(t.actions().is_empty());
}

#[test]
fn a_transfer_is_stalled_only_when_nothing_is_acknowledged() {
    let config = SessionConfig {
        data_timeout: Duration::from_secs(5),
        ..SessionConfig::default()
    };
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    let at = |t: &T, s: u64| Now {
        mono: t.now.mono + Duration::from_secs(s),
        wall: t.now.wall,
    };
    t.login();
    t.pasv();
    t.send("RETR pub/hello.txt\r\n");
    t.actions();
    // Before the connection, acknowledgements mean nothing.
    assert!(!t.s.wants_data_acked(at(&t, 1)));
    t.s.on_data_acked(100, at(&t, 1));
    assert_eq!(t.s.next_deadline(), Some(at(&t, 5).mono));
    t.s.on_data_connected(at(&t, 1));
    assert!(t.out().starts_with("150 "));
    t.s.on_data_progress(8, at(&t, 2));
    // No write since +2 s, but the client took more: not stalled.
    assert!(!t.s.wants_data_acked(at(&t, 6)));
    assert!(t.s.wants_data_acked(at(&t, 7)));
    t.s.on_data_acked(4, at(&t, 7));
    t.s.on_tick(at(&t, 7));
    assert_eq!(t.out(), "");
    assert_eq!(t.s.next_deadline(), Some(at(&t, 12).mono));
    // The same count again is no progress.
    t.s.on_data_acked(4, at(&t, 12));
    t.s.on_tick(at(&t, 12));
    assert!(t.out().starts_with("426 "));
    assert!(matches!(t.actions().first(), Some(Action::AbortData)));
    assert!(!t.s.wants_data_acked(at(&t, 20)));
}

#[test]
fn size_and_mdtm() {
    let mut t = session();
    t.login();
    assert_eq!(
        t.code("SIZE pub/hello.txt\r\n"),
        550,
        "TYPE A is the default"
    );
    assert_eq!(t.code("TYPE I\r\n"), 200);
    assert_eq!(t.send("SIZE pub/hello.txt\r\n"), "213 12\r\n");
    assert_eq!(t.code("SIZE pub\r\n"), 550);
    assert_eq!(t.code("SIZE private.txt\r\n"), 550);
    assert_eq!(t.code("SIZE .secret\r\n"), 550);
    let r = t.send("MDTM pub/hello.txt\r\n");
    assert!(
        r.starts_with("213 2") && r.len() == "213 YYYYMMDDHHMMSS\r\n".len(),
        "{r:?}"
    );
    assert_eq!(t.code("MDTM nothing\r\n"), 550);
}

#[test]
fn listings_need_a_data_connection_and_a_path() {
    let mut t = session();
    t.login();
    assert_eq!(t.code("LIST\r\n"), 425);
    t.pasv();
    assert_eq!(t.code("LIST nothing\r\n"), 450);
    assert_eq!(t.code("NLST .hidden\r\n"), 450);
    assert_eq!(t.code("MLSD pub/hello.txt\r\n"), 501);
    assert_eq!(t.code("MLSD nothing\r\n"), 550);
    assert!(t.actions().is_empty());
    t.send("LIST -la pub\r\n");
    assert!(matches!(
        t.actions().as_slice(),
        [Action::Transfer {
            source: Source::Listing(_),
            ..
        }]
    ));
}

#[test]
fn mlst_and_opts() {
    let mut t = session();
    t.login();
    let r = t.send("MLST pub/hello.txt\r\n");
    let lines: Vec<&str> = r.split("\r\n").collect();
    assert_eq!(lines[0], "250-Listing /pub/hello.txt");
    assert!(lines[1].starts_with(" type=file;size=12;modify="), "{r}");
    assert!(lines[1].ends_with("; /pub/hello.txt"), "{r}");
    assert!(lines[2].starts_with("250 "));
    assert_eq!(
        t.send("OPTS MLST type;size;\r\n"),
        "200 MLST OPTS type;size;\r\n"
    );
    assert_eq!(
        t.send("MLST pub\r\n").split("\r\n").nth(1),
        Some(" type=dir; /pub")
    );
    assert!(
        t.send("FEAT\r\n")
            .contains(" MLST type*;size*;modify;perm;unique;unix.mode;\r\n")
    );
    assert_eq!(t.code("MLST nothing\r\n"), 550);
    assert_eq!(t.code("OPTS UTF8 ON\r\n"), 200);
    assert_eq!(t.code("OPTS NONSENSE\r\n"), 501);
}

#[test]
fn feat_and_help() {
    let mut t = session();
    let _ = t.out();
    let feat = t.send("FEAT\r\n");
    assert!(feat.starts_with("211-"));
    assert!(feat.ends_with("211 End\r\n"));
    for line in feat
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with("211"))
    {
        assert!(line.starts_with(' ') && !line.starts_with("  "), "{line:?}");
    }
    for f in [
        " EPRT\r\n",
        " EPSV\r\n",
        " MDTM\r\n",
        " PASV\r\n",
        " REST STREAM\r\n",
        " SIZE\r\n",
        " UTF8\r\n",
    ] {
        assert!(feat.contains(f), "{f}");
    }
    let help = t.send("HELP\r\n");
    assert!(help.starts_with("214-") && help.ends_with("214 Help OK.\r\n"));
    assert_eq!(t.code("HELP RETR\r\n"), 214);
}

#[test]
fn stat_server_and_path() {
    let mut t = session();
    t.login();
    let r = t.send("STAT\r\n");
    assert!(
        r.starts_with("211-") && r.ends_with("211 End of status.\r\n"),
        "{r}"
    );
    let r = t.send("STAT pub\r\n");
    assert!(r.starts_with("213-Status of /pub:\r\n"), "{r}");
    assert!(r.contains(" hello.txt\r\n"), "{r}");
    assert!(r.ends_with("213 End of status.\r\n"), "{r}");
    assert_eq!(t.code("STAT nothing\r\n"), 450);
}

#[test]
fn bad_input_answered() {
    let mut t = session();
    t.out();
    let long = format!("{}\r\nNOOP\r\n", "A".repeat(100 * 1024));
    assert_eq!(
        t.send(&long),
        "500 Command line too long.\r\n200 NOOP ok.\r\n"
    );
    assert_eq!(t.send("noop\n"), "200 NOOP ok.\r\n");
    assert_eq!(t.send("\r\n"), "500 Unknown command.\r\n");
    t.s.on_control(b"\xff\xfb\x18NOOP\r\n", t.now);
    assert_eq!(t.s.output(), b"\xff\xfe\x18200 NOOP ok.\r\n");
}

#[test]
fn pipelined_commands_in_order() {
    let mut t = session();
    t.out();
    assert_eq!(
        t.send("USER a\r\nPASS b\r\nTYPE I\r\nSIZE pub/hello.txt\r\nQUIT\r\nNOOP\r\n"),
        "331 Anonymous login: any password will do.\r\n230 Logged in: anonymous read-only access.\r\n200 Switching to BINARY mode.\r\n213 12\r\n221 Goodbye.\r\n"
    );
    assert!(t.s.is_closed());
    assert!(!t.s.wants_control_input());
}

#[test]
fn eof_ends_the_session() {
    let mut t = session();
    t.login();
    t.pasv();
    t.send("RETR pub/hello.txt\r\n");
    t.actions();
    t.s.on_control_eof(t.now);
    let acts = t.actions();
    assert!(matches!(acts.first(), Some(Action::AbortData)));
    assert!(matches!(acts.last(), Some(Action::Close)));
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Log(Record::SessionEnd { reason: "eof", .. })))
    );
}

#[test]
fn an_idle_session_is_small() {
    // The supervisor holds thousands of idle sessions: keep the core's part
    // of each to a few hundred bytes (heap buffers are empty when idle).
    let size = std::mem::size_of::<Session>();
    assert!(size <= 512, "Session is {size} bytes");
    let mut t = session();
    t.login();
    assert!(t.s.out.capacity() <= 256, "output buffer released");
    assert_eq!(t.s.input.buffered(), 0);
}
