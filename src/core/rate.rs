//! Bandwidth limits as token buckets, in the core's terms: the time is an
//! input (an `Instant` handed in), nothing here reads a clock or waits.
//! The engines' one data path asks a transfer's [`Limiter`] how much it
//! may send now ([`Allow::Go`]) or until when to wait ([`Allow::Wait`]),
//! and tells it what went out ([`Limiter::spend`]).
//!
//! A bucket is kept as the instant it would be empty (GCRA's "theoretical
//! arrival time"), in nanoseconds since an epoch: taking `n` bytes moves
//! that instant on by `n / rate`, and the bytes may go once it is no
//! longer in the future. A bucket holds at most [`TOLERANCE`] worth of
//! bytes, which absorbs a late timer without losing throughput. A shared
//! bucket (per client address, all downloads) is one `AtomicU64` updated
//! by compare-and-swap, so workers share it without a lock.
//!
//! Fairness: a transfer reserves a [`quantum`](Rate::quantum) at a time and
//! holds at most one reservation that is not yet due, so transfers under
//! one shared bucket take turns in the order they asked: with N of them
//! each gets about 1/N, a new one is served after at most one round, and
//! one whose client reads slowly (it waits for its socket with bytes
//! already granted, and asks for no more) leaves its share to the others.
//! A transfer under several buckets passes them narrowest first (its own,
//! its address's, the total), waiting at each, so it holds no place in a
//! wide bucket while a narrow one makes it wait.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How much a bucket holds: this long at its rate. More than a worker's
/// shortest timer (10 ms), so a transfer woken late loses nothing.
pub const TOLERANCE: Duration = Duration::from_millis(50);
/// What a transfer reserves at a time: this long at its narrowest rate,
/// within [`MIN_QUANTUM`] and [`MAX_QUANTUM`].
pub const QUANTUM_TIME: Duration = Duration::from_millis(20);
pub const MIN_QUANTUM: u64 = 1024;
pub const MAX_QUANTUM: u64 = 1 << 20;
/// The most a transfer is granted at once (a late wake-up catching up).
pub const MAX_CREDIT: u64 = 4 << 20;
/// The slowest rate an option accepts: 1K.
pub const MIN_RATE: u64 = 1024;
/// The fastest: 1024G, far beyond any link.
pub const MAX_RATE: u64 = 1 << 40;

const NANOS: u128 = 1_000_000_000;

/// Bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(u64);

impl Rate {
    /// `bytes` per second, [`MIN_RATE`] to [`MAX_RATE`].
    pub fn new(bytes: u64) -> Option<Rate> {
        (MIN_RATE..=MAX_RATE)
            .contains(&bytes)
            .then_some(Rate(bytes))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// Nanoseconds `n` bytes take at this rate, rounded up.
    fn nanos(self, n: u64) -> u64 {
        let ns = (u128::from(n) * NANOS).div_ceil(u128::from(self.0));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Bytes this rate moves in `d`.
    fn bytes_in(self, d: Duration) -> u64 {
        let b = u128::from(self.0) * d.as_nanos() / NANOS;
        u64::try_from(b).unwrap_or(u64::MAX)
    }

    /// What a transfer limited to this rate reserves at a time.
    pub fn quantum(self) -> u64 {
        self.bytes_in(QUANTUM_TIME).clamp(MIN_QUANTUM, MAX_QUANTUM)
    }
}

/// As [`parse_rate`] reads it: the largest unit that divides it.
impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = [(30, 'G'), (20, 'M'), (10, 'K')]
            .into_iter()
            .find(|(shift, _)| self.0.is_multiple_of(1 << shift));
        match unit {
            Some((shift, c)) => write!(f, "{}{c}", self.0 >> shift),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Reads a rate: bytes per second, with `K`, `M` or `G` for 1024,
/// 1024² or 1024³ (`512K`, `10M`); the error says what was wanted.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || {
        "want bytes per second, 1K to 1024G, with K, M or G for 1024, 1024², 1024³ (e.g. 512K, 10M)"
            .to_owned()
    };
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, ' '),
    };
    let shift = match unit {
        ' ' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(1 << shift).ok_or_else(bad)?;
    Rate::new(bytes).ok_or_else(bad)
}

