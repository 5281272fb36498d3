//! The epoll engine of `aftpd-supervisor`: one worker thread, one epoll
//! instance, many sessions. It waits and moves bytes; every FTP decision is
//! the session core's (see `session::Action` for the protocol followed).
//!
//! Level-triggered throughout: interest is changed with `EPOLL_CTL_MOD`
//! whenever what a connection waits for changes, so an event left
//! unhandled comes back instead of being lost, and one that arrives late
//! (for a socket replaced within the same batch) is harmless: every handler
//! copes with "not ready after all".
//!
//! Per session a worker holds a [`Conn`]: the control stream, the
//! [`Session`], its admission permit, the timer key, and a boxed data side
//! that exists only while a passive listener or transfer does. Control
//! input is read into one scratch buffer per worker; the [`Pump`] owns a
//! buffer only while a transfer runs.
//!
//! Timers: one binary heap per worker of (deadline, slot, key). A session's
//! entry is replaced only when its deadline moves earlier; when an entry
//! fires early (the deadline moved later), the session is rescheduled.
//! Entries whose key no longer matches their slot's are stale and skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::io::Errno;

use crate::clock::Now;
use crate::driver::net;
use crate::driver::pump::{Progress, Pump};
use crate::session::{Action, DataConn, Record, Session, TransferError};
use crate::supervisor::Context;
use crate::supervisor::limits::{Backoff, Permit, Refusal};
use crate::supervisor::listen;

/// The low bits of an epoll token say which descriptor it is; the rest is
/// the slot (a session) or the listener index.
const KIND_BITS: u32 = 2;
const KIND_CTRL: u64 = 0;
const KIND_DATA: u64 = 1;
const KIND_LISTENER: u64 = 2;
const KIND_WAKER: u64 = 3;

/// Events fetched per `epoll_wait`. Level-triggered epoll hands back
/// still-ready descriptors after the others, so a batch smaller than the
/// ready set rotates fairly.
const BATCH: usize = 256;
/// Control input read per event: more than any command line.
const SCRATCH: usize = 16 * 1024;
/// Connections accepted per listener event, so accepting cannot starve
/// the sessions already open.
const ACCEPT_BATCH: usize = 64;
/// Passive-mode connections from the wrong peer closed per event.
const DATA_ACCEPT_BATCH: usize = 8;
/// How long a closing session may take to flush its last replies.
const CLOSE_FLUSH: Duration = Duration::from_secs(10);

/// The shortest timer: see [`Conn::reschedule`].
const MIN_TIMER: Duration = Duration::from_millis(10);

const SHUTDOWN_REPLY: &[u8] = b"421 Server shutting down, closing control connection.\r\n";

fn token(index: usize, kind: u64) -> EventData {
    EventData::new_u64(((index as u64) << KIND_BITS) | kind)
}

/// Runs worker `id` until the server stops: serves the sessions accepted
/// on `listeners` (this worker's own SO_REUSEPORT sockets, or its copies of
/// the sockets passed by the service manager).
pub fn run(ctx: &Arc<Context>, id: usize, listeners: Vec<TcpListener>) -> io::Result<()> {
    let mut w = Worker::new(ctx, id, listeners)?;
    w.serve()
}

/// What became of a session after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Gone,
}

/// The data side of a session: a passive listener, or a transfer.
enum Data {
    /// Opened by `Action::Listen`; not polled until a transfer needs it.
    Listening(TcpListener),
    /// A transfer waits for the client to connect.
    Accepting(TcpListener, Pump),
    /// A transfer waits for an active-mode connect to complete.
    Connecting(TcpStream, Pump),
    /// A transfer is sending.
    Sending(TcpStream, Pump),
}

impl Data {
    fn in_flight(&self) -> bool {
        !matches!(self, Data::Listening(_))
    }
}

/// Bit flags of a [`Conn`].
const EOF: u8 = 1; // no more control input (EOF seen or reading failed)
const DEAD: u8 = 2; // control connection broken: output is discarded

