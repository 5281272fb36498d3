//! The session state machine: login, working directory, transfer
//! parameters, the pending data connection, and what to reply. Sans-IO:
//! bytes and events in, reply bytes and [`Action`]s out, time as an input.

mod action;
mod commands;

pub use action::{Action, DataConn, Record, Source, TransferError, TransferKind, TransferRecord};

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::clock::Now;
use crate::core::config::SessionConfig;
use crate::core::listing::Facts;
use crate::core::proto::command::{self, Command, ParseError};
use crate::core::proto::reply::{self, Code};
use crate::core::proto::telnet::{Line, LineReader};
use crate::core::vpath::VPath;
use crate::fs::Root;
use crate::fs::dir::Lister;

/// The two ends of the control connection, where known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Endpoints {
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
}

impl Endpoints {
    /// The same ends with IPv4-mapped IPv6 addresses written as IPv4
    /// ([`crate::core::proto::addr::canonical`]).
    pub fn canonical(self) -> Endpoints {
        use crate::core::proto::addr::canonical;
        Endpoints {
            local: self.local.map(canonical),
            peer: self.peer.map(canonical),
        }
    }
}

/// Input queued beyond this stops reading the control connection.
const INPUT_HIGH_WATER: usize = 8 * 1024;
/// Output queued beyond this stops reading the control connection.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// How much of a STAT listing is formatted at a time.
const STAT_BATCH: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    /// Waiting for USER (HOST still allowed).
    Start,
    /// USER given, waiting for PASS.
    User,
    LoggedIn,
}

/// Which reply a passive listener's address goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassiveKind {
    Pasv,
    Epsv,
}

/// The data connection as the session sees it.
enum Data {
    None,
    /// `Action::Listen` sent; waiting for `on_listening`.
    Listening(PassiveKind),
    /// A passive listener is ready for the next transfer.
    Passive,
    /// PORT/EPRT accepted: connect this way for the next transfer.
    Active(DataConn),
    Transfer(Box<Transfer>),
}

/// A transfer in progress.
struct Transfer {
    kind: TransferKind,
    path: VPath,
    ascii: bool,
    /// The 150 text, sent once the data connection is up.
    opening: String,
    connected: bool,
    /// Output bytes, up to the end of the 150, not yet written: data
    /// waits for them (RFC 959: the 1yz reply comes before the data).
    unannounced: usize,
    sent: u64,
    /// The client's acknowledgements so far, as last sampled.
    acked: u64,
    started: Instant,
    /// When the transfer counts as stalled: the data timeout after the
    /// last sign of progress.
    deadline: Instant,
}

/// A STAT listing being written on the control connection.
struct ControlListing {
    lister: Lister,
}

/// One FTP session.
pub struct Session {
    config: Arc<SessionConfig>,
    root: Arc<Root>,
    ends: Endpoints,
    started: Instant,
    input: LineReader,
    out: Vec<u8>,
    stat_listing: Option<Box<ControlListing>>,
    actions: VecDeque<Action>,
    login: Login,
    cwd: VPath,
    ascii: bool,
    rest: u64,
    facts: Facts,
    epsv_all: bool,
    data: Data,
    idle_deadline: Instant,
    /// The time of the last event, for work resumed by `consume_output`.
    last_now: Now,
    closed: bool,
}

impl Session {
    /// A new session; queues the greeting (unless disabled) and a
    /// `Record::SessionStart`.
    pub fn new(config: Arc<SessionConfig>, root: Arc<Root>, ends: Endpoints, now: Now) -> Session {
        let ends = ends.canonical();
        let mut s = Session {
            idle_deadline: now.mono + config.idle_timeout,
            config,
            root,
            ends,
            started: now.mono,
            input: LineReader::new(),
            out: Vec::new(),
            stat_listing: None,
            actions: VecDeque::new(),
            login: Login::Start,
            cwd: VPath::root(),
            ascii: true,
            rest: 0,
            facts: Facts::all(),
            epsv_all: false,
            data: Data::None,
            last_now: now,
            closed: false,
        };
        s.actions
            .push_back(Action::Log(Record::SessionStart { peer: ends.peer }));
        if s.config.greeting {
            s.reply(Code::Ready, "aftpd: anonymous read-only FTP server ready.");
        }
        s
    }

