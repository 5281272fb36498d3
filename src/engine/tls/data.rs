//! A data connection's TLS: the handshake (which must resume the control
//! connection's session, or the connection is refused), then the
//! transfer's bytes sealed on their way to the socket, then a
//! close_notify, so the client knows the file is whole. An upload the
//! other way: opened from the socket, and whole only once the client's
//! close_notify came (RFC 4217 §9 leaves the end of the data to TLS: a
//! TCP FIN alone may be forged, a truncation attack). Works on the
//! non-blocking socket directly: rustls keeps what the socket does not
//! take (at most a few records), and the data path waits for the socket.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::{HandshakeKind, ServerConfig, ServerConnection};

use super::Sock;
use super::control::ControlTls;
use super::resume::Issue;
use crate::core::session::{Source, TlsFailure, TransferError};
use crate::fs::exec::Real;

/// Plaintext sealed per call: a few records, so a turn moves a bounded
/// amount and rustls holds little.
const SEAL: usize = 64 * 1024;

/// What the handshake needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Bytes from the client.
    Read,
    /// Room in the socket.
    Write,
    /// Done, and it resumed the control connection's session.
    Done,
}

pub struct DataTls {
    conn: Box<ServerConnection>,
    /// The handshake is done and resumed the control connection's session.
    verified: bool,
    /// close_notify queued.
    closing: bool,
}

impl DataTls {
    /// TLS for a data connection, with the configuration its control
    /// connection gives it ([`ControlTls::for_data`]).
    pub fn new(config: Arc<ServerConfig>) -> Result<DataTls, TransferError> {
        let conn =
            ServerConnection::new(config).map_err(|_| TransferError::Tls(TlsFailure::Handshake))?;
        Ok(DataTls {
            conn: Box::new(conn),
            verified: false,
            closing: false,
        })
    }

    /// Drives the handshake as far as the socket allows. A handshake that
    /// does not resume the control connection's session is refused as
    /// soon as the server knows it will not (its ClientHello read),
    /// before any work for a stranger.
    pub fn handshake(&mut self, sock: &TcpStream) -> Result<Handshake, TransferError> {
        if self.verified {
            return Ok(Handshake::Done);
        }
        let fail = TransferError::Tls(TlsFailure::Handshake);
        // Bounded: each round reads or writes something, or returns.
        for _ in 0..64 {
            // The configuration's tickets and cache open only this
            // control connection's sessions (`ControlTls::for_data`):
            // resumed means resumed from it. Checked before anything more
            // is sent: a handshake that completed without resuming (after
            // a HelloRetryRequest, which the check below lets by) goes
            // without the tickets queued at its end.
            if !self.conn.is_handshaking() {
                if self.conn.handshake_kind() != Some(HandshakeKind::Resumed) {
                    return Err(TransferError::Tls(TlsFailure::NotResumed));
                }
                self.verified = true;
                return Ok(Handshake::Done);
            }
            if !self.flush(sock).map_err(|_| fail_handshake())? {
                return Ok(Handshake::Write);
            }
            match self.conn.read_tls(&mut Sock(sock)) {
                Ok(0) => return Err(fail),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    quick_ack(sock);
                    return Ok(Handshake::Read);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(fail),
            }
            if self.conn.process_new_packets().is_err() {
                // The alert goes out if the socket takes it.
                let _ = self.flush(sock);
                return Err(fail);
            }
            // Not resuming: refused before the server's reply goes out.
            if self.conn.handshake_kind() == Some(HandshakeKind::Full) {
                return Err(TransferError::Tls(TlsFailure::NotResumed));
            }
        }
        Ok(Handshake::Write)
    }

