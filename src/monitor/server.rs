//! The monitor thread of `aftpd-supervisor`: it answers `aftpd-status`
//! on the control socket (`--control PATH`) and scrapers on the metrics
//! listener (`--metrics ADDR:PORT`), one request at a time, each bounded
//! in size and time (a client that stalls is dropped, and holds up the
//! next one for at most a few seconds, never a worker). It reads only
//! counters and the workers' snapshots (`board`): nothing it does can
//! make a worker wait.
//!
//! Both sockets are bound before the chroot and the sandbox, and only
//! accepted on afterwards: Landlock and the chroot concern paths, which
//! the thread never opens, and its calls (poll, accept4, read, write,
//! setsockopt) are on every seccomp allow-list. The control socket is
//! made with mode 0600 by the user that starts the server (root, as a
//! service), so only that user may ask; it cannot be removed from
//! inside the chroot, so it stays after the server stops, and the next
//! start replaces it once nothing answers there.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use super::expo::{self, Facts};
use super::http::{self, MAX_HEAD};
use crate::core::clock::Now;
use crate::engine::context::Context;

/// How long a client may take to ask, and to take the answer.
const READ_LIMIT: Duration = Duration::from_secs(2);
const WRITE_LIMIT: Duration = Duration::from_secs(5);
/// How long the workers have to answer a question.
const ANSWER_LIMIT: Duration = Duration::from_secs(1);
/// How often the thread looks whether the server stops.
const TICK: Duration = Duration::from_millis(250);
/// The longest status request line.
const MAX_REQUEST: usize = 64;

/// Makes the control socket at `path`, mode 0600. A socket already there
/// that nothing answers on (left by a server that stopped) is replaced;
/// one that answers, or anything that is not a socket, is an error.
pub fn bind_control(path: &Path) -> Result<UnixListener, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(format!("{shown}: a server answers there already")),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| format!("{shown}: {e}"))?;
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        },
        Ok(_) => return Err(format!("{shown}: exists and is not a socket")),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{shown}: {e}")),
    }
    // Never, even for an instant, open to others: only one thread runs
    // yet, so the process-wide umask is safe to change.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let l = bound.map_err(|e| format!("{shown}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{shown}: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(l)
}

/// The metrics listener.
pub fn bind_metrics(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// What the monitor serves.
pub struct Monitor {
    pub control: Option<UnixListener>,
    pub metrics: Option<TcpListener>,
    /// The workers' engine, for the metrics.
    pub engine: &'static str,
}

impl Monitor {
    /// Starts the thread (none when there is nothing to serve). It ends
    /// once the server stops.
    pub fn spawn(self, ctx: &Arc<Context>) -> io::Result<Option<JoinHandle<()>>> {
        if self.control.is_none() && self.metrics.is_none() {
            return Ok(None);
        }
        let ctx = Arc::clone(ctx);
        let started = Now::get().unix();
        std::thread::Builder::new()
            .name("monitor".into())
            .spawn(move || self.run(&ctx, started))
            .map(Some)
    }

    fn run(self, ctx: &Context, started: i64) {
        while !ctx.stop.is_stopping() {
            let mut fds = Vec::with_capacity(2);
            if let Some(l) = &self.control {
                fds.push(PollFd::from_borrowed_fd(l.as_fd(), PollFlags::IN));
            }
            if let Some(l) = &self.metrics {
                fds.push(PollFd::from_borrowed_fd(l.as_fd(), PollFlags::IN));
            }
            let tick = Timespec::try_from(TICK).unwrap_or(Timespec {
                tv_sec: 0,
                tv_nsec: 250_000_000,
            });
            if rustix::event::poll(&mut fds, Some(&tick)).is_err() {
                // EINTR, or out of memory for a moment: try again later.
                std::thread::sleep(TICK);
                continue;
            }
            drop(fds);
            if let Some(l) = &self.control
                && let Ok((s, _)) = l.accept()
                && let Err(e) = status(ctx, s)
            {
                ctx.log.info(format_args!("control socket: {e}"));
            }
            if let Some(l) = &self.metrics
                && let Ok((s, _)) = l.accept()
            {
                // A scraper that goes away early is its own business.
                let _ = metrics(ctx, s, self.engine, started);
            }
        }
    }
}

/// Wakes every worker, so that each sees the question at once.
fn wake_all(ctx: &Context) {
    for i in 0..ctx.board.workers() {
        if let Some(w) = ctx.stop.waker(i) {
            w.wake();
        }
    }
}

/// Reads until `done` says the request is whole, `max` bytes at most,
/// within [`READ_LIMIT`].
fn read_request(
    s: &mut impl Read,
    max: usize,
    done: impl Fn(&[u8]) -> bool,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + READ_LIMIT;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !done(&buf) {
        if buf.len() >= max || Instant::now() >= deadline {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "request too long or too slow",
            ));
        }
        let want = (max - buf.len()).min(chunk.len());
        match s.read(&mut chunk[..want]) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "request cut short",
                ));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// `status\n`: a line on the server, then one per session, then `end`.
