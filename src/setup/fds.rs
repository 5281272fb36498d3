//! Closing the descriptors a program inherited by accident. A shell, a
//! service manager or a careless parent may leave descriptors open across
//! the exec (a shell's 10 and 255, a log pipe, a socket): the server would
//! hold them for its whole life, inside the chroot and sandbox, and a
//! session could never be told from them. Each program keeps only what
//! it was meant to get: 0, 1 and 2, and for the supervisor the listening
//! sockets passed by its service manager (from 3 on).

use std::io;

/// Closes every descriptor from `first` up. Call it at start, before
/// anything of the program's own is open above `first`.
pub fn close_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; none at or above
    // `first` belongs to anything in this process yet (the caller's
    // promise), so no owner is left with a dangling descriptor.
    if unsafe { libc::close_range(first, u32::MAX, 0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    // Linux before 5.9: one close per possible descriptor, up to the
    // open-files limit (no descriptor can be above it).
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
        .min(1 << 20);
    for fd in u64::from(first)..limit {
        // SAFETY: as above; EBADF for a descriptor that is not open is
        // expected and harmless.
        unsafe { libc::close(fd as libc::c_int) };
    }
    Ok(())
}
