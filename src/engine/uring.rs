//! The io_uring engine of `aftpd-supervisor`: one worker thread, one ring,
//! many sessions. The same workers, session core and shared worker logic
//! (`driver::worker`) as the epoll engine; only how the worker waits and
//! moves bytes differs. It decides nothing about FTP.
//!
//! - Accepting: one multishot accept per listener (re-armed when the
//!   kernel ends it; cancelled during an accept back-off and at a stop).
//! - Control input: one multishot recv per session, with buffers picked by
//!   the kernel from a per-worker provided buffer ring (`BufRing`): an
//!   idle session holds no read buffer. A buffer goes back to the ring as
//!   soon as the session has copied its bytes. When the session wants no
//!   input (backpressure, closing) the recv is cancelled, and re-armed
//!   later.
//! - Control output: one send in flight per session, from a copy of the
//!   session's output that the connection keeps untouched until the
//!   completion; the session's output is consumed only then.
//! - Downloads: binary files go file -> pipe -> socket with two splices,
//!   through a bounded per-worker `Pipes` pool: file -> pipe by the
//!   ring (it may wait for the disk: io-wq does that, not the worker),
//!   pipe -> socket by a plain non-blocking `splice(2)` in the worker (it
//!   never waits; through the ring it cost an io-wq hand-off a chunk, and
//!   measured 30% more CPU per GiB). A transfer holds a pipe
//!   only while the pipe holds its bytes, so a pipe serves many transfers
//!   in turn; when all are in use (stalled readers hold theirs), the round
//!   is copied instead (pread into the transfer's buffer, then send), so no
//!   transfer ever waits for a pipe. Listings and TYPE A are formatted by
//!   the shared [`Fill`] into a per-transfer buffer and sent by the worker
//!   with a non-blocking `send(2)` (a ring send per batch cost a
//!   completion round trip per 16 KiB). A full socket (data sockets are
//!   non-blocking) or 4 MiB sent ends a round: the engine polls for POLLOUT
//!   and goes on.
//! - Timers: the shared per-worker heap; the wait for completions is
//!   bounded by its first deadline (IORING_ENTER_EXT_ARG timeout).
//! - The ring is created disabled, restricted to the opcodes in
//!   `OPCODES` (IORING_REGISTER_RESTRICTIONS: io_uring operations bypass
//!   seccomp, so a bug cannot turn the ring into an open/connect/unlink
//!   primitive), then enabled.
//!
//! Memory safety: a submitted operation may point at a buffer (control
//! output, a transfer's buffer, the buffer ring) and names descriptors. A
//! buffer referenced by an operation in flight lives on the heap (a `Vec`
//! that is not touched, or a boxed data side), so moving its owner does not
//! move it; nothing is freed or closed until the operation's last
//! completion has been reaped. Hence cancellation is asynchronous: a
//! session that ends cancels what it has in flight and its slot is freed
//! once the last completion came back; a data side dropped mid-operation
//! is kept in `retired` until then. A worker that must exit with
//! operations still in flight leaks their memory rather than free it.

use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::register::{Probe, Restriction};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use crate::core::admission::Refusal;
use crate::core::clock::Now;
use crate::core::session::{Source, TransferError};
use crate::engine::context::Context;
use crate::engine::net;
use crate::engine::pump::{Fill, Pending, RUN_BUDGET};
use crate::engine::worker::{self, AcceptError, Admission, Fate, Life, Slab, Timers};

/// Submission queue entries per ring (more wait in a backlog).
const SQ_ENTRIES: u32 = 256;
/// Completion queue entries per ring: multishot operations post many (and
/// the kernel keeps any overflow). With the submission queue, about 84 KiB
/// per ring, counted against RLIMIT_MEMLOCK for an unprivileged user.
const CQ_ENTRIES: u32 = 4096;
/// Control-input buffers per worker (a power of two) and their size:
/// 256 x 1 KiB = 256 KiB per worker, whatever the number of sessions. A
/// buffer is held only from the recv's completion until the session has
/// taken its bytes, so this bounds completions in flight, not sessions;
/// commands are short, a longer burst takes several buffers, and a ring
/// that runs dry re-arms once they are back. (512 x 2 KiB cost idle
/// servers 2 MiB of touched pages for nothing.)
const RECV_BUFS: u16 = 256;
const RECV_BUF_SIZE: usize = 1024;
/// The buffer group of the ring.
const BGID: u16 = 0;
/// Pipes per worker, at most, and the size asked for each. 64 x 256 KiB
/// keeps two workers within the default per-user pipe allowance
/// (fs.pipe-user-pages-soft, 64 MiB).
const MAX_PIPES: usize = 64;
const PIPE_SIZE: usize = 1024 * 1024;
/// Bytes read per round when a binary file is copied instead of spliced.
const COPY_CHUNK: usize = 64 * 1024;
/// Bytes of listing formatted per send.
const LIST_BATCH: usize = 16 * 1024;
/// Control output per send.
const SEND_MAX: usize = 64 * 1024;
/// How long a worker waits for cancelled operations to come back after
/// the shutdown deadline, before it leaks what they use and exits.
const FORCED_DRAIN: Duration = Duration::from_secs(2);

/// Every opcode the engine submits; the ring refuses any other (EACCES).
/// AcceptMulti and Accept are both IORING_OP_ACCEPT, RecvMulti is
/// IORING_OP_RECV.
const OPCODES: [u8; 6] = [
    opcode::Accept::CODE,
    opcode::RecvMulti::CODE,
    opcode::Send::CODE,
    opcode::Splice::CODE,
    opcode::PollAdd::CODE,
    opcode::AsyncCancel::CODE,
];

/// What a completion is for: the low byte of its user_data. The index (a
/// listener or a session slot) is in the high 32 bits; for data-side
/// operations, bits 8..32 hold a tag: the data side's generation and the
/// operation ([`data_tag`]).
const OP_CANCEL: u8 = 0; // an AsyncCancel: nothing to do
const OP_WAKE: u8 = 1; // the worker's stop eventfd is readable
const OP_ACCEPT: u8 = 2; // a listener's multishot accept
const OP_RECV: u8 = 3; // a session's multishot recv
const OP_SEND: u8 = 4; // a session's control output
const OP_DATA: u8 = 5; // the one operation of a session's data side

