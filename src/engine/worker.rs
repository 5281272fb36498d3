//! What every multi-session worker of `aftpd-supervisor` shares, whatever
//! its event mechanism (`engine::epoll`, `engine::uring`): the slab of
//! sessions, the timer heap, and admission (limits, the 421 refusals, the
//! accept back-off). A session's life around the core is `engine::conn`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::fmt;
use std::net::IpAddr;

use crate::core::admission::{Backoff, PassivePermit, Permit, Refusal};
use crate::core::clock::Now;
use crate::core::config::TlsPolicy;
use crate::core::rate::{Direction, Limiter};
use crate::core::session::{Endpoints, Session};
use crate::core::session::{FsAnswer, FsRequest, Record, Tree};
use crate::engine::conn;
use crate::engine::context::Context;
use crate::engine::mover::{Mover, Tag};
use crate::engine::net;
use crate::engine::pool::{Done, FromPool, JobTag, Output, Pool, Work};
use crate::fs::exec::Real;
use crate::monitor::board::Gauges;
use crate::monitor::row::Row;

/// The shortest timer: see [`Timers::schedule`].
pub const MIN_TIMER: Duration = Duration::from_millis(10);
/// Connections accepted per listener event, so accepting cannot starve
/// the sessions already open.
pub const ACCEPT_BATCH: usize = 64;

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
    /// Inserts what `make` makes of its slot number.
    pub fn insert_with(&mut self, make: impl FnOnce(usize) -> T) -> usize {
        let slot = self.free.last().copied().unwrap_or(self.slots.len());
        let placed = self.insert(make(slot));
        debug_assert_eq!(placed, slot);
        placed
    }

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

/// What both supervisor engines keep per worker beside their mechanism:
/// the shared context, the helper threads, the mover, the timers, the
/// stop. An engine's core holds one and, through [`HasBase`], is a
/// [`conn::Core`] without writing one of its own.
pub struct Base<M> {
    pub ctx: Arc<Context>,
    /// The worker's number (its completion queue in the pool).
    pub id: usize,
    pub pool: Pool,
    pub mover: M,
    pub timers: Timers,
    pub stop_deadline: Option<Instant>,
}

impl<M> Base<M> {
    pub fn new(ctx: &Arc<Context>, id: usize, mover: M) -> Base<M> {
        Base {
            ctx: Arc::clone(ctx),
            id,
            pool: ctx.pool.clone(),
            mover,
            timers: Timers::default(),
            stop_deadline: None,
        }
    }
}

/// An engine core that holds a [`Base`].
pub trait HasBase {
    type Mover: Mover;
    fn base(&self) -> &Base<Self::Mover>;
    fn base_mut(&mut self) -> &mut Base<Self::Mover>;
}

impl<T: HasBase> conn::Core for T {
    type Mover = T::Mover;

    fn mover(&mut self) -> &mut T::Mover {
        &mut self.base_mut().mover
    }

    fn fs(
        &mut self,
        slot: usize,
        serial: u64,
        id: u32,
        tree: Tree<Real>,
        request: FsRequest<Real>,
    ) -> Option<FsAnswer<Real>> {
        let b = self.base();
        let work = Work::Fs(tree, request);
        b.pool.submit(b.id, JobTag::Fs { slot, serial, id }, work);
        None
    }

    fn record(&mut self, r: &Record) {
        let b = self.base();
        if let Some(s) = b.ctx.stats.as_ref().and_then(|s| s.worker(b.id)) {
            s.record(r);
        }
        b.ctx.log.record(r);
    }

    fn note(&mut self, args: fmt::Arguments<'_>) {
        self.base().ctx.log.info(args);
    }

    fn passive_permit(&mut self, ip: Option<IpAddr>) -> Option<Option<PassivePermit>> {
        match ip {
            Some(ip) => self.base().ctx.limits.passive(ip).map(Some),
            None => Some(None),
        }
    }

    fn stop_deadline(&self) -> Option<Instant> {
        self.base().stop_deadline
    }

    fn tls(&self) -> Option<&super::tls::ServerTls> {
        self.base().ctx.tls.as_deref()
    }

    fn limiter(&mut self, ip: Option<IpAddr>, dir: Direction, now: Instant) -> Option<Limiter> {
        self.base().ctx.rates.limiter(ip, dir, now)
    }

    fn count_data(&mut self, sent: u64, received: u64, foreign: u32) {
        let b = self.base();
        if let Some(s) = b.ctx.stats.as_ref().and_then(|s| s.worker(b.id)) {
            s.data(sent, foreign);
            if received > 0 {
                s.received(received);
            }
        }
    }
}

/// At the end of a worker's loop turn: answers the monitor thread's
/// question, if one came, with the worker's gauges and (if asked) a row
/// per session. `live` tells sessions from those only waiting for their
/// last completions.
pub fn answer_board<M: Mover, I>(
    base: &Base<M>,
    conns: &Slab<conn::Conn<M, I>>,
    live: impl Fn(&conn::Conn<M, I>) -> bool,
) {
    let board = &base.ctx.board;
    let Some(ask) = board.asked(base.id) else {
        return;
    };
    let (now, pid) = (Now::get(), std::process::id());
    let mut gauges = Gauges::default();
    let mut rows = Vec::new();
    for c in (0..conns.bound())
        .filter_map(|i| conns.get(i))
        .filter(|c| live(c))
    {
        gauges.sessions += 1;
        if c.life.data.in_transfer() {
            gauges.transfers += 1;
        }
        if ask.rows() {
            rows.push(Row::of(&c.life.session.status(), pid, now));
        }
    }
    board.answer(base.id, ask, gauges, rows);
}

