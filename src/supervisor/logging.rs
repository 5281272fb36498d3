//! The supervisor's log: standard error (one line per record, for
//! multilog/journald to timestamp) or syslog, facility FTP. Shared by all
//! workers: standard error is locked per line by std; the syslog
//! connection sits behind a Mutex.
//!
//! A local stand-in for the shared `crate::log::Logger`, with the same
//! `key=value` records, until that module exists.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;

use syslog::{Facility, Formatter3164, LoggerBackend};

use crate::session::{Record, TransferKind};

/// How important a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

enum Sink {
    Stderr,
    Syslog(Mutex<syslog::Logger<LoggerBackend, Formatter3164>>),
}

/// Where log lines go.
pub struct Logger {
    sink: Sink,
}

impl Logger {
    pub fn stderr() -> Logger {
        Logger { sink: Sink::Stderr }
    }

    /// Connects to the local syslog socket now, before any chroot hides it.
    pub fn syslog(process: &str) -> Result<Logger, String> {
        let f = Formatter3164 {
            facility: Facility::LOG_FTP,
            hostname: None,
            process: process.to_owned(),
            pid: std::process::id(),
        };
        let l = syslog::unix(f).map_err(|e| format!("cannot connect to syslog: {e}"))?;
        Ok(Logger {
            sink: Sink::Syslog(Mutex::new(l)),
        })
    }

    pub fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        match &self.sink {
            Sink::Stderr => {
                let tag = match level {
                    Level::Info => "",
                    Level::Warn => "warning: ",
                    Level::Error => "error: ",
                };
                // Write errors (a closed stderr) cannot be reported anywhere.
                let _ = writeln!(std::io::stderr().lock(), "{tag}{args}");
            }
            Sink::Syslog(l) => {
                let mut l = l.lock().unwrap_or_else(|p| p.into_inner());
                let msg = args.to_string();
                let _ = match level {
                    Level::Info => l.info(msg),
                    Level::Warn => l.warning(msg),
                    Level::Error => l.err(msg),
                };
            }
        }
    }

    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Info, args)
    }

    pub fn warn(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Warn, args)
    }

    pub fn error(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Error, args)
    }

    /// A session's record.
    pub fn record(&self, r: &Record) {
        self.info(format_args!("{}", Display(r)));
    }
}

struct Display<'a>(&'a Record);

struct Peer(Option<std::net::SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("-"),
        }
    }
}

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Record::SessionStart { peer } => write!(f, "session start peer={}", Peer(*peer)),
            Record::SessionEnd {
                peer,
                seconds,
                reason,
            } => write!(
                f,
                "session end peer={} seconds={seconds:.3} reason={reason}",
                Peer(*peer)
            ),
            Record::Transfer(t) => {
                let kind = match t.kind {
                    TransferKind::Retr => "retr",
                    TransferKind::List => "list",
                    TransferKind::Nlst => "nlst",
                    TransferKind::Mlsd => "mlsd",
                };
                write!(
                    f,
                    "transfer peer={} kind={kind} path={:?} bytes={} seconds={:.3} type={} result={}",
                    Peer(t.peer),
                    t.path.to_string(),
                    t.bytes,
                    t.duration.as_secs_f64(),
                    if t.ascii { "A" } else { "I" },
                    t.result
                )
            }
        }
    }
}
