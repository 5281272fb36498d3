//! The io_uring engine of `aftpd-supervisor`: one worker thread, one ring,
//! many sessions. The same session core, action executor (`engine::conn`)
//! and data path (`engine::datapath`) as the epoll engine; only how the
//! worker waits and moves bytes differs. It decides nothing about FTP.
//!
//! - `setup`: the ring, created disabled, checked and restricted.
//! - `bufring`: the provided buffer ring for control input (the engine's
//!   only memory shared raw with the kernel).
//! - `mover`: downloads and binary uploads as every engine moves them
//!   (`engine::cache_first`: sendfile from the worker, or from a helper
//!   thread; a helper's splice into the file), the buffers of TYPE A and
//!   FTPS uploads written through the ring (`write`).
//! - `io`: a session's ring operations (recv, send, data poll).
//! - here: the worker loop: accepting (one multishot accept per
//!   listener), completions, timers (the shared heap; the wait is bounded
//!   by its first deadline), the helper threads' completions (a multishot
//!   poll on the worker's eventfd), shutdown.
//!
//! Memory safety: a submitted operation may point at a buffer (control
//! output, the buffer ring) and names descriptors. A buffer referenced by
//! an operation in flight lives on the heap and is not touched, and a
//! session's slot (with its descriptors) is freed only once the last
//! completion of every operation it submitted has been reaped; an upload
//! dropped while its write is in flight leaves the write's buffer and file
//! with the mover until then. A worker that must exit with operations
//! still in flight leaks their memory rather than free it.

mod bufring;
mod core;
mod header;
mod io;
mod mover;
mod setup;
mod write;

pub use setup::{Ring, prepare};

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types};

use self::core::Core;
use self::io::UringIo;
use self::mover::{Done as Moved, GENERATION_MASK, RingMover};
use self::setup::CQ_ENTRIES;
use super::conn::{self, Fate, Life};
use super::context::Context;
use super::mover::Tag;
use super::pool::Done;
use super::proxy::{self, Waiting};
use super::worker::{self, AcceptError, Admission, Admitted, Base, Finished, Slab};
use crate::core::admission::Refusal;
use crate::core::clock::Now;

/// How long a worker waits for cancelled operations to come back after
/// the shutdown deadline, before it leaks what they use and exits.
const FORCED_DRAIN: Duration = Duration::from_secs(2);

/// What a completion is for: the low byte of its user_data. The index (a
/// listener or a session slot) is in the high 32 bits; bits 8..32 hold a
/// tag (a data path's generation, for its operations).
const OP_CANCEL: u8 = 0; // an AsyncCancel: nothing to do
const OP_WAKE: u8 = 1; // the worker's stop eventfd is readable
const OP_ACCEPT: u8 = 2; // a listener's multishot accept
const OP_RECV: u8 = 3; // a session's multishot recv
const OP_SEND: u8 = 4; // a session's control output
const OP_POLL: u8 = 5; // a session's data path descriptor is ready
const OP_MOVER: u8 = 6; // an upload's write
const OP_POOL: u8 = 7; // the helper threads finished jobs for this worker
const OP_HEADER: u8 = 8; // a connection waiting for its PROXY header is readable

fn user_data(kind: u8, index: usize, tag: u32) -> u64 {
    ((index as u64) << 32) | (u64::from(tag & GENERATION_MASK) << 8) | u64::from(kind)
}

fn parse_user_data(ud: u64) -> (u8, usize, u32) {
    (
        ud as u8,
        (ud >> 32) as usize,
        (ud >> 8) as u32 & GENERATION_MASK,
    )
}

fn errno(res: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(-res)
}

type Conn = conn::Conn<RingMover, UringIo>;

