//! What every multi-session worker of `aftpd-supervisor` shares, whatever
//! its event mechanism (`driver::epoll`, `driver::uring`): the slab of
//! sessions, the timer heap, admission (limits, the 421 refusals, the
//! accept back-off), and a session's life around the core (carrying out
//! its [`Action`]s, closing, the shutdown 421). A mechanism supplies only
//! the [`Io`] half of a session: how the control output is written and how
//! the data connection is made and fed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::admission::{Backoff, Permit, Refusal};
use crate::core::clock::Now;
use crate::core::session::{Action, DataConn, Record, Session, Source, TransferError};
use crate::engine::context::Context;
use crate::engine::net;

/// How long a closing session may take to flush its last replies.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(10);
/// The shortest timer: see [`Timers::schedule`].
pub const MIN_TIMER: Duration = Duration::from_millis(10);
/// Connections accepted per listener event, so accepting cannot starve
/// the sessions already open.
pub const ACCEPT_BATCH: usize = 64;

/// The driver's own last words to a session closed by a shutdown.
pub const SHUTDOWN_REPLY: &[u8] = b"421 Server shutting down, closing control connection.\r\n";

/// What became of a session after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Keep,
    Gone,
}

/// A slab of sessions: slot numbers are stable for a session's life and
/// reused afterwards.
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    live: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, c: T) -> usize {
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

    /// Takes an entry out to work on it; `put` it back or `release` the
    /// slot.
    pub fn take(&mut self, i: usize) -> Option<T> {
        self.slots.get_mut(i).and_then(Option::take)
    }

    pub fn put(&mut self, i: usize, c: T) {
        if let Some(s) = self.slots.get_mut(i) {
            *s = Some(c);
        }
    }

    pub fn release(&mut self, i: usize) {
        self.live -= 1;
        self.free.push(i);
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// Entries in use (including those taken out).
    pub fn live(&self) -> usize {
        self.live
    }

    /// One past the highest slot number ever used.
    pub fn bound(&self) -> usize {
        self.slots.len()
    }
}

/// One binary heap per worker of (deadline, slot, key). A session's entry
/// is replaced only when its deadline moves earlier; when an entry fires
/// early (the deadline moved later), the session is rescheduled. Entries
/// whose key no longer matches their session's are stale and skipped.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_key: u64,
}

impl Timers {
    /// The earliest entry.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Removes and returns an entry due at `now`: (slot, key).
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, u64)> {
        let Reverse((t, slot, key)) = *self.heap.peek()?;
        if t > now {
            return None;
        }
        self.heap.pop();
        Some((slot, key))
    }

    /// Makes sure the heap holds an entry for `slot` no later than `want`;
    /// `current` is the session's entry, (deadline, key).
    pub fn schedule(
        &mut self,
        slot: usize,
        current: &mut Option<(Instant, u64)>,
        want: Option<Instant>,
    ) {
        let Some(t) = want else { return };
        // Never sooner than a few milliseconds from now: a deadline already
        // past fires on the next round, and a session that keeps reporting
        // a past deadline cannot make the worker spin.
        let t = t.max(Instant::now() + MIN_TIMER);
        if current.is_none_or(|(queued, _)| t < queued) {
            self.next_key += 1;
            let key = self.next_key;
            self.heap.push(Reverse((t, slot, key)));
            *current = Some((t, key));
        }
    }
}

/// How long until `next`, rounded up to whole milliseconds so that a
/// timer is never woken for just before it is due (and spun on).
pub fn wait_for(next: Instant, now: Instant) -> Duration {
    let d = next.saturating_duration_since(now);
    let ms = d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as u64;
    Duration::from_millis(ms)
}

/// The text of a caught panic.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "?".to_owned())
}

fn show(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "-".to_owned(), |p| p.to_string())
}

/// Admission of new control connections, for one worker: the limits, the
/// refusals (logged at most once a second, so a flood cannot flood the log
/// too), the back-off while accept fails, and a descriptor held in
/// reserve: when accept fails for lack of descriptors, closing it lets the
/// worker accept the waiting clients just long enough to tell them 421
/// instead of leaving them hanging.
pub struct Admission {
    backoff: Backoff,
    /// When to listen again after a failed accept.
    pub resume_at: Option<Instant>,
    spare: Option<OwnedFd>,
    refused: u64,
    logged: Option<Instant>,
}