fn user_data(kind: u8, index: usize, tag: u32) -> u64 {
    ((index as u64) << 32) | (u64::from(tag & 0xff_ffff) << 8) | u64::from(kind)
}

fn parse_user_data(ud: u64) -> (u8, usize, u32) {
    (ud as u8, (ud >> 32) as usize, (ud >> 8) as u32 & 0xff_ffff)
}

/// The tag of a data-side operation.
fn data_tag(generation: u16, op: DataOp) -> u32 {
    u32::from(generation) | (op as u32) << 16
}

fn parse_data_tag(tag: u32) -> (u16, Option<DataOp>) {
    let op = DataOp::ALL.into_iter().find(|&op| op as u32 == tag >> 16);
    (tag as u16, op)
}

fn errno(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

/// A worker's ring, set up and restricted, not yet enabled: the thread
/// that enables it (its worker) is then the only one that may submit.
pub struct Ring {
    ring: IoUring,
    bufs: BufRing,
}

/// Sets up the rings of `workers` workers, or says why io_uring cannot run
/// this engine here: a kernel too old, io_uring refused (seccomp,
/// `kernel.io_uring_disabled`), an opcode or feature missing, not enough
/// locked memory for every ring. Call it as the user the workers run as.
pub fn prepare(workers: usize) -> Result<Vec<Ring>, String> {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy().into_owned();
    if !at_least(&release, 6, 0) {
        return Err(format!(
            "kernel {release}: multishot recv needs Linux 6.0 or later"
        ));
    }
    (0..workers)
        .map(|_| setup().map_err(|e| e.to_string()))
        .collect()
}

/// Whether a kernel release string ("6.1.0-18-amd64") is at least
/// `major.minor`.
fn at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

fn context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A worker's ring and its buffer ring: the ring created disabled, the
/// opcodes and features checked, the buffer ring registered, the
/// restrictions installed (enabling is left to the worker's thread).
fn setup() -> io::Result<Ring> {
    let mut b = IoUring::builder();
    b.setup_r_disabled()
        .setup_cqsize(CQ_ENTRIES)
        .setup_submit_all();
    let mut fast = b.clone();
    fast.setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    let ring = match fast.build(SQ_ENTRIES) {
        Ok(r) => Ok(r),
        // Older kernels: without the task-running refinements.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => b.build(SQ_ENTRIES),
        Err(e) => Err(e),
    }
    .map_err(|e| context("io_uring_setup", e))?;
    let p = ring.params();
    if !(p.is_feature_ext_arg() && p.is_feature_nodrop() && p.is_feature_fast_poll()) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks IORING_FEAT_EXT_ARG, NODROP or FAST_POLL",
        ));
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| context("IORING_REGISTER_PROBE", e))?;
    if let Some(op) = OPCODES.iter().find(|&&op| !probe.is_supported(op)) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring opcode {op} not supported"),
        ));
    }
    let bufs = BufRing::new().map_err(|e| context("buffer ring", e))?;
    bufs.register(&ring)
        .map_err(|e| context("IORING_REGISTER_PBUF_RING", e))?;
    restrict(&ring)?;
    Ok(Ring { ring, bufs })
}

/// Allows [`OPCODES`] and the BUFFER_SELECT flag only, and no register
/// operation at all once the ring is enabled.
fn restrict(ring: &IoUring) -> io::Result<()> {
    let mut allowed: Vec<Restriction> = OPCODES.iter().map(|&op| Restriction::sqe_op(op)).collect();
    let flags = squeue::Flags::BUFFER_SELECT;
    allowed.push(Restriction::sqe_flags_allowed(flags.bits()));
    ring.submitter()
        .register_restrictions(&mut allowed)
        .map_err(|e| context("IORING_REGISTER_RESTRICTIONS", e))
}

impl Ring {
    /// Enables the ring: from now on only the calling thread submits.
    fn enable(self) -> io::Result<(IoUring, BufRing)> {
        self.ring
            .submitter()
            .register_enable_rings()
            .map_err(|e| context("IORING_REGISTER_ENABLE_RINGS", e))?;
        Ok((self.ring, self.bufs))
    }
}

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
struct BufRing {
    base: *mut u8,
    len: usize,
    /// Our copy of the ring's tail: entries published so far.
    tail: u16,
    /// Set when operations may still be in flight as the worker ends:
    /// then the memory is never unmapped.
    leak: bool,
}

// SAFETY: the mapping is owned by the BufRing alone (no other pointer to
// it is kept), so moving it to another thread moves that ownership.
unsafe impl Send for BufRing {}

impl BufRing {
    fn new() -> io::Result<BufRing> {
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

    fn register(&self, ring: &IoUring) -> io::Result<()> {
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
    fn get(&self, bid: u16, len: usize) -> &[u8] {
        if bid >= RECV_BUFS {
            return &[];
        }
        // SAFETY: the completion that named `bid` handed the buffer to us;
        // the kernel does not write it again until `recycle(bid)`, which
        // needs `&mut self`, so not while this slice lives.
        unsafe { std::slice::from_raw_parts(self.buffer(bid), len.min(RECV_BUF_SIZE)) }
    }

    /// Gives buffer `bid` back to the kernel.
    fn recycle(&mut self, bid: u16) {
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

/// A pipe of the pool: read end, write end, capacity.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: u32,
}

/// The worker's pipes for splicing: at most [`MAX_PIPES`], made on
/// demand, reused. A pipe that may hold stray bytes (its transfer ended
/// mid-splice) is closed rather than reused.
#[derive(Default)]
struct Pipes {
    free: Vec<Pipe>,
    made: usize,
}

impl Pipes {
    fn get(&mut self) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.made >= MAX_PIPES {
            return None;
        }
        use rustix::pipe::{PipeFlags, fcntl_getpipe_size, fcntl_setpipe_size, pipe_with};
        let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
        // Past the per-user allowance the kernel keeps the default size.
        let cap = fcntl_setpipe_size(&w, PIPE_SIZE)
            .or_else(|_| fcntl_getpipe_size(&w))
            .ok()?;
        self.made += 1;
        Some(Pipe {
            r,
            w,
            cap: u32::try_from(cap).unwrap_or(u32::MAX),
        })
    }

    fn put(&mut self, p: Pipe, clean: bool) {
        if clean {
            self.free.push(p);
        } else {
            self.made -= 1;
        }
    }
}

/// A transfer's state once it has its source.
struct Xfer {
    fill: Fill,
    /// Splicing a binary file (until the file refuses splice).
    splice: bool,
    /// The pipe, while it holds bytes of this transfer (or a splice into
    /// it is in flight).
    pipe: Option<Pipe>,
    /// Bytes in the pipe not yet sent.
    in_pipe: u32,
    /// Formatted or copied bytes, partly sent.
    out: Pending,
    sent: u64,
}

impl Xfer {
    fn new(source: Source) -> Xfer {
        let mut fill = Fill::new(source);
        Xfer {
            splice: fill.zero_copy().is_some(),
            fill,
            pipe: None,
            in_pipe: 0,
            out: Pending::default(),
            sent: 0,
        }
    }
}

/// An operation of a data side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataOp {
    Accept = 1,
    Poll = 2,
    SpliceIn = 3,
}

impl DataOp {
    const ALL: [DataOp; 3] = [DataOp::Accept, DataOp::Poll, DataOp::SpliceIn];

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

enum DataState {
    Listening(TcpListener),
    Accepting(TcpListener, Xfer),
    Connecting(TcpStream, Xfer),
    Sending(TcpStream, Xfer),
    /// In between, while the state is being replaced.
    Empty,
}

/// A session's passive listener or transfer, and its operations in
/// flight: one at a time.
struct DataSide {
    generation: u16,
    /// [`DataOp::bit`]s of the operations in flight.
    pending: u8,
    state: DataState,
}

/// Where a transfer is after a step.
enum Step {
    /// An operation is in flight.
    Wait,
    /// All sent: this many bytes.
    Done(u64),
    Fail(TransferError),
}

impl DataSide {
    fn xfer(&mut self) -> Option<&mut Xfer> {
        match &mut self.state {
            DataState::Accepting(_, x) | DataState::Connecting(_, x) | DataState::Sending(_, x) => {
                Some(x)
            }
            _ => None,
        }
    }

