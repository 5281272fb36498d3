//! The one data path: a session's data connection from the passive
//! listener or the active connect to the last byte, shared by every
//! engine. It checks the peer of each passive connection, holds the data
//! until the 150 is written, moves the bytes (through the engine's
//! [`Mover`]), and reports connection, progress and the end to the session.
//! An engine supplies only the waiting: it asks [`DataPath::wait`] what to
//! wait for, and calls [`DataPath::on_ready`] or [`DataPath::on_mover`]
//! when that has happened, and [`DataPath::resume`] after the session's
//! other events (and at [`DataPath::wake_at`], when a bandwidth limit
//! makes the transfer wait).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use super::mover::{Mover, Tag};
use super::net;
use super::slow::Pace;
use super::tls::data::DataTls;
use super::xfer::{Step, Xfer, finish_socket};
use crate::core::clock::Now;
use crate::core::rate::Limiter;
use crate::core::session::{DataConn, Session, Source, TransferError};
use crate::fs::exec::Real;

/// Connections from other addresses closed per readiness event, so a
/// flood on the data port cannot hold the engine.
const ACCEPT_BATCH: usize = 8;

/// What the data path waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Nothing,
    /// Its descriptor ([`DataPath::fd`]) to be readable: a listener, an
    /// upload's connection, a TLS handshake waiting for the client, or a
    /// sent transfer waiting for the client to close its end (until
    /// [`DataPath::wake_at`]: engines call [`DataPath::resume`] then).
    Readable,
    /// Its descriptor to be writable: a connect in progress, or a full
    /// socket.
    Writable,
    /// An operation of the mover to complete ([`DataPath::on_mover`]).
    Mover,
    /// The session: its 150 to be written, or the next piece of a
    /// listing. Engines call [`DataPath::resume`] after session events.
    Session,
    /// The time: the bandwidth limit allows more at [`DataPath::wake_at`].
    /// Engines call [`DataPath::resume`] then (it is among the session's
    /// deadlines, `conn::Life::deadline`).
    Timer,
}

enum State<M: Mover> {
    Idle,
    /// A passive listener, before its transfer command: connections from
    /// other addresses are closed at once, so they cannot fill its queue.
    Listening(TcpListener),
    /// The client connected before its transfer command (curl, ftplib and
    /// wget do): the connection waits; the listener is closed.
    Early(TcpStream),
    /// A transfer waits for the client to connect.
    Accepting(TcpListener, Box<Xfer<M>>),
    /// A transfer waits for an active-mode connect to complete.
    Connecting(TcpStream, Box<Xfer<M>>),
    /// Connected: sending (once the 150 is written). Shared with a helper
    /// thread's send in flight, which keeps it open (and its number
    /// taken) until it is done.
    Open(Arc<TcpStream>, Box<Xfer<M>>),
}

/// A session's data connection.
pub struct DataPath<M: Mover> {
    state: State<M>,
    slot: usize,
    serial: u64,
    generation: u32,
    wait: Wait,
    /// With [`Wait::Timer`]: when to go on; with [`Wait::Readable`], when
    /// to stop waiting for the client's end.
    wake: Option<Instant>,
    /// Connections refused since the engine last asked: for the log.
    refused: u32,
    /// TLS for the next transfer (PROT P), set just before it starts.
    tls: Option<Box<DataTls>>,
    counts: Counts,
}

/// What transfers moved, for the metrics and the pace.
#[derive(Default)]
struct Counts {
    /// Bytes sent since the engine last asked.
    sent: u64,
    /// Bytes received (uploads) since the engine last asked.
    received: u64,
    /// The current transfer's pace (a slow reader gets a short queue).
    pace: Pace,
}

impl Counts {
    /// `n` more bytes moved, `total` so far in this transfer.
    fn note(&mut self, sock: &TcpStream, receiving: bool, n: u64, total: u64, now: Instant) {
        // An upload's progress is what came in.
        if receiving {
            self.received += n;
        } else {
            self.sent += n;
            self.pace.observe(sock, total, now);
        }
    }
}

