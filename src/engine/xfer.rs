//! The bytes of one transfer, from its source to its socket: a file
//! (zero-copy through the engine's [`Mover`], or copied: TYPE A turns LF
//! into CRLF) or the session's own stream (a listing). Shared by every
//! engine. A bandwidth limit ([`Limiter`]) bounds each send to what its
//! buckets grant, and makes the transfer wait ([`Step::Wait`]) for more:
//! the bytes still go zero-copy, in smaller slices.
//!
//! After the last byte of a download or listing the transfer shuts its
//! sending side and waits, [`LINGER`] at most, for the client to close
//! its end ([`Step::Linger`]) before it counts as done (and the 226 goes
//! out). A client closes only once it has read the data, so after the 150
//! that came before it: aria2 (like any client that reads replies in
//! bulk) otherwise reads 150 and 226 in one read and then waits in vain
//! for the 226 to arrive.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

use super::mover::{Allowance, FileRange, Moved, Mover, Read, Tag};
use super::recv::Recv;
use super::tls::data::{DataTls, Handshake};
use crate::core::rate::{Allow, Limiter};
use crate::core::session::{DataOut, Session, Source, TransferError};
use crate::fs::exec::Real;

/// Bytes one turn moves at most, so that a fast reader cannot hold a
/// worker that serves other sessions too. The bound is on work, not bytes:
/// a zero-copy send costs the worker next to nothing a byte, a copy
/// (TYPE A) a read and a pass over each byte, a listing the formatting of
/// each line (16 KiB is some two hundred lines).
pub const BUDGET: u64 = 4 << 20;
pub const COPY_BUDGET: u64 = 1 << 20;
/// Bytes a helper thread may send for an unlimited transfer in one job
/// (it stops sooner when the socket is full, or after a time slice).
const HELPER_SPAN: u64 = 64 << 20;
const STREAM_BUDGET: u64 = 64 << 10;
/// Bytes read from a file at a time on the copying path.
pub const COPY_CHUNK: usize = 64 * 1024;
/// How long a finished download waits for the client to close its end
/// before its 226: longer than a busy client takes to act on the 150 it
/// already has, short enough that a client which keeps the connection
/// open until it reads the 226 barely notices.
pub const LINGER: Duration = Duration::from_millis(250);
/// What a client may send on a download's connection while the transfer
/// waits for its end (over TLS, its close_notify): past this, the wait is
/// over.
const LINGER_INPUT: usize = 16 << 10;

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
    /// Receiving (an upload), or TLS waiting for the client (its
    /// handshake): wait until the socket is readable (it may be at once).
    Readable,
    /// The bandwidth limit allows nothing before this instant.
    Wait(Instant),
    /// Everything was sent and the sending side shut: waiting for the
    /// client to close its end (its socket readable) until this instant.
    Linger(Instant),
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
    /// An upload: from the socket to the file.
    Upload(Box<Recv>),
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
    /// The bandwidth limit, if any.
    limit: Option<Box<Limiter>>,
    /// Everything was sent: waiting for the client's end until then.
    linger: Option<Lingering>,
}

/// A finished download waiting for the client to close its end.
struct Lingering {
    until: Instant,
    /// Bytes the client sent meanwhile (discarded), bounded by
    /// [`LINGER_INPUT`].
    input: usize,
}