/// Runs worker `id` until the server stops: serves the sessions accepted
/// on `listeners` (this worker's own SO_REUSEPORT sockets, or its copies of
/// the sockets passed by the service manager: io_uring waits on a
/// listener exclusively, so a new connection wakes one worker).
/// `ring` is this worker's, from [`prepare`].
pub fn run(
    ctx: &Arc<Context>,
    id: usize,
    listeners: Vec<TcpListener>,
    ring: Ring,
) -> std::io::Result<()> {
    let mut w = Worker::new(ctx, id, listeners, ring)?;
    w.serve()
}

struct Worker {
    id: usize,
    core: Core,
    conns: Slab<Conn>,
    /// `None` once closed (at a stop, when its accept has come back).
    listeners: Vec<Option<TcpListener>>,
    /// Whether each listener's multishot accept is armed.
    armed: Vec<bool>,
    /// Whether to keep the accepts armed (not during a back-off or stop).
    accepting: bool,
    admission: Admission,
    /// Set when the shutdown deadline has passed: the sessions left were
    /// told 421 and their operations cancelled; exit when they are back,
    /// or at this instant.
    forced: Option<Instant>,
    /// Serial numbers for new sessions.
    next_serial: u64,
    /// Operations of the worker's own in flight (accepts, the two polls).
    own_inflight: usize,
    pool_armed: bool,
    done: Vec<Done>,
    /// Connections waiting for their PROXY header (`--proxy-protocol`).
    waiting: Waiting,
}

impl Worker {
    fn new(
        ctx: &Arc<Context>,
        id: usize,
        listeners: Vec<TcpListener>,
        ring: Ring,
    ) -> std::io::Result<Worker> {
        let (ring, bufs) = ring.enable()?;
        let n = listeners.len();
        let mut w = Worker {
            id,
            core: Core {
                base: Base::new(ctx, id, RingMover::new(ctx.pool.clone(), id)),
                ring,
                bufs,
                backlog: Vec::new(),
            },
            conns: Slab::default(),
            listeners: listeners.into_iter().map(Some).collect(),
            armed: vec![false; n],
            accepting: true,
            admission: Admission::for_worker(id),
            forced: None,
            next_serial: 0,
            own_inflight: 0,
            pool_armed: false,
            done: Vec::new(),
            waiting: Waiting::default(),
        };
        w.arm_waker();
        w.arm_pool();
        w.arm_listeners();
        Ok(w)
    }

