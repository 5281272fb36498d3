//! The epoll engine of `aftpd-supervisor`: one worker thread, one epoll
//! instance, many sessions. It waits and moves bytes; every FTP decision is
//! the session core's, the data connection is the shared `DataPath`, the
//! actions are carried out by `engine::conn`, and the slab, timers and
//! admission are `engine::worker`'s.
//!
//! Level-triggered throughout: interest is changed with `EPOLL_CTL_MOD`
//! whenever what a descriptor waits for changes, so an event left
//! unhandled comes back instead of being lost, and one that arrives late
//! (for a socket replaced within the same batch) is harmless: every handler
//! copes with "not ready after all".
//!
//! Disk work never runs here: filesystem requests and reads of files not in
//! the page cache go to the process's helper threads (`engine::pool`),
//! whose completions come back through an eventfd in the epoll set; file
//! bytes already cached go out with `sendfile(2)` (`engine::cache_first`).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::io::Errno;

use super::cache_first::CacheFirst;
use super::conn::{self, Fate, Life};
use super::context::Context;
use super::datapath::Wait;
use super::net;
use super::pool::Done;
use super::proxy::{self, Waiting};
use super::worker::{
    self, ACCEPT_BATCH, AcceptError, Admission, Admitted, Base, Finished, HasBase, Slab,
};
use crate::core::admission::{Permit, Refusal};
use crate::core::clock::Now;

/// The low bits of an epoll token say which descriptor it is; the rest is
/// the slot (a session) or the listener index.
const KIND_BITS: u32 = 3;
const KIND_CTRL: u64 = 0;
const KIND_DATA: u64 = 1;
const KIND_LISTENER: u64 = 2;
const KIND_WAKER: u64 = 3;
const KIND_POOL: u64 = 4;
const KIND_HEADER: u64 = 5; // a connection waiting for its PROXY header

/// Events fetched per `epoll_wait`. Level-triggered epoll hands back
/// still-ready descriptors after the others, so a batch smaller than the
/// ready set rotates fairly.
const BATCH: usize = 256;
/// Control input read per event: more than any command line.
const SCRATCH: usize = 16 * 1024;

mod header;

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

/// The epoll half of a session.
struct EpollIo {
    /// The session's place in the limits, given back on drop; before the
    /// control connection, so that it is given back before the connection
    /// closes (a client that sees the close may reconnect at once).
    _permit: Permit,
    ctrl: TcpStream,
    /// The control connection's epoll interest, `None` if not registered.
    registered: Option<EventFlags>,
    /// The data descriptor registered: (fd, generation, interest).
    data_registered: Option<(RawFd, u32, EventFlags)>,
}

type Conn = conn::Conn<CacheFirst, EpollIo>;

/// Everything of a worker but its sessions, so a session taken out of the
/// slab can be worked on with it.
struct Core {
    base: Base<CacheFirst>,
    ep: OwnedFd,
    scratch: Box<[u8]>,
}

impl HasBase for Core {
    type Mover = CacheFirst;

    fn base(&self) -> &Base<CacheFirst> {
        &self.base
    }

    fn base_mut(&mut self) -> &mut Base<CacheFirst> {
        &mut self.base
    }
}

