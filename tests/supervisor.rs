//! aftpd-supervisor end to end: the real binary on 127.0.0.1, driven by a
//! tiny FTP client. Every wait is bounded (socket timeouts, deadlines), and
//! only processes spawned here are signalled. Every test of the server's
//! behaviour runs once per engine (`--engine epoll`, `--engine uring`):
//! see [`engine_tests!`] at the end.
//!
//! Run as root, the server is started the way an operator would (as root
//! with `$UID`/`$GID`, so it chroots and drops privileges), and once under
//! `setpriv` as an unprivileged user; run as anyone else, it runs as that
//! user and the root-only checks fail, saying so.

#[path = "common/port.rs"]
mod port;

use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_aftpd-supervisor");
/// The unprivileged user the server runs as when the tests run as root.
const NOBODY: &str = "65534";
/// Bound on any single read or write of the test client.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The byte at offset `i` of every test file: not periodic at any power of
/// two, so a misplaced block shows.
fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 9).wrapping_mul(13) ^ (i >> 17)) as u8
}

fn pattern(len: u64) -> Vec<u8> {
    (0..len).map(byte_at).collect()
}

/// A served tree in a fresh directory, removed on drop.
struct Tree {
    dir: PathBuf,
}

const DATA_LEN: u64 = 128 * 1024;
const BIG_LEN: u64 = 64 * 1024 * 1024;

impl Tree {
    fn new(name: &str, big: bool) -> Tree {
        let dir = std::env::temp_dir().join(format!("aftpd-super-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("pub")).unwrap();
        fs::write(dir.join("small.txt"), b"hello, world\n").unwrap();
        fs::write(dir.join("data.bin"), pattern(DATA_LEN)).unwrap();
        fs::write(dir.join("pub/readme"), b"read me\n").unwrap();
        if big {
            let mut f = fs::File::create(dir.join("big.bin")).unwrap();
            let chunk = 1 << 20;
            for c in 0..BIG_LEN / chunk {
                let block: Vec<u8> = (c * chunk..(c + 1) * chunk).map(byte_at).collect();
                f.write_all(&block).unwrap();
            }
        }
        // Published: world-readable files, world-searchable directories,
        // whatever the umask.
        for p in ["small.txt", "data.bin", "pub/readme", "big.bin"] {
            let _ = fs::set_permissions(dir.join(p), fs::Permissions::from_mode(0o644));
        }
        for d in [dir.as_path(), &dir.join("pub")] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Tree { dir }
    }

    fn log(&self) -> PathBuf {
        self.dir.with_extension("log")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(self.log());
    }
}

/// The workers' event mechanism, `--engine`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    Epoll,
    Uring,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Epoll => "epoll",
            Engine::Uring => "uring",
        }
    }

    /// A name for a test's tree, distinct per engine (the two runs of a
    /// test may overlap).
    fn tag(self, name: &str) -> String {
        format!("{name}-{}", self.name())
    }
}

/// How the server process is started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As root with `UID`/`GID` set (chroot, setuid); as the current user
    /// when not root.
    Auto,
    /// Never root: under `setpriv` as 65534 when the tests run as root.
    Unprivileged,
    /// Like `Auto`, with the open-files limit (soft and hard) set to this
    /// by `prlimit`.
    NoFile(u32),
    /// Unprivileged, with at most this many bytes of locked memory
    /// (`prlimit --memlock`), which io_uring rings are counted against:
    /// with 0, io_uring cannot set up a ring.
    Memlock(u32),
}

struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + bound;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once `done` holds for it, or after 10 s (the caller's
    /// assertion then shows it): a log line may be written a moment after
    /// the event, by the server's log writer thread.
    fn log_when(&self, done: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_text();
            if done(&log) || Instant::now() > end {
                return log;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log_text());
        }
    }
}

/// A loopback port that was free a moment ago, below the ephemeral range.
fn free_port() -> u16 {
    port::free_port(Ipv4Addr::LOCALHOST.into())
}

fn command(mode: Mode) -> Command {
    let root = is_root();
    let mut cmd = match mode {
        Mode::Unprivileged if root => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", BIN]);
            c
        }
        Mode::NoFile(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg(BIN);
            c
        }
        Mode::Memlock(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--memlock={n}:{n}"));
            if root {
                c.args([
                    "setpriv",
                    "--reuid",
                    NOBODY,
                    "--regid",
                    NOBODY,
                    "--clear-groups",
                ]);
            }
            c.arg(BIN);
            c
        }
        _ => Command::new(BIN),
    };
    cmd.env_remove("UID").env_remove("GID");
    if root && !matches!(mode, Mode::Unprivileged | Mode::Memlock(_)) {
        cmd.env("UID", NOBODY).env("GID", NOBODY);
    }
    cmd
}