/// What to do after an accept failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// The one connection is gone: go on accepting.
    Continue,
    /// Stop accepting until `resume_at`.
    Pause,
}

fn spare_fd() -> Option<OwnedFd> {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).ok()
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            backoff: Backoff::new(),
            resume_at: None,
            spare: spare_fd(),
            refused: 0,
            logged: None,
        }
    }
}

impl Admission {
    /// A new control connection: checked against the limits, then a
    /// session (greeting and start record queued). `None`: refused, or
    /// gone already.
    pub fn admit(&mut self, ctx: &Context, stream: &TcpStream) -> Option<Life> {
        self.backoff.reset();
        let ends = net::prepare_control(stream).ok()?;
        let peer = ends.peer?;
        let permit = match ctx.limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                self.refuse(ctx, stream, why);
                return None;
            }
        };
        let made = catch_unwind(AssertUnwindSafe(|| {
            Session::new(
                Arc::clone(&ctx.config),
                Arc::clone(&ctx.root),
                ends,
                Now::get(),
            )
        }));
        match made {
            Ok(session) => Some(Life {
                _permit: permit,
                session,
                peer: ends.peer,
                started: Instant::now(),
                timer: None,
                close_by: None,
                farewell: b"",
                flags: 0,
            }),
            Err(_) => {
                ctx.log
                    .error(format_args!("session setup panicked (peer={peer})"));
                self.refuse(ctx, stream, Refusal::Internal);
                None
            }
        }
    }

    /// Tells a client why it is turned away; the caller closes it.
    pub fn refuse(&mut self, ctx: &Context, stream: &TcpStream, why: Refusal) {
        // A fresh socket's send buffer is empty: one non-blocking write.
        let mut w = stream;
        let _ = w.write(why.reply());
        let peer = stream.peer_addr().ok().map(net::canonical);
        self.refused += 1;
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            ctx.log.info(format_args!(
                "refused peer={} reason={} ({} refused since the last report)",
                show(peer),
                why.reason(),
                self.refused
            ));
            self.refused = 0;
            self.logged = Some(now);
        }
    }

    /// Accepting on `listener` (worker `id`) failed with `e`. Out of
    /// descriptors, the clients waiting there are told 421 with the help
    /// of the spare descriptor; then accepting pauses (the caller stops
    /// listening until `resume_at`): accept keeps failing meanwhile, and a
    /// ready listener would be reported again at once.
    pub fn accept_failed(
        &mut self,
        ctx: &Context,
        id: usize,
        listener: &TcpListener,
        e: &io::Error,
    ) -> AcceptError {
        if net::is_per_connection(e) {
            return AcceptError::Continue;
        }
        if net::is_exhaustion(e) && self.spare.take().is_some() {
            for _ in 0..ACCEPT_BATCH {
                match net::accept_control(listener) {
                    Ok(Some(s)) => self.refuse(ctx, &s, Refusal::OutOfFiles),
                    _ => break,
                }
            }
            self.spare = spare_fd();
        }
        self.pause(ctx, id, format_args!("accept: {e}"));
        AcceptError::Pause
    }

    /// Stops accepting for a while (longer each time, up to a second).
    pub fn pause(&mut self, ctx: &Context, id: usize, why: std::fmt::Arguments<'_>) {
        let pause = self.backoff.pause();
        self.resume_at = Some(Instant::now() + pause);
        ctx.log.warn(format_args!(
            "worker {id}: {why}; pausing accepts for {} ms",
            pause.as_millis()
        ));
    }

    /// Stopping: no more accepting, no spare descriptor needed.
    pub fn stop(&mut self) {
        self.resume_at = None;
        self.spare = None;
    }
}

/// Bit flags of a [`Life`].
pub const EOF: u8 = 1; // no more control input (EOF seen or reading failed)
pub const DEAD: u8 = 2; // control connection broken: output is discarded

