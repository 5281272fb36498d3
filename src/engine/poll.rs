//! The `ftpd` engine: one session, one thread, `poll(2)` over the control
//! connection (standard input and output) and the data side. It waits;
//! the session's actions are carried out by `engine::conn` and its data
//! connection is the shared `DataPath`, as in the supervisor.
//!
//! One session per process may wait for the disk for its filesystem
//! requests (answered at once, in this thread), but not for a download:
//! file bytes not in the page cache are read in by a helper thread (made
//! only then) before `sendfile` sends them, as the epoll workers do, so an
//! ABOR or a NOOP during a cold download is answered at once.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::io::Errno;

use super::cache_first::CacheFirst;
use super::conn::{self, Conn, Fate, Life};
use super::datapath::Wait;
use super::pool::{JobTag, Output, Pool};
use super::tls::ServerTls;
use crate::core::admission::PassivePermit;
use crate::core::clock::Now;
use crate::core::rate::{Direction, Limiter, RateLimits};
use crate::core::session::{FsAnswer, FsRequest, Record, Session, Tree};
use crate::fs::exec::Real;
use crate::fs::trees::Trees;
use crate::log::Logger;

/// The longest single wait, whatever the deadlines say.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Bytes read from the control connection at a time.
const READ_SIZE: usize = 4096;

/// Runs `session` over the control connection `input`/`output` (the same
/// socket under tcpserver and inetd, or two pipes) until it ends. Both fds
/// are made non-blocking for the duration. Errors are failures of the
/// engine itself (poll, fcntl), never of the client: a client that goes
/// away just ends the session. `watch` sees the session after every turn
/// (ftpd's status file).
#[allow(clippy::too_many_arguments)]
pub fn run(
    session: Session<Real>,
    trees: Arc<Trees>,
    peer: Option<SocketAddr>,
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    logger: &Logger,
    tls: Option<ServerTls>,
    rates: RateLimits,
    watch: &mut dyn FnMut(&Session<Real>),
) -> io::Result<()> {
    let saved = [
        save_and_set_nonblocking(input)?,
        save_and_set_nonblocking(output)?,
    ];
    // One helper thread, made on the first read of a file not in the
    // page cache.
    let pool = Pool::new(Arc::clone(&trees), 1, 2)?;
    let mut core = PollCore {
        trees,
        logger,
        mover: CacheFirst::new(pool.clone(), 0),
        pool,
        tls,
        rates,
    };
    let mut conn = Conn {
        life: Life::new(session, 0, 0, peer),
        io: PollIo { output },
    };
    let result = serve(&mut conn, &mut core, input, watch);
    // Leave a shared terminal or pipe as we found it.
    let _ = rustix::fs::fcntl_setfl(input, saved[0]);
    let _ = rustix::fs::fcntl_setfl(output, saved[1]);
    result
}

fn save_and_set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<OFlags> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    Ok(flags)
}

struct PollCore<'l> {
    trees: Arc<Trees>,
    logger: &'l Logger,
    mover: CacheFirst,
    pool: Pool,
    tls: Option<ServerTls>,
    rates: RateLimits,
}

impl conn::Core for PollCore<'_> {
    type Mover = CacheFirst;

    fn mover(&mut self) -> &mut CacheFirst {
        &mut self.mover
    }

    /// One session per process: the answer at once, disk wait included
    /// (the session has nothing else to do meanwhile).
    fn fs(
        &mut self,
        _: usize,
        _: u64,
        _: u32,
        tree: Tree<Real>,
        request: FsRequest<Real>,
    ) -> Option<FsAnswer<Real>> {
        Some(self.trees.execute(tree, request))
    }

    fn record(&mut self, r: &Record) {
        self.logger.record(r);
    }

    fn note(&mut self, args: fmt::Arguments<'_>) {
        self.logger.info(args);
    }

    /// A super-server's per-address limits are the process's business.
    fn passive_permit(&mut self, _: Option<IpAddr>) -> Option<Option<PassivePermit>> {
        Some(None)
    }

    fn stop_deadline(&self) -> Option<Instant> {
        None
    }

    fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    fn limiter(&mut self, ip: Option<IpAddr>, dir: Direction, now: Instant) -> Option<Limiter> {
        self.rates.limiter(ip, dir, now)
    }
}

struct PollIo<'fd> {
    output: BorrowedFd<'fd>,
}