    fn submit(&mut self, core: &mut Core, slot: usize, op: DataOp, e: squeue::Entry) {
        let tag = data_tag(self.generation, op);
        core.push(e.user_data(user_data(OP_DATA, slot, tag)));
        self.pending |= op.bit();
    }

    /// Cancels whatever is in flight.
    fn cancel(&self, core: &mut Core, slot: usize) {
        for op in DataOp::ALL {
            if self.pending & op.bit() != 0 {
                let tag = data_tag(self.generation, op);
                core.cancel(user_data(OP_DATA, slot, tag));
            }
        }
    }

    fn arm_accept(&mut self, core: &mut Core, slot: usize) {
        if let DataState::Accepting(l, _) = &self.state {
            let e = opcode::Accept::new(
                types::Fd(l.as_raw_fd()),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
            .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
            .build();
            self.submit(core, slot, DataOp::Accept, e);
        }
    }

    fn poll_out(&mut self, core: &mut Core, slot: usize) {
        let fd = match &self.state {
            DataState::Connecting(s, _) | DataState::Sending(s, _) => s.as_raw_fd(),
            _ => return,
        };
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32).build();
        self.submit(core, slot, DataOp::Poll, e);
    }

    /// The data connection is up: the transfer starts. `accepted`: the
    /// connection of a passive transfer (an active one has its own).
    fn connected(
        &mut self,
        core: &mut Core,
        slot: usize,
        life: &mut Life,
        accepted: Option<TcpStream>,
    ) -> Step {
        let (s, x) = match (
            std::mem::replace(&mut self.state, DataState::Empty),
            accepted,
        ) {
            (DataState::Accepting(_, x), Some(s)) | (DataState::Connecting(s, x), None) => (s, x),
            (other, _) => {
                self.state = other;
                return Step::Wait;
            }
        };
        self.state = DataState::Sending(s, x);
        life.session.on_data_connected(Now::get());
        self.advance(core, slot, life)
    }

    /// The completion of the data side's operation `op`.
    fn completed(
        &mut self,
        core: &mut Core,
        slot: usize,
        life: &mut Life,
        op: DataOp,
        res: i32,
    ) -> Step {
        match op {
            DataOp::Accept => self.accepted(core, slot, life, res),
            DataOp::Poll => match &self.state {
                DataState::Connecting(s, _) => {
                    let made = if res < 0 {
                        Err(errno(res))
                    } else {
                        net::connect_result(s).and_then(|()| s.peer_addr().map(drop))
                    };
                    match made {
                        Ok(()) => self.connected(core, slot, life, None),
                        Err(e) => Step::Fail(TransferError::Connect(e)),
                    }
                }
                _ if res < 0 => Step::Fail(TransferError::Connection(errno(res))),
                // Writable again: retry the send or splice.
                _ => self.advance(core, slot, life),
            },
            DataOp::SpliceIn => {
                let Some(x) = self.xfer() else {
                    return Step::Wait;
                };
                match spliced_in(x, res) {
                    Ok(()) => self.advance(core, slot, life),
                    Err(e) => Step::Fail(e),
                }
            }
        }
    }

    fn accepted(&mut self, core: &mut Core, slot: usize, life: &mut Life, res: i32) -> Step {
        if res < 0 {
            let e = errno(res);
            if net::is_per_connection(&e) {
                self.arm_accept(core, slot);
                return Step::Wait;
            }
            return Step::Fail(TransferError::Connect(e));
        }
        // SAFETY: a successful accept's result is a new descriptor that
        // nothing else owns.
        let sock = TcpStream::from(unsafe { OwnedFd::from_raw_fd(res) });
        let allowed = sock
            .peer_addr()
            .is_ok_and(|p| life.session.data_peer_allowed(&p));
        if !allowed {
            drop(sock); // from another address: closed, keep waiting
            self.arm_accept(core, slot);
            return Step::Wait;
        }
        self.connected(core, slot, life, Some(sock))
    }

