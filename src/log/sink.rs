//! The [`Sink`]s behind the log: standard error, a socket (syslog's), a
//! file (the xferlog), each written without blocking when it can be.
//!
//! Non-blocking writes never change the descriptor: standard error is
//! often an open file description shared with other processes (tcpserver
//! starts every ftpd on one multilog pipe), and `O_NONBLOCK` there would
//! change it for all of them. So each write asks for itself:
//!
//! - sockets: `send(MSG_DONTWAIT)`, in every kernel;
//! - pipes, files, terminals: `pwritev2(RWF_NOWAIT)`. Where the kernel or
//!   the file system does not offer it for this kind of file (pipes before
//!   the kernel gained `FMODE_NOWAIT` for them, buffered writes on ext4,
//!   a seccomp filter without `pwritev2`), the call fails with
//!   `EOPNOTSUPP` (or `EINVAL`, `ENOSYS`, `EPERM`) and every line goes
//!   through the outlet's writer thread instead.
//!
//! A line of at most `PIPE_BUF` bytes is written to a pipe whole or not at
//! all, so lines of processes sharing a pipe never interleave.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use rustix::io::{Errno, ReadWriteFlags};
use rustix::net::SendFlags;

use super::outlet::{Attempt, Sink};

/// How a descriptor is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// `send(2)`: a socket.
    Send,
    /// `pwritev2(2)`/`write(2)`: anything else.
    Write,
}

impl How {
    fn of(fd: BorrowedFd<'_>) -> How {
        match rustix::fs::fstat(fd) {
            Ok(st)
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::Socket =>
            {
                How::Send
            }
            _ => How::Write,
        }
    }
}

/// One write of `line` without waiting.
fn try_write(fd: BorrowedFd<'_>, how: How, line: &[u8]) -> Attempt {
    let done = match how {
        How::Send => rustix::net::send(fd, line, SendFlags::DONTWAIT | SendFlags::NOSIGNAL),
        // u64::MAX: at the file's own offset (pipes have none; O_APPEND
        // files append).
        How::Write => {
            rustix::io::pwritev2(fd, &[IoSlice::new(line)], u64::MAX, ReadWriteFlags::NOWAIT)
        }
    };
    match done {
        Ok(n) if n >= line.len() => Attempt::Written,
        Ok(n) => Attempt::Partial(n),
        Err(Errno::AGAIN | Errno::INTR) => Attempt::WouldBlock,
        Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS | Errno::PERM) if how == How::Write => {
            Attempt::Unsupported
        }
        Err(_) => Attempt::Failed,
    }
}

