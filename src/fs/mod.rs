//! The served tree: every lookup happens beneath the root directory fd with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..`, absolute
//! symlinks and rename races resolve inside the root, exactly as they would
//! after a chroot. Only public entries are handed out: world-readable
//! regular files, world-readable and -searchable directories.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

pub mod dir;
pub mod exec;
pub mod incoming;

pub use crate::core::meta::{FsError, Kind, Meta};
use crate::core::vpath::VPath;

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
            // ELOOP and EXDEV: a symlink loop, or a magic link refused by
            // RESOLVE_NO_MAGICLINKS; either way nothing to serve. ENOTDIR:
            // an intermediate component is not a directory.
            Errno::NOENT | Errno::LOOP | Errno::XDEV | Errno::NAMETOOLONG | Errno::NOTDIR => {
                FsError::NotFound
            }
            Errno::ACCESS | Errno::PERM => FsError::Denied,
            Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::AGAIN | Errno::INTR => {
                FsError::Busy(e.into())
            }
            _ => FsError::Io(e.into()),
        }
    }
}

/// How often a lookup is retried when `openat2` reports a concurrent rename
/// (EAGAIN under RESOLVE_IN_ROOT) before giving up with `Busy`.
const LOOKUP_RETRIES: usize = 8;

/// Confinement for every lookup: `..` stops at the root, absolute symlinks
/// start at the root, `/proc` magic links are refused.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Flags for a lookup that only needs the inode, never its contents: opens
/// nothing (no FIFO can block, no device is touched).
const PATH_ONLY: OFlags = OFlags::PATH.union(OFlags::CLOEXEC);

/// The root of the served tree, held as a directory fd.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    /// The drop box, if uploads are on (`fs::incoming`).
    incoming: std::sync::OnceLock<incoming::Incoming>,
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
        match rustix::fs::openat2(&self.dir, ".", PATH_ONLY, Mode::empty(), RESOLVE) {
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

    /// Facts about the entry at `path`, following symlinks inside the root.
    /// Every directory on the way must be public (else `Denied`); the entry
    /// itself is not checked: callers decide with [`Meta::is_public`].
    pub fn stat(&self, path: &VPath) -> Result<Meta, FsError> {
        self.check_ancestors(path)?;
        self.stat_entry(path)
    }

    /// [`Root::stat`] for an entry of a directory already found public with
    /// its ancestors (a listing's symlinks): the walk is not done again.
    pub(crate) fn stat_entry(&self, path: &VPath) -> Result<Meta, FsError> {
        let fd = self.lookup(path, PATH_ONLY)?;
        fstat(&fd)
    }

    /// Publicfile's rule for the whole path: a file in a directory that is
    /// not world-readable and -searchable is not published, even where the
    /// server's own user could enter that directory (it owns the tree, or
    /// runs as root without a chroot). One lookup per directory.
    fn check_ancestors(&self, path: &VPath) -> Result<(), FsError> {
        for dir in path.ancestors() {
            match self.stat_entry(&dir)? {
                m if m.kind == Kind::Dir && m.is_public() => {}
                m if m.kind == Kind::Dir => return Err(FsError::Denied),
                _ => return Err(FsError::NotFound),
            }
        }
        Ok(())
    }

    /// Opens a public regular file for reading. Never blocks on a FIFO and
    /// never opens a device for reading.
    pub fn open_file(&self, path: &VPath) -> Result<(File, Meta), FsError> {
        // Look before opening, so that a device or FIFO is never opened
        // (opening a device can have side effects, e.g. rewinding a tape).
        require_public_file(&self.stat(path)?)?;
        // The entry may be swapped between the two lookups: O_NONBLOCK keeps
        // a FIFO from blocking, and the fstat of what was opened decides.
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = self.lookup(path, flags)?;
        let meta = fstat(&fd)?;
        require_public_file(&meta)?;
        Ok((File::from(fd), meta))
    }

    /// Opens a public directory for listing.
    pub fn open_dir(&self, path: &VPath) -> Result<(OwnedFd, Meta), FsError> {
        self.check_ancestors(path)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match self.lookup(path, flags) {
            Ok(fd) => fd,
            // ENOTDIR: either the target is not a directory (NotDir), or a
            // component on the way is not (NotFound). Look again to tell.
            Err(Errno::NOTDIR) => return Err(self.not_dir_reason(path)),
            Err(e) => return Err(e.into()),
        };
        let meta = fstat(&fd)?;
        if !meta.is_public() {
            return Err(FsError::Denied);
        }
        Ok((fd, meta))
    }

    fn not_dir_reason(&self, path: &VPath) -> FsError {
        match self.stat(path) {
            // Exists, so the target itself is the non-directory (if it has
            // just become a directory, report what the open saw).
            Ok(_) => FsError::NotDir,
            Err(e) => e,
        }
    }

    /// `openat2` beneath the root, retried when a concurrent rename makes
    /// the kernel refuse a `..` resolution (EAGAIN) or a signal interrupts.
    fn lookup(&self, path: &VPath, flags: OFlags) -> Result<OwnedFd, Errno> {
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.dir, path.relative(), flags, Mode::empty(), RESOLVE) {
                Err(Errno::AGAIN | Errno::INTR) if tries < LOOKUP_RETRIES => tries += 1,
                result => return result,
            }
        }
    }
}

