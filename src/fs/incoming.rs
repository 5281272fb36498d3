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

use std::ffi::CString;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::{PATH_ONLY, RESOLVE, Root, fstat};
use crate::core::config::within;
use crate::core::meta::{FsError, Kind, Meta};
use crate::core::session::{NAME_MAX, UploadName, name_allowed};
use crate::core::vpath::VPath;
use crate::hook::Hook;

/// The lock file whose bytes reserve the names being uploaded, in the
/// incoming directory (hidden, so never listed or served).
const LOCK_FILE: &str = ".aftpd-uploads";
/// How far `..` is followed up when looking for the incoming directory.
const MAX_DEPTH: usize = 256;
/// Symlinks followed when finding the physical directory of a file.
const MAX_LINKS: usize = 40;
/// Names tried for one STOU.
const UNIQUE_TRIES: usize = 100;

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

    // ---- writing ----

    /// Makes a new upload (see `FsRequest::Create`).
    pub fn create(
        &self,
        root: &Root,
        name: UploadName,
        peer: Option<SocketAddr>,
    ) -> Result<Upload, FsError> {
        let (dir_path, candidates) = match name {
            UploadName::Named(p) => {
                let name = p.name().to_vec();
                (p.parent(), Candidates::One(Some(name)))
            }
            UploadName::Unique { dir, base } => (dir, Candidates::Unique { base, tried: 0 }),
        };
        if !self.covers(&dir_path) {
            return Err(FsError::BadName);
        }
        // The way there is checked as for any lookup: a drop box under a
        // directory that is not published takes nothing.
        root.stat(&self.settings.dir)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = root.lookup(&dir_path, flags)?;
        if !self.inside(dir.as_fd())? {
            return Err(FsError::BadName);
        }
        self.check_space(dir.as_fd())?;
        let dir_id = ident(&dir).map_err(FsError::Io)?;
        let mut candidates = candidates;
        let (name, lock) = loop {
            let Some(name) = candidates.next() else {
                return Err(FsError::Exists);
            };
            if !name_allowed(&name) {
                return Err(FsError::BadName);
            }
            match self.reserve(dir.as_fd(), dir_id, &name) {
                Ok(lock) => break (name, lock),
                Err(FsError::Exists) if candidates.more() => continue,
                Err(e) => return Err(e),
            }
        };
        let cname = CString::new(name.clone()).map_err(|_| FsError::BadName)?;
        let (file, temp) = self.temporary(dir.as_fd(), &name)?;
        let path = dir_path.child(&name).ok_or(FsError::BadName)?;
        Ok(Upload(Arc::new(Inner {
            file: Arc::new(file),
            dir,
            name: cname,
            path,
            temp,
            _lock: lock,
            state: Mutex::new(State::Open),
            peer,
            min_free: self.settings.min_free,
        })))
    }

    /// `FsError::NoSpace` when the filesystem of `fd` has less free than
    /// the operator keeps.
    fn check_space(&self, fd: BorrowedFd<'_>) -> Result<(), FsError> {
        space(fd, self.settings.min_free)
    }

    /// Reserves `name` in the directory `dir` (device and inode `dir_id`):
    /// the lock that holds it, or `Exists` when the name is taken or being
    /// uploaded.
    fn reserve(
        &self,
        dir: BorrowedFd<'_>,
        dir_id: (u64, u64),
        name: &[u8],
    ) -> Result<OwnedFd, FsError> {
        // A name taken already is refused before anything is touched.
        absent(dir, name)?;
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let lock = rustix::fs::openat2(
            &self.fd,
            LOCK_FILE,
            flags,
            Mode::from_raw_mode(0o600),
            ResolveFlags::BENEATH,
        )?;
        if !lock_byte(&lock, lock_offset(dir_id, name))? {
            return Err(FsError::Exists);
        }
        // Held: no other session can be storing this name now, and one
        // that stored it has linked it already.
        absent(dir, name)?;
        Ok(lock)
    }

    /// The file the data goes to: unnamed where that works, else a hidden
    /// temporary name.
    fn temporary(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Result<(File, Temp), FsError> {
        let mode = Mode::from_raw_mode(self.settings.mode);
        if *self.unnamed.get_or_init(|| probe_unnamed(dir)) {
            match rustix::fs::openat2(
                dir,
                ".",
                OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
                mode,
                ResolveFlags::BENEATH,
            ) {
                Ok(fd) => {
                    // Exactly the mode asked for, whatever the umask.
                    rustix::fs::fchmod(&fd, mode)?;
                    return Ok((File::from(fd), Temp::Unnamed));
                }
                Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {}
                Err(e) => return Err(write_error(e)),
            }
        }
        let temp = temp_name(name);
        let fd = rustix::fs::openat2(
            dir,
            temp.as_c_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            mode,
            ResolveFlags::BENEATH,
        )
        .map_err(write_error)?;
        rustix::fs::fchmod(&fd, mode)?;
        Ok((File::from(fd), Temp::Named(temp)))
    }

    /// Makes the upload durable and names it (see `FsRequest::Commit`),
    /// then tells the hook.
    pub fn commit(&self, u: &Upload) -> Result<(), FsError> {
        let i = &u.0;
        rustix::fs::fsync(i.file.as_fd()).map_err(write_error)?;
        let linked = {
            let mut state = lock(&i.state);
            if *state != State::Open {
                return Err(FsError::Io(std::io::Error::other("upload given up")));
            }
            let r = match &i.temp {
                Temp::Unnamed => rustix::fs::linkat(
                    i.file.as_fd(),
                    c"",
                    &i.dir,
                    i.name.as_c_str(),
                    AtFlags::EMPTY_PATH,
                ),
                Temp::Named(t) => rustix::fs::linkat(
                    &i.dir,
                    t.as_c_str(),
                    &i.dir,
                    i.name.as_c_str(),
                    AtFlags::empty(),
                ),
            };
            match r {
                Ok(()) => {
                    *state = State::Linked;
                    if let Temp::Named(t) = &i.temp {
                        let _ = rustix::fs::unlinkat(&i.dir, t.as_c_str(), AtFlags::empty());
                    }
                    Ok(())
                }
                Err(Errno::EXIST) => Err(FsError::Exists),
                Err(e) => Err(write_error(e)),
            }
        };
        linked?;
        // The name is durable once the directory is.
        rustix::fs::fsync(&i.dir).map_err(write_error)?;
        if let Some(hook) = &self.hook {
            let size = rustix::fs::fstat(i.file.as_fd()).map_or(0, |s| s.st_size as u64);
            hook.send(i.path.relative(), i.peer, size, i.name.as_bytes());
        }
        Ok(())
    }

    /// Gives the upload up (see `FsRequest::Discard`).
    pub fn discard(&self, u: &Upload) {
        u.0.give_up();
    }

    /// `FsError::NoSpace` once the upload's filesystem has less free than
    /// the operator keeps.
    pub fn space(&self, u: &Upload) -> Result<(), FsError> {
        space(u.0.file.as_fd(), u.0.min_free)
    }
}

