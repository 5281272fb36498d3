//! Moving a transfer's bytes to a non-blocking data socket: `sendfile(2)`
//! for binary files, `pread` plus LF->CRLF for TYPE A, batches of lines for
//! listings. The [`Pump`] serves every readiness-based driver (poll,
//! epoll); its [`Fill`] (the source side: formatting, reading, TYPE A)
//! serves the io_uring driver too.

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::core::session::{Source, TransferError};
use crate::fs::dir::Lister;

/// Bytes per `sendfile` call: bounds the time one call can take.
const SENDFILE_CHUNK: usize = 1 << 20;
/// Bytes read from a file per `pread` in the copying path.
pub const READ_CHUNK: usize = 16 * 1024;
/// Bytes of listing formatted per batch.
const LIST_BATCH: usize = 16 * 1024;
/// Bytes one `run` call (or one round of the io_uring engine) sends at
/// most, so that a fast reader of a large file cannot hold a worker that
/// serves other sessions too.
pub const RUN_BUDGET: u64 = 4 << 20;

/// Where a transfer stands after [`Pump::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The socket would block, or this call's share of bytes is spent:
    /// wait until the socket is writable (it may be at once), run again.
    Blocked,
    /// Everything was sent (not yet closed: the driver closes the socket).
    Done,
}

/// A transfer in progress. Its buffers live only as long as it does.
pub struct Pump {
    fill: Fill,
    /// Sending a binary file with sendfile (until it refuses the file).
    zero_copy: bool,
    out: Pending,
    sent: u64,
}

/// What is left to send of a file.
pub struct FileRange {
    pub file: File,
    pub offset: u64,
    pub left: u64,
}

/// The source of a transfer, for the bytes that go through a buffer: a
/// listing formatted batch by batch, a file read chunk by chunk (LF->CRLF
/// in TYPE A). Shared by every driver: how the bytes then reach the socket
/// is the driver's business.
pub enum Fill {
    File {
        range: FileRange,
        ascii: bool,
        /// The last byte taken from the file was CR (TYPE A: CRLF stays
        /// CRLF, even across chunks).
        prev_cr: bool,
    },
    Listing {
        lister: Lister,
        done: bool,
    },
}

impl Fill {
    pub fn new(source: Source) -> Fill {
        match source {
            Source::File {
                file,
                offset,
                len,
                ascii,
            } => Fill::File {
                range: FileRange {
                    file,
                    offset,
                    left: len,
                },
                ascii,
                prev_cr: false,
            },
            Source::Listing(lister) => Fill::Listing {
                lister,
                done: false,
            },
        }
    }

    /// A binary file's range, which can be sent without copying.
    pub fn zero_copy(&mut self) -> Option<&mut FileRange> {
        match self {
            Fill::File {
                range,
                ascii: false,
                ..
            } => Some(range),
            _ => None,
        }
    }

    /// Whether everything has been taken from the source.
    pub fn is_done(&self) -> bool {
        match self {
            Fill::File { range, .. } => range.left == 0,
            Fill::Listing { done, .. } => *done,
        }
    }

    /// Appends the next piece of the source to `out`: about `chunk` bytes
    /// (TYPE A: at most [`READ_CHUNK`] read, up to twice that written).
    pub fn fill(&mut self, out: &mut Vec<u8>, chunk: usize) -> Result<(), TransferError> {
        match self {
            Fill::File {
                range,
                ascii: false,
                ..
            } => read_chunk(range, chunk, out),
            Fill::File {
                range,
                ascii: true,
                prev_cr,
            } => {
                let mut stack = [0u8; READ_CHUNK];
                let want = chunk.min(READ_CHUNK);
                let n = read_into(range, &mut stack[..want])?;
                *prev_cr = to_crlf(&stack[..n], *prev_cr, out);
                Ok(())
            }
            Fill::Listing { lister, done } => {
                *done = lister.fill(out, chunk).map_err(TransferError::Source)?;
                Ok(())
            }
        }
    }
}

