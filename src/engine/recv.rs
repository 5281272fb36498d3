//! The receiving side of the one data path: an upload's bytes, from the
//! socket to its file. Binary data without TLS goes straight from the
//! socket into the file in the background ([`Mover::receive_file`]: a
//! helper thread's splice, every engine), one hand-off per socket
//! drained, nothing held while the upload waits for its client. A client
//! whose bytes come in small pieces (a receive brought less than
//! 128 KiB) would cost a hand-off per piece: its bytes are read by
//! the worker into a buffer until it is worth writing, and the buffer goes
//! with the next receive by the mover, which writes it first. Where the
//! mover does not, or the bytes must pass through the worker
//! (TYPE A, TLS), or the file cannot take spliced bytes, the worker reads
//! the socket (non-blocking) into a buffer; full, or when the socket has
//! nothing more for now, the buffer goes to the [`Mover`] to be written in
//! the background (a helper thread, or the ring) while the next one
//! fills. At most one write is in flight and one buffer fills, so an
//! upload holds two buffers at most, and none while it waits for its
//! client with nothing received (a few bytes wait in a buffer until more
//! come, the end, or the data timeout). Bounded per turn like copied
//! sends ([`COPY_BUDGET`]: every byte is copied once in the worker).
//! Under PROT P the bytes are TLS's plaintext ([`DataTls::receive`]), and
//! the end of the data is the client's close_notify, not the socket's.
//! A bandwidth limit ([`Limiter`], the upload direction's buckets) bounds
//! each read (or helper's receive) to what it grants and makes the upload
//! wait ([`Step::Wait`]) for more: the client's sends then wait for TCP's
//! window, as a limited download's reads wait for its data.

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use rustix::io::Errno;
use rustix::net::RecvFlags;

use super::mover::{Intake, Mover, Next, Tag};
use super::tls::data::DataTls;
use super::xfer::{COPY_BUDGET, Step};
use crate::core::rate::{Allow, Limiter};
use crate::core::session::TransferError;

/// Bytes a buffer holds before it is written.
pub const CHUNK: usize = 512 * 1024;
/// When the socket has nothing more for now, a buffer holding at least
/// this much is written anyway (a smaller one waits to fill): large
/// writes for fast clients, and a slow one holds little (only the pages
/// its bytes touched are resident).
const FLUSH_MIN: usize = 128 * 1024;
/// Bytes read from the socket at a time in TYPE A (then converted).
const ASCII_READ: usize = 16 * 1024;

/// An upload being received.
pub struct Recv {
    file: Arc<File>,
    /// TYPE A: CRLF becomes LF.
    ascii: bool,
    /// TYPE A: the last byte received was a CR, held back until the next
    /// one says whether it ends a line.
    held_cr: bool,
    /// More than this many bytes received is too large.
    limit: u64,
    /// Bytes received from the socket.
    pub received: u64,
    /// Bytes handed to writes (where the next write goes in the file).
    stored: u64,
    /// Bytes filling, not yet handed to a write.
    filling: Vec<u8>,
    /// A buffer back from its write, for the next one.
    spare: Option<Vec<u8>>,
    /// A write is in flight.
    writing: bool,
    /// The client closed the connection: the data is complete.
    eof: bool,
    /// The bandwidth limit, if any.
    rate: Option<Box<Limiter>>,
    /// How the bytes reach the file.
    path: Path,
}

/// How an upload's bytes reach its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Moved by the mover from the socket ([`Mover::receive_file`]), if
    /// it can: the first turn finds out.
    Direct,
    /// A receive by the mover is in flight.
    DirectBusy,
    /// The last receive by the mover found the socket empty: the next
    /// waits until it is readable.
    DirectDrained,
    /// Received by the worker into a buffer for now (the last receive by
    /// the mover brought little: a slow client, whose every segment would
    /// otherwise cost a hand-off); the buffer, once worth writing, goes
    /// with the mover's next receive, which writes it first.
    Buffered,
    /// Received by the worker into buffers the mover writes (TYPE A, TLS,
    /// a mover or a file that cannot take the direct path).
    Copied,
}

