//! FTPS as the session sees it (RFC 4217 over RFC 2228): AUTH, PBSZ and
//! PROT, the policy (`--tls`), and what the engine is told. The engine
//! does the TLS itself; the core decides when the control connection
//! switches ([`Action::StartTls`]) and whether a transfer's data
//! connection is protected ([`Session::data_protected`]).

use super::{Action, Handles, Login, Session};
use crate::core::clock::Now;
use crate::core::config::TlsPolicy;
use crate::core::proto::command::Command;
use crate::core::proto::reply::Code;
use crate::core::proto::telnet::LineReader;

/// The control connection's protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Control {
    #[default]
    Clear,
    /// AUTH accepted: the 234 is being written, `until` more bytes of
    /// output; then [`Action::StartTls`].
    Starting {
        until: usize,
    },
    Protected,
}

/// FTPS state of a session.
#[derive(Debug, Default)]
pub(super) struct Security {
    control: Control,
    /// PBSZ accepted (RFC 2228: before PROT).
    pbsz: bool,
    /// PROT P in force: data connections speak TLS.
    private: bool,
}

impl<H: Handles> Session<H> {
    /// Whether the data connection of the transfer being started must
    /// speak TLS (PROT P over a protected control connection).
    pub fn data_protected(&self) -> bool {
        self.security.private && self.security.control == Control::Protected
    }

    /// Whether the control connection is protected (or about to be).
    pub fn control_protected(&self) -> bool {
        self.security.control != Control::Clear
    }

    /// TLS on the control connection failed (a bad handshake, an alert,
    /// a corrupt record): the session ends.
    pub fn on_control_tls_failed(&mut self, now: Now) {
        if self.closed {
            return;
        }
        self.end_transfer("control-closed", now);
        self.close("tls-error", now);
    }

    /// Implicit TLS: the control connection is protected from its first
    /// byte, and so are data connections (PROT P implied).
    pub(super) fn start_implicit_tls(&mut self) {
        if self.config.tls == TlsPolicy::Implicit {
            self.security = Security {
                control: Control::Protected,
                pbsz: true,
                private: true,
            };
            self.actions
                .push_back(Action::StartTls { early: Vec::new() });
        }
    }

    /// Input that came after the session asked for TLS and before the
    /// engine switched: TLS bytes, handed over with the request. Whether
    /// it was.
    pub(super) fn tls_early_input(&mut self, input: &[u8]) -> bool {
        match self
            .actions
            .iter_mut()
            .find(|a| matches!(a, Action::StartTls { .. }))
        {
            Some(Action::StartTls { early }) => {
                early.extend_from_slice(input);
                true
            }
            _ => false,
        }
    }

    /// Whether AUTH was accepted and the switch to TLS has not come yet:
    /// no command is read meanwhile.
    pub(super) fn tls_starting(&self) -> bool {
        matches!(self.security.control, Control::Starting { .. })
    }

    /// `n` bytes of output were written: once the 234 is out, the engine
    /// switches the control connection to TLS.
    pub(super) fn tls_announced(&mut self, n: usize) {
        if let Control::Starting { until } = &mut self.security.control {
            *until = until.saturating_sub(n);
            if *until == 0 {
                self.security.control = Control::Protected;
                self.actions
                    .push_back(Action::StartTls { early: Vec::new() });
            }
        }
    }

    /// Refuses what the policy forbids (`--tls required`): a login in
    /// clear (530), a data transfer without PROT P (521), downloads,
    /// listings and uploads alike. Whether it did.
    pub(super) fn tls_refuses(&mut self, cmd: &Command) -> bool {
        if self.config.tls != TlsPolicy::Required {
            return false;
        }
        match cmd {
            Command::User(_) | Command::Pass if !self.control_protected() => {
                self.reply(
                    Code::NotLoggedIn,
                    "TLS required: send AUTH TLS before logging in.",
                );
                true
            }
            Command::Retr(_)
            | Command::List(_)
            | Command::Nlst(_)
            | Command::Mlsd(_)
            | Command::Stor(_)
            | Command::Stou(_)
                if !self.data_protected() =>
            {
                self.reply(
                    Code::ProtRequired,
                    "Data connections must be protected: send PBSZ 0 and PROT P.",
                );
                true
            }
            _ => false,
        }
    }

