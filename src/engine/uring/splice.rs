//! The io_uring workers' mover: file -> pipe by the ring (it may wait for
//! the disk: the kernel's io-wq does that, not the worker), pipe -> socket
//! by a plain non-blocking `splice(2)` in the worker (it never waits;
//! through the ring it cost an io-wq hand-off a chunk, and measured 30%
//! more CPU per GiB). A transfer holds a pipe of the worker's pool only
//! while the pipe holds its bytes; when none is free (stalled readers hold
//! theirs), the round is copied instead, and the copying path (TYPE A)
//! reads what the page cache holds and has a helper thread read the rest.

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, squeue, types};
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use super::pipes::{Pipe, Pipes};
use super::write::Writing;
use super::{OP_MOVER, user_data};
use crate::core::session::TransferError;
use crate::engine::cache_first::{CacheFirst, Warming};
use crate::engine::mover::{Allowance, FileRange, Moved, Mover, Read, Tag};
use crate::engine::pool::{FromPool, Pool};

/// The completion of an operation of this mover.
pub enum Done {
    /// A ring operation (a file -> pipe splice, or an upload's write):
    /// bytes, or `-errno`.
    Spliced(i32),
    /// A helper thread's job for the copying path (a read-in).
    Pool(FromPool),
}

/// A transfer's part of the mover.
#[derive(Default)]
pub struct Spliced {
    /// The pipe, while it holds bytes of this transfer (or a splice into
    /// it is in flight).
    pipe: Option<Pipe>,
    /// Bytes in the pipe not yet sent.
    in_pipe: u32,
    /// The file of a splice in flight, kept open until it completes.
    splicing: Option<Arc<File>>,
    /// The copying path's reads (as the epoll workers': page cache first,
    /// a helper thread for the rest).
    warming: Warming,
    /// The file cannot be spliced (its filesystem refuses).
    no_splice: bool,
    /// An upload's write through the ring.
    write: Writing,
}

/// A transfer ended while its splice was in flight: what the splice holds
/// waits for its completion.
struct Retired {
    tag: Tag,
    pipe: Option<Pipe>,
    in_pipe: u32,
    _file: Arc<File>,
    /// An upload's write in flight: its buffer.
    _write: Option<super::write::InFlight>,
}

/// A worker's mover.
pub struct SpliceRing {
    pipes: Pipes,
    /// The copying path.
    copy: CacheFirst,
    retired: Vec<Retired>,
    /// Submissions for the ring, in order: the worker pushes them.
    pub outbox: Vec<squeue::Entry>,
}

impl SpliceRing {
    pub fn new(pool: Pool, worker: usize) -> SpliceRing {
        SpliceRing {
            pipes: Pipes::default(),
            copy: CacheFirst::new(pool, worker),
            retired: Vec::new(),
            outbox: Vec::new(),
        }
    }

    /// How the worker's pool of pipes is used, for the metrics.
    pub fn pipe_use(&self) -> crate::monitor::board::PipeUse {
        self.pipes.usage()
    }

    /// Splices in flight for transfers already over, in `slot`.
    #[cfg(test)]
    fn retired_in(&self, slot: usize) -> usize {
        self.retired.iter().filter(|r| r.tag.slot == slot).count()
    }
}

impl Mover for SpliceRing {
    type Xfer = Spliced;
    type Done = Done;

