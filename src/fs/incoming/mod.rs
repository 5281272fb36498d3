//! The drop box (`--incoming`): anonymous uploads, and the rule that
//! keeps them write-only.
//!
//! Writing. An upload is written to a file with no name (`O_TMPFILE`) in
//! the directory it goes to, its name reserved meanwhile by a lock on one
//! byte of a lock file (an OFD lock, `F_OFD_SETLK`, at an offset hashed
//! from the directory and the name: it conflicts between sessions of one
//! process as between processes, and goes away with the process). Once the
//! data is complete the file is `fsync`ed, linked under its name with
//! `linkat(AT_EMPTY_PATH)`, which never replaces anything (EEXIST), and
//! the directory is `fsync`ed. Until then nothing is under the final name,
//! and a failed upload leaves nothing at all: the kernel frees an unnamed
//! file when its last descriptor closes, crash included. Where the kernel
//! cannot link an unnamed file (Linux before 6.10 without
//! CAP_DAC_READ_SEARCH) or the filesystem has no `O_TMPFILE`, the data
//! goes to a hidden temporary name in the same directory instead, linked
//! the same way and removed on every failure the server sees (a crash
//! leaves it: a dot-file, never listed or served).
//!
//! Reading. What is in the incoming directory is not published: the
//! directory and the directories beneath it can be entered (to upload)
//! whatever their mode, and list as empty; a file there does not exist for
//! anonymous users, by its name or through a symlink from elsewhere (the
//! rule applies to the physical directory of what is opened, found by
//! walking `..` up from it). An operator publishes an upload by moving it
//! out.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::{PATH_ONLY, RESOLVE, Root, fstat};
use crate::core::config::within;
use crate::core::meta::{FsError, Kind, Meta};
use crate::core::vpath::VPath;
use crate::hook::Hook;

mod store;

pub use store::Upload;

/// The lock file whose bytes reserve the names being uploaded, in the
/// incoming directory (hidden, so never listed or served).
const LOCK_FILE: &str = ".aftpd-uploads";
/// How far `..` is followed up when looking for the incoming directory.
const MAX_DEPTH: usize = 256;
/// Symlinks followed when finding the physical directory of a file.
const MAX_LINKS: usize = 40;

/// `--incoming` and the options the filesystem applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The incoming directory, beneath the root.
    pub dir: VPath,
    /// Bytes an upload must leave free on the filesystem.
    pub min_free: u64,
    /// The permission bits of stored files.
    pub mode: u32,
}

/// The incoming directory of a served tree.
pub struct Incoming {
    settings: Settings,
    /// The directory itself (`O_PATH`): the sandbox's write rule, the
    /// lock file's place.
    fd: OwnedFd,
    /// (device, inode) of the incoming directory and of the root.
    id: (u64, u64),
    root_id: (u64, u64),
    /// Whether unnamed files can be made and linked here (probed at the
    /// first upload, as the user that serves).
    unnamed: OnceLock<bool>,
    hook: Option<Hook>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("settings", &self.settings)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// The incoming directory `settings.dir` of `root`, which must exist;
    /// `hook` runs for every stored upload.
    pub fn open(root: &Root, settings: Settings, hook: Option<Hook>) -> std::io::Result<Incoming> {
        let flags = PATH_ONLY | OFlags::DIRECTORY;
        let fd = root.lookup(&settings.dir, flags).map_err(|e| {
            std::io::Error::new(
                std::io::Error::from(e).kind(),
                format!(
                    "--incoming {}: {}",
                    String::from_utf8_lossy(settings.dir.relative()),
                    std::io::Error::from(e)
                ),
            )
        })?;
        let id = ident(&fd)?;
        let root_id = ident(&root.dir)?;
        Ok(Incoming {
            settings,
            fd,
            id,
            root_id,
            unnamed: OnceLock::new(),
            hook,
        })
    }

    /// The incoming directory, for the sandbox's write rule.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the virtual path `path` lies in the drop box.
    pub fn covers(&self, path: &VPath) -> bool {
        within(path, &self.settings.dir)
    }

    // ---- reading: the write-only rule ----

    /// The facts of `path`, which lies in the drop box: a directory
    /// physically inside it (enterable whatever its mode); nothing else
    /// exists. The directories above the drop box are checked as usual.
    pub fn stat(&self, root: &Root, path: &VPath) -> Result<Meta, FsError> {
        root.stat(&self.settings.dir)?;
        let fd = root.lookup(path, PATH_ONLY)?;
        let meta = fstat(&fd)?;
        if meta.kind != Kind::Dir || !self.inside(fd.as_fd())? {
            return Err(FsError::NotFound);
        }
        Ok(meta)
    }

    /// Whether the directory `dir` is the drop box or lies beneath it,
    /// physically: `..` is followed up from it.
    pub fn inside(&self, dir: BorrowedFd<'_>) -> Result<bool, FsError> {
        let mut cur = ident(&dir).map_err(FsError::Io)?;
        let mut owned: Option<OwnedFd> = None;
        for _ in 0..MAX_DEPTH {
            if cur == self.id {
                return Ok(true);
            }
            if cur == self.root_id {
                return Ok(false);
            }
            let at = owned.as_ref().map_or(dir, |o| o.as_fd());
            let up = rustix::fs::openat2(
                at,
                "..",
                PATH_ONLY | OFlags::DIRECTORY,
                Mode::empty(),
                ResolveFlags::empty(),
            )?;
            let next = ident(&up).map_err(FsError::Io)?;
            if next == cur {
                return Ok(false); // `/` (of a chroot)
            }
            cur = next;
            owned = Some(up);
        }
        Ok(false)
    }

    /// Whether the file at `path` (found public by the caller) lies,
    /// physically, in the drop box: the directory that holds it, after
    /// every symlink on the way, is checked.
    pub fn holds_file(&self, root: &Root, path: &VPath) -> Result<bool, FsError> {
        let mut rel = path.relative().to_vec();
        for _ in 0..MAX_LINKS {
            let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (rel[..i].to_vec(), rel[i + 1..].to_vec()),
                None => (b".".to_vec(), rel.clone()),
            };
            if name.is_empty() || name == b"." || name == b".." {
                return Ok(false); // a directory, not a file
            }
            let dir = if dir.is_empty() { b"/".to_vec() } else { dir };
            let dfd = lookup_raw(root, &dir, PATH_ONLY | OFlags::DIRECTORY)?;
            let st = rustix::fs::statx(
                &dfd,
                name.as_slice(),
                AtFlags::SYMLINK_NOFOLLOW,
                rustix::fs::StatxFlags::TYPE,
            )?;
            if FileType::from_raw_mode(u32::from(st.stx_mode) as _) != FileType::Symlink {
                return self.inside(dfd.as_fd());
            }
            let target = rustix::fs::readlinkat(&dfd, name.as_slice(), Vec::new())?;
            let target = target.as_bytes();
            rel = if target.first() == Some(&b'/') {
                // Absolute targets start at the root (RESOLVE_IN_ROOT).
                target.to_vec()
            } else {
                let mut r = dir;
                r.push(b'/');
                r.extend_from_slice(target);
                r
            };
        }
        Err(FsError::NotFound)
    }
}

/// (device, inode) of an open file.
fn ident(fd: &impl AsFd) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// `openat2` of a raw relative path beneath the root, confined as every
/// lookup is (`..` in it is the kernel's to resolve, after symlinks).
fn lookup_raw(root: &Root, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(&root.dir, rel, flags, Mode::empty(), RESOLVE) {
            Err(Errno::AGAIN | Errno::INTR) if tries < 8 => tries += 1,
            r => return r,
        }
    }
}
