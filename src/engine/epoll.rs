//! The epoll engine of `aftpd-supervisor`: one worker thread, one epoll
//! instance, many sessions. It waits and moves bytes; every FTP decision is
//! the session core's, and everything that is not the mechanism (the
//! slab, timers, admission, carrying out the session's actions, closing)
//! is shared with the io_uring engine in `driver::worker`.
//!
//! Level-triggered throughout: interest is changed with `EPOLL_CTL_MOD`
//! whenever what a connection waits for changes, so an event left
//! unhandled comes back instead of being lost, and one that arrives late
//! (for a socket replaced within the same batch) is harmless: every handler
//! copes with "not ready after all".
//!
//! Per session a worker holds a `Conn`: the shared [`Life`] (the
//! [`Session`](crate::core::session::Session), its admission permit, the timer key) and an `EpollIo`:
//! the control stream and a boxed data side that exists only while a
//! passive listener or transfer does. Control input is read into one
//! scratch buffer per worker; the [`Pump`] owns a buffer only while a
//! transfer runs.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::io::Errno;

use crate::core::admission::Refusal;
use crate::core::clock::Now;
use crate::core::session::TransferError;
use crate::engine::context::Context;
use crate::engine::net;
use crate::engine::pump::{Progress, Pump};
use crate::engine::worker::{self, ACCEPT_BATCH, AcceptError, Admission, Fate, Life, Slab, Timers};

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
/// Passive-mode connections from the wrong peer closed per event.
const DATA_ACCEPT_BATCH: usize = 8;

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

/// The data side of a session: a passive listener, or a transfer.
enum Data {
    /// Opened by `Action::Listen`; not polled until a transfer needs it.
    Listening(TcpListener),
    /// A transfer waits for the client to connect.
    Accepting(TcpListener, Pump),
    /// A transfer waits for an active-mode connect to complete.
    Connecting(TcpStream, Pump),
    /// Connected, but its 150 is not written yet: out of the epoll set
    /// until `resume_data` (a writable socket would be reported at once).
    Held(TcpStream, Pump),
    /// A transfer is sending.
    Sending(TcpStream, Pump),
}

/// The epoll half of a session.
struct EpollIo {
    ctrl: TcpStream,
    data: Option<Box<Data>>,
    /// The control connection's epoll interest, `None` if not registered.
    registered: Option<EventFlags>,
}

type Conn = worker::Conn<EpollIo>;

/// Everything of a worker but its sessions, so a session taken out of the
/// slab can be worked on with it.
struct Core {
    ctx: Arc<Context>,
    ep: OwnedFd,
    timers: Timers,
    scratch: Box<[u8]>,
    stop_deadline: Option<Instant>,
}

impl worker::Core for Core {
    fn ctx(&self) -> &Context {
        &self.ctx
    }

    fn stop_deadline(&self) -> Option<Instant> {
        self.stop_deadline
    }
}

