//! Every way Unix starts aftpd, run for real on loopback: the contrib files
//! as an operator would copy them (only the port, the binary's path and
//! the archive's path changed), under openbsd-inetd, tcpserver with
//! envuidgid and multilog, systemd's socket activation (the supervisor
//! given an inherited socket as systemd would, and under
//! systemd-socket-activate), plus the xferlog, the systemd units' syntax
//! and the man pages.
//!
//! These tests need root (the super-servers start ftpd as root, which
//! chroots and drops privileges) and Debian's openbsd-inetd,
//! ucspi-tcp-ipv6, daemontools, systemd (for systemd-socket-activate and
//! systemd-analyze) and man-db/groff. A missing tool fails its test with
//! the package to install; nothing is skipped. xinetd conflicts with
//! openbsd-inetd in Debian: contrib/test unpacks it into target/tools and
//! names it in `$AFTPD_XINETD`.
//!
//! Only processes spawned here are signalled, by pid. Every wait is
//! bounded.

#[path = "common/port.rs"]
mod port;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const FTPD: &str = env!("CARGO_BIN_EXE_ftpd");
const SUPERVISOR: &str = env!("CARGO_BIN_EXE_aftpd-supervisor");
const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib");
/// nobody/nogroup on Debian: the ids the contrib files set.
const NOBODY: u32 = 65534;
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const CANARY: &str = "CANARY-OUTSIDE-THE-ROOT";
const GREETING: &str = "220 aftpd: anonymous read-only FTP server ready.\r\n";

// ---------------------------------------------------------------- helpers

/// Fails (never skips) unless running as root.
fn need_root(what: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "{what} needs root (the super-server starts ftpd as root, which chroots): run the tests as root"
    );
}

/// The path of `tool`, or a failure naming the Debian package with it.
fn need_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(tool);
        if fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return p;
        }
    }
    panic!("{tool} not found: install the Debian package {package} (apt-get install {package})");
}