/// One session as a worker holds it.
struct Conn {
    /// The session's place in the limits, given back on drop; first, so
    /// that it is given back before the control connection closes (a
    /// client that sees the close may reconnect at once).
    _permit: Permit,
    ctrl: TcpStream,
    session: Session,
    data: Option<Box<Data>>,
    /// For the end record of a session the driver ends (shutdown, panic);
    /// the session logs its own ends otherwise.
    started: Instant,
    /// The heap entry that stands for this session: (deadline, key).
    timer: Option<(Instant, u64)>,
    /// Set once closing: the session goes when its output is written or
    /// at this instant, whichever is first.
    close_by: Option<Instant>,
    /// The driver's own last words (a 421), after the session's output.
    farewell: &'static [u8],
    /// The control connection's epoll interest, `None` if not registered.
    registered: Option<EventFlags>,
    flags: u8,
}

/// A slab of sessions: slot numbers are stable for a session's life and
/// reused afterwards.
struct Slab {
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
}

impl Slab {
    fn insert(&mut self, c: Conn) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(c);
                i
            }
            None => {
                self.slots.push(Some(c));
                self.slots.len() - 1
            }
        }
    }

    /// Takes a session out to work on it; `put` it back or `release` the
    /// slot.
    fn take(&mut self, i: usize) -> Option<Conn> {
        self.slots.get_mut(i).and_then(Option::take)
    }

    fn put(&mut self, i: usize, c: Conn) {
        if let Some(s) = self.slots.get_mut(i) {
            *s = Some(c);
        }
    }

    fn release(&mut self, i: usize) {
        self.live -= 1;
        self.free.push(i);
    }

    fn timer_key(&self, i: usize) -> Option<u64> {
        self.slots
            .get(i)
            .and_then(Option::as_ref)
            .and_then(|c| c.timer.map(|t| t.1))
    }
}

/// Everything of a worker but its sessions, so a session taken out of the
/// slab can be worked on with it.
struct Core {
    ctx: Arc<Context>,
    ep: OwnedFd,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_key: u64,
    scratch: Box<[u8]>,
    /// Set once the server stops: then sessions with no transfer in flight
    /// are closed with 421, and no input is read.
    stop_deadline: Option<Instant>,
}

struct Worker {
    id: usize,
    core: Core,
    conns: Slab,
    listeners: Vec<TcpListener>,
    /// Whether the listeners are in the epoll set (not during a back-off).
    accepting: bool,
    resume_at: Option<Instant>,
    backoff: Backoff,
    /// A descriptor held in reserve: when accept fails for lack of
    /// descriptors, closing it lets the worker accept the waiting clients
    /// just long enough to tell them 421 instead of leaving them hanging.
    spare: Option<OwnedFd>,
    refusals: Refusals,
}

/// Refusals not logged yet: they are logged at most once a second, so a
/// flood cannot flood the log too.
#[derive(Default)]
struct Refusals {
    count: u64,
    logged: Option<Instant>,
}

/// Tells a client why it is turned away, and closes its connection.
fn refuse(ctx: &Context, log: &mut Refusals, stream: TcpStream, why: Refusal) {
    // A fresh socket's send buffer is empty: one non-blocking write.
    let _ = (&stream).write(why.reply());
    let peer = stream.peer_addr().ok().map(net::canonical);
    drop(stream);
    log.count += 1;
    let now = Instant::now();
    if log
        .logged
        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
    {
        ctx.log.info(format_args!(
            "refused peer={} reason={} ({} refused since the last report)",
            peer.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            why.reason(),
            log.count
        ));
        log.count = 0;
        log.logged = Some(now);
    }
}

fn spare_fd() -> Option<OwnedFd> {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).ok()
}