/// (Accepted sockets block: std's accept does not ask for O_NONBLOCK, and
/// `set_nonblocking`, an ioctl, is refused by the sandbox.)
fn status(ctx: &Context, mut s: UnixStream) -> io::Result<()> {
    s.set_read_timeout(Some(READ_LIMIT))?;
    s.set_write_timeout(Some(WRITE_LIMIT))?;
    let req = read_request(&mut s, MAX_REQUEST, |b| b.contains(&b'\n'))?;
    if req
        .strip_suffix(b"\n")
        .map(|r| r.strip_suffix(b"\r").unwrap_or(r))
        != Some(b"status")
    {
        return s.write_all(b"error unknown request: want status\n");
    }
    let ask = ctx.board.ask(true);
    wake_all(ctx);
    let mut c = ctx.board.collect(ask, ANSWER_LIMIT);
    c.rows.sort_by_key(|r| r.since);
    let mut out = format!(
        "status pid={} at={} sessions={} workers={} stale={}\n",
        std::process::id(),
        Now::get().unix(),
        c.rows.len(),
        ctx.board.workers(),
        c.stale
    );
    for r in &c.rows {
        out.push_str(&r.line());
    }
    out.push_str("end\n");
    s.write_all(out.as_bytes())
}

/// One scrape.
fn metrics(ctx: &Context, mut s: TcpStream, engine: &'static str, started: i64) -> io::Result<()> {
    s.set_read_timeout(Some(READ_LIMIT))?;
    s.set_write_timeout(Some(WRITE_LIMIT))?;
    let head = read_request(&mut s, MAX_HEAD, http::complete)?;
    let req = http::parse(&head);
    let body = match req {
        http::Request::Metrics { .. } => {
            let ask = ctx.board.ask(false);
            wake_all(ctx);
            let c = ctx.board.collect(ask, ANSWER_LIMIT);
            let totals = ctx.stats.as_ref().map(|s| s.totals()).unwrap_or_default();
            let facts = Facts {
                engine,
                sessions: ctx.limits.sessions() as u64,
                max_sessions: ctx.limits.max_sessions() as u64,
                workers: c.gauges,
                stale: c.stale,
                started,
            };
            expo::render(&totals, &facts)
        }
        _ => String::new(),
    };
    s.write_all(&http::response(req, &body))?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_socket_is_private_and_replaces_a_stale_one() {
        let dir = std::env::temp_dir().join(format!("aftpd-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control");
        let l = bind_control(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Something answers there: refused.
        let e = bind_control(&path).unwrap_err();
        assert!(e.contains("answers there already"), "{e}");
        // Left behind: replaced.
        drop(l);
        let l = bind_control(&path).unwrap();
        drop(l);
        // Not a socket: never removed.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"precious").unwrap();
        let e = bind_control(&path).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn requests_are_bounded() {
        let mut long = io::Cursor::new(vec![b'x'; 1000]);
        assert!(read_request(&mut long, MAX_REQUEST, |b| b.contains(&b'\n')).is_err());
        let mut short = io::Cursor::new(b"stat".to_vec());
        assert!(read_request(&mut short, MAX_REQUEST, |b| b.contains(&b'\n')).is_err());
        let mut ok = io::Cursor::new(b"status\n".to_vec());
        assert_eq!(
            read_request(&mut ok, MAX_REQUEST, |b| b.contains(&b'\n')).unwrap(),
            b"status\n"
        );
    }
}
