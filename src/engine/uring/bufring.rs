//! The provided buffer ring for control input: the kernel picks a buffer
//! for each multishot recv completion, so an idle session holds no read
//! buffer. The engine's only raw memory shared with the kernel.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, types};

/// Control-input buffers per worker (a power of two) and their size:
/// 256 x 1 KiB = 256 KiB per worker, whatever the number of sessions. A
/// buffer is held only from the recv's completion until the session has
/// taken its bytes, so this bounds completions in flight, not sessions;
/// commands are short, a longer burst takes several buffers, and a ring
/// that runs dry re-arms once they are back. (512 x 2 KiB cost idle
/// servers 2 MiB of touched pages for nothing.)
pub const RECV_BUFS: u16 = 256;
pub const RECV_BUF_SIZE: usize = 1024;
/// The buffer group of the ring.
pub const BGID: u16 = 0;

/// `struct io_uring_buf`: one entry of a provided buffer ring. The `resv`
/// field of the first entry is the ring's tail, written by us, read by the
/// kernel; the others are never touched.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(size_of::<RingEntry>() == size_of::<types::BufRingEntry>());

/// Bytes of the ring part of the mapping (a whole number of pages for any
/// page size up to 8 KiB; the buffers follow it).
const RING_BYTES: usize = RECV_BUFS as usize * size_of::<RingEntry>();

/// The provided buffer ring for control input: one anonymous mapping,
/// page-aligned as the kernel wants, the ring entries first, then
/// [`RECV_BUFS`] buffers of [`RECV_BUF_SIZE`]. Every buffer is either in
/// the ring (the kernel may fill it) or handed to us by one completion
/// (ours to read until [`BufRing::recycle`]).
pub struct BufRing {
    base: *mut u8,
    len: usize,
    /// Our copy of the ring's tail: entries published so far.
    tail: u16,
    /// Set when operations may still be in flight as the worker ends:
    /// then the memory is never unmapped.
    pub leak: bool,
}

// SAFETY: the mapping is owned by the BufRing alone (no other pointer to
// it is kept), so moving it to another thread moves that ownership.
unsafe impl Send for BufRing {}

impl BufRing {
    pub fn new() -> io::Result<BufRing> {
        use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
        let len = RING_BYTES + RECV_BUFS as usize * RECV_BUF_SIZE;
        // SAFETY: a fresh private anonymous mapping at an address of the
        // kernel's choosing: it aliases nothing of ours.
        let base = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }?;
        let mut r = BufRing {
            base: base.cast(),
            len,
            tail: 0,
            leak: false,
        };
        for bid in 0..RECV_BUFS {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    pub fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the ring memory stays mapped for as long as the ring can
        // use it: a BufRing is dropped only after its ring (field order
        // of Core), and leaked when operations may be in flight.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(self.base as u64, RECV_BUFS, BGID, 0)
        }
    }

    fn buffer(&self, bid: u16) -> *mut u8 {
        let at = RING_BYTES + usize::from(bid % RECV_BUFS) * RECV_BUF_SIZE;
        // SAFETY: `at` + RECV_BUF_SIZE <= self.len: inside the mapping.
        unsafe { self.base.add(at) }
    }

    /// Writes the entry at the tail for buffer `bid` (not yet published).
    fn push(&mut self, bid: u16) {
        let idx = usize::from(self.tail % RECV_BUFS);
        let addr = self.buffer(bid) as u64;
        // SAFETY: idx < RECV_BUFS, so the entry lies in the ring part of
        // the mapping. The slot at our tail is outside the kernel's window
        // (head..tail), since at most RECV_BUFS buffers exist and `bid` is
        // not in the ring: the kernel does not read it until the tail is
        // published. Fields are written through raw pointers, never the
        // first entry's `resv` (the tail).
        unsafe {
            let e = self.base.cast::<RingEntry>().add(idx);
            std::ptr::addr_of_mut!((*e).addr).write(addr);
            std::ptr::addr_of_mut!((*e).len).write(RECV_BUF_SIZE as u32);
            std::ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries pushed so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the first entry's `resv` is the u16-aligned tail inside
        // the mapping; the kernel only reads it, with acquire ordering to
        // match this release store.
        let tail = unsafe {
            &*std::ptr::addr_of_mut!((*self.base.cast::<RingEntry>()).resv).cast::<AtomicU16>()
        };
        tail.store(self.tail, Ordering::Release);
    }

    /// The `len` bytes the kernel put into buffer `bid`.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        if bid >= RECV_BUFS {
            return &[];
        }
        // SAFETY: the completion that named `bid` handed the buffer to us;
        // the kernel does not write it again until `recycle(bid)`, which
        // needs `&mut self`, so not while this slice lives.
        unsafe { std::slice::from_raw_parts(self.buffer(bid), len.min(RECV_BUF_SIZE)) }
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        if bid < RECV_BUFS {
            self.push(bid);
            self.publish();
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: our own mapping, no longer used: the ring that knew it
            // is gone, and no slice of it outlives `self`.
            let _ = unsafe { rustix::mm::munmap(self.base.cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffer ring hands out every buffer once and takes them back.
    #[test]
    fn buffer_ring_layout() {
        let mut b = BufRing::new().unwrap();
        assert_eq!(b.tail, RECV_BUFS);
        assert_eq!(b.base as usize % 4096, 0);
        let first = b.buffer(0) as usize;
        assert_eq!(first - b.base as usize, RING_BYTES);
        assert_eq!(b.buffer(1) as usize - first, RECV_BUF_SIZE);
        assert_eq!(b.get(3, 10).len(), 10);
        assert_eq!(b.get(3, 1 << 20).len(), RECV_BUF_SIZE);
        assert!(b.get(RECV_BUFS, 10).is_empty());
        b.recycle(3);
        assert_eq!(b.tail, RECV_BUFS + 1);
    }
}
