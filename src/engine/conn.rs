//! A session as every engine holds it: the core's [`Session`], its
//! [`DataPath`], and its life around them (closing, the farewell, a
//! shutdown). One executor of the core's actions for poll, epoll and
//! io_uring alike; an engine supplies a [`Core`] (engine-wide: the mover,
//! filesystem work, the log) and an [`Io`] (how control output is
//! written).

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::datapath::DataPath;
use super::mover::Mover;
use super::tls::control::{ControlTls, Input};
use super::tls::{ServerTls, data as tls_data};
use crate::core::admission::PassivePermit;
use crate::core::clock::Now;
use crate::core::rate::{Direction, Limiter};
use crate::core::session::{Action, FsAnswer, FsRequest, Record, Session, Source, Tree};
use crate::fs::exec::Real;

/// How long a closing session may take to flush its last replies.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(10);

/// The engine's own last words to a session closed by a shutdown.
pub const SHUTDOWN_REPLY: &[u8] = b"421 Server shutting down, closing control connection.\r\n";

/// What became of a session after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Keep,
    Gone,
}

/// The engine-wide state a session is worked on with.
pub trait Core {
    type Mover: Mover;
    fn mover(&mut self) -> &mut Self::Mover;
    /// Starts filesystem request `id` of the session in `slot` (with serial
    /// number `serial`) for `tree`: the answer now, or `None` when it
    /// comes later (through [`Conn::on_fs`]).
    fn fs(
        &mut self,
        slot: usize,
        serial: u64,
        id: u32,
        tree: Tree<Real>,
        request: FsRequest<Real>,
    ) -> Option<FsAnswer<Real>>;
    /// A session's log record.
    fn record(&mut self, r: &Record);
    /// A line for the log about a session.
    fn note(&mut self, args: fmt::Arguments<'_>);
    /// A place for one more passive listener of a client at `ip`, or
    /// `None` when that client holds its share of the ports already.
    fn passive_permit(&mut self, ip: Option<IpAddr>) -> Option<Option<PassivePermit>>;
    /// Set once the server stops: then sessions with no transfer in flight
    /// are closed with 421, and no input is read.
    fn stop_deadline(&self) -> Option<Instant>;
    /// The server's TLS (FTPS), when it has a certificate.
    fn tls(&self) -> Option<&ServerTls> {
        None
    }
    /// The bandwidth limits of a new transfer of the client at `ip` in
    /// direction `dir` (`core::rate`), or `None` when none applies. A
    /// receiving path bounds each read by [`Limiter::allow`] and reports
    /// with [`Limiter::spend`], as `xfer` does for sends.
    fn limiter(&mut self, ip: Option<IpAddr>, dir: Direction, now: Instant) -> Option<Limiter>;
    /// For the metrics: bytes sent and received (uploads) on data
    /// connections since the last call, and data connections from other
    /// addresses closed.
    fn count_data(&mut self, _sent: u64, _received: u64, _foreign: u32) {}
}

/// How an engine writes a session's control output.
pub trait Io<C: Core> {
    /// Writes, or starts writing, what `life` has to say.
    fn flush(&mut self, core: &mut C, slot: usize, life: &mut Life<C::Mover>);
    /// Whether written output is still on its way (a write in flight).
    fn sending(&self) -> bool;
}

/// Bit flags of a [`Life`].
pub const EOF: u8 = 1; // no more control input (EOF seen or reading failed)
pub const DEAD: u8 = 2; // control connection broken: output is discarded

/// A session and its data path, and the engine's part of its life.
pub struct Life<M: Mover> {
    pub session: Session<Real>,
    pub data: DataPath<M>,
    /// Tells this session's completions from those of an earlier session
    /// in the same slot.
    pub serial: u64,
    peer: Option<SocketAddr>,
    /// For the end record of a session the engine ends (shutdown, panic);
    /// the session logs its own ends otherwise.
    started: Instant,
    /// The place of the passive listener in the per-address count, while
    /// there is one.
    passive: Option<PassivePermit>,
    /// The timer entry that stands for this session: (deadline, key).
    pub timer: Option<(Instant, u64)>,
    /// Set once closing: the session goes when its output is written or
    /// at this instant, whichever is first.
    pub close_by: Option<Instant>,
    /// The engine's own last words (a 421), after the session's output.
    pub farewell: &'static [u8],
    pub flags: u8,
    /// The control connection's TLS, once the session switched to it:
    /// everything read and written goes through it.
    pub tls: Option<Box<ControlTls>>,
    /// What TLS has to say for the log (a failed handshake).
    tls_note: Option<String>,
}

impl<M: Mover> Life<M> {
    /// The session in `slot` of its worker, with a serial number unique in
    /// the worker.
    pub fn new(
        session: Session<Real>,
        slot: usize,
        serial: u64,
        peer: Option<SocketAddr>,
    ) -> Life<M> {
        Life {
            session,
            serial,
            data: DataPath::new(slot, serial),
            peer,
            started: Instant::now(),
            passive: None,
            timer: None,
            close_by: None,
            farewell: b"",
            flags: 0,
            tls: None,
            tls_note: None,
        }
    }