impl Path {
    fn direct(self) -> bool {
        matches!(self, Path::Direct | Path::DirectBusy | Path::DirectDrained)
    }
}

impl Recv {
    pub fn new(file: Arc<File>, ascii: bool, limit: u64, rate: Option<Box<Limiter>>) -> Recv {
        Recv {
            file,
            ascii,
            held_cr: false,
            limit,
            received: 0,
            stored: 0,
            filling: Vec::new(),
            spare: None,
            writing: false,
            eof: false,
            rate,
            path: if ascii { Path::Copied } else { Path::Direct },
        }
    }

    /// Bytes stored (after TYPE A conversion), once all is written.
    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// Receives (through `tls` when there is one, its handshake done) and
    /// writes until the socket has nothing, a write must complete first,
    /// the data is all written, [`COPY_BUDGET`] bytes came in this call,
    /// or the limit allows no more before a later instant than `now`.
    pub fn run<M: Mover>(
        &mut self,
        sock: &Arc<TcpStream>,
        mut tls: Option<&mut DataTls>,
        mover: &mut M,
        mx: &mut M::Xfer,
        tag: Tag,
        now: Instant,
    ) -> Result<Step, TransferError> {
        if tls.is_some() || !mover.receives() {
            self.path = Path::Copied;
        }
        if self.path.direct()
            && let Some(step) = self.run_direct(sock, mover, mx, tag, now)
        {
            return Ok(step);
        }
        let limit = self.received + COPY_BUDGET;
        loop {
            if self.eof {
                if !self.writing && !self.filling.is_empty() {
                    self.write(mover, mx, tag);
                }
                return Ok(if self.writing {
                    Step::Pending
                } else {
                    Step::Done
                });
            }
            if self.filling.len() >= CHUNK {
                if self.writing {
                    // Both buffers full: the client waits for the disk.
                    return Ok(Step::Pending);
                }
                if self.hand_off(sock, mover, mx, tag, now) {
                    return Ok(Step::Pending);
                }
            }
            if self.received >= limit {
                return Ok(for_input(tls));
            }
            let allowed = match self.rate.as_mut().map(|l| l.allow(now)) {
                None => usize::MAX,
                Some(Allow::Go(n)) => usize::try_from(n).unwrap_or(usize::MAX),
                Some(Allow::Wait(t)) => {
                    // Held back: what filled is written meanwhile, so a
                    // slowed upload holds little.
                    if !self.writing && self.filling.len() >= FLUSH_MIN {
                        self.write(mover, mx, tag);
                    }
                    return Ok(Step::Wait(t));
                }
            };
            match self.receive(sock, tls.as_deref_mut(), allowed)? {
                Some(0) => {
                    self.eof = true;
                    if std::mem::take(&mut self.held_cr) {
                        self.filling.push(b'\r');
                    }
                }
                Some(n) => {
                    self.received += n as u64;
                    if let Some(l) = &mut self.rate {
                        l.spend(n as u64);
                    }
                    if self.received > self.limit {
                        return Err(TransferError::TooLarge);
                    }
                }
                None => {
                    if !self.writing {
                        if self.filling.is_empty() {
                            // Waiting for the client: hold no buffer.
                            self.filling = Vec::new();
                            self.spare = None;
                        } else if self.filling.len() >= FLUSH_MIN
                            && self.hand_off(sock, mover, mx, tag, now)
                        {
                            return Ok(Step::Pending);
                        }
                    }
                    return Ok(for_input(tls));
                }
            }
        }
    }