/// An upload in progress (the `Upload` handle of `fs::exec::Real`).
#[derive(Clone)]
pub struct Upload(Arc<Inner>);

impl Upload {
    /// The file the data is written to.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.0.file)
    }

    /// The path it will have.
    pub fn path(&self) -> &VPath {
        &self.0.path
    }
}

struct Inner {
    file: Arc<File>,
    /// The directory it goes to (open for reading: it is fsync'ed).
    dir: OwnedFd,
    name: CString,
    path: VPath,
    temp: Temp,
    /// The reservation of `name`: released when this closes.
    _lock: OwnedFd,
    state: Mutex<State>,
    peer: Option<SocketAddr>,
    min_free: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Being written.
    Open,
    /// Under its name.
    Linked,
    /// Given up: never to be linked.
    Abandoned,
}

/// Where the data is until the commit.
enum Temp {
    /// An `O_TMPFILE`: gone with its last descriptor.
    Unnamed,
    /// A hidden name in the same directory.
    Named(CString),
}

impl Inner {
    /// Nothing of the upload may remain: not the temporary name, and not
    /// the final one should a commit have got there (its session gave up
    /// on it: the client was told it failed).
    fn give_up(&self) {
        let mut state = lock(&self.state);
        match *state {
            State::Open => {
                if let Temp::Named(t) = &self.temp {
                    let _ = rustix::fs::unlinkat(&self.dir, t.as_c_str(), AtFlags::empty());
                }
            }
            State::Linked => {
                // Only what this upload linked: compare inodes.
                let ours = ident(&self.file.as_fd()).ok();
                let there = rustix::fs::statx(
                    &self.dir,
                    self.name.as_c_str(),
                    AtFlags::SYMLINK_NOFOLLOW,
                    rustix::fs::StatxFlags::INO,
                )
                .ok()
                .map(|s| {
                    (
                        rustix::fs::makedev(s.stx_dev_major, s.stx_dev_minor),
                        s.stx_ino,
                    )
                });
                if ours.is_some() && ours == there {
                    let _ = rustix::fs::unlinkat(&self.dir, self.name.as_c_str(), AtFlags::empty());
                }
            }
            State::Abandoned => {}
        }
        *state = State::Abandoned;
    }
}

impl Drop for Inner {
    /// The last holder let go: a hidden temporary name must not stay.
    fn drop(&mut self) {
        if let Temp::Named(t) = &self.temp
            && *lock(&self.state) == State::Open
        {
            let _ = rustix::fs::unlinkat(&self.dir, t.as_c_str(), AtFlags::empty());
        }
    }
}

