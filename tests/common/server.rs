//! Running the server under test. One suite, parameterised by program:
//!
//! - [`Kind::Ftpd`]: an in-test acceptor (what tcpserver does) listens on
//!   127.0.0.1:0 and [::1]:0 and starts one `ftpd` per connection with the
//!   accepted socket as its standard input and output. As root, ftpd gets
//!   `UID=65534 GID=65534` in its environment, so it chroots and drops
//!   privileges (the main mode); not as root, it runs as the caller.
//! - [`Kind::FtpdSetpriv`]: the same, but as root ftpd is started through
//!   `setpriv --reuid 65534 --regid 65534 --clear-groups`, so it takes
//!   the unprivileged path (no chroot, openat2 confinement).
//! - [`Kind::Supervisor`]: `aftpd-supervisor --engine epoll --listen ...`,
//!   one process.
//! - [`Kind::SupervisorUring`]: the same with `--engine uring`.
//!
//! Every process started here is killed by pid when the [`Server`] drops;
//! nothing else is ever signalled.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};

use super::port::free_port;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::tools::require;
use super::tree::Tree;

/// The unprivileged ids ftpd drops to (nobody/nogroup on Debian; numeric,
/// no passwd entry needed).
pub const DROP_UID: u32 = 65534;
pub const DROP_GID: u32 = 65534;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ftpd,
    FtpdSetpriv,
    Supervisor,
    SupervisorUring,
}

impl Kind {
    /// One process for every session (`aftpd-supervisor`, either engine).
    pub fn is_supervisor(self) -> bool {
        matches!(self, Kind::Supervisor | Kind::SupervisorUring)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

pub const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn ftpd_path() -> &'static str {
    env!("CARGO_BIN_EXE_ftpd")
}

/// The supervisor binary, when cargo built one.
pub fn supervisor_path() -> Option<&'static str> {
    option_env!("CARGO_BIN_EXE_aftpd-supervisor")
}

/// Session options, passed the same way to either program.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub args: Vec<String>,
}

impl Opts {
    pub fn new() -> Opts {
        Opts::default()
    }
    pub fn arg(mut self, a: impl Into<String>) -> Opts {
        self.args.push(a.into());
        self
    }
    pub fn timeout(self, secs: u32) -> Opts {
        self.arg("--timeout").arg(secs.to_string())
    }
    pub fn data_timeout(self, secs: u32) -> Opts {
        self.arg("--data-timeout").arg(secs.to_string())
    }
    pub fn no_greeting(self) -> Opts {
        self.arg("--no-greeting")
    }
}

/// Removes environment that would change how a program under test or a
/// client behaves (ucspi variables, proxies, ids).
pub fn clean_env(cmd: &mut Command) {
    for v in [
        "UID",
        "GID",
        "TCPLOCALIP",
        "TCPLOCALPORT",
        "TCPLOCALHOST",
        "TCPREMOTEIP",
        "TCPREMOTEPORT",
        "TCPREMOTEHOST",
        "TCPREMOTEINFO",
        "PROTO",
        "ftp_proxy",
        "FTP_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(v);
    }
}

/// A `Command` that runs `ftpd ARGS ROOT` the way `kind` wants (privileges
/// and environment); the caller sets stdio.
pub fn ftpd_command(kind: Kind, opts: &Opts, root: &Path) -> Command {
    let mut cmd = if kind == Kind::FtpdSetpriv && is_root() {
        require("setpriv", "util-linux");
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &DROP_UID.to_string(),
            "--regid",
            &DROP_GID.to_string(),
            "--clear-groups",
            "--",
            ftpd_path(),
        ]);
        c
    } else {
        Command::new(ftpd_path())
    };
    clean_env(&mut cmd);
    if kind == Kind::Ftpd && is_root() {
        cmd.env("UID", DROP_UID.to_string());
        cmd.env("GID", DROP_GID.to_string());
    }
    cmd.args(&opts.args);
    cmd.arg(root);
    cmd
}

type Children = Arc<Mutex<Vec<Child>>>;

pub struct Server {
    pub kind: Kind,
    addr4: SocketAddr,
    addr6: SocketAddr,
    pub root: PathBuf,
    pub log: PathBuf,
    stop: Arc<AtomicBool>,
    acceptors: Vec<JoinHandle<()>>,
    children: Children,
    exits: Arc<Mutex<Vec<ExitStatus>>>,
    supervisor: Option<Child>,
}