    /// A turn of the direct path: `None` if the mover cannot (the upload
    /// is then received by copying).
    fn run_direct<M: Mover>(
        &mut self,
        sock: &Arc<TcpStream>,
        mover: &mut M,
        mx: &mut M::Xfer,
        tag: Tag,
        now: Instant,
    ) -> Option<Step> {
        match self.path {
            Path::DirectBusy => return Some(Step::Pending),
            Path::DirectDrained => {
                self.path = Path::Direct;
                return Some(Step::Readable);
            }
            _ => {}
        }
        if self.eof {
            return Some(Step::Done);
        }
        let allowed = match self.rate.as_mut().map(|l| l.allow(now)) {
            None => u64::MAX,
            Some(Allow::Go(n)) => n.max(1),
            Some(Allow::Wait(t)) => return Some(Step::Wait(t)),
        };
        let max = allowed.min(self.room().max(1));
        mover.receive_file(mx, sock, &self.file, self.stored, Vec::new(), max, tag);
        self.path = Path::DirectBusy;
        Some(Step::Pending)
    }

    /// Hands the filling buffer on: written by the mover's next receive
    /// (true: the socket is the mover's until it completes) on the
    /// buffered path, else written on its own.
    fn hand_off<M: Mover>(
        &mut self,
        sock: &Arc<TcpStream>,
        mover: &mut M,
        mx: &mut M::Xfer,
        tag: Tag,
        now: Instant,
    ) -> bool {
        if self.path != Path::Buffered {
            self.write(mover, mx, tag);
            return false;
        }
        let max = match self.rate.as_mut().map(|l| l.allow(now)) {
            None => u64::MAX,
            Some(Allow::Go(n)) => n,
            Some(Allow::Wait(_)) => 0,
        };
        let max = max.min(self.room());
        let head = std::mem::take(&mut self.filling);
        let offset = self.stored;
        self.stored += head.len() as u64;
        mover.receive_file(mx, sock, &self.file, offset, head, max, tag);
        self.path = Path::DirectBusy;
        true
    }

    /// What a receive by the mover may still take: one byte past the
    /// size limit is enough to know the upload is too large.
    fn room(&self) -> u64 {
        self.limit.saturating_add(1).saturating_sub(self.received)
    }

    /// A receive by the mover completed.
    fn took(&mut self, intake: Intake) -> Result<(), TransferError> {
        let n = intake.bytes;
        self.received += n;
        self.stored += n;
        if let Some(l) = &mut self.rate {
            l.spend(n);
        }
        if self.received > self.limit {
            return Err(TransferError::TooLarge);
        }
        self.path = match intake.next {
            // Little came: the client is slow, or sends in small pieces.
            Next::Readable | Next::More if n < FLUSH_MIN as u64 => Path::Buffered,
            Next::Readable => Path::DirectDrained,
            Next::More => Path::Direct,
            Next::End => {
                self.eof = true;
                Path::Direct
            }
            Next::Copy => Path::Copied,
        };
        Ok(())
    }

