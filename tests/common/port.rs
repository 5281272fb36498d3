//! Loopback ports for the servers a test starts on a port it names.
//!
//! The kernel hands out ports from `ip_local_port_range` for every
//! `connect` and `bind(0)`, so a port found free there can be taken again,
//! by another test's client or passive listener, before the server binds
//! it; a client may then reach the wrong socket. These ports come from
//! below that range, which the kernel never picks by itself, and each is
//! handed out at most once per test process.

use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const LOW: u16 = 20_000;

/// A port below the ephemeral range that `ip` could bind a moment ago.
pub fn free_port(ip: IpAddr) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let top = ephemeral_low().max(LOW + 1_000);
    let span = u32::from(top - LOW);
    // Test binaries run one after another; a start that differs per
    // process keeps a port's TIME_WAIT leftovers out of the next binary.
    let start = std::process::id();
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + ((start.wrapping_add(n) % span) as u16);
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip} between {LOW} and {top}");
}

/// The first port of the kernel's ephemeral range (32768 by default).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