impl Server {
    pub fn start(kind: Kind, tree: &Tree, opts: Opts) -> Server {
        Server::start_at(kind, tree, &tree.root, opts)
    }

    /// A server of `tree` (its log) serving `root` instead of the tree's.
    pub fn start_at(kind: Kind, tree: &Tree, root: &Path, opts: Opts) -> Server {
        match kind {
            Kind::Ftpd | Kind::FtpdSetpriv => Server::ftpd(kind, tree, root, opts),
            Kind::Supervisor | Kind::SupervisorUring => Server::supervisor(kind, tree, root, opts),
        }
    }

    /// The in-test acceptor, one ftpd per accepted connection.
    fn ftpd(kind: Kind, tree: &Tree, root: &Path, opts: Opts) -> Server {
        let l4 = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let l6 = TcpListener::bind("[::1]:0").expect("bind [::1]:0 (is IPv6 loopback up?)");
        let log = tree.log_path();
        let logf = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let stop = Arc::new(AtomicBool::new(false));
        let children: Children = Arc::new(Mutex::new(Vec::new()));
        let exits = Arc::new(Mutex::new(Vec::new()));
        let mut srv = Server {
            kind,
            addr4: l4.local_addr().unwrap(),
            addr6: l6.local_addr().unwrap(),
            root: root.to_owned(),
            log,
            stop: stop.clone(),
            acceptors: Vec::new(),
            children: children.clone(),
            exits: exits.clone(),
            supervisor: None,
        };
        for l in [l4, l6] {
            let acc = Acceptor {
                listener: l,
                kind,
                opts: opts.clone(),
                root: root.to_owned(),
                log: logf.try_clone().unwrap(),
                stop: stop.clone(),
                children: children.clone(),
                exits: exits.clone(),
            };
            srv.acceptors.push(thread::spawn(move || acc.run()));
        }
        srv
    }

