//! The session log's record format: one line per session start, session
//! end and transfer, as `key=value` fields separated by single spaces,
//! after a word naming the record:
//!
//! ```text
//! start peer=192.0.2.7:40123
//! transfer peer=192.0.2.7:40123 kind=retr path=/pub/x bytes=123 seconds=0.004 type=I result=ok
//! end peer=192.0.2.7:40123 seconds=1.234 reason=quit
//! ```
//!
//! Every value is one token without spaces, so a line splits on spaces:
//!
//! - `peer`: `IP:PORT` (`[IP]:PORT` for IPv6), `-` when unknown.
//! - `path`: the path in the archive, every byte outside printable ASCII,
//!   and space and backslash, written `\xNN` ([`escape`]): no name can
//!   split a line or forge a field.
//! - `kind`: `retr`, `list`, `nlst` or `mlsd`. `type`: `A` or `I`.
//! - `bytes`: bytes sent; `seconds`: with three decimals.
//! - `result` (transfers) and `reason` (session ends) are tokens of
//!   lower-case letters, digits and `-` ([`token`]). Transfers: `ok`,
//!   `aborted` (ABOR), `no-connection` (the data connection could not be
//!   made), `connection-lost`, `timeout` (stalled, or never connected),
//!   `shrunk` (the file shrank while being sent), `read-error`, and
//!   `control-connection-closed` (the client left mid-transfer). Session
//!   ends: `quit`, `eof` (the client closed), `timeout` (idle),
//!   `shutdown` (the server stopped), `internal-error`. Whatever the core
//!   names a new outcome, it is written as a token: anything but those
//!   characters becomes `-`.
//!
//! Lines other than records are the programs' messages (free text, one
//! line; `warning: ` or `error: ` in front of those that are). This module
//! is the format only: [`crate::log::Logger`] writes the lines.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::core::session::{Record, TransferKind, TransferRecord};

/// How much a line matters (syslog's severity; on standard error, a
/// `warning: ` or `error: ` in front).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One log line for `record`, without a trailing newline.
pub fn record(record: &Record) -> String {
    match record {
        Record::SessionStart { peer } => format!("start peer={}", Peer(*peer)),
        Record::SessionEnd {
            peer,
            seconds,
            reason,
        } => format!(
            "end peer={} seconds={seconds:.3} reason={}",
            Peer(*peer),
            token(reason)
        ),
        Record::Transfer(t) => transfer(t),
    }
}

fn transfer(t: &TransferRecord) -> String {
    let kind = match t.kind {
        TransferKind::Retr => "retr",
        TransferKind::Stor => "stor",
        TransferKind::List => "list",
        TransferKind::Nlst => "nlst",
        TransferKind::Mlsd => "mlsd",
    };
    format!(
        "transfer peer={} kind={kind} path={} bytes={} seconds={:.3} type={} result={}",
        Peer(t.peer),
        escape(t.path.as_bytes()),
        t.bytes,
        t.duration.as_secs_f64(),
        if t.ascii { "A" } else { "I" },
        token(t.result),
    )
}

/// `IP:PORT` (`[IP]:PORT` for IPv6), or `-` when unknown.
struct Peer(Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("-"),
        }
    }
}

/// `bytes` with every byte outside printable ASCII, and space and
/// backslash, written as `\xNN`: the result is one unambiguous field.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// `word` as a token: lower-case ASCII letters, digits and `-`, each run
/// of anything else one `-` (`control connection closed` is
/// `control-connection-closed`), `-` if nothing is left.
pub fn token(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::vpath::VPath;
    use std::time::Duration;

    fn peer() -> Option<SocketAddr> {
        Some("192.0.2.7:40123".parse().unwrap())
    }

    #[test]
    fn session_lines() {
        assert_eq!(
            record(&Record::SessionStart { peer: peer() }),
            "start peer=192.0.2.7:40123"
        );
        assert_eq!(record(&Record::SessionStart { peer: None }), "start peer=-");
        let end = Record::SessionEnd {
            peer: Some("[2001:db8::1]:2121".parse().unwrap()),
            seconds: 1.2344,
            reason: "quit",
        };
        assert_eq!(
            record(&end),
            "end peer=[2001:db8::1]:2121 seconds=1.234 reason=quit"
        );
    }

    #[test]
    fn transfer_line() {
        let t = TransferRecord {
            peer: peer(),
            kind: TransferKind::Retr,
            path: VPath::resolve(&VPath::root(), b"/pub/x").unwrap(),
            bytes: 123,
            duration: Duration::from_micros(4200),
            ascii: false,
            result: "ok",
        };
        assert_eq!(
            record(&Record::Transfer(t.clone())),
            "transfer peer=192.0.2.7:40123 kind=retr path=/pub/x bytes=123 seconds=0.004 type=I result=ok"
        );
        let t = TransferRecord {
            kind: TransferKind::Mlsd,
            ascii: true,
            result: "aborted",
            ..t
        };
        assert_eq!(
            record(&Record::Transfer(t)),
            "transfer peer=192.0.2.7:40123 kind=mlsd path=/pub/x bytes=123 seconds=0.004 type=A result=aborted"
        );
    }

    #[test]
    fn paths_cannot_forge_lines_or_fields() {
        let path = VPath::resolve(&VPath::root(), b"a b\nend peer=x\\\xe9\x7f").unwrap();
        let t = TransferRecord {
            peer: None,
            kind: TransferKind::List,
            path,
            bytes: 0,
            duration: Duration::ZERO,
            ascii: true,
            result: "ok",
        };
        let line = record(&Record::Transfer(t));
        assert_eq!(
            line,
            "transfer peer=- kind=list path=/a\\x20b\\x0aend\\x20peer=x\\x5c\\xe9\\x7f bytes=0 seconds=0.000 type=A result=ok"
        );
        assert_eq!(line.split(' ').count(), 8);
    }

    #[test]
    fn results_and_reasons_are_tokens() {
        let t = TransferRecord {
            peer: None,
            kind: TransferKind::Retr,
            path: VPath::root(),
            bytes: 0,
            duration: Duration::ZERO,
            ascii: false,
            result: "control connection closed",
        };
        let line = record(&Record::Transfer(t));
        assert!(
            line.ends_with(" result=control-connection-closed"),
            "{line}"
        );
        assert_eq!(line.split(' ').count(), 8);
        let end = Record::SessionEnd {
            peer: None,
            seconds: 0.0,
            reason: "Internal error!",
        };
        assert!(record(&end).ends_with(" reason=internal-error-"));
        for ok in ["ok", "aborted", "connection-lost", "read-error", "eof"] {
            assert_eq!(token(ok), ok);
        }
        assert_eq!(token(""), "-");
        assert_eq!(token(" a  b\n"), "-a-b-");
        assert_eq!(token("caf\u{e9} x=1"), "caf-x-1");
    }

    #[test]
    fn escape_keeps_printable_ascii() {
        assert_eq!(escape(b"/pub/linux-6.1.tar.xz"), "/pub/linux-6.1.tar.xz");
        assert_eq!(escape("caf\u{e9}".as_bytes()), "caf\\xc3\\xa9");
        assert_eq!(escape(b"\t\r"), "\\x09\\x0d");
    }
}