/// Writes all of `line`, waiting for room as long as it takes (also when
/// someone else made the descriptor non-blocking).
fn write_all(fd: BorrowedFd<'_>, how: How, mut line: &[u8]) -> io::Result<()> {
    while !line.is_empty() {
        let done = match how {
            How::Send => rustix::net::send(fd, line, SendFlags::NOSIGNAL),
            How::Write => rustix::io::write(fd, line),
        };
        match done {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => line = &line[n.min(line.len())..],
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                let mut fds = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::OUT,
                )];
                let second = rustix::event::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                let _ = rustix::event::poll(&mut fds, Some(&second));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Standard error, as it is (never duplicated: a program may close
/// descriptors above 2 at start).
pub struct Stderr {
    how: How,
}

impl Default for Stderr {
    fn default() -> Stderr {
        Stderr {
            how: How::of(io::stderr().as_fd()),
        }
    }
}

impl Sink for Stderr {
    fn try_write(&self, line: &[u8]) -> Attempt {
        try_write(io::stderr().as_fd(), self.how, line)
    }

    fn write(&self, line: &[u8]) -> io::Result<()> {
        write_all(io::stderr().as_fd(), self.how, line)
    }
}

/// A socket of our own (syslog's).
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    pub fn new(fd: OwnedFd) -> Socket {
        Socket { fd }
    }
}

impl Sink for Socket {
    fn try_write(&self, line: &[u8]) -> Attempt {
        try_write(self.fd.as_fd(), How::Send, line)
    }

    fn write(&self, line: &[u8]) -> io::Result<()> {
        write_all(self.fd.as_fd(), How::Send, line)
    }
}

/// A file opened for appending, which may be replaced by a new one (the
/// xferlog after a rotation) while lines are being written.
pub struct Appender {
    file: Mutex<Arc<File>>,
}

impl Appender {
    pub fn new(file: File) -> Appender {
        Appender {
            file: Mutex::new(Arc::new(file)),
        }
    }

    /// Lines from now on go to `file`; a line being written finishes in
    /// the old one.
    pub fn replace(&self, file: File) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(file);
    }

    // The lock is held only to take the file, never across a write, so a
    // replacement never waits for a slow disk.
    fn current(&self) -> Arc<File> {
        Arc::clone(&self.file.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Sink for Arc<Appender> {
    fn try_write(&self, line: &[u8]) -> Attempt {
        try_write(self.current().as_fd(), How::Write, line)
    }

    fn write(&self, line: &[u8]) -> io::Result<()> {
        write_all(self.current().as_fd(), How::Write, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::pipe::{PipeFlags, pipe_with};

    /// Fills the pipe whose write end is `w` (made non-blocking for that
    /// only, then blocking again, as a shared standard error would be).
    fn fill(w: &OwnedFd) -> usize {
        let flags = rustix::fs::fcntl_getfl(w).unwrap();
        rustix::fs::fcntl_setfl(w, flags | rustix::fs::OFlags::NONBLOCK).unwrap();
        let chunk = [b'x'; 4096];
        let mut total = 0;
        for _ in 0..1024 {
            match rustix::io::write(w, &chunk) {
                Ok(n) => total += n,
                Err(_) => break,
            }
        }
        rustix::fs::fcntl_setfl(w, flags).unwrap();
        total
    }

    #[test]
    fn a_full_pipe_would_block_and_the_descriptor_stays_blocking() {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        assert_eq!(try_write(w.as_fd(), How::Write, b"one\n"), Attempt::Written);
        assert!(fill(&w) > 0);
        let got = try_write(w.as_fd(), How::Write, b"two\n");
        // This kernel may not offer RWF_NOWAIT on pipes (older ones do
        // not): then the writer thread takes every line.
        assert!(
            got == Attempt::WouldBlock || got == Attempt::Unsupported,
            "{got:?}"
        );
        let flags = rustix::fs::fcntl_getfl(&w).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
        let mut buf = [0u8; 4];
        rustix::io::read(&r, &mut buf).unwrap();
        assert_eq!(&buf, b"one\n");
    }

    #[test]
    fn a_socket_whose_reader_stalls_would_block() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let fd = OwnedFd::from(a);
        let mut sent = 0;
        let mut last = Attempt::Written;
        for _ in 0..100_000 {
            last = try_write(fd.as_fd(), How::Send, b"<14>x: a line");
            if last != Attempt::Written {
                break;
            }
            sent += 1;
        }
        assert_eq!(last, Attempt::WouldBlock, "after {sent}");
        assert!(sent > 0);
        let mut buf = [0u8; 64];
        assert_eq!(b.recv(&mut buf).unwrap(), 13);
        // Room again: written.
        assert_eq!(
            try_write(fd.as_fd(), How::Send, b"<14>x: again"),
            Attempt::Written
        );
    }

    #[test]
    fn a_closed_reader_fails() {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        drop(r);
        // SIGPIPE is ignored in both programs; the test harness too.
        let got = try_write(w.as_fd(), How::Write, b"x\n");
        assert!(
            got == Attempt::Failed || got == Attempt::Unsupported,
            "{got:?}"
        );
        assert!(write_all(w.as_fd(), How::Write, b"x\n").is_err());
    }

    #[test]
    fn an_appender_follows_its_replacement() {
        let dir = std::env::temp_dir().join(format!("aftpd-appender-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(dir.join(name))
                .unwrap()
        };
        let a = Arc::new(Appender::new(open("one")));
        assert!(a.write(b"1\n").is_ok());
        // Written now, or unsupported here (ext4 buffered writes): either
        // way the line is not lost.
        match a.try_write(b"2\n") {
            Attempt::Written => {}
            Attempt::Unsupported => a.write(b"2\n").unwrap(),
            other => panic!("{other:?}"),
        }
        a.replace(open("two"));
        a.write(b"3\n").unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("one")).unwrap(), "1\n2\n");
        assert_eq!(std::fs::read_to_string(dir.join("two")).unwrap(), "3\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
