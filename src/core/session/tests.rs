//! The session core driven with byte strings against an in-memory tree:
//! no sockets, no disk. Filesystem requests are answered at once, as
//! `ftpd` answers them, unless a test holds them back.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::core::config::SessionConfig;
use crate::core::memfs::{Mem, MemFs};

fn tree() -> MemFs {
    let mut fs = MemFs::new();
    fs.dir("pub", 0o755)
        .dir("pub/sub", 0o755)
        .dir(".hidden", 0o755)
        .dir("private-dir", 0o700)
        .file("pub/hello.txt", 0o644, b"hello\nworld\n")
        .file("pub/q\"uote", 0o644, b"q")
        .file(".secret", 0o644, b"secret")
        .file("private.txt", 0o600, b"private")
        .file("private-dir/inner.txt", 0o644, b"inner")
        .other("pub/fifo");
    for i in 0..10 {
        fs.file(&format!("pub/sub/f{i}"), 0o644, b"x");
    }
    fs
}

struct T {
    s: Session<Mem>,
    fs: MemFs,
    now: Now,
    /// Answer filesystem requests as they come (else they wait in `held`).
    answer: bool,
    held: Vec<(u32, Tree<Mem>, FsRequest<Mem>)>,
    /// Actions other than filesystem requests, in order.
    seen: Vec<Action<Mem>>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn session_with(config: SessionConfig, local: &str, peer: &str) -> T {
    let now = Now::get();
    let ends = Endpoints {
        local: Some(addr(local)),
        peer: Some(addr(peer)),
    };
    let s = Session::new(Arc::new(config), ends, now);
    T {
        s,
        fs: tree(),
        now,
        answer: true,
        held: Vec::new(),
        seen: Vec::new(),
    }
}

fn session() -> T {
    session_with(SessionConfig::default(), "127.0.0.1:21", "127.0.0.1:40000")
}

impl T {
    /// Carries out the session's requests as an engine would: filesystem
    /// ones answered from the tree, the rest kept for the test.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let Some(a) = self.s.poll_action() else {
                return;
            };
            match a {
                Action::Fs { id, tree, request } if self.answer => {
                    let answer = self.fs.answer(&tree, request);
                    self.s.on_fs(id, answer, self.now);
                }
                Action::Fs { id, tree, request } => self.held.push((id, tree, request)),
                other => self.seen.push(other),
            }
        }
        panic!("the session never stopped asking");
    }

    /// Everything the session wrote since the last call.
    fn out(&mut self) -> String {
        self.run();
        let o = String::from_utf8_lossy(self.s.output()).into_owned();
        let n = self.s.output().len();
        self.s.consume_output(n);
        self.run();
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

    fn actions(&mut self) -> Vec<Action<Mem>> {
        self.run();
        std::mem::take(&mut self.seen)
    }

    /// The connection and source of the transfer asked for, if any.
    fn transfer(&mut self) -> Option<(DataConn, Source<Mem>)> {
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

    /// PASV with the engine's answer simulated.
    fn pasv(&mut self) -> String {
        self.s.on_control(b"PASV\r\n", self.now);
        let acts = self.actions();
        assert!(matches!(acts.as_slice(), [Action::Listen { .. }]));
        self.s.on_listening(Ok(addr("127.0.0.1:50001")), self.now);
        self.out()
    }

    /// A listing's bytes, as the data path takes them, to the end.
    fn stream(&mut self) -> String {
        let mut got = Vec::new();
        for _ in 0..10_000 {
            self.run();
            match self.s.data_output() {
                DataOut::Bytes(b) => {
                    // A piece at a time, as a socket takes it.
                    let n = b.len().min(100);
                    got.extend_from_slice(&b[..n]);
                    self.s.consume_data(n);
                }
                DataOut::Wait => panic!("the listing waits for nothing"),
                DataOut::End => return String::from_utf8(got).unwrap(),
            }
        }
        panic!("the listing never ended");
    }

    fn later(&self, secs: u64) -> Now {
        Now {
            mono: self.now.mono + Duration::from_secs(secs),
            wall: self.now.wall,
        }
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
    assert_eq!(t.code("CLNT NcFTP 3.2.6 linux-x86_64\r\n"), 200);
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
fn an_unused_passive_listener_is_closed_after_the_data_timeout() {
    let config = SessionConfig {
        data_timeout: Duration::from_secs(5),
        ..SessionConfig::default()
    };
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    t.login();
    t.pasv();
    assert_eq!(t.s.next_deadline(), Some(t.later(5).mono));
    t.s.on_tick(t.later(4));
    assert!(t.actions().is_empty());
    t.s.on_tick(t.later(5));
    assert!(matches!(t.actions().as_slice(), [Action::AbortData]));
    assert_eq!(t.out(), "", "closed silently");
    assert_eq!(t.code("RETR pub/hello.txt\r\n"), 425);
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
    match t.actions().as_slice() {
        [
            Action::Transfer {
                conn: DataConn::Passive,
                source:
                    Source::File {
                        offset: 0,
                        len: 12,
                        ascii: false,
                        file,
                    },
            },
        ] => assert_eq!(file.body, b"hello\nworld\n"),
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
        "pub/fifo",
        "../../.secret",
        "pub/sub",
        "private-dir/inner.txt",
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
    // A late completion from the engine is ignored.
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
    assert_eq!(t.s.next_deadline(), Some(t.later(5).mono));
    t.s.on_tick(t.later(6));
    assert!(t.out().starts_with("425 "));
    assert!(matches!(t.actions().first(), Some(Action::AbortData)));
    // Idle: 60 s after the last activity (the timeout at +6 s).
    t.s.on_tick(t.later(60));
    assert_eq!(t.out(), "");
    t.s.on_tick(t.later(67));
    assert!(t.out().starts_with("421 "));
    assert!(t.s.is_closed());
    assert!(matches!(t.actions().last(), Some(Action::Close)));
    assert_eq!(t.s.next_deadline(), None);
}

/// A filesystem answer that does not come within the data timeout is
/// given up on: the command is answered 450, the session goes on, and the
/// late answer is dropped.
#[test]
fn a_filesystem_answer_that_never_comes() {
    let config = SessionConfig {
        data_timeout: Duration::from_secs(5),
        ..SessionConfig::default()
    };
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    t.login();
    t.answer = false;
    assert_eq!(t.send("SIZE pub/hello.txt\r\nNOOP\r\n"), "");
    assert_eq!(t.held.len(), 1);
    assert_eq!(t.s.next_deadline(), Some(t.later(5).mono));
    t.s.on_tick(t.later(5));
    assert_eq!(
        t.out(),
        "450 Temporarily unavailable; try again later.\r\n200 NOOP ok.\r\n"
    );
    let (id, tree, request) = t.held.pop().unwrap();
    let late = t.fs.answer(&tree, request);
    t.s.on_fs(id, late, t.later(6));
    assert_eq!(t.out(), "");
    t.answer = true;
    assert_eq!(t.code("TYPE I\r\n"), 200);
    assert_eq!(t.send("SIZE pub/hello.txt\r\n"), "213 12\r\n");
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
        ("RETR", "pub/fifo", "nothing.txt"),
        ("MLST", "private.txt", "nothing.txt"),
        ("CWD", "private-dir", "nothing"),
        ("MLST", "private-dir/x", "nothing/x"),
        ("LIST", "private-dir", "nothing"),
        ("NLST", "private-dir/inner.txt", "nothing"),
        ("MLSD", "private-dir", "nothing"),
        ("STAT", "private-dir", "nothing"),
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
    t.login();
    t.pasv();
    t.send("RETR pub/hello.txt\r\n");
    t.actions();
    // Before the connection, acknowledgements mean nothing.
    assert!(!t.s.wants_data_acked(t.later(1)));
    t.s.on_data_acked(100, t.later(1));
    assert_eq!(t.s.next_deadline(), Some(t.later(5).mono));
    t.s.on_data_connected(t.later(1));
    assert!(t.out().starts_with("150 "));
    t.s.on_data_progress(8, t.later(2));
    // No write since +2 s, but the client took more: not stalled.
    assert!(!t.s.wants_data_acked(t.later(6)));
    assert!(t.s.wants_data_acked(t.later(7)));
    t.s.on_data_acked(4, t.later(7));
    t.s.on_tick(t.later(7));
    assert_eq!(t.out(), "");
    assert_eq!(t.s.next_deadline(), Some(t.later(12).mono));
    // The same count again is no progress.
    t.s.on_data_acked(4, t.later(12));
    t.s.on_tick(t.later(12));
    assert!(t.out().starts_with("426 "));
    assert!(matches!(t.actions().first(), Some(Action::AbortData)));
    assert!(!t.s.wants_data_acked(t.later(20)));
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
    assert_eq!(t.send("MDTM pub/hello.txt\r\n"), "213 20231114221320\r\n");
    assert_eq!(t.code("MDTM nothing\r\n"), 550);
}

#[test]
fn listings_need_a_data_connection_and_a_path() {
    let mut t = session();
    t.login();
    assert_eq!(t.code("LIST\r\n"), 425);
    t.pasv();
    // 550, not 450: clients take 450 for "try again" (lftp retries for
    // half an hour).
    assert_eq!(t.code("LIST nothing\r\n"), 550);
    assert_eq!(t.code("NLST .hidden\r\n"), 550);
    assert_eq!(t.code("MLSD pub/hello.txt\r\n"), 501);
    assert_eq!(t.code("MLSD nothing\r\n"), 550);
    assert!(t.actions().is_empty());
    t.send("LIST -la pub\r\n");
    assert!(matches!(
        t.actions().as_slice(),
        [Action::Transfer {
            source: Source::Stream,
            ..
        }]
    ));
}

/// A listing comes batch by batch from the filesystem and goes out as the
/// data connection takes it; hidden and unpublished entries never.
#[test]
fn listings_stream_batch_by_batch() {
    let mut t = session();
    t.login();
    t.pasv();
    t.send("NLST pub/sub\r\n");
    t.actions();
    t.s.on_data_connected(t.now);
    assert!(t.out().starts_with("150 "));
    let names = t.stream();
    let expected: String = (0..10).map(|i| format!("f{i}\r\n")).collect();
    assert_eq!(names, expected);
    t.s.on_transfer_done(Ok(names.len() as u64), t.now);
    assert_eq!(t.out(), "226 Transfer complete.\r\n");
    t.actions();
    t.pasv();
    t.send("LIST pub\r\n");
    t.actions();
    t.s.on_data_connected(t.now);
    t.out();
    let lines = t.stream();
    let names: Vec<&str> = lines
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(names, ["hello.txt", "q\"uote", "sub"]);
    assert!(lines.starts_with("-rw-r--r--    1 ftp      ftp            12 "));
    // A file is listed as its one line.
    t.s.on_transfer_done(Ok(1), t.now);
    t.out();
    t.actions();
    t.pasv();
    t.send("LIST pub/hello.txt\r\n");
    t.actions();
    t.s.on_data_connected(t.now);
    t.out();
    assert!(t.stream().ends_with(" hello.txt\r\n"));
}

/// An aborted listing drops the directory, and a batch that arrives for
/// it afterwards is ignored.
#[test]
fn abort_during_a_listing() {
    let mut t = session();
    t.login();
    t.pasv();
    t.answer = false;
    t.send("LIST pub/sub\r\n");
    let (id, tree, request) = t.held.pop().unwrap();
    let answer = t.fs.answer(&tree, request);
    t.s.on_fs(id, answer, t.now);
    t.actions();
    t.s.on_data_connected(t.now);
    t.out();
    // The first batch is asked for; ABOR comes before it.
    let (id, tree, request) = t.held.pop().unwrap();
    t.s.on_control(b"ABOR\r\n", t.now);
    assert_eq!(
        t.out(),
        "426 Transfer aborted.\r\n226 Abort successful.\r\n"
    );
    let answer = t.fs.answer(&tree, request);
    t.s.on_fs(id, answer, t.now);
    assert_eq!(t.s.data_output(), DataOut::End);
    assert_eq!(t.out(), "");
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
    // Several batches.
    let r = t.send("STAT pub/sub\r\n");
    assert_eq!(r.matches("\r\n").count(), 12, "{r}");
    assert_eq!(t.code("STAT nothing\r\n"), 450);
}

/// A client that half-closes during a STAT listing still gets a whole
/// reply.
#[test]
fn stat_listing_cut_short_ends_its_reply() {
    let mut t = session();
    t.login();
    t.answer = false;
    assert_eq!(t.send("STAT pub/sub\r\n"), "");
    let (id, tree, request) = t.held.pop().unwrap();
    let answer = t.fs.answer(&tree, request);
    t.s.on_fs(id, answer, t.now);
    // The first batch is asked for, and does not come.
    assert_eq!(t.send(""), "213-Status of /pub/sub:\r\n");
    assert_eq!(t.held.len(), 1);
    t.s.on_control_eof(t.now);
    assert_eq!(t.out(), "213 End of status (cut short).\r\n");
    assert!(t.s.is_closed());
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

/// A client that sends commands and never reads the replies makes the
/// session hold a bounded amount: commands wait while the output is at its
/// high-water mark, and go on as it drains.
#[test]
fn output_past_the_high_water_mark_stops_execution() {
    let mut t = session();
    t.out();
    let many = "HELP\r\n".repeat(3000);
    t.s.on_control(many.as_bytes(), t.now);
    t.run();
    let held = t.s.output().len();
    assert!(held < OUTPUT_HIGH_WATER + 1024, "{held} bytes of output");
    assert!(!t.s.wants_control_input());
    // Drained a little at a time, every HELP is answered.
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let out = t.s.output();
        if out.is_empty() {
            break;
        }
        let n = out.len().min(1000);
        all.extend_from_slice(&out[..n]);
        t.s.consume_output(n);
        assert!(t.s.output().len() < OUTPUT_HIGH_WATER + 1024);
    }
    let helps = all.windows(13).filter(|w| w == b"214 Help OK.\r").count();
    assert_eq!(helps, 3000);
    assert!(t.s.wants_control_input());
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
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Log(Record::Transfer(TransferRecord {
            result: "control-closed",
            ..
        }))
    )));
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Log(Record::SessionEnd { reason: "eof", .. })))
    );
}

