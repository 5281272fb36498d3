//! The upload hook (`--upload-hook PROG`): after an upload is stored
//! (durable, under its name), PROG runs with the file's path relative to
//! ROOT as its argument and `AFTPD_PEER`, `AFTPD_SIZE`, `AFTPD_NAME` in its
//! environment, as Pure-FTPd's pure-uploadscript does.
//!
//! The server cannot run it itself: its seccomp filter forbids exec and
//! fork, and it may be chrooted where PROG's interpreter is not. So a
//! small helper process ([`runner`]) is forked at start, while the
//! program still has one thread and before the chroot: it becomes the
//! server's unprivileged user, sets no_new_privs, keeps no descriptor but
//! its end of a socket pair and the log's, and waits for requests. The
//! server hands it one datagram per stored upload without waiting
//! (`MSG_DONTWAIT`): the session never waits for a hook. The helper
//! queues what it reads (bounded: beyond, the socket fills, and what the
//! server could not hand over is counted and reported with the next
//! request), runs at most `--upload-hook-max` at once, kills one that runs
//! past [`runner::TIME_LIMIT`], and logs every failure itself.

pub mod runner;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::net::{AddressFamily, SendFlags, SocketFlags, SocketType};

use crate::log::Logger;

/// The most bytes of one request (a path of up to 4 KiB and the rest).
pub const MAX_REQUEST: usize = 8192;

/// What the helper needs to know at start.
pub struct Spec {
    /// The program to run.
    pub prog: PathBuf,
    /// Hooks running at once, at most.
    pub max: usize,
    /// ROOT, outside any chroot: the hook runs there, so that the path it
    /// is given (relative to ROOT) names the file.
    pub root: PathBuf,
    /// The user and group to become (started as root), else `None`.
    pub user: Option<(u32, u32)>,
}

/// The server's end: hands stored uploads to the helper.
pub struct Hook {
    sock: OwnedFd,
    /// Requests that could not be handed over since the last that could.
    dropped: AtomicU64,
}

impl Hook {
    /// Forks the helper. Call it while the process has a single thread
    /// (a fork copies only the calling thread), before the chroot and the
    /// privilege drop: the helper does its own drop, without the chroot.
    /// `logger` makes the helper's log (in the helper).
    pub fn start(spec: Spec, logger: impl FnOnce() -> Logger) -> io::Result<Hook> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        // SAFETY: the process has one thread (the caller's promise), so
        // the child is a complete copy in which any code may run; it
        // never returns from `runner::main`.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                drop(ours);
                runner::main(spec, theirs, logger)
            }
            _ => {
                drop(theirs);
                Ok(Hook {
                    sock: ours,
                    dropped: AtomicU64::new(0),
                })
            }
        }
    }

    /// Asks for the hook to run for the upload stored at `path` (relative
    /// to ROOT), `size` bytes, named `name`, from `peer`. Never waits:
    /// when the helper's queue is full the request is counted as dropped,
    /// and the helper logs the count with the next one.
    pub fn send(&self, path: &[u8], peer: Option<SocketAddr>, size: u64, name: &[u8]) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        let peer = peer.map_or_else(String::new, |p| p.ip().to_canonical().to_string());
        let msg = encode(dropped, path, &peer, size, name);
        let sent = rustix::net::send(
            self.sock.as_fd(),
            &msg,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        );
        if sent.is_err() {
            self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
        }
    }
}

/// A request: fields separated by NUL (none may hold one: paths and
/// names come from the filesystem).
fn encode(dropped: u64, path: &[u8], peer: &str, size: u64, name: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(path.len() + name.len() + 64);
    m.extend_from_slice(dropped.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(path);
    m.push(0);
    m.extend_from_slice(peer.as_bytes());
    m.push(0);
    m.extend_from_slice(size.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(name);
    m.truncate(MAX_REQUEST);
    m
}

/// A request, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub dropped: u64,
    pub path: Vec<u8>,
    pub peer: String,
    pub size: u64,
    pub name: Vec<u8>,
}

/// Reads a request; `None` if it is not one.
pub fn decode(m: &[u8]) -> Option<Request> {
    let mut f = m.split(|&b| b == 0);
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
    let dropped = num(f.next()?)?;
    let path = f.next()?.to_vec();
    let peer = String::from_utf8(f.next()?.to_vec()).ok()?;
    let size = num(f.next()?)?;
    let name = f.next()?.to_vec();
    if f.next().is_some() || path.is_empty() {
        return None;
    }
    Some(Request {
        dropped,
        path,
        peer,
        size,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let m = encode(3, b"incoming/a b", "192.0.2.1", 42, b"a b");
        assert_eq!(
            decode(&m),
            Some(Request {
                dropped: 3,
                path: b"incoming/a b".to_vec(),
                peer: "192.0.2.1".into(),
                size: 42,
                name: b"a b".to_vec(),
            })
        );
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"x\0p\0\x000\0n"), None);
        assert_eq!(decode(b"0\0\0\x000\0n"), None);
        assert_eq!(decode(b"0\0p\0\x000\0n\0extra"), None);
    }
}
