//! Logging, for both programs: one thread-safe [`Logger`], callable from
//! any thread through `&Logger`, that writes program messages and session
//! records ([`format`](mod@format)) to standard error (one line each,
//! `NAME: ` in front, for multilog and the like) or to syslog (facility
//! FTP), and downloads to the xferlog ([`xferlog`]) when there is one.
//!
//! Logging never holds up serving. Every line is written without
//! blocking, or queued (a bounded queue per destination) for a writer
//! thread that may block where the callers never do ([`outlet`], with the
//! non-blocking writes in [`sink`]). A reader that stalls (multilog on a
//! full disk, a hung journald or syslog daemon, a slow disk under the
//! xferlog) costs lines, never time: lines that do not fit are dropped
//! and counted, and once the reader takes lines again a warning says how
//! many were lost. At exit, queued lines get a bounded time
//! ([`EXIT_FLUSH`]) to be written. Writer threads start only once the
//! program says it is sandboxed ([`Logger::start_writers`]).
//!
//! Dependencies run one way: this module uses [`format`](mod@format),
//! [`xferlog`], [`syslog`], [`outlet`] and [`sink`]; none of them uses
//! it.

pub mod format;
pub mod outlet;
pub mod sink;
pub mod syslog;
pub mod xferlog;

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::core::session::Record;

pub use self::format::Severity;
use self::outlet::{Notice, Outlet};
use self::xferlog::Xferlog;

/// The longest line written, all included: `PIPE_BUF`, the most a pipe
/// takes whole, so that lines of processes sharing one never interleave.
/// A longer message is cut, and ends with [`TRUNCATED`].
pub const LINE_MAX: usize = 4096;

/// What ends a message cut to fit [`LINE_MAX`].
pub const TRUNCATED: &str = " [truncated]";

/// Bytes of lines that may wait for a stalled reader, per destination,
/// unless [`Logger::with_backlog`] says otherwise.
pub const BACKLOG: usize = 64 * 1024;

/// How long a [`Logger`], when dropped, waits for queued lines. The
/// client has had its last reply by then; an xferlog line queued because
/// the file needed a block allocated (RWF_NOWAIT said EAGAIN) is worth a
/// few seconds of a busy disk.
pub const EXIT_FLUSH: Duration = Duration::from_secs(5);

/// Where log lines go.
pub struct Logger {
    style: Arc<Style>,
    /// `None`: nowhere (the xferlog, if any, is still written).
    main: Option<Outlet>,
    xferlog: Option<(Xferlog, Outlet)>,
    backlog: usize,
}

/// How a message becomes a line.
struct Style {
    name: String,
    to: To,
}

enum To {
    Stderr,
    Syslog { pid: u32, stream: bool },
    Nowhere,
}

impl Logger {
    /// Logs to standard error, each line `NAME: MESSAGE`.
    pub fn stderr(name: &str) -> Logger {
        let style = Arc::new(Style {
            name: name.to_owned(),
            to: To::Stderr,
        });
        let main = Outlet::new(
            Box::new(sink::Stderr::default()),
            BACKLOG,
            main_notice(&style),
            "log-writer",
        );
        Logger {
            style,
            main: Some(main),
            xferlog: None,
            backlog: BACKLOG,
        }
    }

    /// Logs to the local syslog, facility FTP, as `NAME[PID]`. Connects
    /// now: the socket stays usable after a chroot.
    pub fn syslog(name: &str) -> io::Result<Logger> {
        let socket = syslog::connect()?;
        let style = Arc::new(Style {
            name: name.to_owned(),
            to: To::Syslog {
                pid: std::process::id(),
                stream: socket.stream,
            },
        });
        let main = Outlet::new(
            Box::new(sink::Socket::new(socket.fd)),
            BACKLOG,
            main_notice(&style),
            "log-writer",
        );
        Ok(Logger {
            style,
            main: Some(main),
            xferlog: None,
            backlog: BACKLOG,
        })
    }

    /// Logs nothing (but the xferlog, if one is set).
    pub fn discard() -> Logger {
        Logger {
            style: Arc::new(Style {
                name: String::new(),
                to: To::Nowhere,
            }),
            main: None,
            xferlog: None,
            backlog: BACKLOG,
        }
    }

    /// Lets up to `bytes` of lines wait for a stalled reader, per
    /// destination (a busy server logs more than one session does).
    pub fn with_backlog(mut self, bytes: usize) -> Logger {
        self.backlog = bytes.max(LINE_MAX);
        for out in self.outlets() {
            out.set_capacity(self.backlog);
        }
        self
    }

    /// Also writes downloads to `xferlog`.
    pub fn with_xferlog(mut self, xferlog: Xferlog) -> Logger {
        self.set_xferlog(xferlog);
        self
    }

