//! The supervisor's log, shared by every worker: the shared
//! [`crate::log::Logger`] (standard error, or syslog facility FTP, with
//! ftpd's record format) behind a Mutex, since it writes through `&mut`.
//! A line is formatted before the lock is taken, so the lock is held only
//! for the one write. The xferlog, if any, has its own lock (shared for
//! writes, exclusive only while SIGHUP reopens it).

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::core::session::Record;
use crate::log::xferlog::Xferlog;

/// Where log lines go.
pub struct Logger {
    inner: Mutex<crate::log::Logger>,
    syslog: bool,
    xferlog: Option<Xferlog>,
}

const NAME: &str = "aftpd-supervisor";

impl Logger {
    pub fn stderr() -> Logger {
        Logger {
            inner: Mutex::new(crate::log::Logger::stderr(NAME)),
            syslog: false,
            xferlog: None,
        }
    }

    /// Connects to the local syslog socket now, before the chroot hides it.
    pub fn syslog() -> std::io::Result<Logger> {
        Ok(Logger {
            inner: Mutex::new(crate::log::Logger::syslog(NAME)?),
            syslog: true,
            xferlog: None,
        })
    }

    /// Also writes downloads to `xferlog`.
    pub fn with_xferlog(self, xferlog: Xferlog) -> Logger {
        Logger {
            xferlog: Some(xferlog),
            ..self
        }
    }

    /// SIGHUP: reopens the xferlog (after a rotation), and says so.
    pub fn reopen(&self) {
        match &self.xferlog {
            None => self.info(format_args!(
                "SIGHUP: logging to {}, nothing to reopen",
                self.destination()
            )),
            Some(x) => match x.reopen() {
                Ok(()) => self.info(format_args!("SIGHUP: reopened {}", x.path().display())),
                Err(e) => self.error(format_args!(
                    "SIGHUP: cannot reopen {}: {e}; still writing to the old file",
                    x.path().display()
                )),
            },
        }
    }

    /// The directory the xferlog is reopened in, if there is one (the
    /// sandbox must let the process create files there).
    pub fn xferlog_dir(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.xferlog.as_ref().and_then(Xferlog::dir)
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

    /// A session's record, in ftpd's format; a transfer goes to the
    /// xferlog too.
    pub fn record(&self, r: &Record) {
        let line = crate::log::format::record(r);
        self.lock().info(&line);
        if let (Record::Transfer(t), Some(x)) = (r, &self.xferlog) {
            x.write(t);
        }
    }
}