    fn send_file(
        &mut self,
        x: &mut Spliced,
        range: &mut FileRange,
        sock: &Arc<TcpStream>,
        max: Allowance,
        tag: Tag,
    ) -> Result<Moved, TransferError> {
        let max = max.turn;
        if x.splicing.is_some() || x.warming.busy() {
            return Ok(Moved::Pending);
        }
        if x.no_splice {
            return Ok(Moved::Unsupported);
        }
        let mut sent = 0u64;
        if let Some(p) = &x.pipe {
            let before = x.in_pipe;
            let full = !splice_out(p, sock, &mut x.in_pipe, max)?;
            sent = u64::from(before - x.in_pipe);
            if full {
                return Ok(Moved::Blocked(sent));
            }
            if x.in_pipe > 0 {
                // `max` reached (a bandwidth limit): the rest waits.
                return Ok(Moved::Sent(sent));
            }
        }
        if let Some(p) = x.pipe.take() {
            // Empty: free for another transfer (or this one again).
            self.pipes.put(p, true);
        }
        if range.left == 0 || sent >= max {
            return Ok(Moved::Sent(sent));
        }
        let Some(p) = self.pipes.get() else {
            return Ok(if sent > 0 {
                Moved::Sent(sent)
            } else {
                Moved::CopyOnce
            });
        };
        // No more than may be sent next: a limited transfer's pipe holds
        // little while it waits.
        let len = range.left.min(u64::from(p.cap)).min(max - sent) as u32;
        let from = types::Fd(range.file.as_raw_fd());
        let off = i64::try_from(range.offset).unwrap_or(i64::MAX);
        let into = opcode::Splice::new(from, off, types::Fd(p.w.as_raw_fd()), -1, len).build();
        self.outbox
            .push(into.user_data(user_data(OP_MOVER, tag.slot, tag.generation)));
        x.pipe = Some(p);
        x.splicing = Some(range.file.clone());
        Ok(if sent > 0 {
            Moved::Sent(sent)
        } else {
            Moved::Pending
        })
    }

    fn read_file(
        &mut self,
        x: &mut Spliced,
        range: &mut FileRange,
        buf: &mut [u8],
        tag: Tag,
    ) -> Result<Read, TransferError> {
        if x.splicing.is_some() || x.warming.busy() {
            return Ok(Read::Pending);
        }
        // Bytes spliced into the pipe come first.
        if let Some(p) = &x.pipe
            && x.in_pipe > 0
        {
            let want = buf.len().min(x.in_pipe as usize);
            return match rustix::io::read(&p.r, &mut buf[..want]) {
                Ok(n) if n > 0 => {
                    x.in_pipe -= n as u32;
                    Ok(Read::Bytes(n))
                }
                Ok(_) => Err(TransferError::Shrunk),
                Err(e) => Err(TransferError::Source(e.into())),
            };
        }
        self.copy.read_file(&mut x.warming, range, buf, tag)
    }

    fn holds(&self, x: &Spliced) -> bool {
        x.in_pipe > 0 || x.splicing.is_some()
    }

    fn completed(
        &mut self,
        x: &mut Spliced,
        range: &mut FileRange,
        done: Done,
    ) -> Result<u64, TransferError> {
        match done {
            Done::Spliced(res) => {
                x.splicing = None;
                match res {
                    n if n > 0 => {
                        let n = n as u32;
                        x.in_pipe += n;
                        range.offset += u64::from(n);
                        range.left = range.left.saturating_sub(u64::from(n));
                        Ok(0)
                    }
                    // The file ended before the size announced.
                    0 => Err(TransferError::Shrunk),
                    e if matches!(-e, libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                        // A filesystem without splice support: copy by hand.
                        x.no_splice = true;
                        Ok(0)
                    }
                    e => Err(TransferError::Source(io::Error::from_raw_os_error(-e))),
                }
            }
            Done::Pool(r) => self.copy.completed(&mut x.warming, range, r),
        }
    }

    fn write_file(
        &mut self,
        x: &mut Spliced,
        file: &Arc<File>,
        offset: u64,
        buf: Vec<u8>,
        tag: Tag,
    ) {
        x.write.submit(file, offset, buf, tag, &mut self.outbox);
    }

    fn written(&mut self, x: &mut Spliced, done: Done) -> Result<Option<Vec<u8>>, TransferError> {
        match done {
            Done::Spliced(res) => x.write.completed(res, &mut self.outbox),
            Done::Pool(_) => Err(TransferError::Sink(io::ErrorKind::Other.into())),
        }
    }

