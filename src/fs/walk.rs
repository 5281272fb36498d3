//! Resolving a path beneath the root one component at a time, so that the
//! publishing rules apply to the physical path of what is opened, not to
//! the name a client typed.
//!
//! Each step opens one name relative to a directory fd already checked
//! (`O_PATH | O_NOFOLLOW`, `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and
//! `fstat`s what it opened: there is no window between check and use. A
//! symlink is read through the fd that was checked and expanded here (an
//! absolute target restarts at the root); `..` pops the stack of
//! directories walked, never the kernel's `..`, so a directory moved out
//! from under the walk cannot lead above the root. Magic links are never
//! followed: the kernel follows nothing.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::{FsError, Kind, Meta, Root, meta_from_stat};

/// Symlinks expanded in one lookup at most, as the kernel's MAXSYMLINKS.
pub(crate) const MAX_LINKS: u32 = 40;

/// Components opened in one lookup at most, re-walks included: a bound on
/// the work of any one lookup (or listed symlink) whatever the links, as
/// the kernel bounds its own. Four times the depth of the deepest path a
/// command line can name, and far beyond any real archive's links.
pub(crate) const MAX_STEPS: u32 = 8192;

/// Directories a walk holds open at most, the deepest ones. A `..` above
/// them walks down again from the root (see [`Walk::rewalk`]): the cost of
/// a rare case, against a descriptor per level of a deep tree.
pub(crate) const HELD: usize = 64;

/// How each component is opened: the entry itself (a symlink is not
/// followed), the name alone (nothing but a child of the directory).
pub(crate) const STEP_RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);
const STEP_OPEN: OFlags = OFlags::PATH.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// How often an open is retried when the kernel reports a concurrent
/// rename (EAGAIN) or a signal interrupts it, before giving up with `Busy`.
const RETRIES: usize = 8;

/// `openat2` of one name beneath `dir`, retried on EAGAIN and EINTR.
pub(crate) fn open_beneath(
    dir: BorrowedFd<'_>,
    name: &[u8],
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, name, flags, Mode::empty(), STEP_RESOLVE) {
            Err(Errno::AGAIN | Errno::INTR) if tries < RETRIES => tries += 1,
            result => return result,
        }
    }
}

/// A directory on the physical path below the root.
pub(crate) struct Level {
    /// Where its name ends in [`Chain::names`].
    end: usize,
    /// Held while it is among the deepest [`HELD`] levels.
    fd: Option<OwnedFd>,
    meta: Meta,
}

/// The physical path of a directory below the root: its levels, each a
/// name and the facts found when it was walked, the deepest held open.
pub(crate) struct Chain {
    /// Every level's name, one after another.
    names: Vec<u8>,
    levels: Vec<Level>,
    /// Levels from this index on hold their fd (a suffix of `levels`).
    held_from: usize,
    /// The root's facts, checked when the walk that made this chain began.
    root: Meta,
}

/// The chain a walk from the root starts from: nothing below the root.
static EMPTY: Chain = Chain::new(Meta {
    kind: Kind::Dir,
    size: 0,
    mtime: 0,
    mode: 0,
    nlink: 0,
    dev: 0,
    ino: 0,
});

impl Chain {
    const fn new(root: Meta) -> Chain {
        Chain {
            names: Vec::new(),
            levels: Vec::new(),
            held_from: 0,
            root,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    fn name(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.levels[i - 1].end };
        &self.names[start..self.levels[i].end]
    }

    /// (device, inode) of the root and of every level, outermost first.
    pub(crate) fn ids(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        std::iter::once(&self.root)
            .chain(self.levels.iter().map(|l| &l.meta))
            .map(|m| (m.dev, m.ino))
    }

    /// Adds a level; gives up the fd of the shallowest held one if more
    /// than `hold` would be held.
    fn push(&mut self, name: &[u8], fd: OwnedFd, meta: Meta) {
        self.names.extend_from_slice(name);
        self.levels.push(Level {
            end: self.names.len(),
            fd: Some(fd),
            meta,
        });
        self.trim(HELD);
    }

    fn pop(&mut self) {
        self.levels.pop();
        self.names.truncate(self.levels.last().map_or(0, |l| l.end));
        self.held_from = self.held_from.min(self.levels.len());
    }

    /// Keeps the fds of the deepest `hold` levels only.
    pub(crate) fn trim(&mut self, hold: usize) {
        while self.levels.len() - self.held_from > hold {
            self.levels[self.held_from].fd = None;
            self.held_from += 1;
        }
    }

    /// Closes the deepest level's fd: its owner holds another one of the
    /// same directory (a listing's reader), which a walk from this chain
    /// is given as `here`.
    pub(crate) fn release_top(&mut self) {
        if let Some(top) = self.levels.last_mut() {
            top.fd = None;
        }
    }

    /// How many fds the chain holds.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.levels.iter().filter(|l| l.fd.is_some()).count()
    }
}

