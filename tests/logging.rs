//! A log reader that stalls never stalls serving (issue 18, part 5): both
//! programs with standard error a pipe nobody reads, or a syslog socket
//! nobody reads, keep serving; lines that do not fit are dropped and
//! counted, and once the reader is back a line says how many.
//!
//! The real binaries, on loopback. Every wait and loop is bounded.

// The shared harness; its per-kind test macro is not used here.
#[allow(unused_macros)]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::server::{DROP_GID, DROP_UID, clean_env, ftpd_path, is_root, supervisor_path};
use common::tree::TEXT;
use common::{Tree, port};
use rustix::fs::OFlags;

/// Every client read and write gives up after this.
const IO_LIMIT: Duration = Duration::from_secs(10);

/// The supervisor's log backlog (`LOG_BACKLOG` in src/supervisor): the
/// sessions below must produce more than this, and more than the pipe
/// holds, so that lines are dropped.
const SUPERVISOR_BACKLOG: usize = 1 << 20;

/// A pipe for a program's standard error; the test holds the read end.
struct LogPipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl LogPipe {
    /// A pipe of one page, so that it fills quickly.
    fn new() -> LogPipe {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        rustix::pipe::fcntl_setpipe_size(&w, 4096).unwrap();
        // The read end is the test's own: non-blocking reads, with poll.
        rustix::fs::fcntl_setfl(&r, OFlags::NONBLOCK).unwrap();
        LogPipe { r, w }
    }

    /// A copy of the write end for a child's standard error. The file
    /// description stays blocking, as a shared standard error is.
    fn stderr(&self) -> Stdio {
        Stdio::from(self.w.try_clone().unwrap())
    }

    /// Fills the pipe to the last byte, so that no write fits; returns
    /// what was written. (O_NONBLOCK on the write end for that only.)
    fn fill(&self) -> usize {
        let flags = rustix::fs::fcntl_getfl(&self.w).unwrap();
        rustix::fs::fcntl_setfl(&self.w, flags | OFlags::NONBLOCK).unwrap();
        let mut total = 0;
        for chunk in [4096, 1] {
            let buf = vec![b'#'; chunk];
            for _ in 0..100_000 {
                match rustix::io::write(&self.w, &buf) {
                    Ok(n) => total += n,
                    Err(_) => break,
                }
            }
        }
        rustix::fs::fcntl_setfl(&self.w, flags).unwrap();
        assert!(total >= 4096, "{total}");
        total
    }

