//! The io_uring workers' mover: downloads as every engine sends them
//! (`engine::cache_first`: `sendfile(2)` from the worker for bytes
//! `cachestat` says are in the page cache, from a helper thread for the
//! rest), and binary uploads as the epoll workers receive them (a helper
//! thread splices socket -> pipe -> file, `engine::intake`: one copy).
//! What must pass through the worker's buffers (TYPE A, TLS, a file that
//! cannot take spliced bytes) is written through the ring (`write`), so
//! that the worker never waits for the disk.
//!
//! Binary uploads were received into buffers by the worker and written
//! through the ring: two copies, the writes done by the kernel's io-wq.
//! A 1 GiB upload from curl on loopback cost the server a median 1.38 s
//! of CPU that way, 1.15 s by the helper's splice (18 pairs, a busy
//! 2-core machine).
//!
//! Downloads were spliced file -> pipe by the ring, then pipe -> socket by
//! the worker: the kernel's io-wq did every file -> pipe splice, a
//! hand-off for each pipe's 512 KiB, which measured 1.2 to 1.5 times the
//! CPU of the sendfile floor where the helpers' sends (a hand-off each
//! time the socket fills, or every 10 ms) measured 0.9 to 1.0; and the
//! pipes counted against the user's pipe allowance
//! (fs.pipe-user-pages-soft), past which the kernel made them a page or
//! two.

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use io_uring::squeue;

use super::write::{InFlight, Writing};
use crate::core::session::TransferError;
use crate::engine::cache_first::{CacheFirst, Warming};
use crate::engine::mover::{Allowance, FileRange, Intake, Moved, Mover, Read, Tag};
use crate::engine::pool::{FromPool, Pool};

/// The completion of an operation of this mover.
pub enum Done {
    /// An upload's write through the ring: bytes, or `-errno`.
    Written(i32),
    /// A helper thread's job (a download's send or read-in, an upload's
    /// receive).
    Pool(FromPool),
}

/// A transfer's part of the mover.
#[derive(Default)]
pub struct Moving {
    /// A download's, or an upload's receive by a helper (as the epoll
    /// workers').
    file: Warming,
    /// An upload's write through the ring.
    write: Writing,
}

/// An upload ended while its write was in flight: the ring still reads
/// its buffer, kept until the completion is reaped.
struct Retired {
    tag: Tag,
    _write: InFlight,
}

/// A worker's mover.
pub struct RingMover {
    files: CacheFirst,
    retired: Vec<Retired>,
    /// Submissions for the ring, in order: the worker pushes them.
    pub outbox: Vec<squeue::Entry>,
}

impl RingMover {
    pub fn new(pool: Pool, worker: usize) -> RingMover {
        RingMover {
            files: CacheFirst::new(pool, worker),
            retired: Vec::new(),
            outbox: Vec::new(),
        }
    }
}

impl Mover for RingMover {
    type Xfer = Moving;
    type Done = Done;

    fn send_file(
        &mut self,
        x: &mut Moving,
        range: &mut FileRange,
        sock: &Arc<TcpStream>,
        max: Allowance,
        tag: Tag,
    ) -> Result<Moved, TransferError> {
        self.files.send_file(&mut x.file, range, sock, max, tag)
    }

    fn read_file(
        &mut self,
        x: &mut Moving,
        range: &mut FileRange,
        buf: &mut [u8],
        tag: Tag,
    ) -> Result<Read, TransferError> {
        self.files.read_file(&mut x.file, range, buf, tag)
    }

    fn holds(&self, x: &Moving) -> bool {
        self.files.holds(&x.file)
    }

    fn completed(
        &mut self,
        x: &mut Moving,
        range: &mut FileRange,
        done: Done,
    ) -> Result<u64, TransferError> {
        match done {
            Done::Pool(r) => self.files.completed(&mut x.file, range, r),
            // No download writes.
            Done::Written(_) => Err(TransferError::Source(io::ErrorKind::Other.into())),
        }
    }

    fn write_file(
        &mut self,
        x: &mut Moving,
        file: &Arc<File>,
        offset: u64,
        buf: Vec<u8>,
        tag: Tag,
    ) {
        x.write.submit(file, offset, buf, tag, &mut self.outbox);
    }

    fn written(&mut self, x: &mut Moving, done: Done) -> Result<Option<Vec<u8>>, TransferError> {
        match done {
            Done::Written(res) => x.write.completed(res, &mut self.outbox),
            Done::Pool(_) => Err(TransferError::Sink(io::ErrorKind::Other.into())),
        }
    }

    fn receives(&self) -> bool {
        self.files.receives()
    }