    /// Reads what the socket (or TLS) has into the filling buffer, `max`
    /// bytes at most (at least 1): `Some(0)` at the end of the data,
    /// `None` when there is nothing now.
    fn receive(
        &mut self,
        sock: &TcpStream,
        tls: Option<&mut DataTls>,
        max: usize,
    ) -> Result<Option<usize>, TransferError> {
        if self.filling.capacity() == 0 {
            self.filling = self.spare.take().unwrap_or_default();
            self.filling.clear();
            self.filling.reserve(CHUNK);
        }
        if let Some(t) = tls {
            // At least one byte: the buffer is written once it holds CHUNK.
            let room = CHUNK.saturating_sub(self.filling.len()).min(max).max(1);
            let (ascii, held, filling) = (self.ascii, &mut self.held_cr, &mut self.filling);
            return t.receive(sock, room, |plain| {
                if ascii {
                    *held = from_crlf(plain, *held, filling);
                } else {
                    filling.extend_from_slice(plain);
                }
            });
        }
        if self.ascii {
            let mut raw = [MaybeUninit::<u8>::uninit(); ASCII_READ];
            let want = (CHUNK - self.filling.len().min(CHUNK))
                .min(max)
                .clamp(1, ASCII_READ);
            let Some(n) = recv(sock, &mut raw[..want])? else {
                return Ok(None);
            };
            // SAFETY: recv initialised the first `n` bytes of `raw`.
            let got = unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), n) };
            self.held_cr = from_crlf(got, self.held_cr, &mut self.filling);
            return Ok(Some(n));
        }
        let spare = self.filling.spare_capacity_mut();
        let end = spare.len().min(max);
        let Some(n) = recv(sock, &mut spare[..end])? else {
            return Ok(None);
        };
        // SAFETY: recv initialised the first `n` bytes of the spare
        // capacity.
        unsafe { self.filling.set_len(self.filling.len() + n) };
        Ok(Some(n))
    }

    /// Hands the filling buffer to the mover, to be written where the
    /// file ends so far.
    fn write<M: Mover>(&mut self, mover: &mut M, mx: &mut M::Xfer, tag: Tag) {
        let buf = std::mem::take(&mut self.filling);
        let offset = self.stored;
        self.stored += buf.len() as u64;
        self.writing = true;
        mover.write_file(mx, &self.file, offset, buf, tag);
    }

    /// The write (or the mover's receive) in flight completed.
    pub fn completed<M: Mover>(
        &mut self,
        mover: &mut M,
        mx: &mut M::Xfer,
        done: M::Done,
    ) -> Result<(), TransferError> {
        if self.path == Path::DirectBusy {
            self.path = Path::Direct;
            let intake = mover.received(mx, done)?;
            return self.took(intake);
        }
        if let Some(mut buf) = mover.written(mx, done)? {
            self.writing = false;
            buf.clear();
            self.spare = Some(buf);
        }
        Ok(())
    }
}

/// How to wait for more of the upload: until the socket is readable,
/// unless TLS holds input already (plaintext, or the close_notify), which
/// would never make it so (the client may have sent everything and wait
/// for our close_notify): then until it is writable, which is at once (an
/// upload sends next to nothing), as a spent turn of a download does.
fn for_input(tls: Option<&mut DataTls>) -> Step {
    if tls.is_some_and(|t| t.holds_input()) {
        Step::Blocked
    } else {
        Step::Readable
    }
}

/// One non-blocking receive into `buf`: how many bytes it now holds at
/// its start (0 at the end of the data), or `None` when the socket has
/// nothing now.
fn recv(sock: &TcpStream, buf: &mut [MaybeUninit<u8>]) -> Result<Option<usize>, TransferError> {
    loop {
        match rustix::net::recv(sock, &mut *buf, RecvFlags::DONTWAIT) {
            Ok(((got, _), _)) => return Ok(Some(got.len())),
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR) => {}
            Err(e) => return Err(TransferError::Connection(io::Error::from(e))),
        }
    }
}

/// Appends `input` to `out` with every CR that comes before an LF
/// dropped (RFC 959 3.1.1.1: CRLF ends a line of TYPE A); a CR at the end
/// of `input` is held back (returns true) until the next byte is known.
/// `held` is the CR held back from the previous input.
pub fn from_crlf(input: &[u8], mut held: bool, out: &mut Vec<u8>) -> bool {
    for &b in input {
        if held && b != b'\n' {
            out.push(b'\r');
        }
        held = b == b'\r';
        if !held {
            out.push(b);
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_becomes_lf() {
        let mut out = Vec::new();
        assert!(!from_crlf(b"a\r\nb\r\n", false, &mut out));
        assert_eq!(out, b"a\nb\n");
        out.clear();
        // A CR across the end of one read and the start of the next.
        assert!(from_crlf(b"a\r", false, &mut out));
        assert!(!from_crlf(b"\nb", true, &mut out));
        assert_eq!(out, b"a\nb");
        out.clear();
        // Bare CRs and LFs stay; CR CR LF keeps one CR.
        assert!(!from_crlf(b"a\rb\nc\r\r\nd", false, &mut out));
        assert_eq!(out, b"a\rb\nc\r\nd");
        out.clear();
        assert!(from_crlf(b"\r", true, &mut out));
        assert_eq!(out, b"\r");
    }
}
