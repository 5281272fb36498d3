//! How a transfer's file bytes reach its socket (or an upload's, its
//! file). No engine waits for the disk here: bytes not known to be in the
//! page cache are sent by a helper thread (`engine::cache_first`, the way
//! every engine sends files); binary uploads are spliced into their files
//! by a helper thread (`engine::intake`), other uploads' buffers written by
//! one, or through the ring (`engine::uring::mover`).

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use rustix::io::Errno;

use crate::core::session::TransferError;

/// What is left to send of a file.
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub left: u64,
}

/// Which transfer an asynchronous operation belongs to: the session's
/// slot in its worker, the session's serial number (slots are reused),
/// and the data path's generation (a new listener or transfer gets a new
/// one), so a late completion is never taken for another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    pub slot: usize,
    pub serial: u64,
    pub generation: u32,
}

/// The outcome of [`Mover::send_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// This many bytes went to the socket, and it may take more.
    Sent(u64),
    /// This many bytes went to the socket, and it is full: wait until it
    /// is writable.
    Blocked(u64),
    /// An operation is in flight (a disk read): wait for its completion.
    Pending,
    /// The file cannot be moved without copying (a filesystem without
    /// splice support): use [`Mover::read_file`] instead.
    Unsupported,
    /// Not without copying this time (a small piece): copy one chunk
    /// with [`Mover::read_file`], then try again.
    CopyOnce,
}

/// The outcome of [`Mover::read_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were read into the buffer (at least one).
    Bytes(usize),
    /// A disk read is in flight: wait for its completion, then read again.
    Pending,
}

/// What a helper's receive ([`Mover::receive_file`]) did: how many bytes
/// came from the socket and are in the file, and what comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    pub bytes: u64,
    pub next: Next,
}

/// What an upload waits for after a helper's receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The socket had nothing more: until it is readable.
    Readable,
    /// The helper's share ended (its slice, or the bytes it was allowed):
    /// nothing, more may be there already.
    More,
    /// The client closed the connection: the data is complete.
    End,
    /// The file (or the helper) cannot take spliced bytes: the rest is
    /// received by copying ([`Mover::write_file`]).
    Copy,
}

/// How many bytes a [`Mover::send_file`] may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// In this turn of the worker (its budget, and the bandwidth limit's
    /// grant).
    pub turn: u64,
    /// By a helper thread, off the worker's turn: the limit's grant still,
    /// but not the budget, which bounds the worker's work.
    pub helper: u64,
}

/// An engine's way of moving file bytes.
pub trait Mover {
    /// What one transfer needs of the mover (an operation in flight).
    type Xfer: Default;
    /// The completion of an operation in flight.
    type Done;

    /// Moves bytes of `range` to `sock`, as many as `max` allows,
    /// without copying through user space where it can.
    fn send_file(
        &mut self,
        x: &mut Self::Xfer,
        range: &mut FileRange,
        sock: &Arc<TcpStream>,
        max: Allowance,
        tag: Tag,
    ) -> Result<Moved, TransferError>;

    /// Reads the next bytes of `range` into `buf` (the copying path:
    /// TYPE A, and files that cannot be spliced).
    fn read_file(
        &mut self,
        x: &mut Self::Xfer,
        range: &mut FileRange,
        buf: &mut [u8],
        tag: Tag,
    ) -> Result<Read, TransferError>;

    /// Whether the mover holds bytes of the file not yet sent (a buffer):
    /// the transfer is not done before they are.
    fn holds(&self, x: &Self::Xfer) -> bool;

    /// An operation of this transfer completed: the bytes it sent to the
    /// socket (a helper thread's send), if any.
    fn completed(
        &mut self,
        x: &mut Self::Xfer,
        range: &mut FileRange,
        done: Self::Done,
    ) -> Result<u64, TransferError>;

    /// Writes all of `buf` to `file` at `offset` (an upload's data), in
    /// the background: its completion comes back as a `Done` for
    /// [`Mover::written`]. One write at a time per transfer.
    fn write_file(
        &mut self,
        x: &mut Self::Xfer,
        file: &Arc<File>,
        offset: u64,
        buf: Vec<u8>,
        tag: Tag,
    );

    /// A completion of this transfer's write: the buffer back once all of
    /// it is written (`None`: not yet, the rest is on its way), or why it
    /// could not be.
    fn written(
        &mut self,
        x: &mut Self::Xfer,
        done: Self::Done,
    ) -> Result<Option<Vec<u8>>, TransferError>;

    /// Whether this mover takes an upload's bytes from the socket itself
    /// ([`Mover::receive_file`]); if not, the caller receives into
    /// buffers for [`Mover::write_file`].
    fn receives(&self) -> bool {
        false
    }