/// Starts the server with `engine` on a free loopback port (another if
/// that one was taken meanwhile) and waits until it greets.
fn start(tree: &Tree, mode: Mode, engine: Engine, args: &[&str]) -> Server {
    let mut all = vec!["--engine", engine.name()];
    all.extend_from_slice(args);
    start_with(tree, mode, &all)
}

/// Starts the server with exactly `args` (and `--listen`, ROOT).
fn start_with(tree: &Tree, mode: Mode, args: &[&str]) -> Server {
    start_as(tree, || command(mode), args)
}

/// Starts the server as `program()` says, with `args` (and `--listen`,
/// ROOT), and waits until it greets.
fn start_as(tree: &Tree, program: impl Fn() -> Command, args: &[&str]) -> Server {
    for _attempt in 0..5 {
        let port = free_port();
        let log = tree.log();
        let err = fs::File::create(&log).unwrap();
        let child = program()
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .arg(&tree.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut s = Server { child, port, log };
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(st)) = s.child.try_wait() {
                if st.code() == Some(111) && s.log_text().contains("in use") {
                    break; // the port was taken: try another
                }
                panic!("server exited at start: {st}\n{}", s.log_text());
            }
            if probe(s.addr()) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "server did not come up\n{}",
                s.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no free port found");
}

/// Whether a full session (greeting, QUIT, close by the server) works; the
/// close means the server has dropped the session again, so the probe does
/// not count against the limits afterwards.
fn probe(addr: SocketAddr) -> bool {
    let Ok(mut f) = Ftp::connect(addr) else {
        return false;
    };
    let ok =
        matches!(f.reply(), Ok((220, _))) && matches!(f.cmd("QUIT"), Ok((221, _))) && f.at_eof();
    close_abortively(f.w);
    ok
}

/// A minimal FTP client.
struct Ftp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Ftp {
    fn connect(addr: SocketAddr) -> io::Result<Ftp> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Ftp {
            w: s.try_clone()?,
            r: BufReader::new(s),
        })
    }

    /// One reply, multi-line ones folded: (code, full text).
    fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, line.clone()))?;
        let mut text = line.clone();
        if line.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            for _ in 0..100_000 {
                let mut l = String::new();
                if self.r.read_line(&mut l)? == 0 {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
                text.push_str(&l);
                if l.starts_with(&end) {
                    break;
                }
            }
        }
        Ok((code, text))
    }

    fn cmd(&mut self, line: &str) -> io::Result<(u16, String)> {
        self.w.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Sends `line` and insists on `code`.
    fn expect(&mut self, line: &str, code: u16) -> String {
        match self.cmd(line) {
            Ok((c, text)) if c == code => text,
            other => panic!("{line}: wanted {code}, got {other:?}"),
        }
    }

    fn greeting(&mut self) {
        match self.reply() {
            Ok((220, _)) => {}
            other => panic!("wanted the greeting, got {other:?}"),
        }
    }

    fn login(&mut self) {
        self.expect("USER anonymous", 331);
        self.expect("PASS guest@", 230);
    }

    /// A new session, greeted and logged in.
    fn logged_in(addr: SocketAddr) -> Ftp {
        let mut f = Ftp::connect(addr).expect("connect");
        f.greeting();
        f.login();
        f
    }

    /// EPSV: the port it names.
    fn epsv(&mut self) -> u16 {
        let text = self.expect("EPSV", 229);
        text.split('|')
            .nth(3)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad 229: {text}"))
    }

    /// EPSV, then connect to the port it names.
    fn passive(&mut self) -> TcpStream {
        let port = self.epsv();
        let d = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_secs(10),
        )
        .unwrap();
        d.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        d
    }

    /// EPSV, then connect to the port it names with a small receive
    /// buffer (set before connecting, so the window stays small): a data
    /// connection that is slow to fill up and easy to stall.
    fn passive_small(&mut self) -> TcpStream {
        use rustix::net::{AddressFamily, SocketType, sockopt};
        let port = self.epsv();
        let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        sockopt::set_socket_recv_buffer_size(&fd, 4096).unwrap();
        rustix::net::connect(&fd, &SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
        let d = TcpStream::from(fd);
        d.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        d
    }

    /// Runs a command that sends on a data connection; returns what came.
    fn transfer(&mut self, line: &str) -> Vec<u8> {
        let mut d = self.passive();
        let (code, text) = self.cmd(line).unwrap();
        assert!(code == 150 || code == 125, "{line}: got {code} {text}");
        let mut got = Vec::new();
        d.read_to_end(&mut got).unwrap();
        close_abortively(d);
        let (code, text) = self.reply().unwrap();
        assert_eq!(code, 226, "{line}: {text}");
        got
    }

    fn retr(&mut self, path: &str) -> Vec<u8> {
        self.expect("TYPE I", 200);
        self.transfer(&format!("RETR {path}"))
    }

    fn list(&mut self, path: &str) -> String {
        String::from_utf8_lossy(&self.transfer(&format!("LIST {path}"))).into_owned()
    }

    /// Whether the server has closed the connection (EOF within the read
    /// timeout, after any last replies).
    fn at_eof(&mut self) -> bool {
        let mut buf = [0u8; 512];
        for _ in 0..16 {
            match self.r.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => return e.kind() == ErrorKind::ConnectionReset,
            }
        }
        false
    }
}