impl Worker {
    fn new(ctx: &Arc<Context>, id: usize, listeners: Vec<TcpListener>) -> io::Result<Worker> {
        let ep = epoll::create(CreateFlags::CLOEXEC)?;
        let waker = ctx
            .stop
            .waker(id)
            .ok_or_else(|| io::Error::other("no waker for this worker"))?;
        epoll::add(&ep, waker, token(0, KIND_WAKER), EventFlags::IN)?;
        let mut w = Worker {
            id,
            core: Core {
                ctx: Arc::clone(ctx),
                ep,
                timers: BinaryHeap::new(),
                next_key: 0,
                scratch: vec![0u8; SCRATCH].into_boxed_slice(),
                stop_deadline: None,
            },
            conns: Slab {
                slots: Vec::new(),
                free: Vec::new(),
                live: 0,
            },
            listeners,
            accepting: false,
            resume_at: None,
            backoff: Backoff::new(),
            spare: spare_fd(),
            refusals: Refusals::default(),
        };
        w.start_accepting()?;
        Ok(w)
    }

    fn serve(&mut self) -> io::Result<()> {
        let mut events = Vec::with_capacity(BATCH);
        loop {
            let timeout = self.timeout(Instant::now());
            events.clear();
            match epoll::wait(&self.core.ep, spare_capacity(&mut events), timeout.as_ref()) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in &events {
                let (flags, data) = (ev.flags, ev.data);
                let t = data.u64();
                let index = (t >> KIND_BITS) as usize;
                match t & ((1 << KIND_BITS) - 1) {
                    KIND_LISTENER => self.on_listener(index),
                    KIND_WAKER => self.on_wake(),
                    KIND_CTRL => {
                        self.with_conn(index, |core, c, slot| c.on_ctrl(core, slot, flags))
                    }
                    _ => self.with_conn(index, |core, c, slot| c.on_data(core, slot)),
                }
            }
            let now = Instant::now();
            self.fire_timers(now);
            if self.resume_at.is_some_and(|t| t <= now) && self.core.stop_deadline.is_none() {
                self.resume_at = None;
                if let Err(e) = self.start_accepting() {
                    self.pause_accepting(now, &e);
                }
            }
            if let Some(deadline) = self.core.stop_deadline {
                if self.conns.live == 0 {
                    return Ok(());
                }
                if now >= deadline {
                    self.close_all();
                    return Ok(());
                }
            }
        }
    }

    /// Until the earliest of: the first timer, the end of an accept
    /// back-off, the shutdown deadline. `None`: no bound.
    fn timeout(&self, now: Instant) -> Option<rustix::time::Timespec> {
        let next = [
            self.core.timers.peek().map(|Reverse((t, _, _))| *t),
            self.resume_at,
            self.core.stop_deadline,
        ]
        .into_iter()
        .flatten()
        .min()?;
        let d = next.saturating_duration_since(now);
        // Round up to whole milliseconds so a timer is never woken for
        // just before it is due (and spun on).
        let ms = d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
        Some(rustix::time::Timespec {
            tv_sec: ms / 1000,
            tv_nsec: (ms % 1000) * 1_000_000,
        })
    }

