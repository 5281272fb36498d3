//! The sandbox a server enters once its privileges are dropped and its
//! descriptors are open: Landlock confines the filesystem to reading the
//! served root, and a seccomp filter allows only the system calls the
//! driver in use makes. Both are defence in depth: `fs::Root` already
//! confines every lookup with `openat2(RESOLVE_IN_ROOT)`, and the sandbox
//! is what is left should a bug (or an exploit) get past it.
//!
//! # Landlock
//!
//! One path-beneath rule, on the root's own descriptor (so it names the
//! same directory before and after a chroot): read files, read
//! directories. Every other filesystem right of [`LANDLOCK_ABI`] is
//! handled, so denied: no write, no create, no execute, no truncate, no
//! device ioctl, nothing outside the root at all. Where the program must
//! write a file (the supervisor's xferlog, reopened after a rotation), the
//! caller names that directory and it gets write and create-file rights.
//! Landlock's scopes (ABI 6) also forbid signalling processes and joining
//! abstract UNIX sockets outside the sandbox.
//!
//! The ruleset is best-effort: a kernel with an older Landlock enforces
//! what it knows, one without Landlock enforces nothing, and [`Enforced`]
//! says which, for the log. The rights are those of the ABI this was
//! written and tested for ([`LANDLOCK_ABI`]), not whatever a newer kernel
//! offers, so that a new kernel cannot deny something the server needs.
//! The binding is our own, over the three system calls (`landlock.rs`
//! beside this file): the crate of that name needs proc-macros, which a
//! `crt-static` build cannot make.
//!
//! # seccomp
//!
//! An allow-list per [`Profile`]: the calls of the common core (reading
//! and sending files, sockets for the data channel, memory, time, futex)
//! plus those of the event mechanism. Anything else fails with `EPERM`
//! ([`DENIED`]). The arguments are checked where that is cheap and
//! meaningful: `socket` only for IPv4, IPv6 and UNIX, `mmap`/`mprotect`
//! never executable, `tgkill` only within the process, `clone` only for a
//! thread (`clone3`, whose flags a filter cannot see, fails with `ENOSYS`
//! so that glibc falls back to `clone`). There is no `open`/`openat`
//! (only `openat2`, which `fs` uses), no `execve`, no fork, no `ioctl`,
//! no `ptrace`, no `mount`.
//!
//! Why `EPERM` rather than killing the process: a call missing from the
//! list (a libc that changed how it does something, a rare error path)
//! then fails like any other I/O error, the session concerned gets an
//! error reply and a log line, and a supervisor holding thousands of
//! sessions does not vanish without a word. An attacker gains nothing
//! from the difference: every call off the list fails either way.
//!
//! io_uring operations are not system calls and bypass seccomp: the uring
//! engine restricts its own ring (`IORING_REGISTER_RESTRICTIONS`) to the
//! operations it uses; its profile here allows entering the ring (and
//! enabling it) but not making new rings: those are made before the
//! filter goes on.
//!
//! # Threads
//!
//! Landlock (before ABI 8) and seccomp without `TSYNC` apply to the
//! calling thread and the threads it creates later. `ftpd` has one thread.
//! The supervisor calls [`restrict_filesystem`] before it starts its
//! workers, and [`restrict_syscalls`] with `all_threads` once they exist
//! (they wait for it before serving). The only threads made inside the
//! sandbox are a large listing's short-lived second thread (see
//! `listing`), which inherits both.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

mod landlock;

/// The Landlock ABI whose rights are handled (Linux 6.12: scopes).
pub const LANDLOCK_ABI: u32 = 6;

/// The errno of a system call off the allow-list.
pub const DENIED: i32 = libc::EPERM;