/// Reads `len` bytes of the pattern from `d`, in `chunk`s, calling
/// `between` after each; checks every byte.
fn read_pattern(d: &mut TcpStream, from: u64, len: u64, chunk: usize, mut between: impl FnMut()) {
    let mut buf = vec![0u8; chunk];
    let mut at = from;
    while at < from + len {
        let want = chunk.min((from + len - at) as usize);
        let n = d.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "data connection closed at {at} of {}", from + len);
        for (i, b) in buf[..n].iter().enumerate() {
            let off = at + i as u64;
            assert_eq!(*b, byte_at(off), "wrong byte at offset {off}");
        }
        at += n as u64;
        between();
    }
}

/// Downloads big.bin at full speed, checking every byte.
fn retr_big(f: &mut Ftp) {
    f.expect("TYPE I", 200);
    let mut d = f.passive();
    let (code, text) = f.cmd("RETR /big.bin").unwrap();
    assert_eq!(code, 150, "{text}");
    read_pattern(&mut d, 0, BIG_LEN, 1 << 20, || {});
    assert_eq!(f.reply().unwrap().0, 226);
}

/// Closes `s` with a reset instead of a FIN, once the server has closed
/// its end: neither side then keeps the connection in TIME_WAIT, so
/// thousands of sessions per run (and runs in a row) do not use up the
/// loopback's ephemeral ports.
fn close_abortively(s: TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO));
    drop(s);
}

/// Raises this process's soft open-files limit to the hard limit.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        lim.current = Some(max);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Raises RLIMIT_NOFILE and fails unless `sessions` sessions (plus the
/// test's own descriptors) fit.
fn need_descriptors_for(sessions: usize) {
    let limit = raise_nofile();
    assert!(
        limit >= (sessions + 200) as u64,
        "the open-files hard limit {limit} is too low for {sessions} sessions: raise it (ulimit -Hn)"
    );
}

fn serves_a_session_and_confines_it(engine: Engine) {
    let tree = Tree::new(&engine.tag("basic"), false);
    let server = start(&tree, Mode::Auto, engine, &["--threads", "2"]);
    let mut f = Ftp::logged_in(server.addr());
    let listing = f.list("/");
    assert!(listing.contains("data.bin"), "{listing}");
    assert!(listing.contains("pub"), "{listing}");
    assert_eq!(f.retr("/small.txt"), b"hello, world\n");
    assert_eq!(f.retr("data.bin"), pattern(DATA_LEN));
    let (code, _) = f.cmd("RETR ../../../../etc/passwd").unwrap();
    assert!(code >= 400, "escaped the root: {code}");
    f.expect("QUIT", 221);
    assert!(f.at_eof());
}

fn runs_unprivileged_with_openat2_confinement(engine: Engine) {
    let tree = Tree::new(&engine.tag("unpriv"), false);
    let server = start(&tree, Mode::Unprivileged, engine, &["--threads", "1"]);
    let mut f = Ftp::logged_in(server.addr());
    assert!(f.list("pub").contains("readme"));
    assert_eq!(f.retr("/pub/readme"), b"read me\n");
    let (code, _) = f.cmd("RETR /../../../../etc/passwd").unwrap();
    assert!(code >= 400, "escaped the root: {code}");
    f.expect("QUIT", 221);
}

