//! One open session as `aftpd-status` shows it, and its line on the
//! wire: the supervisor's control socket answers with one line per
//! session, and each `ftpd` writes its one line into its status file.
//!
//! ```text
//! session pid=4242 peer=192.0.2.7:40123 since=1700000000 active=1700000030 at=1700000033 user=anonymous cmd=RETR xfer=retr path=/pub/x bytes=1048576 seconds=2.000
//! ```
//!
//! Every value is one token, as in the log (`log::format`): the path
//! escaped, `-` for what is not there (`xfer=- path=-` when no transfer
//! is in progress). Times are seconds since the Unix epoch: `since`, when
//! the control connection was accepted; `active`, the last command; `at`,
//! when the line was written (an `ftpd` rewrites its line only when
//! something changes, and at most once a second during a transfer).
//! `seconds` is how long the transfer had run at `at`; `user` is
//! `anonymous` once logged in, `-` before.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::core::clock::Now;
use crate::core::session::{SessionStatus, TransferKind};
use crate::log::format::escape;

/// An open session.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The process serving it (`ftpd`'s), 0 when not told.
    pub pid: u32,
    pub peer: Option<SocketAddr>,
    /// When it was accepted, seconds since the Unix epoch.
    pub since: i64,
    /// When it read its last command.
    pub active: i64,
    /// When this row was taken.
    pub at: i64,
    pub logged_in: bool,
    /// The verb of its last command, `-` before any.
    pub verb: String,
    pub transfer: Option<Xfer>,
}

/// The transfer in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Xfer {
    /// `retr`, `stor`, `list`, `nlst`, `mlsd` (as in the log).
    pub kind: String,
    /// The path as the log writes it (escaped).
    pub path: String,
    pub bytes: u64,
    pub seconds: f64,
}

impl Xfer {
    /// Bytes per second so far.
    pub fn rate(&self) -> u64 {
        if self.seconds > 0.0 {
            (self.bytes as f64 / self.seconds) as u64
        } else {
            0
        }
    }
}

fn kind_name(k: TransferKind) -> &'static str {
    match k {
        TransferKind::Retr => "retr",
        TransferKind::List => "list",
        TransferKind::Nlst => "nlst",
        TransferKind::Mlsd => "mlsd",
        TransferKind::Stor => "stor",
    }
}

fn ago(now: Now, d: Duration) -> i64 {
    now.unix() - d.as_secs() as i64
}

impl Row {
    /// The row of a session, as it stands at `now`.
    pub fn of(s: &SessionStatus<'_>, pid: u32, now: Now) -> Row {
        Row {
            pid,
            peer: s.peer,
            since: ago(now, now.mono.saturating_duration_since(s.started)),
            active: ago(now, now.mono.saturating_duration_since(s.active)),
            at: now.unix(),
            logged_in: s.logged_in,
            verb: s.verb.to_owned(),
            transfer: s.transfer.as_ref().map(|t| Xfer {
                kind: kind_name(t.kind).to_owned(),
                path: escape(t.path.as_bytes()),
                bytes: t.sent,
                seconds: now.mono.saturating_duration_since(t.started).as_secs_f64(),
            }),
        }
    }

    /// Its line, with a newline.
    pub fn line(&self) -> String {
        let mut out = String::with_capacity(160);
        let peer = self.peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let _ = write!(
            out,
            "session pid={} peer={peer} since={} active={} at={} user={} cmd={}",
            self.pid,
            self.since,
            self.active,
            self.at,
            if self.logged_in { "anonymous" } else { "-" },
            self.verb
        );
        match &self.transfer {
            Some(x) => {
                let _ = write!(
                    out,
                    " xfer={} path={} bytes={} seconds={:.3}",
                    x.kind, x.path, x.bytes, x.seconds
                );
            }
            None => out.push_str(" xfer=- path=- bytes=0 seconds=0.000"),
        }
        out.push('\n');
        out
    }

    /// Reads a line written by [`Row::line`] (with or without its
    /// newline); `None` when it is not one.
    pub fn parse(line: &str) -> Option<Row> {
        let mut words = line.trim_end_matches('\n').split(' ');
        if words.next()? != "session" {
            return None;
        }
        let mut field = |name: &str| -> Option<&str> {
            let w = words.next()?;
            w.strip_prefix(name)?.strip_prefix('=')
        };
        let pid = field("pid")?.parse().ok()?;
        let peer = match field("peer")? {
            "-" => None,
            p => Some(p.parse().ok()?),
        };
        let since = field("since")?.parse().ok()?;
        let active = field("active")?.parse().ok()?;
        let at = field("at")?.parse().ok()?;
        let logged_in = match field("user")? {
            "anonymous" => true,
            "-" => false,
            _ => return None,
        };
        let verb = token(field("cmd")?)?;
        let kind = token(field("xfer")?)?;
        let path = token(field("path")?)?;
        let bytes = field("bytes")?.parse().ok()?;
        let seconds: f64 = field("seconds")?.parse().ok()?;
        if words.next().is_some() || !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        let transfer = (kind != "-").then_some(Xfer {
            kind,
            path,
            bytes,
            seconds,
        });
        Some(Row {
            pid,
            peer,
            since,
            active,
            at,
            logged_in,
            verb,
            transfer,
        })
    }
}

/// A value as one printable token.
fn token(w: &str) -> Option<String> {
    let ok = !w.is_empty() && w.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| w.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            pid: 42,
            peer: Some("[2001:db8::1]:40000".parse().unwrap()),
            since: 1_700_000_000,
            active: 1_700_000_030,
            at: 1_700_000_033,
            logged_in: true,
            verb: "RETR".into(),
            transfer: Some(Xfer {
                kind: "retr".into(),
                path: escape(b"/pub/a b\n"),
                bytes: 1 << 20,
                seconds: 2.0,
            }),
        }
    }

    #[test]
    fn lines_round_trip() {
        let r = row();
        let line = r.line();
        assert_eq!(
            line,
            "session pid=42 peer=[2001:db8::1]:40000 since=1700000000 active=1700000030 at=1700000033 user=anonymous cmd=RETR xfer=retr path=/pub/a\\x20b\\x0a bytes=1048576 seconds=2.000\n"
        );
        assert_eq!(Row::parse(&line), Some(r.clone()));
        assert_eq!(r.transfer.as_ref().unwrap().rate(), 1 << 19);
        let idle = Row {
            transfer: None,
            peer: None,
            logged_in: false,
            verb: "-".into(),
            ..r
        };
        assert_eq!(Row::parse(&idle.line()), Some(idle));
    }

    #[test]
    fn other_lines_are_refused() {
        let line = row().line();
        assert!(Row::parse("").is_none());
        assert!(Row::parse("status at=1").is_none());
        assert!(Row::parse(&line.replace("pid=42", "pid=x")).is_none());
        assert!(Row::parse(&line.replace(" at=1700000033", "")).is_none());
        assert!(Row::parse(&line.replace("seconds=2.000", "seconds=NaN")).is_none());
        assert!(Row::parse(&format!("{} extra", line.trim_end())).is_none());
        assert!(Row::parse(&line.replace("user=anonymous", "user=root")).is_none());
    }
}
