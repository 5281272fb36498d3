//! FTPS: rustls driven by our own engines, as a transform between the
//! session core and the socket (no thread, no blocking stream). The core
//! decides when the control connection switches to TLS and whether a
//! data connection is protected; this module does the TLS:
//!
//! - [`keys`]: the certificate and key (read before the chroot), the
//!   server's rustls configuration, shared by every session and replaced
//!   whole on a reload.
//! - [`control`]: the control connection's TLS, which `engine::conn`
//!   puts between the session and every engine's reads and writes.
//! - [`data`]: a data connection's TLS, which `engine::xfer` sends
//!   through; its handshake must resume the control connection's session.
//! - [`resume`]: which sessions a connection may resume (a control
//!   connection: any of the server's; a data connection: only its
//!   control connection's).
//! - [`ticketkey`]: ticket keys read from files, shared between
//!   processes (`--tls-ticket-key`).
//! - [`ktls`]: the probe for the kernel's TLS (not used yet).

pub mod control;
pub mod data;
pub mod keys;
pub mod ktls;
#[cfg(test)]
mod memory;
pub mod resume;
pub mod ticketkey;

use std::io;
use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

pub use self::keys::{Pem, ServerTls};

/// Bytes a session's control connection stamps the TLS sessions it
/// issues with; a data connection must present one so stamped (RFC 4217
/// §10: session reuse binds the data connection to the control
/// connection).
pub type Token = [u8; 16];

/// A non-blocking socket as rustls reads and writes it: `WouldBlock`
/// when it has nothing or is full.
pub struct Sock<'a, F: AsFd>(pub &'a F);

impl<F: AsFd> io::Read for Sock<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match rustix::net::recv(self.0, &mut *buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl<F: AsFd> io::Write for Sock<'_, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::net::send(self.0, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Several records in one call (rustls hands over what it has):
    /// `writev`, which the sandbox allows (data sockets are non-blocking,
    /// and SIGPIPE is ignored by both programs).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match rustix::io::writev(self.0, bufs) {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
