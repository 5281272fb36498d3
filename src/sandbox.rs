//! The sandbox a server enters once its privileges are dropped and its
//! descriptors are open: Landlock confines the filesystem to reading the
//! served root, and a seccomp filter allows only the system calls the
//! driver in use makes. Both are defence in depth: `fs::Root` already
//! confines every lookup beneath the root (`openat2` a component at a
//! time, symlinks read with `readlinkat` and expanded), and the sandbox
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
//! The binding is the `landlock` crate, the Landlock maintainers' own
//! (`landlock.rs` beside this file holds the policy).
//!
//! # seccomp
//!
//! An allow-list per [`Profile`]: the calls of the common core (reading
//! and sending files, sockets for the data channel, memory, time, futex)
//! plus those of the event mechanism. Anything else fails with `EPERM`
//! ([`DENIED`]). The arguments are checked where that is cheap and
//! meaningful: `socket` only for TCP over IPv4 and IPv6, `sendto` only
//! without an address (a send on a connected socket), `mmap`/`mprotect`
//! never executable, `tgkill` only within the process, `clone` only for a
//! thread (`clone3`, whose flags a filter cannot see, fails with `ENOSYS`
//! so that glibc falls back to `clone`). There is no `open`/`openat`
//! (only `openat2`, which `fs` uses), no `execve`, no fork, no `ioctl`,
//! no `ptrace`, no `mount`, no `sendmsg`.
//!
//! No profile makes a UNIX socket: syslog's is connected before the
//! filter (before the chroot, too, which hides `/dev/log`), and is then
//! only written to (`send`, or `write` on a stream socket). What stays
//! allowed because a filter cannot tell good from bad: `connect` (active
//! data connections, PORT/EPRT) and `bind` (passive listeners, and the
//! local address of an active connection) to any address, as the
//! address is behind a pointer; the session core allows only the control
//! connection's peer, ports 1024 and up. contrib/SECURITY.md lists these
//! as residual risks.
//!
//! Why `EPERM` rather than killing the process: a call missing from the
//! list (a libc that changed how it does something, a rare error path)
//! then fails like any other I/O error, the session concerned gets an
//! error reply and a log line, and a supervisor holding thousands of
//! sessions does not vanish without a word. An attacker gains nothing
//! from the difference: every call off the list fails either way.
//!
//! The allow-lists are compiled into BPF when aftpd is built
//! (`seccomp.rs`, through the small compiler in `bpf.rs`): a process only
//! copies its program, writes its own id in, and loads it, which ftpd
//! does once a connection.
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

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;

mod bpf;
mod landlock;
mod seccomp;

pub use self::landlock::LANDLOCK_ABI;
pub use self::seccomp::DENIED;

/// Which driver runs in the sandbox: each needs its own calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `ftpd`: `poll(2)` over the control and data sockets.
    Poll,
    /// The supervisor's epoll workers (and its main thread, which waits
    /// for signals with `poll` on a signalfd).
    Epoll,
    /// The supervisor's io_uring workers: their ring (set up before the
    /// filter), no epoll.
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
    landlock::restrict(root, writable, &[])
}

