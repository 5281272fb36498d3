//! The upload hook's helper process (see [`super`]): set up once after
//! the fork, then a loop that reads requests, runs the hook for each (a
//! few at once), and logs what fails.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::RecvFlags;

use super::{MAX_REQUEST, Request, Spec, decode};
use crate::log::Logger;

/// A hook that runs longer than this is killed (and that is logged).
pub const TIME_LIMIT: Duration = Duration::from_secs(600);
/// Requests waiting for a free place, at most; beyond, the socket fills.
const QUEUE: usize = 256;
/// How often running hooks are checked for their end.
const REAP_EVERY: Duration = Duration::from_millis(20);
/// The hook's `PATH` (its environment is otherwise empty but for the
/// `AFTPD_` variables).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the helper keeps its socket: the first descriptor after 0-2.
const SOCK_FD: i32 = 3;

/// The helper: never returns.
pub fn main(spec: Spec, sock: OwnedFd, logger: impl FnOnce() -> Logger) -> ! {
    let sock = match keep_only(sock) {
        Ok(s) => s,
        // Nothing to log with yet: without its socket the helper is of no
        // use, and the server logs nothing of it (its sends fail, counted).
        Err(_) => std::process::exit(111),
    };
    let log = logger();
    quiet_stdio();
    if let Err(e) = become_user(&spec) {
        log.error(format_args!(
            "upload-hook: cannot set up: {e}; no hook will run"
        ));
        log.flush(Duration::from_secs(1));
        std::process::exit(111);
    }
    log.start_writers();
    let mut h = Helper {
        spec,
        log,
        queue: VecDeque::new(),
        running: Vec::new(),
        eof: false,
    };
    h.serve(&sock);
    h.log.flush(Duration::from_secs(1));
    std::process::exit(0)
}

/// Moves the socket to descriptor 3 and closes every other one above 2
/// (the server's listeners, its root, whatever it had open).
fn keep_only(sock: OwnedFd) -> std::io::Result<OwnedFd> {
    let raw = sock.as_raw_fd();
    if raw != SOCK_FD {
        // SAFETY: dup2 onto descriptor 3, which this process owns: any
        // descriptor there is about to be closed anyway.
        if unsafe { libc::dup2(raw, SOCK_FD) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        drop(sock);
    } else {
        std::mem::forget(sock);
    }
    crate::setup::fds::close_from(SOCK_FD as u32 + 1)?;
    // SAFETY: descriptor 3 is the socket's copy, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(SOCK_FD) })
}

/// Standard input and output become /dev/null (they are the client's
/// connection in `ftpd`), and standard error too when it is that same
/// connection (inetd): a hook must never write to a client.
fn quiet_stdio() {
    let Ok(null) = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) else {
        return;
    };
    let same = |a: i32, b: i32| {
        // SAFETY: 0 and 2 stay open for the life of the process.
        let (a, b) = unsafe {
            (
                std::os::fd::BorrowedFd::borrow_raw(a),
                std::os::fd::BorrowedFd::borrow_raw(b),
            )
        };
        match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
            (Ok(x), Ok(y)) => (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino),
            _ => false,
        }
    };
    let mut targets = vec![0, 1];
    if same(0, 2) {
        targets.push(2);
    }
    for fd in targets {
        // SAFETY: dup2 onto 0, 1 or 2, which this process owns.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}

/// Becomes the server's unprivileged user (started as root), in ROOT,
/// with no way to gain privileges.
fn become_user(spec: &Spec) -> std::io::Result<()> {
    use nix::unistd::{Gid, Uid};
    if let Some((uid, gid)) = spec.user {
        if uid == 0 {
            return Err(std::io::Error::other("refusing to run hooks as uid 0"));
        }
        let gid = Gid::from_raw(gid);
        nix::unistd::setgroups(&[gid])?;
        nix::unistd::setgid(gid)?;
        nix::unistd::setuid(Uid::from_raw(uid))?;
        if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(std::io::Error::other("root privileges could be regained"));
        }
    }
    nix::unistd::chdir(&spec.root)?;
    rustix::thread::set_no_new_privs(true)?;
    Ok(())
}