/// A directory of its own for one test, removed on drop:
/// `base/root` is the archive, `base/canary.txt` lies outside it.
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let base = std::env::temp_dir().join(format!("aftpd-svc-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let root = base.join("root");
        fs::create_dir_all(root.join("pub")).unwrap();
        fs::write(root.join("small.txt"), b"hello, world\n").unwrap();
        fs::write(root.join("pub/readme"), b"read me\n").unwrap();
        fs::write(root.join("a b.txt"), b"spaced\n").unwrap();
        fs::write(base.join("canary.txt"), CANARY).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
        std::os::unix::fs::symlink("../canary.txt", root.join("canary")).unwrap();
        for f in ["small.txt", "pub/readme", "a b.txt"] {
            fs::set_permissions(root.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        fs::set_permissions(base.join("canary.txt"), fs::Permissions::from_mode(0o644)).unwrap();
        for d in [&base, &root, &root.join("pub")] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Tree { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    /// Adds `/big.bin`, `mib` MiB: more than loopback's socket buffers
    /// hold, so a download of it cannot finish before the client says.
    fn add_big(&self, mib: usize) -> u64 {
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        let path = self.root().join("big.bin");
        let mut f = fs::File::create(&path).unwrap();
        for _ in 0..mib {
            f.write_all(&chunk).unwrap();
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        (mib as u64) << 20
    }

    fn path(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// A child process, killed (by its pid) and reaped on drop.
struct Proc {
    child: Child,
    what: &'static str,
    /// Where its output went, shown when a test fails.
    log: Option<PathBuf>,
}

impl Proc {
    /// Starts `cmd`. A script this test just wrote can be busy for a
    /// moment (ETXTBSY): a thread of another test that forked while it was
    /// open for writing holds it until that child execs; so retry, briefly.
    fn spawn(what: &'static str, cmd: &mut Command, log: Option<PathBuf>) -> Proc {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match cmd.spawn() {
                Ok(child) => return Proc { child, what, log },
                Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && Instant::now() < end => {
                    thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("cannot start {what}: {e}"),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, sig);
    }

    /// Waits for the exit, at most `bound`.
    fn wait(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + bound;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it does not go within 5 s.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let st = self.wait(Duration::from_secs(10));
        if st.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        st
    }

    fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.what, self.log_text());
        }
    }
}

/// `path` opened for appending, created empty by the first caller: a
/// child's standard output and error share one log without overwriting
/// each other (two truncating opens would each write from offset 0).
fn log_file(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A loopback port that was free a moment ago, below the ephemeral range.
fn free_port() -> u16 {
    port::free_port(Ipv4Addr::LOCALHOST.into())
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Waits until `cond` holds, at most `bound`.
fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + bound;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(25));
    }
    cond()
}

/// The pids of `parent`'s children whose command name is `comm`.
fn children(parent: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces and parens.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && name == comm {
            out.push(pid);
        }
    }
    out
}

/// Asserts that process `pid` is chrooted into `root` and runs as `uid`
/// (real, effective, saved and filesystem ids).
fn assert_confined(pid: u32, root: &Path, uid: u32) {
    let seen = fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert_eq!(
        seen,
        fs::canonicalize(root).unwrap(),
        "ftpd (pid {pid}) is not chrooted into the archive"
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|u| u.parse::<u32>().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(uids, vec![uid; 4], "ftpd (pid {pid}) ids: {status}");
    let nnp = status
        .lines()
        .find(|l| l.starts_with("NoNewPrivs:"))
        .unwrap_or_default();
    assert!(nnp.ends_with('1'), "no_new_privs not set: {nnp}");
}

/// The uid of user `name`, created (a system user, no home) if missing.
fn system_user(name: &str) -> u32 {
    let id = |n: &str| {
        Command::new("id")
            .args(["-u", n])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
    };
    if let Some(uid) = id(name) {
        return uid;
    }
    let useradd = need_tool("useradd", "passwd");
    let st = Command::new(useradd)
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .status()
        .unwrap();
    // Another test may have created it meanwhile.
    id(name).unwrap_or_else(|| panic!("useradd {name} failed: {st}"))
}

/// `text` with each `(from, to)` replaced, insisting each is there.
fn adapt(text: &str, subs: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in subs {
        assert!(out.contains(from), "{from:?} is not in the contrib file");
        out = out.replace(from, to);
    }
    out
}

fn contrib(path: &str) -> String {
    fs::read_to_string(Path::new(CONTRIB).join(path)).unwrap()
}

// ------------------------------------------------------------- FTP client

/// A minimal FTP client.
struct Ftp {
    r: BufReader<TcpStream>,
    w: TcpStream,
    /// Everything received on the control and data connections, to prove
    /// that the canary never came.
    seen: Vec<u8>,
}

impl Ftp {
    fn from_stream(s: TcpStream) -> Ftp {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Ftp {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
            seen: Vec::new(),
        }
    }

    /// Connects, retrying while the server is coming up.
    fn connect(addr: SocketAddr) -> Ftp {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => return Ftp::from_stream(s),
                Err(e) if Instant::now() >= end => panic!("cannot connect to {addr}: {e}"),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        self.seen.extend_from_slice(line.as_bytes());
        Ok(line)
    }

    /// One reply, multi-line ones folded: (code, full text).
    fn reply(&mut self) -> io::Result<(u16, String)> {
        let first = self.line()?;
        let code: u16 = first
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, first.clone()))?;
        let mut text = first.clone();
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let l = self.line()?;
                text.push_str(&l);
                if l.starts_with(&end) {
                    break;
                }
            }
        }
        Ok((code, text))
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
            .unwrap_or_else(|e| panic!("{line}: no reply: {e}"))
    }

    fn expect(&mut self, line: &str, code: u16) -> String {
        let (c, text) = self.cmd(line);
        assert_eq!(c, code, "{line}: {text}");
        text
    }

    fn greeting(&mut self) {
        let (c, text) = self.reply().expect("a greeting");
        assert_eq!(c, 220, "{text}");
    }

    fn login(&mut self) {
        self.expect("USER anonymous", 331);
        self.expect("PASS guest@example.org", 230);
    }

    fn passive(&mut self) -> TcpStream {
        let text = self.expect("EPSV", 229);
        let port: u16 = text
            .split('|')
            .nth(3)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad 229: {text}"));
        let ip = self.w.peer_addr().unwrap().ip();
        let d =
            TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(5)).unwrap();
        d.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        d
    }

    /// RETR (or LIST) `arg`: the data, or the refusal's code.
    fn transfer(&mut self, line: &str) -> Result<Vec<u8>, u16> {
        let mut d = self.passive();
        let (code, text) = self.cmd(line);
        if code >= 400 {
            return Err(code);
        }
        assert_eq!(code, 150, "{line}: {text}");
        let mut got = Vec::new();
        d.read_to_end(&mut got).unwrap();
        self.seen.extend_from_slice(&got);
        let (code, text) = self.reply().unwrap();
        assert_eq!(code, 226, "{line}: {text}");
        Ok(got)
    }

    fn retr(&mut self, path: &str) -> Result<Vec<u8>, u16> {
        self.expect("TYPE I", 200);
        self.transfer(&format!("RETR {path}"))
    }

    fn quit(&mut self) {
        self.expect("QUIT", 221);
    }

    /// The escape attempts every set-up must refuse; none may show the
    /// canary or the host's password file.
    fn try_escapes(&mut self) {
        for path in [
            "../../etc/passwd",
            "/../../../../etc/passwd",
            "../canary.txt",
            "passwd",
            "canary",
            "/pub/../../canary.txt",
        ] {
            assert_eq!(self.retr(path), Err(550), "RETR {path} was not refused");
        }
        self.expect("CWD ..", 250);
        let pwd = self.expect("PWD", 257);
        assert!(pwd.contains("\"/\""), "{pwd}");
        let listing = self.transfer("LIST").unwrap();
        let listing = String::from_utf8_lossy(&listing);
        assert!(listing.contains("small.txt"), "{listing}");
        assert!(!listing.contains("canary.txt"), "{listing}");
        assert!(
            !listing.contains("passwd"),
            "a link out of the root is listed: {listing}"
        );
        let seen = String::from_utf8_lossy(&self.seen);
        assert!(!seen.contains(CANARY), "the canary was served");
        assert!(
            !seen.contains("root:x:0:0"),
            "the host's /etc/passwd was served"
        );
    }
}

/// A fake syslog: a datagram socket where `/run` will be (see
/// [`in_private_run`]): the syslog crate falls back to
/// `/var/run/syslog` (= `/run/syslog`) when `/dev/log` is missing.
struct Syslog {
    dir: PathBuf,
    sock: UnixDatagram,
}

impl Syslog {
    fn new(tree: &Tree) -> Syslog {
        let dir = tree.path("run");
        fs::create_dir_all(&dir).unwrap();
        let sock = UnixDatagram::bind(dir.join("syslog")).unwrap();
        fs::set_permissions(dir.join("syslog"), fs::Permissions::from_mode(0o666)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Syslog { dir, sock }
    }

    /// The messages received until `until` holds for one (or 10 s pass).
    fn collect(&self, out: &mut Vec<String>, until: impl Fn(&str) -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 8192];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = until(&m);
                out.push(m);
                if done {
                    return;
                }
            }
        }
    }
}

