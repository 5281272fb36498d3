//! Setting up a worker's ring: created disabled, checked for the
//! features and opcodes the engine needs, its buffer ring registered, and
//! restricted to those opcodes (io_uring operations bypass seccomp, so a
//! bug cannot turn the ring into an open/connect/unlink primitive), then
//! enabled by the worker that uses it.

use std::io;

use io_uring::register::{Probe, Restriction};
use io_uring::{IoUring, opcode, squeue};

use super::bufring::BufRing;

/// Submission queue entries per ring (more wait in a backlog).
pub const SQ_ENTRIES: u32 = 256;
/// Completion queue entries per ring: multishot operations post many (and
/// the kernel keeps any overflow). With the submission queue, about 84 KiB
/// per ring, counted against RLIMIT_MEMLOCK for an unprivileged user.
pub const CQ_ENTRIES: u32 = 4096;
/// Every opcode the engine submits; the ring refuses any other (EACCES).
/// AcceptMulti and Accept are both IORING_OP_ACCEPT, RecvMulti is
/// IORING_OP_RECV. Write is for uploads, to files opened by the
/// filesystem layer (the ring cannot open anything).
const OPCODES: [u8; 6] = [
    opcode::Accept::CODE,
    opcode::RecvMulti::CODE,
    opcode::Send::CODE,
    opcode::PollAdd::CODE,
    opcode::AsyncCancel::CODE,
    opcode::Write::CODE,
];

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
    pub(super) fn enable(self) -> io::Result<(IoUring, BufRing)> {
        self.ring
            .submitter()
            .register_enable_rings()
            .map_err(|e| context("IORING_REGISTER_ENABLE_RINGS", e))?;
        Ok((self.ring, self.bufs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    use io_uring::types;

    #[test]
    fn kernel_releases() {
        assert!(at_least("6.1.0-18-amd64", 6, 0));
        assert!(at_least("6.0", 6, 0));
        assert!(at_least("10.2.1", 6, 0));
        assert!(!at_least("5.19.17", 6, 0));
        assert!(!at_least("garbage", 6, 0));
    }

    /// The ring refuses what is not on its list: IORING_OP_OPENAT (which
    /// seccomp would otherwise never see) completes with EACCES, while an
    /// allowed opcode runs.
    #[test]
    fn restricted_ring_refuses_other_opcodes() {
        // These machines have io_uring; the integration tests run the
        // engine too.
        let mut rings = prepare(1).expect("io_uring available");
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
}
