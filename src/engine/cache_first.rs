//! The epoll workers' mover: `sendfile(2)` when the bytes are in the page
//! cache, and a helper thread to read them in first when they are not, so
//! a worker never waits for the disk. A warm cache (the common case)
//! costs one `cachestat(2)` per megabyte and stays zero-copy; a cold one
//! costs a read on a helper thread, then the same zero-copy send.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use std::fs::File;
use std::sync::Arc;

use super::mover::{
    FileRange, Moved, Mover, Read, SENDFILE_CHUNK, Tag, read_at, sendfile, write_error,
};
use super::pool::{Helped, JobTag, Pool, Work};
use crate::core::session::TransferError;

/// Bytes a helper thread reads into the page cache at a time.
const WARM_CHUNK: u64 = 1 << 20;

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
}

/// A transfer's state: a read in flight, and how far the file is known
/// to be in the page cache.
#[derive(Debug, Default)]
pub struct Warming {
    busy: bool,
    warm_end: u64,
    /// Bytes the read in flight was asked for.
    asked: u64,
}

impl Warming {
    /// A helper thread is reading for this transfer.
    pub fn busy(&self) -> bool {
        self.busy
    }
}

impl Mover for CacheFirst {
    type Xfer = Warming;
    type Done = Helped;

    fn send_file(
        &mut self,
        x: &mut Warming,
        range: &mut FileRange,
        sock: &TcpStream,
        max: u64,
        tag: Tag,
    ) -> Result<Moved, TransferError> {
        if x.busy {
            return Ok(Moved::Pending);
        }
        let limit = if range.offset < x.warm_end {
            // Just read in by a helper: trust it rather than check again.
            x.warm_end - range.offset
        } else {
            let chunk = range.left.min(SENDFILE_CHUNK);
            if !in_page_cache(range, chunk) {
                self.warm(x, range, tag);
                return Ok(Moved::Pending);
            }
            chunk
        };
        sendfile(range, sock, max.min(limit))
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
        let trusted = range.offset < x.warm_end;
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
        done: Helped,
    ) -> Result<(), TransferError> {
        x.busy = false;
        let done = match done {
            Helped::Warm(r) => r,
            Helped::Wrote(..) => return Err(TransferError::Source(io::ErrorKind::Other.into())),
        };
        match done {
            // Fewer bytes than the size announced still has: it shrank.
            Ok(n) if n < x.asked => Err(TransferError::Shrunk),
            Ok(n) => {
                x.warm_end = range.offset + n;
                Ok(())
            }
            Err(e) => Err(TransferError::Source(e)),
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

    fn written(&mut self, x: &mut Warming, done: Helped) -> Result<Option<Vec<u8>>, TransferError> {
        x.busy = false;
        match done {
            Helped::Wrote(buf, Ok(())) => Ok(Some(buf)),
            Helped::Wrote(_, Err(e)) => Err(write_error(e)),
            Helped::Warm(_) => Err(TransferError::Sink(io::ErrorKind::Other.into())),
        }
    }

    fn finish(&mut self, _: Warming, _: Tag) {}

    fn finish_late(&mut self, _: Tag, _: Helped) {}
}

/// `cachestat(2)` (Linux 6.5), the same number on every architecture.
const SYS_CACHESTAT: libc::c_long = 451;

/// Set once the kernel said it has no `cachestat`.
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

/// Whether the next `len` bytes of `range` are all in the page cache.
/// Without `cachestat`, the answer is no: a helper reads them first.
fn in_page_cache(range: &FileRange, len: u64) -> bool {
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
    if len == 0 || NO_CACHESTAT.load(Ordering::Relaxed) {
        return len == 0;
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
        // Not in this kernel, or not allowed by a container's filter.
        if matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOSYS | libc::EPERM)
        ) {
            NO_CACHESTAT.store(true, Ordering::Relaxed);
        }
        return false;
    }
    got.nr_cache > last - first
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fs::Root;
    use crate::fs::test_tree::TempTree;

    /// A read-in that comes back short means the file shrank: the
    /// transfer ends (451) rather than asking again and again.
    #[test]
    fn a_short_read_in_is_a_shrunk_file() {
        let t = TempTree::new("cache-first");
        t.file("f", 0o644, &[1u8; 4096]);
        let root = Arc::new(Root::open(&t.path).unwrap());
        let mut m = CacheFirst::new(
            Pool::new(Arc::new(crate::fs::trees::Trees::single(root)), 1, 2).unwrap(),
            0,
        );
        let file = Arc::new(std::fs::File::open(t.at("f")).unwrap());
        let mut range = FileRange {
            file,
            offset: 0,
            left: 1 << 20,
        };
        let mut x = Warming::default();
        let tag = Tag {
            slot: 0,
            serial: 0,
            generation: 0,
        };
        m.warm(&mut x, &range, tag);
        assert!(x.busy());
        let r = m.completed(&mut x, &mut range, Helped::Warm(Ok(4096)));
        assert!(matches!(r, Err(TransferError::Shrunk)), "{r:?}");
        m.warm(&mut x, &range, tag);
        assert!(
            m.completed(&mut x, &mut range, Helped::Warm(Ok(1 << 20)))
                .is_ok()
        );
        assert_eq!(x.warm_end, 1 << 20);
    }
}