    /// Moves the transfer on (nothing of it in flight), or says it is
    /// done: a pipe that holds bytes goes to the socket here and now
    /// (`splice(2)`, non-blocking: it never waits, so no io-wq thread is
    /// needed for it), then a buffer that holds bytes is sent, else the
    /// next piece of the source is submitted: file -> pipe (the part that
    /// may wait for the disk, done by the ring), or a formatted or copied
    /// buffer. A full socket waits for POLLOUT.
    fn advance(&mut self, core: &mut Core, slot: usize, life: &mut Life) -> Step {
        // Not before the 150 is written: `resume_data` comes back then.
        if !life.session.data_may_flow() {
            return Step::Wait;
        }
        let DataState::Sending(sock, x) = &mut self.state else {
            return Step::Wait;
        };
        let before = x.sent;
        let budget_end = before + RUN_BUDGET;
        let mut next = None;
        loop {
            if let (Some(p), true) = (&x.pipe, x.in_pipe > 0) {
                match splice_out(p, sock, &mut x.in_pipe, &mut x.sent) {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => return Step::Fail(e),
                }
            }
            if let Some(p) = x.pipe.take() {
                // Empty: free for another transfer (or this one again).
                core.pipes.put(p, true);
            }
            match x.out.flush(sock.as_fd(), &mut x.sent) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Step::Fail(e),
            }
            if x.fill.is_done() {
                return Step::Done(x.sent);
            }
            if x.sent >= budget_end {
                // Others' turn: POLLOUT completes at once on a socket
                // with room, after what else the ring has.
                break;
            }
            if x.splice {
                let pipe = core.pipes.get();
                if let (Some(p), Some(range)) = (&pipe, x.fill.zero_copy()) {
                    let len = range.left.min(u64::from(p.cap)) as u32;
                    let from = types::Fd(range.file.as_raw_fd());
                    let off = i64::try_from(range.offset).unwrap_or(i64::MAX);
                    let into = opcode::Splice::new(from, off, types::Fd(p.w.as_raw_fd()), -1, len);
                    next = Some((DataOp::SpliceIn, into.build()));
                }
                x.pipe = pipe;
                if next.is_some() {
                    break;
                }
                // Every pipe is busy: copy this round.
            }
            let chunk = match x.fill {
                Fill::Listing { .. } => LIST_BATCH,
                Fill::File { .. } => COPY_CHUNK,
            };
            if let Err(e) = x.out.refill(&mut x.fill, chunk) {
                return Step::Fail(e);
            }
        }
        if x.sent != before {
            life.session.on_data_progress(x.sent, Now::get());
        }
        match next {
            Some((op, e)) => self.submit(core, slot, op, e),
            None => self.poll_out(core, slot),
        }
        Step::Wait
    }
}

/// Splices what the pipe holds to the (non-blocking) socket: `Ok(true)`
/// once the pipe is empty, `Ok(false)` when the socket is full.
fn splice_out(
    pipe: &Pipe,
    sock: &TcpStream,
    in_pipe: &mut u32,
    sent: &mut u64,
) -> Result<bool, TransferError> {
    while *in_pipe > 0 {
        let len = *in_pipe as usize;
        match rustix::pipe::splice(&pipe.r, None, sock, None, len, SpliceFlags::NONBLOCK) {
            Ok(0) => return Err(TransferError::Connection(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                let n = u32::try_from(n).unwrap_or(*in_pipe).min(*in_pipe);
                *in_pipe -= n;
                *sent += u64::from(n);
            }
            Err(Errno::AGAIN) => return Ok(false),
            Err(Errno::INTR) => {}
            Err(e) => return Err(TransferError::Connection(e.into())),
        }
    }
    Ok(true)
}

/// Accounts for a file -> pipe splice of `res` bytes (or `-errno`).
fn spliced_in(x: &mut Xfer, res: i32) -> Result<(), TransferError> {
    match res {
        n if n > 0 => {
            let n = n as u32;
            x.in_pipe += n;
            if let Some(range) = x.fill.zero_copy() {
                range.offset += u64::from(n);
                range.left = range.left.saturating_sub(u64::from(n));
            }
            Ok(())
        }
        // The file ended before the size announced.
        0 => Err(TransferError::Shrunk),
        e if matches!(-e, libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            // A filesystem without splice support: copy by hand.
            x.splice = false;
            Ok(())
        }
        e => Err(TransferError::Source(errno(e))),
    }
}

/// The io_uring half of a session.
struct UringIo {
    ctrl: TcpStream,
    /// The multishot recv is armed (its last completion has not come).
    recv: bool,
    /// ... and a cancellation of it was submitted.
    recv_cancel: bool,
    /// A send of `out` is in flight.
    send: bool,
    /// ... of the farewell (not of the session's output).
    send_farewell: bool,
    /// The control output in flight: untouched until its completion.
    out: Vec<u8>,
    data: Option<Box<DataSide>>,
    /// Data sides dropped with an operation in flight, kept until it
    /// completes.
    retired: Vec<DataSide>,
    next_generation: u16,
    /// The session is over: what is in flight was cancelled, and the slot
    /// is freed once it has all come back.
    gone: bool,
}

type Conn = worker::Conn<UringIo>;

impl UringIo {
    fn new(ctrl: TcpStream) -> UringIo {
        UringIo {
            ctrl,
            recv: false,
            recv_cancel: false,
            send: false,
            send_farewell: false,
            out: Vec::new(),
            data: None,
            retired: Vec::new(),
            next_generation: 0,
            gone: false,
        }
    }

    /// A generation no data side of this session uses.
    fn new_side(&mut self, state: DataState) -> Box<DataSide> {
        loop {
            self.next_generation = self.next_generation.wrapping_add(1);
            let generation = self.next_generation;
            if !self.retired.iter().any(|d| d.generation == generation) {
                return Box::new(DataSide {
                    generation,
                    pending: 0,
                    state,
                });
            }
        }
    }

    /// Nothing in flight: the slot can go.
    fn quiet(&self) -> bool {
        !self.recv
            && !self.send
            && self.data.as_ref().is_none_or(|d| d.pending == 0)
            && self.retired.is_empty()
    }

    /// Arms or cancels the multishot recv as the session wants input.
    fn update_recv(&mut self, core: &mut Core, slot: usize, life: &Life) {
        let want = !self.gone && !life.dead() && life.wants_input(core.stop_deadline.is_some());
        if want && !self.recv {
            let e = opcode::RecvMulti::new(types::Fd(self.ctrl.as_raw_fd()), BGID).build();
            core.push(e.user_data(user_data(OP_RECV, slot, 0)));
            self.recv = true;
            self.recv_cancel = false;
        } else if !want && self.recv && !self.recv_cancel {
            core.cancel(user_data(OP_RECV, slot, 0));
            self.recv_cancel = true;
        }
    }

    /// The session is over: cancels what is in flight.
    fn teardown(&mut self, core: &mut Core, slot: usize) {
        self.gone = true;
        worker::Io::drop_data(self, core, slot);
        if self.recv && !self.recv_cancel {
            core.cancel(user_data(OP_RECV, slot, 0));
            self.recv_cancel = true;
        }
        if self.send {
            core.cancel(user_data(OP_SEND, slot, 0));
        }
    }

    fn on_recv(&mut self, core: &Core, life: &mut Life, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.recv = false;
            self.recv_cancel = false;
        }
        if self.gone || life.closing() {
            return; // too late: the input is dropped
        }
        let now = Now::get();
        match res {
            n if n > 0 => {
                if let Some(bid) = cqueue::buffer_select(flags) {
                    let input = core.bufs.get(bid, n as usize);
                    life.session.on_control(input, now);
                }
            }
            0 => life.control_gone(now, false),
            // Out of buffers: re-armed once they are back. Cancelled: we
            // asked for it.
            e if e == -libc::ENOBUFS || e == -libc::ECANCELED => {}
            _ => life.control_gone(now, true),
        }
    }

    fn on_sent(&mut self, life: &mut Life, res: i32) {
        self.send = false;
        if self.gone {
            return;
        }
        match res {
            n if n > 0 && self.send_farewell => life.wrote_farewell(n as usize),
            n if n > 0 => life.session.consume_output(n as usize),
            0 => life.flags |= worker::DEAD,
            _ => life.write_failed(),
        }
    }

    fn on_data(&mut self, core: &mut Core, slot: usize, life: &mut Life, tag: u32, res: i32) {
        let (generation, op) = parse_data_tag(tag);
        let Some(op) = op else { return };
        let live = self
            .data
            .as_deref_mut()
            .filter(|d| d.generation == generation);
        let Some(side) = live else {
            // A data side dropped meanwhile: account, and free it once
            // nothing of it is in flight.
            if let Some(i) = self.retired.iter().position(|d| d.generation == generation) {
                let side = &mut self.retired[i];
                side.pending &= !op.bit();
                if op == DataOp::Accept && res >= 0 {
                    // SAFETY: a successful accept's result is a new
                    // descriptor that nothing else owns: closed here.
                    drop(unsafe { OwnedFd::from_raw_fd(res) });
                } else if op == DataOp::SpliceIn
                    && let Some(x) = side.xfer()
                {
                    // What the pipe now holds: it goes back to the pool
                    // only if empty.
                    let _ = spliced_in(x, res);
                }
                if side.pending == 0 {
                    core.free_side(self.retired.swap_remove(i));
                }
            }
            return;
        };
        side.pending &= !op.bit();
        if self.gone {
            return;
        }
        let step = side.completed(core, slot, life, op, res);
        self.after(core, slot, life, step);
    }

    /// Ends the transfer if `step` says it is over.
    fn after(&mut self, core: &mut Core, slot: usize, life: &mut Life, step: Step) {
        let now = Now::get();
        match step {
            Step::Wait => {}
            Step::Done(sent) => {
                if let Some(DataState::Sending(s, _)) = self.data.as_deref().map(|d| &d.state) {
                    let _ = s.shutdown(Shutdown::Write);
                }
                worker::Io::drop_data(self, core, slot);
                life.session.on_transfer_done(Ok(sent), now);
            }
            Step::Fail(e) => {
                worker::Io::drop_data(self, core, slot);
                life.session.on_transfer_done(Err(e), now);
            }
        }
    }
}

impl worker::Io for UringIo {
    type Core = Core;