    /// Bytes read from the control connection.
    pub fn on_control(&mut self, input: &[u8], now: Now) {
        if self.closed {
            return;
        }
        self.input.feed(input);
        let refusals = self.input.take_replies();
        self.out.extend_from_slice(&refusals);
        self.process(now);
    }

    /// The client closed the control connection (or it failed).
    pub fn on_control_eof(&mut self, now: Now) {
        if self.closed {
            return;
        }
        self.end_transfer("control connection closed", now);
        self.close("eof", now);
    }

    /// False while enough input or output is queued: stop reading the
    /// control connection until the queue drains.
    pub fn wants_control_input(&self) -> bool {
        !self.closed
            && self.input.buffered() < INPUT_HIGH_WATER
            && self.out.len() < OUTPUT_HIGH_WATER
            && self.stat_listing.is_none()
    }

    /// Reply bytes waiting to be written on the control connection.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`Session::output`] were written.
    pub fn consume_output(&mut self, n: usize) {
        if let Data::Transfer(t) = &mut self.data {
            t.unannounced = t.unannounced.saturating_sub(n);
        }
        self.out.drain(..n.min(self.out.len()));
        if self.out.is_empty() {
            self.out = Vec::new();
            if self.stat_listing.is_some() {
                self.continue_stat_listing();
                if self.stat_listing.is_none() {
                    // Commands that arrived behind STAT can go on now.
                    self.process_pending();
                }
            }
        }
    }