fn two_thousand_concurrent_sessions(engine: Engine) {
    const THREADS: usize = 20;
    const PER_THREAD: usize = 100;
    // Each session holds a control connection, briefly a data one.
    need_descriptors_for(THREADS * PER_THREAD);
    let tree = Tree::new(&engine.tag("many"), false);
    let server = start(
        &tree,
        Mode::Auto,
        engine,
        &[
            "--threads",
            "4",
            "--max-sessions",
            "5000",
            "--max-per-ip",
            "0",
        ],
    );
    let addr = server.addr();
    let expected = Arc::new(pattern(DATA_LEN));
    let opened = Arc::new(AtomicUsize::new(0));
    let start_time = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let expected = Arc::clone(&expected);
            let opened = Arc::clone(&opened);
            thread::spawn(move || {
                let mut sessions = Vec::with_capacity(PER_THREAD);
                for _ in 0..PER_THREAD {
                    let mut f = Ftp::connect(addr).expect("connect");
                    f.greeting();
                    sessions.push(f);
                }
                opened.fetch_add(PER_THREAD, Ordering::SeqCst);
                // All 2,000 sessions are open at once before any goes on.
                let end = Instant::now() + Duration::from_secs(60);
                while opened.load(Ordering::SeqCst) < THREADS * PER_THREAD {
                    assert!(Instant::now() < end, "the other sessions never opened");
                    thread::sleep(Duration::from_millis(10));
                }
                for f in &mut sessions {
                    f.login();
                }
                for f in &mut sessions {
                    assert!(f.list("/").contains("data.bin"));
                    let got = f.retr("/data.bin");
                    assert!(got == *expected, "download differs");
                }
                for mut f in sessions {
                    f.expect("QUIT", 221);
                    assert!(f.at_eof());
                    close_abortively(f.w);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a client thread failed");
    }
    eprintln!("2000 sessions in {:?}", start_time.elapsed());
    drop(server);
}

/// Every session speaks at once, more of them than one worker has
/// control-input buffers (the uring engine's ring runs dry and must
/// re-arm), each with a line longer than one buffer: every command still
/// gets its one reply.
fn a_burst_from_every_session_at_once(engine: Engine) {
    const SESSIONS: usize = 600;
    need_descriptors_for(SESSIONS);
    let tree = Tree::new(&engine.tag("burst"), false);
    let server = start(
        &tree,
        Mode::Auto,
        engine,
        &["--threads", "1", "--max-per-ip", "0"],
    );
    let addr = server.addr();
    let mut sessions: Vec<Ftp> = (0..SESSIONS).map(|_| Ftp::logged_in(addr)).collect();
    // 3,000 bytes of path: three of the smallest receive buffers.
    let long = format!("SIZE /{}\r\nNOOP\r\n", "n".repeat(3000));
    for f in &mut sessions {
        f.w.write_all(long.as_bytes()).expect("send");
    }
    for f in &mut sessions {
        let (code, _) = f.reply().expect("SIZE reply");
        assert_eq!(code, 550, "SIZE of a missing file");
        let (code, _) = f.reply().expect("NOOP reply");
        assert_eq!(code, 200, "NOOP");
    }
    for mut f in sessions {
        f.expect("QUIT", 221);
        close_abortively(f.w);
    }
    drop(server);
}

fn timeouts_fire(engine: Engine) {
    let tree = Tree::new(&engine.tag("timers"), false);
    let server = start(
        &tree,
        Mode::Auto,
        engine,
        &["--timeout", "1", "--data-timeout", "1", "--threads", "1"],
    );
    // A data connection never made: 425 after the data timeout, and the
    // session goes on.
    let mut f = Ftp::logged_in(server.addr());
    f.expect("EPSV", 229);
    let began = Instant::now();
    let (code, text) = f.cmd("RETR /small.txt").unwrap();
    assert_eq!(code, 425, "{text}");
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    f.expect("NOOP", 200);
    // Then idle: 421 and the close.
    let (code, text) = f.reply().unwrap();
    assert_eq!(code, 421, "{text}");
    assert!(f.at_eof());
    assert!(
        server
            .log_when(|l| l.contains("reason=timeout"))
            .contains("reason=timeout")
    );
}

fn max_per_ip(engine: Engine) {
    let tree = Tree::new(&engine.tag("perip"), false);
    let server = start(&tree, Mode::Auto, engine, &["--max-per-ip", "3"]);
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut f = Ftp::connect(server.addr()).unwrap();
        f.greeting();
        open.push(f);
    }
    let mut fourth = Ftp::connect(server.addr()).unwrap();
    let (code, text) = fourth.reply().unwrap();
    assert_eq!(code, 421, "{text}");
    assert!(fourth.at_eof());
    // A place given back is a place free again.
    let mut first = open.remove(0);
    first.expect("QUIT", 221);
    assert!(first.at_eof());
    let mut again = Ftp::connect(server.addr()).unwrap();
    again.greeting();
}

fn max_sessions(engine: Engine) {
    let tree = Tree::new(&engine.tag("maxsess"), false);
    let server = start(
        &tree,
        Mode::Auto,
        engine,
        &["--max-sessions", "2", "--threads", "2"],
    );
    let mut a = Ftp::connect(server.addr()).unwrap();
    a.greeting();
    let mut b = Ftp::connect(server.addr()).unwrap();
    b.greeting();
    let mut c = Ftp::connect(server.addr()).unwrap();
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 421, "{text}");
    assert!(c.at_eof());
    a.login();
    assert_eq!(a.retr("small.txt"), b"hello, world\n");
}