/// A session as a worker holds it, apart from its descriptors.
pub struct Life {
    /// The session's place in the limits, given back on drop; first, so
    /// that it is given back before the control connection closes (a
    /// client that sees the close may reconnect at once).
    _permit: Permit,
    pub session: Session,
    peer: Option<SocketAddr>,
    /// For the end record of a session the driver ends (shutdown, panic);
    /// the session logs its own ends otherwise.
    started: Instant,
    /// The heap entry that stands for this session: (deadline, key).
    pub timer: Option<(Instant, u64)>,
    /// Set once closing: the session goes when its output is written or
    /// at this instant, whichever is first.
    pub close_by: Option<Instant>,
    /// The driver's own last words (a 421), after the session's output.
    pub farewell: &'static [u8],
    pub flags: u8,
}

impl Life {
    pub fn closing(&self) -> bool {
        self.close_by.is_some()
    }

    pub fn dead(&self) -> bool {
        self.flags & DEAD != 0
    }

    /// At the shutdown deadline: a session not already closing is logged
    /// as ended by the shutdown and told 421. What the socket takes at once
    /// is written to `ctrl` (the session's output, then the 421, only if
    /// all of the output fit); `None` when a write is already in flight.
    pub fn close_now(&mut self, ctx: &Context, ctrl: Option<&TcpStream>) {
        if !self.closing() {
            self.log_end(ctx, "shutdown");
            self.farewell = SHUTDOWN_REPLY;
        }
        if let Some(mut ctrl) = ctrl.filter(|_| !self.dead()) {
            let out = self.session.output();
            let n = ctrl.write(out).unwrap_or(0);
            if n == out.len() {
                let _ = ctrl.write(self.farewell);
            }
        }
    }

    /// The end record for a session the driver ends on its own.
    pub fn log_end(&self, ctx: &Context, reason: &'static str) {
        ctx.log.record(&Record::SessionEnd {
            peer: self.peer,
            seconds: self.started.elapsed().as_secs_f64(),
            reason,
        });
    }

    /// A call into the session panicked: says so, and ends the session's
    /// record. The caller writes [`Refusal::Internal`] if it can, and
    /// drops the session.
    pub fn panicked(&self, ctx: &Context, payload: &(dyn std::any::Any + Send)) {
        ctx.log.error(format_args!(
            "session panicked (peer={}): {}; closing it",
            show(self.peer),
            panic_text(payload)
        ));
        if !self.closing() {
            self.log_end(ctx, "internal-error");
        }
    }

    /// No more control input: EOF, or the connection broke (`dead`: the
    /// output cannot be delivered either).
    pub fn control_gone(&mut self, now: Now, dead: bool) {
        let first = self.flags & EOF == 0;
        self.flags |= EOF;
        if dead {
            self.flags |= DEAD;
        }
        if first && !self.closing() {
            self.session.on_control_eof(now);
        }
    }

    /// Whether to read the control connection now.
    pub fn wants_input(&self, stopping: bool) -> bool {
        self.flags & EOF == 0 && !self.closing() && !stopping && self.session.wants_control_input()
    }

    /// When the session's timer must fire next.
    pub fn deadline(&self) -> Option<Instant> {
        match self.close_by {
            Some(by) => Some(by),
            None => self.session.next_deadline(),
        }
    }

    /// `n` bytes of [`Life::unwritten`] were written.
    pub fn wrote(&mut self, n: usize) {
        if self.session.output().is_empty() {
            self.wrote_farewell(n);
        } else {
            self.session.consume_output(n);
        }
    }

    /// `n` bytes of the farewell were written.
    pub fn wrote_farewell(&mut self, n: usize) {
        self.farewell = self.farewell.get(n..).unwrap_or_default();
    }

    /// What to write next: the session's output, else the farewell.
    pub fn unwritten(&self) -> &[u8] {
        let out = self.session.output();
        if out.is_empty() { self.farewell } else { out }
    }

    /// The control connection broke while writing.
    pub fn write_failed(&mut self) {
        self.control_gone(Now::get(), true);
    }

