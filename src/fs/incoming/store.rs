//! The write side of the drop box (see [`super`]): a new upload's
//! reservation and temporary file, its commit, and its end.

use std::ffi::CString;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::{DropBox, Incoming, LOCK_FILE, ident};
use crate::core::meta::FsError;
use crate::core::session::{NAME_MAX, UploadName, name_allowed};
use crate::core::vpath::VPath;
use crate::fs::Root;

/// Names tried for one STOU.
const UNIQUE_TRIES: usize = 100;

impl Incoming {
    /// Makes a new upload (see `FsRequest::Create`) in the tree's own
    /// drop box: `BadName` for a tree without one.
    pub fn create(
        &self,
        root: &Root,
        name: UploadName,
        peer: Option<SocketAddr>,
    ) -> Result<Upload, FsError> {
        self.own()?.create(root, name, peer)
    }

    /// Makes the upload durable and names it (see `FsRequest::Commit`),
    /// then tells the hook.
    pub fn commit(&self, u: &Upload) -> Result<(), FsError> {
        self.own()?.commit(u)
    }

    /// Gives the upload up (see `FsRequest::Discard`).
    pub fn discard(&self, u: &Upload) {
        u.0.give_up();
    }

    /// `FsError::NoSpace` once the upload's filesystem has less free than
    /// the operator keeps.
    pub fn space(&self, u: &Upload) -> Result<(), FsError> {
        self.own()?.space(u)
    }
}

impl DropBox {
    /// Makes a new upload (see `FsRequest::Create`).
    fn create(
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
        // directory that is not published takes nothing. Below it, the
        // directory is found beneath the drop box's own descriptor: a
        // symlink cannot lead the upload out.
        self.reachable(root)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = self.open_inside(&dir_path, flags)?;
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

    /// Makes the upload durable and names it, then tells the hook.
    fn commit(&self, u: &Upload) -> Result<(), FsError> {
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
            // Relative to ROOT, where the hook runs: a host's tree is a
            // directory of ROOT.
            let path = match self.settings.tree.as_slice() {
                [] => i.path.relative().to_vec(),
                tree => [tree, b"/", i.path.relative()].concat(),
            };
            hook.send(&path, i.peer, size, i.name.as_bytes());
        }
        Ok(())
    }