impl<M: Mover> DataPath<M> {
    /// The data path of the session in `slot` with serial number `serial`
    /// (both 0 for `ftpd`).
    pub fn new(slot: usize, serial: u64) -> DataPath<M> {
        DataPath {
            state: State::Idle,
            slot,
            serial,
            generation: 0,
            wait: Wait::Nothing,
            wake: None,
            refused: 0,
            tls: None,
            counts: Counts::default(),
        }
    }

    /// What to wait for now.
    pub fn wait(&self) -> Wait {
        self.wait
    }

    /// When to go on, if the bandwidth limit makes the transfer wait, or
    /// when to give up waiting for the client's end of a sent transfer.
    pub fn wake_at(&self) -> Option<Instant> {
        self.wake
            .filter(|_| matches!(self.wait, Wait::Timer | Wait::Readable))
    }

    /// The descriptor to wait on for [`Wait::Readable`] or
    /// [`Wait::Writable`].
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.state, self.wait) {
            (State::Listening(l) | State::Accepting(l, _), Wait::Readable) => Some(l.as_fd()),
            // An upload, or a TLS handshake, waiting for the client.
            (State::Open(s, _), Wait::Readable) => Some(s.as_fd()),
            (State::Connecting(s, _), Wait::Writable) => Some(s.as_fd()),
            (State::Open(s, _), Wait::Writable) => Some(s.as_fd()),
            _ => None,
        }
    }

    /// Changes with every listener and transfer: tags asynchronous
    /// operations and registrations.
    pub fn tag(&self) -> Tag {
        Tag {
            slot: self.slot,
            serial: self.serial,
            generation: self.generation,
        }
    }

    /// Whether a transfer is in progress (a stop lets it finish).
    pub fn in_transfer(&self) -> bool {
        matches!(
            self.state,
            State::Accepting(..) | State::Connecting(..) | State::Open(..)
        )
    }

    /// The socket or listener held, whatever the data path waits for.
    pub fn socket_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Idle => None,
            State::Listening(l) | State::Accepting(l, _) => Some(l.as_fd()),
            State::Early(s) | State::Connecting(s, _) => Some(s.as_fd()),
            State::Open(s, _) => Some(s.as_fd()),
        }
    }

    /// Whether a passive listener is open (it holds a port).
    pub fn has_listener(&self) -> bool {
        matches!(self.state, State::Listening(_) | State::Accepting(..))
    }

    /// What the peer of an open data connection has acknowledged.
    pub fn acked(&self) -> Option<u64> {
        match &self.state {
            State::Open(s, _) => net::bytes_acked(s.as_fd()),
            _ => None,
        }
    }

    /// How many connections from other addresses were closed since the
    /// last call.
    pub fn take_refused(&mut self) -> u32 {
        std::mem::take(&mut self.refused)
    }

    /// How many bytes were sent since the last call.
    pub fn take_sent(&mut self) -> u64 {
        std::mem::take(&mut self.counts.sent)
    }

    /// How many bytes were received (uploads) since the last call.
    pub fn take_received(&mut self) -> u64 {
        std::mem::take(&mut self.counts.received)
    }

    /// Opens a passive listener, replacing whatever there was.
    pub fn listen(
        &mut self,
        mover: &mut M,
        ip: IpAddr,
        ports: Option<(u16, u16)>,
    ) -> io::Result<SocketAddr> {
        self.abort(mover);
        let (listener, bound) = net::passive_listener(ip, ports)?;
        self.state = State::Listening(listener);
        self.wait = Wait::Readable;
        Ok(bound)
    }

    /// Drops the listener, the connection and the transfer, silently.
    pub fn abort(&mut self, mover: &mut M) {
        let tag = self.tag();
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Accepting(_, x) | State::Connecting(_, x) | State::Open(_, x) => {
                mover.finish(x.mover, tag)
            }
            State::Idle | State::Listening(_) | State::Early(_) => {}
        }
        self.generation = self.generation.wrapping_add(1);
        self.wait = Wait::Nothing;
    }

    /// The next transfer goes through TLS (`Some`) or in clear.
    pub fn protect(&mut self, tls: Option<Box<DataTls>>) {
        self.tls = tls;
    }

    /// Starts the transfer the session asked for.
    pub fn start(
        &mut self,
        session: &mut Session<Real>,
        mover: &mut M,
        conn: DataConn,
        source: Source<Real>,
        limit: Option<Limiter>,
        now: Now,
    ) {
        self.counts.pace = Pace::default();
        let mut xfer = Box::new(Xfer::new(source, limit));
        if let Some(tls) = self.tls.take() {
            xfer.protect(tls);
        }
        match (std::mem::replace(&mut self.state, State::Idle), conn) {
            (State::Listening(l), DataConn::Passive) => {
                self.state = State::Accepting(l, xfer);
                self.wait = Wait::Readable;
                // The client often connects right after PASV.
                self.accept(session, mover, now);
            }
            (State::Early(s), DataConn::Passive) => self.connected(session, mover, s, xfer, now),
            (old, DataConn::Passive) => {
                self.state = old;
                self.abort(mover);
                let e = io::Error::new(io::ErrorKind::NotConnected, "no passive listener");
                session.on_transfer_done(Err(TransferError::Connect(e)), now);
            }
            (_, DataConn::Active { to, from }) => {
                self.abort(mover);
                match net::connect_active(to, from) {
                    Ok(s) => {
                        self.state = State::Connecting(s, xfer);
                        self.wait = Wait::Writable;
                    }
                    Err(e) => session.on_transfer_done(Err(TransferError::Connect(e)), now),
                }
            }
        }
    }

    /// The descriptor waited on is ready (or may be: every step copes
    /// with "not ready after all").
    pub fn on_ready(&mut self, session: &mut Session<Real>, mover: &mut M, now: Now) {
        match &self.state {
            State::Listening(_) | State::Accepting(..) => self.accept(session, mover, now),
            State::Connecting(..) => self.check_connect(session, mover, now),
            State::Open(..) => self.pump(session, mover, now),
            State::Idle | State::Early(_) => {}
        }
    }

    /// An operation of the mover completed; `tag` says for which transfer.
    pub fn on_mover(
        &mut self,
        session: &mut Session<Real>,
        mover: &mut M,
        tag: Tag,
        done: M::Done,
        now: Now,
    ) {
        let current = tag == self.tag();
        let result = match &mut self.state {
            State::Open(sock, x) if current => {
                let before = x.sent;
                let r = x.completed(mover, done);
                if x.sent > before {
                    // A helper thread sent these.
                    self.counts
                        .note(sock, x.receiving(), x.sent - before, x.sent, now.mono);
                    session.on_data_progress(x.sent, now);
                }
                r
            }
            _ => {
                // Not this transfer's: the mover takes back what it lent.
                return mover.finish_late(tag, done);
            }
        };
        match result {
            Ok(()) => self.pump(session, mover, now),
            Err(e) => self.fail(session, mover, e, now),
        }
    }

    /// Goes on after the session's other events (its 150 written, a
    /// listing batch formatted), once the limit's wait is over, or once
    /// the wait for the client's end is; whether anything moved.
    pub fn resume(&mut self, session: &mut Session<Real>, mover: &mut M, now: Now) -> bool {
        let State::Open(_, x) = &self.state else {
            return false;
        };
        let due = match self.wait {
            Wait::Session => true,
            Wait::Timer => self.wake.is_none_or(|t| t <= now.mono),
            Wait::Readable => self.wake.is_some_and(|t| t <= now.mono),
            _ => false,
        };
        if !due {
            return false;
        }
        let before = (x.sent, self.generation, self.wait);
        self.pump(session, mover, now);
        let after = match &self.state {
            State::Open(_, x) => (x.sent, self.generation, self.wait),
            _ => return true,
        };
        after != before
    }

    /// Accepts the client's data connection; others are closed unseen.
    fn accept(&mut self, session: &mut Session<Real>, mover: &mut M, now: Now) {
        for _ in 0..ACCEPT_BATCH {
            let (State::Listening(l) | State::Accepting(l, _)) = &self.state else {
                return;
            };
            match net::accept(l) {
                Ok(None) => return,
                Ok(Some((sock, peer))) if session.data_peer_allowed(&peer) => {
                    match std::mem::replace(&mut self.state, State::Idle) {
                        State::Accepting(_, x) => self.connected(session, mover, sock, x, now),
                        _ => {
                            self.state = State::Early(sock);
                            self.wait = Wait::Nothing;
                        }
                    }
                    return;
                }
                // From another address: closed by the drop; keep waiting.
                Ok(Some(_)) => self.refused += 1,
                Err(e) if net::is_per_connection(&e) => {}
                Err(e) => {
                    // Leaving the connection queued would keep the listener
                    // readable: give up on it instead.
                    if matches!(self.state, State::Accepting(..)) {
                        return self.fail(session, mover, TransferError::Connect(e), now);
                    }
                    self.abort(mover);
                    return;
                }
            }
        }
    }

    fn check_connect(&mut self, session: &mut Session<Real>, mover: &mut M, now: Now) {
        let State::Connecting(s, _) = &self.state else {
            return;
        };
        match net::connect_result(s) {
            // Still in progress (a wake-up for an earlier socket).
            Ok(()) if s.peer_addr().is_err() => {}
            Ok(()) => {
                if let State::Connecting(s, x) = std::mem::replace(&mut self.state, State::Idle) {
                    self.connected(session, mover, s, x, now);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => self.fail(session, mover, TransferError::Connect(e), now),
        }
    }

    /// The data connection is up: the session announces it (150), and the
    /// bytes follow once that is written.
    fn connected(
        &mut self,
        session: &mut Session<Real>,
        mover: &mut M,
        sock: TcpStream,
        xfer: Box<Xfer<M>>,
        now: Now,
    ) {
        self.state = State::Open(Arc::new(sock), xfer);
        self.wait = Wait::Session;
        session.on_data_connected(now);
        self.pump(session, mover, now);
    }

    /// Moves a bounded amount of the transfer.
    fn pump(&mut self, session: &mut Session<Real>, mover: &mut M, now: Now) {
        if !session.data_may_flow() {
            self.wait = Wait::Session;
            return;
        }
        let tag = self.tag();
        let State::Open(sock, x) = &mut self.state else {
            return;
        };
        let before = x.sent;
        let step = x.run(sock, session, mover, tag, now.mono);
        if x.sent > before {
            self.counts
                .note(sock, x.receiving(), x.sent - before, x.sent, now.mono);
            session.on_data_progress(x.sent, now);
        }
        self.wake = None;
        self.wait = match step {
            Step::Wait(t) => {
                self.wake = Some(t);
                Wait::Timer
            }
            Step::Linger(t) => {
                self.wake = Some(t);
                Wait::Readable
            }
            Step::Blocked => Wait::Writable,
            Step::Readable => Wait::Readable,
            Step::Pending => Wait::Mover,
            Step::Session => Wait::Session,
            Step::Done => {
                let sent = x.total();
                // An upload's end (a download's is shut already).
                finish_socket(sock);
                self.abort(mover);
                session.on_transfer_done(Ok(sent), now);
                return;
            }
            Step::Fail(e) => return self.fail(session, mover, e, now),
        };
    }

    /// Ends the transfer with `e`.
    fn fail(&mut self, session: &mut Session<Real>, mover: &mut M, e: TransferError, now: Now) {
        self.abort(mover);
        session.on_transfer_done(Err(e), now);
    }
}