    /// The next request for the driver, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        let a = self.actions.pop_front();
        // An idle session holds no buffers: thousands of them wait at once.
        if self.actions.is_empty() && self.actions.capacity() > 0 {
            self.actions = VecDeque::new();
        }
        a
    }

    /// The outcome of `Action::Listen`: the bound address, or why not.
    pub fn on_listening(&mut self, result: std::io::Result<SocketAddr>, now: Now) {
        let Data::Listening(kind) = self.data else {
            return;
        };
        match result {
            Ok(addr) => {
                self.data = Data::Passive;
                match kind {
                    PassiveKind::Epsv => {
                        self.reply(
                            Code::ExtPassive,
                            crate::core::proto::addr::epsv_text(addr.port()),
                        );
                    }
                    PassiveKind::Pasv => match self.pasv_advertised(addr.ip()) {
                        Some(ip) => {
                            self.reply(
                                Code::Passive,
                                crate::core::proto::addr::pasv_text(ip, addr.port()),
                            );
                        }
                        None => {
                            self.data = Data::None;
                            self.actions.push_back(Action::AbortData);
                            self.reply(Code::NetProtocol, "PASV needs IPv4: use EPSV.");
                        }
                    },
                }
            }
            Err(_) => {
                self.data = Data::None;
                self.reply(Code::CantOpenData, "Cannot open a passive data port.");
            }
        }
        self.process(now);
    }

    /// Whether a passive data connection from `peer` may be accepted; the
    /// driver closes any other and keeps waiting.
    pub fn data_peer_allowed(&self, peer: &SocketAddr) -> bool {
        self.ends.peer.map(|p| p.ip()) == Some(peer.ip().to_canonical())
    }

    /// The data connection for the current transfer is established.
    pub fn on_data_connected(&mut self, now: Now) {
        let timeout = self.config.data_timeout;
        let Data::Transfer(t) = &mut self.data else {
            return;
        };
        if t.connected {
            return;
        }
        t.connected = true;
        t.deadline = now.mono + timeout;
        let text = std::mem::take(&mut t.opening);
        self.reply(Code::Opening, text);
        if let Data::Transfer(t) = &mut self.data {
            t.unannounced = self.out.len();
        }
    }

    /// Whether the transfer's data may be sent: not before its 150 is
    /// written, or a small file would reach the client, data connection
    /// closed, before the reply announcing it (clients such as aria2 then
    /// read 150 and 226 at once and wait for a reply that never comes).
    pub fn data_may_flow(&self) -> bool {
        !matches!(&self.data, Data::Transfer(t) if t.unannounced > 0)
    }

    /// `total` bytes of the current transfer have been sent so far.
    pub fn on_data_progress(&mut self, total: u64, now: Now) {
        let timeout = self.config.data_timeout;
        if let Data::Transfer(t) = &mut self.data
            && total > t.sent
        {
            t.sent = total;
            t.deadline = now.mono + timeout;
        }
    }

    /// The data connection's peer has acknowledged `acked` bytes (the
    /// kernel's count, sampled by the driver when the deadline comes). A
    /// client still receiving is not stalled, even while a send buffer
    /// the kernel grew to megabytes is too full to take another write.
    pub fn on_data_acked(&mut self, acked: u64, now: Now) {
        let timeout = self.config.data_timeout;
        if let Data::Transfer(t) = &mut self.data
            && t.connected
            && acked > t.acked
        {
            t.acked = acked;
            t.deadline = now.mono + timeout;
        }
    }

    /// Whether a driver should sample the data connection's
    /// acknowledgements now, for [`Session::on_data_acked`]: a
    /// transfer's deadline has come.
    pub fn wants_data_acked(&self, now: Now) -> bool {
        matches!(&self.data, Data::Transfer(t) if t.connected && now.mono >= t.deadline)
    }

    /// The current transfer ended: all `Ok(bytes)` sent and the data
    /// connection closed, or failed.
    pub fn on_transfer_done(&mut self, result: Result<u64, TransferError>, now: Now) {
        if !matches!(self.data, Data::Transfer(_)) {
            return;
        }
        let (code, text, outcome) = match &result {
            Ok(_) => (Code::TransferDone, "Transfer complete.", "ok"),
            Err(TransferError::Connect(_)) => (
                Code::CantOpenData,
                "Cannot open data connection.",
                "no-connection",
            ),
            Err(TransferError::Connection(_)) => (
                Code::TransferAborted,
                "Data connection closed; transfer aborted.",
                "connection-lost",
            ),
            Err(TransferError::Shrunk) => (
                Code::LocalError,
                "File shrank while being sent; transfer aborted.",
                "shrunk",
            ),
            Err(TransferError::Source(_)) => (
                Code::LocalError,
                "Read error; transfer aborted.",
                "read-error",
            ),
        };
        if let Ok(n) = result
            && let Data::Transfer(t) = &mut self.data
        {
            t.sent = n;
        }
        self.finish_transfer(outcome, now);
        self.reply(code, text);
        self.process(now);
    }

    /// Time has passed; acts on expired deadlines.
    pub fn on_tick(&mut self, now: Now) {
        if self.closed {
            return;
        }
        if let Data::Transfer(t) = &self.data {
            if now.mono >= t.deadline {
                let connected = t.connected;
                self.finish_transfer("timeout", now);
                if connected {
                    self.reply(
                        Code::TransferAborted,
                        "Data connection stalled; transfer aborted.",
                    );
                } else {
                    self.reply(
                        Code::CantOpenData,
                        "Data connection not established in time.",
                    );
                }
                self.process(now);
            }
        } else if now.mono >= self.idle_deadline {
            self.reply(
                Code::Unavailable,
                "Idle timeout: closing control connection.",
            );
            self.close("timeout", now);
        }
    }

    /// When `on_tick` must be called next, at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        match &self.data {
            Data::Transfer(t) => Some(t.deadline),
            _ => Some(self.idle_deadline),
        }
    }

    /// The session has ended: once the output is written, close it.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    // ---- internals ----

    fn reply(&mut self, code: Code, text: impl AsRef<[u8]>) {
        reply::single(&mut self.out, code, text);
    }

    /// Whether commands must wait: a listener being opened, a transfer in
    /// progress (only ABOR and STAT go through), a STAT listing being sent.
    fn busy(&self) -> bool {
        matches!(self.data, Data::Listening(_) | Data::Transfer(_)) || self.stat_listing.is_some()
    }

    fn process(&mut self, now: Now) {
        self.last_now = now;
        while !self.closed {
            let Some(line) = self.input.peek() else {
                break;
            };
            if self.busy() {
                // RFC 959 §4.1.3: ABOR and STAT are served during a transfer.
                let urgent = match line {
                    Line::Text(t) => matches!(
                        command::parse(t),
                        Ok(Command::Abor) | Ok(Command::Stat(None))
                    ),
                    Line::TooLong => false,
                };
                if !urgent || !matches!(self.data, Data::Transfer(_)) {
                    break;
                }
            }
            let Some(line) = self.input.next_line() else {
                break;
            };
            self.idle_deadline = now.mono + self.config.idle_timeout;
            match line {
                Line::TooLong => self.reply(Code::Unknown, "Command line too long."),
                Line::Text(text) => self.dispatch(&text, now),
            }
        }
    }

    /// Resumes command processing after a STAT listing drained, at the
    /// time of the last event (output draining carries no time).
    fn process_pending(&mut self) {
        if self.input.peek().is_some() {
            self.process(self.last_now);
        }
    }

    fn dispatch(&mut self, line: &[u8], now: Now) {
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(e) => return self.parse_error(e),
        };
        if self.login != Login::LoggedIn && !cmd.allowed_before_login() {
            return self.reply(Code::NotLoggedIn, "Please log in with USER and PASS.");
        }
        self.execute(cmd, now);
    }

    fn parse_error(&mut self, e: ParseError) {
        match e {
            ParseError::Unknown => self.reply(Code::Unknown, "Unknown command."),
            ParseError::Syntax(why) => self.reply(Code::BadArguments, why),
            ParseError::Unsupported(why) => self.reply(Code::BadParameter, why),
            ParseError::Protocol => {
                let which = match self.ends.local.map(|a| a.ip()) {
                    Some(IpAddr::V6(_)) => "Network protocol not supported, use (2)",
                    _ => "Network protocol not supported, use (1)",
                };
                self.reply(Code::NetProtocol, which)
            }
        }
    }

    /// Ends the transfer in progress (if any) without a reply, logging it
    /// with `outcome`.
    fn end_transfer(&mut self, outcome: &'static str, now: Now) {
        if matches!(self.data, Data::Transfer(_)) {
            self.finish_transfer(outcome, now);
        }
    }

    fn finish_transfer(&mut self, outcome: &'static str, now: Now) {
        let Data::Transfer(t) = std::mem::replace(&mut self.data, Data::None) else {
            return;
        };
        // The listener or socket is spent either way: release it.
        self.actions.push_back(Action::AbortData);
        self.actions
            .push_back(Action::Log(Record::Transfer(TransferRecord {
                peer: self.ends.peer,
                kind: t.kind,
                path: t.path,
                bytes: t.sent,
                duration: now.mono.saturating_duration_since(t.started),
                ascii: t.ascii,
                result: outcome,
            })));
        self.idle_deadline = now.mono + self.config.idle_timeout;
    }

    fn close(&mut self, reason: &'static str, now: Now) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.stat_listing = None;
        self.actions.push_back(Action::Log(Record::SessionEnd {
            peer: self.ends.peer,
            seconds: now
                .mono
                .saturating_duration_since(self.started)
                .as_secs_f64(),
            reason,
        }));
        self.actions.push_back(Action::Close);
    }

    fn continue_stat_listing(&mut self) {
        let Some(cl) = self.stat_listing.as_mut() else {
            return;
        };
        let mut batch = Vec::with_capacity(STAT_BATCH + 512);
        let done = match cl.lister.fill(&mut batch, STAT_BATCH) {
            Ok(done) => done,
            Err(_) => {
                self.stat_listing = None;
                self.reply(
                    Code::FileStatus,
                    "End of status (listing incomplete: read error).",
                );
                return;
            }
        };
        // Listing lines are already CRLF-terminated; indent any that could
        // pass for a reply's last line.
        for line in batch.split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\r\n").unwrap_or(line);
            reply::middle(&mut self.out, text);
        }
        if done {
            self.stat_listing = None;
            self.reply(Code::FileStatus, "End of status.");
        }
    }

    /// The IPv4 address PASV advertises: the first `--pasv-address` rule for
    /// the client's network, else the listener's own address.
    fn pasv_advertised(&self, bound: IpAddr) -> Option<std::net::Ipv4Addr> {
        let peer = self.ends.peer.map(|p| p.ip());
        let chosen = peer
            .and_then(|p| self.config.pasv_address.iter().find(|r| r.matches(p)))
            .map(|r| r.advertise)
            .unwrap_or(bound);
        match chosen.to_canonical() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }
    }

    fn data_timeout(&self) -> Duration {
        self.config.data_timeout
    }
}

#[cfg(test)]
mod tests;
