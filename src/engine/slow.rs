//! Slow readers, the public-archive case: thousands of downloads each
//! taken at a modem's or a home line's pace. Left alone, the kernel's
//! send-buffer autotuning parks megabytes of unsent data in each of
//! their sockets. A download that, over one second, went slower than
//! [`FAST`] gets `TCP_NOTSENT_LOWAT` of [`QUEUE`]: the socket reports
//! writable, and takes more, only while less than that is unsent. At
//! such a rate the extra wake-ups cost nothing; a bulk transfer never
//! gets the option, so its CPU per byte stays at the floor.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::net;

/// Slower than this over a second is a slow reader (bytes per second).
pub const FAST: u64 = 32 << 20;
/// Most unsent bytes kept queued for a slow reader.
pub const QUEUE: u32 = 512 << 10;
const WINDOW: Duration = Duration::from_secs(1);

/// Watches one download's pace.
#[derive(Debug, Default)]
pub struct Pace {
    /// The start of the current window, and the count sent then.
    mark: Option<(Instant, u64)>,
    /// The option is set (or could not be): nothing more to watch.
    settled: bool,
}

impl Pace {
    /// `sent` bytes have gone out by `now`.
    pub fn observe(&mut self, sock: &TcpStream, sent: u64, now: Instant) {
        if self.settled {
            return;
        }
        let Some((at, from)) = self.mark else {
            self.mark = Some((now, sent));
            return;
        };
        let elapsed = now.saturating_duration_since(at);
        if elapsed < WINDOW {
            return;
        }
        if slow(sent.saturating_sub(from), elapsed) {
            // Best effort: without the option the download only keeps
            // more memory.
            let _ = net::set_notsent_lowat(sock, QUEUE);
            self.settled = true;
        } else {
            self.mark = Some((now, sent));
        }
    }
}

/// Whether `bytes` in `elapsed` is below [`FAST`].
fn slow(bytes: u64, elapsed: Duration) -> bool {
    u128::from(bytes) * 1000 < u128::from(FAST) * elapsed.as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn the_rate_decides() {
        let s = Duration::from_secs(1);
        assert!(slow(1 << 20, s));
        assert!(slow(FAST - 1, s));
        assert!(!slow(FAST, s));
        assert!(!slow(FAST, Duration::from_millis(999)));
        assert!(slow(FAST, Duration::from_millis(1001)));
    }

    #[test]
    fn a_slow_download_gets_a_short_queue_and_a_fast_one_none() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (sock, _) = l.accept().unwrap();
        let t0 = Instant::now();
        let mut fast = Pace::default();
        fast.observe(&sock, 0, t0);
        fast.observe(&sock, FAST * 2, t0 + WINDOW);
        assert!(!fast.settled);
        assert_eq!(net::notsent_lowat(&sock).unwrap(), 0);
        let mut pace = Pace::default();
        pace.observe(&sock, FAST * 2, t0 + WINDOW);
        pace.observe(&sock, FAST * 2 + (1 << 20), t0 + WINDOW * 2);
        assert!(pace.settled);
        assert_eq!(net::notsent_lowat(&sock).unwrap(), QUEUE);
    }
}
