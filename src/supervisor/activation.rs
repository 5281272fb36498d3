//! Socket activation: listening sockets passed by systemd (or any service
//! manager speaking the `sd_listen_fds(3)` protocol: s6-fdholder, the
//! `systemd-socket-activate` tool), used instead of binding `--listen`
//! addresses.
//!
//! The protocol: when `$LISTEN_PID` is this process's id, `$LISTEN_FDS` = N
//! descriptors starting at 3 were passed to it. Each must be a listening
//! TCP socket (IPv4 or IPv6): anything else (a datagram or UNIX socket, a
//! connected stream as `Accept=yes` would pass) is a configuration error.
//! They are made close-on-exec and non-blocking, and the variables are
//! removed, as `sd_listen_fds(1)` does. When `$LISTEN_PID` names another
//! process (the variables leaked from a parent), they are ignored.
//!
//! Each inherited socket is shared by every worker: worker 0 gets the
//! socket, the others a `dup` of it. All the descriptors are one socket
//! with one accept queue; the workers register it with `EPOLLEXCLUSIVE`
//! (see `driver::epoll`), so a new connection wakes one waiting worker,
//! not all of them. systemd cannot pass one `SO_REUSEPORT` socket per
//! worker (the number of workers is ours to choose), and this keeps what a
//! worker is given the same as with `--listen`: its own `Vec` of listening
//! sockets, which any engine can take.

use std::net::TcpListener;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::FdFlags;
use rustix::net::{AddressFamily, SocketType, sockopt};

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: RawFd = 3;
/// More than anyone would pass; a bound on a bad `$LISTEN_FDS`.
const MAX_FDS: usize = 1024;

const VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// How many descriptors the environment says were passed to process
/// `pid`: `None` when none were (no `$LISTEN_PID`, another process's, or
/// `$LISTEN_FDS` = 0).
pub fn count(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    pid: u32,
) -> Result<Option<usize>, String> {
    let Some(listen_pid) = listen_pid else {
        return Ok(None);
    };
    let for_pid: u32 = listen_pid
        .trim()
        .parse()
        .map_err(|_| format!("bad $LISTEN_PID {listen_pid:?}: not a process id"))?;
    if for_pid != pid {
        return Ok(None);
    }
    let Some(listen_fds) = listen_fds else {
        return Err("$LISTEN_PID is set but $LISTEN_FDS is not".into());
    };
    match listen_fds.trim().parse::<usize>() {
        Ok(0) => Ok(None),
        Ok(n) if n <= MAX_FDS => Ok(Some(n)),
        _ => Err(format!(
            "bad $LISTEN_FDS {listen_fds:?}: want a number of sockets, 1 to {MAX_FDS}"
        )),
    }
}

/// The listening sockets passed to this process, if any, and the
/// environment cleaned of the protocol's variables. An error is a
/// configuration error (exit 100).
///
/// Call it before any other thread exists (it changes the environment)
/// and before anything else could claim descriptors 3 and up.
pub fn take() -> Result<Option<Vec<TcpListener>>, String> {
    let var = |name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    let n = count(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        std::process::id(),
    )?;
    let Some(n) = n else {
        return Ok(None);
    };
    for name in VARS {
        // SAFETY: the supervisor calls this from `run`, before it starts
        // any thread, so nothing reads the environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    let mut listeners = Vec::with_capacity(n);
    for i in 0..n {
        // `i < MAX_FDS`: no overflow.
        let fd = FIRST_FD + i as RawFd;
        listeners.push(adopt(fd)?);
    }
    Ok(Some(listeners))
}

/// Takes ownership of inherited descriptor `fd` and checks that it is a
/// listening TCP socket.
fn adopt(fd: RawFd) -> Result<TcpListener, String> {
    // SAFETY: F_GETFD only asks whether `fd` is open; it reads no memory
    // and changes nothing.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(format!(
            "$LISTEN_FDS: descriptor {fd} was not passed (not open)"
        ));
    }
    // SAFETY: `fd` is open, and by the protocol ($LISTEN_PID is this
    // process) it was passed to this process for it to own; `take` runs
    // once, before anything else in the process uses descriptors >= 3,
    // so nothing else owns or will close it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    check_listener(&owned).map_err(|why| format!("$LISTEN_FDS: descriptor {fd} {why}"))?;
    rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC)
        .map_err(|e| format!("descriptor {fd}: close-on-exec: {e}"))?;
    rustix::io::ioctl_fionbio(&owned, true)
        .map_err(|e| format!("descriptor {fd}: non-blocking: {e}"))?;
    Ok(TcpListener::from(owned))
}

/// Why `fd` is not a listening TCP socket, if it is not.
fn check_listener(fd: impl AsFd) -> Result<(), &'static str> {
    let fd = fd.as_fd();
    let not_socket = "is not a socket (a socket unit's ListenStream= gives one)";
    match sockopt::socket_domain(fd) {
        Ok(AddressFamily::INET) | Ok(AddressFamily::INET6) => {}
        Ok(_) => return Err("is not a TCP/IP socket (a UNIX socket?)"),
        Err(_) => return Err(not_socket),
    }
    match sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => {}
        _ => return Err("is not a stream socket (ListenDatagram=?)"),
    }
    match sockopt::socket_acceptconn(fd) {
        Ok(true) => Ok(()),
        _ => Err("is not listening (Accept=yes passes connections: use ftpd for that)"),
    }
}

/// Worker `w`'s share of the inherited `listeners`: the sockets themselves
/// for worker 0, close-on-exec duplicates for the others.
pub fn share(
    listeners: Vec<TcpListener>,
    workers: usize,
) -> std::io::Result<Vec<Vec<TcpListener>>> {
    let mut sets = Vec::with_capacity(workers);
    for _ in 1..workers {
        let dups = listeners
            .iter()
            .map(|l| rustix::io::fcntl_dupfd_cloexec(l, 0).map(TcpListener::from))
            .collect::<Result<Vec<_>, _>>()?;
        sets.push(dups);
    }
    sets.insert(0, listeners);
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpStream, UdpSocket};

    #[test]
    fn environment() {
        assert_eq!(count(None, None, 7), Ok(None));
        assert_eq!(count(None, Some("2"), 7), Ok(None));
        assert_eq!(count(Some("8"), Some("2"), 7), Ok(None));
        assert_eq!(count(Some("7"), Some("2"), 7), Ok(Some(2)));
        assert_eq!(count(Some("7"), Some("0"), 7), Ok(None));
        assert!(count(Some("7"), None, 7).is_err());
        assert!(count(Some("x"), Some("1"), 7).is_err());
        assert!(count(Some("7"), Some("-1"), 7).is_err());
        assert!(count(Some("7"), Some("100000"), 7).is_err());
    }

    #[test]
    fn only_listening_tcp_sockets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_listener(&l), Ok(()));
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(check_listener(&c).is_err());
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(check_listener(&u).is_err());
        let f = std::fs::File::open("/").unwrap();
        assert!(check_listener(&f).is_err());
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(check_listener(&a).is_err());
    }

    #[test]
    fn shared_by_every_worker() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let sets = share(vec![l], 3).unwrap();
        assert_eq!(sets.len(), 3);
        for s in &sets {
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].local_addr().unwrap(), addr);
            let flags = rustix::io::fcntl_getfd(&s[0]).unwrap();
            assert!(flags.contains(FdFlags::CLOEXEC));
        }
        // One socket: a connection is accepted from any worker's copy.
        let _c = TcpStream::connect(addr).unwrap();
        let (_s, peer) = sets[2][0].accept().unwrap();
        assert_eq!(peer.ip(), addr.ip());
    }
}
