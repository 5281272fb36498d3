//! Control connections behind a load balancer (`--proxy-protocol`): the
//! engines' half. A connection is held here, with no session, until its
//! PROXY header has come ([`crate::core::proxy`] reads it; this module
//! feeds it bytes and the time), for a bounded time and a bounded number
//! of bytes. Then it becomes a session with the client's addresses, is
//! answered as a health check, or is closed without a word, with a log
//! line saying why.
//!
//! The supervisor's engines keep their waiting connections in a
//! [`Waiting`] set and only wait for them (epoll interest, an io_uring
//! poll) and call [`Pending::read`]; `ftpd` calls [`read_header`] on its
//! standard input.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::context::Context;
use super::net;
use super::worker::{Slab, Timers};
use crate::core::admission::Refusal as Full;
use crate::core::proxy::{HeaderReader, ProxyPolicy, Refusal, Verdict};
use crate::core::session::Endpoints;
use crate::log::Logger;

/// A health check's answer while the server takes sessions: what
/// HAProxy's `tcp-check expect string 220` looks for.
pub const CHECK_READY: &[u8] = b"220 aftpd: ready (health check).\r\n";

/// The longest single read from a connection whose header has not come:
/// a header, and perhaps the first commands after it.
const READ_SIZE: usize = 4096;

/// What to do with a waiting connection after it was readable.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Its header is not complete yet: wait for more.
    Wait,
    /// A client: give it a session with these ends, and `rest` as its
    /// first input.
    Admit { ends: Endpoints, rest: Vec<u8> },
    /// Dealt with (answered, or refused and logged): close it.
    Close,
}

/// A control connection whose PROXY header has not come yet.
pub struct Pending {
    stream: TcpStream,
    reader: HeaderReader,
    /// Its entry in the timers: (deadline, key).
    timer: Option<(Instant, u64)>,
    /// Tells its operations from those of an earlier connection in the
    /// same slot (io_uring).
    pub generation: u32,
}

impl Pending {
    /// A connection just accepted, set up as a control connection; `None`
    /// when it is refused at once (its source may not send a header; it
    /// is gone), which is logged.
    pub fn start(
        policy: &ProxyPolicy,
        timeout: Duration,
        log: &Logger,
        stream: TcpStream,
    ) -> Option<Pending> {
        let socket = net::prepare_control(&stream).ok()?;
        match HeaderReader::new(policy, socket, Instant::now(), timeout) {
            Ok(reader) => Some(Pending {
                stream,
                reader,
                timer: None,
                generation: 0,
            }),
            Err(why) => {
                refused(log, socket.peer, &why);
                None
            }
        }
    }

    /// The connection, for polling.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// The connection, once its header has made it a client's.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// The connection is readable (or may be): reads once, without
    /// blocking, and says what follows. A health check is answered here:
    /// `ready` says whether the server takes sessions now.
    pub fn read(&mut self, scratch: &mut [u8], log: &Logger, ready: impl FnOnce() -> bool) -> Step {
        let n = scratch.len().min(READ_SIZE);
        let buf = scratch.get_mut(..n).unwrap_or_default();
        let verdict = match (&self.stream).read(buf) {
            Ok(0) => Verdict::Refused(Refusal::Closed),
            Ok(n) => feed(&mut self.reader, buf.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Step::Wait;
            }
            Err(_) => Verdict::Refused(Refusal::Closed),
        };
        decide(
            verdict,
            self.reader.balancer(),
            log,
            |line| {
                // A fresh socket's send buffer is empty: one non-blocking write.
                let _ = (&self.stream).write(line);
            },
            ready,
        )
    }

    /// Its deadline has passed without a complete header.
    pub fn timed_out(self, log: &Logger) {
        refused(log, self.reader.balancer(), &Refusal::Timeout);
    }

    /// Waiting for it failed (the connection broke).
    pub fn lost(self, log: &Logger) {
        refused(log, self.reader.balancer(), &Refusal::Closed);
    }
}

/// `reader` fed with `bytes`: a panic in the parser (a bug) refuses this
/// connection only.
fn feed(reader: &mut HeaderReader, bytes: &[u8]) -> Verdict {
    catch_unwind(AssertUnwindSafe(|| reader.feed(bytes)))
        .unwrap_or_else(|_| Verdict::Refused(Refusal::Malformed("the parser panicked".to_owned())))
}

/// What a verdict means for the connection: a health check is answered
/// through `answer`.
fn decide(
    verdict: Verdict,
    balancer: Option<SocketAddr>,
    log: &Logger,
    answer: impl FnOnce(&[u8]),
    ready: impl FnOnce() -> bool,
) -> Step {
    match verdict {
        Verdict::More => Step::Wait,
        Verdict::Client { ends, rest } => Step::Admit { ends, rest },
        Verdict::Check => {
            // Not logged: a balancer checks every few seconds.
            answer(if ready() {
                CHECK_READY
            } else {
                Full::TooManySessions.reply()
            });
            Step::Close
        }
        Verdict::Refused(why) => {
            refused(log, balancer, &why);
            Step::Close
        }
    }
}