/// Moves a bucket's empty instant on for `cost` nanoseconds taken at
/// `now`: never further back than [`TOLERANCE`] before now (a bucket
/// holds no more than that).
fn advance(empty_at: u64, now: u64, tolerance: u64, cost: u64) -> u64 {
    empty_at
        .max(now.saturating_sub(tolerance))
        .saturating_add(cost)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Where the buckets' time starts: a second after the epoch, so that a
/// bucket full at the epoch (empty a tolerance earlier) needs no
/// negative instant.
const OFFSET: u64 = 1_000_000_000;

/// `now` in the buckets' nanoseconds.
fn since(epoch: Instant, now: Instant) -> u64 {
    nanos(now.saturating_duration_since(epoch)).saturating_add(OFFSET)
}

/// A bucket shared by transfers on any worker: all downloads, or one
/// client address's.
#[derive(Debug)]
pub struct Bucket {
    rate: Rate,
    /// When the bucket is empty, in nanoseconds since the epoch.
    empty_at: AtomicU64,
}

impl Bucket {
    /// A full bucket at `now` (nanoseconds since the epoch).
    fn new(rate: Rate, now: u64) -> Bucket {
        Bucket {
            rate,
            empty_at: AtomicU64::new(now.saturating_sub(nanos(TOLERANCE))),
        }
    }

    /// Takes `n` bytes at `now`: when they may go.
    fn reserve(&self, n: u64, now: u64) -> u64 {
        let (tol, cost) = (nanos(TOLERANCE), self.rate.nanos(n));
        let mut cur = self.empty_at.load(Ordering::Relaxed);
        loop {
            let next = advance(cur, now, tol, cost);
            match self.empty_at.compare_exchange_weak(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }
}

/// One of the buckets a transfer passes.
#[derive(Debug)]
enum Stage {
    /// The transfer's own (`--max-rate`).
    Own {
        rate: Rate,
        empty_at: u64,
    },
    Shared(Arc<Bucket>),
}

impl Stage {
    fn rate(&self) -> Rate {
        match self {
            Stage::Own { rate, .. } => *rate,
            Stage::Shared(b) => b.rate,
        }
    }

    fn reserve(&mut self, n: u64, now: u64) -> u64 {
        match self {
            Stage::Own { rate, empty_at } => {
                *empty_at = advance(*empty_at, now, nanos(TOLERANCE), rate.nanos(n));
                *empty_at
            }
            Stage::Shared(b) => b.reserve(n, now),
        }
    }
}

/// What a transfer may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Send up to this many bytes (at least one).
    Go(u64),
    /// Send nothing before this instant.
    Wait(Instant),
}

/// One transfer's limits: its own bucket and the shared ones it passes,
/// narrowest first.
#[derive(Debug)]
pub struct Limiter {
    epoch: Instant,
    stages: Vec<Stage>,
    quantum: u64,
    /// Granted by every stage: may be sent now.
    credit: u64,
    /// Reserved by the stages before `stage`, on its way through.
    pending: u64,
    stage: usize,
    /// When the reservation at `stage - 1` is due.
    due: Option<u64>,
}

impl Limiter {
    fn new(epoch: Instant, stages: Vec<Stage>) -> Option<Limiter> {
        let narrowest = stages.iter().map(Stage::rate).min()?;
        Some(Limiter {
            epoch,
            quantum: narrowest.quantum(),
            stages,
            credit: 0,
            pending: 0,
            stage: 0,
            due: None,
        })
    }

    fn at(&self, now: Instant) -> u64 {
        since(self.epoch, now)
    }

    fn instant(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns.saturating_sub(OFFSET))
    }

    /// How much may be sent at `now`, or until when to wait.
    pub fn allow(&mut self, now: Instant) -> Allow {
        // Bytes granted and not yet sent (the socket was full) come first:
        // a transfer whose client reads slowly asks for no more meanwhile.
        if self.credit > 0 {
            return Allow::Go(self.credit);
        }
        let now_ns = self.at(now);
        // Each round reserves a quantum in one stage, or grants what
        // passed them all: bounded by the credit cap, and in practice by
        // the first reservation that is not yet due (a bucket holds no
        // more than its tolerance).
        let rounds = (self.stages.len() + 1) * (MAX_CREDIT / self.quantum + 1) as usize;
        for _ in 0..rounds {
            if self.credit >= MAX_CREDIT {
                break;
            }
            if let Some(due) = self.due {
                if due > now_ns {
                    break;
                }
                self.due = None;
            }
            if self.stage == self.stages.len() {
                self.credit += std::mem::take(&mut self.pending);
                self.stage = 0;
                continue;
            }
            if self.stage == 0 {
                self.pending = self.quantum;
            }
            let pending = self.pending;
            let due = self.stages[self.stage].reserve(pending, now_ns);
            self.stage += 1;
            if due > now_ns {
                self.due = Some(due);
            }
        }
        match (self.credit, self.due) {
            (0, Some(due)) => Allow::Wait(self.instant(due)),
            // Only when the credit cap is 0, never: a round always grants.
            (0, None) => Allow::Wait(now),
            (n, _) => Allow::Go(n),
        }
    }

    /// `n` bytes went out (at most what [`Limiter::allow`] granted).
    pub fn spend(&mut self, n: u64) {
        self.credit = self.credit.saturating_sub(n);
    }
}

/// Which way a transfer's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// To the client (RETR, listings): every limit applies.
    Download,
    /// From the client: the per-transfer and per-address limits apply
    /// (separately from downloads'), not the total of downloads.
    Upload,
}

