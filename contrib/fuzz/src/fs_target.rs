//! The `fs` target: lookups and listings of `aftpd::fs` over a fixed tree
//! of public, private, hidden and special entries and symlinks between
//! them, some of which the input retargets, checked against an oracle of
//! our own: a plain resolver over `symlink_metadata` and `read_link`
//! that applies the publishing rules path by path.
//!
//! Checked: `Root::stat`, `open_file` and `open_dir` succeed exactly when
//! the oracle finds a published entry, on that very inode; `NotFile` and
//! `NotDir` only for a published directory and file; nothing else but
//! `NotFound`. A listing holds exactly the entries the oracle publishes
//! from the listed directory's physical place (names neither hidden nor
//! with control characters, no link back up to it or above it), each
//! with its target's inode.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use aftpd::core::meta::Entries;
use aftpd::core::vpath::VPath;
use aftpd::fs::dir::DirReader;
use aftpd::fs::{FsError, Kind, Root};

/// The symlinks the input may retarget, with the targets they start with.
const SLOTS: [(&str, &str); 16] = [
    ("l/s0", "../pub/file"),
    ("l/s1", "/pub/a"),
    ("l/s2", "../p711/f"),
    ("l/s3", "../p711/sub"),
    ("l/s4", "../.hidden"),
    ("l/s5", "s6"),
    ("l/s6", "s5"),
    ("l/s7", "../../../../../pub/a/b/deep"),
    ("l/s8", "/"),
    ("l/s9", ".."),
    ("l/s10", "../fifo"),
    ("l/s11", "../sock"),
    ("pub/a/s12", "../../p711/../pub/file"),
    ("pub/a/s13", "b/../../file/"),
    ("pub/a/b/s14", "../../../l/s0"),
    ("p711/sub/s15", "../../pub"),
];

/// The words paths and targets are made of.
const TOKENS: [&str; 45] = [
    "", ".", "..", "..", "pub", "a", "b", "deep", "file", "l", "p700", "p711", "sub", "f", "g",
    "d744", ".hidden", ".git", "config", "f600", "fifo", "sock", "missing", "ctl\x01", "chain",
    "loop", "out", "s0", "s1", "s2", "s3", "s4", "s5", "s8", "s9", "s12", "s13", "s14", "s15",
    "dirlink", "up", "zz", "top", "mid", "d",
];

/// How deep `z/d/d/...` goes: deeper than a walk holds directories open
/// (64), so that links climbing from its bottom walk down again.
const DEEP: usize = 70;

pub struct FsTree {
    base: PathBuf,
    root_path: PathBuf,
    root: Arc<Root>,
    /// Slots retargeted by the input in progress: set back before the next.
    dirty: Mutex<Vec<usize>>,
}

static TREE: OnceLock<FsTree> = OnceLock::new();

fn fs_tree() -> &'static FsTree {
    TREE.get_or_init(|| make_fs_tree().expect("cannot make the fs fuzzing tree"))
}

/// Removes this process's tree, if it made one.
pub fn remove_fs_tree() {
    if let Some(t) = TREE.get() {
        let _ = fs::remove_dir_all(&t.base);
    }
}