fn sigterm_lets_a_slow_transfer_finish(engine: Engine) {
    let tree = Tree::new(&engine.tag("drain"), true);
    let mut server = start(
        &tree,
        Mode::Auto,
        engine,
        &["--shutdown-timeout", "30", "--threads", "2"],
    );
    let mut idle = Ftp::logged_in(server.addr());
    let mut f = Ftp::logged_in(server.addr());
    f.expect("TYPE I", 200);
    let mut d = f.passive();
    let (code, text) = f.cmd("RETR /big.bin").unwrap();
    assert_eq!(code, 150, "{text}");
    // Read slowly: the server is blocked on a full socket buffer.
    let slow = 64 * 1024u64;
    read_pattern(&mut d, 0, slow * 8, 64 * 1024, || {
        thread::sleep(Duration::from_millis(50))
    });
    server.signal(nix::sys::signal::Signal::SIGTERM);
    // The idle session is told at once.
    let (code, text) = idle.reply().unwrap();
    assert_eq!(code, 421, "{text}");
    assert!(idle.at_eof());
    // New connections are refused (the listeners are closed).
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&server.addr(), Duration::from_secs(2)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(Instant::now() < end, "still accepting after SIGTERM");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    // Keep reading slowly a little longer, then at full speed.
    read_pattern(&mut d, slow * 8, slow * 8, 64 * 1024, || {
        thread::sleep(Duration::from_millis(50))
    });
    read_pattern(&mut d, slow * 16, BIG_LEN - slow * 16, 1 << 20, || {});
    let mut rest = [0u8; 1];
    assert_eq!(d.read(&mut rest).unwrap(), 0, "more than the file");
    let (code, text) = f.reply().unwrap();
    assert_eq!(code, 226, "{text}");
    let st = server
        .wait_exit(Duration::from_secs(20))
        .expect("no exit after SIGTERM");
    assert_eq!(st.code(), Some(0), "{}", server.log_text());
}

fn sigterm_exits_zero(engine: Engine) {
    let tree = Tree::new(&engine.tag("term"), false);
    let mut server = start(&tree, Mode::Auto, engine, &[]);
    let mut f = Ftp::connect(server.addr()).unwrap();
    f.greeting();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, _) = f.reply().unwrap();
    assert_eq!(code, 421);
    let st = server.wait_exit(Duration::from_secs(10)).expect("no exit");
    assert_eq!(st.code(), Some(0));
    let log = server.log_text();
    assert!(log.contains(&format!("engine={}", engine.name())), "{log}");
    assert!(log.contains("reason=shutdown"), "{log}");
}

fn a_stalled_reader_does_not_slow_a_fast_one(engine: Engine) {
    let tree = Tree::new(&engine.tag("stall"), true);
    // One worker: both sessions share one event loop.
    let server = start(&tree, Mode::Auto, engine, &["--threads", "1"]);
    let mut stalled = Ftp::logged_in(server.addr());
    stalled.expect("TYPE I", 200);
    let _never_read = stalled.passive();
    let (code, _) = stalled.cmd("RETR /big.bin").unwrap();
    assert_eq!(code, 150);

    let began = Instant::now();
    let mut fast = Ftp::logged_in(server.addr());
    retr_big(&mut fast);
    assert!(fast.list("/").contains("big.bin"));
    let took = began.elapsed();
    assert!(took < Duration::from_secs(20), "fast client took {took:?}");
}

