//! The metrics in Prometheus's text exposition format (version 0.0.4):
//! `# HELP` and `# TYPE` before each family, one sample a line, label
//! values quoted. Every family is always there, zeros included, so a
//! series never appears out of nowhere.

use std::fmt::Write as _;

use super::board::Gauges;
use super::counters::{DATA_FAILURES, KINDS, REFUSALS, RESULTS, Totals};

/// What the metrics show besides the counters.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `epoll` or `uring`.
    pub engine: &'static str,
    /// Sessions open now, and the most allowed.
    pub sessions: u64,
    pub max_sessions: u64,
    /// Each worker's gauges, and how many did not answer in time.
    pub workers: Vec<Gauges>,
    pub stale: usize,
    /// When the server started, seconds since the Unix epoch.
    pub started: i64,
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", quote(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value as the format wants it: backslash, quote and newline
/// escaped.
fn quote(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition.
pub fn render(t: &Totals, f: &Facts) -> String {
    let mut o = Out(String::with_capacity(8192));
    o.family(
        "aftpd_info",
        "gauge",
        "The server: its engine (uring or epoll).",
    );
    o.sample("aftpd_info", &[("engine", f.engine)], 1);
    o.one(
        "aftpd_start_time_seconds",
        "gauge",
        "When the server started, in seconds since the Unix epoch.",
        f.started.max(0) as u64,
    );
    o.one("aftpd_sessions", "gauge", "Sessions open now.", f.sessions);
    o.one(
        "aftpd_sessions_max",
        "gauge",
        "The most sessions open at once (--max-sessions).",
        f.max_sessions,
    );
    o.one(
        "aftpd_sessions_total",
        "counter",
        "Sessions started.",
        t.sessions,
    );
    o.family(
        "aftpd_refused_total",
        "counter",
        "Connections turned away, by reason.",
    );
    for (reason, n) in REFUSALS.iter().zip(&t.refused) {
        o.sample("aftpd_refused_total", &[("reason", reason)], *n);
    }
    o.family("aftpd_commands_total", "counter", "Commands read, by verb.");
    for (verb, n) in &t.commands {
        o.sample("aftpd_commands_total", &[("verb", verb)], *n);
    }
    o.one(
        "aftpd_sent_bytes_total",
        "counter",
        "Bytes sent on data connections.",
        t.sent,
    );
    o.one(
        "aftpd_received_bytes_total",
        "counter",
        "Bytes received on data connections.",
        t.received,
    );
    o.family(
        "aftpd_transfers_total",
        "counter",
        "Transfers ended, by kind and result.",
    );
    for (kind, results) in KINDS.iter().zip(&t.transfers) {
        for (result, n) in RESULTS.iter().zip(results) {
            o.sample(
                "aftpd_transfers_total",
                &[("kind", kind), ("result", result)],
                *n,
            );
        }
    }
    o.one(
        "aftpd_listed_entries_total",
        "counter",
        "Directory entries sent in listings.",
        t.listed,
    );
    o.family(
        "aftpd_data_connection_failures_total",
        "counter",
        "Data connections that could not be made, broke, or came from another address.",
    );
    for (reason, n) in DATA_FAILURES.iter().zip(&t.data_failures) {
        o.sample(
            "aftpd_data_connection_failures_total",
            &[("reason", reason)],
            *n,
        );
    }
    o.one(
        "aftpd_workers",
        "gauge",
        "Worker threads.",
        f.workers.len() as u64,
    );
    o.one(
        "aftpd_workers_stale",
        "gauge",
        "Workers that did not answer this scrape in time (their gauges are older).",
        f.stale as u64,
    );
    let per_worker = |o: &mut Out, name: &str, help: &str, get: &dyn Fn(&Gauges) -> u64| {
        o.family(name, "gauge", help);
        for (i, g) in f.workers.iter().enumerate() {
            o.sample(name, &[("worker", &i.to_string())], get(g));
        }
    };
    per_worker(
        &mut o,
        "aftpd_worker_sessions",
        "Sessions a worker holds.",
        &|g| g.sessions,
    );
    per_worker(
        &mut o,
        "aftpd_worker_transfers",
        "Transfers in progress on a worker.",
        &|g| g.transfers,
    );
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::counters::Stats;

    #[test]
    fn every_family_typed_once() {
        let t = Stats::new(2).totals();
        let f = Facts {
            engine: "uring",
            sessions: 3,
            max_sessions: 10,
            workers: vec![
                Gauges {
                    sessions: 2,
                    transfers: 1,
                },
                Gauges::default(),
            ],
            stale: 1,
            started: 1_700_000_000,
        };
        let text = render(&t, &f);
        assert!(text.ends_with('\n'));
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(typed.insert(name.to_owned()), "{name} typed twice");
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{line}: no TYPE before");
            }
        }
        assert!(text.contains("aftpd_info{engine=\"uring\"} 1\n"));
        assert!(text.contains("aftpd_workers_stale 1\n"));
        assert_eq!(quote("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