/// `program args` in a private mount namespace where `/run` is `run_dir`
/// (and `/dev/log`, if the host has one, is `run_dir/syslog`), so that
/// syslog messages come to the test's [`Syslog`] and nowhere else.
fn in_private_run(run_dir: &Path, program: &Path, args: &[&str]) -> Command {
    let unshare = need_tool("unshare", "util-linux");
    let mut c = Command::new(unshare);
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

// ------------------------------------------------------------------ inetd

#[test]
fn openbsd_inetd_runs_the_contrib_line() {
    need_root("inetd");
    let inetd = need_tool("inetd", "openbsd-inetd");
    let tree = Tree::new("inetd");
    let port = free_port();
    let root = tree.root();
    let lines: Vec<String> = contrib("inetd/inetd.conf")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 1, "one service line: {lines:?}");
    // The port (on loopback only), the binary and the archive: nothing else.
    let conf = adapt(
        &lines[0],
        &[
            ("ftp\t", &format!("127.0.0.1:{port}\t")),
            ("/usr/local/bin/ftpd", FTPD),
            ("/srv/ftp", root.to_str().unwrap()),
        ],
    );
    let conf_path = tree.path("inetd.conf");
    fs::write(&conf_path, format!("{conf}\n")).unwrap();
    let syslog = Syslog::new(&tree);
    let log = tree.path("inetd.log");
    let mut cmd = in_private_run(&syslog.dir, &inetd, &["-d", conf_path.to_str().unwrap()]);
    cmd.stdin(Stdio::null())
        .stdout(log_file(&log))
        .stderr(log_file(&log));
    let mut server = Proc::spawn("inetd", &mut cmd, Some(log));

    let mut f = Ftp::connect(local(port));
    f.greeting();
    // The session's ftpd: inetd's child, chrooted, as 65534.
    let mut pids = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            pids = children(server.pid(), "ftpd");
            !pids.is_empty()
        }),
        "no ftpd under inetd"
    );
    f.login();
    assert_confined(pids[0], &root, NOBODY);
    assert_eq!(f.retr("/small.txt").unwrap(), b"hello, world\n");
    assert_eq!(f.retr("pub/readme").unwrap(), b"read me\n");
    f.try_escapes();
    f.quit();

    // --syslog: the lines came to syslog, facility FTP (11 * 8 + info 6).
    let mut msgs = Vec::new();
    syslog.collect(&mut msgs, |m| m.contains("end peer="));
    let all = msgs.join("\n");
    assert!(all.contains("<94>"), "not facility FTP: {all}");
    assert!(all.contains("ftpd["), "{all}");
    assert!(all.contains("start peer=127.0.0.1:"), "{all}");
    assert!(
        all.contains("transfer peer=127.0.0.1:") && all.contains("path=/small.txt"),
        "{all}"
    );
    assert!(
        !String::from_utf8_lossy(&f.seen).contains("peer="),
        "a log line reached the client"
    );
    server.stop();
}

// ---------------------------------------------------- tcpserver + multilog

#[test]
fn tcpserver_runs_the_contrib_run_script_with_multilog() {
    need_root("tcpserver with envuidgid");
    need_tool("tcpserver", "ucspi-tcp-ipv6");
    for t in ["envuidgid", "setuidgid", "multilog"] {
        need_tool(t, "daemontools");
    }
    let ftp_uid = system_user("ftp");
    let ftplog_uid = system_user("ftplog");
    let tree = Tree::new("tcpserver");
    let root = tree.root();
    let port = free_port();

    // The service directory, as an operator installs it.
    let svc = tree.path("sv");
    fs::create_dir_all(svc.join("log/main")).unwrap();
    let run = adapt(
        &contrib("runit/ftpd/run"),
        &[
            (
                "0 21 /usr/local/bin/ftpd",
                &format!("127.0.0.1 {port} {FTPD}"),
            ),
            ("/srv/ftp", root.to_str().unwrap()),
        ],
    );
    fs::write(svc.join("run"), run).unwrap();
    fs::copy(
        Path::new(CONTRIB).join("runit/ftpd/log/run"),
        svc.join("log/run"),
    )
    .unwrap();
    for f in ["run", "log/run"] {
        fs::set_permissions(svc.join(f), fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in [
        Path::new(CONTRIB).join("runit/ftpd/run"),
        Path::new(CONTRIB).join("runit/ftpd/log/run"),
    ] {
        let mode = fs::metadata(&f).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{} is not executable", f.display());
    }
    nix::unistd::chown(
        &svc.join("log/main"),
        Some(nix::unistd::Uid::from_raw(ftplog_uid)),
        None,
    )
    .unwrap();

    // runsv's wiring: ./run's output into log/run's input.
    let mut server = Proc::spawn(
        "run",
        Command::new(svc.join("run"))
            .current_dir(&svc)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        None,
    );
    let pipe = server.child.stdout.take().unwrap();
    let mut logger = Proc::spawn(
        "log/run",
        Command::new(svc.join("log/run"))
            .current_dir(svc.join("log"))
            .stdin(Stdio::from(OwnedFd::from(pipe)))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        None,
    );

    let mut f = Ftp::connect(local(port));
    // tcpserver -B wrote the greeting, CRLF and all; ftpd adds none.
    let first = f.line().unwrap();
    assert_eq!(first, GREETING);
    f.login();
    let mut pids = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            pids = children(server.pid(), "ftpd");
            !pids.is_empty()
        }),
        "no ftpd under tcpserver"
    );
    assert_confined(pids[0], &root, ftp_uid);
    assert_eq!(f.retr("/small.txt").unwrap(), b"hello, world\n");
    f.try_escapes();
    f.quit();
    // No second greeting came after the session.
    assert!(!String::from_utf8_lossy(&f.seen)[GREETING.len()..].contains("220 "));

    // A second session, at once: tcpserver serves on.
    let mut g = Ftp::connect(local(port));
    assert_eq!(g.line().unwrap(), GREETING);
    g.login();
    assert_eq!(g.retr("pub/readme").unwrap(), b"read me\n");
    g.quit();

    // Stopping tcpserver closes the pipe: multilog writes out and exits.
    thread::sleep(Duration::from_millis(200));
    server.stop();
    assert!(
        logger.wait(Duration::from_secs(10)).is_some(),
        "multilog did not exit"
    );
    let current = svc.join("log/main/current");
    let text = fs::read_to_string(&current).unwrap();
    let meta = fs::metadata(&current).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        ftplog_uid,
        "multilog did not run as ftplog"
    );
    for want in [
        "tcpserver: status: ",
        "ftpd: start peer=127.0.0.1:",
        "ftpd: transfer peer=127.0.0.1:",
        "kind=retr path=/small.txt bytes=13",
        "ftpd: end peer=127.0.0.1:",
    ] {
        assert!(text.contains(want), "{want:?} not in the log:\n{text}");
    }
    // multilog t: every line starts with a TAI64N label.
    assert!(
        text.lines().all(|l| l.starts_with("@4000") && l.len() > 26),
        "{text}"
    );
}