    /// Runs `f` on the session in `slot`, catching a panic so that it
    /// closes that session only.
    fn with_conn(&mut self, slot: usize, f: impl FnOnce(&mut Core, &mut Conn, usize) -> Fate) {
        let Some(mut conn) = self.conns.take(slot) else {
            return; // an event for a session closed earlier in this batch
        };
        let core = &mut self.core;
        let fate = catch_unwind(AssertUnwindSafe(|| {
            let fate = f(core, &mut conn, slot);
            if fate == Fate::Keep {
                conn.update_interest(core, slot)?;
                conn.reschedule(core, slot);
            }
            Ok::<Fate, io::Error>(fate)
        }));
        match fate {
            Ok(Ok(Fate::Keep)) => self.conns.put(slot, conn),
            Ok(Ok(Fate::Gone)) => {
                drop(conn);
                self.conns.release(slot);
            }
            Ok(Err(e)) => {
                self.core
                    .ctx
                    .log
                    .warn(format_args!("closing a session: epoll_ctl: {e}"));
                drop(conn);
                self.conns.release(slot);
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "?".to_owned());
                let peer = conn.ctrl.peer_addr().ok().map(net::canonical);
                self.core.ctx.log.error(format_args!(
                    "session panicked (peer={}): {what}; closing it",
                    peer.map_or_else(|| "-".to_owned(), |p| p.to_string())
                ));
                if !conn.closing() {
                    conn.log_end(&self.core, "internal-error");
                }
                let _ = (&conn.ctrl).write(Refusal::Internal.reply());
                // Dropping what panicked may panic again; contain that too.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(conn)));
                self.conns.release(slot);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, slot, key))) = self.core.timers.peek().copied() {
            if t > now {
                break;
            }
            self.core.timers.pop();
            if self.conns.timer_key(slot) != Some(key) {
                continue; // stale: replaced, or the session is gone
            }
            self.with_conn(slot, |core, c, slot| {
                c.timer = None;
                c.on_timer(core, slot)
            });
        }
    }

    fn on_wake(&mut self) {
        if let Some(w) = self.core.ctx.stop.waker(self.id) {
            w.drain();
        }
        if self.core.ctx.stop.is_stopping() && self.core.stop_deadline.is_none() {
            self.begin_stop();
        }
    }

    /// Stops accepting (closing the listeners, so new clients are refused
    /// by the kernel) and says goodbye to every session with no transfer in
    /// flight; the others finish their transfer first.
    fn begin_stop(&mut self) {
        let now = Instant::now();
        self.core.stop_deadline = Some(now + self.core.ctx.shutdown_timeout);
        self.listeners.clear();
        self.accepting = false;
        self.resume_at = None;
        self.spare = None;
        for slot in 0..self.conns.slots.len() {
            self.with_conn(slot, |core, c, slot| c.settle(core, slot));
        }
    }

    /// The shutdown deadline passed: whatever is left is closed now, with a
    /// 421 if the socket takes it.
    fn close_all(&mut self) {
        for slot in 0..self.conns.slots.len() {
            self.with_conn(slot, |core, c, _| {
                if !c.closing() {
                    c.log_end(core, "shutdown");
                }
                c.data = None;
                if c.flags & DEAD == 0 {
                    let out = c.session.output();
                    let n = (&c.ctrl).write(out).unwrap_or(0);
                    if n == out.len() {
                        let rest = if c.close_by.is_some() {
                            c.farewell
                        } else {
                            SHUTDOWN_REPLY
                        };
                        let _ = (&c.ctrl).write(rest);
                    }
                }
                Fate::Gone
            });
        }
    }

    /// Listeners are registered with EPOLLEXCLUSIVE: a socket passed by
    /// the service manager is shared by every worker (see
    /// `supervisor::activation`), and a new connection should wake one of
    /// them, not all. For a worker's own SO_REUSEPORT socket it changes
    /// nothing.
    fn start_accepting(&mut self) -> io::Result<()> {
        if !self.accepting {
            for (i, l) in self.listeners.iter().enumerate() {
                let (ep, t) = (&self.core.ep, token(i, KIND_LISTENER));
                match epoll::add(ep, l, t, EventFlags::IN | EventFlags::EXCLUSIVE) {
                    // Left in by an earlier attempt that failed half-way,
                    // with these same flags (EPOLLEXCLUSIVE cannot be
                    // modified, and needs not be).
                    Err(Errno::EXIST) => {}
                    r => r?,
                }
            }
            self.accepting = true;
        }
        Ok(())
    }

    /// Takes the listeners out of the epoll set for a while: accept keeps
    /// failing (out of descriptors), and a level-triggered listener would
    /// be reported ready again at once.
    fn pause_accepting(&mut self, now: Instant, why: &io::Error) {
        if self.accepting {
            for l in &self.listeners {
                let _ = epoll::delete(&self.core.ep, l);
            }
            self.accepting = false;
        }
        let pause = self.backoff.pause();
        self.resume_at = Some(now + pause);
        self.core.ctx.log.warn(format_args!(
            "worker {}: accept: {why}; pausing accepts for {} ms",
            self.id,
            pause.as_millis()
        ));
    }

    fn on_listener(&mut self, index: usize) {
        for _ in 0..ACCEPT_BATCH {
            let Some(l) = self.listeners.get(index) else {
                return;
            };
            match listen::accept(l) {
                Ok(None) => return,
                Ok(Some(stream)) => {
                    self.backoff.reset();
                    self.admit(stream);
                }
                Err(e) if listen::is_per_connection(&e) => {}
                Err(e) if listen::is_exhaustion(&e) => {
                    self.refuse_waiting(index);
                    self.pause_accepting(Instant::now(), &e);
                    return;
                }
                Err(e) => {
                    self.pause_accepting(Instant::now(), &e);
                    return;
                }
            }
        }
    }

    /// Out of descriptors: frees the spare one and uses it to tell the
    /// clients waiting on listener `index` to come back later.
    fn refuse_waiting(&mut self, index: usize) {
        if self.spare.take().is_none() {
            return;
        }
        if let Some(l) = self.listeners.get(index) {
            for _ in 0..ACCEPT_BATCH {
                match listen::accept(l) {
                    Ok(Some(s)) => {
                        refuse(&self.core.ctx, &mut self.refusals, s, Refusal::OutOfFiles)
                    }
                    _ => break,
                }
            }
        }
        self.spare = spare_fd();
    }

    fn refuse(&mut self, stream: TcpStream, why: Refusal) {
        refuse(&self.core.ctx, &mut self.refusals, stream, why);
    }

    /// A new control connection: checked against the limits, then a
    /// session.
    fn admit(&mut self, stream: TcpStream) {
        let Ok(ends) = listen::prepare_control(&stream) else {
            return; // gone already
        };
        let Some(peer) = ends.peer else { return };
        let permit = match self.core.ctx.limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => return self.refuse(stream, why),
        };
        let ctx = &self.core.ctx;
        let made = catch_unwind(AssertUnwindSafe(|| {
            Session::new(
                Arc::clone(&ctx.config),
                Arc::clone(&ctx.root),
                ends,
                Now::get(),
            )
        }));
        let session = match made {
            Ok(s) => s,
            Err(_) => {
                ctx.log
                    .error(format_args!("session setup panicked (peer={peer})"));
                return self.refuse(stream, Refusal::Internal);
            }
        };
        let slot = self.conns.insert(Conn {
            _permit: permit,
            ctrl: stream,
            session,
            data: None,
            started: Instant::now(),
            timer: None,
            close_by: None,
            farewell: b"",
            registered: None,
            flags: 0,
        });
        // Greeting, start record, deadline: as after any other event.
        self.with_conn(slot, |core, c, slot| c.settle(core, slot));
    }
}