fn out_of_descriptors_then_recovers(engine: Engine) {
    assert!(
        Command::new("prlimit").arg("--version").output().is_ok(),
        "prlimit is missing: install the Debian package util-linux"
    );
    let tree = Tree::new(&engine.tag("nofile"), false);
    // Without --max-sessions the limit would fit the 64 descriptors (and
    // the server would refuse with 421 before running out); an explicit
    // one that does not fit is said at start.
    let mut server = start(
        &tree,
        Mode::NoFile(64),
        engine,
        &[
            "--threads",
            "1",
            "--max-per-ip",
            "0",
            "--max-sessions",
            "10000",
        ],
    );
    let warning = "open-files limit 64 may not hold --max-sessions 10000";
    let log = server.log_when(|l| l.contains(warning));
    assert!(log.contains(warning), "{log}");
    let mut conns = Vec::new();
    let mut not_connected = 0;
    for _ in 0..100 {
        match TcpStream::connect_timeout(&server.addr(), Duration::from_secs(2)) {
            Ok(c) => conns.push(c),
            Err(_) => not_connected += 1,
        }
    }
    let (mut greeted, mut refused, mut closed, mut silent) = (0, 0, 0, 0);
    let end = Instant::now() + Duration::from_secs(15);
    for c in &conns {
        let left = end.saturating_duration_since(Instant::now());
        c.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        let mut line = String::new();
        match BufReader::new(c).read_line(&mut line) {
            Ok(0) => closed += 1,
            Ok(_) if line.starts_with("220") => greeted += 1,
            Ok(_) if line.starts_with("421") => refused += 1,
            Ok(_) => panic!("unexpected: {line}"),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => closed += 1,
            Err(_) => silent += 1,
        }
    }
    eprintln!(
        "greeted {greeted}, refused {refused}, closed {closed}, silent {silent}, not connected {not_connected}"
    );
    assert!(greeted > 0, "nobody was served");
    assert!(greeted < 100, "64 descriptors served 100 sessions?");
    assert!(refused + closed + not_connected > 0);
    assert_eq!(silent, 0, "clients left hanging");
    assert!(server.running(), "the server died");
    drop(conns);
    // Once the descriptors are back, a full session works again.
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut f) = Ftp::connect(server.addr())
            && matches!(f.reply(), Ok((220, _)))
        {
            f.login();
            assert!(f.list("/").contains("small.txt"));
            assert_eq!(f.retr("/small.txt"), b"hello, world\n");
            break;
        }
        assert!(Instant::now() < end, "never recovered");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server
            .log_when(|l| l.contains("pausing accepts"))
            .contains("pausing accepts")
    );
}