    /// A transfer with nothing in flight while sending is one `advance`
    /// held back until its 150 was written.
    fn resume_data(&mut self, core: &mut Core, slot: usize, life: &mut Life) -> bool {
        let Some(side) = self.data.as_deref_mut() else {
            return false;
        };
        if self.gone
            || side.pending != 0
            || !matches!(side.state, DataState::Sending(..))
            || !life.session.data_may_flow()
        {
            return false;
        }
        let step = side.advance(core, slot, life);
        self.after(core, slot, life, step);
        true
    }

    fn data_acked(&self) -> Option<u64> {
        match &self.data.as_deref()?.state {
            DataState::Sending(s, _) => net::bytes_acked(s.as_fd()),
            _ => None,
        }
    }

    fn in_flight(&self) -> bool {
        self.data
            .as_deref()
            .is_some_and(|d| !matches!(d.state, DataState::Listening(_)))
    }

    fn drop_data(&mut self, core: &mut Core, slot: usize) {
        let Some(side) = self.data.take() else {
            return;
        };
        if side.pending != 0 {
            side.cancel(core, slot);
            self.retired.push(*side);
        } else {
            core.free_side(*side);
        }
    }

    fn set_listener(&mut self, l: TcpListener) {
        self.data = Some(self.new_side(DataState::Listening(l)));
    }

    fn take_listener(&mut self, core: &mut Core, slot: usize) -> Option<TcpListener> {
        match self.data.as_deref_mut() {
            Some(DataSide {
                pending: 0, state, ..
            }) if matches!(state, DataState::Listening(_)) => {
                match std::mem::replace(state, DataState::Empty) {
                    DataState::Listening(l) => {
                        self.data = None;
                        Some(l)
                    }
                    _ => None,
                }
            }
            _ => {
                self.drop_data(core, slot);
                None
            }
        }
    }

    fn accept_data(
        &mut self,
        core: &mut Core,
        slot: usize,
        _: &mut Life,
        l: TcpListener,
        source: Source,
    ) -> io::Result<()> {
        let mut side = self.new_side(DataState::Accepting(l, Xfer::new(source)));
        side.arm_accept(core, slot);
        self.data = Some(side);
        Ok(())
    }

    /// The connect was started by a plain non-blocking connect(2); the ring
    /// waits for POLLOUT, then SO_ERROR tells (no IORING_OP_CONNECT needed).
    fn connect_data(
        &mut self,
        core: &mut Core,
        slot: usize,
        s: TcpStream,
        source: Source,
    ) -> io::Result<()> {
        let mut side = self.new_side(DataState::Connecting(s, Xfer::new(source)));
        side.poll_out(core, slot);
        self.data = Some(side);
        Ok(())
    }