    fn receive_file(
        &mut self,
        x: &mut Moving,
        sock: &Arc<TcpStream>,
        file: &Arc<File>,
        offset: u64,
        head: Vec<u8>,
        max: u64,
        tag: Tag,
    ) {
        self.files
            .receive_file(&mut x.file, sock, file, offset, head, max, tag);
    }

    fn received(&mut self, x: &mut Moving, done: Done) -> Result<Intake, TransferError> {
        match done {
            Done::Pool(r) => self.files.received(&mut x.file, r),
            // A receive is the only operation of its transfer in flight.
            Done::Written(_) => Err(TransferError::Sink(io::ErrorKind::Other.into())),
        }
    }

    fn finish(&mut self, x: Moving, tag: Tag) {
        self.files.finish(x.file, tag);
        if let Some(w) = x.write.inflight {
            self.retired.push(Retired {
                tag: w.tag(),
                _write: w,
            });
        }
    }

    fn finish_late(&mut self, tag: Tag, done: Done) {
        match done {
            Done::Pool(r) => self.files.finish_late(tag, r),
            Done::Written(_) => {
                let low = |g: u32| g & GENERATION_MASK;
                if let Some(i) = self.retired.iter().position(|r| {
                    r.tag.slot == tag.slot && low(r.tag.generation) == low(tag.generation)
                }) {
                    self.retired.swap_remove(i);
                }
            }
        }
    }
}

/// The generation bits a ring operation carries in its user_data.
pub const GENERATION_MASK: u32 = 0xff_ffff;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fs::Root;
    use crate::fs::test_tree::TempTree;

    fn pool(t: &TempTree) -> Pool {
        let root = Arc::new(Root::open(&t.path).unwrap());
        Pool::new(Arc::new(crate::fs::trees::Trees::single(root)), 1, 2).unwrap()
    }

    fn mover(t: &TempTree) -> RingMover {
        RingMover::new(pool(t), 0)
    }

    /// A binary upload's bytes go from the socket into the file by a
    /// helper thread (as the epoll workers'), nothing through the ring.
    #[test]
    fn a_binary_upload_is_received_by_a_helper() {
        use crate::engine::mover::Next;
        use crate::engine::pool::Output;
        use std::io::Write as _;
        use std::time::{Duration, Instant};

        let t = TempTree::new("ring-mover-receive");
        t.file("up", 0o644, b"");
        let file = Arc::new(File::options().write(true).open(t.at("up")).unwrap());
        let pool = pool(&t);
        let mut m = RingMover::new(pool.clone(), 0);
        assert!(m.receives());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let sock = Arc::new(server);
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&body).unwrap();
        drop(client);

        let mut x = Moving::default();
        let tag = Tag {
            slot: 0,
            serial: 0,
            generation: 0,
        };
        let head = b"head".to_vec();
        let mut offset = head.len() as u64;
        m.receive_file(&mut x, &sock, &file, 0, head, u64::MAX, tag);
        let began = Instant::now();
        let mut out = Vec::new();
        loop {
            assert!(began.elapsed() < Duration::from_secs(10), "no end");
            pool.take(0, &mut out);
            let Some(d) = out.pop() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let Output::Mover(r) = d.output else {
                panic!("not a mover's job")
            };
            let intake = m.received(&mut x, Done::Pool(r)).unwrap();
            offset += intake.bytes;
            if intake.next == Next::End {
                break;
            }
            m.receive_file(&mut x, &sock, &file, offset, Vec::new(), u64::MAX, tag);
        }
        assert!(m.outbox.is_empty(), "nothing through the ring");
        let mut want = b"head".to_vec();
        want.extend_from_slice(&body);
        assert_eq!(std::fs::read(t.at("up")).unwrap(), want);
        m.finish(x, tag);
    }

    /// An upload dropped while its write is in flight: the buffer the ring
    /// reads stays with the mover until that write's completion, and only
    /// that one's.
    #[test]
    fn a_write_outlives_its_upload() {
        let t = TempTree::new("ring-mover");
        t.file("f", 0o644, b"");
        let file = Arc::new(File::options().write(true).open(t.at("f")).unwrap());
        let mut m = mover(&t);
        let mut x = Moving::default();
        let tag = Tag {
            slot: 3,
            serial: 1,
            generation: 7,
        };
        m.write_file(&mut x, &file, 0, vec![1u8; 4096], tag);
        assert_eq!(m.outbox.len(), 1, "a write for the ring");
        m.finish(x, tag);
        assert_eq!(m.retired.len(), 1);
        let other = Tag { slot: 4, ..tag };
        m.finish_late(other, Done::Written(4096));
        assert_eq!(m.retired.len(), 1, "another slot's completion");
        m.finish_late(tag, Done::Written(4096));
        assert!(m.retired.is_empty());
    }
}