impl<'l> conn::Io<PollCore<'l>> for PollIo<'_> {
    /// Writes as much of the session's output as the connection takes.
    fn flush(&mut self, _: &mut PollCore<'l>, _: usize, life: &mut Life<CacheFirst>) {
        loop {
            if life.dead() {
                return life.discard_output();
            }
            let out = life.unwritten();
            if out.is_empty() {
                return;
            }
            match rustix::io::write(self.output, out) {
                Ok(n) => life.wrote(n),
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => {}
                Err(_) => life.write_failed(),
            }
        }
    }

    fn sending(&self) -> bool {
        false
    }
}

type PollConn<'fd> = Conn<CacheFirst, PollIo<'fd>>;

fn serve(
    conn: &mut PollConn<'_>,
    core: &mut PollCore<'_>,
    input: BorrowedFd<'_>,
    watch: &mut dyn FnMut(&Session<Real>),
) -> io::Result<()> {
    let mut fate = conn.settle(core, 0);
    let mut done = Vec::new();
    while fate == Fate::Keep {
        watch(&conn.life.session);
        let ready = wait(conn, input, &core.pool)?;
        if ready.pool {
            core.pool.take(0, &mut done);
            for d in done.drain(..) {
                if let (JobTag::Mover(tag), Output::Mover(result)) = (d.tag, d.output) {
                    let life = &mut conn.life;
                    life.data
                        .on_mover(&mut life.session, &mut core.mover, tag, result, Now::get());
                }
            }
            fate = conn.settle(core, 0);
        }
        if ready.data && fate == Fate::Keep {
            fate = conn.on_data_ready(core, 0);
        }
        if ready.input && fate == Fate::Keep {
            read_input(&mut conn.life, input);
            fate = conn.settle(core, 0);
        }
        if fate == Fate::Keep && conn.life.deadline().is_some_and(|d| d <= Instant::now()) {
            fate = conn.on_timer(core, 0);
        }
        if ready.output && fate == Fate::Keep {
            fate = conn.settle(core, 0);
        }
    }
    Ok(())
}

/// What `poll` reported.
struct Ready {
    input: bool,
    output: bool,
    data: bool,
    /// The helper thread finished a read or a write.
    pool: bool,
}

/// Waits for the next event or deadline.
fn wait(conn: &PollConn<'_>, input: BorrowedFd<'_>, pool: &Pool) -> io::Result<Ready> {
    let life = &conn.life;
    let want_input = life.wants_input(false);
    let want_output = !life.dead() && !life.unwritten().is_empty();
    let data = match life.data.wait() {
        Wait::Readable => life.data.fd().map(|fd| (fd, PollFlags::IN)),
        Wait::Writable => life.data.fd().map(|fd| (fd, PollFlags::OUT)),
        _ => None,
    };
    let mut fds = Vec::with_capacity(3);
    let at_input = want_input.then(|| {
        fds.push(PollFd::from_borrowed_fd(input, PollFlags::IN));
        fds.len() - 1
    });
    let at_output = want_output.then(|| {
        fds.push(PollFd::from_borrowed_fd(conn.io.output, PollFlags::OUT));
        fds.len() - 1
    });
    let at_data = data.map(|(fd, flags)| {
        fds.push(PollFd::from_borrowed_fd(fd, flags));
        fds.len() - 1
    });
    let at_pool = (life.data.wait() == Wait::Mover)
        .then(|| pool.waker(0))
        .flatten()
        .map(|fd| {
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            fds.len() - 1
        });
    // Never zero, so a deadline the session does not clear cannot spin.
    let timeout = life
        .deadline()
        .map_or(MAX_WAIT, |d| d.saturating_duration_since(Instant::now()))
        .clamp(Duration::from_millis(1), MAX_WAIT);
    let ts = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: MAX_WAIT.as_secs() as _,
        tv_nsec: 0,
    });
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(_) => {}
        Err(Errno::INTR) => {
            return Ok(Ready {
                input: false,
                output: false,
                data: false,
                pool: false,
            });
        }
        Err(e) => return Err(e.into()),
    }
    let hit = |i: Option<usize>| i.is_some_and(|i| !fds[i].revents().is_empty());
    Ok(Ready {
        input: hit(at_input),
        output: hit(at_output),
        data: hit(at_data),
        pool: hit(at_pool),
    })
}

fn read_input(life: &mut Life<CacheFirst>, input: BorrowedFd<'_>) {
    let mut buf = [0u8; READ_SIZE];
    loop {
        match rustix::io::read(input, &mut buf) {
            Ok(0) => return life.control_gone(Now::get(), false),
            Ok(n) => return life.on_input(&buf[..n], Now::get()),
            Err(Errno::AGAIN) => return,
            Err(Errno::INTR) => {}
            Err(_) => return life.control_gone(Now::get(), true),
        }
    }
}