impl conn::Io<Core> for EpollIo {
    /// Writes what the session has to say, then the farewell, until done
    /// or the socket would block.
    fn flush(&mut self, _: &mut Core, _: usize, life: &mut Life<CacheFirst>) {
        loop {
            if life.dead() {
                return life.discard_output();
            }
            let out = life.unwritten();
            if out.is_empty() {
                return;
            }
            match (&self.ctrl).write(out) {
                Ok(0) => life.flags |= conn::DEAD,
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
}

impl EpollIo {
    /// Registers the control connection and the data descriptor for what
    /// they wait for now.
    fn update_interest(
        &mut self,
        core: &Core,
        slot: usize,
        life: &Life<CacheFirst>,
    ) -> io::Result<()> {
        let fd = self.ctrl.as_fd();
        if life.dead() {
            if self.registered.take().is_some() {
                let _ = epoll::delete(&core.ep, fd);
            }
        } else {
            let mut want = EventFlags::empty();
            if life.wants_input(core.base.stop_deadline.is_some()) {
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
        }
        self.update_data(core, slot, life)
    }

    /// The data path's descriptor is in the set exactly while the data
    /// path waits for it: a connected socket held until its 150 is
    /// written, or waiting for the disk, would otherwise be reported
    /// writable again and again.
    fn update_data(&mut self, core: &Core, slot: usize, life: &Life<CacheFirst>) -> io::Result<()> {
        let data = &life.data;
        let generation = data.tag().generation;
        let want = match (data.wait(), data.fd()) {
            (Wait::Readable, Some(fd)) => Some((fd, EventFlags::IN)),
            (Wait::Writable, Some(fd)) => Some((fd, EventFlags::OUT)),
            _ => None,
        };
        match want {
            Some((fd, flags)) => {
                let key = (fd.as_raw_fd(), generation, flags);
                if self.data_registered == Some(key) {
                    return Ok(());
                }
                let t = token(slot, KIND_DATA);
                match epoll::add(&core.ep, fd, t, flags) {
                    Err(Errno::EXIST) => epoll::modify(&core.ep, fd, t, flags)?,
                    r => r?,
                }
                self.data_registered = Some(key);
            }
            None => {
                // A descriptor closed since is out of the set already; one
                // still held (the same one, same generation) is taken out.
                if let Some((raw, g, _)) = self.data_registered.take()
                    && g == generation
                    && let Some(fd) = data.socket_fd().filter(|fd| fd.as_raw_fd() == raw)
                {
                    let _ = epoll::delete(&core.ep, fd);
                }
            }
        }
        Ok(())
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
    /// Serial numbers for new sessions.
    next_serial: u64,
    done: Vec<Done>,
    /// Connections waiting for their PROXY header (`--proxy-protocol`).
    waiting: Waiting,
}

impl Worker {
    fn new(ctx: &Arc<Context>, id: usize, listeners: Vec<TcpListener>) -> io::Result<Worker> {
        let ep = epoll::create(CreateFlags::CLOEXEC)?;
        let waker = ctx
            .stop
            .waker(id)
            .ok_or_else(|| io::Error::other("no waker for this worker"))?;
        epoll::add(&ep, waker, token(0, KIND_WAKER), EventFlags::IN)?;
        let pool_waker = ctx
            .pool
            .waker(id)
            .ok_or_else(|| io::Error::other("no pool queue for this worker"))?;
        epoll::add(&ep, pool_waker, token(0, KIND_POOL), EventFlags::IN)?;
        let mut w = Worker {
            id,
            core: Core {
                base: Base::new(ctx, id, CacheFirst::new(ctx.pool.clone(), id)),
                ep,
                scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            },
            conns: Slab::default(),
            listeners,
            accepting: false,
            admission: Admission::for_worker(id),
            next_serial: 0,
            done: Vec::new(),
            waiting: Waiting::default(),
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
                    KIND_POOL => self.on_pool(),
                    KIND_HEADER => self.on_header(index),
                    KIND_CTRL => {
                        self.with_conn(index, |core, c, slot| on_ctrl(c, core, slot, flags))
                    }
                    _ => self.with_conn(index, |core, c, slot| c.on_data_ready(core, slot)),
                }
            }
            let now = Instant::now();
            self.fire_timers(now);
            worker::answer_board(&self.core.base, &self.conns, |_| true);
            let resume = self.admission.resume_at.is_some_and(|t| t <= now);
            if resume && self.core.base.stop_deadline.is_none() {
                self.admission.resume_at = None;
                if let Err(e) = self.start_accepting() {
                    self.pause_accepting(None, &e);
                }
            }
            if let Some(deadline) = self.core.base.stop_deadline {
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
            self.core.base.timers.next(),
            self.waiting.next_deadline(),
            self.admission.resume_at,
            self.core.base.stop_deadline,
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
                core.base.timers.schedule(slot, &mut conn.life.timer, want);
            }
            Ok::<Fate, io::Error>(fate)
        }));
        match fate {
            Ok(Ok(Fate::Keep)) => return self.conns.put(slot, conn),
            Ok(Ok(Fate::Gone)) => self.drop_conn(conn),
            Ok(Err(e)) => {
                self.core
                    .base
                    .ctx
                    .log
                    .warn(format_args!("closing a session: epoll_ctl: {e}"));
                self.drop_conn(conn);
            }
            Err(panic) => {
                self.core.base.ctx.log.error(format_args!(
                    "session panicked (peer={}): {}; closing it",
                    conn.life
                        .peer()
                        .map_or_else(|| "-".to_owned(), |p| p.to_string()),
                    worker::panic_text(&*panic)
                ));
                if !conn.life.closing() {
                    self.core
                        .base
                        .ctx
                        .log
                        .record(&conn.life.end_record("internal-error"));
                }
                let _ = (&conn.io.ctrl).write(Refusal::Internal.reply());
                // Dropping what panicked may panic again; contain that too.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(conn)));
            }
        }
        self.conns.release(slot);
    }

    /// A session is over: its data path gives back what the mover holds.
    fn drop_conn(&mut self, mut conn: Conn) {
        conn.life.data.abort(&mut self.core.base.mover);
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((_, p)) = self.waiting.expired(now) {
            p.timed_out(&self.core.base.ctx.log);
        }
        while let Some((slot, key)) = self.core.base.timers.pop_due(now) {
            let current = self.conns.get(slot).and_then(|c| c.life.timer);
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
            match worker::finished(d, |slot| self.serial_of(slot), |r| r) {
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

    fn serial_of(&self, slot: usize) -> Option<u64> {
        self.conns.get(slot).map(|c| c.life.serial)
    }

    fn on_wake(&mut self) {
        if let Some(w) = self.core.base.ctx.stop.waker(self.id) {
            w.drain();
        }
        if self.core.base.ctx.stop.is_stopping() && self.core.base.stop_deadline.is_none() {
            self.begin_stop();
        }
    }

    /// Stops accepting (closing the listeners, so new clients are refused
    /// by the kernel) and says goodbye to every session with no transfer in
    /// flight; the others finish their transfer first.
    fn begin_stop(&mut self) {
        let now = Instant::now();
        self.core.base.stop_deadline = Some(now + self.core.base.ctx.shutdown_timeout);
        self.listeners.clear();
        self.accepting = false;
        self.admission.stop();
        // No header yet, no session: nothing to say goodbye to.
        drop(self.waiting.drain());
        for slot in 0..self.conns.bound() {
            self.with_conn(slot, |core, c, slot| c.settle(core, slot));
        }
    }

    /// The shutdown deadline passed: whatever is left is closed now, with a
    /// 421 if the socket takes it.
    fn close_all(&mut self) {
        for slot in 0..self.conns.bound() {
            self.with_conn(slot, |core, c, _| {
                c.life.close_now(core, Some(&c.io.ctrl));
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
        let (ctx, id) = (&self.core.base.ctx, self.id);
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
        let io = EpollIo {
            _permit: permit,
            ctrl: stream,
            registered: None,
            data_registered: None,
        };
        let slot = self.conns.insert_with(|slot| Conn {
            life: Life::new(session, slot, serial, Some(peer)),
            io,
        });
        // Greeting, start record, deadline: as after any other event.
        self.with_conn(slot, |core, c, slot| c.settle(core, slot));
    }
}

/// The control connection's readiness.
fn on_ctrl(c: &mut Conn, core: &mut Core, slot: usize, flags: EventFlags) -> Fate {
    let now = Now::get();
    let broken = flags.intersects(EventFlags::ERR | EventFlags::HUP);
    let life = &mut c.life;
    if life.wants_input(core.base.stop_deadline.is_some()) {
        match (&c.io.ctrl).read(&mut core.scratch) {
            Ok(0) => life.control_gone(now, false),
            Ok(n) => {
                let input = core.scratch.get(..n).unwrap_or_default();
                life.on_input(input, now);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => life.control_gone(now, true),
        }
    } else if broken {
        // Not reading, yet the connection is gone (reset): HUP cannot
        // be masked, so stop polling it altogether.
        life.control_gone(now, true);
    }
    c.settle(core, slot)
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
        let session = std::mem::size_of::<crate::core::session::Session<crate::fs::exec::Real>>();
        eprintln!("Conn slot: {conn} bytes, of which Session: {session}");
        assert!(conn < 2048, "{conn}");
    }
}
