//! The supervisor's counters for the metrics: per worker (only that
//! worker adds to them, so additions never contend), summed when the
//! metrics are read. Refusals, rare, are counted once for the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::admission::Refusal;
use crate::core::session::{Record, TransferKind};
use crate::core::tally::Tally;

/// Why connections were turned away, as the metrics label them.
pub const REFUSALS: [&str; 5] = [
    "max-sessions",
    "max-per-ip",
    "out-of-files",
    "internal-error",
    // accept(2) refused with EPERM or EACCES: the seccomp filter, or a
    // security module's or firewall's rule.
    "sandbox",
];

/// Transfer kinds, as the metrics label them.
pub const KINDS: [&str; 5] = ["retr", "list", "nlst", "mlsd", "stor"];

/// Transfer results counted one by one (the log's tokens); anything
/// else is `other`, the last.
pub const RESULTS: [&str; 9] = [
    "ok",
    "aborted",
    "no-connection",
    "connection-lost",
    "timeout",
    "shrunk",
    "read-error",
    "control-closed",
    "other",
];

/// Data-connection failures: could not be made (connect or accept
/// failed), broke during a transfer, or came from another address than
/// the client's (closed at once).
pub const DATA_FAILURES: [&str; 3] = ["connect", "lost", "foreign-peer"];

fn kind_index(k: TransferKind) -> usize {
    match k {
        TransferKind::Retr => 0,
        TransferKind::List => 1,
        TransferKind::Nlst => 2,
        TransferKind::Mlsd => 3,
        TransferKind::Stor => 4,
    }
}

fn refusal_index(r: Refusal) -> usize {
    match r {
        Refusal::TooManySessions => 0,
        Refusal::TooManyFromAddress => 1,
        Refusal::OutOfFiles => 2,
        Refusal::Internal => 3,
    }
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// One worker's counts. Aligned apart, so two workers' counters never
/// share a cache line.
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Commands and listing entries, counted by the sessions themselves.
    pub tally: Arc<Tally>,
    sessions: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    transfers: [[AtomicU64; RESULTS.len()]; KINDS.len()],
    data_failures: [AtomicU64; DATA_FAILURES.len()],
}

impl Default for WorkerStats {
    fn default() -> WorkerStats {
        WorkerStats {
            tally: Arc::default(),
            sessions: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            transfers: std::array::from_fn(|_| zeros()),
            data_failures: zeros(),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl WorkerStats {
    /// A session's log record: sessions started, transfers ended.
    pub fn record(&self, r: &Record) {
        match r {
            Record::SessionStart { .. } => add(&self.sessions, 1),
            Record::Transfer(t) => {
                let result = RESULTS
                    .iter()
                    .position(|&x| x == t.result)
                    .unwrap_or(RESULTS.len() - 1);
                add(&self.transfers[kind_index(t.kind)][result], 1);
                match t.result {
                    "no-connection" => add(&self.data_failures[0], 1),
                    "connection-lost" => add(&self.data_failures[1], 1),
                    _ => {}
                }
            }
            Record::SessionEnd { .. } => {}
        }
    }

    /// Bytes sent on data connections, and data connections from other
    /// addresses closed unseen.
    pub fn data(&self, sent: u64, foreign: u32) {
        if sent > 0 {
            add(&self.sent, sent);
        }
        if foreign > 0 {
            add(&self.data_failures[2], u64::from(foreign));
        }
    }

    /// Bytes received on data connections (uploads).
    pub fn received(&self, n: u64) {
        add(&self.received, n);
    }
}

/// The process's counts.
#[derive(Debug)]
pub struct Stats {
    workers: Vec<WorkerStats>,
    refused: [AtomicU64; REFUSALS.len()],
}

/// The counts summed over the workers, at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub sessions: u64,
    pub sent: u64,
    pub received: u64,
    pub listed: u64,
    /// By verb, in `core::tally` order (`other` last).
    pub commands: Vec<(&'static str, u64)>,
    /// `[kind][result]`.
    pub transfers: Vec<Vec<u64>>,
    pub data_failures: Vec<u64>,
    pub refused: Vec<u64>,
}

impl Stats {
    pub fn new(workers: usize) -> Stats {
        Stats {
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            refused: zeros(),
        }
    }

    /// Worker `id`'s counters.
    pub fn worker(&self, id: usize) -> Option<&WorkerStats> {
        self.workers.get(id)
    }

    pub fn refused(&self, why: Refusal) {
        add(&self.refused[refusal_index(why)], 1);
    }

    /// An accept refused by the sandbox or a security rule.
    pub fn refused_by_sandbox(&self) {
        add(&self.refused[REFUSALS.len() - 1], 1);
    }

    /// Everything, summed.
    pub fn totals(&self) -> Totals {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut t = Totals {
            transfers: vec![vec![0; RESULTS.len()]; KINDS.len()],
            data_failures: vec![0; DATA_FAILURES.len()],
            refused: self.refused.iter().map(load).collect(),
            ..Totals::default()
        };
        for (i, w) in self.workers.iter().enumerate() {
            t.sessions += load(&w.sessions);
            t.sent += load(&w.sent);
            t.received += load(&w.received);
            t.listed += w.tally.listed_entries();
            if i == 0 {
                t.commands = w.tally.commands().collect();
            } else {
                for ((_, sum), (_, n)) in t.commands.iter_mut().zip(w.tally.commands()) {
                    *sum += n;
                }
            }
            for (sums, counts) in t.transfers.iter_mut().zip(&w.transfers) {
                for (sum, c) in sums.iter_mut().zip(counts) {
                    *sum += load(c);
                }
            }
            for (sum, c) in t.data_failures.iter_mut().zip(&w.data_failures) {
                *sum += load(c);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::session::TransferRecord;
    use crate::core::tally::Verb;
    use crate::core::vpath::VPath;
    use std::time::Duration;

    fn transfer(kind: TransferKind, result: &'static str) -> Record {
        Record::Transfer(TransferRecord {
            peer: None,
            kind,
            path: VPath::root(),
            bytes: 1,
            duration: Duration::ZERO,
            ascii: false,
            result,
        })
    }

    #[test]
    fn sums_over_workers() {
        let s = Stats::new(2);
        let (a, b) = (s.worker(0).unwrap(), s.worker(1).unwrap());
        assert!(s.worker(2).is_none());
        a.record(&Record::SessionStart { peer: None });
        b.record(&Record::SessionStart { peer: None });
        a.record(&transfer(TransferKind::Retr, "ok"));
        b.record(&transfer(TransferKind::Retr, "no-connection"));
        b.record(&transfer(TransferKind::Mlsd, "something-new"));
        a.data(100, 0);
        b.data(20, 3);
        b.received(5);
        a.tally.command(Verb::of(b"RETR"));
        b.tally.command(Verb::of(b"RETR"));
        b.tally.listed(4);
        s.refused(Refusal::TooManyFromAddress);
        s.refused_by_sandbox();
        let t = s.totals();
        assert_eq!((t.sessions, t.sent, t.received, t.listed), (2, 120, 5, 4));
        assert_eq!(t.transfers[0][0], 1);
        assert_eq!(t.transfers[0][2], 1);
        assert_eq!(t.transfers[3][RESULTS.len() - 1], 1);
        assert_eq!(t.data_failures, vec![1, 0, 3]);
        assert_eq!(t.refused, vec![0, 1, 0, 0, 1]);
        assert!(t.commands.contains(&("RETR", 2)));
        assert_eq!(std::mem::align_of::<WorkerStats>(), 128);
    }
}