    /// `aftpd-supervisor --engine E --listen 127.0.0.1:P --listen [::1]:P6
    /// OPTS ROOT`, E as `kind` says.
    fn supervisor(kind: Kind, tree: &Tree, root: &Path, opts: Opts) -> Server {
        let engine = match kind {
            Kind::SupervisorUring => "uring",
            _ => "epoll",
        };
        let bin = supervisor_path()
            .expect("aftpd-supervisor is not built by this crate (no [[bin]] aftpd-supervisor)");
        let bin = bin.to_string();
        let addr4 = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST.into())));
        let addr6 = SocketAddr::from((Ipv6Addr::LOCALHOST, free_port(Ipv6Addr::LOCALHOST.into())));
        let log = tree.log_path();
        let logf = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(bin);
        clean_env(&mut cmd);
        if is_root() {
            cmd.env("UID", DROP_UID.to_string());
            cmd.env("GID", DROP_GID.to_string());
        }
        cmd.args(["--engine", engine])
            .arg("--listen")
            .arg(addr4.to_string())
            .arg("--listen")
            .arg(addr6.to_string())
            .args(&opts.args)
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf));
        let mut child = cmd.spawn().expect("spawn aftpd-supervisor");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "aftpd-supervisor exited at start: {st}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let ok4 = TcpStream::connect_timeout(&addr4, Duration::from_secs(1)).is_ok();
            let ok6 = TcpStream::connect_timeout(&addr6, Duration::from_secs(1)).is_ok();
            if ok4 && ok6 {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("aftpd-supervisor did not listen on {addr4} and {addr6} within 10 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        Server {
            kind,
            addr4,
            addr6,
            root: root.to_owned(),
            log,
            stop: Arc::new(AtomicBool::new(false)),
            acceptors: Vec::new(),
            children: Arc::new(Mutex::new(Vec::new())),
            exits: Arc::new(Mutex::new(Vec::new())),
            supervisor: Some(child),
        }
    }

    pub fn addr(&self, fam: Family) -> SocketAddr {
        match fam {
            Family::V4 => self.addr4,
            Family::V6 => self.addr6,
        }
    }

    /// Pids of the server processes serving sessions right now.
    pub fn pids(&self) -> Vec<u32> {
        if let Some(s) = &self.supervisor {
            return vec![s.id()];
        }
        self.children
            .lock()
            .unwrap()
            .iter_mut()
            .filter_map(|c| matches!(c.try_wait(), Ok(None)).then(|| c.id()))
            .collect()
    }

    /// Exit statuses of the per-connection processes that have finished.
    pub fn exits(&self) -> Vec<ExitStatus> {
        reap(&self.children, &self.exits);
        self.exits.lock().unwrap().clone()
    }

    /// Panics unless the server lives on: the supervisor still runs, and
    /// no per-connection ftpd died of a signal.
    pub fn assert_alive(&mut self) {
        if let Some(s) = &mut self.supervisor
            && let Ok(Some(st)) = s.try_wait()
        {
            panic!("aftpd-supervisor exited: {st}; log:\n{}", self.log_text());
        }
        self.assert_no_crash();
    }

    /// Panics if any per-connection process died of a signal (a crash).
    pub fn assert_no_crash(&self) {
        use std::os::unix::process::ExitStatusExt;
        for st in self.exits() {
            assert!(
                st.signal().is_none(),
                "a server process died of signal {:?}; log:\n{}",
                st.signal(),
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits (bounded) until the log has a record (see [`log_record`])
    /// satisfying `pred`; returns that record, or panics with the whole
    /// log.
    pub fn wait_log_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.log_text();
            if let Some(l) = text.lines().map(log_record).find(|l| pred(l)) {
                return l.to_string();
            }
            if Instant::now() > deadline {
                panic!("no log line {what} within 10 s; log:\n{text}");
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Raises this process's soft open-files limit to the hard limit (for
/// tests that hold thousands of connections); returns the new limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read one rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// A log line without its program prefix: `ftpd: start peer=...` (as a
/// program writing to standard error names itself) gives `start peer=...`.
pub fn log_record(line: &str) -> &str {
    match line.split_once(": ") {
        Some((prog, rest)) if !prog.is_empty() && !prog.contains([' ', '=']) => rest,
        _ => line,
    }
}

fn reap(children: &Children, exits: &Arc<Mutex<Vec<ExitStatus>>>) {
    let mut ch = children.lock().unwrap();
    let mut ex = exits.lock().unwrap();
    ch.retain_mut(|c| match c.try_wait() {
        Ok(Some(st)) => {
            ex.push(st);
            false
        }
        Ok(None) => true,
        Err(_) => false,
    });
}

struct Acceptor {
    listener: TcpListener,
    kind: Kind,
    opts: Opts,
    root: PathBuf,
    log: File,
    stop: Arc<AtomicBool>,
    children: Children,
    exits: Arc<Mutex<Vec<ExitStatus>>>,
}

impl Acceptor {
    fn run(self) {
        self.listener.set_nonblocking(true).unwrap();
        while !self.stop.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((sock, _peer)) => {
                    if let Err(e) = self.spawn(sock) {
                        eprintln!("acceptor: spawning ftpd: {e}");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    eprintln!("acceptor: accept: {e}");
                    thread::sleep(Duration::from_millis(20));
                }
            }
            reap(&self.children, &self.exits);
        }
    }

    fn spawn(&self, sock: TcpStream) -> io::Result<()> {
        sock.set_nonblocking(false)?;
        let out = OwnedFd::from(sock.try_clone()?);
        let inp = OwnedFd::from(sock);
        let mut cmd = ftpd_command(self.kind, &self.opts, &self.root);
        cmd.stdin(Stdio::from(inp))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(self.log.try_clone()?));
        let child = cmd.spawn()?;
        // cmd (and with it our copies of the socket) is dropped here, so
        // the connection closes when the child closes it.
        drop(cmd);
        self.children.lock().unwrap().push(child);
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for a in self.acceptors.drain(..) {
            let _ = a.join();
        }
        let mut ch = self.children.lock().unwrap();
        for c in ch.iter_mut() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        ch.clear();
        if let Some(mut s) = self.supervisor.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// Declares `#[test]` functions that run `fn NAME(kind: Kind)` once per
/// server kind: one module per kind, so `cargo test supervisor::` runs the
/// suite against one program. Adding a kind is one line here.
macro_rules! server_tests {
    ($($name:ident),* $(,)?) => {
        mod ftpd {
            $( #[test] fn $name() { super::$name($crate::common::Kind::Ftpd) } )*
        }
        mod ftpd_setpriv {
            $( #[test] fn $name() { super::$name($crate::common::Kind::FtpdSetpriv) } )*
        }
        mod supervisor {
            $( #[test] fn $name() { super::$name($crate::common::Kind::Supervisor) } )*
        }
        mod supervisor_uring {
            $( #[test] fn $name() { super::$name($crate::common::Kind::SupervisorUring) } )*
        }
    };
}
