//! The mover of every engine's downloads: `sendfile(2)` from the worker
//! when `cachestat(2)` says the bytes are in the page cache, and from a
//! helper thread when it cannot say so, so that a worker never waits for
//! the disk and a byte is never copied on the zero-copy path.
//!
//! `cachestat` answers only for a file the caller could write, or owns
//! (or with CAP_FOWNER): Linux refuses the rest with `EPERM`, as mincore
//! hides their page cache since 5.0 (a side channel otherwise). An archive
//! served by an unprivileged user from files someone else owns, the usual
//! set-up, gets `EPERM` for every file; that is the file's answer, not the
//! kernel's, so it is kept per transfer (`Sight`), and such a file is
//! sent by a helper thread: one hand-off each time the socket fills (or
//! a 10 ms slice ends).
//! (Taking `EPERM` for "no cachestat" once had every megabyte read into a
//! helper's buffer before its `sendfile`: 1.6 to 3.8 times the CPU of a
//! plain `sendfile`.)
//!
//! The copying path (TYPE A, TLS) reads what the page cache holds
//! (`RWF_NOWAIT`) and has a helper read the rest in first.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::fs::File;

use super::mover::{
    Allowance, FileRange, Intake, Moved, Mover, Read, Tag, read_at, sendfile, write_error,
};
use super::pool::{FromPool, JobTag, Pool, Work};
use crate::core::session::TransferError;

/// Bytes a helper thread reads into the page cache at a time.
const WARM_CHUNK: u64 = 1 << 20;
/// Bytes of the file one `cachestat` looks at: a turn's worth
/// (`xfer::BUDGET`), so that a fast download asks once a turn, and what
/// it was told is sent soon after.
const CHECK_SPAN: u64 = 4 << 20;
/// What is left of a file the worker copies (`RWF_NOWAIT`) rather than
/// hand to a helper thread when `cachestat` cannot look at it: a small
/// file, or a large one's tail, costs less to copy than a hand-off.
const SMALL: u64 = 32 * 1024;

/// A worker's mover.
pub struct CacheFirst {
    pool: Pool,
    worker: usize,
}

impl CacheFirst {
    pub fn new(pool: Pool, worker: usize) -> CacheFirst {
        CacheFirst { pool, worker }
    }

    fn warm(&mut self, x: &mut Warming, range: &FileRange, tag: Tag) {
        x.busy = true;
        x.asked = range.left.min(WARM_CHUNK);
        let work = Work::Warm {
            file: range.file.clone(),
            offset: range.offset,
            len: x.asked,
        };
        self.pool.submit(self.worker, JobTag::Mover(tag), work);
    }

    /// Has a helper thread send up to `max` bytes of `range`.
    fn send_by_helper(
        &mut self,
        x: &mut Warming,
        range: &FileRange,
        sock: &Arc<TcpStream>,
        max: Allowance,
        tag: Tag,
    ) -> Moved {
        x.busy = true;
        x.sock = Some(Arc::clone(sock));
        let work = Work::Send {
            file: range.file.clone(),
            sock: Arc::clone(sock),
            offset: range.offset,
            len: range.left.min(max.helper),
        };
        self.pool.submit(self.worker, JobTag::Mover(tag), work);
        Moved::Pending
    }
}

/// A transfer's state: a job in flight, how far the file is known to be
/// in the page cache, and what `cachestat` can tell of it.
#[derive(Debug, Default)]
pub struct Warming {
    busy: bool,
    /// The bytes before this offset are in the page cache: checked, or
    /// just read in by a helper.
    known_end: u64,
    /// Bytes the read-in in flight was asked for.
    asked: u64,
    sight: Sight,
    /// The data socket, once a helper thread has sent on it.
    sock: Option<Arc<TcpStream>>,
    /// A helper's send found the socket full: wait until it is writable.
    full: bool,
    /// A helper's send found the file cannot be spliced: copy it.
    unsupported: bool,
}

impl Warming {
    /// A helper thread is reading or sending for this transfer.
    pub fn busy(&self) -> bool {
        self.busy
    }
}

/// What `cachestat` can tell of a transfer's file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Sight {
    #[default]
    Unknown,
    /// It answered.
    Clear,
    /// It refused this file (`EPERM`).
    Blind,
}

impl Mover for CacheFirst {
    type Xfer = Warming;
    type Done = FromPool;

    fn send_file(
        &mut self,
        x: &mut Warming,
        range: &mut FileRange,
        sock: &Arc<TcpStream>,
        max: Allowance,
        tag: Tag,
    ) -> Result<Moved, TransferError> {
        if x.busy {
            return Ok(Moved::Pending);
        }
        if std::mem::take(&mut x.full) {
            return Ok(Moved::Blocked(0));
        }
        if x.unsupported {
            return Ok(Moved::Unsupported);
        }
        if range.offset >= x.known_end {
            let span = range.left.min(CHECK_SPAN);
            if in_page_cache(range, span, &mut x.sight) {
                x.known_end = range.offset + span;
            } else if x.sight == Sight::Blind && range.left <= SMALL {
                return Ok(Moved::CopyOnce);
            } else {
                return Ok(self.send_by_helper(x, range, sock, max, tag));
            }
        }
        sendfile(
            range,
            sock.as_fd(),
            max.turn.min(x.known_end - range.offset),
        )
    }

