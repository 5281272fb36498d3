//! Admission limits shared by every worker: sessions in all, sessions per
//! client address, passive listeners per client address. A [`Permit`] is
//! held for the life of a session, a [`PassivePermit`] for the life of a
//! passive listener; each gives its place back when dropped, whichever way
//! it ends (even by a panic), so the counts cannot leak.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The limits and the current counts.
#[derive(Debug)]
pub struct Limits {
    max_sessions: usize,
    /// 0: no per-address limit.
    max_per_ip: u32,
    sessions: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Passive listeners one address may hold at once; 0: no limit.
    max_passive_per_ip: u32,
    passive: Mutex<HashMap<IpAddr, u32>>,
}

/// One passive listener's place in the per-address count.
#[derive(Debug)]
pub struct PassivePermit {
    limits: Arc<Limits>,
    ip: IpAddr,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManySessions,
    TooManyFromAddress,
    /// The process is out of file descriptors.
    OutOfFiles,
    /// A session could not be set up (a bug, caught).
    Internal,
}

impl Refusal {
    /// The reply written before closing the connection.
    pub fn reply(self) -> &'static [u8] {
        match self {
            Refusal::TooManySessions => b"421 Too many users, try again later.\r\n",
            Refusal::TooManyFromAddress => {
                b"421 Too many connections from your address, try again later.\r\n"
            }
            Refusal::OutOfFiles => b"421 Server out of resources, try again later.\r\n",
            Refusal::Internal => b"421 Internal error, closing control connection.\r\n",
        }
    }

    /// For the log.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooManySessions => "max-sessions",
            Refusal::TooManyFromAddress => "max-per-ip",
            Refusal::OutOfFiles => "out-of-files",
            Refusal::Internal => "internal-error",
        }
    }
}

/// One admitted session's place in the counts.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    pub fn new(max_sessions: usize, max_per_ip: u32) -> Limits {
        Limits {
            max_sessions,
            max_per_ip,
            sessions: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            max_passive_per_ip: max_per_ip,
            passive: Mutex::new(HashMap::new()),
        }
    }

    /// The same limits, with passive listeners per address capped so that
    /// one address cannot hold a range of `ports` passive ports: at most
    /// a quarter of them (and never more than its sessions).
    pub fn with_passive_ports(mut self, ports: Option<(u16, u16)>) -> Limits {
        if let Some((lo, hi)) = ports {
            let quarter = ((u32::from(hi - lo) + 1) / 4).max(1);
            self.max_passive_per_ip = match self.max_per_ip {
                0 => quarter,
                n => n.min(quarter),
            };
        }
        self
    }

    /// A place for one more passive listener of the client at `ip`, or
    /// `None` when it holds its share already.
    pub fn passive(self: &Arc<Self>, ip: IpAddr) -> Option<PassivePermit> {
        let ip = ip.to_canonical();
        if self.max_passive_per_ip > 0 {
            let mut map = lock(&self.passive);
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_passive_per_ip {
                return None;
            }
            *n += 1;
        }
        Some(PassivePermit {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Admits a session from `ip` (canonical: IPv4-mapped addresses count
    /// as IPv4), or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let ip = ip.to_canonical();
        // Reserve a global place first: cheap, and most refusals under load
        // are global.
        let before = self.sessions.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_sessions {
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManySessions);
        }
        if self.max_per_ip > 0 {
            let mut map = self.map();
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                if *n == 0 {
                    map.remove(&ip);
                }
                drop(map);
                self.sessions.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::TooManyFromAddress);
            }
            *n += 1;
        }
        Ok(Permit {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Sessions open now, over all workers.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    fn map(&self) -> MutexGuard<'_, HashMap<IpAddr, u32>> {
        lock(&self.per_ip)
    }

    fn release(&self, ip: IpAddr) {
        if self.max_per_ip > 0 {
            let mut map = self.map();
            if let Some(n) = map.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        self.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

impl Drop for PassivePermit {
    fn drop(&mut self) {
        if self.limits.max_passive_per_ip > 0 {
            let mut map = lock(&self.limits.passive);
            if let Some(n) = map.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

// A panic elsewhere while the lock was held must not wedge admission: the
// maps hold plain counts, still meaningful.
fn lock(m: &Mutex<HashMap<IpAddr, u32>>) -> MutexGuard<'_, HashMap<IpAddr, u32>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Exponential back-off for `accept` when the process or system is out of
/// file descriptors: stop polling the listeners for a while instead of
/// spinning on a listener that stays readable.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const MIN: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Backoff {
        Backoff { next: Self::MIN }
    }

    /// How long to pause now; the next pause is twice as long, up to MAX.
    pub fn pause(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// An accept succeeded: start again from MIN next time.
    pub fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_global() {
        let l = Arc::new(Limits::new(3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let c: IpAddr = "2001:db8::1".parse().unwrap();
        let p1 = l.admit(a).unwrap();
        let p2 = l.admit(b).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refusal::TooManyFromAddress);
        let p3 = l.admit(c).unwrap();
        assert_eq!(l.admit(c).unwrap_err(), Refusal::TooManySessions);
        assert_eq!(l.sessions(), 3);
        drop(p1);
        let p4 = l.admit(a).unwrap();
        drop((p2, p3, p4));
        assert_eq!(l.sessions(), 0);
        assert!(l.map().is_empty());
    }

    #[test]
    fn no_per_ip_limit() {
        let l = Arc::new(Limits::new(100, 0));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let ps: Vec<_> = (0..100).map(|_| l.admit(a).unwrap()).collect();
        assert_eq!(l.admit(a).unwrap_err(), Refusal::TooManySessions);
        drop(ps);
        assert_eq!(l.sessions(), 0);
    }

    #[test]
    fn passive_listeners_per_address() {
        let l = Arc::new(Limits::new(100, 50).with_passive_ports(Some((50000, 50011))));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        // A quarter of 12 ports.
        let held: Vec<_> = (0..3).map(|_| l.passive(a).unwrap()).collect();
        assert!(l.passive(a).is_none());
        assert!(l.passive(b).is_some());
        drop(held);
        assert!(l.passive(a).is_some());
        // Without a range: the per-address session limit.
        let l = Arc::new(Limits::new(100, 2));
        let _p = (l.passive(a).unwrap(), l.passive(a).unwrap());
        assert!(l.passive(a).is_none());
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let mut b = Backoff::new();
        assert_eq!(b.pause(), Duration::from_millis(100));
        assert_eq!(b.pause(), Duration::from_millis(200));
        for _ in 0..10 {
            b.pause();
        }
        assert_eq!(b.pause(), Backoff::MAX);
        b.reset();
        assert_eq!(b.pause(), Backoff::MIN);
    }
}