/// [`restrict_filesystem`], and with `incoming` (the drop boxes of
/// `--incoming` or `--host-incoming`) where files may be written, made
/// and removed.
pub fn restrict_filesystem_uploads(
    root: BorrowedFd<'_>,
    writable: Option<BorrowedFd<'_>>,
    incoming: &[BorrowedFd<'_>],
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
/// (`seccomp::UPLOADS`) when `uploads` (`--incoming`) is on.
pub fn restrict_syscalls_uploads(
    profile: Profile,
    uploads: bool,
    all_threads: bool,
) -> io::Result<Filtered> {
    let Some(program) = seccomp::program(profile, uploads) else {
        return Ok(Filtered::Unsupported(format!(
            "no allow-list for {}",
            std::env::consts::ARCH
        )));
    };
    let program = program.with_pid(std::process::id());
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
    enter_uploads(profile, root, writable, &[])
}

/// [`enter`], with the drop boxes `incoming` writable and the upload
/// path's calls allowed when there are any.
pub fn enter_uploads(
    profile: Profile,
    root: BorrowedFd<'_>,
    writable: Option<BorrowedFd<'_>>,
    incoming: &[BorrowedFd<'_>],
) -> io::Result<Report> {
    let landlock = restrict_filesystem_uploads(root, writable, incoming)?;
    let seccomp = restrict_syscalls_uploads(profile, !incoming.is_empty(), false)?;
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

/// The system calls `profile` allows, by number, those with argument
/// checks included.
pub fn allowed(profile: Profile) -> Vec<i64> {
    seccomp::policy(profile)
        .rules()
        .iter()
        .filter(|r| matches!(r.action, bpf::Action::Allow | bpf::Action::Check(_)))
        .map(|r| i64::from(r.nr))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILES: [Profile; 3] = [Profile::Poll, Profile::Epoll, Profile::Uring];

    /// Each profile's program, run by the test interpreter, gives every
    /// system call number (x32's, 0x40000000 and up, among them) what its
    /// policy says, for a few sets of arguments: all zero, and those of
    /// calls the engines make.
    #[test]
    fn every_program_follows_its_policy() {
        let arch = seccomp::AUDIT_ARCH.unwrap();
        let pid = std::process::id();
        let me = u64::from(pid);
        let arg_sets = [
            [0; 6],
            [libc::AF_INET6 as u64, 0o4001, 6, 0, 0, 0],
            [me, me, 6, 0, 0, 0],
            [0, 4096, 3, 0x22, u64::MAX, 0],
            [seccomp_thread_flags(), 0, 0, 0, 0, 0],
        ];
        for p in PROFILES {
            let policy = seccomp::policy(p);
            let prog = seccomp::program(p, false).unwrap().with_pid(pid);
            for nr in (0..1024).chain([0x4000_0000, 0x4000_0000 | 1, u32::MAX]) {
                for args in arg_sets {
                    let want = bpf::expected(&policy, arch, nr, args, pid);
                    let got = bpf::run(&prog, arch, nr, args);
                    assert_eq!(got, want, "{p}: nr {nr} {args:?}");
                }
            }
            // Another architecture's calls: all refused.
            let other = arch ^ 0x4000_0000;
            assert_eq!(bpf::run(&prog, other, 0, [0; 6]) & 0xffff, DENIED as u32);
            let clone3 = libc::SYS_clone3 as u32;
            let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
            assert_eq!(bpf::run(&prog, arch, clone3, [0; 6]), enosys);
            assert!(prog.len() < 256, "{p}: {} instructions", prog.len());
        }
    }

    #[test]
    fn the_checks_let_through_what_the_engines_do() {
        let arch = seccomp::AUDIT_ARCH.unwrap();
        let pid = std::process::id();
        let allow = libc::SECCOMP_RET_ALLOW;
        let refuse = libc::SECCOMP_RET_ERRNO | DENIED as u32;
        for p in PROFILES {
            let prog = seccomp::program(p, false).unwrap().with_pid(pid);
            let call = |nr: i64, args: [u64; 6]| bpf::run(&prog, arch, nr as u32, args);
            let (inet, inet6, unix) = (libc::AF_INET as u64, libc::AF_INET6 as u64, 1);
            let stream = (libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64;
            let tcp = libc::IPPROTO_TCP as u64;
            assert_eq!(call(libc::SYS_socket, [inet, stream, tcp, 0, 0, 0]), allow);
            assert_eq!(call(libc::SYS_socket, [inet6, 1, 0, 0, 0, 0]), allow);
            assert_eq!(call(libc::SYS_socket, [unix, 1, 0, 0, 0, 0]), refuse);
            assert_eq!(call(libc::SYS_socket, [inet, 2, 0, 0, 0, 0]), refuse);
            assert_eq!(call(libc::SYS_socket, [inet, 1, 132, 0, 0, 0]), refuse);
            assert_eq!(call(libc::SYS_sendto, [3, 1, 1, 0, 0, 0]), allow);
            assert_eq!(call(libc::SYS_sendto, [3, 1, 1, 0, 0x1000, 16]), refuse);
            let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
            let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
            assert_eq!(call(libc::SYS_mmap, [0, 4096, rw, 0x22, 0, 0]), allow);
            assert_eq!(call(libc::SYS_mmap, [0, 4096, rx, 0x22, 0, 0]), refuse);
            assert_eq!(
                call(libc::SYS_mprotect, [0x1000, 4096, rx, 0, 0, 0]),
                refuse
            );
            let thread = seccomp_thread_flags();
            assert_eq!(call(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), allow);
            let fork = libc::SIGCHLD as u64;
            assert_eq!(call(libc::SYS_clone, [fork, 0, 0, 0, 0, 0]), refuse);
            let me = u64::from(pid);
            assert_eq!(call(libc::SYS_tgkill, [me, me, 6, 0, 0, 0]), allow);
            assert_eq!(call(libc::SYS_tgkill, [1, 1, 9, 0, 0, 0]), refuse);
        }
    }

    /// What glibc's pthread_create passes to clone.
    fn seccomp_thread_flags() -> u64 {
        (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64
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
            libc::SYS_sendmsg,
            libc::SYS_sendmmsg,
        ];
        for p in [Profile::Poll, Profile::Epoll, Profile::Uring] {
            let list = allowed(p);
            for nr in never {
                assert!(!list.contains(&nr), "{p} allows syscall {nr}");
            }
        }
        for nr in never {
            assert!(
                !seccomp::UPLOADS.contains(&nr),
                "uploads allow syscall {nr}"
            );
        }
        // Without --incoming, none of the write side; with it, all of it.
        let allow = libc::SECCOMP_RET_ALLOW;
        let arch = seccomp::AUDIT_ARCH.unwrap();
        let pid = std::process::id();
        for p in [Profile::Poll, Profile::Epoll, Profile::Uring] {
            let with = seccomp::program(p, true).unwrap().with_pid(pid);
            let without = seccomp::program(p, false).unwrap().with_pid(pid);
            for &nr in seccomp::UPLOADS {
                assert!(!allowed(p).contains(&nr), "{p} allows syscall {nr}");
                assert_eq!(bpf::run(&with, arch, nr as u32, [0; 6]), allow, "{p}: {nr}");
                assert_ne!(
                    bpf::run(&without, arch, nr as u32, [0; 6]),
                    allow,
                    "{p}: {nr}"
                );
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