    fn finish(&mut self, x: Spliced, tag: Tag) {
        if let Some(w) = x.write.inflight {
            // The ring still reads the buffer: kept until the completion.
            let file = Arc::clone(w.file());
            self.retired.push(Retired {
                tag: w.tag(),
                pipe: None,
                in_pipe: 0,
                _file: file,
                _write: Some(w),
            });
        }
        match x.splicing {
            Some(file) => self.retired.push(Retired {
                tag,
                pipe: x.pipe,
                in_pipe: x.in_pipe,
                _file: file,
                _write: None,
            }),
            None => {
                if let Some(p) = x.pipe {
                    self.pipes.put(p, x.in_pipe == 0);
                }
            }
        }
    }

    fn finish_late(&mut self, tag: Tag, done: Done) {
        let Done::Spliced(res) = done else {
            return;
        };
        let low = |g: u32| g & GENERATION_MASK;
        let Some(i) = self
            .retired
            .iter()
            .position(|r| r.tag.slot == tag.slot && low(r.tag.generation) == low(tag.generation))
        else {
            return;
        };
        let r = self.retired.swap_remove(i);
        if let Some(p) = r.pipe {
            // What the pipe now holds decides whether it can serve again.
            self.pipes.put(p, r.in_pipe == 0 && res <= 0);
        }
    }
}

/// The generation bits a ring operation carries in its user_data.
pub const GENERATION_MASK: u32 = 0xff_ffff;