// ------------------------------------------------------ socket activation

/// The supervisor, started as systemd starts a socket-activated service:
/// `listeners` as fds 3.., `$LISTEN_FDS`, and `$LISTEN_PID` set to its own
/// pid (by the shell that execs it, which keeps its pid).
fn activated_supervisor(
    tree: &Tree,
    listeners: &[&TcpListener],
    listen_pid: Option<&str>,
    args: &[&str],
) -> Proc {
    let log = tree.path("supervisor.log");
    let mut cmd = Command::new("/bin/sh");
    let pid = listen_pid.unwrap_or("$$");
    cmd.arg("-c")
        .arg(format!("LISTEN_PID={pid} exec \"$0\" \"$@\""))
        .arg(SUPERVISOR)
        .args(args)
        .arg(tree.root())
        .env("LISTEN_FDS", listeners.len().to_string())
        .env("LISTEN_FDNAMES", "ftp")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(log_file(&log))
        .stderr(log_file(&log));
    if rustix::process::geteuid().is_root() {
        cmd.env("UID", NOBODY.to_string())
            .env("GID", NOBODY.to_string());
    }
    const MAX: usize = 8;
    assert!(listeners.len() <= MAX);
    let mut fds = [-1i32; MAX];
    for (slot, l) in fds.iter_mut().zip(listeners) {
        *slot = l.as_raw_fd();
    }
    let n = listeners.len() as i32;
    // SAFETY: between fork and exec, only async-signal-safe calls (fcntl,
    // dup2, close) on descriptors this process holds; no allocation (the
    // array was filled before the fork).
    unsafe {
        cmd.pre_exec(move || {
            // Copies above the target range first (F_DUPFD takes the lowest
            // free descriptor >= 3 + n, clobbering nothing), so that a
            // socket already at 3 + j is not overwritten before it is moved.
            let count = n as usize;
            let mut tmp = [-1i32; MAX];
            for (t, &fd) in tmp.iter_mut().zip(&fds).take(count) {
                *t = libc::fcntl(fd, libc::F_DUPFD, 3 + n);
                if *t < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (target, &t) in (3..).zip(&tmp).take(count) {
                // dup2 clears FD_CLOEXEC on the copy: it survives the exec.
                if libc::dup2(t, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(t);
            }
            Ok(())
        });
    }
    Proc::spawn("aftpd-supervisor", &mut cmd, Some(log))
}

#[test]
fn supervisor_serves_inherited_sockets_and_ignores_listen() {
    let tree = Tree::new("activation");
    let xdir = tree.path("xferlog.d");
    fs::create_dir_all(&xdir).unwrap();
    if rustix::process::geteuid().is_root() {
        // The reopen on SIGHUP runs as the user the supervisor became.
        nix::unistd::chown(&xdir, Some(nix::unistd::Uid::from_raw(NOBODY)), None).unwrap();
    }
    let xferlog = xdir.join("xferlog");
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let unused = free_port();
    let listen = format!("127.0.0.1:{unused}");
    let mut server = activated_supervisor(
        &tree,
        &[&a, &b],
        None,
        &[
            "--threads",
            "3",
            "--listen",
            &listen,
            "--xferlog",
            xferlog.to_str().unwrap(),
        ],
    );
    let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    // The test's copies: the supervisor's must do the accepting.
    drop(a);
    drop(b);

    // Several sessions at once, on both sockets, shared by three workers.
    let mut sessions: Vec<Ftp> = (0..6)
        .map(|i| Ftp::connect(if i % 2 == 0 { pa } else { pb }))
        .collect();
    for f in &mut sessions {
        f.greeting();
        f.login();
    }
    for f in &mut sessions {
        assert_eq!(f.retr("/small.txt").unwrap(), b"hello, world\n");
    }
    for f in &mut sessions {
        f.quit();
    }
    assert!(
        TcpStream::connect(local(unused)).is_err(),
        "--listen was bound despite the passed sockets"
    );
    // The start line comes once the workers run: maybe after sessions.
    wait_until(Duration::from_secs(5), || {
        server.log_text().contains("listening on ")
    });
    let text = server.log_text();
    assert!(text.contains("--listen ignored"), "{text}");
    assert!(
        text.contains(" (passed by the service manager) root="),
        "{text}"
    );
    assert!(
        text.contains(&pa.to_string()) && text.contains(&pb.to_string()),
        "{text}"
    );
    // The xferlog: six downloads, then SIGHUP reopens it after a rotation.
    assert!(wait_until(Duration::from_secs(5), || {
        fs::read_to_string(&xferlog).is_ok_and(|t| t.lines().count() == 6)
    }));
    let lines = fs::read_to_string(&xferlog).unwrap();
    for l in lines.lines() {
        assert_xferlog_line(l, "/small.txt", 13, 'b', 'c');
    }
    fs::rename(&xferlog, xdir.join("xferlog.1")).unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || server
            .log_text()
            .contains("SIGHUP: reopened")),
        "{}",
        server.log_text()
    );
    let mut f = Ftp::connect(pa);
    f.greeting();
    f.login();
    f.expect("TYPE A", 200);
    assert_eq!(f.transfer("RETR pub/readme").unwrap(), b"read me\r\n");
    f.quit();
    assert!(wait_until(Duration::from_secs(5), || {
        fs::read_to_string(&xferlog).is_ok_and(|t| t.lines().count() == 1)
    }));
    assert_xferlog_line(
        fs::read_to_string(&xferlog).unwrap().trim_end(),
        "/pub/readme",
        9,
        'a',
        'c',
    );
    assert_eq!(
        fs::read_to_string(xdir.join("xferlog.1"))
            .unwrap()
            .lines()
            .count(),
        6
    );

    assert_eq!(server.stop().and_then(|s| s.code()), Some(0));
}

