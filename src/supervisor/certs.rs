//! The certificate helper: a small process, forked at start while the
//! supervisor may still read the certificate and key (before the chroot,
//! the privilege drop and Landlock), that reads them again when asked, so
//! that SIGHUP can load a renewed certificate without dropping a session.
//!
//! Why a process and not a descriptor kept open: certbot and most ACME
//! clients renew by writing new files and moving a symlink
//! (`live/NAME/privkey.pem -> ../../archive/NAME/privkey2.pem`); a
//! descriptor opened before the drop keeps reading the old file forever,
//! and the unprivileged, Landlocked supervisor cannot open the new one.
//!
//! The helper keeps as little as it can: no descriptor but its end of a
//! socket pair (and standard error), no capability but reading files
//! regardless of their permissions (`CAP_DAC_READ_SEARCH`, when started
//! as root), no_new_privs, a seccomp filter that lets it open files for
//! reading only and read, write and exit, and it dies with the
//! supervisor (`PR_SET_PDEATHSIG`). It answers one request at a time: the
//! two files' contents, or why not.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::engine::tls::Pem;
use crate::setup::options::TlsFiles;

/// How long the supervisor waits for an answer.
const ANSWER: Duration = Duration::from_secs(5);
/// The descriptor the helper keeps its socket on.
const HELPER_FD: i32 = 3;
/// The largest answer: two files of at most 1 MiB and two lengths.
const MAX_ANSWER: usize = (2 << 20) + 64;

/// The supervisor's end of the helper.
pub struct Helper {
    sock: UnixStream,
}

impl Helper {
    /// Forks the helper for `files`. Call while the process has one
    /// thread, before the chroot and the privilege drop.
    pub fn start(files: &TlsFiles) -> io::Result<Helper> {
        let (ours, theirs) = UnixStream::pair()?;
        let parent = rustix::process::getpid();
        // SAFETY: the process has one thread (the caller's promise), so
        // the child may do anything the parent could; it never returns.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                drop(ours);
                let code = match serve(theirs, files, parent) {
                    Ok(()) => 0,
                    Err(_) => 111,
                };
                // SAFETY: _exit ends the child without running the
                // parent's exit handlers or flushing its buffers twice.
                unsafe { libc::_exit(code) }
            }
            _ => {
                drop(theirs);
                ours.set_read_timeout(Some(ANSWER))?;
                ours.set_write_timeout(Some(ANSWER))?;
                Ok(Helper { sock: ours })
            }
        }
    }

    /// The certificate and key as the files hold them now.
    pub fn read(&mut self) -> Result<Pem, String> {
        let broken = |e: io::Error| format!("the certificate helper: {e}");
        self.sock.write_all(b"R").map_err(broken)?;
        // Both parts, whatever the first says: the next answer starts
        // after them.
        let cert = read_part(&mut self.sock);
        let key = read_part(&mut self.sock);
        Ok(Pem {
            cert: cert?,
            key: key?,
        })
    }
}

/// One file of the answer: its length and bytes, or an error's text
/// (length with the top bit set).
fn read_part(sock: &mut UnixStream) -> Result<Vec<u8>, String> {
    let broken = |e: io::Error| format!("the certificate helper: {e}");
    let mut len = [0u8; 4];
    sock.read_exact(&mut len).map_err(broken)?;
    let len = u32::from_be_bytes(len);
    let (failed, n) = (len & 0x8000_0000 != 0, (len & 0x7fff_ffff) as usize);
    if n > MAX_ANSWER {
        return Err("the certificate helper: an answer too long".to_owned());
    }
    let mut data = vec![0u8; n];
    sock.read_exact(&mut data).map_err(broken)?;
    if failed {
        return Err(String::from_utf8_lossy(&data).into_owned());
    }
    Ok(data)
}

fn write_part(sock: &mut UnixStream, part: Result<&[u8], &str>) -> io::Result<()> {
    let (flag, data) = match part {
        Ok(d) => (0, d),
        Err(e) => (0x8000_0000u32, e.as_bytes()),
    };
    sock.write_all(&(flag | data.len() as u32).to_be_bytes())?;
    sock.write_all(data)
}

/// The helper's life: confined, then one answer per request until the
/// supervisor goes.
fn serve(sock: UnixStream, files: &TlsFiles, parent: rustix::process::Pid) -> io::Result<()> {
    let mut sock = confine(sock, parent)?;
    let mut req = [0u8; 1];
    loop {
        match sock.read(&mut req) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        match Pem::read(files) {
            Ok(pem) => {
                write_part(&mut sock, Ok(&pem.cert))?;
                write_part(&mut sock, Ok(&pem.key))?;
            }
            Err(e) => {
                write_part(&mut sock, Err(&e))?;
                write_part(&mut sock, Err(&e))?;
            }
        }
    }
}

/// Everything but the socket closed, capabilities down to reading,
/// no_new_privs, death with the parent, the seccomp filter.
fn confine(sock: UnixStream, parent: rustix::process::Pid) -> io::Result<UnixStream> {
    // SAFETY: prctl with these arguments only sets process attributes.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    // Gone before the line above took effect: nobody to serve.
    if rustix::process::getppid() != Some(parent) {
        return Err(io::Error::other("the supervisor is gone"));
    }
    let fd = OwnedFd::from(sock);
    // SAFETY: dup2 onto HELPER_FD; whatever was there is closed below or
    // replaced, and nothing of this process uses it (a fresh child).
    if unsafe { libc::dup2(fd.as_raw_fd(), HELPER_FD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(fd);
    crate::setup::fds::close_from(HELPER_FD as u32 + 1)?;
    // SAFETY: HELPER_FD is the socket just duplicated, owned from here on.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(HELPER_FD) });
    if rustix::process::geteuid().is_root() {
        keep_only_read_capability()?;
    }
    rustix::thread::set_no_new_privs(true)?;
    filter()?;
    Ok(sock)
}

/// Drops every capability but `CAP_DAC_READ_SEARCH` (reading any file),
/// for good (permitted, effective and inheritable sets).
fn keep_only_read_capability() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_DAC_READ_SEARCH: u32 = 2;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let keep = Data {
        effective: 1 << CAP_DAC_READ_SEARCH,
        permitted: 1 << CAP_DAC_READ_SEARCH,
        inheritable: 0,
    };
    let none = Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
    // Without CAP_DAC_READ_SEARCH to keep (a service manager's bounding
    // set), none at all: root still reads the files it owns.
    for first in [keep, none] {
        let data = [first, none];
        // SAFETY: capset reads a version-3 header and two data structs,
        // laid out as linux/capability.h has them, live for the call.
        let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        if r == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
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

/// The helper's system calls: files opened for reading only (no write,
/// create or truncate flag), reads, writes on its socket, memory, exit.
fn filter() -> io::Result<()> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let Some(arch) = ARCH else {
        return Ok(());
    };
    let bad = |e: seccompiler::BackendError| io::Error::other(e.to_string());
    let write_flags = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u64;
    let read_only = SeccompRule::new(vec![
        SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(write_flags),
            0,
        )
        .map_err(bad)?,
    ])
    .map_err(bad)?;
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_close,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_futex,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_getppid,
    ]
    .into_iter()
    .map(|n| (n, Vec::new()))
    .collect();
    rules.insert(libc::SYS_openat, vec![read_only]);
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(bad)?;
    let program: seccompiler::BpfProgram = f.try_into().map_err(bad)?;
    seccompiler::apply_filter(&program).map_err(|e| io::Error::other(e.to_string()))
}