/// Splices what the pipe holds to the (non-blocking) socket, `max` bytes
/// at most: `Ok(true)` once the pipe is empty or `max` went, `Ok(false)`
/// when the socket is full.
pub fn splice_out(
    pipe: &Pipe,
    sock: &TcpStream,
    in_pipe: &mut u32,
    max: u64,
) -> Result<bool, TransferError> {
    let mut left = max;
    while *in_pipe > 0 && left > 0 {
        let len = u64::from(*in_pipe).min(left) as usize;
        match rustix::pipe::splice(&pipe.r, None, sock, None, len, SpliceFlags::NONBLOCK) {
            Ok(0) => return Err(TransferError::Connection(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                let n = u32::try_from(n).unwrap_or(*in_pipe).min(*in_pipe);
                *in_pipe -= n;
                left = left.saturating_sub(u64::from(n));
            }
            Err(Errno::AGAIN) => return Ok(false),
            Err(Errno::INTR) => {}
            Err(e) => return Err(TransferError::Connection(e.into())),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    use crate::engine::pool::Pool;
    use crate::fs::Root;
    use crate::fs::test_tree::TempTree;

    fn tempfile_with(len: u64) -> Arc<File> {
        let t = TempTree::new("splice");
        t.file("f", 0o644, b"");
        let path = t.at("f");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len)
            .unwrap();
        Arc::new(std::fs::File::open(&path).unwrap())
    }

    fn mover() -> (SpliceRing, TempTree) {
        let t = TempTree::new("splice-root");
        let root = Arc::new(Root::open(&t.path).unwrap());
        (
            SpliceRing::new(
                Pool::new(Arc::new(crate::fs::trees::Trees::single(root)), 1, 2).unwrap(),
                0,
            ),
            t,
        )
    }

    fn both(n: u64) -> Allowance {
        Allowance { turn: n, helper: n }
    }

    fn tag() -> Tag {
        Tag {
            slot: 1,
            serial: 1,
            generation: 7,
        }
    }

    /// The accounting of a file -> pipe splice: it fills the pipe and
    /// advances the file; nothing before the end is a shrunk file; a file
    /// that cannot be spliced is copied.
    #[test]
    fn splice_accounting() {
        let (mut m, _t) = mover();
        let mut x = Spliced::default();
        let mut range = FileRange {
            file: tempfile_with(100_000),
            offset: 0,
            left: 100_000,
        };
        let sock = Arc::new(
            TcpStream::connect(
                TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap(),
            )
            .unwrap(),
        );
        assert_eq!(
            m.send_file(&mut x, &mut range, &sock, both(1 << 20), tag())
                .unwrap(),
            Moved::Pending
        );
        assert_eq!(m.outbox.len(), 1, "a splice for the ring");
        assert!(
            m.completed(&mut x, &mut range, Done::Spliced(30_000))
                .is_ok()
        );
        assert_eq!(x.in_pipe, 30_000);
        assert_eq!((range.offset, range.left), (30_000, 70_000));
        x.splicing = Some(range.file.clone());
        assert!(matches!(
            m.completed(&mut x, &mut range, Done::Spliced(0)),
            Err(TransferError::Shrunk)
        ));
        assert!(matches!(
            m.completed(&mut x, &mut range, Done::Spliced(-libc::EIO)),
            Err(TransferError::Source(_))
        ));
        assert!(
            m.completed(&mut x, &mut range, Done::Spliced(-libc::EINVAL))
                .is_ok()
        );
        assert!(x.no_splice, "falls back to copying");
    }

    /// A transfer dropped mid-splice keeps its pipe until the splice is
    /// back; a pipe that may hold its bytes is not reused.
    #[test]
    fn a_splice_outlives_its_transfer() {
        let (mut m, _t) = mover();
        let mut x = Spliced::default();
        let mut range = FileRange {
            file: tempfile_with(10_000),
            offset: 0,
            left: 10_000,
        };
        let sock = Arc::new(
            TcpStream::connect(
                TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap(),
            )
            .unwrap(),
        );
        assert_eq!(
            m.send_file(&mut x, &mut range, &sock, both(1 << 20), tag())
                .unwrap(),
            Moved::Pending
        );
        m.finish(x, tag());
        assert_eq!(m.retired_in(1), 1);
        m.finish_late(tag(), Done::Spliced(10_000));
        assert_eq!(m.retired_in(1), 0);
    }

    /// A bandwidth limit's `max` bounds what leaves the pipe.
    #[test]
    fn splice_out_stops_at_max() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        sock.set_nonblocking(true).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let pipe = Pipe { r, w, cap: 65_536 };
        let mut in_pipe = rustix::io::write(&pipe.w, &[9u8; 16_384]).unwrap() as u32;
        assert!(splice_out(&pipe, &sock, &mut in_pipe, 1000).unwrap());
        assert_eq!(in_pipe, 16_384 - 1000);
        let mut got = vec![0u8; 1000];
        std::io::Read::read_exact(&mut peer, &mut got).unwrap();
        assert!(got.iter().all(|&b| b == 9));
        peer.set_nonblocking(true).unwrap();
        let more = std::io::Read::read(&mut peer, &mut got);
        assert_eq!(more.unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    }

    /// The pipe -> socket half: all of the pipe while the socket takes
    /// it, then a full socket says so and keeps what is left.
    #[test]
    fn splice_out_stops_at_a_full_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        sock.set_nonblocking(true).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let pipe = Pipe { r, w, cap: 65_536 };
        let mut in_pipe = 0u32;
        let mut sent = 0u64;
        let mut total = 0u64;
        let mut full = false;
        // A socket buffer holds a few MiB at most: bounded.
        for _ in 0..1_000 {
            let n = rustix::io::write(&pipe.w, &[7u8; 16_384]).unwrap();
            in_pipe += n as u32;
            total += n as u64;
            let before = in_pipe;
            let r = splice_out(&pipe, &sock, &mut in_pipe, u64::MAX);
            sent += u64::from(before - in_pipe);
            match r {
                Ok(true) => assert_eq!(in_pipe, 0),
                Ok(false) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(full, "the socket never filled");
        assert_eq!(sent + u64::from(in_pipe), total);
        let mut got = vec![0u8; 65_536];
        let n = std::io::Read::read(&mut peer, &mut got).unwrap();
        assert!(n > 0 && got[..n].iter().all(|&b| b == 7));
    }
}