#[test]
fn supervisor_refuses_what_is_not_a_listening_tcp_socket() {
    let tree = Tree::new("activation-bad");
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let conn = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    // A connected stream, as Accept=yes would pass.
    let conn_listener = {
        let fd = OwnedFd::from(conn.try_clone().unwrap());
        TcpListener::from(fd)
    };
    let mut server = activated_supervisor(&tree, &[&conn_listener], None, &[]);
    let st = server.wait(Duration::from_secs(10)).expect("it exits");
    assert_eq!(st.code(), Some(100), "{}", server.log_text());
    assert!(
        server.log_text().contains("descriptor 3 is not listening"),
        "{}",
        server.log_text()
    );
}

#[test]
fn supervisor_ignores_sockets_meant_for_another_process() {
    let tree = Tree::new("activation-other");
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = activated_supervisor(
        &tree,
        &[&l],
        Some("1"),
        &["--threads", "1", "--listen", &listen],
    );
    let mut f = Ftp::connect(local(port));
    f.greeting();
    f.quit();
    assert!(
        !server.log_text().contains("ignored"),
        "{}",
        server.log_text()
    );
    assert_eq!(server.stop().and_then(|s| s.code()), Some(0));
}

/// The `ExecStart=` of a contrib unit, split into words, with the paths
/// changed; and its `Environment=` assignments.
fn unit_exec(unit: &str, root: &Path) -> (Vec<String>, Vec<String>) {
    let text = adapt(
        &contrib(&format!("systemd/{unit}")),
        &[("/srv/ftp", root.to_str().unwrap())],
    )
    .replace("/usr/local/bin/ftpd", FTPD)
    .replace("/usr/local/bin/aftpd-supervisor", SUPERVISOR);
    let value = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(key))
            .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    let exec = value("ExecStart=");
    assert!(!exec.is_empty(), "{unit} has no ExecStart=");
    (exec, value("Environment="))
}

#[test]
fn supervisor_runs_its_systemd_unit_under_systemd_socket_activate() {
    let activate = need_tool("systemd-socket-activate", "systemd");
    let tree = Tree::new("sd-activate");
    let socket = contrib("systemd/aftpd-supervisor.socket");
    assert!(socket.contains("\nListenStream=21\n"), "{socket}");
    assert!(!socket.contains("Accept=yes"));
    let (exec, env) = unit_exec("aftpd-supervisor.service", &tree.root());
    let port = free_port();
    let log = tree.path("activate.log");
    let mut cmd = Command::new(activate);
    cmd.arg("-l").arg(local(port).to_string());
    for e in &env {
        // Without root there are no ids to switch to.
        if rustix::process::geteuid().is_root() {
            cmd.arg("-E").arg(e);
        }
    }
    cmd.args(&exec)
        .stdin(Stdio::null())
        .stdout(log_file(&log))
        .stderr(log_file(&log));
    let mut server = Proc::spawn("systemd-socket-activate", &mut cmd, Some(log));
    // The first connection starts the supervisor, which takes it from the
    // socket's queue.
    let mut f = Ftp::connect(local(port));
    f.greeting();
    f.login();
    assert_eq!(f.retr("/small.txt").unwrap(), b"hello, world\n");
    f.try_escapes();
    f.quit();
    wait_until(Duration::from_secs(5), || {
        server.log_text().contains("listening on ")
    });
    let text = server.log_text();
    assert!(
        text.contains(" (passed by the service manager) root="),
        "{text}"
    );
    if rustix::process::geteuid().is_root() {
        // systemd-socket-activate execs the service: same pid.
        assert_confined(server.pid(), &tree.root(), NOBODY);
    }
    server.stop();
}