#[test]
fn an_idle_session_is_small() {
    // The supervisor holds thousands of idle sessions: keep the core's part
    // of each to a few hundred bytes (heap buffers are empty when idle).
    let size = std::mem::size_of::<Session<Mem>>();
    assert!(size <= 512, "Session is {size} bytes");
    let mut t = session();
    t.login();
    assert!(t.s.out.capacity() <= 256, "output buffer released");
    assert_eq!(t.s.input.buffered(), 0);
}

#[test]
fn status_and_tally() {
    use crate::core::tally::Tally;
    let mut t = session();
    let tally = Arc::new(Tally::default());
    t.s.set_tally(tally.clone());
    assert_eq!(t.s.status().verb, "-");
    assert!(!t.s.status().logged_in);
    t.login();
    let st = t.s.status();
    assert_eq!((st.verb, st.logged_in), ("PASS", true));
    assert_eq!(st.peer, Some(addr("127.0.0.1:40000")));
    assert!(st.transfer.is_none());
    assert!(st.active >= st.started);
    t.pasv();
    t.send("RETR pub/hello.txt\r\n");
    t.actions();
    let st = t.s.status();
    assert_eq!(st.verb, "RETR");
    let x = st.transfer.unwrap();
    assert_eq!(
        (x.kind, x.path.as_bytes(), x.sent, x.connected),
        (TransferKind::Retr, &b"/pub/hello.txt"[..], 0, false)
    );
    t.s.on_data_connected(t.now);
    t.out();
    t.s.on_data_progress(5, t.now);
    let x = t.s.status().transfer.unwrap();
    assert_eq!((x.sent, x.connected), (5, true));
    t.s.on_transfer_done(Ok(12), t.now);
    t.out();
    assert!(t.s.status().transfer.is_none());
    t.actions();
    t.pasv();
    t.send("LIST pub/sub\r\n");
    assert!(t.transfer().is_some());
    t.s.on_data_connected(t.now);
    t.out();
    assert_eq!(t.stream().lines().count(), 10);
    t.s.on_transfer_done(Ok(0), t.now);
    t.out();
    t.send("bogus\r\n");
    let counts: std::collections::HashMap<_, _> = tally.commands().collect();
    assert_eq!(
        (
            counts["USER"],
            counts["PASS"],
            counts["PASV"],
            counts["RETR"],
            counts["LIST"],
            counts["other"]
        ),
        (1, 1, 2, 1, 1, 1)
    );
    assert_eq!(tally.listed_entries(), 10);
}

/// Banners, welcomes, directory messages and virtual hosts.
mod messages;
mod tls;
/// Uploads into the drop box.
mod uploads;