fn make_fs_tree() -> std::io::Result<FsTree> {
    let base = std::env::temp_dir().join(format!("aftpd-fuzz-fs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let root = base.join("root");
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m));
    let dir = |rel: &str, m: u32| -> std::io::Result<()> {
        fs::create_dir_all(root.join(rel))?;
        mode(&root.join(rel), m)
    };
    let file = |rel: &str, m: u32| -> std::io::Result<()> {
        fs::write(root.join(rel), rel.as_bytes())?;
        mode(&root.join(rel), m)
    };
    fs::create_dir_all(&root)?;
    mode(&base, 0o755)?;
    mode(&root, 0o755)?;
    fs::write(base.join("canary"), b"canary")?;
    mode(&base.join("canary"), 0o644)?;
    for (rel, m) in [
        ("pub", 0o755),
        ("pub/a", 0o755),
        ("pub/a/b", 0o755),
        ("l", 0o755),
        ("p700", 0o755),
        ("p711", 0o755),
        ("p711/sub", 0o755),
        ("d744", 0o755),
        (".git", 0o755),
    ] {
        dir(rel, m)?;
    }
    for (rel, m) in [
        ("pub/file", 0o644),
        ("pub/a/b/deep", 0o644),
        ("pub/.dot", 0o644),
        ("pub/ctl\x01", 0o644),
        ("p700/f", 0o644),
        ("p711/f", 0o644),
        ("p711/sub/g", 0o644),
        ("d744/f", 0o644),
        (".hidden", 0o644),
        (".git/config", 0o644),
        ("f600", 0o600),
    ] {
        file(rel, m)?;
    }
    for (rel, target) in SLOTS {
        symlink(target, root.join(rel))?;
    }
    for (rel, target) in [
        ("l/chain", "chain2"),
        ("l/chain2", "chain3"),
        ("l/chain3", "../pub/a"),
        ("l/loop", "loop"),
        ("l/out", "../../canary"),
        ("l/abs-out", base.join("canary").to_str().unwrap_or("/")),
        ("l/dirlink", "../pub/a/b"),
        ("pub/a/b/up", "../../.."),
        ("p700/in", "../pub"),
    ] {
        symlink(target, root.join(rel))?;
    }
    // z/d/.../d, DEEP levels below z, with links at the bottom that climb
    // to the root, to a file at the fifth level, and to the root itself.
    let mut deep = PathBuf::from("z");
    for _ in 0..DEEP {
        deep.push("d");
    }
    fs::create_dir_all(root.join(&deep))?;
    let mut at = root.join("z");
    for _ in 0..=DEEP {
        mode(&at, 0o755)?;
        at.push("d");
    }
    fs::write(root.join("z/d/d/d/d/mid"), b"mid")?;
    mode(&root.join("z/d/d/d/d/mid"), 0o644)?;
    let up = |n: usize| "../".repeat(n);
    symlink(
        format!("{}pub/file", up(DEEP + 1)),
        root.join(&deep).join("top"),
    )?;
    symlink(format!("{}mid", up(DEEP - 4)), root.join(&deep).join("mid"))?;
    symlink(up(DEEP + 1), root.join(&deep).join("up"))?;
    symlink(Path::new("/").join(&deep), root.join("l/zz"))?;
    mkfifo(&root.join("fifo"))?;
    mode(&root.join("fifo"), 0o644)?;
    drop(std::os::unix::net::UnixListener::bind(root.join("sock"))?);
    mode(&root.join("sock"), 0o777)?;
    // Modes last: a 0700 directory could not be filled otherwise (were
    // this not run as root).
    mode(&root.join("p700"), 0o700)?;
    mode(&root.join("p711"), 0o711)?;
    mode(&root.join("d744"), 0o744)?;
    let served = Root::open(&root)?;
    Ok(FsTree {
        base,
        root_path: root,
        root: Arc::new(served),
        dirty: Mutex::new(Vec::new()),
    })
}

/// std cannot make a FIFO; coreutils' mkfifo is everywhere.
fn mkfifo(path: &Path) -> std::io::Result<()> {
    let status = std::process::Command::new("mkfifo").arg(path).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("mkfifo failed"))
    }
}

/// Builds a path from the input: a byte for its length and whether it is
/// absolute, then a byte per word.
fn take_path(input: &mut &[u8]) -> Vec<u8> {
    let mut take = || {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        Some(b)
    };
    let Some(head) = take() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if head & 0x80 != 0 {
        out.push(b'/');
    }
    for i in 0..usize::from(head & 0x0f) {
        let Some(w) = take() else { break };
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(TOKENS[usize::from(w) % TOKENS.len()].as_bytes());
    }
    if head & 0x40 != 0 {
        out.push(b'/');
    }
    out
}

