//! The seccomp allow-lists, one per [`Profile`], compiled into BPF at
//! build time ([`super::bpf`]): loading one costs a copy, the process id
//! written in, and the `seccomp` call.

use super::Profile;
use super::bpf::{Action, Clause, Policy, Program};

/// The errno of a system call off the allow-list.
pub const DENIED: i32 = libc::EPERM;

/// The audit architecture of this build, as `seccomp_data.arch` has it
/// (include/uapi/linux/audit.h: EM_* | 64-bit | little-endian); `None`
/// where there is no allow-list.
#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: Option<u32> = Some(62 | 0x8000_0000 | 0x4000_0000);
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: Option<u32> = Some(183 | 0x8000_0000 | 0x4000_0000);
#[cfg(target_arch = "riscv64")]
pub const AUDIT_ARCH: Option<u32> = Some(243 | 0x8000_0000 | 0x4000_0000);
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
pub const AUDIT_ARCH: Option<u32> = None;

/// The compiled filter of `profile`, or `None` on an architecture
/// without allow-lists.
/// `uploads`: with the calls of the upload path (`--incoming`).
pub fn program(profile: Profile, uploads: bool) -> Option<&'static Program> {
    AUDIT_ARCH?;
    Some(match (profile, uploads) {
        (Profile::Poll, false) => &POLL,
        (Profile::Epoll, false) => &EPOLL,
        (Profile::Uring, false) => &URING,
        (Profile::Poll, true) => &POLL_UPLOADS,
        (Profile::Epoll, true) => &EPOLL_UPLOADS,
        (Profile::Uring, true) => &URING_UPLOADS,
    })
}

// Statics: compiled by the compiler, stored in the executable.
static POLL: Program = Program::compile(&policy(Profile::Poll));
static EPOLL: Program = Program::compile(&policy(Profile::Epoll));
static URING: Program = Program::compile(&policy(Profile::Uring));
static POLL_UPLOADS: Program = Program::compile(&policy(Profile::Poll).allow(UPLOADS));
static EPOLL_UPLOADS: Program = Program::compile(&policy(Profile::Epoll).allow(UPLOADS));
static URING_UPLOADS: Program = Program::compile(&policy(Profile::Uring).allow(UPLOADS));

/// What the upload path adds (only with `--incoming`): fchmod of a new
/// file to the operator's mode, pwrite of its data (helper threads; the
/// io_uring workers write through their ring), fstatfs for the free
/// space, fsync of the file and its directory, linkat to name it,
/// unlinkat of a temporary name or an upload given up; pipe2 and splice
/// for a helper thread's socket -> pipe -> file (engine::intake; its pipe
/// size is set with fcntl, which every profile allows). (readlinkat, for
/// the write-only rule's walk, every lookup has already.)
pub const UPLOADS: &[i64] = &[
    libc::SYS_fchmod,
    libc::SYS_pwrite64,
    libc::SYS_pipe2,
    libc::SYS_splice,
    libc::SYS_fstatfs,
    libc::SYS_fsync,
    libc::SYS_linkat,
    libc::SYS_unlinkat,
];

/// The allow-list of `profile`.
pub const fn policy(profile: Profile) -> Policy {
    let arch = match AUDIT_ARCH {
        Some(a) => a,
        // Never loaded (see `program`); any value compiles.
        None => 0,
    };
    let base = Policy::new(arch, DENIED as u16)
        .allow(COMMON)
        .allow(COMMON_LEGACY)
        .rule(libc::SYS_socket, Action::Check(SOCKET))
        .rule(libc::SYS_sendto, Action::Check(SENDTO))
        .rule(libc::SYS_mmap, Action::Check(NO_EXEC))
        .rule(libc::SYS_mprotect, Action::Check(NO_EXEC))
        .rule(libc::SYS_clone, Action::Check(THREAD))
        .rule(libc::SYS_clone3, Action::Errno(libc::ENOSYS as u16))
        .rule(libc::SYS_tgkill, Action::Check(OWN_PROCESS));
    match profile {
        // The eventfd of ftpd's helper thread for cold files.
        Profile::Poll => base.allow(&[libc::SYS_eventfd2]),
        Profile::Epoll => base.allow(EPOLL_CALLS).allow(EPOLL_LEGACY),
        Profile::Uring => base.allow(URING_CALLS),
    }
}

