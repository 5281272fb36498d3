//! The served tree: every lookup walks beneath the root directory fd one
//! component at a time (module `walk`), so that `..`, absolute symlinks and
//! rename races resolve inside the root, exactly as they would after a
//! chroot, and the publishing rules apply to the physical path of what is
//! opened. Only published entries are handed out: world-readable regular
//! files and world-readable and -searchable directories, every directory
//! on the way world-readable and -searchable, no name starting with `.`
//! anywhere (typed or inside a symlink's target). Whatever is not
//! published is `FsError::NotFound`, exactly like a missing name.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

pub mod dir;
pub mod exec;
pub mod incoming;
pub mod message;
pub mod trees;
mod walk;

pub use crate::core::meta::{FsError, Kind, Meta};
use crate::core::vpath::VPath;
use walk::{Chain, Found, STEP_RESOLVE, Walk};

/// The facts of a `stat` result. The field types of `struct stat`
/// differ between architectures, hence the casts.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn meta_from_stat(st: &Stat) -> Meta {
    let kind = match FileType::from_raw_mode(st.st_mode as _) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        _ => Kind::Other,
    };
    Meta {
        kind,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: st.st_mtime as i64,
        mode: st.st_mode as u32 & 0o7777,
        nlink: st.st_nlink as u64,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
    }
}

/// The facts of a `statx` result asked for with [`STATX_FIELDS`].
pub(crate) fn meta_from_statx(st: &rustix::fs::Statx) -> Meta {
    let kind = match FileType::from_raw_mode(u32::from(st.stx_mode) as _) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        _ => Kind::Other,
    };
    Meta {
        kind,
        size: st.stx_size,
        mtime: st.stx_mtime.tv_sec,
        mode: u32::from(st.stx_mode) & 0o7777,
        nlink: u64::from(st.stx_nlink),
        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
    }
}

/// The `statx` fields a [`Meta`] holds: asking for no more spares the
/// filesystem work (a listing does one `statx` per entry).
pub(crate) const STATX_FIELDS: rustix::fs::StatxFlags = rustix::fs::StatxFlags::TYPE
    .union(rustix::fs::StatxFlags::MODE)
    .union(rustix::fs::StatxFlags::NLINK)
    .union(rustix::fs::StatxFlags::SIZE)
    .union(rustix::fs::StatxFlags::MTIME)
    .union(rustix::fs::StatxFlags::INO);

impl From<Errno> for FsError {
    fn from(e: Errno) -> FsError {
        match e {
            // ELOOP: a symlink where none may be (a swap during the
            // lookup). ENOTDIR: a component is not a directory. EACCES,
            // EPERM: the kernel refuses what the rules would publish (the
            // server's user lacks a right the world has); to a client it
            // is not there, like everything it may not have.
            Errno::NOENT
            | Errno::LOOP
            | Errno::XDEV
            | Errno::NAMETOOLONG
            | Errno::NOTDIR
            | Errno::ACCESS
            | Errno::PERM
            | Errno::NXIO => FsError::NotFound,
            Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::AGAIN | Errno::INTR => {
                FsError::Busy(e.into())
            }
            _ => FsError::Io(e.into()),
        }
    }
}

/// Flags for a lookup that only needs the inode, never its contents: opens
/// nothing (no FIFO can block, no device is touched).
const PATH_ONLY: OFlags = OFlags::PATH.union(OFlags::CLOEXEC);

/// A listing holds the fds of the deepest few directories of its chain,
/// for symlink entries that climb (`../x`); a climb above them walks down
/// again from the root.
pub(crate) const LISTING_HELD: usize = 8;

/// The root of the served tree, held as a directory fd.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    /// The drop box, if uploads are on (`fs::incoming`).
    incoming: std::sync::OnceLock<incoming::Incoming>,
}

/// A published directory opened for listing ([`Root::open_dir`]): its fd,
/// and the physical path that leads to it, from which the symlinks among
/// its entries are resolved.
pub struct OpenDir {
    pub(crate) fd: OwnedFd,
    pub(crate) chain: Chain,
}

impl From<OpenDir> for OwnedFd {
    fn from(dir: OpenDir) -> OwnedFd {
        dir.fd
    }
}

impl std::fmt::Debug for OpenDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDir")
            .field("fd", &self.fd)
            .field("depth", &self.chain.len())
            .finish()
    }
}