/// Each op byte: `0` retargets a slot (a byte for which, then a path),
/// anything else asks for a path (see [`take_path`]) through every entry
/// point. The slots are set back first, so an input means the same
/// whatever ran before it.
pub fn fs_lookups(data: &[u8]) {
    let t = fs_tree();
    restore(t);
    let mut input = data;
    let mut ops = 0;
    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        ops += 1;
        if ops > 64 {
            break;
        }
        if op % 4 == 0 {
            let Some((&slot, rest)) = input.split_first() else {
                break;
            };
            input = rest;
            let mut target = take_path(&mut input);
            if target.is_empty() {
                target.push(b'.');
            }
            retarget(t, usize::from(slot) % SLOTS.len(), &target);
        } else {
            let path = take_path(&mut input);
            if let Ok(p) = VPath::resolve(&VPath::root(), &path) {
                check_lookups(t, &p);
            }
        }
    }
}

fn retarget(t: &FsTree, slot: usize, target: &[u8]) {
    let at = t.root_path.join(SLOTS[slot].0);
    let _ = fs::remove_file(&at);
    symlink(OsStr::from_bytes(target), &at).expect("retargeting a slot");
    if let Ok(mut d) = t.dirty.lock() {
        d.push(slot);
    }
}

fn restore(t: &FsTree) {
    let dirty: Vec<usize> = t
        .dirty
        .lock()
        .map(|mut d| d.drain(..).collect())
        .unwrap_or_default();
    for slot in dirty {
        let at = t.root_path.join(SLOTS[slot].0);
        let _ = fs::remove_file(&at);
        symlink(SLOTS[slot].1, &at).expect("restoring a slot");
    }
}

/// What the oracle found: a published entry, its inode, and for a
/// directory the physical path to it (names below the root).
#[derive(Debug, Clone, PartialEq)]
struct Published {
    kind: Kind,
    id: (u64, u64),
    chain: Vec<OsString>,
}

fn check_lookups(t: &FsTree, p: &VPath) {
    let root = &t.root;
    let want = oracle(&t.root_path, &[], p.as_bytes());
    let what = || format!("{p:?}: oracle {want:?}");
    match (root.stat(p), &want) {
        (Ok(m), Some(w)) => {
            assert_eq!((m.kind, (m.dev, m.ino)), (w.kind, w.id), "stat {}", what());
            assert!(m.is_public(), "stat {}", what());
        }
        (Err(FsError::NotFound), None) => {}
        (other, _) => panic!("stat {}: {:?}", what(), other),
    }
    match (root.open_file(p), &want) {
        (Ok((f, m)), Some(w)) if w.kind == Kind::File => {
            let st = f.metadata().expect("fstat of an opened file");
            assert_eq!((st.dev(), st.ino()), w.id, "open_file {}", what());
            assert_eq!((m.dev, m.ino), w.id, "open_file {}", what());
            assert!(
                st.is_file() && st.mode() & 0o004 != 0,
                "open_file {}",
                what()
            );
        }
        (Err(FsError::NotFile), Some(w)) if w.kind == Kind::Dir => {}
        (Err(FsError::NotFound), None) => {}
        (other, _) => panic!("open_file {}: {:?}", what(), other.map(|(_, m)| m)),
    }
    match (root.open_dir(p), &want) {
        (Ok((dir, m)), Some(w)) if w.kind == Kind::Dir => {
            assert_eq!((m.dev, m.ino), w.id, "open_dir {}", what());
            check_listing(t, p, dir, w);
        }
        (Err(FsError::NotDir), Some(w)) if w.kind == Kind::File => {}
        (Err(FsError::NotFound), None) => {}
        (other, _) => panic!("open_dir {}: {:?}", what(), other.map(|(_, m)| m)),
    }
}

