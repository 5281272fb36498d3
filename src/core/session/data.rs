//! The data connection as the session sees it: the passive listener or
//! active address set up for the next transfer, the transfer in progress,
//! and the engine's reports about it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use super::TransferError;
use super::{Action, DataConn, DataOut, Handles, Record, Session, Source, TlsFailure};
use super::{TransferKind, TransferRecord};
use crate::core::clock::Now;
use crate::core::proto::addr;
use crate::core::proto::reply::Code;
use crate::core::vpath::VPath;

/// Which reply a passive listener's address goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PassiveKind {
    Pasv,
    Epsv,
}

pub(super) enum Data {
    None,
    /// `Action::Listen` sent; waiting for `on_listening`.
    Listening(PassiveKind),
    /// A passive listener is ready for the next transfer; closed if no
    /// transfer uses it by `deadline` (an unused listener holds a port).
    Passive {
        deadline: Instant,
    },
    /// PORT/EPRT accepted: connect this way for the next transfer.
    Active(DataConn),
    Transfer(Box<Transfer>),
}

impl Data {
    pub(super) fn busy(&self) -> bool {
        matches!(self, Data::Listening(_) | Data::Transfer(_))
    }

    pub(super) fn in_transfer(&self) -> bool {
        matches!(self, Data::Transfer(_))
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        match self {
            Data::Passive { deadline } => Some(*deadline),
            Data::Transfer(t) => Some(t.deadline),
            _ => None,
        }
    }
}

/// A transfer in progress.
pub(super) struct Transfer {
    pub(super) kind: TransferKind,
    pub(super) path: VPath,
    ascii: bool,
    /// The 150 text, sent once the data connection is up.
    opening: String,
    pub(super) connected: bool,
    /// Output bytes, up to the end of the 150, not yet written: data
    /// waits for them (RFC 959: the 1yz reply comes before the data).
    unannounced: usize,
    pub(super) sent: u64,
    /// The client's acknowledgements so far, as last sampled.
    acked: u64,
    pub(super) started: Instant,
    /// When the transfer counts as stalled: the data timeout after the
    /// last sign of progress.
    deadline: Instant,
}