#[test]
fn ftpd_runs_its_systemd_unit_with_accept_yes() {
    let activate = need_tool("systemd-socket-activate", "systemd");
    let tree = Tree::new("sd-accept");
    let socket = contrib("systemd/ftpd.socket");
    assert!(socket.contains("\nAccept=yes\n"), "{socket}");
    let (exec, env) = unit_exec("ftpd@.service", &tree.root());
    let port = free_port();
    let log = tree.path("activate.log");
    let mut cmd = Command::new(activate);
    // --inetd: the connection as standard input and output, as
    // StandardInput=socket and StandardOutput=socket do.
    cmd.arg("-l")
        .arg(local(port).to_string())
        .args(["--accept", "--inetd"]);
    if rustix::process::geteuid().is_root() {
        for e in &env {
            cmd.arg("-E").arg(e);
        }
    }
    cmd.args(&exec)
        .stdin(Stdio::null())
        .stdout(log_file(&log))
        .stderr(log_file(&log));
    let server = Proc::spawn("systemd-socket-activate", &mut cmd, Some(log));
    for _ in 0..2 {
        let mut f = Ftp::connect(local(port));
        f.greeting();
        f.login();
        if rustix::process::geteuid().is_root() {
            let mut pids = Vec::new();
            assert!(wait_until(Duration::from_secs(5), || {
                pids = children(server.pid(), "ftpd");
                !pids.is_empty()
            }));
            assert_confined(pids[0], &tree.root(), NOBODY);
        }
        assert_eq!(f.retr("/small.txt").unwrap(), b"hello, world\n");
        f.try_escapes();
        f.quit();
    }
    // Standard error (the journal, under systemd) has ftpd's lines.
    assert!(wait_until(Duration::from_secs(5), || server
        .log_text()
        .contains("ftpd: end peer=127.0.0.1:")));
}

#[test]
fn systemd_units_verify() {
    let analyze = need_tool("systemd-analyze", "systemd");
    let tree = Tree::new("units");
    let dir = tree.path("units");
    fs::create_dir_all(&dir).unwrap();
    let units = [
        "ftpd.socket",
        "ftpd@.service",
        "aftpd-supervisor.socket",
        "aftpd-supervisor.service",
    ];
    for u in units {
        // The binaries' paths must exist for verify: the built ones.
        let text = contrib(&format!("systemd/{u}"))
            .replace("/usr/local/bin/ftpd", FTPD)
            .replace("/usr/local/bin/aftpd-supervisor", SUPERVISOR);
        fs::write(dir.join(u), text).unwrap();
    }
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(units.map(|u| dir.join(u)))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {err}");
    assert!(err.trim().is_empty(), "systemd-analyze verify warns: {err}");
}

// ---------------------------------------------------------------- xinetd

#[test]
fn xinetd_runs_the_contrib_service() {
    need_root("xinetd");
    let xinetd = std::env::var_os("AFTPD_XINETD")
        .map(PathBuf::from)
        .unwrap_or_else(|| need_tool("xinetd", "xinetd"));
    let tree = Tree::new("xinetd");
    let port = free_port();
    let root = tree.root();
    // Another port than ftp's needs an unlisted service, and loopback only.
    let service = adapt(
        &contrib("xinetd/ftpd"),
        &[
            (
                "service ftp\n{\n",
                &format!(
                    "service aftpd-test\n{{\n\ttype\t\t= UNLISTED\n\tport\t\t= {port}\n\tbind\t\t= 127.0.0.1\n"
                ),
            ),
            ("\tflags\t\t= IPv6\n", ""),
            ("/usr/local/bin/ftpd", FTPD),
            ("/srv/ftp", root.to_str().unwrap()),
        ],
    );
    let conf = tree.path("xinetd.conf");
    fs::write(&conf, service).unwrap();
    let syslog = Syslog::new(&tree);
    let log = tree.path("xinetd.log");
    let mut cmd = in_private_run(
        &syslog.dir,
        &xinetd,
        &["-dontfork", "-stayalive", "-f", conf.to_str().unwrap()],
    );
    cmd.stdin(Stdio::null())
        .stdout(log_file(&log))
        .stderr(log_file(&log));
    let mut server = Proc::spawn("xinetd", &mut cmd, Some(log));
    let mut f = Ftp::connect(local(port));
    f.greeting();
    f.login();
    let mut pids = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        pids = children(server.pid(), "ftpd");
        !pids.is_empty()
    }));
    assert_confined(pids[0], &root, NOBODY);
    assert_eq!(f.retr("/small.txt").unwrap(), b"hello, world\n");
    f.try_escapes();
    f.quit();
    let mut msgs = Vec::new();
    syslog.collect(&mut msgs, |m| {
        m.contains("ftpd[") && m.contains("end peer=")
    });
    let all = msgs.join("\n");
    assert!(
        all.contains("<94>") && all.contains("start peer=127.0.0.1:"),
        "{all}"
    );
    server.stop();
}

// ---------------------------------------------------- ftpd directly, xferlog

/// ftpd on one accepted connection (as a super-server starts it), with
/// `stderr` as its standard error; returns it and the client.
fn ftpd_on_connection(
    tree: &Tree,
    args: &[&str],
    stderr: impl FnOnce(&TcpStream) -> Stdio,
) -> (Proc, Ftp) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (conn, _) = l.accept().unwrap();
    let log = tree.path("ftpd.log");
    let mut cmd = Command::new(FTPD);
    cmd.args(args)
        .arg(tree.root())
        .env_remove("UID")
        .env_remove("GID")
        .stdin(Stdio::from(OwnedFd::from(conn.try_clone().unwrap())))
        .stdout(Stdio::from(OwnedFd::from(conn.try_clone().unwrap())))
        .stderr(stderr(&conn));
    if rustix::process::geteuid().is_root() {
        cmd.env("UID", NOBODY.to_string())
            .env("GID", NOBODY.to_string());
    }
    let p = Proc::spawn("ftpd", &mut cmd, Some(log));
    drop(conn);
    (p, Ftp::from_stream(client))
}

