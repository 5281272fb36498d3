//! Listening sockets and accepted control connections.
//!
//! Each worker binds its own listener for every `--listen` address with
//! SO_REUSEPORT, and the kernel spreads new connections over the workers'
//! accept queues by a hash of the 4-tuple. Compared with one shared
//! listener registered with EPOLLEXCLUSIVE in every worker, this has no
//! shared accept queue and no wake-up races (EPOLLEXCLUSIVE can still wake
//! several waiters, and tends to favour the same recently active worker),
//! and each worker's listener set is private to it, which a future
//! io_uring worker with its own multishot accept wants too. The cost: a
//! worker that is slow for a moment holds its share of new connections
//! until it gets back to them; workers never block, so that moment is short.
//! All listeners are bound before privileges are dropped (port 21).
//!
//! Under socket activation nothing is bound here: the sockets the service
//! manager passed are shared by all workers instead (see
//! [`super::activation`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto, sockopt};

/// The backlog of each listener (the kernel caps it at somaxconn).
const BACKLOG: i32 = 1024;

/// The addresses to listen on: `given`, or `[::]:21` (root) / `[::]:2121`.
pub fn addresses(given: &[SocketAddr], root: bool) -> Vec<SocketAddr> {
    if given.is_empty() {
        let port = if root { 21 } else { 2121 };
        vec![SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)]
    } else {
        given.to_vec()
    }
}

/// Binds `workers` listeners on each address: `result[w]` is worker `w`'s
/// set, in the order of `addrs`. Port 0 means one ephemeral port shared by
/// all workers. The default `[::]` falls back to `0.0.0.0` on a host
/// without IPv6 (`fallback` says it happened).
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
    mut fallback: impl FnMut(SocketAddr, SocketAddr),
) -> io::Result<Vec<Vec<TcpListener>>> {
    let mut sets: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for &want in addrs {
        // `[::]` is dual-stack unless the same port is also given for IPv4
        // explicitly, which would then collide with it.
        let v6only = want.is_ipv6()
            && addrs
                .iter()
                .any(|a| a.is_ipv4() && a.port() == want.port() && want.port() != 0);
        let mut addr = want;
        for set in &mut sets {
            let l = match bind_one(addr, v6only) {
                Err(e) if no_ipv6(&e) && addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
                    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
                    fallback(addr, v4);
                    addr = v4;
                    bind_one(addr, false)?
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot listen on {addr}: {e}"),
                    ));
                }
                Ok(l) => l,
            };
            if addr.port() == 0 {
                addr = l.local_addr()?;
            }
            set.push(l);
        }
    }
    Ok(sets)
}

fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

/// One non-blocking, close-on-exec listener with SO_REUSEADDR and
/// SO_REUSEPORT.
fn bind_one(addr: SocketAddr, v6only: bool) -> io::Result<TcpListener> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        Some(ipproto::TCP),
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_reuseport(&fd, true)?;
    if addr.is_ipv6() {
        sockopt::set_ipv6_v6only(&fd, v6only)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(TcpListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::net::{accept_control, prepare_control};
    use std::net::TcpStream;

    #[test]
    fn default_addresses() {
        assert_eq!(addresses(&[], false), vec!["[::]:2121".parse().unwrap()]);
        assert_eq!(addresses(&[], true), vec!["[::]:21".parse().unwrap()]);
        let a: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert_eq!(addresses(&[a], true), vec![a]);
    }

    #[test]
    fn reuseport_shares_an_ephemeral_port() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sets = bind_all(&[addr], 3, |_, _| {}).unwrap();
        let ports: Vec<u16> = sets
            .iter()
            .map(|s| s[0].local_addr().unwrap().port())
            .collect();
        assert!(ports[0] != 0);
        assert!(ports.iter().all(|&p| p == ports[0]));
        let c = TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
        // The connection lands in one of the three queues.
        let mut got = None;
        for _ in 0..200 {
            got = sets
                .iter()
                .find_map(|s| accept_control(&s[0]).ok().flatten());
            if got.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let s = got.expect("accepted");
        let ends = prepare_control(&s).unwrap();
        assert_eq!(ends.peer, Some(c.local_addr().unwrap()));
    }
}