/// Bytes formatted or converted but not yet accepted by the socket.
#[derive(Default)]
pub struct Pending {
    buf: Vec<u8>,
    pos: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Replaces what was sent with the next `chunk` bytes of `fill`.
    pub fn refill(&mut self, fill: &mut Fill, chunk: usize) -> Result<(), TransferError> {
        self.buf.clear();
        self.pos = 0;
        fill.fill(&mut self.buf, chunk)
    }

    /// Sends what is pending. `Ok(false)`: the socket would block.
    /// Sends until the buffer is empty (`Ok(true)`) or the non-blocking
    /// socket is full (`Ok(false)`), adding what went to `sent`.
    pub fn flush(&mut self, sock: BorrowedFd<'_>, sent: &mut u64) -> Result<bool, TransferError> {
        while !self.is_empty() {
            match rustix::net::send(sock, &self.buf[self.pos..], SendFlags::NOSIGNAL) {
                Ok(n) => {
                    self.pos += n;
                    *sent += n as u64;
                }
                Err(Errno::AGAIN) => return Ok(false),
                Err(Errno::INTR) => {}
                Err(e) => return Err(TransferError::Connection(e.into())),
            }
        }
        Ok(true)
    }
}

impl Pump {
    pub fn new(source: Source) -> Pump {
        let mut fill = Fill::new(source);
        Pump {
            zero_copy: fill.zero_copy().is_some(),
            fill,
            out: Pending::default(),
            sent: 0,
        }
    }