    /// Also writes downloads to `xferlog` (before
    /// [`Logger::start_writers`]).
    pub fn set_xferlog(&mut self, xferlog: Xferlog) {
        // Its drops are told in the main log: the xferlog itself holds
        // transfer lines only, which log analysers parse.
        let main = self.main.clone();
        let style = Arc::clone(&self.style);
        let path = xferlog.path().display().to_string();
        let notice: Notice = Box::new(move |n| {
            if let Some(main) = &main {
                let msg = format!(
                    "xferlog: dropped {n} line{} for {path} (the disk fell behind, or writing failed)",
                    plural(n)
                );
                main.submit(style.line(Severity::Warning, &msg));
            }
            None
        });
        let out = Outlet::new(
            Box::new(xferlog.appender()),
            self.backlog,
            notice,
            "xferlog-writer",
        );
        self.xferlog = Some((xferlog, out));
    }

    /// A session or transfer record; a download goes to the xferlog too.
    pub fn record(&self, record: &Record) {
        if let Some(main) = &self.main {
            main.submit(self.style.line(Severity::Info, &format::record(record)));
        }
        if let (Record::Transfer(t), Some((_, out))) = (record, &self.xferlog)
            && let Some(line) = Xferlog::line(t)
        {
            out.submit(line);
        }
    }

    /// A program message.
    pub fn info(&self, msg: impl fmt::Display) {
        self.message(Severity::Info, msg);
    }

    /// Something an operator should look at.
    pub fn warn(&self, msg: impl fmt::Display) {
        self.message(Severity::Warning, msg);
    }

    /// Something failed.
    pub fn error(&self, msg: impl fmt::Display) {
        self.message(Severity::Error, msg);
    }

    fn message(&self, severity: Severity, msg: impl fmt::Display) {
        if let Some(main) = &self.main {
            main.submit(self.style.line(severity, &msg.to_string()));
        }
    }

    /// SIGHUP: reopens the xferlog (after a rotation), and says so.
    pub fn reopen(&self) {
        match &self.xferlog {
            None => self.info(format_args!(
                "SIGHUP: logging to {}, nothing to reopen",
                self.destination()
            )),
            Some((x, _)) => match x.reopen() {
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
    pub fn xferlog_dir(&self) -> Option<BorrowedFd<'_>> {
        self.xferlog.as_ref().and_then(|(x, _)| x.dir())
    }

    /// Where the lines go, for messages about logging itself.
    pub fn destination(&self) -> &'static str {
        match self.style.to {
            To::Stderr => "standard error",
            To::Syslog { .. } => "syslog",
            To::Nowhere => "nowhere",
        }
    }

    /// Lets the logger start its writer threads (for lines that cannot be
    /// written at once) from now on. Call it once the process is
    /// sandboxed: Landlock (before ABI 8) and ftpd's seccomp filter bind
    /// only threads created afterwards. Until then such lines wait, and
    /// at exit they are written anyway.
    pub fn start_writers(&self) {
        for out in self.outlets() {
            out.allow_writer();
        }
    }

    /// Waits until queued lines are written, at most `within` for each
    /// destination; returns whether all were.
    pub fn flush(&self, within: Duration) -> bool {
        // Each is given its time, even after one has not made it.
        let mut all = true;
        for out in self.outlets() {
            all &= out.flush(within);
        }
        all
    }

    /// From now on a panic's message (which Rust writes to standard error
    /// with a blocking write) goes through this logger instead.
    pub fn catch_panics(&self) {
        let Some(main) = self.main.clone() else {
            return;
        };
        let style = Arc::clone(&self.style);
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let what = info.payload_as_str().unwrap_or("Box<dyn Any>");
            let at = info
                .location()
                .map_or_else(String::new, |l| format!(" at {l}"));
            let msg = format!(
                "thread '{}' panicked{at}: {what}",
                thread.name().unwrap_or("unnamed")
            );
            main.submit_from_panic(style.line(Severity::Error, &msg));
        }));
    }

    fn outlets(&self) -> impl Iterator<Item = &Outlet> {
        self.main
            .iter()
            .chain(self.xferlog.as_ref().map(|(_, o)| o))
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        // The xferlog first: its drops are reported in the main log.
        if let Some((_, out)) = &self.xferlog {
            out.close(EXIT_FLUSH);
        }
        if let Some(out) = &self.main {
            out.close(EXIT_FLUSH);
        }
    }
}