/// Per-address buckets looked at again after this many new ones, so the
/// map of addresses holds no more than about twice those in use.
const PRUNE_EVERY: usize = 64;

/// A server's limits: per transfer, per client address, all downloads.
/// The per-address buckets live as long as a transfer of that address
/// holds them.
#[derive(Debug)]
pub struct RateLimits {
    epoch: Instant,
    per_transfer: Option<Rate>,
    per_ip: Option<Rate>,
    total: Option<Arc<Bucket>>,
    ips: Mutex<Addresses>,
}

#[derive(Debug, Default)]
struct Addresses {
    map: HashMap<(IpAddr, Direction), Weak<Bucket>>,
    prune_at: usize,
}

impl RateLimits {
    /// The limits, from `epoch` (the time of the server's start: the
    /// buckets count nanoseconds since then).
    pub fn new(
        per_transfer: Option<Rate>,
        per_ip: Option<Rate>,
        total: Option<Rate>,
        epoch: Instant,
    ) -> RateLimits {
        RateLimits {
            epoch,
            per_transfer,
            per_ip,
            total: total.map(|r| Arc::new(Bucket::new(r, OFFSET))),
            ips: Mutex::new(Addresses {
                map: HashMap::new(),
                prune_at: PRUNE_EVERY,
            }),
        }
    }

    /// No limit at all.
    pub fn none(epoch: Instant) -> RateLimits {
        RateLimits::new(None, None, None, epoch)
    }

    pub fn is_unlimited(&self) -> bool {
        self.per_transfer.is_none() && self.per_ip.is_none() && self.total.is_none()
    }

    /// The limiter of a new transfer of the client at `ip` starting at
    /// `now`, or `None` when nothing limits it.
    pub fn limiter(&self, ip: Option<IpAddr>, dir: Direction, now: Instant) -> Option<Limiter> {
        if self.is_unlimited() {
            return None;
        }
        let now_ns = since(self.epoch, now);
        let mut stages = Vec::with_capacity(3);
        if let Some(rate) = self.per_transfer {
            // Full: a transfer may start at once.
            let empty_at = now_ns.saturating_sub(nanos(TOLERANCE));
            stages.push(Stage::Own { rate, empty_at });
        }
        if let (Some(rate), Some(ip)) = (self.per_ip, ip) {
            stages.push(Stage::Shared(self.address(
                ip.to_canonical(),
                dir,
                rate,
                now_ns,
            )));
        }
        if let (Some(b), Direction::Download) = (&self.total, dir) {
            stages.push(Stage::Shared(Arc::clone(b)));
        }
        Limiter::new(self.epoch, stages)
    }

    /// The bucket of `ip`'s transfers in direction `dir`.
    fn address(&self, ip: IpAddr, dir: Direction, rate: Rate, now: u64) -> Arc<Bucket> {
        let mut a = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = a.map.get(&(ip, dir)).and_then(Weak::upgrade) {
            return b;
        }
        let b = Arc::new(Bucket::new(rate, now));
        a.map.insert((ip, dir), Arc::downgrade(&b));
        if a.map.len() >= a.prune_at {
            a.map.retain(|_, w| w.strong_count() > 0);
            a.prune_at = (a.map.len() * 2).max(PRUNE_EVERY);
        }
        b
    }

    /// The limits set, for the start line: `max-rate=10M
    /// max-rate-total=100M`, or nothing.
    pub fn describe(&self) -> String {
        [
            ("max-rate", self.per_transfer),
            ("max-rate-per-ip", self.per_ip),
            ("max-rate-total", self.total.as_ref().map(|b| b.rate)),
        ]
        .into_iter()
        .filter_map(|(name, r)| r.map(|r| format!(" {name}={r}")))
        .collect()
    }

