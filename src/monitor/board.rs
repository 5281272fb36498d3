//! The status board: what the workers publish about their sessions when
//! asked, so that the monitor thread never touches a worker's sessions
//! and a worker never waits for the monitor. The monitor asks (a
//! generation number per worker, and a wake-up through the worker's
//! eventfd); a worker sees the question at the end of its loop turn (one
//! atomic load a turn), answers with a snapshot, and goes on. A worker
//! busy elsewhere answers late; the monitor waits a bounded time and
//! reports it as stale. Each side holds the one lock only to move a
//! snapshot in or out.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::row::Row;

/// A worker's gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub sessions: u64,
    /// Sessions with a transfer in progress.
    pub transfers: u64,
}

/// A question to the workers: its generation (even), and whether session
/// rows are wanted (the low bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask(u64);

impl Ask {
    pub fn rows(self) -> bool {
        self.0 & 1 == 1
    }
}

#[derive(Debug, Default)]
struct Answer {
    asked: u64,
    gauges: Gauges,
    rows: Vec<Row>,
}

#[derive(Debug, Default)]
struct Slot {
    asked: AtomicU64,
    answered: AtomicU64,
    answer: Mutex<Answer>,
}

/// The workers' answers, one slot each.
#[derive(Debug)]
pub struct Board {
    slots: Vec<Slot>,
    next: AtomicU64,
}

/// What the workers said.
#[derive(Debug, Default)]
pub struct Collected {
    /// Each worker's gauges (the last it gave, if it is late).
    pub gauges: Vec<Gauges>,
    pub rows: Vec<Row>,
    /// Workers that did not answer in time.
    pub stale: usize,
}

fn lock(m: &Mutex<Answer>) -> std::sync::MutexGuard<'_, Answer> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Board {
    pub fn new(workers: usize) -> Board {
        Board {
            slots: (0..workers).map(|_| Slot::default()).collect(),
            next: AtomicU64::new(0),
        }
    }

    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// Asks every worker; the caller wakes them.
    pub fn ask(&self, rows: bool) -> Ask {
        let generation = self.next.fetch_add(2, Ordering::Relaxed) + 2;
        let ask = generation | u64::from(rows);
        for s in &self.slots {
            s.asked.fetch_max(ask, Ordering::Release);
        }
        Ask(ask)
    }

    /// For worker `id`, at the end of a loop turn: the question not yet
    /// answered, if any.
    pub fn asked(&self, id: usize) -> Option<Ask> {
        let s = self.slots.get(id)?;
        let asked = s.asked.load(Ordering::Acquire);
        (asked > s.answered.load(Ordering::Relaxed)).then_some(Ask(asked))
    }

    /// Worker `id`'s answer to `ask`.
    pub fn answer(&self, id: usize, ask: Ask, gauges: Gauges, rows: Vec<Row>) {
        let Some(s) = self.slots.get(id) else {
            return;
        };
        let old = {
            let mut a = lock(&s.answer);
            a.asked = ask.0;
            a.gauges = gauges;
            std::mem::replace(&mut a.rows, rows)
        };
        s.answered.store(ask.0, Ordering::Release);
        // Unread rows of an earlier question are freed outside the lock.
        drop(old);
    }

    /// Waits up to `limit` for every worker's answer to `ask` (polling:
    /// the monitor thread alone waits here), then takes the answers.
    pub fn collect(&self, ask: Ask, limit: Duration) -> Collected {
        let deadline = Instant::now() + limit;
        let answered = |s: &Slot| s.answered.load(Ordering::Acquire) >= ask.0;
        while !self.slots.iter().all(answered) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut c = Collected::default();
        for s in &self.slots {
            let rows = {
                let mut a = lock(&s.answer);
                c.gauges.push(a.gauges);
                if a.asked >= ask.0 {
                    std::mem::take(&mut a.rows)
                } else {
                    c.stale += 1;
                    Vec::new()
                }
            };
            c.rows.extend(rows);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_and_answers() {
        let b = Board::new(2);
        assert_eq!(b.asked(0), None);
        let ask = b.ask(true);
        assert!(ask.rows());
        assert_eq!(b.asked(0), Some(ask));
        assert_eq!(b.asked(5), None);
        let g = Gauges {
            sessions: 1,
            transfers: 0,
        };
        let row = Row::parse("session pid=0 peer=- since=1 active=1 at=1 user=- cmd=- xfer=- path=- bytes=0 seconds=0.000").unwrap();
        b.answer(0, ask, g, vec![row.clone()]);
        assert_eq!(b.asked(0), None, "answered");
        // Worker 1 never answers: stale, after the bounded wait.
        let c = b.collect(ask, Duration::from_millis(20));
        assert_eq!((c.rows, c.stale), (vec![row], 1));
        assert_eq!(c.gauges, vec![g, Gauges::default()]);
        // A later question, gauges only.
        let ask2 = b.ask(false);
        assert!(!ask2.rows());
        assert_eq!(b.asked(1), Some(ask2));
        b.answer(0, ask2, g, Vec::new());
        b.answer(1, ask2, g, Vec::new());
        let c = b.collect(ask2, Duration::from_secs(5));
        assert_eq!(c.stale, 0);
        assert_eq!(c.gauges, vec![g, g]);
    }
}