    /// Dead: what is left to write goes nowhere.
    pub fn discard_output(&mut self) {
        while !self.session.output().is_empty() {
            let n = self.session.output().len();
            self.session.consume_output(n);
        }
        self.farewell = b"";
    }
}

/// The engine-wide state a session is worked on with.
pub trait Core {
    fn ctx(&self) -> &Context;
    /// Set once the server stops: then sessions with no transfer in flight
    /// are closed with 421, and no input is read.
    fn stop_deadline(&self) -> Option<Instant>;
}

/// The mechanism's half of a session: its descriptors and how bytes move.
pub trait Io {
    type Core: Core;

    /// Whether a transfer is in progress (a stop lets it finish).
    fn in_flight(&self) -> bool;
    /// Drops the listener, data connection and transfer, if any, silently.
    fn drop_data(&mut self, core: &mut Self::Core, slot: usize);
    /// Holds a new passive listener (the data side is empty).
    fn set_listener(&mut self, l: TcpListener);
    /// Takes the passive listener for a transfer; drops any other data
    /// side.
    fn take_listener(&mut self, core: &mut Self::Core, slot: usize) -> Option<TcpListener>;
    /// Starts a passive transfer: accept on `l`, then send `source`.
    fn accept_data(
        &mut self,
        core: &mut Self::Core,
        slot: usize,
        life: &mut Life,
        l: TcpListener,
        source: Source,
    ) -> io::Result<()>;
    /// Starts an active transfer: `s` is connecting; then send `source`.
    fn connect_data(
        &mut self,
        core: &mut Self::Core,
        slot: usize,
        s: TcpStream,
        source: Source,
    ) -> io::Result<()>;
    /// Writes, or starts writing, what `life` has to say.
    fn flush(&mut self, core: &mut Self::Core, slot: usize, life: &mut Life);
    /// Whether written output is still on its way (a write in flight).
    fn sending(&self) -> bool;
    /// What the data connection's peer has acknowledged, while sending
    /// ([`net::bytes_acked`]).
    fn data_acked(&self) -> Option<u64>;
    /// Starts sending a transfer held back until its 150 was written
    /// (`Session::data_may_flow`); whether it did.
    fn resume_data(&mut self, core: &mut Self::Core, slot: usize, life: &mut Life) -> bool;
}

/// One session as a worker holds it.
pub struct Conn<I> {
    pub life: Life,
    pub io: I,
}

impl<I: Io> Conn<I> {
    /// Begins closing: no more input or actions, the output (then
    /// `farewell`) is flushed for a bounded time.
    pub fn start_closing(&mut self, core: &mut I::Core, slot: usize, farewell: &'static [u8]) {
        if self.life.closing() {
            return;
        }
        if farewell == SHUTDOWN_REPLY {
            self.life.log_end(core.ctx(), "shutdown");
        }
        self.io.drop_data(core, slot);
        self.life.farewell = farewell;
        let now = Instant::now();
        let mut by = now + CLOSE_FLUSH;
        if let Some(d) = core.stop_deadline() {
            by = by.min(d.max(now));
        }
        self.life.close_by = Some(by);
    }

    /// The session's timer fired.
    pub fn on_timer(&mut self, core: &mut I::Core, slot: usize) -> Fate {
        let now = Now::get();
        self.life.timer = None;
        if let Some(by) = self.life.close_by {
            if now.mono >= by {
                return Fate::Gone;
            }
        } else if self
            .life
            .session
            .next_deadline()
            .is_some_and(|d| d <= now.mono)
        {
            if self.life.session.wants_data_acked(now)
                && let Some(acked) = self.io.data_acked()
            {
                self.life.session.on_data_acked(acked, now);
            }
            self.life.session.on_tick(now);
        }
        self.settle(core, slot)
    }

