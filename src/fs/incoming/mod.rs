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
//! rule applies to the physical path of what is opened: the walk's chain
//! of directories, see `fs::walk`). An operator publishes an upload by
//! moving it out. Paths in the drop box are resolved beneath its own
//! descriptor (`RESOLVE_BENEATH`): nothing there leads out of it.
//!
//! Virtual hosts (`--vhosts` with `--host-incoming`, module [`hosts`]):
//! each host's tree may have a drop box of its own. The write-only rule
//! holds for every box of the process in every tree (a tree that reaches
//! another host's box, through a symlink or because it holds it, sees its
//! files as absent too); uploads go only into the tree's own box.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::walk::{Chain, Found, Walk, open_beneath};
use super::{OpenDir, PATH_ONLY, Root, fstat};
use crate::core::config::within;
use crate::core::meta::{FsError, Kind, Meta};
use crate::core::vpath::VPath;
use crate::hook::Hook;

pub mod hosts;
mod store;

pub use store::Upload;

/// The lock file whose bytes reserve the names being uploaded, in the
/// incoming directory (hidden, so never listed or served).
const LOCK_FILE: &str = ".aftpd-uploads";
/// How a path in the drop box is resolved beneath its descriptor: its
/// own symlinks may be followed while they stay inside it.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);
/// How often such a lookup is retried on EAGAIN and EINTR.
const RETRIES: usize = 8;

/// `--incoming` and the options the filesystem applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The incoming directory, beneath the root.
    pub dir: VPath,
    /// Bytes an upload must leave free on the filesystem.
    pub min_free: u64,
    /// The permission bits of stored files.
    pub mode: u32,
    /// The tree's directory beneath ROOT (a virtual host's `NAME`), for
    /// the path the hook is given, relative to ROOT; empty for ROOT.
    pub tree: Vec<u8>,
}

/// (device, inode) of a directory.
pub type DirId = (u64, u64);

/// What a served tree knows of the drop boxes: its own, if it takes
/// uploads, and every box of the process, whose files it never serves.
pub struct Incoming {
    own: Option<DropBox>,
    /// Every drop box of the process (the tree's own among them).
    sealed: Arc<[DirId]>,
}

/// One incoming directory.
struct DropBox {
    settings: Settings,
    /// The directory itself (`O_PATH`): the base of every lookup in the
    /// drop box, the sandbox's write rule, the lock file's place.
    fd: OwnedFd,
    /// (device, inode) of the incoming directory.
    id: (u64, u64),
    /// Whether unnamed files can be made and linked here (probed at the
    /// first upload, as the user that serves).
    unnamed: OnceLock<bool>,
    hook: Option<Arc<Hook>>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("settings", &self.own.as_ref().map(|b| &b.settings))
            .field("id", &self.own.as_ref().map(|b| b.id))
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// The incoming directory `settings.dir` of `root`: a directory (not
    /// a symlink) in a published directory. `hook` runs for every stored
    /// upload.
    pub fn open(
        root: &Root,
        settings: Settings,
        hook: Option<Arc<Hook>>,
    ) -> std::io::Result<Incoming> {
        let own = DropBox::open(root, settings, hook)?;
        Ok(Incoming {
            sealed: Arc::new([own.id]),
            own: Some(own),
        })
    }

    /// For a tree without a drop box of its own: the boxes `sealed` of
    /// other trees stay write-only in it.
    pub fn none(sealed: Arc<[DirId]>) -> Incoming {
        Incoming { own: None, sealed }
    }

    /// This box, with every box of the process (`sealed`, which should
    /// hold it) write-only in its tree.
    pub fn sealing(self, sealed: Arc<[DirId]>) -> Incoming {
        Incoming { sealed, ..self }
    }

    /// (device, inode) of the tree's own drop box.
    pub fn id(&self) -> Option<DirId> {
        self.own.as_ref().map(|b| b.id)
    }