/// What a walk ended on: always published (anything else is
/// `FsError::NotFound`).
pub(crate) enum Found {
    /// A directory, now the walk's [`Walk::top`].
    Dir(Meta),
    /// A regular file named `name` in the walk's [`Walk::top`].
    File { name: Vec<u8>, meta: Meta },
}

/// One lookup in progress.
pub(crate) struct Walk<'a> {
    root: &'a Root,
    /// Where the walk began: the chain of a directory being listed.
    base: &'a Chain,
    /// The fd of `base`'s deepest level, held by its reader.
    here: Option<BorrowedFd<'a>>,
    /// How many of `base`'s levels are still on the path.
    cut: usize,
    /// The levels walked on top of `base[..cut]`.
    own: Chain,
    links: u32,
    steps: u32,
    /// What is left to resolve: the path, then each symlink target being
    /// expanded (innermost last), each with how far it has been read.
    todo: Vec<(Vec<u8>, usize)>,
}

impl<'a> Walk<'a> {
    /// A walk from the root, which must be a published directory too.
    pub(crate) fn from_root(root: &'a Root) -> Result<Walk<'a>, FsError> {
        let meta = meta_from_stat(&rustix::fs::fstat(&root.dir)?);
        if meta.kind != Kind::Dir || !meta.is_public() {
            return Err(FsError::NotFound);
        }
        Ok(Walk::new(root, &EMPTY, None, meta))
    }

    /// A walk from the directory `base` leads to, held open as `here`.
    pub(crate) fn from_dir(root: &'a Root, base: &'a Chain, here: BorrowedFd<'a>) -> Walk<'a> {
        Walk::new(root, base, Some(here), base.root)
    }

    fn new(
        root: &'a Root,
        base: &'a Chain,
        here: Option<BorrowedFd<'a>>,
        root_meta: Meta,
    ) -> Walk<'a> {
        Walk {
            root,
            base,
            here,
            cut: base.len(),
            own: Chain::new(root_meta),
            links: 0,
            steps: 0,
            todo: Vec::new(),
        }
    }

    /// Resolves `path` (relative to where the walk stands) to a published
    /// file or directory. Everything else, whatever the reason, is
    /// `NotFound`; `Busy` and `Io` are failures of the lookup itself.
    pub(crate) fn resolve(&mut self, path: &[u8]) -> Result<Found, FsError> {
        self.todo.push((path.to_vec(), 0));
        let mut name = Vec::new();
        while self.next_component(&mut name) {
            match &name[..] {
                b"." => {}
                b".." => self.up()?,
                n if n[0] == b'.' => return Err(FsError::NotFound),
                _ => {
                    if let Some(file) = self.step(&name)? {
                        return Ok(file);
                    }
                }
            }
        }
        Ok(Found::Dir(self.top_meta()))
    }

    /// The directory the walk stands in.
    pub(crate) fn top(&self) -> BorrowedFd<'_> {
        // Every level the walk can stand on holds its fd (see `up`).
        self.top_fd().unwrap_or(self.root.dir.as_fd())
    }

    /// The physical path walked, for a walk from the root.
    pub(crate) fn into_chain(self) -> Chain {
        self.own
    }

