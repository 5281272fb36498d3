//! The sessions as a table, one line each, like pure-ftpwho's.

use std::fmt::Write as _;

use crate::core::calendar::utc_timestamp;
use crate::monitor::row::Row;

/// `1536` -> `1.5K`: bytes in powers of 1024.
pub fn human(n: u64) -> String {
    let units = [(1u64 << 30, 'G'), (1 << 20, 'M'), (1 << 10, 'K')];
    match units.iter().find(|(u, _)| n >= *u) {
        Some((u, c)) => format!("{:.1}{c}", n as f64 / *u as f64),
        None => n.to_string(),
    }
}

/// Seconds as `1:02:03`, `2:03` or `0:05`.
pub fn clock(secs: i64) -> String {
    let s = secs.max(0);
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// `HH:MM:SS` of a time (UTC).
fn time_of_day(unix: i64) -> String {
    let t = utc_timestamp(unix);
    let d = |i: usize| char::from(t[i]);
    format!("{}{}:{}{}:{}{}", d(8), d(9), d(10), d(11), d(12), d(13))
}

/// The table of `rows` at `now`, headed by a count and the `notes`.
pub fn render(rows: &[Row], notes: &[String], now: i64) -> String {
    let mut out = format!(
        "{} session{} at {} UTC\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        time_of_day(now)
    );
    for n in notes {
        let _ = writeln!(out, "note: {n}");
    }
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "{:<8} {:<40} {:<8} {:>7} {:<4} {:<4} {:>8} {:>9}  PATH",
        "PID", "PEER", "LOGIN", "IDLE", "CMD", "XFER", "BYTES", "RATE"
    );
    for r in rows {
        let peer = r.peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let (kind, bytes, rate, path) = match &r.transfer {
            Some(x) => (
                x.kind.as_str(),
                human(x.bytes),
                format!("{}/s", human(x.rate())),
                x.path.as_str(),
            ),
            None => ("-", "-".into(), "-".into(), "-"),
        };
        let _ = writeln!(
            out,
            "{:<8} {:<40} {:<8} {:>7} {:<4} {:<4} {:>8} {:>9}  {}",
            r.pid,
            peer,
            time_of_day(r.since),
            clock(now - r.active),
            r.verb,
            kind,
            bytes,
            rate,
            path
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::row::Xfer;

    #[test]
    fn figures_read_well() {
        assert_eq!(human(512), "512");
        assert_eq!(human(1536), "1.5K");
        assert_eq!(human(10 << 20), "10.0M");
        assert_eq!(human(3 << 30), "3.0G");
        assert_eq!(clock(5), "0:05");
        assert_eq!(clock(125), "2:05");
        assert_eq!(clock(3723), "1:02:03");
        assert_eq!(clock(-4), "0:00");
        assert_eq!(time_of_day(3723), "01:02:03");
    }

    #[test]
    fn a_table() {
        let rows = vec![Row {
            pid: 7,
            peer: Some("192.0.2.1:4000".parse().unwrap()),
            since: 3600,
            active: 3700,
            at: 3705,
            logged_in: true,
            verb: "RETR".into(),
            transfer: Some(Xfer {
                kind: "retr".into(),
                path: "/pub/big".into(),
                bytes: 2 << 20,
                seconds: 2.0,
            }),
        }];
        let t = render(&rows, &["a note".into()], 3710);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "1 session at 01:01:50 UTC");
        assert_eq!(lines[1], "note: a note");
        assert!(lines[2].starts_with("PID "));
        assert!(lines[3].starts_with("7 "));
        for want in [
            "192.0.2.1:4000",
            "01:00:00",
            "0:10",
            "RETR",
            "retr",
            "2.0M",
            "1.0M/s",
            "/pub/big",
        ] {
            assert!(lines[3].contains(want), "{want} in {:?}", lines[3]);
        }
        assert_eq!(render(&[], &[], 0), "0 sessions at 00:00:00 UTC\n");
    }
}