/// Which driver runs in the sandbox: each needs its own calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `ftpd`: `poll(2)` over the control and data sockets.
    Poll,
    /// The supervisor's epoll workers (and its main thread, which waits
    /// for signals with `poll` on a signalfd).
    Epoll,
    /// The supervisor's io_uring workers: their ring (set up before the
    /// filter), pipes for splicing, no epoll.
    Uring,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Poll => "poll",
            Profile::Epoll => "epoll",
            Profile::Uring => "uring",
        })
    }
}

/// What Landlock enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforced {
    /// Every right of [`LANDLOCK_ABI`].
    Full(String),
    /// An older kernel: what it supports.
    Partial(String),
    /// No Landlock in this kernel (or it is disabled).
    None(String),
}

impl Enforced {
    pub fn is_full(&self) -> bool {
        matches!(self, Enforced::Full(_))
    }
}

impl fmt::Display for Enforced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Enforced::Full(abi) => write!(f, "landlock=abi{abi}"),
            Enforced::Partial(abi) => write!(f, "landlock=partial(abi{abi})"),
            Enforced::None(why) => write!(f, "landlock=off({why})"),
        }
    }
}

/// Confines the calling thread, and every thread and process it creates
/// from now on, to reading beneath `root` (a directory descriptor, e.g.
/// `fs::Root::fd`); `writable`, if given, is a directory whose files may
/// also be written and created (a log's). Sets no_new_privs.
pub fn restrict_filesystem(
    root: BorrowedFd<'_>,
    writable: Option<BorrowedFd<'_>>,
) -> io::Result<Enforced> {
    landlock::restrict(root, writable, None)
}

/// [`restrict_filesystem`], and with `incoming` (the drop box of
/// `--incoming`) where files may be written, made and removed.
pub fn restrict_filesystem_uploads(
    root: BorrowedFd<'_>,
    writable: Option<BorrowedFd<'_>>,
    incoming: Option<BorrowedFd<'_>>,
) -> io::Result<Enforced> {
    landlock::restrict(root, writable, incoming)
}

/// What became of the seccomp filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    Installed(Profile),
    /// The kernel (or this architecture) has no seccomp filters.
    Unsupported(String),
}

impl fmt::Display for Filtered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filtered::Installed(p) => write!(f, "seccomp={p}"),
            Filtered::Unsupported(why) => write!(f, "seccomp=off({why})"),
        }
    }
}

/// Installs the allow-list of `profile`: on the calling thread (and those
/// it creates later), or with `all_threads` on every thread of the
/// process (`SECCOMP_FILTER_FLAG_TSYNC`). Sets no_new_privs.
pub fn restrict_syscalls(profile: Profile, all_threads: bool) -> io::Result<Filtered> {
    restrict_syscalls_uploads(profile, false, all_threads)
}

/// [`restrict_syscalls`], with the calls of the upload path
/// ([`UPLOADS`]) when `uploads` (`--incoming`) is on.
pub fn restrict_syscalls_uploads(
    profile: Profile,
    uploads: bool,
    all_threads: bool,
) -> io::Result<Filtered> {
    let program = match filter_uploads(profile, uploads) {
        Ok(p) => p,
        Err(FilterError::Arch) => {
            return Ok(Filtered::Unsupported(format!(
                "no allow-list for {}",
                std::env::consts::ARCH
            )));
        }
        Err(FilterError::Build(e)) => return Err(io::Error::other(format!("seccomp: {e}"))),
    };
    let applied = if all_threads {
        seccompiler::apply_filter_all_threads(&program)
    } else {
        seccompiler::apply_filter(&program)
    };
    match applied {
        Ok(()) => Ok(Filtered::Installed(profile)),
        // A kernel built without CONFIG_SECCOMP_FILTER.
        Err(seccompiler::Error::Seccomp(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
            Ok(Filtered::Unsupported("not in this kernel".into()))
        }
        Err(e) => Err(io::Error::other(format!("seccomp: {e}"))),
    }
}

/// Both: [`restrict_filesystem`] then [`restrict_syscalls`] for the
/// calling thread. For a single-threaded program (`ftpd`).
pub fn enter(
    profile: Profile,
    root: BorrowedFd<'_>,
    writable: Option<BorrowedFd<'_>>,
) -> io::Result<Report> {
    enter_uploads(profile, root, writable, None)
}

/// [`enter`], with the drop box `incoming` writable and the upload
/// path's calls allowed when it is given.
pub fn enter_uploads(
    profile: Profile,
    root: BorrowedFd<'_>,
    writable: Option<BorrowedFd<'_>>,
    incoming: Option<BorrowedFd<'_>>,
) -> io::Result<Report> {
    let landlock = restrict_filesystem_uploads(root, writable, incoming)?;
    let seccomp = restrict_syscalls_uploads(profile, incoming.is_some(), false)?;
    Ok(Report { landlock, seccomp })
}

/// What the sandbox enforces, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub landlock: Enforced,
    pub seccomp: Filtered,
}

