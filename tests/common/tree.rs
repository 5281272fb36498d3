//! The served test tree: made fresh for each test in its own directory
//! under /tmp (mode 0755, so uid 65534 can traverse it), removed on drop.
//!
//! ```text
//! BASE/                          0755
//!   outside-secret.txt           the canary, OUTSIDE the root
//!   ftpd.log                     the servers' standard error
//!   root/                        the served root
//!     empty one-byte big.bin text.txt café.txt 日本.txt
//!     bin\xffary.dat caf\xe9-latin1.txt "with space.txt"
//!     pub/file  pub/.hidden  pub/a/readme.txt  pub/a/b/c/deep.txt
//!     say"hi"/q.txt
//!     link-to-file -> pub/file            (listed and served as a file)
//!     .secret  .git/config                (hidden)
//!     private.txt (0600)  privdir/ (0700) privdir/inside.txt (0644)
//!     escape -> /etc/passwd   up -> ../../../../etc
//!     abs-out -> BASE/outside-secret.txt  rel-out -> ../outside-secret.txt
//!     fifo                                (a FIFO, 0644)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr};
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Content of the canary file placed next to the root. It must never be
/// sent to a client, on any connection.
pub const CANARY: &[u8] = b"CANARY-2f9d1c7e-this-file-lives-outside-the-root";

/// Contents of non-public files inside the root; never sent either.
pub const SECRET_DOTFILE: &[u8] = b"SECRET-DOTFILE-5b1e\n";
pub const SECRET_DOTDIR: &[u8] = b"[core]\n\tsecret = DOTDIR-77aa\n";
pub const SECRET_HIDDEN: &[u8] = b"HIDDEN-IN-PUB-0c3d\n";
pub const SECRET_PRIVATE: &[u8] = b"PRIVATE-0600-9e4f\n";
pub const SECRET_PRIVDIR: &[u8] = b"INSIDE-PRIVDIR-3a6b\n";

/// Byte strings that must never appear in anything a client receives.
pub const FORBIDDEN: &[&[u8]] = &[
    CANARY,
    b"SECRET-DOTFILE-5b1e",
    b"DOTDIR-77aa",
    b"HIDDEN-IN-PUB-0c3d",
    b"PRIVATE-0600-9e4f",
    b"INSIDE-PRIVDIR-3a6b",
    b"root:x:0:0",
];

/// The text file for TYPE A: LF line endings only.
pub const TEXT: &[u8] = b"line one\nline two\n\nthe last line\n";

/// mtime of every regular file: 2021-11-20 06:00:07 UTC.
pub const FILE_MTIME: i64 = 1_637_388_007;
/// Its MDTM form.
pub const FILE_MTIME_MDTM: &str = "20211120060007";
/// mtime of every directory: 2020-09-13 12:26:40 UTC.
pub const DIR_MTIME: i64 = 1_600_000_000;

pub const FILE_LEN: usize = 1024 * 1024 + 17;
pub const BIG_LEN: usize = 5 * 1024 * 1024 + 3;

/// Names with bytes that are not UTF-8.
pub const NAME_FF: &[u8] = b"bin\xffary.dat";
pub const NAME_LATIN1: &[u8] = b"caf\xe9-latin1.txt";

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `pub/file` (and `link-to-file`): ~1 MiB of pseudo-random bytes.
pub fn file_content() -> &'static [u8] {
    static C: OnceLock<Vec<u8>> = OnceLock::new();
    C.get_or_init(|| pseudo_random(FILE_LEN, 0x9e37_79b9_7f4a_7c15))
}

/// `big.bin`: ~5 MiB of pseudo-random bytes, for REST and ABOR.
pub fn big_content() -> &'static [u8] {
    static C: OnceLock<Vec<u8>> = OnceLock::new();
    C.get_or_init(|| pseudo_random(BIG_LEN, 0xdead_beef_cafe_f00d))
}

