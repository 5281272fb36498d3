//! The bytes of one transfer, from its source to its socket: a file
//! (zero-copy through the engine's [`Mover`], or copied: TYPE A turns LF
//! into CRLF) or the session's own stream (a listing). Shared by every
//! engine.

use std::net::TcpStream;
use std::sync::Arc;

use rustix::io::Errno;
use rustix::net::SendFlags;

use super::mover::{FileRange, Moved, Mover, Read, Tag};
use super::tls::data::{DataTls, Handshake};
use crate::core::session::{DataOut, Session, Source, TransferError};
use crate::fs::exec::Real;

/// Bytes one turn moves at most, so that a fast reader cannot hold a
/// worker that serves other sessions too. The bound is on work, not bytes:
/// a zero-copy send costs the worker next to nothing a byte, a copy
/// (TYPE A) a read and a pass over each byte, a listing the formatting of
/// each line (16 KiB is some two hundred lines).
pub const BUDGET: u64 = 4 << 20;
const COPY_BUDGET: u64 = 1 << 20;
const STREAM_BUDGET: u64 = 64 << 10;
/// Bytes read from a file at a time on the copying path.
pub const COPY_CHUNK: usize = 64 * 1024;

/// Where a transfer stands after [`Xfer::run`].
#[derive(Debug)]
pub enum Step {
    /// The socket is full, or this turn's share is spent: wait until the
    /// socket is writable (it may be at once).
    Blocked,
    /// A mover operation is in flight.
    Pending,
    /// The session has nothing to send yet (a listing batch is on its way).
    Session,
    /// TLS waits for the client (its handshake): wait until the socket
    /// is readable.
    Readable,
    /// Everything was sent.
    Done,
    Fail(TransferError),
}

enum Src {
    File {
        range: FileRange,
        ascii: bool,
        /// The last byte taken from the file was CR (TYPE A: CRLF stays
        /// CRLF, even across chunks).
        prev_cr: bool,
        /// Still trying without copying (until the file refuses).
        zero_copy: bool,
        /// The next chunk is copied (the mover had no room to do better).
        copy_once: bool,
    },
    Stream,
}

/// A transfer in progress. Its buffer lives only while it copies.
pub struct Xfer<M: Mover> {
    src: Src,
    /// Converted or copied bytes not yet accepted by the socket.
    out: Vec<u8>,
    at: usize,
    pub sent: u64,
    pub mover: M::Xfer,
    /// PROT P: the bytes go through TLS (copied: no zero-copy path).
    tls: Option<Box<DataTls>>,
}

impl<M: Mover> Xfer<M> {
    pub fn new(source: Source<Real>) -> Xfer<M> {
        let src = match source {
            Source::File {
                file,
                offset,
                len,
                ascii,
            } => Src::File {
                range: FileRange {
                    file,
                    offset,
                    left: len,
                },
                ascii,
                prev_cr: false,
                zero_copy: !ascii,
                copy_once: false,
            },
            Source::Stream => Src::Stream,
        };
        Xfer {
            src,
            out: Vec::new(),
            at: 0,
            sent: 0,
            mover: M::Xfer::default(),
            tls: None,
        }
    }

    /// Sends through TLS (PROT P): its handshake first, then every byte
    /// copied and sealed.
    pub fn protect(&mut self, tls: Box<DataTls>) {
        if let Src::File { zero_copy, .. } = &mut self.src {
            *zero_copy = false;
        }
        self.tls = Some(tls);
    }

    /// An operation of the mover for this transfer completed; what it
    /// sent counts as sent (outside any turn's budget: a helper thread
    /// did the work).
    pub fn completed(&mut self, mover: &mut M, done: M::Done) -> Result<(), TransferError> {
        if let Src::File { range, .. } = &mut self.src {
            self.sent += mover.completed(&mut self.mover, range, done)?;
        }
        Ok(())
    }

    /// Moves bytes until the socket is full, the source has nothing now,
    /// an operation is in flight, everything is sent, or this turn's budget
    /// went out in this call.
    pub fn run(
        &mut self,
        sock: &Arc<TcpStream>,
        session: &mut Session<Real>,
        mover: &mut M,
        tag: Tag,
    ) -> Step {
        match self.steps(sock, session, mover, tag) {
            Ok(step) => step,
            Err(e) => Step::Fail(e),
        }
    }