    pub fn closing(&self) -> bool {
        self.close_by.is_some()
    }

    pub fn dead(&self) -> bool {
        self.flags & DEAD != 0
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The end record for a session the engine ends on its own.
    pub fn end_record(&self, reason: &'static str) -> Record {
        Record::SessionEnd {
            peer: self.peer,
            seconds: self.started.elapsed().as_secs_f64(),
            reason,
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

    /// When the session's timer must fire next: its own deadlines, and
    /// the end of a wait its bandwidth limit imposes.
    pub fn deadline(&self) -> Option<Instant> {
        match self.close_by {
            Some(by) => Some(by),
            None => [self.session.next_deadline(), self.data.wake_at()]
                .into_iter()
                .flatten()
                .min(),
        }
    }

    /// Bytes read from the control connection (through TLS once it
    /// speaks TLS).
    pub fn on_input(&mut self, input: &[u8], now: Now) {
        let Some(tls) = &mut self.tls else {
            return self.session.on_control(input, now);
        };
        match tls.input(input, &mut self.session, now) {
            Input::Ok => {}
            Input::Closed => self.control_gone(now, false),
            Input::Failed(why) => {
                self.tls_note = Some(why);
                self.session.on_control_tls_failed(now);
            }
        }
    }

    /// Seals what the session has to say into TLS, if it speaks TLS: the
    /// engines write [`Life::unwritten`] after this.
    pub fn seal(&mut self) {
        let closing = self.closing() || self.session.is_closed();
        if let Some(tls) = &mut self.tls {
            tls.seal(&self.session, &mut self.farewell, closing);
        }
    }

    /// Whether [`Life::unwritten`] is the farewell (in clear; over TLS it
    /// is sealed with the rest).
    pub fn writes_farewell(&self) -> bool {
        self.tls.is_none() && self.session.output().is_empty()
    }

    /// `n` bytes of [`Life::unwritten`] were written.
    pub fn wrote(&mut self, n: usize) {
        if let Some(tls) = &mut self.tls {
            tls.wrote(n, &mut self.session);
            return self.seal();
        }
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

    /// What to write next: the session's output, else the farewell (or
    /// the ciphertext carrying them).
    pub fn unwritten(&self) -> &[u8] {
        if let Some(tls) = &self.tls {
            return tls.pending();
        }
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
        self.tls = None;
    }

    /// At the shutdown deadline: a session not already closing is logged
    /// as ended by the shutdown and told 421. What the socket takes at once
    /// is written to `ctrl` (the session's output, then the 421, only if
    /// all of the output fit); `None` when a write is already in flight.
    pub fn close_now<C: Core<Mover = M>>(&mut self, core: &mut C, ctrl: Option<&TcpStream>) {
        if !self.closing() {
            core.record(&self.end_record("shutdown"));
            self.farewell = SHUTDOWN_REPLY;
        }
        self.data.abort(core.mover());
        let dead = self.dead();
        if let Some(tls) = &mut self.tls
            && let Some(mut ctrl) = ctrl.filter(|_| !dead)
        {
            // What is sealed already, then the rest and the 421, if the
            // socket takes it at once.
            for _ in 0..4 {
                tls.seal(&self.session, &mut self.farewell, true);
                let out = tls.pending();
                let n = ctrl.write(out).unwrap_or(0);
                if n == 0 || n < out.len() {
                    break;
                }
                tls.wrote(n, &mut self.session);
            }
            return;
        }
        if let Some(mut ctrl) = ctrl.filter(|_| !self.dead()) {
            let out = self.session.output();
            let n = ctrl.write(out).unwrap_or(0);
            if n == out.len() {
                let _ = ctrl.write(self.farewell);
            }
        }
    }
}

/// One session as an engine holds it.
pub struct Conn<M: Mover, I> {
    pub life: Life<M>,
    pub io: I,
}

impl<M: Mover, I> Conn<M, I> {
    /// Begins closing: no more input or actions, the output (then
    /// `farewell`) is flushed for a bounded time.
    pub fn start_closing<C: Core<Mover = M>>(&mut self, core: &mut C, farewell: &'static [u8]) {
        if self.life.closing() {
            return;
        }
        if farewell == SHUTDOWN_REPLY {
            core.record(&self.life.end_record("shutdown"));
        }
        self.life.data.abort(core.mover());
        self.life.passive = None;
        self.life.farewell = farewell;
        let now = Instant::now();
        let mut by = now + CLOSE_FLUSH;
        if let Some(d) = core.stop_deadline() {
            by = by.min(d.max(now));
        }
        self.life.close_by = Some(by);
    }

    /// The session's timer fired.
    pub fn on_timer<C: Core<Mover = M>>(&mut self, core: &mut C, slot: usize) -> Fate
    where
        I: Io<C>,
    {
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
                && let Some(acked) = self.life.data.acked()
            {
                self.life.session.on_data_acked(acked, now);
            }
            self.life.session.on_tick(now);
        }
        self.settle(core, slot)
    }

    /// The answer to the session's filesystem request `id`.
    pub fn on_fs<C: Core<Mover = M>>(
        &mut self,
        core: &mut C,
        slot: usize,
        id: u32,
        answer: FsAnswer<Real>,
    ) -> Fate
    where
        I: Io<C>,
    {
        if !self.life.closing() {
            self.life.session.on_fs(id, answer, Now::get());
        }
        self.settle(core, slot)
    }

    /// The data path's descriptor is ready.
    pub fn on_data_ready<C: Core<Mover = M>>(&mut self, core: &mut C, slot: usize) -> Fate
    where
        I: Io<C>,
    {
        let life = &mut self.life;
        life.data
            .on_ready(&mut life.session, core.mover(), Now::get());
        self.settle(core, slot)
    }

    /// After any call into the session: carry out its actions, write its
    /// output, move its data, and decide whether it lives on.
    pub fn settle<C: Core<Mover = M>>(&mut self, core: &mut C, slot: usize) -> Fate
    where
        I: Io<C>,
    {
        // Each round either makes progress or ends: consume_output can
        // queue actions (a deferred Close, a listing's next batch), an
        // answer given at once more, and sending more of a listing asks
        // for its next batch. Every round moves the session on, so this
        // ends; where filesystem answers come later (the supervisor), it
        // ends within a few rounds.
        loop {
            let mut acted = false;
            while let Some(a) = self.life.session.poll_action() {
                acted = true;
                self.perform(core, slot, a);
            }
            let stopping = core.stop_deadline().is_some();
            // A transfer in flight, or an upload being committed (its
            // client waits for the 226), may finish first.
            let busy = self.life.data.in_transfer() || self.life.session.storing();
            if stopping && !self.life.closing() && !busy {
                self.start_closing(core, SHUTDOWN_REPLY);
            }
            self.life.seal();
            self.io.flush(core, slot, &mut self.life);
            let life = &mut self.life;
            if !life.closing()
                && life
                    .data
                    .resume(&mut life.session, core.mover(), Now::get())
            {
                acted = true;
            }
            // Sending more of a listing may have asked for its next batch.
            if !acted && !life.session.has_actions() {
                break;
            }
        }
        if let Some(why) = self.life.tls_note.take() {
            core.note(format_args!(
                "TLS on the control connection failed (peer={}): {why}",
                show(self.life.peer)
            ));
        }
        let refused = self.life.data.take_refused();
        let sent = self.life.data.take_sent();
        let received = self.life.data.take_received();
        if sent > 0 || received > 0 || refused > 0 {
            core.count_data(sent, received, refused);
        }
        if refused > 0 {
            core.note(format_args!(
                "closed {refused} data connection(s) from addresses other than peer={}",
                show(self.life.peer)
            ));
        }
        if !self.life.data.has_listener() {
            self.life.passive = None;
        }
        let life = &self.life;
        let flushed = life.unwritten().is_empty() && !self.io.sending();
        if (life.closing() || life.session.is_closed()) && (flushed || life.dead()) {
            return Fate::Gone;
        }
        if life.session.is_closed() && !life.closing() {
            self.start_closing(core, b"");
        }
        Fate::Keep
    }

    /// One request of the session.
    fn perform<C: Core<Mover = M>>(&mut self, core: &mut C, slot: usize, action: Action<Real>) {
        let now = Now::get();
        let life = &mut self.life;
        match action {
            Action::Log(r) => core.record(&r),
            // Closing: the session's requests no longer matter.
            _ if life.closing() => {}
            Action::Listen { ip, ports } => {
                life.data.abort(core.mover());
                life.passive = None;
                let listening = match core.passive_permit(life.peer.map(|p| p.ip())) {
                    Some(permit) => {
                        life.passive = permit;
                        life.data.listen(core.mover(), ip, ports)
                    }
                    None => Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "this client holds its share of passive ports",
                    )),
                };
                life.session.on_listening(listening, now);
            }
            Action::AbortData => life.data.abort(core.mover()),
            Action::Close => self.start_closing(core, b""),
            Action::StartTls { early } => {
                let started = core.tls().map(|t| match t.token() {
                    Some(token) => ControlTls::new(&t.config(), t.store(), token),
                    None => Err("the system's random generator failed".to_owned()),
                });
                match started {
                    Some(Ok(tls)) => life.tls = Some(Box::new(tls)),
                    Some(Err(why)) => life.tls_note = Some(why),
                    None => life.tls_note = Some("no certificate".to_owned()),
                }
                if life.tls.is_none() {
                    life.session.on_control_tls_failed(now);
                } else if !early.is_empty() {
                    life.on_input(&early, now);
                }
            }
            Action::Transfer { conn, source } => {
                let protect = life.session.data_protected();
                match tls_data::for_transfer(protect, life.tls.as_deref(), &source) {
                    Ok(tls) => {
                        life.data.protect(tls);
                        let ip = life.peer.map(|p| p.ip());
                        // Uploads have buckets of their own.
                        let dir = match source {
                            Source::Upload { .. } => Direction::Upload,
                            _ => Direction::Download,
                        };
                        let limit = core.limiter(ip, dir, now.mono);
                        life.data
                            .start(&mut life.session, core.mover(), conn, source, limit, now)
                    }
                    Err(e) => life.session.on_transfer_done(Err(e), now),
                }
            }
            Action::Fs { id, tree, request } => {
                if let Some(answer) = core.fs(slot, life.serial, id, tree, request) {
                    life.session.on_fs(id, answer, now);
                }
            }
        }
    }
}

fn show(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "-".to_owned(), |p| p.to_string())
}
