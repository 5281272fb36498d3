//! Sockets for the data channel, and the control connection's addresses.
//! Every socket here is non-blocking and close-on-exec.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::BorrowedFd;

use crate::session::Endpoints;

/// The control connection's two ends: getsockname/getpeername on `fd`, or
/// where `fd` is no socket, tcpserver's `$TCPLOCALIP`/`$TCPLOCALPORT` and
/// `$TCPREMOTEIP`/`$TCPREMOTEPORT`. IPv4-mapped IPv6 addresses come back
/// as IPv4.
pub fn control_endpoints(fd: BorrowedFd<'_>) -> Endpoints {
    let _ = fd;
    todo!()
}

/// A passive listener on `ip`, on a port from `ports` (tried in a random
/// order) or any ephemeral port; backlog 1.
pub fn passive_listener(
    ip: IpAddr,
    ports: Option<(u16, u16)>,
) -> io::Result<(TcpListener, SocketAddr)> {
    let _ = (ip, ports);
    todo!()
}

/// Accepts one pending connection, if any (`Ok(None)` on EAGAIN).
pub fn accept(listener: &TcpListener) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    let _ = listener;
    todo!()
}

/// Starts a non-blocking connect to `to` from `from` (ephemeral port).
/// Completion is signalled by writability; then call [`connect_result`].
pub fn connect_active(to: SocketAddr, from: IpAddr) -> io::Result<TcpStream> {
    let _ = (to, from);
    todo!()
}

/// Whether a connect started by [`connect_active`] succeeded (SO_ERROR).
pub fn connect_result(sock: &TcpStream) -> io::Result<()> {
    let _ = sock;
    todo!()
}