/// Every public regular file: relative path -> content. `link-to-file`
/// is here as the file it resolves to.
pub fn public_files() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut put = |p: &[u8], c: &[u8]| {
        m.insert(p.to_vec(), c.to_vec());
    };
    put(b"empty", b"");
    put(b"one-byte", b"x");
    put(b"big.bin", big_content());
    put(b"text.txt", TEXT);
    put("café.txt".as_bytes(), "café content\n".as_bytes());
    put("日本.txt".as_bytes(), "日本 content\n".as_bytes());
    put(NAME_FF, b"non-utf8 name with 0xff\n");
    put(NAME_LATIN1, b"latin-1 name\n");
    put(b"with space.txt", b"spaces in the name\n");
    put(b"pub/file", file_content());
    put(b"pub/a/readme.txt", b"readme in a\n");
    put(b"pub/a/b/c/deep.txt", b"deep down\n");
    put(b"say\"hi\"/q.txt", b"in a directory with quotes\n");
    put(b"link-to-file", file_content());
    m
}

/// Every public directory (relative path; the root is not included).
pub fn public_dirs() -> BTreeSet<Vec<u8>> {
    [
        &b"pub"[..],
        b"pub/a",
        b"pub/a/b",
        b"pub/a/b/c",
        b"say\"hi\"",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

/// The public names directly inside `dir` (`b""` is the root).
pub fn public_names(dir: &[u8]) -> BTreeSet<Vec<u8>> {
    let prefix: Vec<u8> = if dir.is_empty() {
        Vec::new()
    } else {
        let mut p = dir.to_vec();
        p.push(b'/');
        p
    };
    public_files()
        .into_keys()
        .chain(public_dirs())
        .filter_map(|p| {
            let rest = p.strip_prefix(&prefix[..])?;
            if rest.is_empty() || rest.contains(&b'/') {
                None
            } else {
                Some(rest.to_vec())
            }
        })
        .collect()
}

/// Names inside the root that must never be listed.
pub const UNLISTED_ROOT_NAMES: &[&[u8]] = &[
    b".secret",
    b".git",
    b"private.txt",
    b"privdir",
    b"escape",
    b"up",
    b"loop",
    b"abs-out",
    b"rel-out",
    b"fifo",
    b".",
    b"..",
];

pub struct Tree {
    /// The per-test directory (holds the root, the canary and the log).
    pub base: PathBuf,
    /// The served root.
    pub root: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn p(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn set_mtime(path: &Path, unix: i64) {
    let t = UNIX_EPOCH + Duration::from_secs(unix as u64);
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_modified(t)
        .unwrap_or_else(|e| panic!("set mtime {}: {e}", path.display()));
}

impl Tree {
    pub fn new() -> Tree {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = PathBuf::from(format!(
            "/tmp/aftpd-test-{}-{}-{}",
            std::process::id(),
            n,
            nanos
        ));
        fs::create_dir(&base).unwrap_or_else(|e| panic!("mkdir {}: {e}", base.display()));
        chmod(&base, 0o755);
        let root = base.join("root");
        let tree = Tree { base, root };
        tree.populate();
        tree
    }

    fn populate(&self) {
        let root = &self.root;
        fs::create_dir(root).unwrap();
        chmod(root, 0o755);
        let outside = self.canary_path();
        fs::write(&outside, CANARY).unwrap();
        chmod(&outside, 0o644);

        for d in public_dirs() {
            let path = p(root, &d);
            fs::create_dir_all(&path).unwrap();
            chmod(&path, 0o755);
        }
        for (rel, content) in public_files() {
            if rel == b"link-to-file" {
                continue;
            }
            let path = p(root, &rel);
            fs::write(&path, &content).unwrap();
            chmod(&path, 0o644);
            set_mtime(&path, FILE_MTIME);
        }
        std::os::unix::fs::symlink("pub/file", root.join("link-to-file")).unwrap();

        // Hidden and private things.
        let w = |rel: &str, content: &[u8], mode: u32| {
            let path = root.join(rel);
            fs::write(&path, content).unwrap();
            chmod(&path, mode);
            set_mtime(&path, FILE_MTIME);
        };
        w(".secret", SECRET_DOTFILE, 0o644);
        fs::create_dir(root.join(".git")).unwrap();
        chmod(&root.join(".git"), 0o755);
        w(".git/config", SECRET_DOTDIR, 0o644);
        w("pub/.hidden", SECRET_HIDDEN, 0o644);
        w("private.txt", SECRET_PRIVATE, 0o600);
        fs::create_dir(root.join("privdir")).unwrap();
        w("privdir/inside.txt", SECRET_PRIVDIR, 0o644);
        chmod(&root.join("privdir"), 0o700);

        std::os::unix::fs::symlink("/etc/passwd", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("up")).unwrap();
        // A loop: listed, it would be a directory containing itself.
        std::os::unix::fs::symlink(".", root.join("loop")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs-out")).unwrap();
        std::os::unix::fs::symlink("../outside-secret.txt", root.join("rel-out")).unwrap();

        let fifo = CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
        chmod(&root.join("fifo"), 0o644);

        // Directory mtimes last: creating entries changes them.
        let mut dirs: Vec<PathBuf> = public_dirs().iter().map(|d| p(root, d)).collect();
        dirs.push(root.join(".git"));
        dirs.push(root.clone());
        for d in dirs {
            set_mtime(&d, DIR_MTIME);
        }
    }

    /// Gives every entry of the root (not following symlinks) to
    /// `uid:gid`: the server's user then owns the tree, as when someone
    /// serves their own directory. Only root can do this.
    pub fn chown_root(&self, uid: u32, gid: u32) {
        fn go(p: &Path, uid: u32, gid: u32) {
            let c = CString::new(p.as_os_str().as_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            let rc = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
            assert_eq!(
                rc,
                0,
                "lchown {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            );
            let md = fs::symlink_metadata(p).unwrap();
            if md.is_dir() {
                for e in fs::read_dir(p).unwrap() {
                    go(&e.unwrap().path(), uid, gid);
                }
            }
        }
        go(&self.root, uid, gid);
    }

    /// Writes a public file (mode 0644) of `len` pseudo-random bytes at
    /// `rel` inside the root, a MiB at a time; returns its path.
    pub fn big_file(&self, rel: &str, len: u64) -> PathBuf {
        use std::io::Write;
        let path = self.root.join(rel);
        let mut f = fs::File::create(&path).unwrap();
        let chunk = pseudo_random(1 << 20, len ^ 0x5eed);
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        chmod(&path, 0o644);
        path
    }

    /// Makes a public directory at `rel` inside the root.
    pub fn public_dir(&self, rel: &str) -> PathBuf {
        let path = self.root.join(rel);
        fs::create_dir_all(&path).unwrap();
        chmod(&path, 0o755);
        path
    }

    /// The canary, next to (outside) the root.
    pub fn canary_path(&self) -> PathBuf {
        self.base.join("outside-secret.txt")
    }

    /// Where the servers' standard error goes.
    pub fn log_path(&self) -> PathBuf {
        self.base.join("ftpd.log")
    }

    /// A fresh scratch directory inside BASE (outside the root).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let d = self.base.join(name);
        fs::create_dir_all(&d).unwrap();
        chmod(&d, 0o755);
        d
    }

    /// Everything about the tree (root and canary), for before/after
    /// comparisons: type, mode, owner, size, times, inode, link target,
    /// content hash.
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, String> {
        let mut out = BTreeMap::new();
        snap(&self.base, &self.base, &mut out);
        out.remove(b"ftpd.log".as_slice());
        out
    }
}

impl Default for Tree {
    fn default() -> Tree {
        Tree::new()
    }
}

fn snap(base: &Path, path: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
    let md = fs::symlink_metadata(path).unwrap();
    let rel = path
        .strip_prefix(base)
        .unwrap()
        .as_os_str()
        .as_bytes()
        .to_vec();
    let ft = md.file_type();
    let mut desc = format!(
        "mode={:o} uid={} gid={} size={} mtime={}.{} ctime={}.{} ino={} nlink={}",
        md.mode(),
        md.uid(),
        md.gid(),
        md.size(),
        md.mtime(),
        md.mtime_nsec(),
        md.ctime(),
        md.ctime_nsec(),
        md.ino(),
        md.nlink()
    );
    if ft.is_symlink() {
        let t = fs::read_link(path).unwrap();
        desc.push_str(&format!(" link={:?}", t));
    } else if ft.is_file() {
        let mut h = DefaultHasher::new();
        h.write(&fs::read(path).unwrap());
        desc.push_str(&format!(" hash={:016x}", h.finish()));
    }
    if path != base && rel != b"ftpd.log" {
        out.insert(rel, desc);
    }
    if ft.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            snap(base, &e, out);
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!("warning: removing {}: {e}", self.base.display());
        }
    }
}
