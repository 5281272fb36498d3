//! What a session is doing, for a status listing (`aftpd-status`), and
//! what it counts for the metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::data::Data;
use super::{Handles, Login, Session, TransferKind};
use crate::core::proto::telnet::Line;
use crate::core::tally::{Tally, Verb};
use crate::core::vpath::VPath;

/// A session at a glance.
#[derive(Debug)]
pub struct SessionStatus<'a> {
    pub peer: Option<SocketAddr>,
    /// When the control connection was accepted.
    pub started: Instant,
    pub logged_in: bool,
    /// When the last command was read (or the last transfer ended).
    pub active: Instant,
    /// The verb of the last command (`-` before any).
    pub verb: &'static str,
    pub transfer: Option<TransferStatus<'a>>,
}

/// The transfer in progress.
#[derive(Debug)]
pub struct TransferStatus<'a> {
    pub kind: TransferKind,
    pub path: &'a VPath,
    /// Bytes sent so far.
    pub sent: u64,
    pub started: Instant,
    /// Whether the data connection is up.
    pub connected: bool,
}

impl<H: Handles> Session<H> {
    /// What the session is doing.
    pub fn status(&self) -> SessionStatus<'_> {
        let transfer = match &self.data {
            Data::Transfer(t) => Some(TransferStatus {
                kind: t.kind,
                path: &t.path,
                sent: t.sent,
                started: t.started,
                connected: t.connected,
            }),
            _ => None,
        };
        SessionStatus {
            peer: self.ends.peer,
            started: self.started,
            logged_in: self.login == Login::LoggedIn,
            // Every command and the end of every transfer set the idle
            // deadline this far ahead.
            active: self
                .idle_deadline
                .checked_sub(self.config.idle_timeout)
                .unwrap_or(self.started)
                .max(self.started),
            verb: self.verb.name(),
            transfer,
        }
    }

    /// Counts this session's commands and listings in `tally`.
    pub fn set_tally(&mut self, tally: Arc<Tally>) {
        self.tally = Some(tally);
    }

    /// A command line is about to be executed.
    pub(super) fn counted(&mut self, line: &Line) {
        self.verb = match line {
            Line::Text(t) => Verb::of(t),
            Line::TooLong => Verb::of(b""),
        };
        if let Some(t) = &self.tally {
            t.command(self.verb);
        }
    }
}
