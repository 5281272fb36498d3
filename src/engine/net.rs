//! Sockets for the data channel, and the control connection's addresses.
//! Every socket here is non-blocking and close-on-exec.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto, sockopt};

use crate::core::session::Endpoints;

/// How many ports of a `--pasv-ports` range one PASV tries before giving
/// up: a full range must not cost thousands of syscalls per command.
const MAX_PORT_ATTEMPTS: u32 = 128;

/// The control connection's two ends: getsockname/getpeername on `fd`, or
/// where `fd` is no socket, tcpserver's `$TCPLOCALIP`/`$TCPLOCALPORT` and
/// `$TCPREMOTEIP`/`$TCPREMOTEPORT`. IPv4-mapped IPv6 addresses come back
/// as IPv4.
pub fn control_endpoints(fd: BorrowedFd<'_>) -> Endpoints {
    let local = rustix::net::getsockname(fd)
        .ok()
        .and_then(|a| SocketAddr::try_from(a).ok());
    if let Some(local) = local {
        let peer = rustix::net::getpeername(fd)
            .ok()
            .flatten()
            .and_then(|a| SocketAddr::try_from(a).ok());
        return Endpoints {
            local: Some(canonical(local)),
            peer: peer.map(canonical),
        };
    }
    // Not an internet socket: a pipe from tcpserver, or a test harness.
    let var = |name: &str| std::env::var(name).ok();
    Endpoints {
        local: env_addr(var("TCPLOCALIP").as_deref(), var("TCPLOCALPORT").as_deref()),
        peer: env_addr(
            var("TCPREMOTEIP").as_deref(),
            var("TCPREMOTEPORT").as_deref(),
        ),
    }
}

/// An address from tcpserver-style variables. ucspi-tcp6 may write IPv6
/// addresses in brackets or with a `%scope`; neither matters here.
fn env_addr(ip: Option<&str>, port: Option<&str>) -> Option<SocketAddr> {
    let ip = ip?.trim().trim_start_matches('[').trim_end_matches(']');
    let ip = ip.split('%').next()?;
    let ip: IpAddr = ip.parse().ok()?;
    let port: u16 = port?.trim().parse().ok()?;
    Some(SocketAddr::new(ip.to_canonical(), port))
}

pub use crate::core::proto::addr::canonical;

/// The control connection's send and receive buffers, as asked of the
/// kernel (which doubles them for its bookkeeping). Replies are short and
/// a session stops executing commands while its own output is queued, so
/// small buffers cost nothing, and a client that sends commands but never
/// reads the replies cannot make the kernel hold megabytes for it.
const CONTROL_SNDBUF: usize = 32 * 1024;
const CONTROL_RCVBUF: usize = 16 * 1024;

/// Control-socket options: SO_OOBINLINE, so that an ABOR sent after Telnet
/// Synch (urgent data) arrives in band; TCP_NODELAY, so that replies are
/// not held back by Nagle; bounded buffers. Errors are ignored: the
/// control connection may be a pipe.
pub fn set_control_options(fd: BorrowedFd<'_>) {
    let _ = sockopt::set_socket_oobinline(fd, true);
    let _ = sockopt::set_tcp_nodelay(fd, true);
    let _ = sockopt::set_socket_send_buffer_size(fd, CONTROL_SNDBUF);
    let _ = sockopt::set_socket_recv_buffer_size(fd, CONTROL_RCVBUF);
}

/// How many bytes the peer of TCP socket `fd` has acknowledged
/// (`tcpi_bytes_acked`, Linux 4.1 and later); `None` where the kernel does
/// not say. Data the client's kernel has taken counts, read or not: once
/// its receive buffer is full, the count stops until the client reads.
pub fn bytes_acked(fd: BorrowedFd<'_>) -> Option<u64> {
    // SAFETY: `tcp_info` is plain integers, for which all-zero is a valid
    // value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes and outlives the call;
    // the kernel writes at most `len` bytes and stores the count in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    // An older kernel fills in a shorter struct: the field must be in it.
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + std::mem::size_of::<u64>();
    (r == 0 && len as usize >= end).then_some(info.tcpi_bytes_acked)
}