    /// AUTH (RFC 2228 §3, RFC 4217 §4): TLS, or SSL and TLS-C, the names
    /// older clients use for it.
    pub(super) fn auth(&mut self, arg: Option<&[u8]>) {
        if !self.config.tls.enabled() {
            return self.reply(Code::NotImplemented, "AUTH not implemented.");
        }
        if self.security.control != Control::Clear {
            return self.reply(Code::BadSequence, "Already using TLS.");
        }
        let Some(arg) = arg else {
            return self.reply(Code::BadArguments, "AUTH needs a mechanism: AUTH TLS.");
        };
        if !matches!(
            arg.to_ascii_uppercase().as_slice(),
            b"TLS" | b"TLS-C" | b"SSL"
        ) {
            return self.reply(Code::BadParameter, "Unknown mechanism: use AUTH TLS.");
        }
        // RFC 4217 §4: AUTH resets the login and the earlier security
        // state; and whatever the client sent after it in clear is not a
        // command (it could be injected: CVE-2011-0411's kind).
        self.login = Login::Start;
        self.security.pbsz = false;
        self.security.private = false;
        self.input = LineReader::new();
        self.reply(Code::AuthOk, "AUTH TLS ok: start the TLS handshake.");
        self.security.control = Control::Starting {
            until: self.out.len(),
        };
    }

    /// PBSZ (RFC 2228 §3; RFC 4217 §8: always 0 for TLS).
    pub(super) fn pbsz(&mut self, arg: Option<&[u8]>) {
        if !self.config.tls.enabled() {
            return self.reply(Code::NotImplemented, "PBSZ not implemented.");
        }
        if !self.control_protected() {
            return self.reply(Code::BadSequence, "PBSZ needs AUTH TLS first.");
        }
        match arg {
            Some(a) if !a.is_empty() && a.iter().all(u8::is_ascii_digit) => {
                self.security.pbsz = true;
                if a.iter().all(|&b| b == b'0') {
                    self.reply(Code::Ok, "PBSZ 0 ok.");
                } else {
                    self.reply(Code::Ok, "PBSZ=0");
                }
            }
            _ => self.reply(Code::BadArguments, "PBSZ wants a number: PBSZ 0."),
        }
    }

    /// PROT (RFC 2228 §3; RFC 4217 §9): P (TLS) or C (clear).
    pub(super) fn prot(&mut self, arg: Option<&[u8]>) {
        if !self.config.tls.enabled() {
            return self.reply(Code::NotImplemented, "PROT not implemented.");
        }
        if !self.security.pbsz {
            return self.reply(Code::BadSequence, "PROT needs PBSZ first.");
        }
        match arg.map(<[u8]>::to_ascii_uppercase).as_deref() {
            Some(b"P") => {
                self.security.private = true;
                self.reply(Code::Ok, "PROT P ok: data connections use TLS.");
            }
            Some(b"C") if self.config.tls == TlsPolicy::Required => self.reply(
                Code::PolicyDenied,
                "PROT C refused: data connections must be protected here.",
            ),
            Some(b"C") => {
                self.security.private = false;
                self.reply(Code::Ok, "PROT C ok: data connections in clear.");
            }
            Some(b"S" | b"E") => self.reply(
                Code::ProtNotSupported,
                "Only PROT P and PROT C are supported.",
            ),
            Some(_) => self.reply(Code::BadParameter, "Unknown protection level."),
            None => self.reply(Code::BadArguments, "PROT needs a level: P or C."),
        }
    }

    /// FEAT lines for FTPS (RFC 4217 §6), when it is on.
    pub(super) fn tls_features(&self) -> &'static [&'static str] {
        match self.config.tls {
            TlsPolicy::Off => &[],
            TlsPolicy::Implicit => &[" PBSZ", " PROT"],
            TlsPolicy::Optional | TlsPolicy::Required => &[" AUTH TLS", " PBSZ", " PROT"],
        }
    }

    /// STAT's line about TLS, when it is on.
    pub(super) fn tls_status(&self) -> Option<String> {
        if !self.config.tls.enabled() {
            return None;
        }
        let control = if self.control_protected() {
            "TLS"
        } else {
            "clear"
        };
        let data = if self.data_protected() {
            "TLS (PROT P)"
        } else {
            "clear (PROT C)"
        };
        Some(format!(
            " Control connection: {control}; data connections: {data}"
        ))
    }
}