/// A helper-thread job's result, for the session that asked, if it is
/// still the one in its slot (`serial_of`).
pub enum Finished<D> {
    Fs {
        slot: usize,
        id: u32,
        answer: FsAnswer<Real>,
    },
    Mover {
        tag: Tag,
        done: D,
    },
}

/// Sorts a worker's finished jobs: each goes to its session if that is
/// still the one that asked, else it is dropped (closing what it opened).
/// `mover` wraps a mover's job for the engine's mover.
pub fn finished<D>(
    done: Done,
    serial_of: impl Fn(usize) -> Option<u64>,
    mover: impl FnOnce(FromPool) -> D,
) -> Option<Finished<D>> {
    match (done.tag, done.output) {
        (JobTag::Fs { slot, serial, id }, Output::Fs(answer))
            if serial_of(slot) == Some(serial) =>
        {
            Some(Finished::Fs { slot, id, answer })
        }
        (JobTag::Mover(tag), Output::Mover(result)) if serial_of(tag.slot) == Some(tag.serial) => {
            Some(Finished::Mover {
                tag,
                done: mover(result),
            })
        }
        // For a session gone since (or, never, of another kind).
        _ => None,
    }
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

/// An admitted control connection's session, its place in the limits,
/// and its client's address.
pub type Admitted = (Session<Real>, Permit, SocketAddr);

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
    /// The worker's number: its counters for the metrics.
    worker: usize,
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
            worker: 0,
        }
    }
}

impl Admission {
    /// Worker `id`'s admission.
    pub fn for_worker(id: usize) -> Admission {
        Admission {
            worker: id,
            ..Admission::default()
        }
    }

    /// A new control connection: checked against the limits, then a
    /// session (greeting and start record queued), with its place in the
    /// limits. `None`: refused, or gone already.
    pub fn admit(&mut self, ctx: &Context, stream: &TcpStream) -> Option<Admitted> {
        self.accepted();
        let ends = net::prepare_control(stream).ok()?;
        self.admit_as(ctx, stream, ends, &[])
    }

    /// An accept succeeded: the next back-off starts short again.
    pub fn accepted(&mut self) {
        self.backoff.reset();
    }

    /// [`Admission::admit`] for a control connection set up already, whose
    /// ends are `ends` (a PROXY header's client, for the limits too) and
    /// whose first input, read with its header, is `first`.
    pub fn admit_as(
        &mut self,
        ctx: &Context,
        stream: &TcpStream,
        ends: Endpoints,
        first: &[u8],
    ) -> Option<Admitted> {
        let peer = ends.peer?;
        let permit = match ctx.limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                self.refuse_peer(ctx, stream, Some(peer), why);
                return None;
            }
        };
        let made = catch_unwind(AssertUnwindSafe(|| {
            let now = Now::get();
            let mut session = Session::new(ctx.config.get(), ends, now);
            if !first.is_empty() {
                session.on_control(first, now);
            }
            session
        }));
        match made {
            Ok(mut session) => {
                if let Some(w) = ctx.stats.as_ref().and_then(|s| s.worker(self.worker)) {
                    session.set_tally(Arc::clone(&w.tally));
                }
                Some((session, permit, peer))
            }
            Err(_) => {
                ctx.log
                    .error(format_args!("session setup panicked (peer={peer})"));
                self.refuse_peer(ctx, stream, Some(peer), Refusal::Internal);
                None
            }
        }
    }

    /// Tells a client why it is turned away; the caller closes it.
    pub fn refuse(&mut self, ctx: &Context, stream: &TcpStream, why: Refusal) {
        let peer = stream.peer_addr().ok().map(net::canonical);
        self.refuse_peer(ctx, stream, peer, why);
    }

    /// [`Admission::refuse`], logged as `peer`'s.
    fn refuse_peer(
        &mut self,
        ctx: &Context,
        stream: &TcpStream,
        peer: Option<SocketAddr>,
        why: Refusal,
    ) {
        // A fresh socket's send buffer is empty: one non-blocking write.
        // Not under implicit TLS: the client waits for a ServerHello, and
        // clear bytes would show as a TLS error ("wrong version number").
        // It is closed without a word rather than told 421 inside TLS: a
        // handshake per refusal would spend the CPU and descriptors the
        // limits protect, at the moment they are short (README, FTPS).
        if ctx.config.get().tls != TlsPolicy::Implicit {
            let mut w = stream;
            let _ = w.write(why.reply());
        }
        if let Some(s) = &ctx.stats {
            s.refused(why);
        }
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
        if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
            && let Some(s) = &ctx.stats
        {
            s.refused_by_sandbox();
        }
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