    fn read_file(
        &mut self,
        x: &mut Warming,
        range: &mut FileRange,
        buf: &mut [u8],
        tag: Tag,
    ) -> Result<Read, TransferError> {
        if x.busy {
            return Ok(Read::Pending);
        }
        let trusted = range.offset < x.known_end;
        match read_at(range, buf, !trusted)? {
            Some(n) => Ok(Read::Bytes(n)),
            None => {
                self.warm(x, range, tag);
                Ok(Read::Pending)
            }
        }
    }

    fn holds(&self, _: &Warming) -> bool {
        false
    }

    fn completed(
        &mut self,
        x: &mut Warming,
        range: &mut FileRange,
        done: FromPool,
    ) -> Result<u64, TransferError> {
        x.busy = false;
        match done {
            // Fewer bytes than the size announced still has: it shrank.
            FromPool::Warmed(Ok(n)) if n < x.asked => Err(TransferError::Shrunk),
            FromPool::Warmed(Ok(n)) => {
                x.known_end = range.offset + n;
                Ok(0)
            }
            FromPool::Warmed(Err(e)) => Err(TransferError::Source(e)),
            FromPool::Sent(moved) => {
                let n = match moved? {
                    Moved::Sent(n) => n,
                    Moved::Blocked(n) => {
                        x.full = true;
                        n
                    }
                    Moved::Unsupported => {
                        x.unsupported = true;
                        0
                    }
                    Moved::Pending | Moved::CopyOnce => 0,
                };
                range.offset += n;
                range.left = range.left.saturating_sub(n);
                Ok(n)
            }
            FromPool::Wrote(..) | FromPool::Received(_) => {
                Err(TransferError::Source(io::ErrorKind::Other.into()))
            }
        }
    }

    /// Upload data is written by a helper thread, so that no worker
    /// waits for the disk.
    fn write_file(
        &mut self,
        x: &mut Warming,
        file: &Arc<File>,
        offset: u64,
        buf: Vec<u8>,
        tag: Tag,
    ) {
        x.busy = true;
        let work = Work::Write {
            file: Arc::clone(file),
            offset,
            buf,
        };
        self.pool.submit(self.worker, JobTag::Mover(tag), work);
    }

    fn written(
        &mut self,
        x: &mut Warming,
        done: FromPool,
    ) -> Result<Option<Vec<u8>>, TransferError> {
        x.busy = false;
        match done {
            FromPool::Wrote(buf, Ok(())) => Ok(Some(buf)),
            FromPool::Wrote(_, Err(e)) => Err(write_error(e)),
            _ => Err(TransferError::Sink(io::ErrorKind::Other.into())),
        }
    }

    /// Binary upload data is spliced from the socket into the file by a
    /// helper thread (`engine::intake`): one copy, one hand-off per socket
    /// drained.
    fn receives(&self) -> bool {
        true
    }

    fn receive_file(
        &mut self,
        x: &mut Warming,
        sock: &Arc<TcpStream>,
        file: &Arc<File>,
        offset: u64,
        head: Vec<u8>,
        max: u64,
        tag: Tag,
    ) {
        x.busy = true;
        x.sock = Some(Arc::clone(sock));
        let work = Work::Receive {
            sock: Arc::clone(sock),
            file: Arc::clone(file),
            offset,
            head,
            max,
        };
        self.pool.submit(self.worker, JobTag::Mover(tag), work);
    }

    fn received(&mut self, x: &mut Warming, done: FromPool) -> Result<Intake, TransferError> {
        x.busy = false;
        match done {
            FromPool::Received(r) => r,
            _ => Err(TransferError::Sink(io::ErrorKind::Other.into())),
        }
    }

    fn finish(&mut self, x: Warming, _: Tag) {
        // A helper still sending (or receiving) holds the socket open: it
        // ends now for the client all the same.
        if x.busy
            && let Some(sock) = &x.sock
        {
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
    }

    fn finish_late(&mut self, _: Tag, _: FromPool) {}
}

/// `cachestat(2)` (Linux 6.5), the same number on every architecture.
const SYS_CACHESTAT: libc::c_long = 451;

/// Set once the kernel said it has no `cachestat`.
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

/// Whether the next `len` bytes of `range` are all in the page cache, as
/// far as `cachestat` can tell: a file it may not look at (`sight`
/// becomes `Blind`), or a kernel without it, is never known to be.
fn in_page_cache(range: &FileRange, len: u64, sight: &mut Sight) -> bool {
    #[repr(C)]
    struct CachestatRange {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Cachestat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    if len == 0 {
        return true;
    }
    if *sight == Sight::Blind || NO_CACHESTAT.load(Ordering::Relaxed) {
        return false;
    }
    const PAGE: u64 = 4096;
    let first = range.offset / PAGE;
    let last = (range.offset + len - 1) / PAGE;
    let want = CachestatRange {
        off: first * PAGE,
        len: (last - first + 1) * PAGE,
    };
    let mut got = Cachestat::default();
    // SAFETY: cachestat reads `want` and writes `got`, both live, properly
    // laid out (include/uapi/linux/mman.h) and unaliased for the call;
    // flags must be 0.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            range.file.as_raw_fd(),
            &want as *const CachestatRange,
            &mut got as *mut Cachestat,
            0u32,
        )
    };
    if r != 0 {
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOSYS) => NO_CACHESTAT.store(true, Ordering::Relaxed),
            // Not this file (or not allowed by a container's filter, which
            // says the same for every file: a failed call a transfer).
            Some(libc::EPERM) => *sight = Sight::Blind,
            _ => {}
        }
        return false;
    }
    *sight = Sight::Clear;
    got.nr_cache > last - first
}

#[cfg(test)]
mod tests;