    /// Reads what is there, waiting up to `wait` for the first byte.
    fn read(&self, wait: Duration) -> Vec<u8> {
        let mut fds = [rustix::event::PollFd::new(
            &self.r,
            rustix::event::PollFlags::IN,
        )];
        let t = rustix::event::Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: wait.subsec_nanos() as i64,
        };
        let _ = rustix::event::poll(&mut fds, Some(&t));
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        for _ in 0..1024 {
            match rustix::io::read(&self.r, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }
}

/// A child process, killed (by pid) and reaped when dropped.
struct Proc(Child);

impl Proc {
    fn wait(&mut self, bound: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + bound;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.0.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Drops privileges as the suites do when run as root.
fn as_test_user(cmd: &mut Command) {
    clean_env(cmd);
    if is_root() {
        cmd.env("UID", DROP_UID.to_string())
            .env("GID", DROP_GID.to_string());
    }
}

/// A running supervisor.
struct Supervisor {
    _proc: Proc,
    addr: SocketAddr,
    /// Connections made while waiting for the greeting: each a session,
    /// with its start and end records.
    probes: u64,
}

/// `aftpd-supervisor --engine epoll` on a free loopback port, its
/// standard error as given (`wrap`: in a private mount namespace whose
/// /run is that directory); waits until it greets.
fn supervisor(root: &Path, args: &[&str], stderr: Stdio, wrap: Option<&Path>) -> Supervisor {
    let bin = supervisor_path().expect("aftpd-supervisor is built by this crate");
    let addr = SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        port::free_port(Ipv4Addr::LOCALHOST.into()),
    ));
    let listen = addr.to_string();
    let mut all = vec!["--engine", "epoll", "--threads", "2", "--listen", &listen];
    all.extend_from_slice(args);
    let mut cmd = match wrap {
        Some(run_dir) => in_private_run(run_dir, Path::new(bin), &all),
        None => {
            let mut c = Command::new(bin);
            c.args(&all);
            c
        }
    };
    as_test_user(&mut cmd);
    cmd.arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let mut p = Proc(cmd.spawn().expect("spawn aftpd-supervisor"));
    let end = Instant::now() + IO_LIMIT;
    let mut probes = 0;
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            panic!("aftpd-supervisor exited at start: {st}");
        }
        if let Ok((r, w)) = connect(addr) {
            probes += 1;
            if quit_session(r, w).is_ok() {
                return Supervisor {
                    _proc: p,
                    addr,
                    probes,
                };
            }
        }
        assert!(Instant::now() < end, "aftpd-supervisor did not greet");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads one reply (the last line of a multi-line one); its code.
fn reply(r: &mut BufReader<TcpStream>) -> Result<u16, String> {
    for _ in 0..100 {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => return Err("closed".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        if line.len() >= 4 && line.as_bytes()[3] == b' ' {
            return line[..3].parse().map_err(|_| line.clone());
        }
    }
    Err("endless reply".into())
}

fn connect(addr: SocketAddr) -> Result<(BufReader<TcpStream>, TcpStream), String> {
    let s = TcpStream::connect_timeout(&addr, IO_LIMIT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_LIMIT)).unwrap();
    s.set_write_timeout(Some(IO_LIMIT)).unwrap();
    s.set_nodelay(true).unwrap();
    let w = s.try_clone().unwrap();
    Ok((BufReader::new(s), w))
}

fn send(w: &mut TcpStream, line: &str) -> Result<(), String> {
    w.write_all(format!("{line}\r\n").as_bytes())
        .map_err(|e| e.to_string())
}

fn expect(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    line: &str,
    code: u16,
) -> Result<(), String> {
    send(w, line)?;
    match reply(r)? {
        c if c == code => Ok(()),
        c => Err(format!("{line}: {c}, not {code}")),
    }
}

/// A session: the greeting, QUIT, and the server's close.
fn greet_and_quit(addr: SocketAddr) -> Result<(), String> {
    let (r, w) = connect(addr)?;
    quit_session(r, w)
}

/// The greeting, QUIT, and the server's close, on a connection.
fn quit_session(mut r: BufReader<TcpStream>, mut w: TcpStream) -> Result<(), String> {
    if reply(&mut r)? != 220 {
        return Err("no 220".into());
    }
    expect(&mut r, &mut w, "QUIT", 221)?;
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    Ok(())
}

/// A data command over EPSV; the data received.
fn transfer(r: &mut BufReader<TcpStream>, w: &mut TcpStream, cmd: &str) -> Vec<u8> {
    send(w, "EPSV").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("229 "), "{line}");
    let port: u16 = line
        .split("|||")
        .nth(1)
        .and_then(|s| s.split('|').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let peer = w.peer_addr().unwrap();
    let mut d = TcpStream::connect_timeout(&SocketAddr::new(peer.ip(), port), IO_LIMIT).unwrap();
    d.set_read_timeout(Some(IO_LIMIT)).unwrap();
    send(w, cmd).unwrap();
    assert_eq!(reply(r).unwrap(), 150, "{cmd}");
    let mut data = Vec::new();
    d.read_to_end(&mut data).unwrap();
    assert_eq!(reply(r).unwrap(), 226, "{cmd}");
    data
}

/// A whole session: login, LIST, RETR of `text.txt`, QUIT, the close.
/// Four records: start, two transfers, end.
fn full_session(addr: SocketAddr) {
    let (mut r, mut w) = connect(addr).unwrap();
    assert_eq!(reply(&mut r).unwrap(), 220);
    expect(&mut r, &mut w, "USER anonymous", 331).unwrap();
    expect(&mut r, &mut w, "PASS x@example.invalid", 230).unwrap();
    expect(&mut r, &mut w, "TYPE I", 200).unwrap();
    let list = transfer(&mut r, &mut w, "LIST");
    assert!(String::from_utf8_lossy(&list).contains("text.txt"));
    assert_eq!(transfer(&mut r, &mut w, "RETR text.txt"), TEXT);
    expect(&mut r, &mut w, "QUIT", 221).unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
}

/// About `sessions` greet-and-quit sessions from 4 threads; every one
/// must be greeted and closed. Returns how many there were.
fn many_sessions(addr: SocketAddr, sessions: usize) -> u64 {
    let per = sessions.div_ceil(4);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                for i in 0..per {
                    if let Err(e) = greet_and_quit(addr) {
                        panic!("session {i} of {per}: {e}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    4 * per as u64
}

/// The log lines seen so far: session records and dropped counts.
#[derive(Default, Debug)]
struct Tally {
    records: usize,
    dropped: u64,
    notices: usize,
}

impl Tally {
    /// Counts `line` (its program prefix already checked by the caller).
    fn add(&mut self, msg: &str) {
        if ["start peer=", "end peer=", "transfer peer="]
            .iter()
            .any(|p| msg.starts_with(p))
        {
            self.records += 1;
        } else if let Some(rest) = msg.strip_prefix("warning: log: dropped ") {
            let n = rest.split(' ').next().unwrap();
            self.dropped += n.parse::<u64>().unwrap_or_else(|_| panic!("{msg}"));
            self.notices += 1;
        }
    }
}

// --------------------------------------------------------- the supervisor

/// With standard error a pipe nobody reads, the supervisor greets and
/// serves thousands of sessions (the old one stopped after 565); once the
/// test reads the pipe, whole lines come, and the records plus the
/// dropped counts reported add up to every record made.
#[test]
fn supervisor_serves_on_while_nobody_reads_its_stderr() {
    let tree = Tree::new();
    let pipe = LogPipe::new();
    let server = supervisor(&tree.root, &[], pipe.stderr(), None);
    // A start and an end line: about 115 bytes a session.
    let sessions = SUPERVISOR_BACKLOG / 115 * 3 / 2;
    let sessions = many_sessions(server.addr, sessions);
    full_session(server.addr);
    let made = 2 * (server.probes + sessions) + 4;

    let mut text = String::new();
    let mut tally = Tally::default();
    let mut seen_start = false;
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end && tally.records as u64 + tally.dropped < made {
        let chunk = pipe.read(Duration::from_millis(200));
        text.push_str(&String::from_utf8(chunk).expect("log lines are UTF-8"));
        // Whole lines only: each ends in a newline and names the program.
        while let Some(nl) = text.find('\n') {
            let line: String = text.drain(..=nl).collect();
            let msg = line
                .trim_end()
                .strip_prefix("aftpd-supervisor: ")
                .unwrap_or_else(|| panic!("not a whole line: {line:?}"));
            seen_start |= msg.starts_with("listening on ");
            tally.add(msg);
        }
    }
    assert!(seen_start, "{tally:?}");
    assert!(
        tally.notices > 0,
        "no line reported dropped lines: {tally:?}"
    );
    assert_eq!(
        tally.records as u64 + tally.dropped,
        made,
        "records written and dropped: {tally:?}"
    );
}

/// The same with the syslog socket nobody reads (a hung syslog daemon):
/// datagrams are sent without waiting, the rest as above.
#[test]
fn supervisor_serves_on_while_syslog_is_not_read() {
    need_root("a private mount namespace for /dev/log");
    let tree = Tree::new();
    let syslog = Syslog::new(&tree);
    let server = supervisor(&tree.root, &["--syslog"], Stdio::null(), Some(&syslog.dir));
    // About 170 bytes a session.
    let sessions = SUPERVISOR_BACKLOG / 170 * 3 / 2;
    let sessions = many_sessions(server.addr, sessions);
    full_session(server.addr);
    let made = 2 * (server.probes + sessions) + 4;
    let mut tally = Tally::default();
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end && tally.records as u64 + tally.dropped < made {
        for m in syslog.read(Duration::from_millis(200)) {
            assert!(
                m.starts_with('<') && m.contains(" aftpd-supervisor["),
                "{m:?}"
            );
            let (_, msg) = m.split_once("]: ").unwrap_or_else(|| panic!("{m:?}"));
            tally.add(msg);
        }
    }
    assert!(
        tally.notices > 0,
        "no line reported dropped lines: {tally:?}"
    );
    assert_eq!(
        tally.records as u64 + tally.dropped,
        made,
        "records sent and dropped: {tally:?}"
    );
}

// ------------------------------------------------------------------ ftpd

/// `ftpd ARGS ROOT` on one accepted loopback connection, as a
/// super-server starts it; `wrap`: in a private mount namespace whose
/// /run is that directory.
fn ftpd(root: &Path, args: &[&str], stderr: Stdio, wrap: Option<&Path>) -> (Proc, TcpStream) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = TcpStream::connect_timeout(&l.local_addr().unwrap(), IO_LIMIT).unwrap();
    // Connected already: accept returns at once.
    let (conn, _) = l.accept().unwrap();
    let mut cmd = match wrap {
        Some(run_dir) => in_private_run(run_dir, Path::new(ftpd_path()), args),
        None => {
            let mut c = Command::new(ftpd_path());
            c.args(args);
            c
        }
    };
    as_test_user(&mut cmd);
    cmd.arg(root)
        .stdin(Stdio::from(OwnedFd::from(conn.try_clone().unwrap())))
        .stdout(Stdio::from(OwnedFd::from(conn)))
        .stderr(stderr);
    (Proc(cmd.spawn().expect("spawn ftpd")), client)
}

/// Login, LIST, RETR on the client end of [`ftpd`]'s connection; then
/// `before_quit`, QUIT and the close.
fn ftpd_session(client: TcpStream, before_quit: impl FnOnce()) {
    client.set_read_timeout(Some(IO_LIMIT)).unwrap();
    client.set_write_timeout(Some(IO_LIMIT)).unwrap();
    let mut w = client.try_clone().unwrap();
    let mut r = BufReader::new(client);
    assert_eq!(reply(&mut r).unwrap(), 220);
    expect(&mut r, &mut w, "USER anonymous", 331).unwrap();
    expect(&mut r, &mut w, "PASS x@example.invalid", 230).unwrap();
    expect(&mut r, &mut w, "TYPE I", 200).unwrap();
    let list = transfer(&mut r, &mut w, "LIST");
    assert!(String::from_utf8_lossy(&list).contains("text.txt"));
    assert_eq!(transfer(&mut r, &mut w, "RETR text.txt"), TEXT);
    before_quit();
    expect(&mut r, &mut w, "QUIT", 221).unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
}

/// With its standard error a full pipe that nobody reads, ftpd serves a
/// whole session and exits (0) on its own: its lines are given up after
/// a bounded wait.
#[test]
fn ftpd_serves_a_session_and_exits_with_its_stderr_full() {
    let tree = Tree::new();
    let pipe = LogPipe::new();
    let filled = pipe.fill();
    let (mut p, client) = ftpd(&tree.root, &[], pipe.stderr(), None);
    ftpd_session(client, || {});
    let st = p.wait(Duration::from_secs(20)).expect("ftpd did not exit");
    assert!(st.success(), "{st}");
    // Nothing of ftpd's got in: the pipe holds the filler only.
    let got = pipe.read(Duration::ZERO);
    assert_eq!(got.len(), filled);
    assert!(got.iter().all(|&b| b == b'#'));
}

/// The same, but the reader comes back before the session ends: every
/// line comes, whole and in order.
#[test]
fn ftpd_writes_its_lines_once_the_reader_is_back() {
    let tree = Tree::new();
    let pipe = LogPipe::new();
    let filled = pipe.fill();
    let (mut p, client) = ftpd(&tree.root, &[], pipe.stderr(), None);
    let mut got = Vec::new();
    ftpd_session(client, || {
        // Empty the pipe: the lines queued meanwhile follow.
        let end = Instant::now() + IO_LIMIT;
        while got.len() < filled && Instant::now() < end {
            got.extend(pipe.read(Duration::from_millis(100)));
        }
    });
    let st = p.wait(Duration::from_secs(20)).expect("ftpd did not exit");
    assert!(st.success(), "{st}");
    got.extend(pipe.read(Duration::ZERO));
    let text = String::from_utf8(got.split_off(filled)).unwrap();
    assert!(got.iter().all(|&b| b == b'#'));
    let lines: Vec<&str> = text.lines().collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.strip_prefix("ftpd: ")
                .unwrap_or_else(|| panic!("{text}"))
                .split(' ')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(kinds, ["start", "transfer", "transfer", "end"], "{text}");
    assert!(lines[1].contains(" kind=list ") && lines[2].contains(" kind=retr "));
    assert!(lines[3].ends_with(" reason=quit"), "{text}");
}

/// With --syslog and a syslog socket whose queue is full, ftpd serves a
/// whole session and exits; messages sent once there is room arrive.
#[test]
fn ftpd_serves_a_session_while_syslog_is_not_read() {
    need_root("a private mount namespace for /dev/log");
    let tree = Tree::new();
    let syslog = Syslog::new(&tree);
    let filled = syslog.fill();
    let (mut p, client) = ftpd(&tree.root, &["--syslog"], Stdio::null(), Some(&syslog.dir));
    let mut got = Vec::new();
    ftpd_session(client, || {
        let end = Instant::now() + IO_LIMIT;
        while got.len() < filled && Instant::now() < end {
            got.extend(syslog.read(Duration::from_millis(100)));
        }
    });
    let st = p.wait(Duration::from_secs(20)).expect("ftpd did not exit");
    assert!(st.success(), "{st}");
    let end = Instant::now() + IO_LIMIT;
    while !got.iter().any(|m| m.contains("end peer=")) && Instant::now() < end {
        got.extend(syslog.read(Duration::from_millis(100)));
    }
    let ours: Vec<&String> = got.iter().filter(|m| m.contains(" ftpd[")).collect();
    assert!(ours.len() >= 4, "{got:?}");
    assert!(ours.iter().all(|m| m.starts_with("<94>")), "{ours:?}");
    assert!(ours[0].contains("]: start peer=127.0.0.1:"), "{ours:?}");
    assert!(ours.last().unwrap().contains("]: end peer="), "{ours:?}");
}

// ---------------------------------------------------------------- syslog

/// Fails (never skips) unless running as root.
fn need_root(what: &str) {
    assert!(is_root(), "{what} needs root: run the tests as root");
}

/// A fake syslog daemon: a datagram socket that becomes `/run/syslog`
/// (and `/dev/log`) in the program's private mount namespace.
struct Syslog {
    dir: PathBuf,
    sock: UnixDatagram,
}

impl Syslog {
    fn new(tree: &Tree) -> Syslog {
        let dir = tree.scratch("run");
        let path = dir.join("syslog");
        let sock = UnixDatagram::bind(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        sock.set_nonblocking(true).unwrap();
        Syslog { dir, sock }
    }

    /// Fills the socket's queue from a socket of the test's own, so that
    /// the next datagram would block; returns how many went.
    fn fill(&self) -> usize {
        let from = UnixDatagram::unbound().unwrap();
        from.connect(self.dir.join("syslog")).unwrap();
        from.set_nonblocking(true).unwrap();
        let mut n = 0;
        for _ in 0..100_000 {
            if from.send(b"<14>filler: x").is_err() {
                break;
            }
            n += 1;
        }
        assert!(n > 0);
        n
    }

    /// The datagrams there are, waiting up to `wait` for the first.
    fn read(&self, wait: Duration) -> Vec<String> {
        let mut fds = [rustix::event::PollFd::new(
            &self.sock,
            rustix::event::PollFlags::IN,
        )];
        let t = rustix::event::Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: wait.subsec_nanos() as i64,
        };
        let _ = rustix::event::poll(&mut fds, Some(&t));
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        for _ in 0..100_000 {
            match self.sock.recv(&mut buf) {
                Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) => break,
            }
        }
        out
    }
}

/// `program args` in a private mount namespace where `/run` is `run_dir`
/// (and `/dev/log`, if the host has one, is `run_dir/syslog`).
fn in_private_run(run_dir: &Path, program: &Path, args: &[&str]) -> Command {
    common::tools::require("unshare", "util-linux");
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount --bind \"$0\" /run || exit 1; \
             if [ -e /dev/log ]; then mount --bind \"$0/syslog\" /dev/log || exit 1; fi; \
             exec \"$@\"",
        )
        .arg(run_dir)
        .arg(program)
        .args(args);
    c
}