/// Runs the supervisor as root with `envs` and `args` until it exits
/// (it must, within 10 s): its exit code and standard error.
fn run_to_exit(tree: &Tree, envs: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let mut c = Command::new(BIN);
    c.env_remove("UID").env_remove("GID");
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .arg(&tree.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (st.code(), err);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running: {envs:?} {args:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Root never serves as root, and a user that cannot be had is a usage
/// error: uid 0 from $UID or --user, half of $UID/$GID, a missing --user.
#[test]
fn root_with_a_bad_user_is_a_usage_error() {
    assert!(is_root(), "this test needs root: run the tests as root");
    let tree = Tree::new("rootuser", false);
    for (envs, args) in [
        (&[("UID", "0"), ("GID", "0")][..], &[][..]),
        (&[("UID", "65534")], &[]),
        (&[], &["--user", "no-such-user-here"]),
        (&[], &["--user", "root"]),
    ] {
        let (code, err) = run_to_exit(&tree, envs, args);
        assert_eq!(code, Some(100), "{envs:?} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// The uids (real, effective, saved, filesystem) of process `pid`.
fn uids(pid: u32) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|u| u.parse().unwrap())
        .collect()
}

/// As root with neither --user nor $UID/$GID, the supervisor becomes the
/// user `ftp` when /etc/passwd has one, else nobody (65534), and says
/// which in its start line. It reads /etc/passwd itself: each case runs in
/// a private mount namespace where a passwd file of the test's is
/// /etc/passwd, so the host's users are neither needed nor touched.
#[test]
fn root_without_a_user_becomes_ftp_or_nobody() {
    assert!(is_root(), "this test needs root: run the tests as root");
    assert!(
        Command::new("unshare").arg("--version").output().is_ok(),
        "unshare is missing: install the Debian package util-linux"
    );
    let tree = Tree::new("defaultuser", false);
    let passwd = tree.dir.with_extension("passwd");
    for (text, want, uid) in [
        (
            "root:x:0:0:root:/root:/bin/sh\nftp:x:4242:4343::/srv/ftp:/usr/sbin/nologin\n",
            "user=ftp(4242:4343,default)",
            4242,
        ),
        (
            "root:x:0:0:root:/root:/bin/sh\n",
            "user=nobody(65534:65534,default)",
            65534,
        ),
    ] {
        fs::write(&passwd, text).unwrap();
        let program = || {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$0\" /etc/passwd || exit 1; exec \"$@\"")
                .arg(&passwd)
                .arg(BIN)
                .env_remove("UID")
                .env_remove("GID");
            c
        };
        let server = start_as(&tree, program, &["--threads", "1"]);
        let log = server.log_when(|l| l.contains("listening on"));
        let start = log.lines().find(|l| l.contains("listening on")).unwrap();
        assert!(start.contains(want), "{start}");
        // unshare and sh exec: the child is the supervisor itself.
        assert_eq!(uids(server.child.id()), vec![uid; 4], "{start}");
        let mut f = Ftp::logged_in(server.addr());
        assert_eq!(f.retr("/small.txt"), b"hello, world\n");
        f.expect("QUIT", 221);
    }
    let _ = fs::remove_file(&passwd);
}

/// With the defaults, the session limit is what the open-files limit
/// holds: no warning at start, whatever the limit (issue: a host whose
/// hard limit is 20,000 was warned at every start).
#[test]
fn defaults_fit_the_open_files_limit() {
    assert!(
        Command::new("prlimit").arg("--version").output().is_ok(),
        "prlimit is missing: install the Debian package util-linux"
    );
    let tree = Tree::new("nofile-default", false);
    for limit in [20_000, 1024] {
        let server = start_with(&tree, Mode::NoFile(limit), &["--threads", "2"]);
        // The log is written by a thread: wait for the start line.
        let log = server.log_when(|l| l.contains("listening on"));
        assert!(!log.contains("may not hold"), "{log}");
        let start = log.lines().find(|l| l.contains("listening on")).unwrap();
        let n: u64 = start
            .split_whitespace()
            .find_map(|w| w.strip_prefix("max-sessions="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(n >= 1 && n * 3 < u64::from(limit), "{start}");
        assert!(start.contains(&format!("open-files={limit}")), "{start}");
    }
}

#[test]
fn usage_errors_exit_100() {
    let code = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(code(&["--bogus"]), Some(100));
    assert_eq!(code(&["--threads", "0"]), Some(100));
    assert_eq!(code(&["--pasv-ports", "10-5"]), Some(100));
    assert_eq!(code(&["--listen", "not-an-address"]), Some(100));
    assert_eq!(code(&["--help"]), Some(0));
}

/// Many stalled downloads (more than a uring worker once had pipes, 64),
/// then a fast one: the stalled ones hold nothing the fast one needs (no
/// helper thread waits on a full socket), and it is served byte for byte.
fn more_stalled_downloads_than_pipes(engine: Engine) {
    const STALLED: usize = 70;
    let tree = Tree::new(&engine.tag("pipes"), true);
    let server = start(
        &tree,
        Mode::Auto,
        engine,
        &["--threads", "1", "--max-per-ip", "0"],
    );
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut f = Ftp::logged_in(server.addr());
        f.expect("TYPE I", 200);
        let d = f.passive_small();
        let (code, text) = f.cmd("RETR /big.bin").unwrap();
        assert_eq!(code, 150, "{text}");
        stalled.push((f, d));
    }
    let mut fast = Ftp::logged_in(server.addr());
    retr_big(&mut fast);
    // The stalled ones are still there, and can still be aborted.
    let (mut f, d) = stalled.pop().unwrap();
    close_abortively(d);
    let (code, _) = f.reply().unwrap();
    assert!(code == 426 || code == 226, "{code}");
    f.expect("NOOP", 200);
    drop(stalled);
}

/// A file truncated during its download ends the transfer with 451 (never
/// the server), and the session goes on.
fn a_file_that_shrinks_ends_its_transfer(engine: Engine) {
    let tree = Tree::new(&engine.tag("shrink"), true);
    let server = start(&tree, Mode::Auto, engine, &["--threads", "1"]);
    let mut f = Ftp::logged_in(server.addr());
    f.expect("TYPE I", 200);
    let mut d = f.passive_small();
    let (code, text) = f.cmd("RETR /big.bin").unwrap();
    assert_eq!(code, 150, "{text}");
    read_pattern(&mut d, 0, 1 << 20, 64 * 1024, || {});
    let file = fs::OpenOptions::new()
        .write(true)
        .open(tree.dir.join("big.bin"))
        .unwrap();
    file.set_len(2 << 20).unwrap();
    let mut rest = Vec::new();
    d.read_to_end(&mut rest).unwrap();
    assert!(
        rest.len() < (BIG_LEN - (1 << 20)) as usize,
        "all of it came"
    );
    let (code, text) = f.reply().unwrap();
    assert_eq!(code, 451, "{text}");
    f.expect("NOOP", 200);
    let log = server.log_when(|l| l.contains("shrunk"));
    assert!(log.contains("shrunk"), "{log}");
}

/// `--engine auto` runs io_uring where it works, and says so.
#[test]
fn auto_prefers_io_uring() {
    let tree = Tree::new("auto", false);
    let server = start_with(&tree, Mode::Auto, &[]);
    let mut f = Ftp::logged_in(server.addr());
    assert_eq!(f.retr("/small.txt"), b"hello, world\n");
    let log = server.log_when(|l| l.contains("engine="));
    // Where this kernel or sandbox refuses io_uring, the fallback says why.
    assert!(
        log.contains("engine=uring") || log.contains("falling back to epoll"),
        "{log}"
    );
}

/// Where io_uring cannot set up a ring (here: no locked memory allowed to
/// an unprivileged user), `auto` falls back to epoll with one line saying
/// why, and `uring` is an error exit with a clear message.
#[test]
fn without_io_uring_auto_falls_back_and_uring_fails() {
    assert!(
        Command::new("prlimit").arg("--version").output().is_ok(),
        "prlimit is missing: install the Debian package util-linux"
    );
    let tree = Tree::new("fallback", false);
    let server = start_with(&tree, Mode::Memlock(0), &[]);
    let mut f = Ftp::logged_in(server.addr());
    assert_eq!(f.retr("/small.txt"), b"hello, world\n");
    let log = server.log_when(|l| l.contains("engine="));
    // Kernels that charge rings to the memory cgroup and not to
    // RLIMIT_MEMLOCK would need another way to refuse io_uring here.
    assert!(
        !log.contains("engine=uring"),
        "io_uring works without locked memory on this kernel: this test cannot refuse it\n{log}"
    );
    assert!(log.contains("engine=epoll"), "{log}");
    let fallbacks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("io_uring unavailable ("))
        .collect();
    assert_eq!(fallbacks.len(), 1, "{log}");
    assert!(fallbacks[0].ends_with("): falling back to epoll"), "{log}");
    drop(server);

    let uring = |memlock: u32, threads: &str| {
        command(Mode::Memlock(memlock))
            .args(["--engine", "uring", "--threads", threads])
            .args(["--listen", "127.0.0.1:0", "--shutdown-timeout", "0"])
            .arg(&tree.dir)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = uring(0, "1").wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(111));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--engine uring: io_uring unavailable ("),
        "{err}"
    );
    // Every worker's ring is set up before the engine is chosen: enough
    // locked memory for a few rings is not enough for 64, and that is
    // found at start, not by a worker failing later.
    let out = uring(128 * 1024, "64").wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(111));
}

/// Declares each `fn NAME(engine: Engine)` as two tests, `epoll::NAME` and
/// `uring::NAME`.
macro_rules! engine_tests {
    ($($name:ident),* $(,)?) => {
        mod epoll {
            $( #[test] fn $name() { super::$name(super::Engine::Epoll) } )*
        }
        mod uring {
            $( #[test] fn $name() { super::$name(super::Engine::Uring) } )*
        }
    };
}

engine_tests! {
    serves_a_session_and_confines_it,
    runs_unprivileged_with_openat2_confinement,
    two_thousand_concurrent_sessions,
    a_burst_from_every_session_at_once,
    timeouts_fire,
    max_per_ip,
    max_sessions,
    sigterm_lets_a_slow_transfer_finish,
    sigterm_exits_zero,
    a_stalled_reader_does_not_slow_a_fast_one,
    out_of_descriptors_then_recovers,
    more_stalled_downloads_than_pipes,
    a_file_that_shrinks_ends_its_transfer,
}
