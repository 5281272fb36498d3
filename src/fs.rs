//! The served tree: every lookup happens beneath the root directory fd with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..`, absolute
//! symlinks and rename races resolve inside the root, exactly as they would
//! after a chroot. Only public entries are handed out: world-readable
//! regular files, world-readable and -searchable directories.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::vpath::VPath;

/// What kind of entry a path resolves to (after following symlinks inside
/// the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Devices, FIFOs, sockets: never served or listed.
    Other,
}

/// The facts the protocol needs about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
}

impl Meta {
    /// Publicfile's rule: world-readable regular files, world-readable and
    /// -searchable directories. Nothing else is ever served or listed.
    pub fn is_public(&self) -> bool {
        match self.kind {
            Kind::File => self.mode & 0o004 != 0,
            Kind::Dir => self.mode & 0o005 == 0o005,
            Kind::Other => false,
        }
    }
}

/// Why a lookup failed, in the terms a reply needs.
#[derive(Debug)]
pub enum FsError {
    /// No such entry (also: a symlink that leads nowhere inside the root).
    NotFound,
    /// Exists but is not public (mode bits, or the kernel said EACCES).
    Denied,
    /// A regular file was required.
    NotFile,
    /// A directory was required.
    NotDir,
    /// A temporary failure (EMFILE, ENFILE, ENOMEM, EAGAIN): try later, 450.
    Busy(io::Error),
    /// Any other I/O error.
    Io(io::Error),
}

/// The root of the served tree, held as a directory fd.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
}

impl Root {
    /// Opens `path` as the root. Fails with `ErrorKind::Unsupported` when
    /// the kernel has no `openat2` (confinement cannot be guaranteed: fail
    /// closed), and with the open error otherwise.
    pub fn open(path: &Path) -> io::Result<Root> {
        let _ = path;
        todo!("fs::Root::open")
    }

    /// The root directory fd, e.g. for `fchdir` before `chroot`.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.dir.as_fd()
    }

    /// Facts about the entry at `path`, following symlinks inside the root.
    /// Does not check publicness: callers decide with [`Meta::is_public`].
    pub fn stat(&self, path: &VPath) -> Result<Meta, FsError> {
        let _ = path;
        todo!("fs::Root::stat")
    }

    /// Opens a public regular file for reading. Never blocks on a FIFO and
    /// never opens a device for reading.
    pub fn open_file(&self, path: &VPath) -> Result<(File, Meta), FsError> {
        let _ = path;
        todo!("fs::Root::open_file")
    }

    /// Opens a public directory for listing.
    pub fn open_dir(&self, path: &VPath) -> Result<(OwnedFd, Meta), FsError> {
        let _ = path;
        todo!("fs::Root::open_dir")
    }
}