impl Conn {
    fn closing(&self) -> bool {
        self.close_by.is_some()
    }

    fn in_flight(&self) -> bool {
        self.data.as_deref().is_some_and(Data::in_flight)
    }

    /// The end record for a session the driver ends on its own.
    fn log_end(&self, core: &Core, reason: &'static str) {
        core.ctx.log.record(&Record::SessionEnd {
            peer: self.ctrl.peer_addr().ok().map(net::canonical),
            seconds: self.started.elapsed().as_secs_f64(),
            reason,
        });
    }

    /// Begins closing: no more input or actions, the output (then
    /// `farewell`) is flushed for a bounded time.
    fn start_closing(&mut self, core: &Core, farewell: &'static [u8]) {
        if self.closing() {
            return;
        }
        if farewell == SHUTDOWN_REPLY {
            self.log_end(core, "shutdown");
        }
        self.data = None;
        self.farewell = farewell;
        let now = Instant::now();
        let mut by = now + CLOSE_FLUSH;
        if let Some(d) = core.stop_deadline {
            by = by.min(d.max(now));
        }
        self.close_by = Some(by);
    }

    /// The control connection's readiness.
    fn on_ctrl(&mut self, core: &mut Core, slot: usize, flags: EventFlags) -> Fate {
        let now = Now::get();
        let broken = flags.intersects(EventFlags::ERR | EventFlags::HUP);
        if self.wants_input(core) {
            match (&self.ctrl).read(&mut core.scratch) {
                Ok(0) => self.control_gone(now, false),
                Ok(n) => {
                    let input = core.scratch.get(..n).unwrap_or_default();
                    self.session.on_control(input, now);
                }
                Err(e) if retry(&e) => {}
                Err(_) => self.control_gone(now, true),
            }
        } else if broken {
            // Not reading, yet the connection is gone (reset): HUP cannot
            // be masked, so stop polling it altogether.
            self.control_gone(now, true);
        }
        self.settle(core, slot)
    }