impl Report {
    /// Whether everything was enforced.
    pub fn is_complete(&self) -> bool {
        self.landlock.is_full() && matches!(self.seccomp, Filtered::Installed(_))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.landlock, self.seccomp)
    }
}

/// Why no filter could be built.
#[derive(Debug)]
pub enum FilterError {
    /// No allow-list for this architecture.
    Arch,
    Build(seccompiler::BackendError),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Arch => f.write_str("no allow-list for this architecture"),
            FilterError::Build(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
const ARCH: Option<seccompiler::TargetArch> = Some(seccompiler::TargetArch::x86_64);
#[cfg(target_arch = "aarch64")]
const ARCH: Option<seccompiler::TargetArch> = Some(seccompiler::TargetArch::aarch64);
#[cfg(target_arch = "riscv64")]
const ARCH: Option<seccompiler::TargetArch> = Some(seccompiler::TargetArch::riscv64);
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
const ARCH: Option<seccompiler::TargetArch> = None;

/// The compiled filter of `profile`.
pub fn filter(profile: Profile) -> Result<BpfProgram, FilterError> {
    filter_uploads(profile, false)
}

/// The compiled filter of `profile`, with [`UPLOADS`] if `uploads`.
pub fn filter_uploads(profile: Profile, uploads: bool) -> Result<BpfProgram, FilterError> {
    let arch = ARCH.ok_or(FilterError::Arch)?;
    let rules = rules(profile, uploads).map_err(FilterError::Build)?;
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Errno(DENIED as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(FilterError::Build)?;
    let allow_list: BpfProgram = f.try_into().map_err(FilterError::Build)?;
    Ok(clone3_prefix().into_iter().chain(allow_list).collect())
}

/// The flags glibc's `pthread_create` passes to `clone`: a thread of this
/// process, sharing everything. Any other `clone` (a fork, new
/// namespaces) is refused.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// The audit architecture of this build, as `seccomp_data.arch` has it
/// (include/uapi/linux/audit.h: EM_* | 64-bit | little-endian).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 243 | 0x8000_0000 | 0x4000_0000;
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
const AUDIT_ARCH: u32 = 0;

/// Instructions put before the allow-list: `clone3` fails with `ENOSYS`.
/// A filter cannot look into `clone3`'s flags (they are behind a
/// pointer), so it is refused, and `ENOSYS` is what makes glibc fall back
/// to `clone`, whose flags the allow-list checks. (seccompiler gives one
/// errno to every refusal, and a second filter could not be installed
/// once the first forbids `seccomp` itself.) Anything of another
/// architecture goes straight on to the allow-list, which refuses it.
fn clone3_prefix() -> [seccompiler::sock_filter; 5] {
    let op = |code: u32| code as u16;
    let insn = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    // Offsets in struct seccomp_data: nr at 0, arch at 4.
    [
        insn(op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS), 0, 0, 4),
        insn(
            op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
            0,
            3,
            AUDIT_ARCH,
        ),
        insn(op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS), 0, 0, 0),
        insn(
            op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
            0,
            1,
            libc::SYS_clone3 as u32,
        ),
        insn(
            op(libc::BPF_RET | libc::BPF_K),
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
    ]
}

/// The system calls `profile` allows, by number; all of them, with the
/// conditions (ORed rules of ANDed conditions) on those that have some.
pub fn allowed(profile: Profile) -> Vec<i64> {
    let mut v: Vec<i64> = common().into_iter().chain(extra(profile)).collect();
    v.extend(CONDITIONAL);
    v.sort_unstable();
    v.dedup();
    v
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

fn rules(profile: Profile, uploads: bool) -> Result<Rules, seccompiler::BackendError> {
    let mut map: Rules = BTreeMap::new();
    let upload_calls = if uploads { &UPLOADS[..] } else { &[] };
    for nr in common()
        .into_iter()
        .chain(extra(profile))
        .chain(upload_calls.iter().copied())
    {
        map.insert(nr, Vec::new());
    }
    let dword = |arg, op, value| SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value);
    let qword = |arg, op, value| SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value);
    // socket(domain, ...): the data channel (IPv4, IPv6) and syslog (UNIX).
    let mut socket = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6, libc::AF_UNIX] {
        socket.push(SeccompRule::new(vec![dword(
            0,
            SeccompCmpOp::Eq,
            family as u64,
        )?])?);
    }
    map.insert(libc::SYS_socket, socket);
    // Memory is never made executable: no code can be loaded.
    let no_exec = |arg| qword(arg, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0);
    map.insert(libc::SYS_mmap, vec![SeccompRule::new(vec![no_exec(2)?])?]);
    map.insert(
        libc::SYS_mprotect,
        vec![SeccompRule::new(vec![no_exec(2)?])?],
    );
    // clone(flags, ...): threads only (a large listing's second thread).
    map.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![qword(
            0,
            SeccompCmpOp::Eq,
            THREAD_FLAGS,
        )?])?],
    );
    // tgkill(pid, tid, sig): abort() signals its own thread, nothing else.
    let pid = u64::from(std::process::id());
    map.insert(
        libc::SYS_tgkill,
        vec![SeccompRule::new(vec![dword(0, SeccompCmpOp::Eq, pid)?])?],
    );
    Ok(map)
}