/// The log line for a connection closed before it had a session.
fn refused(log: &Logger, peer: Option<SocketAddr>, why: &Refusal) {
    log.info(format_args!(
        "proxy header refused peer={} reason={why}",
        peer.map_or_else(|| "-".to_owned(), |p| p.to_string())
    ));
}

/// The supervisor's workers' connections waiting for their header: a slab
/// and their deadlines.
#[derive(Default)]
pub struct Waiting {
    slab: Slab<Pending>,
    timers: Timers,
    generation: u32,
}

impl Waiting {
    /// Holds `p` until its header comes or its deadline passes; returns its
    /// slot.
    pub fn insert(&mut self, mut p: Pending) -> usize {
        self.generation = self.generation.wrapping_add(1);
        p.generation = self.generation;
        let deadline = p.reader.deadline();
        let timers = &mut self.timers;
        self.slab.insert_with(|slot| {
            timers.schedule(slot, &mut p.timer, Some(deadline));
            p
        })
    }

    /// The connection in `slot`, taken out to work on: [`Waiting::put`]
    /// it back, or [`Waiting::release`] the slot.
    pub fn take(&mut self, slot: usize) -> Option<Pending> {
        self.slab.take(slot)
    }

    pub fn put(&mut self, slot: usize, p: Pending) {
        self.slab.put(slot, p);
    }

    pub fn release(&mut self, slot: usize) {
        self.slab.release(slot);
    }

    /// The connection in `slot`, if any.
    pub fn get(&self, slot: usize) -> Option<&Pending> {
        self.slab.get(slot)
    }

    /// When the first deadline passes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// A connection whose deadline has passed at `now`, taken out (its
    /// slot is free again), or `None` when there is none left.
    pub fn expired(&mut self, now: Instant) -> Option<(usize, Pending)> {
        while let Some((slot, key)) = self.timers.pop_due(now) {
            if self.slab.get(slot).and_then(|p| p.timer).map(|t| t.1) != Some(key) {
                continue; // its connection went earlier
            }
            if let Some(p) = self.slab.take(slot) {
                self.slab.release(slot);
                return Some((slot, p));
            }
        }
        None
    }

    /// Every waiting connection, taken out (when the server stops).
    pub fn drain(&mut self) -> Vec<(usize, Pending)> {
        let mut all = Vec::new();
        for slot in 0..self.slab.bound() {
            if let Some(p) = self.slab.take(slot) {
                self.slab.release(slot);
                all.push((slot, p));
            }
        }
        all
    }
}

/// Starts waiting for the header of a connection `ctx`'s workers accepted,
/// when the PROXY protocol is on (`None` otherwise, or when refused).
pub fn start(ctx: &Context, policy: &ProxyPolicy, stream: TcpStream) -> Option<Pending> {
    let timeout = policy.timeout(ctx.config.get().idle_timeout);
    Pending::start(policy, timeout, &ctx.log, stream)
}

/// Whether the supervisor takes another session now (a health check's
/// answer).
pub fn has_room(ctx: &Context) -> bool {
    ctx.limits.sessions() < ctx.limits.max_sessions()
}

/// `ftpd`'s header: read from `input` (a socket or pipe, blocking or not)
/// with poll(2), within `timeout`. The ends of the client's session and
/// its first input, or `None` when the connection was a health check
/// (answered on `output`) or refused (logged): then ftpd's work is done.
pub fn read_header(
    policy: &ProxyPolicy,
    socket: Endpoints,
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    timeout: Duration,
    log: &Logger,
) -> io::Result<Option<(Endpoints, Vec<u8>)>> {
    let mut reader = match HeaderReader::new(policy, socket, Instant::now(), timeout) {
        Ok(r) => r,
        Err(why) => {
            refused(log, socket.peer, &why);
            return Ok(None);
        }
    };
    let mut buf = [0u8; READ_SIZE];
    // Each round reads at least a byte, or ends: bounded by the deadline
    // and by the header's size.
    let verdict = loop {
        let left = reader.deadline().saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Verdict::Refused(Refusal::Timeout);
        }
        let ts = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::from_borrowed_fd(input, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match rustix::io::read(input, &mut buf) {
            Ok(0) => break Verdict::Refused(Refusal::Closed),
            Ok(n) => match feed(&mut reader, buf.get(..n).unwrap_or_default()) {
                Verdict::More => {}
                v => break v,
            },
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(_) => break Verdict::Refused(Refusal::Closed),
        }
    };
    let step = decide(
        verdict,
        socket.peer,
        log,
        |line| {
            let _ = rustix::io::write(output, line);
        },
        || true,
    );
    Ok(match step {
        Step::Admit { ends, rest } => Some((ends, rest)),
        Step::Wait | Step::Close => None,
    })
}