    /// No more control input: EOF, or the connection broke (`dead`: the
    /// output cannot be delivered either).
    fn control_gone(&mut self, now: Now, dead: bool) {
        let first = self.flags & EOF == 0;
        self.flags |= EOF;
        if dead {
            self.flags |= DEAD;
        }
        if first && !self.closing() {
            self.session.on_control_eof(now);
        }
    }

    fn wants_input(&self, core: &Core) -> bool {
        self.flags & EOF == 0
            && !self.closing()
            && core.stop_deadline.is_none()
            && self.session.wants_control_input()
    }

    /// The data descriptor's readiness.
    fn on_data(&mut self, core: &mut Core, slot: usize) -> Fate {
        match self.data.as_deref() {
            Some(Data::Accepting(..)) => self.try_accept(core, slot),
            Some(Data::Connecting(..)) => self.check_connect(),
            Some(Data::Sending(..)) => self.pump(),
            // A late event for a socket already replaced.
            Some(Data::Listening(_)) | None => {}
        }
        self.settle(core, slot)
    }

    fn on_timer(&mut self, core: &mut Core, slot: usize) -> Fate {
        let now = Now::get();
        if let Some(by) = self.close_by {
            if now.mono >= by {
                return Fate::Gone;
            }
        } else if self.session.next_deadline().is_some_and(|d| d <= now.mono) {
            self.session.on_tick(now);
        }
        self.settle(core, slot)
    }

    /// After any call into the session: carry out its actions, write its
    /// output, and decide whether it lives on.
    fn settle(&mut self, core: &mut Core, slot: usize) -> Fate {
        // Each round either makes progress or ends; consume_output can
        // queue actions (say, a deferred Close), hence more than one.
        for _ in 0..4 {
            let mut acted = false;
            while let Some(a) = self.session.poll_action() {
                acted = true;
                self.perform(core, slot, a);
            }
            if core.stop_deadline.is_some() && !self.closing() && !self.in_flight() {
                self.start_closing(core, SHUTDOWN_REPLY);
            }
            self.flush();
            if !acted {
                break;
            }
        }
        let flushed = self.session.output().is_empty() && self.farewell.is_empty();
        if (self.closing() || self.session.is_closed()) && (flushed || self.flags & DEAD != 0) {
            return Fate::Gone;
        }
        if self.session.is_closed() && !self.closing() {
            self.start_closing(core, b"");
        }
        Fate::Keep
    }

    /// Writes what the session has to say, then the farewell, until done
    /// or the socket would block.
    fn flush(&mut self) {
        loop {
            let out = self.session.output();
            if out.is_empty() {
                break;
            }
            if self.flags & DEAD != 0 {
                let n = out.len();
                self.session.consume_output(n);
                continue;
            }
            match (&self.ctrl).write(out) {
                Ok(0) => self.flags |= DEAD,
                Ok(n) => self.session.consume_output(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    let first = self.flags & EOF == 0;
                    self.flags |= DEAD | EOF;
                    if first && !self.closing() {
                        self.session.on_control_eof(Now::get());
                    }
                }
            }
        }
        while !self.farewell.is_empty() && self.flags & DEAD == 0 {
            match (&self.ctrl).write(self.farewell) {
                Ok(0) => self.flags |= DEAD,
                Ok(n) => self.farewell = self.farewell.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.flags |= DEAD,
            }
        }
    }