    fn serve(&mut self) -> std::io::Result<()> {
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(CQ_ENTRIES as usize);
        loop {
            let now = Instant::now();
            let next = [
                self.core.base.timers.next(),
                self.waiting.next_deadline(),
                self.admission.resume_at,
                self.core.base.stop_deadline,
                self.forced,
            ]
            .into_iter()
            .flatten()
            .min();
            self.core.wait(next.map(|t| worker::wait_for(t, now)))?;
            cqes.clear();
            cqes.extend(
                self.core
                    .ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(ud, res, flags) in &cqes {
                self.dispatch(ud, res, flags);
            }
            let now = Instant::now();
            self.fire_timers(now);
            worker::answer_board(&self.core.base, &self.conns, |c| !c.io.gone);
            if self.admission.resume_at.is_some_and(|t| t <= now)
                && self.core.base.stop_deadline.is_none()
            {
                self.admission.resume_at = None;
                self.accepting = true;
            }
            self.arm_listeners();
            if let Some(deadline) = self.core.base.stop_deadline {
                if self.conns.live() == 0 && self.listeners.iter().all(Option::is_none) {
                    return Ok(());
                }
                match self.forced {
                    None if now >= deadline => self.close_all(now),
                    Some(t) if now >= t => return Ok(()),
                    _ => {}
                }
            }
        }
    }

    fn dispatch(&mut self, ud: u64, res: i32, flags: u32) {
        let (kind, index, tag) = parse_user_data(ud);
        match kind {
            OP_CANCEL => {}
            OP_WAKE => {
                self.own_inflight = self.own_inflight.saturating_sub(1);
                self.on_wake();
            }
            OP_POOL => {
                if !cqueue::more(flags) {
                    self.own_inflight = self.own_inflight.saturating_sub(1);
                    self.pool_armed = false;
                    self.arm_pool();
                }
                self.on_pool();
            }
            OP_ACCEPT => self.on_accept(index, res, flags),
            OP_HEADER => self.on_header(index, tag, res),
            OP_RECV => {
                self.with_conn(index, |core, c, slot| {
                    c.io.on_recv(core, &mut c.life, res, flags);
                    settle(c, core, slot)
                });
                // The session has copied the bytes (or dropped them).
                if let Some(bid) = cqueue::buffer_select(flags) {
                    self.core.bufs.recycle(bid);
                }
            }
            OP_SEND => self.with_conn(index, |core, c, slot| {
                c.io.on_sent(&mut c.life, res);
                settle(c, core, slot)
            }),
            OP_POLL => self.with_conn(index, |core, c, slot| {
                if c.io.polled(&c.life, tag, res) {
                    c.on_data_ready(core, slot)
                } else {
                    settle(c, core, slot)
                }
            }),
            OP_MOVER => self.with_conn(index, |core, c, slot| {
                c.io.inflight = c.io.inflight.saturating_sub(1);
                let current = c.life.data.tag();
                let tag = if current.generation & GENERATION_MASK == tag {
                    current
                } else {
                    Tag {
                        generation: tag,
                        ..current
                    }
                };
                let life = &mut c.life;
                life.data.on_mover(
                    &mut life.session,
                    &mut core.base.mover,
                    tag,
                    Moved::Written(res),
                    Now::get(),
                );
                settle(c, core, slot)
            }),
            _ => {}
        }
    }

    /// Runs `f` on the session in `slot` (a gone one too: it may only be
    /// waiting for its operations to come back), catching a panic so that
    /// it ends that session only; submits what the session asked of the
    /// ring; frees the slot once the session is over and nothing of it is
    /// in flight.
    fn with_conn(&mut self, slot: usize, f: impl FnOnce(&mut Core, &mut Conn, usize) -> Fate) {
        let Some(mut conn) = self.conns.take(slot) else {
            return;
        };
        let core = &mut self.core;
        let over = catch_unwind(AssertUnwindSafe(|| {
            let gone_before = conn.io.gone;
            let fate = if gone_before {
                // Only completions to account for.
                let _ = f(core, &mut conn, slot);
                Fate::Gone
            } else {
                f(core, &mut conn, slot)
            };
            submit_mover_ops(core, &mut conn);
            match fate {
                Fate::Keep => {
                    conn.io.update_recv(core, slot, &conn.life);
                    conn.io.update_poll(core, slot, &conn.life);
                    let want = conn.life.deadline();
                    core.base.timers.schedule(slot, &mut conn.life.timer, want);
                }
                Fate::Gone if !conn.io.gone => {
                    conn.io.teardown(core, slot, &mut conn.life);
                    submit_mover_ops(core, &mut conn);
                }
                Fate::Gone => {}
            }
            conn.io.gone && conn.io.quiet()
        }));
        let over = match over {
            Ok(over) => over,
            Err(panic) => {
                self.core.base.ctx.log.error(format_args!(
                    "session panicked (peer={}): {}; closing it",
                    conn.life
                        .peer()
                        .map_or_else(|| "-".to_owned(), |p| p.to_string()),
                    worker::panic_text(&*panic)
                ));
                if !conn.life.closing() && !conn.io.gone {
                    self.core
                        .base
                        .ctx
                        .log
                        .record(&conn.life.end_record("internal-error"));
                }
                if !conn.io.send && !conn.io.gone {
                    let _ = (&conn.io.ctrl).write(Refusal::Internal.reply());
                }
                let core = &mut self.core;
                let cleaned = catch_unwind(AssertUnwindSafe(|| {
                    conn.io.teardown(core, slot, &mut conn.life);
                    submit_mover_ops(core, &mut conn);
                    conn.io.quiet()
                }));
                match cleaned {
                    Ok(quiet) => quiet,
                    Err(_) => {
                        // Cannot tell what is in flight: never free it,
                        // never reuse the slot.
                        std::mem::forget(conn);
                        return;
                    }
                }
            }
        };
        if over {
            // Dropping what panicked may panic again; contain that too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(conn)));
            self.conns.release(slot);
        } else {
            self.conns.put(slot, conn);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        self.expire_headers(now);
        while let Some((slot, key)) = self.core.base.timers.pop_due(now) {
            let current = self
                .conns
                .get(slot)
                .filter(|c| !c.io.gone)
                .and_then(|c| c.life.timer);
            if current.map(|t| t.1) != Some(key) {
                continue; // stale: replaced, or the session is gone
            }
            self.with_conn(slot, |core, c, slot| c.on_timer(core, slot));
        }
    }

    /// Finished helper-thread jobs: each goes to its session, if it is
    /// still the one that asked.
    fn on_pool(&mut self) {
        let mut done = std::mem::take(&mut self.done);
        self.core.base.pool.take(self.id, &mut done);
        for d in done.drain(..) {
            match worker::finished(d, |slot| self.live_serial(slot), Moved::Pool) {
                Some(Finished::Fs { slot, id, answer }) => {
                    self.with_conn(slot, |core, c, slot| c.on_fs(core, slot, id, answer));
                }
                Some(Finished::Mover { tag, done }) => {
                    self.with_conn(tag.slot, |core, c, slot| {
                        let life = &mut c.life;
                        let now = Now::get();
                        life.data
                            .on_mover(&mut life.session, &mut core.base.mover, tag, done, now);
                        c.settle(core, slot)
                    });
                }
                None => {}
            }
        }
        self.done = done;
    }

    fn live_serial(&self, slot: usize) -> Option<u64> {
        self.conns
            .get(slot)
            .filter(|c| !c.io.gone)
            .map(|c| c.life.serial)
    }

    fn arm_waker(&mut self) {
        if let Some(w) = self.core.base.ctx.stop.waker(self.id) {
            let fd = std::os::fd::AsFd::as_fd(w).as_raw_fd();
            let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).build();
            self.core.push(e.user_data(user_data(OP_WAKE, 0, 0)));
            self.own_inflight += 1;
        }
    }

    /// A multishot poll on the eventfd of this worker's helper-thread
    /// completions.
    fn arm_pool(&mut self) {
        if self.pool_armed {
            return;
        }
        if let Some(fd) = self.core.base.pool.waker(self.id) {
            let e = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32)
                .multi(true)
                .build();
            self.core.push(e.user_data(user_data(OP_POOL, 0, 0)));
            self.own_inflight += 1;
            self.pool_armed = true;
        }
    }