struct Running {
    child: Child,
    started: Instant,
    path: Vec<u8>,
}

struct Helper {
    spec: Spec,
    log: Logger,
    queue: VecDeque<Request>,
    running: Vec<Running>,
    /// The server has gone: finish what is queued, then exit.
    eof: bool,
}

impl Helper {
    fn serve(&mut self, sock: &OwnedFd) {
        let mut buf = vec![0u8; MAX_REQUEST];
        loop {
            self.reap();
            while self.running.len() < self.spec.max {
                let Some(r) = self.queue.pop_front() else {
                    break;
                };
                self.spawn(r);
            }
            if self.eof && self.queue.is_empty() && self.running.is_empty() {
                return;
            }
            let read = !self.eof && self.queue.len() < QUEUE;
            let wait = (!self.running.is_empty()).then_some(REAP_EVERY);
            if read {
                let mut fds = [PollFd::new(sock, PollFlags::IN)];
                let ts = wait.and_then(|d| Timespec::try_from(d).ok());
                match rustix::event::poll(&mut fds, ts.as_ref()) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(_) => self.eof = true,
                }
                self.read(sock, &mut buf);
            } else {
                std::thread::sleep(wait.unwrap_or(REAP_EVERY));
            }
        }
    }

    /// Takes what requests there are, as far as the queue has room.
    fn read(&mut self, sock: &OwnedFd, buf: &mut [u8]) {
        while self.queue.len() < QUEUE {
            match rustix::net::recv(sock.as_fd(), &mut *buf, RecvFlags::DONTWAIT) {
                // A datagram socket's end of stream: the server is gone.
                Ok((0, _)) => {
                    self.eof = true;
                    return;
                }
                Ok((n, _)) => match decode(buf.get(..n).unwrap_or_default()) {
                    Some(r) => {
                        if r.dropped > 0 {
                            self.log.warn(format_args!(
                                "upload-hook: {} upload(s) not handed to the hook (its queue was full)",
                                r.dropped
                            ));
                        }
                        self.queue.push_back(r);
                    }
                    None => self
                        .log
                        .warn(format_args!("upload-hook: a malformed request")),
                },
                Err(Errno::AGAIN | Errno::INTR) => return,
                Err(_) => {
                    self.eof = true;
                    return;
                }
            }
        }
    }

    fn spawn(&mut self, r: Request) {
        let mut cmd = Command::new(&self.spec.prog);
        cmd.arg(OsStr::from_bytes(&r.path))
            .env_clear()
            .env("PATH", PATH)
            .env("AFTPD_PEER", &r.peer)
            .env("AFTPD_SIZE", r.size.to_string())
            .env("AFTPD_NAME", OsStr::from_bytes(&r.name))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match cmd.spawn() {
            Ok(child) => self.running.push(Running {
                child,
                started: Instant::now(),
                path: r.path,
            }),
            Err(e) => self.log.warn(format_args!(
                "upload-hook: cannot run {} for {}: {e}",
                self.spec.prog.display(),
                String::from_utf8_lossy(&r.path)
            )),
        }
    }

    /// Collects the hooks that ended; logs those that failed; kills those
    /// that ran too long.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            let outcome = match r.child.try_wait() {
                Ok(Some(status)) if status.success() => Some(None),
                Ok(Some(status)) => Some(Some(format!("ended with {status}"))),
                Ok(None) if r.started.elapsed() >= TIME_LIMIT => {
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    Some(Some(format!("killed after {} s", TIME_LIMIT.as_secs())))
                }
                Ok(None) => None,
                Err(e) => Some(Some(format!("lost: {e}"))),
            };
            match outcome {
                None => i += 1,
                Some(failure) => {
                    let r = self.running.swap_remove(i);
                    if let Some(why) = failure {
                        self.log.warn(format_args!(
                            "upload-hook: {} {}: {why}",
                            self.spec.prog.display(),
                            String::from_utf8_lossy(&r.path)
                        ));
                    }
                }
            }
        }
    }
}