    fn steps(
        &mut self,
        sock: &Arc<TcpStream>,
        session: &mut Session<Real>,
        mover: &mut M,
        tag: Tag,
    ) -> Result<Step, TransferError> {
        let budget = match &self.src {
            Src::Stream => STREAM_BUDGET,
            Src::File {
                zero_copy: true, ..
            } => BUDGET,
            Src::File { .. } => COPY_BUDGET,
        };
        let limit = self.sent + budget;
        if let Some(t) = &mut self.tls {
            match t.handshake(sock)? {
                Handshake::Read => return Ok(Step::Readable),
                Handshake::Write => return Ok(Step::Blocked),
                Handshake::Done => {}
            }
            t.check_input(sock)?;
        }
        loop {
            if !self.flush(sock)? {
                return Ok(Step::Blocked);
            }
            if self.sent >= limit {
                return Ok(Step::Blocked);
            }
            match &mut self.src {
                Src::Stream => match session.data_output() {
                    DataOut::Bytes(b) => match send_via(&mut self.tls, sock, b)? {
                        Some(n) => {
                            self.sent += n as u64;
                            session.consume_data(n);
                        }
                        None => return Ok(Step::Blocked),
                    },
                    DataOut::Wait => return Ok(Step::Session),
                    DataOut::End => return self.done(sock),
                },
                Src::File { range, .. } if range.left == 0 && !mover.holds(&self.mover) => {
                    return self.done(sock);
                }
                Src::File {
                    range,
                    zero_copy: true,
                    copy_once: false,
                    ..
                } => match mover.send_file(&mut self.mover, range, sock, limit - self.sent, tag)? {
                    Moved::Sent(n) => self.sent += n,
                    Moved::Blocked(n) => {
                        self.sent += n;
                        return Ok(Step::Blocked);
                    }
                    Moved::Pending => return Ok(Step::Pending),
                    Moved::Unsupported => {
                        if let Src::File { zero_copy, .. } = &mut self.src {
                            *zero_copy = false;
                        }
                    }
                    Moved::CopyOnce => {
                        if let Src::File { copy_once, .. } = &mut self.src {
                            *copy_once = true;
                        }
                    }
                },
                Src::File {
                    range,
                    ascii,
                    prev_cr,
                    copy_once,
                    ..
                } => {
                    *copy_once = false;
                    let mut chunk = vec![0u8; COPY_CHUNK];
                    match mover.read_file(&mut self.mover, range, &mut chunk, tag)? {
                        Read::Pending => return Ok(Step::Pending),
                        Read::Bytes(n) => {
                            self.out.clear();
                            self.at = 0;
                            let got = chunk.get(..n).unwrap_or_default();
                            if *ascii {
                                *prev_cr = to_crlf(got, *prev_cr, &mut self.out);
                            } else {
                                chunk.truncate(n);
                                self.out = chunk;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Everything was sent: over TLS, once its close_notify is out too.
    fn done(&mut self, sock: &TcpStream) -> Result<Step, TransferError> {
        if let Some(t) = &mut self.tls
            && !t.finish(sock)?
        {
            return Ok(Step::Blocked);
        }
        Ok(Step::Done)
    }

    /// Sends what is buffered: `Ok(true)` once it is all gone.
    fn flush(&mut self, sock: &TcpStream) -> Result<bool, TransferError> {
        while self.at < self.out.len() {
            match send_via(&mut self.tls, sock, &self.out[self.at..])? {
                Some(n) => {
                    self.at += n;
                    self.sent += n as u64;
                }
                None => return Ok(false),
            }
        }
        if !self.out.is_empty() {
            // Released between chunks: a stalled transfer holds no buffer.
            self.out = Vec::new();
            self.at = 0;
        }
        Ok(true)
    }
}

/// One non-blocking send, through TLS if there is one: `Ok(None)` when
/// the socket is full.
fn send_via(
    tls: &mut Option<Box<DataTls>>,
    sock: &TcpStream,
    buf: &[u8],
) -> Result<Option<usize>, TransferError> {
    match tls {
        Some(t) => t.send(sock, buf),
        None => send(sock, buf),
    }
}

/// One non-blocking send: `Ok(None)` when the socket is full.
fn send(sock: &TcpStream, buf: &[u8]) -> Result<Option<usize>, TransferError> {
    loop {
        match rustix::net::send(sock, buf, SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR) => {}
            Err(e) => return Err(TransferError::Connection(e.into())),
        }
    }
}

/// Appends `input` to `out` with a CR before every LF that does not
/// already follow one; returns whether `input` ended in CR.
pub fn to_crlf(input: &[u8], mut prev_cr: bool, out: &mut Vec<u8>) -> bool {
    for &b in input {
        if b == b'\n' && !prev_cr {
            out.push(b'\r');
        }
        out.push(b);
        prev_cr = b == b'\r';
    }
    prev_cr
}

/// Shuts the sending side: the FIN after the last byte tells the client
/// the file is complete.
pub fn finish_socket(sock: &TcpStream) {
    let _ = sock.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_conversion() {
        let mut out = Vec::new();
        assert!(to_crlf(b"a\r", false, &mut out));
        assert!(!to_crlf(b"\nb\n", true, &mut out));
        assert_eq!(out, b"a\r\nb\r\n");
        out.clear();
        assert!(!to_crlf(b"a\nb\r\nc\n\nd\re\n", false, &mut out));
        assert_eq!(out, b"a\r\nb\r\nc\r\n\r\nd\re\r\n");
    }
}