/// The names to try.
enum Candidates {
    One(Option<Vec<u8>>),
    /// STOU: the client's base, then `base.1`, `base.2`, ...; without a
    /// base, names made of the time, the process and a counter.
    Unique {
        base: Option<Vec<u8>>,
        tried: usize,
    },
}

impl Candidates {
    fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Candidates::One(n) => n.take(),
            Candidates::Unique { base, tried } => {
                if *tried >= UNIQUE_TRIES {
                    return None;
                }
                let n = *tried;
                *tried += 1;
                Some(match base {
                    Some(b) if n == 0 => b.clone(),
                    Some(b) => {
                        let mut name = b.clone();
                        name.extend_from_slice(format!(".{n}").as_bytes());
                        name.truncate(NAME_MAX);
                        name
                    }
                    None => made_up_name().into_bytes(),
                })
            }
        }
    }

    fn more(&self) -> bool {
        match self {
            Candidates::One(n) => n.is_some(),
            Candidates::Unique { tried, .. } => *tried < UNIQUE_TRIES,
        }
    }
}

/// A name for STOU without a base: `upload.SECONDS.PID.N`.
fn made_up_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("upload.{secs}.{}.{n}", std::process::id())
}

/// A hidden temporary name for the upload of `name` (when the data cannot
/// go to an unnamed file).
fn temp_name(name: &[u8]) -> CString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let s = format!(
        ".aftpd-upload.{:016x}.{}.{n}",
        fnv(&[name]),
        std::process::id()
    );
    // Built from hex digits and numbers: no NUL.
    CString::new(s).unwrap_or_default()
}

/// Whether an unnamed file can be made in `dir` and linked there: makes
/// one, links it under a hidden probe name, removes that.
fn probe_unnamed(dir: BorrowedFd<'_>) -> bool {
    let Ok(fd) = rustix::fs::openat2(
        dir,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
        ResolveFlags::BENEATH,
    ) else {
        return false;
    };
    let probe = temp_name(b"probe");
    let linked = rustix::fs::linkat(&fd, c"", dir, probe.as_c_str(), AtFlags::EMPTY_PATH);
    if linked.is_ok() {
        let _ = rustix::fs::unlinkat(dir, probe.as_c_str(), AtFlags::empty());
    }
    linked.is_ok()
}

/// `NoSpace` when the filesystem of `fd` has less than `min_free` bytes
/// free for unprivileged users.
fn space(fd: BorrowedFd<'_>, min_free: u64) -> Result<(), FsError> {
    if min_free == 0 {
        return Ok(());
    }
    let st = rustix::fs::fstatvfs(fd)?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < min_free {
        return Err(FsError::NoSpace);
    }
    Ok(())
}

/// Errors of writing: no space is `NoSpace`, a name the filesystem
/// refuses is `BadName`.
fn write_error(e: Errno) -> FsError {
    match e {
        Errno::NOSPC | Errno::DQUOT => FsError::NoSpace,
        Errno::NAMETOOLONG | Errno::ILSEQ => FsError::BadName,
        e => e.into(),
    }
}

/// `Ok` when `dir` has no entry `name` (of any kind), else `Exists` (or
/// `BadName` for a name the filesystem cannot have).
fn absent(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), FsError> {
    match rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        rustix::fs::StatxFlags::TYPE,
    ) {
        Ok(_) => Err(FsError::Exists),
        Err(Errno::NOENT) => Ok(()),
        Err(Errno::NAMETOOLONG | Errno::INVAL | Errno::ILSEQ) => Err(FsError::BadName),
        Err(e) => Err(e.into()),
    }
}

/// (device, inode) of an open file.
fn ident(fd: &impl AsFd) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// The byte of the lock file that stands for `name` in directory
/// `dir_id`: a hash, kept to 62 bits (a positive `off_t` with room).
fn lock_offset(dir_id: (u64, u64), name: &[u8]) -> i64 {
    let h = fnv(&[&dir_id.0.to_le_bytes(), &dir_id.1.to_le_bytes(), name]);
    (h >> 2) as i64
}

/// FNV-1a, 64 bits: the same in every process of every build.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Takes an open-file-description write lock on byte `offset` of `fd`
/// without waiting: `Ok(false)` when someone holds it.
fn lock_byte(fd: &OwnedFd, offset: i64) -> Result<bool, FsError> {
    // SAFETY: `flock` is a plain C struct for which all zeroes is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = offset;
    fl.l_len = 1;
    loop {
        // SAFETY: F_OFD_SETLK reads the one `flock` passed, which lives
        // for the call; `fd` is open.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        if r == 0 {
            return Ok(true);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => return Ok(false),
            Some(libc::EINTR) => {}
            Some(e) => return Err(Errno::from_raw_os_error(e).into()),
            None => return Err(FsError::Io(std::io::Error::other("fcntl failed"))),
        }
    }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
