//! The session state machine: login, working directory, transfer
//! parameters, the pending data connection, and what to reply. Sans-IO:
//! bytes and events in, reply bytes and [`Action`]s out, time as an input.
//! The filesystem is asked through [`Action::Fs`] requests; their answers
//! come back through [`Session::on_fs`].

mod action;
mod commands;
mod data;
mod host;
mod listing;
mod messages;
mod pending;
mod status;
mod tls;
mod upload;

pub use action::{
    Action, Created, DataConn, DataOut, FsAnswer, FsRequest, Handles, HostTree, Listed, Record,
    Source, TlsFailure, TransferError, TransferKind, TransferRecord, Tree, UploadName,
};
pub use status::{SessionStatus, TransferStatus};
pub use upload::{NAME_MAX, name_allowed};

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use self::data::Data;
use self::listing::Listing;
use self::messages::Shown;
use self::pending::Pending;
use self::tls::Security;
use self::upload::Uploading;
use crate::core::clock::Now;
use crate::core::config::SessionConfig;
use crate::core::listing::Facts;
use crate::core::proto::command::{self, Command, ParseError};
use crate::core::proto::reply::{self, Code};
use crate::core::proto::telnet::{Line, LineReader};
use crate::core::tally::{Tally, Verb};
use crate::core::vpath::VPath;

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
/// Output queued at or beyond this stops executing commands (and reading
/// the control connection): a client that never reads its replies makes
/// the session hold at most this much, plus one reply.
const OUTPUT_HIGH_WATER: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    /// Waiting for USER (HOST still allowed).
    Start,
    /// USER given, waiting for PASS.
    User,
    LoggedIn,
}

/// One FTP session, over handles of type `H` (see [`Handles`]).
pub struct Session<H: Handles> {
    config: Arc<SessionConfig>,
    ends: Endpoints,
    started: Instant,
    input: LineReader,
    out: Vec<u8>,
    /// Listing bytes for the data connection (`Source::Stream`).
    data_out: Vec<u8>,
    /// A listing being produced, for the data connection or for STAT.
    listing: Option<Box<Listing<H>>>,
    /// A command waiting for the answer to its filesystem request.
    pending: Option<Box<Pending>>,
    /// The upload being received or committed.
    upload: Option<Box<Uploading<H>>>,
    actions: VecDeque<Action<H>>,
    login: Login,
    cwd: VPath,
    ascii: bool,
    rest: u64,
    facts: Facts,
    epsv_all: bool,
    /// FTPS: whether the control connection is protected, PBSZ, PROT.
    security: Security,
    data: Data,
    idle_deadline: Instant,
    /// The time of the last event, for work resumed by `consume_output`.
    last_now: Now,
    /// The id of the next filesystem request.
    next_fs_id: u32,
    /// The tree the filesystem requests are for (HOST may change it).
    tree: Tree<H>,
    /// The directories whose `.message` was shown.
    shown: Shown,
    closed: bool,
    /// The verb of the last command, for a status listing.
    verb: Verb,
    /// The worker's counts, for the metrics (`None`: not counted).
    tally: Option<Arc<Tally>>,
}

impl<H: Handles> Session<H> {
    /// A new session; queues the greeting (unless disabled) and a
    /// `Record::SessionStart`.
    pub fn new(config: Arc<SessionConfig>, ends: Endpoints, now: Now) -> Session<H> {
        let ends = ends.canonical();
        let mut s = Session {
            idle_deadline: now.mono + config.idle_timeout,
            config,
            ends,
            started: now.mono,
            input: LineReader::new(),
            out: Vec::new(),
            data_out: Vec::new(),
            listing: None,
            pending: None,
            upload: None,
            actions: VecDeque::new(),
            login: Login::Start,
            cwd: VPath::root(),
            ascii: true,
            rest: 0,
            facts: Facts::all(),
            epsv_all: false,
            security: Security::default(),
            data: Data::None,
            last_now: now,
            next_fs_id: 0,
            tree: Tree::Default,
            shown: Shown::default(),
            closed: false,
            verb: Verb::NONE,
            tally: None,
        };
        s.actions
            .push_back(Action::Log(Record::SessionStart { peer: ends.peer }));
        // Implicit TLS: the greeting already goes inside it.
        s.start_implicit_tls();
        s.greet();
        s
    }