    /// Has a helper write `head` (bytes the caller received, maybe none)
    /// to `file` at `offset`, then move what `sock` holds after it, at
    /// most `max` bytes, in the background and without copying through
    /// user space where it can (an upload's binary data; only if
    /// [`Mover::receives`]). Its completion comes back as a `Done` for
    /// [`Mover::received`]. Nothing else of the transfer is in flight
    /// meanwhile, and the socket is the helper's until then.
    #[allow(clippy::too_many_arguments)]
    fn receive_file(
        &mut self,
        _x: &mut Self::Xfer,
        _sock: &Arc<TcpStream>,
        _file: &Arc<File>,
        _offset: u64,
        _head: Vec<u8>,
        _max: u64,
        _tag: Tag,
    ) {
    }

    /// The completion of this transfer's [`Mover::receive_file`]: what it
    /// moved, or why it failed (the upload then fails: what reached the
    /// file is discarded with the rest).
    fn received(
        &mut self,
        _x: &mut Self::Xfer,
        _done: Self::Done,
    ) -> Result<Intake, TransferError> {
        Err(TransferError::Sink(io::ErrorKind::Unsupported.into()))
    }

    /// The transfer is over (finished or dropped): what it holds goes back,
    /// or waits for an operation still in flight to complete.
    fn finish(&mut self, x: Self::Xfer, tag: Tag);

    /// A completion for a transfer already over: what the operation held
    /// goes back.
    fn finish_late(&mut self, tag: Tag, done: Self::Done);
}

/// Bytes per `sendfile` call: bounds the time one call can take.
pub const SENDFILE_CHUNK: u64 = 1 << 20;

/// Sends up to `max` bytes of `range` with `sendfile(2)`, a chunk at a
/// time, until the socket is full.
pub fn sendfile(
    range: &mut FileRange,
    sock: BorrowedFd<'_>,
    max: u64,
) -> Result<Moved, TransferError> {
    sendfile_until(range, sock, max, None)
}

/// [`sendfile`], stopping after the first chunk that ends past `until`.
pub fn sendfile_until(
    range: &mut FileRange,
    sock: BorrowedFd<'_>,
    max: u64,
    until: Option<Instant>,
) -> Result<Moved, TransferError> {
    let mut sent = 0;
    while range.left > 0 && sent < max {
        if sent > 0 && until.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        let chunk = range.left.min(max - sent).min(SENDFILE_CHUNK) as usize;
        match rustix::fs::sendfile(sock, &*range.file, Some(&mut range.offset), chunk) {
            Ok(0) => return Err(TransferError::Shrunk),
            Ok(n) => {
                range.left -= n as u64;
                sent += n as u64;
            }
            Err(Errno::AGAIN) => return Ok(Moved::Blocked(sent)),
            Err(Errno::INTR) => {}
            // Filesystems without splice support: copy instead.
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) if sent == 0 => {
                return Ok(Moved::Unsupported);
            }
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(Moved::Sent(sent))
}

/// Reads the next bytes of `range` into `buf` (no more than are left).
/// With `nowait`, only what the page cache holds (`RWF_NOWAIT`):
/// `Ok(None)` when that is nothing. A file that ends early is `Shrunk`.
pub fn read_at(
    range: &mut FileRange,
    buf: &mut [u8],
    nowait: bool,
) -> Result<Option<usize>, TransferError> {
    let want = usize::try_from(range.left)
        .unwrap_or(usize::MAX)
        .min(buf.len());
    if want == 0 {
        return Ok(Some(0));
    }
    let flags = if nowait {
        rustix::io::ReadWriteFlags::NOWAIT
    } else {
        rustix::io::ReadWriteFlags::empty()
    };
    let n = loop {
        let mut iov = [io::IoSliceMut::new(&mut buf[..want])];
        match rustix::io::preadv2(&*range.file, &mut iov, range.offset, flags) {
            Ok(0) => return Err(TransferError::Shrunk),
            Ok(n) => break n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) if nowait => return Ok(None),
            // A filesystem that cannot say whether a read would wait: as
            // if it would (a helper reads the bytes in first).
            Err(Errno::OPNOTSUPP) if nowait => return Ok(None),
            Err(e) => return Err(TransferError::Source(e.into())),
        }
    };
    range.offset += n as u64;
    range.left -= n as u64;
    Ok(Some(n))
}

/// An error writing an upload: no space is `NoSpace`, a file grown past
/// what the filesystem (or RLIMIT_FSIZE) allows is `TooLarge`.
pub fn write_error(e: io::Error) -> TransferError {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => TransferError::NoSpace,
        Some(libc::EFBIG) => TransferError::TooLarge,
        _ => TransferError::Sink(e),
    }
}

/// Socket-side errors from sendfile are the connection's; the rest are the
/// file's.
pub fn classify(e: Errno) -> TransferError {
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