struct Worker {
    id: usize,
    core: Core,
    conns: Slab<Conn>,
    listeners: Vec<TcpListener>,
    /// Whether the listeners are in the epoll set (not during a back-off).
    accepting: bool,
    admission: Admission,
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
                timers: Timers::default(),
                scratch: vec![0u8; SCRATCH].into_boxed_slice(),
                stop_deadline: None,
            },
            conns: Slab::default(),
            listeners,
            accepting: false,
            admission: Admission::default(),
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
            let resume = self.admission.resume_at.is_some_and(|t| t <= now);
            if resume && self.core.stop_deadline.is_none() {
                self.admission.resume_at = None;
                if let Err(e) = self.start_accepting() {
                    self.pause_accepting(None, &e);
                }
            }
            if let Some(deadline) = self.core.stop_deadline {
                if self.conns.live() == 0 {
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
            self.core.timers.next(),
            self.admission.resume_at,
            self.core.stop_deadline,
        ]
        .into_iter()
        .flatten()
        .min()?;
        let d = worker::wait_for(next, now);
        Some(rustix::time::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
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
                conn.io.update_interest(core, slot, &conn.life)?;
                let want = conn.life.deadline();
                core.timers.schedule(slot, &mut conn.life.timer, want);
            }
            Ok::<Fate, io::Error>(fate)
        }));
        match fate {
            Ok(Ok(Fate::Keep)) => return self.conns.put(slot, conn),
            Ok(Ok(Fate::Gone)) => drop(conn),
            Ok(Err(e)) => {
                self.core
                    .ctx
                    .log
                    .warn(format_args!("closing a session: epoll_ctl: {e}"));
                drop(conn);
            }
            Err(panic) => {
                conn.life.panicked(&self.core.ctx, &*panic);
                let _ = (&conn.io.ctrl).write(Refusal::Internal.reply());
                // Dropping what panicked may panic again; contain that too.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(conn)));
            }
        }
        self.conns.release(slot);
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((slot, key)) = self.core.timers.pop_due(now) {
            let current = self.conns.get(slot).and_then(|c| c.life.timer);
            if current.map(|t| t.1) != Some(key) {
                continue; // stale: replaced, or the session is gone
            }
            self.with_conn(slot, |core, c, slot| c.on_timer(core, slot));
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
        self.admission.stop();
        for slot in 0..self.conns.bound() {
            self.with_conn(slot, |core, c, slot| c.settle(core, slot));
        }
    }

    /// The shutdown deadline passed: whatever is left is closed now, with a
    /// 421 if the socket takes it.
    fn close_all(&mut self) {
        for slot in 0..self.conns.bound() {
            self.with_conn(slot, |core, c, _| {
                c.io.data = None;
                c.life.close_now(&core.ctx, Some(&c.io.ctrl));
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
    /// failing, and a level-triggered listener would be reported ready
    /// again at once. `index`: the listener that failed.
    fn pause_accepting(&mut self, index: Option<usize>, why: &io::Error) {
        let (ctx, id) = (&self.core.ctx, self.id);
        let paused = match index.and_then(|i| self.listeners.get(i)) {
            Some(l) => self.admission.accept_failed(ctx, id, l, why),
            None => {
                self.admission
                    .pause(ctx, id, format_args!("epoll_ctl: {why}"));
                AcceptError::Pause
            }
        };
        if paused == AcceptError::Pause && self.accepting {
            for l in &self.listeners {
                let _ = epoll::delete(&self.core.ep, l);
            }
            self.accepting = false;
        }
    }

    fn on_listener(&mut self, index: usize) {
        for _ in 0..ACCEPT_BATCH {
            let Some(l) = self.listeners.get(index) else {
                return;
            };
            match net::accept_control(l) {
                Ok(None) => return,
                Ok(Some(stream)) => self.admit(stream),
                Err(e) => {
                    self.pause_accepting(Some(index), &e);
                    if !self.accepting {
                        return;
                    }
                }
            }
        }
    }

    /// A new control connection: checked against the limits, then a
    /// session.
    fn admit(&mut self, stream: TcpStream) {
        let Some(life) = self.admission.admit(&self.core.ctx, &stream) else {
            return;
        };
        let slot = self.conns.insert(Conn {
            life,
            io: EpollIo {
                ctrl: stream,
                data: None,
                registered: None,
            },
        });
        // Greeting, start record, deadline: as after any other event.
        self.with_conn(slot, |core, c, slot| c.settle(core, slot));
    }
}

impl Conn {
    /// The control connection's readiness.
    fn on_ctrl(&mut self, core: &mut Core, slot: usize, flags: EventFlags) -> Fate {
        let now = Now::get();
        let broken = flags.intersects(EventFlags::ERR | EventFlags::HUP);
        if self.life.wants_input(core.stop_deadline.is_some()) {
            match (&self.io.ctrl).read(&mut core.scratch) {
                Ok(0) => self.life.control_gone(now, false),
                Ok(n) => {
                    let input = core.scratch.get(..n).unwrap_or_default();
                    self.life.session.on_control(input, now);
                }
                Err(e) if retry(&e) => {}
                Err(_) => self.life.control_gone(now, true),
            }
        } else if broken {
            // Not reading, yet the connection is gone (reset): HUP cannot
            // be masked, so stop polling it altogether.
            self.life.control_gone(now, true);
        }
        self.settle(core, slot)
    }

    /// The data descriptor's readiness.
    fn on_data(&mut self, core: &mut Core, slot: usize) -> Fate {
        let life = &mut self.life;
        match self.io.data.as_deref() {
            Some(Data::Accepting(..)) => self.io.try_accept(life),
            Some(Data::Connecting(..)) => self.io.check_connect(core, life),
            Some(Data::Sending(..)) => self.io.pump(life),
            // A late event for a socket already replaced, or not polled.
            Some(Data::Held(..)) => {}
            // A late event for a socket already replaced.
            Some(Data::Listening(_)) | None => {}
        }
        self.settle(core, slot)
    }
}

impl worker::Io for EpollIo {
    type Core = Core;

    fn data_acked(&self) -> Option<u64> {
        match self.data.as_deref() {
            Some(Data::Sending(s, _)) => net::bytes_acked(s.as_fd()),
            _ => None,
        }
    }

    fn in_flight(&self) -> bool {
        self.data
            .as_deref()
            .is_some_and(|d| !matches!(d, Data::Listening(_)))
    }

    /// Closing a descriptor takes it out of the epoll set (none is ever
    /// duplicated).
    fn drop_data(&mut self, _: &mut Core, _: usize) {
        self.data = None;
    }

    fn set_listener(&mut self, l: TcpListener) {
        self.data = Some(Box::new(Data::Listening(l)));
    }

    fn take_listener(&mut self, _: &mut Core, _: usize) -> Option<TcpListener> {
        match self.data.take().map(|b| *b) {
            Some(Data::Listening(l)) => Some(l),
            _ => None,
        }
    }

    fn accept_data(
        &mut self,
        core: &mut Core,
        slot: usize,
        life: &mut Life,
        l: TcpListener,
        source: crate::core::session::Source,
    ) -> io::Result<()> {
        epoll::add(&core.ep, &l, token(slot, KIND_DATA), EventFlags::IN)?;
        self.data = Some(Box::new(Data::Accepting(l, Pump::new(source))));
        // The client often connects right after PASV.
        self.try_accept(life);
        Ok(())
    }

    fn connect_data(
        &mut self,
        core: &mut Core,
        slot: usize,
        s: TcpStream,
        source: crate::core::session::Source,
    ) -> io::Result<()> {
        epoll::add(&core.ep, &s, token(slot, KIND_DATA), EventFlags::OUT)?;
        self.data = Some(Box::new(Data::Connecting(s, Pump::new(source))));
        Ok(())
    }

    /// Writes what the session has to say, then the farewell, until done
    /// or the socket would block.
    fn flush(&mut self, _: &mut Core, _: usize, life: &mut Life) {
        loop {
            if life.dead() {
                return life.discard_output();
            }
            let out = life.unwritten();
            if out.is_empty() {
                return;
            }
            match (&self.ctrl).write(out) {
                Ok(0) => life.flags |= worker::DEAD,
                Ok(n) => life.wrote(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => life.write_failed(),
            }
        }
    }

    fn sending(&self) -> bool {
        false
    }

    fn resume_data(&mut self, core: &mut Core, slot: usize, life: &mut Life) -> bool {
        if !matches!(self.data.as_deref(), Some(Data::Held(..))) || !life.session.data_may_flow() {
            return false;
        }
        let Some(Data::Held(s, p)) = self.data.take().map(|b| *b) else {
            return false;
        };
        let now = Now::get();
        match epoll::add(&core.ep, &s, token(slot, KIND_DATA), EventFlags::OUT) {
            Ok(()) => {
                self.data = Some(Box::new(Data::Sending(s, p)));
                // Usually writable at once: no need to wait.
                self.pump(life);
            }
            Err(e) => failed(life, TransferError::Connection(e.into()), now),
        }
        true
    }
}

impl EpollIo {
    /// Accepts the passive data connection, closing any from a peer the
    /// session does not allow.
    fn try_accept(&mut self, life: &mut Life) {
        for _ in 0..DATA_ACCEPT_BATCH {
            let Some(Data::Accepting(l, _)) = self.data.as_deref() else {
                return;
            };
            match net::accept(l) {
                Ok(None) => return,
                Ok(Some((sock, peer))) => {
                    if !life.session.data_peer_allowed(&peer) {
                        continue; // closed by the drop; keep waiting
                    }
                    let Some(Data::Accepting(l, pump)) = self.data.take().map(|b| *b) else {
                        return;
                    };
                    drop(l);
                    // Polled once its 150 is written (`resume_data`).
                    self.data = Some(Box::new(Data::Held(sock, pump)));
                    life.session.on_data_connected(Now::get());
                    return;
                }
                Err(e) if net::is_per_connection(&e) => {}
                Err(e) => {
                    // Leaving the connection queued would keep the listener
                    // readable: fail the transfer instead.
                    self.data = None;
                    failed(life, TransferError::Connect(e), Now::get());
                    return;
                }
            }
        }
    }

    /// An active-mode connect has progressed.
    fn check_connect(&mut self, core: &Core, life: &mut Life) {
        let Some(Data::Connecting(s, _)) = self.data.as_deref() else {
            return;
        };
        let now = Now::get();
        match net::connect_result(s) {
            // Still in progress (the event was for an earlier socket).
            Ok(()) if s.peer_addr().is_err() => {}
            Ok(()) => {
                if let Some(Data::Connecting(s, p)) = self.data.take().map(|b| *b) {
                    // Writable from now on: out of the set until the 150 is.
                    if let Err(e) = epoll::delete(&core.ep, &s) {
                        return failed(life, TransferError::Connect(e.into()), now);
                    }
                    self.data = Some(Box::new(Data::Held(s, p)));
                    life.session.on_data_connected(now);
                }
            }
            Err(e) if retry(&e) => {}
            Err(e) => {
                self.data = None;
                failed(life, TransferError::Connect(e), now);
            }
        }
    }

    /// Moves a bounded amount of the transfer (the Pump caps each run).
    fn pump(&mut self, life: &mut Life) {
        let Some(Data::Sending(s, p)) = self.data.as_deref_mut() else {
            return;
        };
        let result = p.run(s.as_fd());
        let sent = p.sent();
        let now = Now::get();
        match result {
            Ok(Progress::Blocked) => life.session.on_data_progress(sent, now),
            Ok(Progress::Done) => {
                if let Some(Data::Sending(s, _)) = self.data.take().map(|b| *b) {
                    let _ = s.shutdown(Shutdown::Write);
                }
                life.session.on_transfer_done(Ok(sent), now);
            }
            Err(e) => {
                self.data = None;
                life.session.on_transfer_done(Err(e), now);
            }
        }
    }

    /// Registers the control connection for what it waits for now.
    fn update_interest(&mut self, core: &Core, slot: usize, life: &Life) -> io::Result<()> {
        let fd = self.ctrl.as_fd();
        if life.dead() {
            if self.registered.take().is_some() {
                let _ = epoll::delete(&core.ep, fd);
            }
            return Ok(());
        }
        let mut want = EventFlags::empty();
        if life.wants_input(core.stop_deadline.is_some()) {
            want |= EventFlags::IN;
        }
        if !life.unwritten().is_empty() {
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
}

fn failed(life: &mut Life, e: TransferError, now: Now) {
    life.session.on_transfer_done(Err(e), now);
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
        let session = std::mem::size_of::<crate::core::session::Session>();
        eprintln!("Conn slot: {conn} bytes, of which Session: {session}");
        assert!(conn < 2048, "{conn}");
    }
}
