//! Logging: standard error (one line per record, for multilog and the
//! like) or syslog (facility FTP). Record lines are `key=value` fields
//! separated by spaces; paths are escaped so that no name can split a line
//! or forge a field ([`format`](mod@format)). Downloads also go to the xferlog, when there is one
//! ([`crate::log::xferlog`]).

use std::io::{self, Write as _};

use syslog::{Facility, Formatter3164, LoggerBackend};

use crate::core::session::Record;
pub mod format;
pub mod outlet;
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
        self.info(&format::record(record));
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
