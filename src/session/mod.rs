//! The session state machine: login, working directory, transfer
//! parameters, the pending data connection, and what to reply. Sans-IO:
//! bytes and events in, reply bytes and [`Action`]s out, time as an input.

mod action;

pub use action::{Action, DataConn, Record, Source, TransferError, TransferKind, TransferRecord};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::clock::Now;
use crate::config::SessionConfig;
use crate::fs::Root;

/// The two ends of the control connection, where known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Endpoints {
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
}

/// One FTP session.
pub struct Session {
    _todo: (),
}

impl Session {
    /// A new session; queues the greeting (unless disabled) and a
    /// `Record::SessionStart`.
    pub fn new(config: Arc<SessionConfig>, root: Arc<Root>, ends: Endpoints, now: Now) -> Session {
        let _ = (config, root, ends, now);
        todo!()
    }

    /// Bytes read from the control connection.
    pub fn on_control(&mut self, input: &[u8], now: Now) {
        let _ = (input, now);
        todo!()
    }

    /// The client closed the control connection (or it failed).
    pub fn on_control_eof(&mut self, now: Now) {
        let _ = now;
        todo!()
    }

    /// False while enough input or output is queued: stop reading the
    /// control connection until the queue drains.
    pub fn wants_control_input(&self) -> bool {
        todo!()
    }

    /// Reply bytes waiting to be written on the control connection.
    pub fn output(&self) -> &[u8] {
        todo!()
    }

    /// `n` bytes of [`Session::output`] were written.
    pub fn consume_output(&mut self, n: usize) {
        let _ = n;
        todo!()
    }

    /// The next request for the driver, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        todo!()
    }

    /// The outcome of `Action::Listen`: the bound address, or why not.
    pub fn on_listening(&mut self, result: std::io::Result<SocketAddr>, now: Now) {
        let _ = (result, now);
        todo!()
    }

    /// Whether a passive data connection from `peer` may be accepted; the
    /// driver closes any other and keeps waiting.
    pub fn data_peer_allowed(&self, peer: &SocketAddr) -> bool {
        let _ = peer;
        todo!()
    }

    /// The data connection for the current transfer is established.
    pub fn on_data_connected(&mut self, now: Now) {
        let _ = now;
        todo!()
    }

    /// `total` bytes of the current transfer have been sent so far.
    pub fn on_data_progress(&mut self, total: u64, now: Now) {
        let _ = (total, now);
        todo!()
    }

    /// The current transfer ended: all `Ok(bytes)` sent and the data
    /// connection closed, or failed.
    pub fn on_transfer_done(&mut self, result: Result<u64, TransferError>, now: Now) {
        let _ = (result, now);
        todo!()
    }

    /// Time has passed; acts on expired deadlines.
    pub fn on_tick(&mut self, now: Now) {
        let _ = now;
        todo!()
    }

    /// When `on_tick` must be called next, at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        todo!()
    }

    /// The session has ended: once the output is written, close it.
    pub fn is_closed(&self) -> bool {
        todo!()
    }
}