    fn on_wake(&mut self) {
        if let Some(w) = self.core.base.ctx.stop.waker(self.id) {
            w.drain();
        }
        if !self.core.base.ctx.stop.is_stopping() {
            return self.arm_waker();
        }
        if self.core.base.stop_deadline.is_none() {
            self.begin_stop();
        }
    }

    /// Stops accepting (closing the listeners once their accepts are back,
    /// so new clients are refused by the kernel) and says goodbye to every
    /// session with no transfer in flight; the others finish their
    /// transfer first.
    fn begin_stop(&mut self) {
        let now = Instant::now();
        self.core.base.stop_deadline = Some(now + self.core.base.ctx.shutdown_timeout);
        self.admission.stop();
        self.pause_accepting();
        // No header yet, no session: nothing to say goodbye to.
        self.drop_headers();
        for i in 0..self.listeners.len() {
            if !self.armed[i] {
                self.listeners[i] = None;
            }
        }
        for slot in 0..self.conns.bound() {
            self.with_conn(slot, |core, c, slot| c.settle(core, slot));
        }
    }

    /// The shutdown deadline passed: whatever is left is told 421 if the
    /// socket takes it, and cancelled.
    fn close_all(&mut self, now: Instant) {
        self.forced = Some(now + FORCED_DRAIN);
        for slot in 0..self.conns.bound() {
            self.with_conn(slot, |core, c, _| {
                // A send in flight owns the socket's next bytes.
                let ctrl = (!c.io.send).then_some(&c.io.ctrl);
                c.life.close_now(core, ctrl);
                Fate::Gone
            });
        }
    }