    /// Per-address buckets remembered (for tests).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.ips.lock().map(|a| a.map.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn rate(s: &str) -> Rate {
        parse_rate(s).unwrap()
    }

    #[test]
    fn rates_read() {
        assert_eq!(rate("1024").get(), 1024);
        assert_eq!(rate("1K").get(), 1024);
        assert_eq!(rate("512k").get(), 512 * 1024);
        assert_eq!(rate("10M").get(), 10 * MIB);
        assert_eq!(rate("1G").get(), 1 << 30);
        assert_eq!(rate("1024G").get(), MAX_RATE);
        for s in ["1536", "1K", "1536K", "10M", "3G", "1024G"] {
            assert_eq!(rate(s).to_string(), s);
        }
        let limits = RateLimits::new(Some(rate("1M")), None, Some(rate("2048K")), Instant::now());
        assert_eq!(limits.describe(), " max-rate=1M max-rate-total=2M");
        for bad in [
            "",
            "K",
            "0",
            "1023",
            "10X",
            "-5",
            "1.5M",
            " 1M",
            "1M ",
            "1025G",
            "99999999999999999999",
            "18446744073709551615G",
            "1KB",
        ] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.starts_with("want bytes per second"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn quanta_follow_the_rate() {
        assert_eq!(rate("1K").quantum(), MIN_QUANTUM);
        assert_eq!(rate("10M").quantum(), 10 * MIB / 50);
        assert_eq!(rate("1G").quantum(), MAX_QUANTUM);
        assert_eq!(rate("1M").nanos(1 << 20), 1_000_000_000);
        assert_eq!(Rate(3).nanos(1), 333_333_334, "rounded up");
    }

    /// One simulated transfer: a limiter, and a client that takes at most
    /// `take` bytes per turn (its socket), `u64::MAX` for a fast one.
    struct Sim {
        limiter: Limiter,
        take: u64,
        wake: Instant,
        got: u64,
        active: bool,
    }

    /// Runs transfers as a worker would: the one due first goes, sends
    /// what it may and the socket takes, and waits for its tokens (a
    /// timer, never sooner than 10 ms) or, with a full socket, for 5 ms.
    /// `until` bounds the run; `each` sees every step.
    fn run(
        sims: &mut [Sim],
        start: Instant,
        until: Duration,
        mut each: impl FnMut(&[Sim], Instant),
    ) {
        let end = start + until;
        for _ in 0..10_000_000 {
            let Some(i) = (0..sims.len())
                .filter(|&i| sims[i].active)
                .min_by_key(|&i| (sims[i].wake, i))
            else {
                return;
            };
            let now = sims[i].wake;
            if now >= end {
                return;
            }
            let s = &mut sims[i];
            match s.limiter.allow(now) {
                Allow::Go(n) => {
                    assert!(n > 0);
                    let sent = n.min(s.take);
                    s.limiter.spend(sent);
                    s.got += sent;
                    // A full socket is writable again a little later; an
                    // empty grant asks again at once (next round).
                    s.wake = now
                        + if sent < n {
                            Duration::from_millis(5)
                        } else {
                            Duration::from_micros(50)
                        };
                }
                Allow::Wait(t) => {
                    assert!(t > now, "a wait must be for later");
                    s.wake = t.max(now + Duration::from_millis(10));
                }
            }
            each(sims, now);
        }
        panic!("the simulation did not end");
    }

    fn sim(limiter: Limiter, start: Instant) -> Sim {
        Sim {
            limiter,
            take: u64::MAX,
            wake: start,
            got: 0,
            active: true,
        }
    }

    fn jain(xs: &[f64]) -> f64 {
        let sum: f64 = xs.iter().sum();
        let squares: f64 = xs.iter().map(|x| x * x).sum();
        sum * sum / (xs.len() as f64 * squares)
    }

    #[test]
    fn one_transfer_keeps_its_rate() {
        let start = Instant::now();
        for r in ["1K", "100K", "10M", "300M"] {
            let limits = RateLimits::new(Some(rate(r)), None, None, start);
            let l = limits.limiter(None, Direction::Download, start).unwrap();
            let mut sims = [sim(l, start)];
            run(&mut sims, start, Duration::from_secs(10), |_, _| {});
            let want = rate(r).get() as f64 * 10.0;
            let got = sims[0].got as f64;
            // The tolerance's head start and the last quantum at most.
            let slack = rate(r).bytes_in(TOLERANCE) as f64 + rate(r).quantum() as f64;
            assert!((got - want).abs() <= slack, "{r}: {got} bytes, want {want}");
        }
    }

    #[test]
    fn unlimited_is_none() {
        let start = Instant::now();
        let limits = RateLimits::none(start);
        assert!(limits.is_unlimited());
        assert!(limits.limiter(None, Direction::Download, start).is_none());
        // A per-address limit without an address: nothing to limit.
        let limits = RateLimits::new(None, Some(rate("1M")), None, start);
        assert!(limits.limiter(None, Direction::Download, start).is_none());
        // The total is for downloads.
        let limits = RateLimits::new(None, None, Some(rate("1M")), start);
        assert!(limits.limiter(None, Direction::Upload, start).is_none());
        assert!(limits.limiter(None, Direction::Download, start).is_some());
    }

    /// Ten transfers under one total limit share it evenly, in sum no more
    /// than the limit.
    #[test]
    fn a_total_is_shared_fairly() {
        let start = Instant::now();
        let limits = RateLimits::new(None, None, Some(rate("10M")), start);
        let mut sims: Vec<Sim> = (0..10)
            .map(|i| {
                let at = start + Duration::from_millis(i * 7);
                let mut s = sim(
                    limits.limiter(None, Direction::Download, at).unwrap(),
                    start,
                );
                s.wake = at;
                s
            })
            .collect();
        run(&mut sims, start, Duration::from_secs(10), |_, _| {});
        let got: Vec<f64> = sims.iter().map(|s| s.got as f64).collect();
        let sum: f64 = got.iter().sum();
        let want = 10.0 * 10.0 * MIB as f64;
        assert!(sum <= want + (MIB as f64), "{sum} > {want}");
        assert!(sum >= want * 0.97, "{sum} < {want}");
        assert!(jain(&got) >= 0.99, "{got:?}: {}", jain(&got));
    }

    /// A transfer joining nine others gets its share within a second.
    #[test]
    fn a_newcomer_gets_its_share_at_once() {
        let start = Instant::now();
        let limits = RateLimits::new(None, None, Some(rate("10M")), start);
        let mut sims: Vec<Sim> = (0..9)
            .map(|_| {
                sim(
                    limits.limiter(None, Direction::Download, start).unwrap(),
                    start,
                )
            })
            .collect();
        run(&mut sims, start, Duration::from_secs(3), |_, _| {});
        let joined = start + Duration::from_secs(3);
        let mut late = sim(
            limits.limiter(None, Direction::Download, joined).unwrap(),
            joined,
        );
        late.wake = joined;
        sims.push(late);
        for s in &mut sims {
            s.wake = s.wake.max(joined);
        }
        let (mut first, mut at_one_second) = (None, None);
        run(&mut sims, joined, Duration::from_secs(2), |sims, now| {
            if first.is_none() && sims[9].got > 0 {
                first = Some(now - joined);
            }
            if at_one_second.is_none() && now >= joined + Duration::from_secs(1) {
                at_one_second = Some(sims[9].got as f64);
            }
        });
        let first = first.unwrap();
        assert!(
            first <= Duration::from_millis(500),
            "first bytes after {first:?}"
        );
        let got = at_one_second.unwrap();
        let share = MIB as f64; // 10M over 10, for a second
        assert!(
            got >= 0.6 * share,
            "{got} in its first second, share {share}"
        );
    }

    /// A client that reads slowly leaves what it does not use to the
    /// others.
    #[test]
    fn a_slow_reader_leaves_its_share() {
        let start = Instant::now();
        let limits = RateLimits::new(None, None, Some(rate("10M")), start);
        let mut sims: Vec<Sim> = (0..5)
            .map(|_| {
                sim(
                    limits.limiter(None, Direction::Download, start).unwrap(),
                    start,
                )
            })
            .collect();
        // 4 KiB every 5 ms at most: 800 KiB/s, well under its 2M share.
        sims[0].take = 4096;
        run(&mut sims, start, Duration::from_secs(10), |_, _| {});
        let slow = sims[0].got as f64;
        let fast: f64 = sims[1..].iter().map(|s| s.got as f64).sum();
        let total = 100.0 * MIB as f64;
        assert!(
            slow <= 10.0 * 819_200.0 + rate("10M").quantum() as f64,
            "{slow}"
        );
        assert!(fast + slow >= 0.95 * total, "{fast} + {slow} of {total}");
        let each: Vec<f64> = sims[1..].iter().map(|s| s.got as f64).collect();
        assert!(jain(&each) >= 0.99, "{each:?}");
    }

    /// Under its own limit and a wider total, a transfer keeps its own
    /// rate, and the total is charged only for what it sends.
    #[test]
    fn narrow_first() {
        let start = Instant::now();
        let limits = RateLimits::new(
            Some(rate("1M")),
            Some(rate("3M")),
            Some(rate("100M")),
            start,
        );
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut sims: Vec<Sim> = (0..5)
            .map(|_| {
                sim(
                    limits
                        .limiter(Some(ip), Direction::Download, start)
                        .unwrap(),
                    start,
                )
            })
            .collect();
        // Another address, unlimited by the first's per-address bucket.
        let other: IpAddr = "::ffff:192.0.2.8".parse().unwrap();
        sims.push(sim(
            limits
                .limiter(Some(other), Direction::Download, start)
                .unwrap(),
            start,
        ));
        run(&mut sims, start, Duration::from_secs(10), |_, _| {});
        let same: f64 = sims[..5].iter().map(|s| s.got as f64).sum();
        let per_ip = 30.0 * MIB as f64;
        assert!(
            (same - per_ip).abs() <= 0.03 * per_ip,
            "{same} from one address"
        );
        let other_got = sims[5].got as f64;
        let own = 10.0 * MIB as f64;
        assert!((other_got - own).abs() <= 0.03 * own, "{other_got}");
        // Two transfers under their own 1M and a total of 1.5M share the
        // total whole: waiting for its own bucket, neither holds a place
        // in the total's.
        let limits = RateLimits::new(Some(rate("1M")), None, Some(rate("1536K")), start);
        let mut sims: Vec<Sim> = (0..2)
            .map(|_| {
                sim(
                    limits.limiter(None, Direction::Download, start).unwrap(),
                    start,
                )
            })
            .collect();
        run(&mut sims, start, Duration::from_secs(10), |_, _| {});
        let sum: f64 = sims.iter().map(|s| s.got as f64).sum();
        let total = 15.0 * MIB as f64;
        assert!((sum - total).abs() <= 0.03 * total, "{sum} of {total}");
    }

    /// The buckets of addresses no transfer uses any more are forgotten,
    /// and one address is one bucket, IPv4-mapped or not.
    #[test]
    fn address_buckets_are_bounded() {
        let start = Instant::now();
        let limits = RateLimits::new(None, Some(rate("1M")), None, start);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let mut x = limits.limiter(Some(a), Direction::Download, start).unwrap();
        let mut y = limits
            .limiter(Some(mapped), Direction::Download, start)
            .unwrap();
        let Allow::Go(gx) = x.allow(start) else {
            panic!("a full bucket grants");
        };
        assert!(gx <= rate("1M").bytes_in(TOLERANCE) + rate("1M").quantum());
        // One bucket: the first took what it held.
        assert!(matches!(y.allow(start), Allow::Wait(_)));
        assert_eq!(x.allow(start), Allow::Go(gx), "granted bytes stay granted");
        x.spend(gx);
        assert!(matches!(x.allow(start), Allow::Wait(_)));
        // Uploads have buckets of their own.
        let mut up = limits.limiter(Some(a), Direction::Upload, start).unwrap();
        assert!(matches!(up.allow(start), Allow::Go(_)));
        drop((x, y, up));
        for i in 0..10_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let l = limits.limiter(Some(ip), Direction::Download, start);
            assert!(l.is_some());
            assert!(
                limits.addresses() <= 2 * PRUNE_EVERY,
                "{}",
                limits.addresses()
            );
        }
    }

    #[test]
    fn waits_name_the_instant() {
        let start = Instant::now();
        let limits = RateLimits::new(Some(rate("1K")), None, None, start);
        let mut l = limits.limiter(None, Direction::Download, start).unwrap();
        // A full 1K bucket holds 51 bytes: the first kilobyte is due in
        // 950 ms.
        match l.allow(start) {
            Allow::Wait(t) => {
                let d = t - start;
                assert!(
                    d > Duration::from_millis(940) && d < Duration::from_millis(960),
                    "{d:?}"
                );
                assert_eq!(l.allow(t), Allow::Go(1024));
            }
            other => panic!("{other:?}"),
        }
    }
}