/// Calls with argument conditions (see [`rules`]).
const CONDITIONAL: [i64; 5] = [
    libc::SYS_clone,
    libc::SYS_socket,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_tgkill,
];

/// What every driver needs once serving.
fn common() -> Vec<i64> {
    let mut v = vec![
        // Control and data connections, files, listings.
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        // Log lines, written without blocking (RWF_NOWAIT).
        libc::SYS_pwritev2,
        libc::SYS_pread64,
        libc::SYS_preadv2,
        SYS_CACHESTAT,
        libc::SYS_close,
        libc::SYS_fcntl,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_getdents64,
        libc::SYS_openat2,
        libc::SYS_sendfile,
        // The data channel (socket is conditional), syslog.
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept4,
        libc::SYS_connect,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_setsockopt,
        libc::SYS_getsockopt,
        libc::SYS_shutdown,
        libc::SYS_sendto,
        libc::SYS_recvfrom,
        libc::SYS_sendmsg,
        // Memory (mmap and mprotect are conditional).
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        // Threads, time, signals, the end.
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_getrandom,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigaction,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_getpid,
        libc::SYS_gettid,
        // A thread's set-up (clone is conditional).
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_sched_getaffinity,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_ppoll,
    ];
    #[cfg(target_arch = "x86_64")]
    v.push(libc::SYS_poll);
    v
}