    /// Starts a send of what the session has to say (then the farewell),
    /// unless one is in flight.
    fn flush(&mut self, core: &mut Core, slot: usize, life: &mut Life) {
        if self.gone || self.send {
            return;
        }
        if life.dead() {
            return life.discard_output();
        }
        let out = life.unwritten();
        if out.is_empty() {
            if self.out.capacity() > 256 {
                self.out = Vec::new(); // an idle session keeps no buffer
            }
            return;
        }
        let n = out.len().min(SEND_MAX);
        self.send_farewell = life.session.output().is_empty();
        self.out.clear();
        self.out.extend_from_slice(&out[..n]);
        let e = opcode::Send::new(
            types::Fd(self.ctrl.as_raw_fd()),
            self.out.as_ptr(),
            n as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build();
        core.push(e.user_data(user_data(OP_SEND, slot, 0)));
        self.send = true;
    }

    fn sending(&self) -> bool {
        self.send
    }
}

/// The worker's ring and what every session is worked on with.
struct Core {
    ctx: Arc<Context>,
    ring: IoUring,
    /// After `ring` (dropped after it).
    bufs: BufRing,
    pipes: Pipes,
    timers: Timers,
    stop_deadline: Option<Instant>,
    /// Entries that did not fit in the submission queue, in order.
    backlog: Vec<squeue::Entry>,
    /// Operations submitted whose last completion has not come (not
    /// counting cancellations).
    inflight: usize,
}

impl worker::Core for Core {
    fn ctx(&self) -> &Context {
        &self.ctx
    }

    fn stop_deadline(&self) -> Option<Instant> {
        self.stop_deadline
    }
}

impl Core {
    /// Queues `e` for submission (in order: a cancellation never overtakes
    /// what it cancels).
    fn push(&mut self, e: squeue::Entry) {
        if parse_user_data(e.get_user_data()).0 != OP_CANCEL {
            self.inflight += 1;
        }
        if self.backlog.is_empty() {
            if self.ring.submission().is_full() {
                let _ = self.ring.submit();
            }
            // SAFETY: what the entry points at (a connection's output
            // buffer, a transfer's buffer, the buffer ring) and the
            // descriptors it names live, unmoved, until its last
            // completion is reaped: see the module notes.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
        }
        self.backlog.push(e);
    }

    fn cancel(&mut self, target: u64) {
        let e = opcode::AsyncCancel::new(target).build();
        self.push(e.user_data(user_data(OP_CANCEL, 0, 0)));
    }

    /// Moves the backlog into the submission queue, as far as it fits.
    fn flush_backlog(&mut self) {
        let mut done = 0;
        for e in &self.backlog {
            if self.ring.submission().is_full() {
                let _ = self.ring.submit();
            }
            // SAFETY: as in `push`.
            if unsafe { self.ring.submission().push(e) }.is_err() {
                break;
            }
            done += 1;
        }
        self.backlog.drain(..done);
    }

    /// Submits, and waits for a completion or until `timeout`.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.flush_backlog();
        let r = match timeout {
            Some(d) => {
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(context("io_uring_enter", e)),
        }
    }

    /// Frees a data side with nothing in flight; its pipe goes back to the
    /// pool if empty.
    fn free_side(&mut self, mut side: DataSide) {
        if let Some(x) = side.xfer()
            && let Some(p) = x.pipe.take()
        {
            let clean = x.in_pipe == 0;
            self.pipes.put(p, clean);
        }
    }
}

/// Runs worker `id` until the server stops: serves the sessions accepted
/// on `listeners` (this worker's own SO_REUSEPORT sockets, or its copies of
/// the sockets passed by the service manager: io_uring waits on a
/// listener exclusively, so a new connection wakes one worker).
/// `ring` is this worker's, from [`prepare`].
pub fn run(
    ctx: &Arc<Context>,
    id: usize,
    listeners: Vec<TcpListener>,
    ring: Ring,
) -> io::Result<()> {
    let mut w = Worker::new(ctx, id, listeners, ring)?;
    w.serve()
}

struct Worker {
    id: usize,
    core: Core,
    conns: Slab<Conn>,
    /// `None` once closed (at a stop, when its accept has come back).
    listeners: Vec<Option<TcpListener>>,
    /// Whether each listener's multishot accept is armed.
    armed: Vec<bool>,
    /// Whether to keep the accepts armed (not during a back-off or stop).
    accepting: bool,
    admission: Admission,
    /// Set when the shutdown deadline has passed: the sessions left were
    /// told 421 and their operations cancelled; exit when they are back,
    /// or at this instant.
    forced: Option<Instant>,
}

impl Worker {
    fn new(
        ctx: &Arc<Context>,
        id: usize,
        listeners: Vec<TcpListener>,
        ring: Ring,
    ) -> io::Result<Worker> {
        let (ring, bufs) = ring.enable()?;
        let n = listeners.len();
        let mut w = Worker {
            id,
            core: Core {
                ctx: Arc::clone(ctx),
                ring,
                bufs,
                pipes: Pipes::default(),
                timers: Timers::default(),
                stop_deadline: None,
                backlog: Vec::new(),
                inflight: 0,
            },
            conns: Slab::default(),
            listeners: listeners.into_iter().map(Some).collect(),
            armed: vec![false; n],
            accepting: true,
            admission: Admission::default(),
            forced: None,
        };
        w.arm_waker();
        w.arm_listeners();
        Ok(w)
    }

