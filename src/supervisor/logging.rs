//! The supervisor's log, shared by every worker: the shared
//! [`crate::log::Logger`] (standard error, or syslog facility FTP, with
//! ftpd's record format) behind a Mutex, since it writes through `&mut`.
//! A line is formatted before the lock is taken, so the lock is held only
//! for the one write.

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::session::Record;

/// Where log lines go.
pub struct Logger {
    inner: Mutex<crate::log::Logger>,
    syslog: bool,
}

const NAME: &str = "aftpd-supervisor";

impl Logger {
    pub fn stderr() -> Logger {
        Logger {
            inner: Mutex::new(crate::log::Logger::stderr(NAME)),
            syslog: false,
        }
    }

    /// Connects to the local syslog socket now, before the chroot hides it.
    pub fn syslog() -> std::io::Result<Logger> {
        Ok(Logger {
            inner: Mutex::new(crate::log::Logger::syslog(NAME)?),
            syslog: true,
        })
    }

    /// Where the lines go, for messages about logging itself.
    pub fn destination(&self) -> &'static str {
        if self.syslog {
            "syslog"
        } else {
            "standard error"
        }
    }

    // A panic elsewhere while the lock was held leaves the logger usable.
    fn lock(&self) -> MutexGuard<'_, crate::log::Logger> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn info(&self, args: fmt::Arguments<'_>) {
        let msg = args.to_string();
        self.lock().info(&msg);
    }

    /// Something an operator should look at (syslog severity: error).
    pub fn warn(&self, args: fmt::Arguments<'_>) {
        let msg = format!("warning: {args}");
        self.lock().error(&msg);
    }

    pub fn error(&self, args: fmt::Arguments<'_>) {
        let msg = format!("error: {args}");
        self.lock().error(&msg);
    }

    /// A session's record, in ftpd's format.
    pub fn record(&self, r: &Record) {
        let line = crate::log::format_record(r);
        self.lock().info(&line);
    }
}