    /// `NoSpace` once the upload's filesystem has less free than the
    /// operator keeps.
    fn space(&self, u: &Upload) -> Result<(), FsError> {
        space(u.0.file.as_fd(), self.settings.min_free)
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::core::meta::Kind;
    use crate::core::session::{FsAnswer, FsRequest};
    use crate::fs::exec;
    use crate::fs::incoming::Settings;
    use crate::fs::test_tree::TempTree;

    fn vp(s: &str) -> VPath {
        VPath::resolve(&VPath::root(), s.as_bytes()).unwrap()
    }

    /// A tree with a drop box `in` (0733) and `in/sub`, a public `pub`.
    fn tree() -> (TempTree, Arc<Root>) {
        let t = TempTree::new("incoming");
        t.dir("pub", 0o755);
        t.file("pub/readme", 0o644, b"public\n");
        t.dir("in", 0o733);
        t.dir("in/sub", 0o700);
        let root = Root::open(&t.path).unwrap();
        let settings = Settings {
            dir: vp("/in"),
            min_free: 0,
            mode: 0o640,
            tree: Vec::new(),
        };
        let inc = Incoming::open(&root, settings, None).unwrap();
        root.set_incoming(inc);
        (t, Arc::new(root))
    }

    fn inc(root: &Root) -> &Incoming {
        root.incoming().unwrap()
    }

    fn named(root: &Root, path: &str) -> Result<Upload, FsError> {
        inc(root).create(root, UploadName::Named(vp(path)), None)
    }

    fn write(u: &Upload, body: &[u8]) {
        (&*u.file()).write_all(body).unwrap();
    }

    /// The entries of a directory, the lock file left out.
    fn entries(t: &TempTree, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(t.at(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != LOCK_FILE)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn stored_only_at_the_commit_never_replacing() {
        let (t, root) = tree();
        let u = named(&root, "/in/a").unwrap();
        assert_eq!(u.path().as_bytes(), b"/in/a");
        write(&u, b"hello");
        assert_eq!(entries(&t, "in"), ["sub"], "named before the commit");
        // Reserved meanwhile.
        assert!(matches!(named(&root, "/in/a"), Err(FsError::Exists)));
        inc(&root).commit(&u).unwrap();
        assert_eq!(std::fs::read(t.at("in/a")).unwrap(), b"hello");
        let mode = std::fs::metadata(t.at("in/a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
        drop(u);
        // Taken for good.
        assert!(matches!(named(&root, "/in/a"), Err(FsError::Exists)));
        // A file an operator put there meanwhile is never replaced.
        let v = named(&root, "/in/b").unwrap();
        write(&v, b"mine");
        t.file("in/b", 0o644, b"the operator's");
        assert!(matches!(inc(&root).commit(&v), Err(FsError::Exists)));
        assert_eq!(std::fs::read(t.at("in/b")).unwrap(), b"the operator's");
        inc(&root).discard(&v);
        assert_eq!(std::fs::read(t.at("in/b")).unwrap(), b"the operator's");
        assert_eq!(entries(&t, "in"), ["a", "b", "sub"]);
    }

    #[test]
    fn a_discarded_upload_leaves_nothing() {
        let (t, root) = tree();
        let u = named(&root, "/in/sub/x").unwrap();
        write(&u, b"partial");
        inc(&root).discard(&u);
        assert!(inc(&root).commit(&u).is_err(), "committed after a discard");
        drop(u);
        assert_eq!(entries(&t, "in/sub"), Vec::<String>::new());
        // The name is free again.
        let u = named(&root, "/in/sub/x").unwrap();
        inc(&root).commit(&u).unwrap();
        // A discard after the commit (its session gave up) undoes it.
        inc(&root).discard(&u);
        assert_eq!(entries(&t, "in/sub"), Vec::<String>::new());
    }

    #[test]
    fn hidden_temporary_names_where_unnamed_files_cannot_be() {
        let (t, root) = tree();
        let _ = inc(&root).own.as_ref().unwrap().unnamed.set(false);
        let u = named(&root, "/in/t").unwrap();
        write(&u, b"data");
        let temps = entries(&t, "in");
        assert_eq!(temps.len(), 2, "{temps:?}");
        assert!(
            temps.iter().any(|n| n.starts_with(".aftpd-upload.")),
            "{temps:?}"
        );
        inc(&root).commit(&u).unwrap();
        assert_eq!(entries(&t, "in"), ["sub", "t"]);
        // Given up, or just dropped: the temporary name goes.
        let v = named(&root, "/in/v").unwrap();
        inc(&root).discard(&v);
        let w = named(&root, "/in/w").unwrap();
        drop((v, w));
        assert_eq!(entries(&t, "in"), ["sub", "t"]);
    }

    #[test]
    fn only_in_the_drop_box() {
        let (t, root) = tree();
        t.symlink("in/out", "../pub");
        t.symlink("in/abs", "/pub");
        for p in ["/pub/x", "/x"] {
            assert!(matches!(named(&root, p), Err(FsError::BadName)), "{p}");
        }
        // A link out of the drop box leads nowhere (RESOLVE_BENEATH).
        for p in ["/in/out/x", "/in/abs/x"] {
            assert!(matches!(named(&root, p), Err(FsError::NotFound)), "{p}");
        }
        assert!(matches!(named(&root, "/in/none/x"), Err(FsError::NotFound)));
        assert!(matches!(
            named(&root, "/in/readme/x"),
            Err(FsError::NotFound)
        ));
        assert_eq!(entries(&t, "pub"), ["readme"]);
    }

    #[test]
    fn unique_names() {
        let (t, root) = tree();
        let unique = |base: Option<&str>| {
            let name = UploadName::Unique {
                dir: vp("/in"),
                base: base.map(|b| b.as_bytes().to_vec()),
            };
            let u = inc(&root).create(&root, name, None).unwrap();
            inc(&root).commit(&u).unwrap();
            u.path().name().to_vec()
        };
        assert_eq!(unique(Some("r")), b"r");
        assert_eq!(unique(Some("r")), b"r.1");
        assert_eq!(unique(Some("r")), b"r.2");
        let made = String::from_utf8(unique(None)).unwrap();
        assert!(made.starts_with("upload."), "{made}");
        assert_eq!(entries(&t, "in").len(), 5);
    }

    #[test]
    fn space_below_the_minimum_is_refused() {
        let (_t, root) = tree();
        let u = named(&root, "/in/s").unwrap();
        assert!(inc(&root).space(&u).is_ok());
        let huge = Settings {
            dir: vp("/in"),
            min_free: u64::MAX,
            mode: 0o600,
            tree: Vec::new(),
        };
        let greedy = Incoming::open(&root, huge, None).unwrap();
        assert!(matches!(greedy.space(&u), Err(FsError::NoSpace)));
        assert!(matches!(
            greedy.create(&root, UploadName::Named(vp("/in/t")), None),
            Err(FsError::NoSpace)
        ));
    }

    /// What is in the drop box is not published, by its path or through
    /// symlinks; its directories can be entered and list empty.
    #[test]
    fn write_only() {
        let (t, root) = tree();
        let u = named(&root, "/in/up").unwrap();
        write(&u, b"SECRET");
        inc(&root).commit(&u).unwrap();
        t.chmod("in/up", 0o644);
        t.symlink("pub/rel", "../in/up");
        t.symlink("pub/abs", "/in/up");
        t.symlink("pub/chain", "rel");
        t.symlink("pub/dir", "../in");
        t.symlink("pub/ok", "readme");
        let ask = |r| exec::execute(&root, r);
        for p in [
            "/in/up",
            "/pub/rel",
            "/pub/abs",
            "/pub/chain",
            "/pub/dir/up",
        ] {
            match ask(FsRequest::OpenFile(vp(p))) {
                FsAnswer::File(Err(FsError::NotFound)) => {}
                _ => panic!("{p} served"),
            }
            match ask(FsRequest::Stat(vp(p))) {
                FsAnswer::Stat(Err(FsError::NotFound)) => {}
                _ => panic!("{p} reported"),
            }
        }
        assert!(matches!(
            ask(FsRequest::OpenFile(vp("/pub/ok"))),
            FsAnswer::File(Ok(_))
        ));
        // The drop box (0733) and its subdirectory (0700) can be entered.
        for p in ["/in", "/in/sub"] {
            match ask(FsRequest::Stat(vp(p))) {
                FsAnswer::Stat(Ok(m)) => assert_eq!(m.kind, Kind::Dir, "{p}"),
                _ => panic!("{p} cannot be entered"),
            }
        }
        // Listed empty, by its name or through a link (once public).
        t.chmod("in", 0o755);
        for p in ["/in", "/pub/dir"] {
            let FsAnswer::List(Ok(crate::core::session::Listed::Dir(mut d))) =
                ask(FsRequest::OpenList(vp(p)))
            else {
                panic!("{p} not listed");
            };
            let mut e = crate::core::meta::Entries::default();
            assert!(d.read_batch(&mut e).unwrap());
            assert!(e.is_empty(), "{p} listed {e:?}");
        }
        // The public directory lists its links to the box's directories,
        // not those to its files.
        let FsAnswer::List(Ok(crate::core::session::Listed::Dir(mut d))) =
            ask(FsRequest::OpenList(vp("/pub")))
        else {
            panic!("/pub not listed");
        };
        let mut e = crate::core::meta::Entries::default();
        while !d.read_batch(&mut e).unwrap() {}
        let mut names: Vec<&[u8]> = e.iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(names, [&b"dir"[..], b"ok", b"readme"]);
    }

    #[test]
    fn lock_offsets_differ_by_directory_and_name() {
        let a = lock_offset((1, 2), b"x");
        assert!(a >= 0);
        assert_ne!(a, lock_offset((1, 3), b"x"));
        assert_ne!(a, lock_offset((1, 2), b"y"));
        assert_ne!(fnv(&[b"ab", b"c"]), fnv(&[b"a", b"bc"]));
    }
}