/// Sets `TCP_NOTSENT_LOWAT`: the socket is writable, and takes more,
/// only while fewer than `bytes` of what was written are unsent.
pub fn set_notsent_lowat(fd: impl AsFd, bytes: u32) -> io::Result<()> {
    let v: libc::c_int = bytes.try_into().unwrap_or(libc::c_int::MAX);
    // SAFETY: `v` is a readable int that outlives the call, and its size
    // is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `TCP_NOTSENT_LOWAT` as set (0: not set, the kernel's default).
#[cfg(test)]
pub fn notsent_lowat(fd: impl AsFd) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is writable for `len` bytes and outlives the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&raw mut v).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(u32::try_from(v).unwrap_or(u32::MAX))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Puts `fd` in non-blocking mode (on its open file description).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Ignores SIGPIPE, so that a write to a closed pipe or socket is an EPIPE
/// error rather than the death of the process.
pub fn ignore_sigpipe() -> io::Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN runs no code in the handler, so nothing can be
    // unsound about when it runs.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }?;
    Ok(())
}

fn tcp_socket(ip: IpAddr) -> io::Result<OwnedFd> {
    let family = match ip {
        IpAddr::V4(_) => AddressFamily::INET,
        IpAddr::V6(_) => AddressFamily::INET6,
    };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    Ok(rustix::net::socket_with(
        family,
        SocketType::STREAM,
        flags,
        Some(ipproto::TCP),
    )?)
}

/// Connections a passive listener queues. Engines accept from the moment
/// it is opened and close connections from other addresses at once, so a
/// squatter cannot keep the queue full; a few places cover a burst.
const PASSIVE_BACKLOG: i32 = 16;

/// The system's ephemeral port range (`ip_local_port_range`), read once:
/// call [`ephemeral_ports`] before a chroot hides /proc. Linux's default
/// where it cannot be read.
static EPHEMERAL: OnceLock<(u16, u16)> = OnceLock::new();

/// The ports passive listeners use without `--pasv-ports`.
pub fn ephemeral_ports() -> (u16, u16) {
    *EPHEMERAL.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
                Some((it.next()??, it.next()??))
            })
            .filter(|&(lo, hi)| lo >= 1024 && lo <= hi)
            .unwrap_or((32_768, 60_999))
    })
}