    /// Bytes read from the control connection.
    pub fn on_control(&mut self, input: &[u8], now: Now) {
        if self.closed || self.tls_starting() {
            // After AUTH TLS, nothing sent in clear is a command.
            return;
        }
        if self.tls_early_input(input) {
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
        self.end_transfer("control-closed", now);
        self.close("eof", now);
    }

    /// False while enough input or output is queued: stop reading the
    /// control connection until the queue drains.
    pub fn wants_control_input(&self) -> bool {
        !self.closed
            && self.input.buffered() < INPUT_HIGH_WATER
            && self.out.len() < OUTPUT_HIGH_WATER
    }

    /// Reply bytes waiting to be written on the control connection.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`Session::output`] were written.
    pub fn consume_output(&mut self, n: usize) {
        self.data_announced(n);
        self.tls_announced(n);
        self.out.drain(..n.min(self.out.len()));
        if self.out.is_empty() {
            // An idle session holds no buffers: thousands of them wait.
            self.out = Vec::new();
        }
        if self.out.len() < OUTPUT_HIGH_WATER / 2 {
            let now = self.last_now;
            self.continue_listing(now);
            // Commands held back by the output, or by a STAT listing.
            if !self.busy() && self.input.peek().is_some() {
                self.process(now);
            }
        }
    }

    /// The next request for the engine, in order.
    pub fn poll_action(&mut self) -> Option<Action<H>> {
        let a = self.actions.pop_front();
        if self.actions.is_empty() && self.actions.capacity() > 0 {
            self.actions = VecDeque::new();
        }
        a
    }

    /// Whether actions wait for [`Session::poll_action`].
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The answer to filesystem request `id`. An answer to a request the
    /// session no longer waits for (it timed out, or the transfer it was
    /// for ended) is dropped, and with it whatever it opened.
    pub fn on_fs(&mut self, id: u32, answer: FsAnswer<H>, now: Now) {
        if self.closed {
            return;
        }
        if self.pending.as_ref().is_some_and(|p| p.id == id) {
            if let Some(p) = self.pending.take() {
                self.resume(p.then, answer, now);
            }
            self.process(now);
        } else if self.on_space(id, &answer, now) {
            self.process(now);
        } else if let FsAnswer::ReadDir(dir, entries, result) = answer
            && self.listing.as_ref().is_some_and(|l| l.reading(id))
        {
            self.on_read_dir(dir, entries, result, now);
            if self.listing.is_none() {
                self.process(now);
            }
        }
    }

    /// Time has passed; acts on expired deadlines.
    pub fn on_tick(&mut self, now: Now) {
        if self.closed {
            return;
        }
        self.last_now = now;
        if self
            .pending
            .as_ref()
            .is_some_and(|p| now.mono >= p.deadline)
        {
            if let Some(p) = self.pending.take() {
                self.gave_up(p.then, now);
            }
            self.idle_deadline = now.mono + self.config.idle_timeout;
            self.process(now);
            return;
        }
        self.space_check_expired(now);
        if self.listing_timed_out(now) {
            return;
        }
        if self.data_tick(now) {
            self.process(now);
            return;
        }
        if self.busy() {
            return;
        }
        if now.mono >= self.idle_deadline {
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
        let busy = [
            self.pending.as_ref().map(|p| p.deadline),
            self.listing.as_ref().and_then(|l| l.deadline()),
            self.data.deadline(),
            self.space_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        match busy {
            Some(d) if self.busy() => Some(d),
            Some(d) => Some(d.min(self.idle_deadline)),
            None if self.busy() => None,
            None => Some(self.idle_deadline),
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

    /// A new filesystem request, answered through `on_fs`.
    fn request(&mut self, request: FsRequest<H>) -> u32 {
        let id = self.next_fs_id;
        self.next_fs_id = self.next_fs_id.wrapping_add(1);
        let tree = self.tree.clone();
        self.actions.push_back(Action::Fs { id, tree, request });
        id
    }

    /// Whether commands must wait: a listener being opened, a transfer in
    /// progress (only ABOR and STAT go through), a filesystem answer, a
    /// STAT listing being sent.
    fn busy(&self) -> bool {
        self.data.busy() || self.listing.is_some() || self.pending.is_some()
    }

    fn process(&mut self, now: Now) {
        self.last_now = now;
        while !self.closed {
            let Some(line) = self.input.peek() else {
                break;
            };
            if self.out.len() >= OUTPUT_HIGH_WATER || self.tls_starting() {
                break;
            }
            if self.busy() {
                // RFC 959 §4.1.3: ABOR and STAT are served during a transfer.
                let urgent = match line {
                    Line::Text(t) => matches!(
                        command::parse(t),
                        Ok(Command::Abor) | Ok(Command::Stat(None))
                    ),
                    Line::TooLong => false,
                };
                if !urgent || !self.data.in_transfer() {
                    break;
                }
            }
            let Some(line) = self.input.next_line() else {
                break;
            };
            self.idle_deadline = now.mono + self.config.idle_timeout;
            self.counted(&line);
            match line {
                Line::TooLong => self.reply(Code::Unknown, "Command line too long."),
                Line::Text(text) => self.dispatch(&text, now),
            }
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
        if self.tls_refuses(&cmd) {
            return;
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

    fn close(&mut self, reason: &'static str, now: Now) {
        if self.closed {
            return;
        }
        // A STAT listing cut short still ends its multi-line reply, for a
        // client that only half-closed the connection.
        if self.listing.take().is_some_and(|l| !l.to_data()) {
            self.reply(Code::FileStatus, "End of status (cut short).");
        }
        self.closed = true;
        if let Some(p) = self.pending.take() {
            self.pending_dropped(p.then, now);
        }
        self.discard_upload();
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
}

#[cfg(test)]
mod tests;