impl Root {
    /// Opens `path` as the root. Fails with `ErrorKind::Unsupported` when
    /// the kernel has no `openat2` (confinement cannot be guaranteed: fail
    /// closed), and with the open error otherwise.
    pub fn open(path: &Path) -> io::Result<Root> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::open(path, flags, Mode::empty())?;
        let root = Root {
            dir,
            incoming: std::sync::OnceLock::new(),
        };
        root.probe_openat2()?;
        Ok(root)
    }

    /// Checks that `openat2` with our resolve flags works here. ENOSYS is an
    /// old kernel; EPERM is a seccomp profile that refuses unknown syscalls.
    fn probe_openat2(&self) -> io::Result<()> {
        match rustix::fs::openat2(&self.dir, ".", PATH_ONLY, Mode::empty(), STEP_RESOLVE) {
            Ok(_) => Ok(()),
            Err(Errno::NOSYS | Errno::PERM) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel lacks openat2; refusing to serve unconfined",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Turns uploads on (once): `inc` is the drop box of this tree.
    pub fn set_incoming(&self, inc: incoming::Incoming) {
        let _ = self.incoming.set(inc);
    }

    /// The drop box, if uploads are on.
    pub fn incoming(&self) -> Option<&incoming::Incoming> {
        self.incoming.get()
    }

    /// The root directory fd, e.g. for `fchdir` before `chroot`.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.dir.as_fd()
    }

    /// Facts about the published file or directory at `path`, following
    /// symlinks inside the root. Anything unpublished is `NotFound`.
    pub fn stat(&self, path: &VPath) -> Result<Meta, FsError> {
        match Walk::from_root(self)?.resolve(path.relative())? {
            Found::Dir(meta) | Found::File { meta, .. } => Ok(meta),
        }
    }

    /// Opens a published regular file for reading; `NotFile` when `path`
    /// is a published directory. Never blocks on a FIFO and never opens a
    /// device for reading.
    pub fn open_file(&self, path: &VPath) -> Result<(File, Meta), FsError> {
        let mut walk = Walk::from_root(self)?;
        // The walk looked at the entry through an O_PATH fd, so a device or
        // FIFO is never opened (opening a device can have side effects,
        // e.g. rewinding a tape). The name is opened again from the same
        // checked directory, no symlink allowed: should the entry be
        // swapped in between, O_NONBLOCK keeps a FIFO from blocking, and
        // the fstat of what was opened decides.
        let name = match walk.resolve(path.relative())? {
            Found::File { name, .. } => name,
            Found::Dir(_) => return Err(FsError::NotFile),
        };
        let flags =
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = walk::open_beneath(walk.top(), &name, flags)?;
        let meta = fstat(&fd)?;
        if meta.kind != Kind::File || !meta.is_public() {
            return Err(FsError::NotFound);
        }
        Ok((File::from(fd), meta))
    }

    /// Opens a published directory for listing; `NotDir` when `path` is a
    /// published file.
    pub fn open_dir(&self, path: &VPath) -> Result<(OpenDir, Meta), FsError> {
        let mut walk = Walk::from_root(self)?;
        let meta = match walk.resolve(path.relative())? {
            Found::Dir(meta) => meta,
            Found::File { .. } => return Err(FsError::NotDir),
        };
        // `.` of the fd that was checked: the same directory, no lookup.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = walk::open_beneath(walk.top(), b".", flags)?;
        let mut chain = walk.into_chain();
        chain.trim(LISTING_HELD);
        chain.release_top();
        Ok((OpenDir { fd, chain }, meta))
    }
}

fn fstat(fd: &OwnedFd) -> Result<Meta, FsError> {
    Ok(meta_from_stat(&rustix::fs::fstat(fd)?))
}

/// Temporary trees for tests, removed on drop.
#[cfg(test)]
pub(crate) mod test_tree {
    use std::ffi::OsStr;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    pub(crate) struct TempTree {
        pub(crate) path: PathBuf,
    }

    impl TempTree {
        /// A fresh, empty directory (mode 0755) with a unique name.
        pub(crate) fn new(tag: &str) -> TempTree {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("aftpd-{tag}-{}-{n}", std::process::id());
            let path = std::env::temp_dir().join(name);
            let _ = fs::remove_dir_all(&path);
            fs::create_dir(&path).unwrap();
            let tree = TempTree { path };
            tree.chmod("", 0o755);
            tree
        }

        pub(crate) fn at(&self, rel: impl AsRef<[u8]>) -> PathBuf {
            let rel = rel.as_ref();
            if rel.is_empty() {
                return self.path.clone();
            }
            self.path.join(OsStr::from_bytes(rel))
        }

        pub(crate) fn file(&self, rel: impl AsRef<[u8]>, mode: u32, body: &[u8]) {
            let p = self.at(rel);
            fs::write(&p, body).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }

        pub(crate) fn dir(&self, rel: impl AsRef<[u8]>, mode: u32) {
            let p = self.at(rel);
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }

        pub(crate) fn chmod(&self, rel: impl AsRef<[u8]>, mode: u32) {
            fs::set_permissions(self.at(rel), fs::Permissions::from_mode(mode)).unwrap();
        }

        pub(crate) fn symlink(&self, rel: impl AsRef<[u8]>, target: impl AsRef<Path>) {
            symlink(target, self.at(rel)).unwrap();
        }

        pub(crate) fn fifo(&self, rel: impl AsRef<[u8]>, mode: u32) {
            use rustix::fs::{CWD, FileType, Mode, mknodat};
            mknodat(
                CWD,
                self.at(&rel),
                FileType::Fifo,
                Mode::from_raw_mode(mode),
                0,
            )
            .unwrap();
            self.chmod(rel, mode);
        }
    }

    impl TempTree {
        /// A unix socket (bound, then its listener closed: the inode stays).
        pub(crate) fn socket(&self, rel: impl AsRef<[u8]>, mode: u32) {
            drop(std::os::unix::net::UnixListener::bind(self.at(&rel)).unwrap());
            self.chmod(rel, mode);
        }

        /// A character device (1, 3: what /dev/null is). Only root may
        /// make one: false, and nothing made, otherwise.
        pub(crate) fn device(&self, rel: impl AsRef<[u8]>, mode: u32) -> bool {
            use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
            let made = mknodat(
                CWD,
                self.at(&rel),
                FileType::CharacterDevice,
                Mode::from_raw_mode(mode),
                makedev(1, 3),
            );
            if made.is_err() {
                return false;
            }
            self.chmod(rel, mode);
            true
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests;