impl<H: Handles> Session<H> {
    /// The outcome of `Action::Listen`: the bound address, or why not.
    pub fn on_listening(&mut self, result: std::io::Result<SocketAddr>, now: Now) {
        let Data::Listening(kind) = self.data else {
            return;
        };
        match result {
            Ok(bound) => {
                let deadline = now.mono + self.config.data_timeout;
                self.data = Data::Passive { deadline };
                match kind {
                    PassiveKind::Epsv => {
                        self.reply(Code::ExtPassive, addr::epsv_text(bound.port()));
                    }
                    PassiveKind::Pasv => match self.pasv_advertised(bound.ip()) {
                        Some(ip) => self.reply(Code::Passive, addr::pasv_text(ip, bound.port())),
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
    /// engine closes any other and keeps waiting.
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
    /// written (RFC 959), or a small file would reach the client, data
    /// connection closed, before the reply announcing it. (That the 226
    /// does not follow the 150 into the same read of a client, which
    /// aria2 mishandles, is the engine's part: it waits for the client to
    /// close the data connection.)
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
            if t.kind == TransferKind::Stor {
                self.upload_progress(total, now);
            }
        }
    }

    /// The data connection's peer has acknowledged `acked` bytes (the
    /// kernel's count, sampled by the engine when the deadline comes). A
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

    /// Whether an engine should sample the data connection's
    /// acknowledgements now, for [`Session::on_data_acked`]: a transfer's
    /// deadline has come.
    pub fn wants_data_acked(&self, now: Now) -> bool {
        matches!(&self.data, Data::Transfer(t) if t.connected && now.mono >= t.deadline)
    }

    /// What there is to send of a `Source::Stream` transfer.
    pub fn data_output(&self) -> DataOut<'_> {
        if !self.data_out.is_empty() {
            DataOut::Bytes(&self.data_out)
        } else if self.listing.as_ref().is_some_and(|l| l.to_data()) {
            DataOut::Wait
        } else {
            DataOut::End
        }
    }

    /// `n` bytes of [`Session::data_output`] were sent.
    pub fn consume_data(&mut self, n: usize) {
        self.data_out.drain(..n.min(self.data_out.len()));
        if self.data_out.is_empty() {
            self.data_out = Vec::new();
            let now = self.last_now;
            self.continue_listing(now);
        }
    }

    /// The current transfer ended: all `Ok(bytes)` sent and the data
    /// connection closed, or failed.
    pub fn on_transfer_done(&mut self, result: Result<u64, TransferError>, now: Now) {
        let kind = match &self.data {
            Data::Transfer(t) => t.kind,
            _ => return,
        };
        if let (TransferKind::Stor, Ok(stored)) = (kind, &result) {
            // Received, not yet stored: the 226 waits for the commit.
            return self.upload_received(*stored, now);
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
            Err(TransferError::TooLarge) => (
                Code::StorageExceeded,
                "Upload larger than this server takes; nothing was stored.",
                "too-large",
            ),
            Err(TransferError::NoSpace) => (
                Code::NoStorage,
                "Insufficient storage space; nothing was stored.",
                "no-space",
            ),
            Err(TransferError::Sink(_)) => (
                Code::LocalError,
                "Write error; nothing was stored.",
                "write-error",
            ),
            // vsftpd's answer: what FTPS clients know to read.
            Err(TransferError::Tls(TlsFailure::NotResumed)) => (
                Code::NetProtocol,
                "TLS on the data connection must resume the control connection's session; refused.",
                "tls-not-resumed",
            ),
            Err(TransferError::Tls(TlsFailure::Handshake)) => (
                Code::CantOpenData,
                "TLS handshake on the data connection failed.",
                "tls-handshake",
            ),
            Err(TransferError::Tls(TlsFailure::Broken)) => (
                Code::TransferAborted,
                "TLS error on the data connection; transfer aborted.",
                "tls-error",
            ),
            Err(TransferError::Tls(TlsFailure::Truncated)) => (
                Code::TransferAborted,
                "Data connection closed without TLS close_notify (truncated?); nothing was stored.",
                "tls-truncated",
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

    /// Acts on the data connection's deadlines; whether it replied.
    pub(super) fn data_tick(&mut self, now: Now) -> bool {
        match &self.data {
            Data::Passive { deadline } if now.mono >= *deadline => {
                // Unused for the data timeout: give the port back.
                self.data = Data::None;
                self.actions.push_back(Action::AbortData);
                false
            }
            Data::Transfer(t) if now.mono >= t.deadline => {
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
                true
            }
            _ => false,
        }
    }

    /// The outcome of the transfer in progress, with `sent` so far.
    pub(super) fn transfer_status(&self) -> Option<(&VPath, u64, TransferKind)> {
        match &self.data {
            Data::Transfer(t) => Some((&t.path, t.sent, t.kind)),
            _ => None,
        }
    }

    /// Starts a transfer: the data connection comes from `conn`, `source`
    /// is sent over it, `opening` is the 150's text.
    pub(super) fn start_transfer(
        &mut self,
        conn: DataConn,
        source: Source<H>,
        kind: TransferKind,
        path: VPath,
        opening: String,
        now: Now,
    ) {
        let ascii = match &source {
            Source::File { ascii, .. } | Source::Upload { ascii, .. } => *ascii,
            Source::Stream => true,
        };
        self.data = Data::Transfer(Box::new(Transfer {
            kind,
            path,
            ascii,
            opening,
            connected: false,
            sent: 0,
            acked: 0,
            unannounced: 0,
            started: now.mono,
            deadline: now.mono + self.config.data_timeout,
        }));
        self.actions.push_back(Action::Transfer { conn, source });
    }

    /// Extends the transfer's deadline: its source made progress (a
    /// directory batch arrived) though no byte was sent yet.
    pub(super) fn transfer_alive(&mut self, now: Now) {
        let timeout = self.config.data_timeout;
        if let Data::Transfer(t) = &mut self.data {
            t.deadline = t.deadline.max(now.mono + timeout);
        }
    }

    /// `n` bytes of the control output were written: the 150 may be out.
    pub(super) fn data_announced(&mut self, n: usize) {
        if let Data::Transfer(t) = &mut self.data {
            t.unannounced = t.unannounced.saturating_sub(n);
        }
    }

    /// The data connection the next transfer would use, or a 425 when
    /// none was set up. Checked before the file or directory is opened.
    pub(super) fn data_conn(&mut self) -> Option<DataConn> {
        match self.data {
            Data::Passive { .. } => Some(DataConn::Passive),
            Data::Active(conn) => Some(conn),
            _ => {
                self.reply(Code::CantOpenData, "Use PASV, EPSV, PORT or EPRT first.");
                None
            }
        }
    }

    /// Forgets any listener or active address (a new PASV/PORT replaces it).
    pub(super) fn drop_data(&mut self) {
        if matches!(self.data, Data::Passive { .. } | Data::Listening(_)) {
            self.actions.push_back(Action::AbortData);
        }
        self.data = Data::None;
    }

    /// Ends the transfer in progress (if any) without a reply, logging it
    /// with `outcome`.
    pub(super) fn end_transfer(&mut self, outcome: &'static str, now: Now) {
        if matches!(self.data, Data::Transfer(_)) {
            self.finish_transfer(outcome, now);
        }
    }

    pub(super) fn finish_transfer(&mut self, outcome: &'static str, now: Now) {
        let Some(t) = self.take_transfer() else {
            return;
        };
        if t.kind == TransferKind::Stor {
            // Whatever ended it, an upload not stored leaves nothing.
            self.discard_upload();
        }
        self.log_transfer(*t, outcome, now);
    }

    /// Takes the transfer in progress out, releasing its data connection.
    pub(super) fn take_transfer(&mut self) -> Option<Box<Transfer>> {
        let Data::Transfer(t) = std::mem::replace(&mut self.data, Data::None) else {
            return None;
        };
        // A listing for the data connection ends with it.
        if self.listing.as_ref().is_some_and(|l| l.to_data()) {
            self.listing = None;
        }
        self.data_out = Vec::new();
        // The listener or socket is spent either way: release it.
        self.actions.push_back(Action::AbortData);
        Some(t)
    }

    /// The log record of transfer `t`, which ended with `outcome`.
    pub(super) fn log_transfer(&mut self, t: Transfer, outcome: &'static str, now: Now) {
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

    /// The IPv4 address PASV advertises: the first `--pasv-address` rule for
    /// the client's network, else the listener's own address.
    fn pasv_advertised(&self, bound: std::net::IpAddr) -> Option<Ipv4Addr> {
        let peer = self.ends.peer.map(|p| p.ip());
        let chosen = peer
            .and_then(|p| self.config.pasv_address.iter().find(|r| r.matches(p)))
            .map(|r| r.advertise)
            .unwrap_or(bound);
        match chosen.to_canonical() {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        }
    }
}