/// The listing holds exactly what the oracle publishes from the listed
/// directory's physical place.
fn check_listing(t: &FsTree, p: &VPath, dir: aftpd::fs::OpenDir, w: &Published) {
    let mut reader = DirReader::new(Arc::clone(&t.root), dir).expect("a reader");
    let mut got = BTreeMap::new();
    let mut entries = Entries::default();
    for _ in 0..1000 {
        entries.clear();
        let eof = reader
            .read_batch(&mut entries)
            .expect("reading the directory");
        for (name, m) in entries.iter() {
            assert!(m.is_public(), "{p:?}: {name:?} listed unpublished: {m:?}");
            let fresh = got.insert(name.to_vec(), (m.kind, (m.dev, m.ino)));
            assert!(fresh.is_none(), "{p:?}: {name:?} listed twice");
        }
        if eof {
            break;
        }
    }
    // The listed directory, and each above it: a link to one is left out.
    let mut lineage = Vec::new();
    let mut at = t.root_path.clone();
    lineage.push(id_of(&at));
    for c in &w.chain {
        at.push(c);
        lineage.push(id_of(&at));
    }
    let mut want = BTreeMap::new();
    let physical = t.root_path.join(w.chain.iter().collect::<PathBuf>());
    for e in fs::read_dir(&physical).expect("the oracle's directory") {
        let name = e.expect("an entry").file_name().into_vec();
        if name.first() == Some(&b'.') || name.iter().any(|&b| b < 0x20 || b == 0x7f) {
            continue;
        }
        let Some(found) = oracle(&t.root_path, &w.chain, &name) else {
            continue;
        };
        if found.kind == Kind::Dir && lineage.contains(&Some(found.id)) {
            continue;
        }
        want.insert(name, (found.kind, found.id));
    }
    assert_eq!(got, want, "listing {p:?} (physically {:?})", w.chain);
}

fn id_of(p: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// The oracle: resolves `path` from the directory `start` (names below
/// the root) by paths alone, following the rules: every directory passed
/// world-readable and -searchable (the root too), no name starting with
/// `.`, `..` the parent of where the walk physically is (never above the
/// root), an absolute target from the root, at most 40 links, a file only
/// as the very end (nothing after it, not even `/`).
fn oracle(root: &Path, start: &[OsString], path: &[u8]) -> Option<Published> {
    let public_dir = |p: &Path| {
        fs::symlink_metadata(p)
            .ok()
            .filter(|m| m.is_dir() && m.mode() & 0o005 == 0o005)
            .is_some()
    };
    if !public_dir(root) {
        return None;
    }
    let mut chain: Vec<OsString> = start.to_vec();
    // The path still to resolve, as one string: each expansion puts the
    // target in front of what was left.
    let mut rest: Vec<u8> = path.to_vec();
    let mut links = 0;
    loop {
        let trimmed = rest.iter().position(|&b| b != b'/').unwrap_or(rest.len());
        rest.drain(..trimmed);
        if rest.is_empty() {
            let here = root.join(chain.iter().collect::<PathBuf>());
            let m = fs::symlink_metadata(&here).ok()?;
            return Some(Published {
                kind: Kind::Dir,
                id: (m.dev(), m.ino()),
                chain,
            });
        }
        let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let name: Vec<u8> = rest.drain(..end).collect();
        match &name[..] {
            b"." => continue,
            b".." => {
                chain.pop();
                continue;
            }
            n if n[0] == b'.' => return None,
            _ => {}
        }
        let here = root.join(chain.iter().collect::<PathBuf>());
        let entry = here.join(OsStr::from_bytes(&name));
        let m = fs::symlink_metadata(&entry).ok()?;
        let ft = m.file_type();
        if ft.is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = fs::read_link(&entry).ok()?.into_os_string().into_vec();
            if target.first() == Some(&b'/') {
                chain.clear();
            }
            let mut next = target;
            next.push(b'/');
            next.extend_from_slice(&rest);
            // A target of `x` followed by nothing must stay `x`, not `x/`.
            if rest.is_empty() {
                next.pop();
            }
            rest = next;
        } else if ft.is_dir() {
            if !public_dir(&entry) {
                return None;
            }
            chain.push(OsString::from_vec(name));
        } else if ft.is_file() && m.mode() & 0o004 != 0 && rest.is_empty() {
            return Some(Published {
                kind: Kind::File,
                id: (m.dev(), m.ino()),
                chain,
            });
        } else {
            return None;
        }
    }
}