    fn arm_listeners(&mut self) {
        if !self.accepting {
            return;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let Some(l) = l else { continue };
            if self.armed[i] {
                continue;
            }
            let e = opcode::AcceptMulti::new(types::Fd(l.as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                .build();
            self.core.push(e.user_data(user_data(OP_ACCEPT, i, 0)));
            self.armed[i] = true;
        }
    }

    /// Cancels the armed accepts (re-armed by `arm_listeners` once
    /// `accepting` again).
    fn pause_accepting(&mut self) {
        self.accepting = false;
        for (i, armed) in self.armed.iter().enumerate() {
            if *armed {
                self.core.cancel(user_data(OP_ACCEPT, i, 0));
            }
        }
    }

    fn on_accept(&mut self, index: usize, res: i32, flags: u32) {
        if let Some(a) = self.armed.get_mut(index)
            && !cqueue::more(flags)
        {
            *a = false;
        }
        let stopping = self.core.base.stop_deadline.is_some();
        if res >= 0 {
            // SAFETY: a successful accept's result is a new descriptor
            // that nothing else owns.
            let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(res) });
            if !stopping {
                self.admit(stream);
            }
        } else if res != -libc::ECANCELED
            && let Some(Some(l)) = self.listeners.get(index)
        {
            let e = errno(res);
            let (ctx, id) = (&self.core.base.ctx, self.id);
            if self.admission.accept_failed(ctx, id, l, &e) == AcceptError::Pause {
                self.pause_accepting();
            }
        }
        if stopping
            && !self.armed.get(index).copied().unwrap_or(true)
            && let Some(l) = self.listeners.get_mut(index)
        {
            *l = None;
        }
    }

    /// A new control connection: checked against the limits, then a
    /// session; behind a balancer, first its PROXY header.
    fn admit(&mut self, stream: TcpStream) {
        if let Some(policy) = &self.core.base.ctx.proxy {
            self.admission.accepted();
            if let Some(p) = proxy::start(&self.core.base.ctx, policy, stream) {
                self.wait_header(p);
            }
            return;
        }
        let Some(admitted) = self.admission.admit(&self.core.base.ctx, &stream) else {
            return;
        };
        self.start_session(stream, admitted);
    }

    /// An admitted session on `stream`.
    fn start_session(&mut self, stream: TcpStream, (session, permit, peer): Admitted) {
        self.next_serial += 1;
        let serial = self.next_serial;
        let io = UringIo::new(permit, stream);
        let slot = self.conns.insert_with(|slot| Conn {
            life: Life::new(session, slot, serial, Some(peer)),
            io,
        });
        // Greeting, start record, deadline: as after any other event.
        self.with_conn(slot, |core, c, slot| c.settle(core, slot));
    }
}

/// After a completion: a live session settles; a gone one only waits for
/// the rest of its operations.
fn settle(c: &mut Conn, core: &mut Core, slot: usize) -> Fate {
    if c.io.gone {
        Fate::Gone
    } else {
        c.settle(core, slot)
    }
}

/// Submits the writes the session's upload asked for, counted as the
/// session's operations.
fn submit_mover_ops(core: &mut Core, conn: &mut Conn) {
    let ops = std::mem::take(&mut core.base.mover.outbox);
    conn.io.inflight += ops.len();
    for e in ops {
        core.push(e);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let inflight = self.own_inflight
            + (0..self.conns.bound())
                .filter_map(|s| self.conns.get(s))
                .map(|c| c.io.inflight)
                .sum::<usize>();
        if inflight > 0 {
            // The kernel may still use the memory of operations never
            // reaped: leak it rather than free it.
            self.core.bufs.leak = true;
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}

#[cfg(test)]
mod tests;