    /// After any call into the session: carry out its actions, write its
    /// output, and decide whether it lives on.
    pub fn settle(&mut self, core: &mut I::Core, slot: usize) -> Fate {
        // Each round either makes progress or ends; consume_output can
        // queue actions (say, a deferred Close), hence more than one.
        for _ in 0..4 {
            let mut acted = false;
            while let Some(a) = self.life.session.poll_action() {
                acted = true;
                self.perform(core, slot, a);
            }
            if core.stop_deadline().is_some() && !self.life.closing() && !self.io.in_flight() {
                self.start_closing(core, slot, SHUTDOWN_REPLY);
            }
            self.io.flush(core, slot, &mut self.life);
            if self.io.resume_data(core, slot, &mut self.life) {
                acted = true;
            }
            if !acted {
                break;
            }
        }
        let life = &self.life;
        let flushed = life.unwritten().is_empty() && !self.io.sending();
        if (life.closing() || life.session.is_closed()) && (flushed || life.dead()) {
            return Fate::Gone;
        }
        if life.session.is_closed() && !life.closing() {
            self.start_closing(core, slot, b"");
        }
        Fate::Keep
    }

    /// One request of the session.
    fn perform(&mut self, core: &mut I::Core, slot: usize, action: Action) {
        let now = Now::get();
        let started = match action {
            Action::Log(r) => return core.ctx().log.record(&r),
            // Closing: the session's requests no longer matter.
            _ if self.life.closing() => return,
            Action::Listen { ip, ports } => {
                self.io.drop_data(core, slot);
                let listening = net::passive_listener(ip, ports).map(|(l, addr)| {
                    self.io.set_listener(l);
                    addr
                });
                return self.life.session.on_listening(listening, now);
            }
            Action::AbortData => return self.io.drop_data(core, slot),
            Action::Close => return self.start_closing(core, slot, b""),
            Action::Transfer {
                conn: DataConn::Passive,
                source,
            } => match self.io.take_listener(core, slot) {
                Some(l) => self.io.accept_data(core, slot, &mut self.life, l, source),
                None => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "no passive listener",
                )),
            },
            Action::Transfer {
                conn: DataConn::Active { to, from },
                source,
            } => {
                self.io.drop_data(core, slot);
                net::connect_active(to, from)
                    .and_then(|s| self.io.connect_data(core, slot, s, source))
            }
        };
        if let Err(e) = started {
            self.io.drop_data(core, slot);
            self.life
                .session
                .on_transfer_done(Err(TransferError::Connect(e)), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_slots() {
        let mut s = Slab::default();
        let a = s.insert('a');
        let b = s.insert('b');
        assert_eq!((a, b, s.live()), (0, 1, 2));
        assert_eq!(s.take(a), Some('a'));
        assert_eq!(s.take(a), None);
        s.release(a);
        assert_eq!(s.insert('c'), a);
        assert_eq!(s.get(b), Some(&'b'));
        assert_eq!(s.bound(), 2);
    }

    #[test]
    fn timers_keep_the_earliest() {
        let mut t = Timers::default();
        let mut cur = None;
        let soon = Instant::now() + Duration::from_millis(50);
        t.schedule(3, &mut cur, Some(soon + Duration::from_secs(1)));
        let first = cur;
        // Later: no new entry. Earlier: a new one, with a new key.
        t.schedule(3, &mut cur, Some(soon + Duration::from_secs(2)));
        assert_eq!(cur, first);
        t.schedule(3, &mut cur, Some(soon));
        assert_ne!(cur.map(|c| c.1), first.map(|c| c.1));
        assert_eq!(t.next(), Some(soon));
        assert_eq!(t.pop_due(Instant::now()), None);
        let (slot, key) = t.pop_due(soon).unwrap();
        assert_eq!((slot, Some(key)), (3, cur.map(|c| c.1)));
        // A past deadline is pushed a little into the future.
        let mut cur2 = None;
        t.schedule(4, &mut cur2, Some(Instant::now() - Duration::from_secs(1)));
        assert!(cur2.unwrap().0 > Instant::now());
    }

    #[test]
    fn waits_round_up() {
        let now = Instant::now();
        assert_eq!(
            wait_for(now + Duration::from_micros(1500), now),
            Duration::from_millis(2)
        );
        assert_eq!(wait_for(now, now + Duration::from_secs(1)), Duration::ZERO);
    }
}