    fn serve(&mut self) -> io::Result<()> {
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(CQ_ENTRIES as usize);
        loop {
            let now = Instant::now();
            let next = [
                self.core.timers.next(),
                self.admission.resume_at,
                self.core.stop_deadline,
                self.forced,
            ]
            .into_iter()
            .flatten()
            .min();
            self.core.wait(next.map(|t| worker::wait_for(t, now)))?;
            cqes.clear();
            cqes.extend(
                self.core
                    .ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(ud, res, flags) in &cqes {
                self.dispatch(ud, res, flags);
            }
            let now = Instant::now();
            self.fire_timers(now);
            if self.admission.resume_at.is_some_and(|t| t <= now)
                && self.core.stop_deadline.is_none()
            {
                self.admission.resume_at = None;
                self.accepting = true;
            }
            self.arm_listeners();
            if let Some(deadline) = self.core.stop_deadline {
                if self.conns.live() == 0 && self.listeners.iter().all(Option::is_none) {
                    return Ok(());
                }
                match self.forced {
                    None if now >= deadline => self.close_all(now),
                    Some(t) if now >= t => return Ok(()),
                    _ => {}
                }
            }
        }
    }

    fn dispatch(&mut self, ud: u64, res: i32, flags: u32) {
        let (kind, index, tag) = parse_user_data(ud);
        if kind != OP_CANCEL && !cqueue::more(flags) {
            self.core.inflight = self.core.inflight.saturating_sub(1);
        }
        match kind {
            OP_CANCEL => {}
            OP_WAKE => self.on_wake(),
            OP_ACCEPT => self.on_accept(index, res, flags),
            _ => {
                self.with_conn(index, |core, c, slot| {
                    match kind {
                        OP_RECV => c.io.on_recv(core, &mut c.life, res, flags),
                        OP_SEND => c.io.on_sent(&mut c.life, res),
                        _ => c.io.on_data(core, slot, &mut c.life, tag, res),
                    }
                    if c.io.gone {
                        Fate::Gone
                    } else {
                        c.settle(core, slot)
                    }
                });
                // The session has copied the bytes (or dropped them).
                if kind == OP_RECV
                    && let Some(bid) = cqueue::buffer_select(flags)
                {
                    self.core.bufs.recycle(bid);
                }
            }
        }
    }

    /// Runs `f` on the session in `slot`, catching a panic so that it
    /// ends that session only; frees the slot once the session is over and
    /// nothing of it is in flight.
    fn with_conn(&mut self, slot: usize, f: impl FnOnce(&mut Core, &mut Conn, usize) -> Fate) {
        let Some(mut conn) = self.conns.take(slot) else {
            return;
        };
        let core = &mut self.core;
        let over = catch_unwind(AssertUnwindSafe(|| {
            match f(core, &mut conn, slot) {
                Fate::Keep => {
                    conn.io.update_recv(core, slot, &conn.life);
                    let want = conn.life.deadline();
                    core.timers.schedule(slot, &mut conn.life.timer, want);
                }
                Fate::Gone if !conn.io.gone => conn.io.teardown(core, slot),
                Fate::Gone => {}
            }
            conn.io.gone && conn.io.quiet()
        }));
        let over = match over {
            Ok(over) => over,
            Err(panic) => {
                conn.life.panicked(&self.core.ctx, &*panic);
                if !conn.io.send && !conn.io.gone {
                    let _ = (&conn.io.ctrl).write(Refusal::Internal.reply());
                }
                let core = &mut self.core;
                let cleaned = catch_unwind(AssertUnwindSafe(|| {
                    conn.io.teardown(core, slot);
                    conn.io.quiet()
                }));
                match cleaned {
                    Ok(quiet) => quiet,
                    Err(_) => {
                        // Cannot tell what is in flight: never free it,
                        // never reuse the slot.
                        std::mem::forget(conn);
                        return;
                    }
                }
            }
        };
        if over {
            // Dropping what panicked may panic again; contain that too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(conn)));
            self.conns.release(slot);
        } else {
            self.conns.put(slot, conn);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((slot, key)) = self.core.timers.pop_due(now) {
            let current = self
                .conns
                .get(slot)
                .filter(|c| !c.io.gone)
                .and_then(|c| c.life.timer);
            if current.map(|t| t.1) != Some(key) {
                continue; // stale: replaced, or the session is gone
            }
            self.with_conn(slot, |core, c, slot| c.on_timer(core, slot));
        }
    }

    fn arm_waker(&mut self) {
        if let Some(w) = self.core.ctx.stop.waker(self.id) {
            let fd = std::os::fd::AsFd::as_fd(w).as_raw_fd();
            let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).build();
            self.core.push(e.user_data(user_data(OP_WAKE, 0, 0)));
        }
    }

    fn on_wake(&mut self) {
        if let Some(w) = self.core.ctx.stop.waker(self.id) {
            w.drain();
        }
        if !self.core.ctx.stop.is_stopping() {
            return self.arm_waker();
        }
        if self.core.stop_deadline.is_none() {
            self.begin_stop();
        }
    }

    /// Stops accepting (closing the listeners once their accepts are back,
    /// so new clients are refused by the kernel) and says goodbye to every
    /// session with no transfer in flight; the others finish their
    /// transfer first.
    fn begin_stop(&mut self) {
        let now = Instant::now();
        self.core.stop_deadline = Some(now + self.core.ctx.shutdown_timeout);
        self.admission.stop();
        self.pause_accepting();
        for i in 0..self.listeners.len() {
            if !self.armed[i] {
                self.listeners[i] = None;
            }
        }
        for slot in 0..self.conns.bound() {
            self.with_conn(slot, |core, c, slot| {
                if c.io.gone {
                    Fate::Gone
                } else {
                    c.settle(core, slot)
                }
            });
        }
    }

    /// The shutdown deadline passed: whatever is left is told 421 if the
    /// socket takes it, and cancelled.
    fn close_all(&mut self, now: Instant) {
        self.forced = Some(now + FORCED_DRAIN);
        for slot in 0..self.conns.bound() {
            self.with_conn(slot, |core, c, _| {
                if c.io.gone {
                    return Fate::Gone;
                }
                // A send in flight owns the socket's next bytes.
                let ctrl = (!c.io.send).then_some(&c.io.ctrl);
                c.life.close_now(&core.ctx, ctrl);
                Fate::Gone
            });
        }
    }

    fn arm_listeners(&mut self) {
        if !self.accepting {
            return;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let Some(l) = l else { continue };
            if self.armed[i] {
                continue;
            }
            let e = opcode::AcceptMulti::new(types::Fd(l.as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                .build();
            self.core.push(e.user_data(user_data(OP_ACCEPT, i, 0)));
            self.armed[i] = true;
        }
    }

    /// Cancels the armed accepts (re-armed by `arm_listeners` once
    /// `accepting` again).
    fn pause_accepting(&mut self) {
        self.accepting = false;
        for (i, armed) in self.armed.iter().enumerate() {
            if *armed {
                self.core.cancel(user_data(OP_ACCEPT, i, 0));
            }
        }
    }

    fn on_accept(&mut self, index: usize, res: i32, flags: u32) {
        if let Some(a) = self.armed.get_mut(index)
            && !cqueue::more(flags)
        {
            *a = false;
        }
        let stopping = self.core.stop_deadline.is_some();
        if res >= 0 {
            // SAFETY: a successful accept's result is a new descriptor
            // that nothing else owns.
            let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(res) });
            if !stopping {
                self.admit(stream);
            }
        } else if res != -libc::ECANCELED
            && let Some(Some(l)) = self.listeners.get(index)
        {
            let e = errno(res);
            let (ctx, id) = (&self.core.ctx, self.id);
            if self.admission.accept_failed(ctx, id, l, &e) == AcceptError::Pause {
                self.pause_accepting();
            }
        }
        if stopping
            && !self.armed.get(index).copied().unwrap_or(true)
            && let Some(l) = self.listeners.get_mut(index)
        {
            *l = None;
        }
    }

    /// A new control connection: checked against the limits, then a
    /// session.
    fn admit(&mut self, stream: TcpStream) {
        let Some(life) = self.admission.admit(&self.core.ctx, &stream) else {
            return;
        };
        let slot = self.conns.insert(Conn {
            life,
            io: UringIo::new(stream),
        });
        // Greeting, start record, deadline: as after any other event.
        self.with_conn(slot, |core, c, slot| c.settle(core, slot));
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.core.inflight > 0 {
            // The kernel may still use the memory of operations never
            // reaped: leak it rather than free it.
            self.core.bufs.leak = true;
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert!(at_least("6.1.0-18-amd64", 6, 0));
        assert!(at_least("6.0", 6, 0));
        assert!(at_least("10.2.1", 6, 0));
        assert!(!at_least("5.19.17", 6, 0));
        assert!(!at_least("garbage", 6, 0));
    }

    #[test]
    fn user_data_round_trips() {
        let tag = data_tag(65_535, DataOp::SpliceIn);
        let ud = user_data(OP_DATA, 123_456, tag);
        assert_eq!(parse_user_data(ud), (OP_DATA, 123_456, tag));
        assert_eq!(parse_data_tag(tag), (65_535, Some(DataOp::SpliceIn)));
        assert_eq!(parse_data_tag(7 << 16).1, None);
    }

    /// The ring refuses what is not on its list: IORING_OP_OPENAT (which
    /// seccomp would otherwise never see) completes with EACCES, while an
    /// allowed opcode runs.
    #[test]
    fn restricted_ring_refuses_other_opcodes() {
        let mut rings = match prepare(1) {
            Ok(r) => r,
            Err(why) => return eprintln!("skipped: io_uring unavailable: {why}"),
        };
        let (mut ring, _bufs) = rings.pop().unwrap().enable().unwrap();
        let path = c"/";
        let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
            .build()
            .user_data(1);
        let (r, w) = rustix::pipe::pipe().unwrap();
        let byte = [7u8];
        rustix::io::write(&w, &byte).unwrap();
        let allowed = opcode::PollAdd::new(types::Fd(r.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(2);
        // SAFETY: both entries point at statics or at locals that outlive
        // the wait below.
        unsafe {
            ring.submission().push(&open).unwrap();
            ring.submission().push(&allowed).unwrap();
        }
        ring.submit_and_wait(2).unwrap();
        let mut got: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        got.sort();
        assert_eq!(got[0], (1, -libc::EACCES), "{got:?}");
        assert!(got[1].0 == 2 && got[1].1 > 0, "{got:?}");
        // Nor can a register operation lift the restrictions.
        let mut more = [Restriction::sqe_op(opcode::OpenAt::CODE)];
        assert!(ring.submitter().register_restrictions(&mut more).is_err());
    }

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

    #[test]
    fn pipe_pool_is_bounded() {
        let mut p = Pipes::default();
        let mut held = Vec::new();
        while let Some(pipe) = p.get() {
            assert!(pipe.cap >= 4096);
            held.push(pipe);
            assert!(held.len() <= MAX_PIPES);
        }
        assert_eq!(held.len(), MAX_PIPES);
        // One back, clean: reused. One back, dirty: closed, room to make one.
        let a = held.pop().unwrap();
        p.put(a, true);
        assert!(p.get().is_some());
        let b = held.pop().unwrap();
        p.put(b, false);
        assert!(p.get().is_some());
        assert!(p.get().is_none());
    }

    fn file_xfer(len: u64) -> Xfer {
        let f = tempfile_with(len);
        Xfer::new(Source::File {
            file: f,
            offset: 0,
            len,
            ascii: false,
        })
    }

    fn tempfile_with(len: u64) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("aftpd-uring-{}", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(len).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    /// The accounting of a file -> pipe splice: it fills the pipe and
    /// advances the file; nothing before the end is a shrunk file; a
    /// file that cannot be spliced is copied.
    #[test]
    fn splice_accounting() {
        let mut x = file_xfer(100_000);
        assert!(x.splice);
        assert!(spliced_in(&mut x, 30_000).is_ok());
        assert_eq!(x.in_pipe, 30_000);
        let r = x.fill.zero_copy().map(|r| (r.offset, r.left));
        assert_eq!(r, Some((30_000, 70_000)));
        assert!(matches!(spliced_in(&mut x, 0), Err(TransferError::Shrunk)));
        assert!(matches!(
            spliced_in(&mut x, -libc::EIO),
            Err(TransferError::Source(_))
        ));
        assert!(spliced_in(&mut x, -libc::EINVAL).is_ok());
        assert!(!x.splice, "falls back to copying");
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
        let mut x = file_xfer(1 << 30);
        let mut total = 0u64;
        let mut full = false;
        // A socket buffer holds a few MiB at most: bounded.
        for _ in 0..1_000 {
            let n = rustix::io::write(&pipe.w, &[7u8; 16_384]).unwrap();
            x.in_pipe += n as u32;
            total += n as u64;
            match splice_out(&pipe, &sock, &mut x.in_pipe, &mut x.sent) {
                Ok(true) => assert_eq!(x.in_pipe, 0),
                Ok(false) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(full, "the socket never filled");
        assert_eq!(x.sent + u64::from(x.in_pipe), total);
        let mut got = vec![0u8; 65_536];
        let n = std::io::Read::read(&mut peer, &mut got).unwrap();
        assert!(n > 0 && got[..n].iter().all(|&b| b == 7));
    }

    /// What an idle session costs the worker besides the kernel's socket.
    #[test]
    fn idle_session_is_small() {
        let conn = size_of::<Option<Conn>>();
        let io = size_of::<UringIo>();
        eprintln!("Conn slot: {conn} bytes, of which UringIo: {io}");
        assert!(conn < 2048, "{conn}");
    }
}