    /// The incoming directory, for the sandbox's write rule; `None` for a
    /// tree that takes no uploads.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.own.as_ref().map(|b| b.fd.as_fd())
    }

    /// The settings of the tree's own drop box.
    pub fn settings(&self) -> Option<&Settings> {
        self.own.as_ref().map(|b| &b.settings)
    }

    /// Whether the virtual path `path` lies in the tree's own drop box.
    pub fn covers(&self, path: &VPath) -> bool {
        self.own.as_ref().is_some_and(|b| b.covers(path))
    }

    /// The tree's own box, for what only it can do.
    fn own(&self) -> Result<&DropBox, FsError> {
        self.own.as_ref().ok_or(FsError::BadName)
    }

    /// The facts of `path`, which lies in the drop box: its directories
    /// can be entered whatever their mode; nothing else exists.
    pub fn stat(&self, root: &Root, path: &VPath) -> Result<Meta, FsError> {
        let own = self.own().map_err(|_| FsError::NotFound)?;
        own.stat(root, path)
    }

    /// A listing of `path`, a directory in the drop box: empty.
    pub(crate) fn list(&self, root: &Arc<Root>, path: &VPath) -> Result<OpenDir, FsError> {
        let own = self.own().map_err(|_| FsError::NotFound)?;
        own.list(root, path)
    }

    /// Whether `path`, outside the drop box by name, physically leads into
    /// a drop box (through symlinks): what the walk to it passes through,
    /// or ends on, is one. `Ok(None)` when it is not published at all.
    pub(crate) fn reached(
        &self,
        root: &Root,
        path: &VPath,
    ) -> Result<Option<(Found, bool)>, FsError> {
        let mut walk = Walk::from_root(root)?;
        let found = match walk.resolve(path.relative()) {
            Ok(f) => f,
            Err(FsError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let inside = self.holds(&walk.into_chain());
        Ok(Some((found, inside)))
    }

    /// Whether the physical path `chain` passes through a drop box (this
    /// tree's or another's).
    pub(crate) fn holds(&self, chain: &Chain) -> bool {
        chain.ids().any(|id| self.sealed.contains(&id))
    }
}

impl DropBox {
    fn open(root: &Root, settings: Settings, hook: Option<Arc<Hook>>) -> std::io::Result<DropBox> {
        let dir = &settings.dir;
        let fail = |why: &dyn std::fmt::Display| {
            std::io::Error::other(format!(
                "{}: {why}",
                String::from_utf8_lossy(dir.relative())
            ))
        };
        let mut walk = Walk::from_root(root).map_err(|e| fail(&e_text(&e)))?;
        match walk.resolve(dir.parent().relative()) {
            Ok(Found::Dir(_)) => {}
            _ => return Err(fail(&"the directory it is in is not published")),
        }
        let flags = PATH_ONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
        let fd = open_beneath(walk.top(), dir.name(), flags)
            .map_err(|e| fail(&std::io::Error::from(e)))?;
        let id = ident(&fd)?;
        Ok(DropBox {
            settings,
            fd,
            id,
            unnamed: OnceLock::new(),
            hook,
        })
    }

    /// Whether the virtual path `path` lies in the drop box.
    fn covers(&self, path: &VPath) -> bool {
        within(path, &self.settings.dir)
    }

    /// `path` (which [`Incoming::covers`]) relative to the drop box: `.`
    /// for the box itself.
    fn inner<'p>(&self, path: &'p VPath) -> &'p [u8] {
        let skip = self.settings.dir.as_bytes().len() + 1;
        match path.as_bytes().get(skip..) {
            Some(rest) if !rest.is_empty() => rest,
            _ => b".",
        }
    }

    /// Opens `path` (in the drop box) beneath the drop box's descriptor.
    fn open_inside(&self, path: &VPath, flags: OFlags) -> Result<OwnedFd, FsError> {
        let rel = self.inner(path);
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), BENEATH) {
                Err(Errno::AGAIN | Errno::INTR) if tries < RETRIES => tries += 1,
                r => return r.map_err(FsError::from),
            }
        }
    }

    /// Whether the way to the drop box is published (its directory's
    /// directories, as for any path): a box under an unpublished
    /// directory is neither entered nor written.
    fn reachable(&self, root: &Root) -> Result<(), FsError> {
        match root.stat(&self.settings.dir.parent())? {
            m if m.kind == Kind::Dir => Ok(()),
            _ => Err(FsError::NotFound),
        }
    }

    // ---- reading: the write-only rule ----

    /// The facts of `path`, which lies in the drop box: its directories
    /// can be entered whatever their mode; nothing else exists.
    fn stat(&self, root: &Root, path: &VPath) -> Result<Meta, FsError> {
        self.reachable(root)?;
        let fd = self.open_inside(path, PATH_ONLY | OFlags::DIRECTORY)?;
        let meta = fstat(&fd)?;
        if meta.kind != Kind::Dir {
            return Err(FsError::NotFound);
        }
        Ok(meta)
    }

    /// A listing of `path`, a directory in the drop box: empty.
    fn list(&self, root: &Arc<Root>, path: &VPath) -> Result<OpenDir, FsError> {
        self.reachable(root)?;
        let fd = self.open_inside(path, PATH_ONLY | OFlags::DIRECTORY)?;
        let chain = Walk::from_root(root)?.into_chain();
        Ok(OpenDir { fd, chain })
    }
}

/// The text of an error of the walk, for a message at start.
fn e_text(e: &FsError) -> String {
    match e {
        FsError::Busy(e) | FsError::Io(e) => e.to_string(),
        _ => "ROOT is not a published directory".to_owned(),
    }
}

/// (device, inode) of an open file.
fn ident(fd: &impl AsFd) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}