    /// Sends until the socket would block, the source is exhausted, or
    /// `RUN_BUDGET` bytes went out in this call.
    pub fn run(&mut self, sock: BorrowedFd<'_>) -> Result<Progress, TransferError> {
        let limit = self.sent + RUN_BUDGET;
        if self.zero_copy
            && let Some(range) = self.fill.zero_copy()
        {
            match sendfile(range, sock, &mut self.sent, limit)? {
                Some(p) => return Ok(p),
                // sendfile cannot read this file: copy it instead.
                None => self.zero_copy = false,
            }
        }
        let chunk = match self.fill {
            Fill::Listing { .. } => LIST_BATCH,
            Fill::File { .. } => READ_CHUNK,
        };
        loop {
            if !self.out.flush(sock, &mut self.sent)? {
                return Ok(Progress::Blocked);
            }
            if self.fill.is_done() {
                return Ok(Progress::Done);
            }
            if self.sent >= limit {
                return Ok(Progress::Blocked);
            }
            self.out.refill(&mut self.fill, chunk)?;
        }
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

/// Sends `range` with sendfile. `None`: sendfile cannot read this file.
fn sendfile(
    range: &mut FileRange,
    sock: BorrowedFd<'_>,
    sent: &mut u64,
    limit: u64,
) -> Result<Option<Progress>, TransferError> {
    while range.left > 0 {
        if *sent >= limit {
            return Ok(Some(Progress::Blocked));
        }
        let chunk = usize::try_from(range.left.min(limit - *sent))
            .unwrap_or(usize::MAX)
            .min(SENDFILE_CHUNK);
        match rustix::fs::sendfile(sock, &range.file, Some(&mut range.offset), chunk) {
            Ok(0) => return Err(TransferError::Shrunk),
            Ok(n) => {
                range.left -= n as u64;
                *sent += n as u64;
            }
            Err(Errno::AGAIN) => return Ok(Some(Progress::Blocked)),
            Err(Errno::INTR) => {}
            // Filesystems without splice support: copy by hand.
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(Some(Progress::Done))
}

/// Reads up to `chunk` bytes of `range` onto the end of `out`.
fn read_chunk(range: &mut FileRange, chunk: usize, out: &mut Vec<u8>) -> Result<(), TransferError> {
    let want = usize::try_from(range.left).unwrap_or(usize::MAX).min(chunk);
    let start = out.len();
    out.resize(start + want, 0);
    let n = read_into(range, &mut out[start..]);
    out.truncate(start + *n.as_ref().unwrap_or(&0));
    n.map(drop)
}

/// Reads the next bytes of `range` into `buf` (no more than are left);
/// a file that ends early is `Shrunk`.
fn read_into(range: &mut FileRange, buf: &mut [u8]) -> Result<usize, TransferError> {
    let want = usize::try_from(range.left)
        .unwrap_or(usize::MAX)
        .min(buf.len());
    if want == 0 {
        return Ok(0);
    }
    let n = loop {
        match rustix::io::pread(&range.file, &mut buf[..want], range.offset) {
            Ok(0) => return Err(TransferError::Shrunk),
            Ok(n) => break n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(TransferError::Source(e.into())),
        }
    };
    range.offset += n as u64;
    range.left -= n as u64;
    Ok(n)
}

/// Appends `input` to `out` with a CR before every LF that does not
/// already follow one; returns whether `input` ended in CR.
fn to_crlf(input: &[u8], mut prev_cr: bool, out: &mut Vec<u8>) -> bool {
    for &b in input {
        if b == b'\n' && !prev_cr {
            out.push(b'\r');
        }
        out.push(b);
        prev_cr = b == b'\r';
    }
    prev_cr
}

/// Socket-side errors from sendfile are the connection's; the rest are the
/// file's.
fn classify(e: Errno) -> TransferError {
    let err: io::Error = e.into();
    match e {
        Errno::PIPE
        | Errno::CONNRESET
        | Errno::CONNABORTED
        | Errno::NOTCONN
        | Errno::TIMEDOUT
        | Errno::HOSTUNREACH
        | Errno::NETUNREACH
        | Errno::NETDOWN
        | Errno::NETRESET
        | Errno::HOSTDOWN => TransferError::Connection(err),
        _ => TransferError::Source(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::thread::JoinHandle;

    /// A connected loopback pair: the non-blocking sending side, and a
    /// thread that reads everything the other side receives.
    fn pair() -> (TcpStream, JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            client.read_to_end(&mut all).unwrap();
            all
        });
        (server, reader)
    }

    /// An open file with `content`, already unlinked.
    fn temp_file(content: &[u8]) -> File {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("aftpd-pump-{}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(content)
            .unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn source(file: File, offset: u64, len: u64, ascii: bool) -> Source {
        Source::File {
            file,
            offset,
            len,
            ascii,
        }
    }

    /// Runs `pump` to the end as a driver would, waiting for writability.
    fn drive(pump: &mut Pump, sock: &TcpStream) -> Result<u64, TransferError> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        for _ in 0..100_000 {
            match pump.run(sock.as_fd())? {
                Progress::Done => return Ok(pump.sent()),
                Progress::Blocked => {
                    let mut fds = [PollFd::new(sock, PollFlags::OUT)];
                    let t = Timespec {
                        tv_sec: 5,
                        tv_nsec: 0,
                    };
                    assert_eq!(poll(&mut fds, Some(&t)).unwrap(), 1, "stalled");
                }
            }
        }
        panic!("transfer never ended");
    }

    fn transfer(
        content: &[u8],
        offset: u64,
        len: u64,
        ascii: bool,
    ) -> (Result<u64, TransferError>, Vec<u8>) {
        let (sock, reader) = pair();
        let mut pump = Pump::new(source(temp_file(content), offset, len, ascii));
        let result = drive(&mut pump, &sock);
        drop(sock);
        (result, reader.join().unwrap())
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn one_run_sends_at_most_its_budget() {
        let content: Vec<u8> = (0..3 * RUN_BUDGET).map(|i| (i % 253) as u8).collect();
        let (sock, reader) = pair();
        let mut pump = Pump::new(Source::File {
            file: temp_file(&content),
            offset: 0,
            len: content.len() as u64,
            ascii: false,
        });
        let _ = pump.run(sock.as_fd()).unwrap();
        assert!(
            pump.sent() <= RUN_BUDGET,
            "{} bytes in one run",
            pump.sent()
        );
        assert_eq!(drive(&mut pump, &sock).unwrap(), content.len() as u64);
        drop(sock);
        assert_eq!(reader.join().unwrap(), content);
    }

    #[test]
    fn binary_complete() {
        // Larger than a socket buffer and than one sendfile chunk.
        let content = pattern(3 * SENDFILE_CHUNK + 12345);
        let (result, got) = transfer(&content, 0, content.len() as u64, false);
        assert_eq!(result.unwrap(), content.len() as u64);
        assert!(got == content);
    }

    #[test]
    fn binary_from_offset() {
        let content = pattern(100_000);
        let (result, got) = transfer(&content, 1000, 99_000, false);
        assert_eq!(result.unwrap(), 99_000);
        assert!(got == content[1000..]);
    }

    #[test]
    fn empty_file() {
        let (result, got) = transfer(b"", 0, 0, false);
        assert_eq!(result.unwrap(), 0);
        assert!(got.is_empty());
        let (result, got) = transfer(b"", 0, 0, true);
        assert_eq!(result.unwrap(), 0);
        assert!(got.is_empty());
    }

    #[test]
    fn ascii_exact_bytes() {
        let content = b"a\nb\r\nc\n\nd\re";
        let (result, got) = transfer(content, 0, content.len() as u64, true);
        let want = b"a\r\nb\r\nc\r\n\r\nd\re";
        assert_eq!(got, want);
        assert_eq!(result.unwrap(), want.len() as u64);
    }

    #[test]
    fn ascii_across_chunk_boundaries() {
        let mut content = vec![b'x'; 3 * READ_CHUNK];
        // CR | LF split by the first chunk boundary: stays one CRLF.
        content[READ_CHUNK - 1] = b'\r';
        content[READ_CHUNK] = b'\n';
        // A bare LF first in the next chunk: gains its CR.
        content[2 * READ_CHUNK] = b'\n';
        // And one last in a chunk.
        content[3 * READ_CHUNK - 1] = b'\n';
        let (result, got) = transfer(&content, 0, content.len() as u64, true);
        let mut want = vec![b'x'; 3 * READ_CHUNK + 2];
        want[READ_CHUNK - 1] = b'\r';
        want[READ_CHUNK] = b'\n';
        want[2 * READ_CHUNK] = b'\r';
        want[2 * READ_CHUNK + 1] = b'\n';
        want[3 * READ_CHUNK] = b'\r';
        want[3 * READ_CHUNK + 1] = b'\n';
        assert!(got == want);
        assert_eq!(result.unwrap(), want.len() as u64);
    }

    #[test]
    fn ascii_large() {
        let content: Vec<u8> = pattern(1 << 20);
        let (result, got) = transfer(&content, 0, content.len() as u64, true);
        let mut want = Vec::new();
        to_crlf(&content, false, &mut want);
        assert!(got == want);
        assert_eq!(result.unwrap(), want.len() as u64);
    }

    #[test]
    fn shrunk_file_is_an_error() {
        let content = pattern(50_000);
        for ascii in [false, true] {
            let (result, got) = transfer(&content, 0, 60_000, ascii);
            assert!(
                matches!(result, Err(TransferError::Shrunk)),
                "ascii={ascii}"
            );
            assert!(got.len() >= 50_000);
        }
    }

    #[test]
    fn grown_file_sends_the_announced_length() {
        let content = pattern(50_000);
        let (result, got) = transfer(&content, 0, 40_000, false);
        assert_eq!(result.unwrap(), 40_000);
        assert!(got == content[..40_000]);
    }

    #[test]
    fn peer_closed_is_a_connection_error() {
        let content = pattern(8 << 20);
        for ascii in [false, true] {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (sock, _) = l.accept().unwrap();
            sock.set_nonblocking(true).unwrap();
            drop(client);
            let file = temp_file(&content);
            let mut pump = Pump::new(source(file, 0, content.len() as u64, ascii));
            let result = drive(&mut pump, &sock);
            assert!(
                matches!(result, Err(TransferError::Connection(_))),
                "ascii={ascii}"
            );
        }
    }

    #[test]
    fn crlf_conversion() {
        let mut out = Vec::new();
        assert!(to_crlf(b"a\r", false, &mut out));
        assert!(!to_crlf(b"\nb\n", true, &mut out));
        assert_eq!(out, b"a\r\nb\r\n");
    }
}
