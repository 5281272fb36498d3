//! Moving a transfer's bytes to a non-blocking data socket: `sendfile(2)`
//! for binary files, `pread` plus LF->CRLF for TYPE A, batches of lines for
//! listings. Shared by every readiness-based driver (poll, epoll).

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::listing::Lister;
use crate::session::{Source, TransferError};

/// Bytes per `sendfile` call: bounds the time one call can take.
const SENDFILE_CHUNK: usize = 1 << 20;
/// Bytes read from a file per `pread` in the copying path.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes of listing formatted per batch.
const LIST_BATCH: usize = 16 * 1024;
/// Bytes one `run` call sends at most, so that a fast reader of a large
/// file cannot hold a worker that serves other sessions too.
const RUN_BUDGET: u64 = 4 << 20;

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
    how: How,
    sent: u64,
}

enum How {
    /// A file: zero-copy with sendfile while `copy` is `None`.
    File {
        range: FileRange,
        copy: Option<Copy>,
    },
    Listing {
        lister: Lister,
        done: bool,
        out: Pending,
    },
}

/// pread into a buffer, then send: TYPE A, or a file sendfile refuses.
struct Copy {
    ascii: bool,
    out: Pending,
}

/// What is left to send of a file.
struct FileRange {
    file: File,
    offset: u64,
    left: u64,
}

/// Bytes formatted or converted but not yet accepted by the socket.
struct Pending {
    buf: Vec<u8>,
    pos: usize,
    /// The last byte taken from the file was CR (TYPE A: CRLF stays CRLF,
    /// even across chunks).
    prev_cr: bool,
}

impl Pending {
    fn new(capacity: usize) -> Pending {
        Pending {
            buf: Vec::with_capacity(capacity),
            pos: 0,
            prev_cr: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn refill(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }

    /// Sends what is pending. `Ok(false)`: the socket would block.
    fn flush(&mut self, sock: BorrowedFd<'_>, sent: &mut u64) -> Result<bool, TransferError> {
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
        let how = match source {
            Source::File {
                file,
                offset,
                len,
                ascii,
            } => {
                let range = FileRange {
                    file,
                    offset,
                    left: len,
                };
                // TYPE A may double every byte (all LFs).
                let copy = ascii.then(|| Copy {
                    ascii,
                    out: Pending::new(2 * READ_CHUNK),
                });
                How::File { range, copy }
            }
            Source::Listing(lister) => How::Listing {
                lister,
                done: false,
                out: Pending::new(LIST_BATCH + 4096),
            },
        };
        Pump { how, sent: 0 }
    }

    /// Sends until the socket would block, the source is exhausted, or
    /// [`RUN_BUDGET`] bytes went out in this call.
    pub fn run(&mut self, sock: BorrowedFd<'_>) -> Result<Progress, TransferError> {
        let limit = self.sent + RUN_BUDGET;
        loop {
            let sent = &mut self.sent;
            let step = match &mut self.how {
                How::File { range, copy: None } => sendfile(range, sock, sent, limit)?,
                How::File {
                    range,
                    copy: Some(c),
                } => copy(range, c, sock, sent, limit)?,
                How::Listing { lister, done, out } => list(lister, done, out, sock, sent, limit)?,
            };
            match step {
                Step::Progress(p) => return Ok(p),
                Step::FallBack => {
                    if let How::File { copy, .. } = &mut self.how {
                        *copy = Some(Copy {
                            ascii: false,
                            out: Pending::new(READ_CHUNK),
                        });
                    }
                }
            }
        }
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

enum Step {
    Progress(Progress),
    /// sendfile cannot read this file: copy it instead.
    FallBack,
}

fn sendfile(
    range: &mut FileRange,
    sock: BorrowedFd<'_>,
    sent: &mut u64,
    limit: u64,
) -> Result<Step, TransferError> {
    while range.left > 0 {
        if *sent >= limit {
            return Ok(Step::Progress(Progress::Blocked));
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
            Err(Errno::AGAIN) => return Ok(Step::Progress(Progress::Blocked)),
            Err(Errno::INTR) => {}
            // Filesystems without splice support: copy by hand.
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => return Ok(Step::FallBack),
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(Step::Progress(Progress::Done))
}

fn copy(
    range: &mut FileRange,
    c: &mut Copy,
    sock: BorrowedFd<'_>,
    sent: &mut u64,
    limit: u64,
) -> Result<Step, TransferError> {
    let Copy { ascii, out } = c;
    let ascii = *ascii;
    loop {
        if !out.flush(sock, sent)? {
            return Ok(Step::Progress(Progress::Blocked));
        }
        if range.left == 0 {
            return Ok(Step::Progress(Progress::Done));
        }
        if *sent >= limit {
            return Ok(Step::Progress(Progress::Blocked));
        }
        out.refill();
        read_chunk(range, ascii, out)?;
    }
}

/// Reads the next chunk of `range` into `out`, converted for TYPE A.
fn read_chunk(range: &mut FileRange, ascii: bool, out: &mut Pending) -> Result<(), TransferError> {
    let want = usize::try_from(range.left)
        .unwrap_or(usize::MAX)
        .min(READ_CHUNK);
    let mut raw = [0u8; READ_CHUNK];
    let n = loop {
        match rustix::io::pread(&range.file, &mut raw[..want], range.offset) {
            Ok(0) => return Err(TransferError::Shrunk),
            Ok(n) => break n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(TransferError::Source(e.into())),
        }
    };
    range.offset += n as u64;
    range.left -= n as u64;
    if ascii {
        out.prev_cr = to_crlf(&raw[..n], out.prev_cr, &mut out.buf);
    } else {
        out.buf.extend_from_slice(&raw[..n]);
    }
    Ok(())
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

fn list(
    lister: &mut Lister,
    done: &mut bool,
    out: &mut Pending,
    sock: BorrowedFd<'_>,
    sent: &mut u64,
    limit: u64,
) -> Result<Step, TransferError> {
    loop {
        if !out.flush(sock, sent)? {
            return Ok(Step::Progress(Progress::Blocked));
        }
        if *done {
            return Ok(Step::Progress(Progress::Done));
        }
        if *sent >= limit {
            return Ok(Step::Progress(Progress::Blocked));
        }
        out.refill();
        *done = lister
            .fill(&mut out.buf, LIST_BATCH)
            .map_err(TransferError::Source)?;
    }
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