    /// One request of the session.
    fn perform(&mut self, core: &mut Core, slot: usize, action: Action) {
        let now = Now::get();
        match action {
            Action::Log(r) => core.ctx.log.record(&r),
            // Closing: the session's requests no longer matter.
            _ if self.closing() => {}
            Action::Listen { ip, ports } => {
                self.drop_data();
                match net::passive_listener(ip, ports) {
                    Ok((l, addr)) => {
                        self.data = Some(Box::new(Data::Listening(l)));
                        self.session.on_listening(Ok(addr), now);
                    }
                    Err(e) => self.session.on_listening(Err(e), now),
                }
            }
            Action::Transfer {
                conn: DataConn::Passive,
                source,
            } => match self.data.take().map(|b| *b) {
                Some(Data::Listening(l)) => {
                    match epoll::add(&core.ep, &l, token(slot, KIND_DATA), EventFlags::IN) {
                        Ok(()) => {
                            self.data = Some(Box::new(Data::Accepting(l, Pump::new(source))));
                            // The client often connects right after PASV.
                            self.try_accept(core, slot);
                        }
                        Err(e) => self.failed(TransferError::Connect(e.into()), now),
                    }
                }
                other => {
                    drop(other);
                    let e = io::Error::new(io::ErrorKind::NotConnected, "no passive listener");
                    self.failed(TransferError::Connect(e), now);
                }
            },
            Action::Transfer {
                conn: DataConn::Active { to, from },
                source,
            } => {
                self.drop_data();
                let started = net::connect_active(to, from).and_then(|s| {
                    epoll::add(&core.ep, &s, token(slot, KIND_DATA), EventFlags::OUT)?;
                    Ok(s)
                });
                match started {
                    Ok(s) => self.data = Some(Box::new(Data::Connecting(s, Pump::new(source)))),
                    Err(e) => self.failed(TransferError::Connect(e), now),
                }
            }
            Action::AbortData => self.drop_data(),
            Action::Close => self.start_closing(core, b""),
        }
    }

    /// Drops the listener, data connection and transfer, if any. Closing a
    /// descriptor takes it out of the epoll set (none is ever duplicated).
    fn drop_data(&mut self) {
        self.data = None;
    }

    fn failed(&mut self, e: TransferError, now: Now) {
        self.session.on_transfer_done(Err(e), now);
    }

    /// Accepts the passive data connection, closing any from a peer the
    /// session does not allow.
    fn try_accept(&mut self, core: &mut Core, slot: usize) {
        for _ in 0..DATA_ACCEPT_BATCH {
            let Some(Data::Accepting(l, _)) = self.data.as_deref() else {
                return;
            };
            match net::accept(l) {
                Ok(None) => return,
                Ok(Some((sock, peer))) => {
                    if !self.session.data_peer_allowed(&net::canonical(peer)) {
                        continue; // closed by the drop; keep waiting
                    }
                    let Some(Data::Accepting(l, pump)) = self.data.take().map(|b| *b) else {
                        return;
                    };
                    drop(l);
                    let now = Now::get();
                    match epoll::add(&core.ep, &sock, token(slot, KIND_DATA), EventFlags::OUT) {
                        Ok(()) => {
                            self.data = Some(Box::new(Data::Sending(sock, pump)));
                            self.session.on_data_connected(now);
                            // Usually writable at once: no need to wait.
                            self.pump();
                        }
                        Err(e) => self.failed(TransferError::Connect(e.into()), now),
                    }
                    return;
                }
                Err(e) if listen::is_per_connection(&e) => {}
                Err(e) => {
                    // Leaving the connection queued would keep the listener
                    // readable: fail the transfer instead.
                    self.data = None;
                    self.failed(TransferError::Connect(e), Now::get());
                    return;
                }
            }
        }
    }