/// `cachestat(2)`, the same number on every architecture.
const SYS_CACHESTAT: i64 = 451;

/// What every driver needs once serving.
const COMMON: &[i64] = &[
    // Control and data connections, files, listings.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    // Reading only what the page cache holds (RWF_NOWAIT), asking what it
    // holds (engine::cache_first); log lines that never block (log).
    libc::SYS_preadv2,
    SYS_CACHESTAT,
    libc::SYS_pwritev2,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_getdents64,
    libc::SYS_openat2,
    // The lookup expands symlinks itself, one name at a time (fs::walk).
    libc::SYS_readlinkat,
    libc::SYS_sendfile,
    // The data channel (socket and sendto are conditional); the control
    // connection; syslog's socket, connected before.
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_shutdown,
    libc::SYS_recvfrom,
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

/// Calls only x86_64 has, which its libc may still use.
#[cfg(target_arch = "x86_64")]
const COMMON_LEGACY: &[i64] = &[libc::SYS_poll];
#[cfg(not(target_arch = "x86_64"))]
const COMMON_LEGACY: &[i64] = &[];

/// The epoll engine. Both supervisor engines re-create their reserve
/// descriptor (an eventfd) after using it.
const EPOLL_CALLS: &[i64] = &[
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
];
#[cfg(target_arch = "x86_64")]
const EPOLL_LEGACY: &[i64] = &[libc::SYS_epoll_wait];
#[cfg(not(target_arch = "x86_64"))]
const EPOLL_LEGACY: &[i64] = &[];

/// The io_uring engine. The rings are set up (io_uring_setup, the buffer
/// ring's mmap, the restrictions) before the filter; a worker enables its
/// ring (io_uring_register) and then only enters it. Files are sent with
/// sendfile, as by the other engines.
const URING_CALLS: &[i64] = &[
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_eventfd2,
];

/// The bits of `socket`'s type argument that give the type (the rest are
/// SOCK_NONBLOCK and SOCK_CLOEXEC); include/linux/net.h.
const SOCK_TYPE_MASK: u32 = 0xf;

/// socket(domain, type, protocol): TCP over IPv4 or IPv6, the data
/// channel, and nothing else: no UNIX socket (syslog's is connected
/// before the filter and only written to), no UDP, raw, SCTP or MPTCP
/// socket.
const SOCKET: &[Clause] = &[
    Clause::In32 {
        arg: 0,
        mask: u32::MAX,
        values: &[libc::AF_INET as u32, libc::AF_INET6 as u32],
    },
    Clause::In32 {
        arg: 1,
        mask: SOCK_TYPE_MASK,
        values: &[libc::SOCK_STREAM as u32],
    },
    Clause::In32 {
        arg: 2,
        mask: u32::MAX,
        values: &[0, libc::IPPROTO_TCP as u32],
    },
];

/// sendto(fd, buf, len, flags, dest_addr, addrlen): send(2) on a connected
/// socket, dest_addr NULL. With an address, sendto would connect a TCP
/// socket (MSG_FASTOPEN) past the session's checks.
const SENDTO: &[Clause] = &[Clause::Eq64 { arg: 4, value: 0 }];

/// mmap(.., prot, ..) and mprotect(.., prot): memory is never made
/// executable, so no code can be loaded.
const NO_EXEC: &[Clause] = &[Clause::In32 {
    arg: 2,
    mask: libc::PROT_EXEC as u32,
    values: &[0],
}];

/// The flags glibc's `pthread_create` passes to `clone`: a thread of this
/// process, sharing everything (a large listing's second thread). Any
/// other `clone` (a fork, new namespaces) is refused. `clone3`, whose
/// flags are behind a pointer a filter cannot read, fails with `ENOSYS`,
/// which makes glibc fall back to `clone`.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;
const THREAD: &[Clause] = &[Clause::Eq64 {
    arg: 0,
    value: THREAD_FLAGS,
}];

/// tgkill(pid, tid, sig): abort() signals its own thread, nothing else.
const OWN_PROCESS: &[Clause] = &[Clause::IsPid { arg: 0 }];