/// What the event mechanism of `profile` adds. Both supervisor engines
/// re-create their reserve descriptor (an eventfd) after using it.
fn extra(profile: Profile) -> Vec<i64> {
    match profile {
        // The eventfd of the helper thread that reads cold files.
        Profile::Poll => vec![libc::SYS_eventfd2],
        Profile::Epoll => {
            let mut v = vec![
                libc::SYS_epoll_create1,
                libc::SYS_epoll_ctl,
                libc::SYS_epoll_pwait,
                libc::SYS_epoll_pwait2,
                libc::SYS_eventfd2,
            ];
            #[cfg(target_arch = "x86_64")]
            v.push(libc::SYS_epoll_wait);
            v
        }
        // The rings are set up (io_uring_setup, the buffer ring's mmap,
        // the restrictions) before the filter; a worker enables its ring
        // (io_uring_register) and then only enters it. Its splice pipes
        // are made on demand, and emptied into sockets with splice.
        Profile::Uring => vec![
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
            libc::SYS_eventfd2,
            libc::SYS_pipe2,
            libc::SYS_splice,
        ],
    }
}

/// What the upload path adds (only with `--incoming`): fchmod of a new
/// file to the operator's mode, pwrite of its data (helper threads; the
/// io_uring workers write through their ring), fstatfs for the free
/// space, fsync of the file and its directory, linkat to name it,
/// unlinkat of a temporary name or an upload given up, readlinkat to find
/// where a symlink's file lies (the write-only rule).
pub const UPLOADS: [i64; 7] = [
    libc::SYS_fchmod,
    libc::SYS_pwrite64,
    libc::SYS_fstatfs,
    libc::SYS_fsync,
    libc::SYS_linkat,
    libc::SYS_unlinkat,
    libc::SYS_readlinkat,
];

/// `cachestat(2)`, the same number on every architecture: engines ask
/// whether a file's next bytes are in the page cache before sending them
/// (`engine::cache_first`).
const SYS_CACHESTAT: i64 = 451;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_compiles() {
        for p in [Profile::Poll, Profile::Epoll, Profile::Uring] {
            let prog = filter(p).unwrap();
            assert!(!prog.is_empty());
            assert!(prog.len() < u16::MAX as usize);
        }
    }

    #[test]
    fn lists_never_hold_what_must_stay_out() {
        let never = [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_clone3,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_ioctl,
            libc::SYS_openat,
            libc::SYS_kill,
            libc::SYS_setuid,
            libc::SYS_chroot,
            libc::SYS_unshare,
            libc::SYS_bpf,
        ];
        for p in [Profile::Poll, Profile::Epoll, Profile::Uring] {
            let list = allowed(p);
            for nr in never {
                assert!(!list.contains(&nr), "{p} allows syscall {nr}");
            }
        }
        for nr in never {
            assert!(!UPLOADS.contains(&nr), "uploads allow syscall {nr}");
        }
        for p in [Profile::Poll, Profile::Epoll, Profile::Uring] {
            assert!(filter_uploads(p, true).is_ok());
            // Without --incoming, none of the write side.
            for nr in UPLOADS {
                assert!(!allowed(p).contains(&nr), "{p} allows syscall {nr}");
            }
        }
        assert!(!allowed(Profile::Poll).contains(&libc::SYS_epoll_ctl));
        assert!(!allowed(Profile::Epoll).contains(&libc::SYS_io_uring_enter));
        assert!(allowed(Profile::Uring).contains(&libc::SYS_io_uring_enter));
        assert!(!allowed(Profile::Uring).contains(&libc::SYS_io_uring_setup));
        assert!(!allowed(Profile::Uring).contains(&libc::SYS_epoll_ctl));
    }

    #[test]
    fn reports_read_well() {
        let r = Report {
            landlock: Enforced::Full("6".into()),
            seccomp: Filtered::Installed(Profile::Epoll),
        };
        assert_eq!(r.to_string(), "landlock=abi6 seccomp=epoll");
        assert!(r.is_complete());
        let r = Report {
            landlock: Enforced::None("not in this kernel".into()),
            seccomp: Filtered::Installed(Profile::Poll),
        };
        assert!(!r.is_complete());
    }
}