fn fstat(fd: &OwnedFd) -> Result<Meta, FsError> {
    Ok(meta_from_stat(&rustix::fs::fstat(fd)?))
}

fn require_public_file(meta: &Meta) -> Result<(), FsError> {
    match meta.kind {
        Kind::File if meta.is_public() => Ok(()),
        Kind::File => Err(FsError::Denied),
        Kind::Dir | Kind::Other => Err(FsError::NotFile),
    }
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

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_tree::TempTree;
    use super::*;
    use std::io::Read;

    fn vp(s: &str) -> VPath {
        VPath::resolve(&VPath::root(), s.as_bytes()).unwrap()
    }

    fn read_all(root: &Root, path: &str) -> Result<Vec<u8>, FsError> {
        let (mut file, meta) = root.open_file(&vp(path))?;
        let mut body = Vec::new();
        file.read_to_end(&mut body).unwrap();
        assert_eq!(meta.size, body.len() as u64);
        Ok(body)
    }

    /// A small archive: public and private files and directories, a FIFO,
    /// and symlinks that stay inside, dangle, loop or try to leave.
    fn archive() -> TempTree {
        let t = TempTree::new("fs");
        t.dir("pub", 0o755);
        t.file("pub/readme", 0o644, b"hello\n");
        t.file("pub/secret", 0o600, b"secret\n");
        t.dir("pub/private", 0o700);
        t.file("pub/private/inner", 0o644, b"inner\n");
        t.fifo("pub/fifo", 0o644);
        t.file("pub/.hidden", 0o644, b"hidden\n");
        t.symlink("pub/link", "readme");
        t.symlink("pub/dirlink", "../pub");
        t.symlink("pub/passwd", "/etc/passwd");
        t.symlink("pub/escape", "../../..");
        t.symlink("pub/dangling", "nothere");
        t.symlink("pub/loop", "loop");
        t.symlink("pub/fifolink", "fifo");
        t
    }

    #[test]
    fn open_serves_public_files() {
        let t = archive();
        let root = Root::open(&t.path).unwrap();
        assert_eq!(read_all(&root, "/pub/readme").unwrap(), b"hello\n");
        assert_eq!(read_all(&root, "/pub/link").unwrap(), b"hello\n");
        assert_eq!(read_all(&root, "/pub/dirlink/readme").unwrap(), b"hello\n");
        let meta = root.stat(&vp("/pub/readme")).unwrap();
        assert_eq!(meta.kind, Kind::File);
        assert_eq!(meta.mode, 0o644);
        assert_eq!(meta.size, 6);
        assert_eq!(meta.nlink, 1);
        assert!(meta.is_public());
    }

    #[test]
    fn private_entries_are_denied() {
        // Tests run as root, which the kernel lets read anything: the mode
        // checks must be ours.
        let t = archive();
        let root = Root::open(&t.path).unwrap();
        assert!(matches!(
            read_all(&root, "/pub/secret"),
            Err(FsError::Denied)
        ));
        assert!(matches!(
            root.open_dir(&vp("/pub/private")),
            Err(FsError::Denied)
        ));
        let meta = root.stat(&vp("/pub/secret")).unwrap();
        assert!(!meta.is_public());
        // A world-readable file inside a private directory is not published
        // either: every directory on the way is checked.
        assert!(matches!(
            read_all(&root, "/pub/private/inner"),
            Err(FsError::Denied)
        ));
        assert!(matches!(
            root.stat(&vp("/pub/private/inner")),
            Err(FsError::Denied)
        ));
        assert!(matches!(
            root.stat(&vp("/pub/readme/x")),
            Err(FsError::NotFound)
        ));
    }

    #[test]
    fn fifo_is_not_a_file_and_never_blocks() {
        let t = archive();
        let root = Root::open(&t.path).unwrap();
        assert!(matches!(
            read_all(&root, "/pub/fifo"),
            Err(FsError::NotFile)
        ));
        assert!(matches!(
            read_all(&root, "/pub/fifolink"),
            Err(FsError::NotFile)
        ));
        assert_eq!(root.stat(&vp("/pub/fifo")).unwrap().kind, Kind::Other);
        assert!(matches!(
            root.open_dir(&vp("/pub/fifo")),
            Err(FsError::NotDir)
        ));
    }

    #[test]
    fn kinds_are_checked() {
        let t = archive();
        let root = Root::open(&t.path).unwrap();
        assert!(matches!(read_all(&root, "/pub"), Err(FsError::NotFile)));
        assert!(matches!(
            root.open_dir(&vp("/pub/readme")),
            Err(FsError::NotDir)
        ));
        assert!(matches!(
            root.open_dir(&vp("/pub/link")),
            Err(FsError::NotDir)
        ));
        // A file used as a directory on the way: nothing there.
        assert!(matches!(
            root.open_dir(&vp("/pub/readme/x")),
            Err(FsError::NotFound)
        ));
        assert!(matches!(
            root.stat(&vp("/pub/readme/x")),
            Err(FsError::NotFound)
        ));
        let (_, meta) = root.open_dir(&vp("/pub/dirlink")).unwrap();
        assert_eq!(meta.kind, Kind::Dir);
        let (_, meta) = root.open_dir(&vp("/")).unwrap();
        assert_eq!(meta.mode, 0o755);
    }

    #[test]
    fn broken_links_are_not_found() {
        let t = archive();
        let root = Root::open(&t.path).unwrap();
        for p in ["/pub/dangling", "/pub/loop", "/pub/nothing", "/pub/passwd"] {
            assert!(matches!(root.stat(&vp(p)), Err(FsError::NotFound)), "{p}");
            assert!(matches!(read_all(&root, p), Err(FsError::NotFound)), "{p}");
        }
    }

    #[test]
    fn absolute_link_resolves_inside_the_root() {
        let t = archive();
        t.dir("etc", 0o755);
        t.file("etc/passwd", 0o644, b"inside\n");
        let root = Root::open(&t.path).unwrap();
        assert_eq!(read_all(&root, "/pub/passwd").unwrap(), b"inside\n");
    }

    #[test]
    fn escaping_links_stay_inside() {
        let t = archive();
        let outside = TempTree::new("outside");
        outside.file("secret", 0o644, b"outside\n");
        // Absolute, and relative with more `..` than the depth of the root.
        t.symlink("pub/abs_out", outside.at("secret"));
        let up = "../".repeat(t.path.components().count() + 2);
        let rel = format!("{up}{}", outside.at("secret").display());
        t.symlink("pub/rel_out", &rel);
        let root = Root::open(&t.path).unwrap();
        for p in ["/pub/abs_out", "/pub/rel_out"] {
            assert!(matches!(read_all(&root, p), Err(FsError::NotFound)), "{p}");
        }
        // `../../..` from /pub is the root itself.
        let (_, meta) = root.open_dir(&vp("/pub/escape")).unwrap();
        let top = root.stat(&VPath::root()).unwrap();
        assert_eq!((meta.dev, meta.ino), (top.dev, top.ino));
        // The same absolute path recreated inside the root is what is served.
        let inside = outside.path.strip_prefix("/").unwrap();
        std::fs::create_dir_all(t.path.join(inside)).unwrap();
        t.file(
            inside.join("secret").as_os_str().as_encoded_bytes(),
            0o644,
            b"in\n",
        );
        assert_eq!(read_all(&root, "/pub/abs_out").unwrap(), b"in\n");
        assert_eq!(read_all(&root, "/pub/rel_out").unwrap(), b"in\n");
    }

    #[test]
    fn dotdot_cannot_leave() {
        let t = archive();
        let root = Root::open(&t.path).unwrap();
        let p = VPath::resolve(&vp("/pub"), b"../../../../pub/readme").unwrap();
        assert_eq!(read_all(&root, &p.to_string()).unwrap(), b"hello\n");
    }

    #[test]
    fn odd_names_are_bytes() {
        let t = archive();
        t.file(b"pub/caf\xe9", 0o644, b"x");
        t.file("pub/new\nline", 0o644, b"y");
        let root = Root::open(&t.path).unwrap();
        let p = VPath::resolve(&VPath::root(), b"/pub/caf\xe9").unwrap();
        assert!(root.open_file(&p).is_ok());
        let p = VPath::resolve(&VPath::root(), b"/pub/new\nline").unwrap();
        assert!(root.open_file(&p).is_ok());
    }

    #[test]
    fn root_must_be_a_directory() {
        let t = archive();
        assert!(Root::open(&t.at("pub/readme")).is_err());
        assert!(Root::open(&t.at("missing")).is_err());
    }
}