/// The main log's notice of dropped lines: a warning in the log itself,
/// where the gap is.
fn main_notice(style: &Arc<Style>) -> Notice {
    let style = Arc::clone(style);
    Box::new(move |n| {
        let msg = format!(
            "log: dropped {n} line{} (the log reader fell behind, or writing failed)",
            plural(n)
        );
        Some(style.line(Severity::Warning, &msg))
    })
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl Style {
    /// The line for `msg`: one line, at most [`LINE_MAX`] bytes, framed
    /// for the destination.
    fn line(&self, severity: Severity, msg: &str) -> Vec<u8> {
        let tag = match severity {
            Severity::Info => "",
            Severity::Warning => "warning: ",
            Severity::Error => "error: ",
        };
        match self.to {
            To::Stderr => {
                let head = self.name.len() + 2 + tag.len();
                let text = fit(msg, LINE_MAX.saturating_sub(head + 1));
                format!("{}: {tag}{text}\n", self.name).into_bytes()
            }
            To::Syslog { pid, stream } => {
                // <PRI>Mmm dd hh:mm:ss NAME[PID]: , a NUL on streams.
                let head = 4 + 16 + self.name.len() + 2 + 10 + 3 + tag.len();
                let text = fit(msg, LINE_MAX.saturating_sub(head + 1));
                syslog::frame(&self.name, pid, severity, stream, &format!("{tag}{text}"))
            }
            To::Nowhere => Vec::new(),
        }
    }
}

/// `msg` on one line (control characters as spaces), cut to at most
/// `room` bytes on a character boundary, with [`TRUNCATED`] if it was cut.
fn fit(msg: &str, room: usize) -> Cow<'_, str> {
    let one_line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    if msg.len() <= room {
        return if msg.contains(char::is_control) {
            Cow::Owned(one_line(msg))
        } else {
            Cow::Borrowed(msg)
        };
    }
    let mut end = room.saturating_sub(TRUNCATED.len());
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(one_line(&msg[..end]) + TRUNCATED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr_style() -> Style {
        Style {
            name: "ftpd".into(),
            to: To::Stderr,
        }
    }

    #[test]
    fn stderr_lines() {
        let s = stderr_style();
        assert_eq!(
            s.line(Severity::Info, "start peer=-"),
            b"ftpd: start peer=-\n"
        );
        assert_eq!(
            s.line(Severity::Warning, "a\nb\rc\td"),
            b"ftpd: warning: a b c d\n"
        );
        assert_eq!(s.line(Severity::Error, "x"), b"ftpd: error: x\n");
    }

    #[test]
    fn long_lines_are_cut_to_pipe_buf_on_a_character_boundary() {
        let s = stderr_style();
        let msg = "\u{e9}".repeat(LINE_MAX);
        let line = String::from_utf8(s.line(Severity::Error, &msg)).unwrap();
        assert!(line.len() <= LINE_MAX, "{}", line.len());
        assert!(line.len() > LINE_MAX - 16, "{}", line.len());
        assert!(line.ends_with(" [truncated]\n"));
        let sys = Style {
            name: "aftpd-supervisor".into(),
            to: To::Syslog {
                pid: u32::MAX,
                stream: true,
            },
        };
        let m = sys.line(Severity::Warning, &"x".repeat(3 * LINE_MAX));
        assert!(m.len() <= LINE_MAX, "{}", m.len());
        assert!(m.ends_with(b" [truncated]\0"));
    }

    #[test]
    fn discard_writes_nothing_and_never_waits() {
        let l = Logger::discard();
        l.info("x");
        l.record(&Record::SessionStart { peer: None });
        assert!(l.flush(Duration::ZERO));
        assert_eq!(l.destination(), "nowhere");
    }

    #[test]
    fn the_logger_owns_the_xferlog() {
        use crate::core::session::{TransferKind, TransferRecord};
        use crate::core::vpath::VPath;
        let dir = std::env::temp_dir().join(format!("aftpd-logger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("xferlog");
        let x = Xferlog::open_reopenable(&path).unwrap();
        let log = Logger::discard().with_xferlog(x);
        log.start_writers();
        let t = |p: &[u8], kind| {
            Record::Transfer(TransferRecord {
                peer: Some("127.0.0.1:1".parse().unwrap()),
                kind,
                path: VPath::resolve(&VPath::root(), p).unwrap(),
                bytes: 1,
                duration: Duration::ZERO,
                ascii: false,
                result: "ok",
            })
        };
        log.record(&t(b"/one", TransferKind::Retr));
        log.record(&t(b"/dir", TransferKind::List));
        assert!(log.flush(Duration::from_secs(10)));
        std::fs::rename(&path, dir.join("xferlog.1")).unwrap();
        log.reopen();
        log.record(&t(b"/two", TransferKind::Retr));
        drop(log);
        let old = std::fs::read_to_string(dir.join("xferlog.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1, "{old}");
        assert!(old.contains(" /one b _ o a anonymous ftp 0 * c"), "{old}");
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains(" /two "), "{new}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