    fn top_fd(&self) -> Option<BorrowedFd<'_>> {
        if let Some(level) = self.own.levels.last() {
            return level.fd.as_ref().map(AsFd::as_fd);
        }
        if self.cut == 0 {
            return Some(self.root.dir.as_fd());
        }
        if self.cut == self.base.len()
            && let Some(here) = self.here
        {
            return Some(here);
        }
        self.base.levels[self.cut - 1].fd.as_ref().map(AsFd::as_fd)
    }

    fn top_meta(&self) -> Meta {
        match self.own.levels.last() {
            Some(level) => level.meta,
            None if self.cut == 0 => self.own.root,
            None => self.base.levels[self.cut - 1].meta,
        }
    }

    /// Copies the next component into `out`; false when none is left.
    fn next_component(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        while let Some((s, pos)) = self.todo.last_mut() {
            while *pos < s.len() && s[*pos] == b'/' {
                *pos += 1;
            }
            if *pos == s.len() {
                self.todo.pop();
                continue;
            }
            let end = s[*pos..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(s.len(), |i| *pos + i);
            out.extend_from_slice(&s[*pos..end]);
            *pos = end;
            return true;
        }
        false
    }

    /// Whether anything follows the component just taken, even a lone
    /// `/` (as for the kernel, `file/` is not the file).
    fn more(&self) -> bool {
        self.todo.iter().any(|(s, pos)| *pos < s.len())
    }

    fn count_step(&mut self) -> Result<(), FsError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(FsError::NotFound);
        }
        Ok(())
    }

    /// Opens `name` in the current directory and decides: a published
    /// directory is entered, a symlink expanded, a published regular file
    /// that ends the path is the answer; anything else is not there.
    fn step(&mut self, name: &[u8]) -> Result<Option<Found>, FsError> {
        self.count_step()?;
        let fd = open_beneath(self.top(), name, STEP_OPEN)?;
        let st = rustix::fs::fstat(&fd)?;
        let meta = meta_from_stat(&st);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory if meta.is_public() => {
                self.own.push(name, fd, meta);
                Ok(None)
            }
            FileType::RegularFile if meta.is_public() && !self.more() => Ok(Some(Found::File {
                name: name.to_vec(),
                meta,
            })),
            FileType::Symlink => {
                self.expand(&fd)?;
                Ok(None)
            }
            _ => Err(FsError::NotFound),
        }
    }

    /// Queues the target of the symlink `link` (the fd that was checked,
    /// so the target read is that link's).
    fn expand(&mut self, link: &OwnedFd) -> Result<(), FsError> {
        self.links += 1;
        if self.links > MAX_LINKS {
            return Err(FsError::NotFound);
        }
        // A target is at most PATH_MAX - 1 bytes: a full buffer is not one.
        let mut target = Vec::with_capacity(4096);
        rustix::fs::readlinkat_raw(link, c"", rustix::buffer::spare_capacity(&mut target))?;
        if target.is_empty() || target.len() == target.capacity() {
            return Err(FsError::NotFound);
        }
        if target[0] == b'/' {
            self.cut = 0;
            self.own = Chain::new(self.own.root);
        }
        self.todo.push((target, 0));
        Ok(())
    }

    /// `..`: back to the directory walked before this one (the root stays
    /// the root).
    fn up(&mut self) -> Result<(), FsError> {
        if !self.own.levels.is_empty() {
            self.own.pop();
        } else if self.cut > 0 {
            self.cut -= 1;
        }
        if self.top_fd().is_none() {
            self.rewalk()?;
        }
        Ok(())
    }

    /// Walks down again from the root to the current directory, when a
    /// `..` has gone above the directories still held. Each level is
    /// checked as the first time; one that is no longer a published
    /// directory (renamed, replaced by a symlink) ends the lookup.
    fn rewalk(&mut self) -> Result<(), FsError> {
        let mut names = Vec::new();
        let mut ends = Vec::new();
        for i in 0..self.cut {
            names.extend_from_slice(self.base.name(i));
            ends.push(names.len());
        }
        for i in 0..self.own.len() {
            names.extend_from_slice(self.own.name(i));
            ends.push(names.len());
        }
        self.cut = 0;
        self.own = Chain::new(self.own.root);
        let mut start = 0;
        for end in ends {
            let name = &names[start..end];
            start = end;
            self.count_step()?;
            let fd = open_beneath(self.top(), name, STEP_OPEN)?;
            let meta = meta_from_stat(&rustix::fs::fstat(&fd)?);
            if meta.kind != Kind::Dir || !meta.is_public() {
                return Err(FsError::NotFound);
            }
            self.own.push(name, fd, meta);
        }
        Ok(())
    }
}