impl<M: Mover> Xfer<M> {
    pub fn new(source: Source<Real>, mut rate: Option<Limiter>) -> Xfer<M> {
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
            // An upload's limiter is the receiving side's.
            Source::Upload { file, ascii, limit } => Src::Upload(Box::new(Recv::new(
                file,
                ascii,
                limit,
                rate.take().map(Box::new),
            ))),
        };
        Xfer {
            src,
            out: Vec::new(),
            at: 0,
            sent: 0,
            mover: M::Xfer::default(),
            tls: None,
            limit: rate.map(Box::new),
            linger: None,
        }
    }

    /// Whether this is an upload (its bytes come in).
    pub fn receiving(&self) -> bool {
        matches!(self.src, Src::Upload(_))
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
        match &mut self.src {
            Src::File { range, .. } => {
                let n = mover.completed(&mut self.mover, range, done)?;
                moved(&mut self.sent, &mut self.limit, n);
            }
            Src::Upload(r) => {
                let res = r.completed(mover, &mut self.mover, done);
                // A helper's receive: what came counts as it does when
                // the worker reads.
                self.sent = r.received;
                res?
            }
            Src::Stream => {}
        }
        Ok(())
    }

    /// The bytes the transfer moved: sent, or for an upload stored.
    pub fn total(&self) -> u64 {
        match &self.src {
            Src::Upload(r) => r.stored(),
            _ => self.sent,
        }
    }

    /// Moves bytes until the socket is full, the source has nothing now,
    /// an operation is in flight, everything is sent, this turn's budget
    /// went out in this call, or the limit allows no more before a later
    /// instant than `now`.
    pub fn run(
        &mut self,
        sock: &Arc<TcpStream>,
        session: &mut Session<Real>,
        mover: &mut M,
        tag: Tag,
        now: Instant,
    ) -> Step {
        if let Src::Upload(r) = &mut self.src {
            let step = receive(r, &mut self.tls, sock, mover, &mut self.mover, tag, now);
            // Progress is what the client sent.
            self.sent = r.received;
            return step.unwrap_or_else(Step::Fail);
        }
        if let Some(l) = &mut self.linger {
            return l.wait(sock, now);
        }
        match self.steps(sock, session, mover, tag, now) {
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
        now: Instant,
    ) -> Result<Step, TransferError> {
        let budget = match &self.src {
            Src::Stream => STREAM_BUDGET,
            Src::File {
                zero_copy: true, ..
            } => BUDGET,
            Src::File { .. } | Src::Upload(_) => COPY_BUDGET,
        };
        let end = self.sent + budget;
        if let Some(t) = &mut self.tls {
            match t.handshake(sock)? {
                Handshake::Read => return Ok(Step::Readable),
                Handshake::Write => return Ok(Step::Blocked),
                Handshake::Done => {}
            }
            t.check_input(sock)?;
        }
        loop {
            if self.at < self.out.len() {
                let room = match room(&mut self.limit, self.sent, end, now) {
                    Ok(room) => room,
                    Err(step) => return Ok(step),
                };
                if !self.flush(sock, room)? {
                    return Ok(Step::Blocked);
                }
                continue;
            }
            if !self.out.is_empty() {
                // Released between chunks: a stalled transfer holds no
                // buffer.
                self.out = Vec::new();
                self.at = 0;
            }
            match &mut self.src {
                Src::Stream => match session.data_output() {
                    DataOut::Bytes(b) => {
                        let room = match room(&mut self.limit, self.sent, end, now) {
                            Ok(room) => room,
                            Err(step) => return Ok(step),
                        };
                        let b = b.get(..clamp(room)).unwrap_or(b);
                        match send_via(&mut self.tls, sock, b)? {
                            Some(n) => {
                                moved(&mut self.sent, &mut self.limit, n as u64);
                                session.consume_data(n);
                            }
                            None => return Ok(Step::Blocked),
                        }
                    }
                    DataOut::Wait => return Ok(Step::Session),
                    DataOut::End => return self.done(sock, now),
                },
                // Received by `Recv`, in `run`.
                Src::Upload(_) => return Ok(Step::Readable),
                Src::File { range, .. } if range.left == 0 && !mover.holds(&self.mover) => {
                    return self.done(sock, now);
                }
                Src::File {
                    range,
                    zero_copy: true,
                    copy_once: false,
                    ..
                } => {
                    let room = match room(&mut self.limit, self.sent, end, now) {
                        Ok(room) => room,
                        Err(step) => return Ok(step),
                    };
                    // Off the worker's turn a helper may send more: with no
                    // limit, until the socket fills (a hand-off each time,
                    // rather than one a budget).
                    let max = Allowance {
                        turn: room,
                        helper: if self.limit.is_some() {
                            room
                        } else {
                            HELPER_SPAN
                        },
                    };
                    match mover.send_file(&mut self.mover, range, sock, max, tag)? {
                        Moved::Sent(n) => moved(&mut self.sent, &mut self.limit, n),
                        Moved::Blocked(n) => {
                            moved(&mut self.sent, &mut self.limit, n);
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
                    }
                }
                Src::File {
                    range,
                    ascii,
                    prev_cr,
                    copy_once,
                    ..
                } => {
                    let room = match room(&mut self.limit, self.sent, end, now) {
                        Ok(room) => room,
                        Err(step) => return Ok(step),
                    };
                    *copy_once = false;
                    // No more than the limit lets go now: a limited
                    // transfer holds a small buffer while it waits.
                    let mut chunk = vec![0u8; clamp(room).min(COPY_CHUNK)];
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

    /// Everything was sent (over TLS, once its close_notify is out too):
    /// the sending side is shut, and the client's end awaited.
    fn done(&mut self, sock: &TcpStream, now: Instant) -> Result<Step, TransferError> {
        if let Some(t) = &mut self.tls
            && !t.finish(sock)?
        {
            return Ok(Step::Blocked);
        }
        finish_socket(sock);
        let l = self.linger.insert(Lingering {
            until: now + LINGER,
            input: 0,
        });
        Ok(l.wait(sock, now))
    }

    /// Sends what is buffered, `room` bytes at most: `Ok(false)` when the
    /// socket is full.
    fn flush(&mut self, sock: &TcpStream, room: u64) -> Result<bool, TransferError> {
        let end = self.out.len().min(self.at.saturating_add(clamp(room)));
        while self.at < end {
            match send_via(&mut self.tls, sock, &self.out[self.at..end])? {
                Some(n) => {
                    self.at += n;
                    moved(&mut self.sent, &mut self.limit, n as u64);
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

impl Lingering {
    /// Done once the client closed its end (EOF, or a reset: it closed
    /// without reading all, which is its choice), once it sent more than
    /// a close_notify would take, or once the wait is over.
    fn wait(&mut self, sock: &TcpStream, now: Instant) -> Step {
        let mut buf = [0u8; 2048];
        while self.input <= LINGER_INPUT {
            match rustix::net::recv(sock, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((0, _)) => return Step::Done,
                Ok((n, _)) => self.input += n,
                Err(Errno::AGAIN) if now < self.until => return Step::Linger(self.until),
                Err(Errno::INTR) => {}
                // Over, or the connection is gone: nothing more to wait for.
                Err(_) => return Step::Done,
            }
        }
        Step::Done
    }
}

/// An upload's turn. Over TLS: its handshake first, as for a download;
/// and once every byte is written (the client's close_notify came), the
/// server's close_notify, on a best-effort basis: the data is whole
/// whatever becomes of it (a client may close without waiting for it).
fn receive<M: Mover>(
    r: &mut Recv,
    tls: &mut Option<Box<DataTls>>,
    sock: &Arc<TcpStream>,
    mover: &mut M,
    mx: &mut M::Xfer,
    tag: Tag,
    now: Instant,
) -> Result<Step, TransferError> {
    if let Some(t) = tls {
        match t.handshake(sock)? {
            Handshake::Read => return Ok(Step::Readable),
            Handshake::Write => return Ok(Step::Blocked),
            Handshake::Done => {}
        }
    }
    let step = r.run(sock, tls.as_deref_mut(), mover, mx, tag, now)?;
    if let (Step::Done, Some(t)) = (&step, tls)
        && let Ok(false) = t.finish(sock)
    {
        return Ok(Step::Blocked);
    }
    Ok(step)
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

/// What may be sent now: what is left of this turn's [`BUDGET`] (up to
/// `end`), as far as the limit allows; or why nothing may (the turn's
/// share is spent, or the limit says to wait).
fn room(limit: &mut Option<Box<Limiter>>, sent: u64, end: u64, now: Instant) -> Result<u64, Step> {
    let budget = end.saturating_sub(sent);
    if budget == 0 {
        return Err(Step::Blocked);
    }
    match limit.as_mut().map(|l| l.allow(now)) {
        None => Ok(budget),
        Some(Allow::Go(n)) => Ok(n.min(budget)),
        Some(Allow::Wait(t)) => Err(Step::Wait(t)),
    }
}

/// `n` more bytes went out.
fn moved(sent: &mut u64, limit: &mut Option<Box<Limiter>>, n: u64) {
    *sent += n;
    if let Some(l) = limit {
        l.spend(n);
    }
}

fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
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