    /// Reads what the client sent during the transfer, without waiting:
    /// an alert or corrupt record ends the transfer; a close_notify (the
    /// client gave up) too; anything else is dropped.
    pub fn check_input(&mut self, sock: &TcpStream) -> Result<(), TransferError> {
        let broken = || TransferError::Tls(TlsFailure::Broken);
        match self.conn.read_tls(&mut Sock(sock)) {
            Ok(0) => return Ok(()), // EOF: the next send says more
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(TransferError::Connection(e)),
        }
        let state = self.conn.process_new_packets().map_err(|_| broken())?;
        let mut sink = [0u8; 1024];
        for _ in 0..16 {
            match self.conn.reader().read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        if state.peer_has_closed() {
            return Err(TransferError::Connection(
                io::ErrorKind::ConnectionAborted.into(),
            ));
        }
        Ok(())
    }

    /// Receives an upload's bytes: hands `sink` at most `max` bytes of
    /// plaintext (never none, unless `max` is 0), and says how many:
    /// `Ok(Some(0))` once the client closed TLS with its close_notify (the
    /// data is complete), `Ok(None)` when the socket has nothing now. A
    /// connection that ends without a close_notify is truncated
    /// (`TlsFailure::Truncated`): the upload is not whole.
    pub fn receive(
        &mut self,
        sock: &TcpStream,
        max: usize,
        sink: impl FnOnce(&[u8]),
    ) -> Result<Option<usize>, TransferError> {
        let broken = || TransferError::Tls(TlsFailure::Broken);
        // Bounded: each round hands over plaintext, reads the socket, or
        // returns.
        for _ in 0..64 {
            let mut reader = self.conn.reader();
            match reader.fill_buf() {
                // The close_notify came, and all before it was read.
                Ok([]) => return Ok(Some(0)),
                Ok(plain) => {
                    let n = plain.len().min(max);
                    sink(&plain[..n]);
                    reader.consume(n);
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EOF without a close_notify.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(TransferError::Tls(TlsFailure::Truncated));
                }
                Err(_) => return Err(broken()),
            }
            match self.conn.read_tls(&mut Sock(sock)) {
                // Ok(0): the socket's EOF, which rustls notes (the reader
                // says whether a close_notify came before it).
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TransferError::Connection(e)),
            }
            if self.conn.process_new_packets().is_err() {
                // The alert goes out if the socket takes it.
                let _ = self.flush(sock);
                return Err(broken());
            }
            // What TLS itself has to say (a KeyUpdate's answer), if the
            // socket takes it now; else it waits for the next flush. A
            // failure here shows on the next read.
            let _ = self.flush(sock);
        }
        Ok(None)
    }

    /// Whether [`DataTls::receive`] has something to say without reading
    /// the socket: plaintext, the close_notify, or the end of the
    /// connection, already read.
    pub fn holds_input(&mut self) -> bool {
        !matches!(
            self.conn.reader().fill_buf(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Sends what rustls holds: `Ok(true)` once it is all gone.
    pub fn flush(&mut self, sock: &TcpStream) -> Result<bool, TransferError> {
        for _ in 0..64 {
            if !self.conn.wants_write() {
                return Ok(true);
            }
            match self.conn.write_tls(&mut Sock(sock)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TransferError::Connection(e)),
            }
        }
        Ok(!self.conn.wants_write())
    }

    /// Seals some of `buf` and sends what the socket takes: `Ok(None)`
    /// when the socket is full (nothing of `buf` was taken), else how
    /// much of `buf` was taken.
    pub fn send(&mut self, sock: &TcpStream, buf: &[u8]) -> Result<Option<usize>, TransferError> {
        if !self.flush(sock)? {
            return Ok(None);
        }
        let n = self
            .conn
            .writer()
            .write(&buf[..buf.len().min(SEAL)])
            .map_err(TransferError::Connection)?;
        self.flush(sock)?;
        Ok(Some(n))
    }

    /// Everything was sent: close TLS. `Ok(true)` once the close_notify
    /// and all before it are on their way.
    pub fn finish(&mut self, sock: &TcpStream) -> Result<bool, TransferError> {
        if !self.closing {
            self.closing = true;
            self.conn.send_close_notify();
        }
        self.flush(sock)
    }
}

/// Has the kernel acknowledge what the client sends next at once, while
/// the handshake waits for it. Having just answered the ClientHello, the
/// socket is in delayed-ACK mode (Linux: 40 ms); a client that writes its
/// ChangeCipherSpec and Finished in two sends without TCP_NODELAY (wget
/// with GnuTLS) then has Nagle hold its Finished until that delayed ACK,
/// and every protected transfer waits 40 ms. The mode is not sticky, so
/// it is set at each wait. Best effort: without it, only slower.
fn quick_ack(sock: &TcpStream) {
    let _ = rustix::net::sockopt::set_tcp_quickack(sock, true);
}

/// The TLS a transfer's data connection needs: none in clear (PROT C),
/// else one that must resume `control`'s session.
///
/// An upload's issues no tickets. TLS 1.3 tickets would come after the
/// handshake, when the client only writes: a client that closes its
/// socket with them unread makes its kernel answer with a reset, which
/// throws away what it had not sent yet (lftp does this; the upload was
/// then cut short, and rightly refused). A download's does, stamped as
/// its control connection's: clients that use a ticket once only need
/// them for the next transfer.
pub fn for_transfer(
    protect: bool,
    control: Option<&ControlTls>,
    source: &Source<Real>,
) -> Result<Option<Box<DataTls>>, TransferError> {
    if !protect {
        return Ok(None);
    }
    let issue = match source {
        Source::Upload { .. } => Issue::Nothing,
        _ => Issue::Stamped,
    };
    let config = control.ok_or_else(fail_handshake)?.for_data(issue);
    Ok(Some(Box::new(DataTls::new(config)?)))
}

fn fail_handshake() -> TransferError {
    TransferError::Tls(TlsFailure::Handshake)
}