    /// An active-mode connect has progressed.
    fn check_connect(&mut self) {
        let Some(Data::Connecting(s, _)) = self.data.as_deref() else {
            return;
        };
        let now = Now::get();
        match net::connect_result(s) {
            // Still in progress (the event was for an earlier socket).
            Ok(()) if s.peer_addr().is_err() => {}
            Ok(()) => {
                if let Some(Data::Connecting(s, p)) = self.data.take().map(|b| *b) {
                    self.data = Some(Box::new(Data::Sending(s, p)));
                    self.session.on_data_connected(now);
                    self.pump();
                }
            }
            Err(e) if retry(&e) => {}
            Err(e) => {
                self.data = None;
                self.failed(TransferError::Connect(e), now);
            }
        }
    }

    /// Moves a bounded amount of the transfer (the Pump caps each run).
    fn pump(&mut self) {
        let Some(Data::Sending(s, p)) = self.data.as_deref_mut() else {
            return;
        };
        let result = p.run(s.as_fd());
        let sent = p.sent();
        let now = Now::get();
        match result {
            Ok(Progress::Blocked) => self.session.on_data_progress(sent, now),
            Ok(Progress::Done) => {
                if let Some(Data::Sending(s, _)) = self.data.take().map(|b| *b) {
                    let _ = s.shutdown(Shutdown::Write);
                }
                self.session.on_transfer_done(Ok(sent), now);
            }
            Err(e) => {
                self.data = None;
                self.session.on_transfer_done(Err(e), now);
            }
        }
    }

    /// Registers the control connection for what it waits for now.
    fn update_interest(&mut self, core: &Core, slot: usize) -> io::Result<()> {
        let fd = self.ctrl.as_fd();
        if self.flags & DEAD != 0 {
            if self.registered.take().is_some() {
                let _ = epoll::delete(&core.ep, fd);
            }
            return Ok(());
        }
        let mut want = EventFlags::empty();
        if self.wants_input(core) {
            want |= EventFlags::IN;
        }
        if !self.session.output().is_empty() || !self.farewell.is_empty() {
            want |= EventFlags::OUT;
        }
        match self.registered {
            Some(now) if now == want => {}
            Some(_) => epoll::modify(&core.ep, fd, token(slot, KIND_CTRL), want)?,
            None => epoll::add(&core.ep, fd, token(slot, KIND_CTRL), want)?,
        }
        self.registered = Some(want);
        Ok(())
    }

    /// Makes sure the heap holds an entry no later than the session's next
    /// deadline (or the end of its closing time).
    fn reschedule(&mut self, core: &mut Core, slot: usize) {
        let want = match self.close_by {
            Some(by) => Some(by),
            None => self.session.next_deadline(),
        };
        let Some(t) = want else { return };
        // Never sooner than a few milliseconds from now: a deadline already
        // past fires on the next round, and a session that keeps reporting
        // a past deadline cannot make the worker spin.
        let t = t.max(Instant::now() + MIN_TIMER);
        if self.timer.is_none_or(|(queued, _)| t < queued) {
            core.next_key += 1;
            let key = core.next_key;
            core.timers.push(Reverse((t, slot, key)));
            self.timer = Some((t, key));
        }
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle session costs the worker besides the kernel's socket:
    /// the slab entry (the Session's own heap buffers come on top and are
    /// released while idle).
    #[test]
    fn idle_session_is_small() {
        let conn = std::mem::size_of::<Option<Conn>>();
        let session = std::mem::size_of::<Session>();
        eprintln!("Conn slot: {conn} bytes, of which Session: {session}");
        assert!(conn < 2048, "{conn}");
    }
}