/// Checks one xferlog line field by field.
fn assert_xferlog_line(line: &str, path: &str, bytes: u64, kind: char, status: char) {
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 18, "{line}");
    assert!(
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&f[0]),
        "{line}"
    );
    assert_eq!(f[3].len(), 8, "{line}");
    assert!(f[4].parse::<u32>().is_ok_and(|y| y >= 2024), "{line}");
    assert!(f[5].parse::<u64>().is_ok_and(|s| s >= 1), "{line}");
    assert_eq!(f[6], "127.0.0.1", "{line}");
    if status == 'c' {
        assert_eq!(f[7], bytes.to_string(), "{line}");
    } else {
        assert!(f[7].parse::<u64>().is_ok_and(|b| b < bytes), "{line}");
    }
    assert_eq!(f[8], path, "{line}");
    let tail = format!("{kind} _ o a anonymous ftp 0 * {status}");
    assert!(line.ends_with(&tail), "{line}");
}

#[test]
fn ftpd_writes_the_xferlog_from_inside_the_chroot() {
    let tree = Tree::new("ftpd-xferlog");
    let big = tree.add_big(64);
    let xferlog = tree.path("xferlog");
    let (mut p, mut f) =
        ftpd_on_connection(&tree, &["--xferlog", xferlog.to_str().unwrap()], |_| {
            Stdio::from(fs::File::create(tree.path("ftpd.log")).unwrap())
        });
    f.greeting();
    f.login();
    assert_eq!(f.retr("/small.txt").unwrap(), b"hello, world\n");
    assert_eq!(f.retr("a b.txt").unwrap(), b"spaced\n");
    f.expect("TYPE A", 200);
    assert_eq!(f.transfer("RETR /pub/readme").unwrap(), b"read me\r\n");
    // Listings are not in the xferlog.
    f.transfer("LIST /").unwrap();
    // A download cut short by the client: incomplete.
    f.expect("TYPE I", 200);
    let mut d = f.passive();
    let (code, text) = f.cmd("RETR big.bin");
    assert_eq!(code, 150, "{text}");
    let mut buf = vec![0u8; 65536];
    d.read_exact(&mut buf).unwrap();
    let _ = rustix::net::sockopt::set_socket_linger(&d, Some(Duration::ZERO));
    drop(d);
    let (code, text) = f.reply().unwrap();
    assert!(code == 426 || code == 451, "{code} {text}");
    f.quit();
    assert!(p.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
    if rustix::process::geteuid().is_root() {
        let meta = fs::metadata(&xferlog).unwrap();
        // Created by root before the chroot, mode 0640 (less the umask).
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
        assert_eq!(meta.permissions().mode() & 0o137, 0);
    }
    let text = fs::read_to_string(&xferlog).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_xferlog_line(lines[0], "/small.txt", 13, 'b', 'c');
    assert_xferlog_line(lines[1], "/a\\x20b.txt", 7, 'b', 'c');
    assert_xferlog_line(lines[2], "/pub/readme", 9, 'a', 'c');
    assert_xferlog_line(lines[3], "/big.bin", big, 'b', 'i');
    // Another session appends.
    let (mut p, mut f) =
        ftpd_on_connection(&tree, &["--xferlog", xferlog.to_str().unwrap()], |_| {
            Stdio::null()
        });
    f.greeting();
    f.login();
    f.retr("/small.txt").unwrap();
    f.quit();
    assert!(p.wait(Duration::from_secs(10)).is_some());
    assert_eq!(fs::read_to_string(&xferlog).unwrap().lines().count(), 5);
}

#[test]
fn ftpd_never_logs_to_the_client_when_stderr_is_the_connection() {
    let tree = Tree::new("ftpd-stderr");
    // inetd's wiring: fds 0, 1 and 2 are the connection. No syslog socket
    // here may exist; either way nothing may reach the client.
    let (mut p, mut f) = ftpd_on_connection(&tree, &[], |c| {
        Stdio::from(OwnedFd::from(c.try_clone().unwrap()))
    });
    f.greeting();
    f.login();
    assert_eq!(f.retr("/small.txt").unwrap(), b"hello, world\n");
    f.quit();
    let mut rest = Vec::new();
    let _ = f.r.read_to_end(&mut rest);
    f.seen.extend_from_slice(&rest);
    assert!(p.wait(Duration::from_secs(10)).is_some());
    let seen = String::from_utf8_lossy(&f.seen);
    assert!(
        !seen.contains("peer="),
        "a log line reached the client:\n{seen}"
    );
}

// ------------------------------------------------------------- start-up

/// Where a careless parent leaves descriptors open across the exec: a
/// shell's 10 and 255-ish, and 3, where a service manager would put a
/// socket it did not mean to pass.
const INHERITED: [i32; 3] = [3, 10, 251];

/// Makes `cmd` start with `file` open (not close-on-exec) as each of the
/// [`INHERITED`] descriptors.
fn leave_open(cmd: &mut Command, file: &fs::File) {
    let fd = file.as_raw_fd();
    // SAFETY: between fork and exec, only async-signal-safe calls (dup2,
    // fcntl) on descriptors this process holds; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            for target in INHERITED {
                let r = if target == fd {
                    // dup2 onto itself would keep close-on-exec.
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, target)
                };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The descriptors of process `pid` that are `file` (same device and
/// inode), read from /proc.
fn holds(pid: u32, file: &fs::File) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let want = file.metadata().unwrap();
    let mut found = Vec::new();
    for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let e = e.unwrap();
        if let Ok(m) = fs::metadata(e.path())
            && (m.dev(), m.ino()) == (want.dev(), want.ino())
        {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn ftpd_closes_inherited_descriptors() {
    let tree = Tree::new("ftpd-fds");
    let marker = fs::File::create(tree.path("inherited")).unwrap();
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (conn, _) = l.accept().unwrap();
    let log = tree.path("ftpd.log");
    let mut cmd = Command::new(FTPD);
    cmd.arg(tree.root())
        .env_remove("UID")
        .env_remove("GID")
        .stdin(Stdio::from(OwnedFd::from(conn.try_clone().unwrap())))
        .stdout(Stdio::from(OwnedFd::from(conn)))
        .stderr(log_file(&log));
    if rustix::process::geteuid().is_root() {
        cmd.env("UID", NOBODY.to_string())
            .env("GID", NOBODY.to_string());
    }
    leave_open(&mut cmd, &marker);
    let mut p = Proc::spawn("ftpd", &mut cmd, Some(log));
    drop(cmd);
    let mut f = Ftp::from_stream(client);
    // Greeted: ftpd is past its start-up, in the session.
    f.greeting();
    assert_eq!(holds(p.pid(), &marker), Vec::<String>::new());
    f.login();
    f.quit();
    assert!(p.wait(Duration::from_secs(10)).is_some());
}

#[test]
fn supervisor_closes_inherited_descriptors() {
    let tree = Tree::new("supervisor-fds");
    let marker = fs::File::create(tree.path("inherited")).unwrap();
    let port = free_port();
    let log = tree.path("supervisor.log");
    let mut cmd = Command::new(SUPERVISOR);
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--threads", "2"])
        .arg(tree.root())
        .env_remove("UID")
        .env_remove("GID")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null())
        .stdout(log_file(&log))
        .stderr(log_file(&log));
    leave_open(&mut cmd, &marker);
    let p = Proc::spawn("aftpd-supervisor", &mut cmd, Some(log));
    assert!(
        wait_until(Duration::from_secs(15), || TcpStream::connect(local(port))
            .is_ok()),
        "the supervisor did not come up"
    );
    let mut f = Ftp::connect(local(port));
    f.greeting();
    assert_eq!(holds(p.pid(), &marker), Vec::<String>::new());
    f.login();
    assert_eq!(f.retr("/small.txt").unwrap(), b"hello, world\n");
    f.quit();
}

/// Both programs are static-pie executables (`.cargo/config.toml`): no
/// dynamic loader, and still position-independent, so ASLR is kept.
#[test]
fn binaries_are_static_pie() {
    let file = need_tool("file", "file");
    for bin in [FTPD, SUPERVISOR] {
        let out = Command::new(&file).args(["-b", bin]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "file {bin}: {text}");
        assert!(text.contains("static-pie linked"), "{bin}: {text}");
    }
}

// ------------------------------------------------------------- man pages

fn help(bin: &str) -> String {
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Every `--option` in `text`.
fn options(text: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        let mut end = start + 2;
        while end < b.len() && (b[end].is_ascii_lowercase() || b[end] == b'-') {
            end += 1;
        }
        if end > start + 2 && (start == 0 || !b[start - 1].is_ascii_alphanumeric()) {
            set.insert(text[start..end].trim_end_matches('-').to_owned());
        }
        i = end;
    }
    set
}

fn man_page(name: &str) -> String {
    contrib(&format!("man/{name}.8"))
}

#[test]
fn man_pages_render_without_warnings() {
    let man = need_tool("man", "man-db");
    need_tool("groff", "groff-base");
    for page in ["ftpd", "aftpd-supervisor"] {
        let path = Path::new(CONTRIB).join(format!("man/{page}.8"));
        let out = Command::new(&man)
            .args(["--warnings=w", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "man -l {page}.8: {err}");
        assert!(err.trim().is_empty(), "man -l {page}.8 warns:\n{err}");
        let text = String::from_utf8_lossy(&out.stdout);
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "ENVIRONMENT",
            "FILES",
            "EXIT STATUS",
            "SECURITY",
            "EXAMPLES",
            "SEE ALSO",
        ] {
            assert!(
                text.lines().any(|l| l == section),
                "{page}.8 has no {section} section"
            );
        }
    }
}

#[test]
fn man_pages_document_every_option() {
    for (bin, page) in [(FTPD, "ftpd"), (SUPERVISOR, "aftpd-supervisor")] {
        let in_help = options(&help(bin));
        assert!(in_help.contains("--xferlog"), "{in_help:?}");
        let roff = man_page(page).replace("\\-", "-");
        let section = roff
            .split("\n.SH ")
            .find(|s| s.starts_with("OPTIONS"))
            .unwrap_or_else(|| panic!("{page}.8 has no OPTIONS"));
        let in_man = options(section);
        for o in &in_help {
            assert!(in_man.contains(o), "{page}.8 does not document {o}");
        }
        for o in &in_man {
            assert!(
                in_help.contains(o),
                "{page}.8 documents {o}, which --help does not know"
            );
        }
    }
    let sup = man_page("aftpd-supervisor");
    for word in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "SIGHUP",
        "SIGTERM",
        ".SH SIGNALS",
    ] {
        assert!(sup.contains(word), "aftpd-supervisor.8 lacks {word}");
    }
    let ftpd = man_page("ftpd");
    for word in ["TCPLOCALIP", ".B 100", ".B 111", "UTC"] {
        assert!(ftpd.contains(word), "ftpd.8 lacks {word}");
    }
}
