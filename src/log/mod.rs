//! Logging: standard error (one line per record, for multilog and the
//! like) or syslog (facility FTP). Record lines are `key=value` fields
//! separated by spaces; paths are escaped so that no name can split a line
//! or forge a field. Downloads also go to the xferlog, when there is one
//! ([`crate::log::xferlog`]).

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::SocketAddr;

use syslog::{Facility, Formatter3164, LoggerBackend};

use crate::core::session::{Record, TransferKind, TransferRecord};
pub mod shared;
pub mod xferlog;

use crate::log::xferlog::Xferlog;

/// Where log lines go.
pub struct Logger {
    sink: Sink,
    xferlog: Option<Xferlog>,
}

enum Sink {
    /// Lines prefixed with the program name.
    Stderr(String),
    Syslog(Box<syslog::Logger<LoggerBackend, Formatter3164>>),
    /// Nowhere to log (the xferlog, if any, is still written).
    Discard,
}

impl Logger {
    /// Logs to standard error, each line prefixed with `name: `.
    pub fn stderr(name: &str) -> Logger {
        Logger {
            sink: Sink::Stderr(name.to_owned()),
            xferlog: None,
        }
    }

    /// Logs to the local syslog, facility FTP, as `name[pid]`. Connects now:
    /// the socket stays usable after a chroot.
    pub fn syslog(name: &str) -> io::Result<Logger> {
        let formatter = Formatter3164 {
            facility: Facility::LOG_FTP,
            hostname: None,
            process: name.to_owned(),
            pid: std::process::id(),
        };
        let logger =
            syslog::unix(formatter).map_err(|e| io::Error::other(format!("syslog: {e}")))?;
        Ok(Logger {
            sink: Sink::Syslog(Box::new(logger)),
            xferlog: None,
        })
    }

    /// Logs nothing (but the xferlog, if one is set).
    pub fn discard() -> Logger {
        Logger {
            sink: Sink::Discard,
            xferlog: None,
        }
    }

    /// Also writes downloads to `xferlog`.
    pub fn set_xferlog(&mut self, xferlog: Xferlog) {
        self.xferlog = Some(xferlog);
    }

    /// A session or transfer record; a transfer goes to the xferlog too.
    pub fn record(&mut self, record: &Record) {
        self.info(&format_record(record));
        if let (Record::Transfer(t), Some(x)) = (record, &self.xferlog) {
            x.write(t);
        }
    }

    /// A program message.
    pub fn info(&mut self, msg: &str) {
        match &mut self.sink {
            Sink::Stderr(name) => stderr_line(name, msg),
            Sink::Syslog(l) => {
                let _ = l.info(msg);
            }
            Sink::Discard => {}
        }
    }

    /// A program error (distinct from `info` only in syslog's severity).
    pub fn error(&mut self, msg: &str) {
        match &mut self.sink {
            Sink::Stderr(name) => stderr_line(name, msg),
            Sink::Syslog(l) => {
                let _ = l.err(msg);
            }
            Sink::Discard => {}
        }
    }
}

/// Writes one whole line with a single write, so that lines from several
/// processes sharing the log pipe do not interleave. Failures are ignored:
/// a full or closed log must not stop the server.
fn stderr_line(name: &str, msg: &str) {
    let line = format!("{name}: {}\n", msg.replace(['\n', '\r'], " "));
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// One log line for `record`, without a trailing newline.
pub fn format_record(record: &Record) -> String {
    match record {
        Record::SessionStart { peer } => format!("start peer={}", Peer(*peer)),
        Record::SessionEnd {
            peer,
            seconds,
            reason,
        } => format!(
            "end peer={} seconds={seconds:.3} reason={}",
            Peer(*peer),
            escape(reason.as_bytes())
        ),
        Record::Transfer(t) => format_transfer(t),
    }
}

fn format_transfer(t: &TransferRecord) -> String {
    let kind = match t.kind {
        TransferKind::Retr => "retr",
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
        escape(t.result.as_bytes()),
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
            format_record(&Record::SessionStart { peer: peer() }),
            "start peer=192.0.2.7:40123"
        );
        assert_eq!(
            format_record(&Record::SessionStart { peer: None }),
            "start peer=-"
        );
        let end = Record::SessionEnd {
            peer: Some("[2001:db8::1]:2121".parse().unwrap()),
            seconds: 1.2344,
            reason: "quit",
        };
        assert_eq!(
            format_record(&end),
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
            format_record(&Record::Transfer(t.clone())),
            "transfer peer=192.0.2.7:40123 kind=retr path=/pub/x bytes=123 seconds=0.004 type=I result=ok"
        );
        let t = TransferRecord {
            kind: TransferKind::Mlsd,
            ascii: true,
            result: "aborted",
            ..t
        };
        assert_eq!(
            format_record(&Record::Transfer(t)),
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
        let line = format_record(&Record::Transfer(t));
        assert_eq!(
            line,
            "transfer peer=- kind=list path=/a\\x20b\\x0aend\\x20peer=x\\x5c\\xe9\\x7f bytes=0 seconds=0.000 type=A result=ok"
        );
        assert_eq!(line.split(' ').count(), 8);
    }

    #[test]
    fn escape_keeps_printable_ascii() {
        assert_eq!(escape(b"/pub/linux-6.1.tar.xz"), "/pub/linux-6.1.tar.xz");
        assert_eq!(escape("caf\u{e9}".as_bytes()), "caf\\xc3\\xa9");
        assert_eq!(escape(b"\t\r"), "\\x09\\x0d");
    }
}