/// A passive listener on `ip`, on a port from `ports` or else from the
/// ephemeral range, tried in a random order. The port is chosen here
/// rather than by bind(0): the kernel's own choice never takes a port
/// whose last connections wait in TIME_WAIT (not without the
/// `ip_autobind_reuse` sysctl), and the server's end of every finished
/// data connection does, so at a few hundred transfers a second the
/// whole range would be waiting and every PASV refused.
pub fn passive_listener(
    ip: IpAddr,
    ports: Option<(u16, u16)>,
) -> io::Result<(TcpListener, SocketAddr)> {
    let (lo, hi) = ports.unwrap_or_else(ephemeral_ports);
    let span = u32::from(hi.saturating_sub(lo)) + 1;
    let start = seed() % span;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for i in 0..span.min(MAX_PORT_ATTEMPTS) {
        let port = u32::from(lo) + (start + i) % span;
        // port <= hi, so it fits.
        let port = u16::try_from(port).unwrap_or(hi);
        match listen_on(SocketAddr::new(ip, port)) {
            Ok(l) => return Ok(l),
            Err(e) if e.raw_os_error() == Some(Errno::ADDRINUSE.raw_os_error()) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// A starting point in a port range that differs between processes and
/// calls; nothing secret depends on it.
fn seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

fn listen_on(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    let fd = tcp_socket(addr.ip())?;
    // The server closes each data connection first, so its end of every
    // past one waits out TIME_WAIT (60 s) on the listener's port. With
    // SO_REUSEADDR (inherited by the accepted sockets) such a port can
    // listen again when asked for by number. Linux never lets two
    // listeners share a port this way (that would take SO_REUSEPORT).
    sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, PASSIVE_BACKLOG)?;
    let bound = local_addr(fd.as_fd())?;
    Ok((TcpListener::from(fd), bound))
}

fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let any = rustix::net::getsockname(fd)?;
    SocketAddr::try_from(any)
        .map(canonical)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Accepts one pending connection, if any (`Ok(None)` on EAGAIN).
pub fn accept(listener: &TcpListener) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    loop {
        match rustix::net::acceptfrom_with(listener, flags) {
            Ok((fd, Some(peer))) => {
                let Ok(peer) = SocketAddr::try_from(peer) else {
                    // Not an internet peer: nothing to compare; drop it.
                    continue;
                };
                return Ok(Some((TcpStream::from(fd), canonical(peer))));
            }
            // An unnamed peer cannot be checked against the control peer.
            Ok((_, None)) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            // The peer gave up between SYN and accept: keep waiting.
            Err(Errno::CONNABORTED) | Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Starts a non-blocking connect to `to` from `from` (ephemeral port).
/// Completion is signalled by writability; then call [`connect_result`].
pub fn connect_active(to: SocketAddr, from: IpAddr) -> io::Result<TcpStream> {
    let fd = tcp_socket(to.ip())?;
    rustix::net::bind(&fd, &SocketAddr::new(from, 0))?;
    match rustix::net::connect(&fd, &to) {
        Ok(()) | Err(Errno::INPROGRESS) | Err(Errno::INTR) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e.into()),
    }
}

/// Whether a connect started by [`connect_active`] succeeded (SO_ERROR).
pub fn connect_result(sock: &TcpStream) -> io::Result<()> {
    match sockopt::socket_error(sock)? {
        Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Accepts one connection, non-blocking and close-on-exec, or `Ok(None)`
/// when none is waiting.
pub fn accept_control(listener: &TcpListener) -> io::Result<Option<TcpStream>> {
    match rustix::net::accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
        Ok(fd) => Ok(Some(TcpStream::from(fd))),
        Err(rustix::io::Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sets up an accepted control connection (TCP_NODELAY for prompt replies;
/// SO_OOBINLINE so an ABOR after Telnet Synch arrives in band, as ftpd) and returns
/// its endpoints, IPv4-mapped addresses as IPv4. Fails when the client has
/// already gone.
pub fn prepare_control(stream: &TcpStream) -> io::Result<Endpoints> {
    set_control_options(stream.as_fd());
    let local = canonical(stream.local_addr()?);
    let peer = canonical(stream.peer_addr()?);
    Ok(Endpoints {
        local: Some(local),
        peer: Some(peer),
    })
}

/// Whether an accept error means the process or system ran out of
/// descriptors or memory: back off rather than retry at once.
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Whether an accept error concerns only the one connection (gone before
/// it was accepted, refused by a firewall rule): go on accepting.
pub fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED)
            | Some(libc::EPROTO)
            | Some(libc::EPERM)
            | Some(libc::EINTR)
            | Some(libc::ENETDOWN)
            | Some(libc::ENOPROTOOPT)
            | Some(libc::EHOSTDOWN)
            | Some(libc::ENONET)
            | Some(libc::EHOSTUNREACH)
            | Some(libc::EOPNOTSUPP)
            | Some(libc::ENETUNREACH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn wait_accept(l: &TcpListener) -> (TcpStream, SocketAddr) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(x) = accept(l).unwrap() {
                return x;
            }
            assert!(Instant::now() < until, "no connection");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn env_addresses() {
        let a = env_addr(Some("192.0.2.1"), Some("21"));
        assert_eq!(a, Some("192.0.2.1:21".parse().unwrap()));
        let a = env_addr(Some("::ffff:192.0.2.1"), Some("21"));
        assert_eq!(a, Some("192.0.2.1:21".parse().unwrap()));
        let a = env_addr(Some("[2001:db8::1]"), Some("2121"));
        assert_eq!(a, Some("[2001:db8::1]:2121".parse().unwrap()));
        let a = env_addr(Some("fe80::1%eth0"), Some("21"));
        assert_eq!(a, Some("[fe80::1]:21".parse().unwrap()));
        assert_eq!(env_addr(Some("x"), Some("21")), None);
        assert_eq!(env_addr(Some("192.0.2.1"), Some("99999")), None);
        assert_eq!(env_addr(None, Some("21")), None);
    }

    #[test]
    fn endpoints_of_a_socket() {
        let (l, addr) = passive_listener(LOOPBACK, None).unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (server, peer) = wait_accept(&l);
        let ends = control_endpoints(server.as_fd());
        assert_eq!(ends.local, Some(addr));
        assert_eq!(ends.peer, Some(client.local_addr().unwrap()));
        assert_eq!(ends.peer, Some(peer));
        set_control_options(server.as_fd());
        assert!(sockopt::socket_oobinline(&server).unwrap());
        assert!(sockopt::tcp_nodelay(&server).unwrap());
    }

    #[test]
    fn mapped_ipv6_becomes_ipv4() {
        let Ok(l) = std::net::TcpListener::bind("[::]:0") else {
            return; // no IPv6 here
        };
        let port = l.local_addr().unwrap().port();
        let _c = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let (s, _) = l.accept().unwrap();
        let ends = control_endpoints(s.as_fd());
        assert_eq!(ends.local.unwrap().ip(), LOOPBACK);
        assert_eq!(ends.peer.unwrap().ip(), LOOPBACK);
    }

    #[test]
    fn pipe_is_no_socket() {
        let (r, _w) = rustix::pipe::pipe().unwrap();
        // Whatever the environment says, a pipe never panics.
        let _ = control_endpoints(r.as_fd());
        set_control_options(r.as_fd());
    }

    #[test]
    fn listener_in_a_range() {
        // A port that was free a moment ago.
        let (l, a) = passive_listener(LOOPBACK, None).unwrap();
        drop(l);
        let p = a.port();
        let (l1, a1) = passive_listener(LOOPBACK, Some((p, p))).unwrap();
        assert_eq!(a1, a);
        let err = passive_listener(LOOPBACK, Some((p, p))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // The other port of a range, unless someone else holds it.
        match passive_listener(LOOPBACK, Some((p - 1, p))) {
            Ok((_l2, a2)) => assert_eq!(a2.port(), p - 1),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse),
        }
        drop(l1);
    }

    #[test]
    fn accept_is_non_blocking() {
        let (l, addr) = passive_listener(LOOPBACK, None).unwrap();
        assert!(accept(&l).unwrap().is_none());
        let mut c = TcpStream::connect(addr).unwrap();
        let (mut s, _) = wait_accept(&l);
        let mut buf = [0u8; 4];
        assert_eq!(
            s.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        c.write_all(b"ping").unwrap();
        let flags = rustix::io::fcntl_getfd(&s).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        drop(c);
        let _ = s.read(&mut buf);
    }

    #[test]
    fn active_connect() {
        let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        let to = l.local_addr().unwrap();
        let sock = connect_active(to, LOOPBACK).unwrap();
        let (_s, peer) = l.accept().unwrap();
        assert_eq!(peer, sock.local_addr().unwrap());
        wait_writable(&sock);
        connect_result(&sock).unwrap();
    }

    #[test]
    fn active_connect_refused() {
        // A port nobody listens on: bind one, note it, close it.
        let to = std::net::TcpListener::bind((LOOPBACK, 0))
            .unwrap()
            .local_addr()
            .unwrap();
        match connect_active(to, LOOPBACK) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            Ok(sock) => {
                wait_writable(&sock);
                let e = connect_result(&sock).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            }
        }
    }

    fn wait_writable(sock: &TcpStream) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(sock, PollFlags::OUT)];
        let t = Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        assert_eq!(poll(&mut fds, Some(&t)).unwrap(), 1);
    }

    #[test]
    fn bytes_acked_counts_what_the_peer_took() {
        let l = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert_eq!(bytes_acked(s.as_fd()), Some(0));
        s.write_all(&[7u8; 1000]).unwrap();
        let mut got = [0u8; 1000];
        c.read_exact(&mut got).unwrap();
        // Loopback acknowledges at once, but not before this line runs.
        let until = Instant::now() + Duration::from_secs(5);
        while bytes_acked(s.as_fd()) != Some(1000) {
            assert!(Instant::now() < until, "{:?}", bytes_acked(s.as_fd()));
            std::thread::sleep(Duration::from_millis(2));
        }
        // Not a TCP socket: the kernel does not say.
        let f = std::fs::File::open("/").unwrap();
        assert_eq!(bytes_acked(f.as_fd()), None);
    }
}
