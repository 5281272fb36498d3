//! Drop boxes of virtual hosts (`--vhosts` with `--host-incoming`).
//!
//! Publicfile's layout configures a host by its directory, ROOT/NAME, and
//! the files in it (`.banner`, `.welcome`); a host's drop box is one more
//! such file: `ROOT/NAME/.incoming` holds the box's path in the host's
//! tree (`incoming`, `/pub/incoming`), as `--incoming` names one in ROOT.
//! A host without the file takes no uploads. The boxes are found once, at
//! start, before the privileges go and the sandbox shuts (their
//! directories are the sandbox's write rules): every entry of ROOT that
//! HOST could select is looked at, an alias (a symlink to a host's
//! directory) is that host. An entry that is wrong (a path that leaves
//! the host's tree, a directory that is not there, a `.incoming` that is
//! a symlink or not world-readable) stops the start: a host the operator
//! wanted to take uploads must not silently refuse them.
//!
//! A host whose tree has a box is held open for the server's life, its
//! descriptor the one its sessions use; every other tree learns the
//! boxes' identities, so that none of them shows what another host is
//! being sent (see [`super::Incoming::none`]).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::{DirId, Incoming, Settings};
use crate::core::config::parse_incoming;
use crate::core::message::host_dir;
use crate::core::meta::FsError;
use crate::core::vpath::VPath;
use crate::fs::trees::open_host;
use crate::fs::{Root, meta_from_stat};
use crate::hook::Hook;

/// The file of a host's directory that names its drop box.
pub const ENTRY: &str = ".incoming";
/// The longest `.incoming` read: one path.
const ENTRY_MAX: usize = 4096;
/// Entries of ROOT looked at, at most: a bound on the work at start.
const ROOT_ENTRIES_MAX: usize = 100_000;

/// One name beneath the directory, no symlink, no magic link.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// What every box shares: the options of `--min-free`, `--upload-mode`
/// and the hook.
#[derive(Clone)]
pub struct Common {
    pub min_free: u64,
    pub mode: u32,
    pub hook: Option<Arc<Hook>>,
}

/// A host that takes uploads.
pub struct HostBox {
    /// The host's directory beneath ROOT (the first name found for it).
    pub name: Vec<u8>,
    /// (device, inode) of that directory.
    pub id: DirId,
    /// Its tree, with its drop box: the one its sessions use.
    pub tree: Arc<Root>,
    /// The box's path in the tree.
    pub dir: VPath,
}

/// The hosts that take uploads, and the identities of their boxes.
pub struct HostBoxes {
    hosts: Vec<HostBox>,
    sealed: Arc<[DirId]>,
}

/// Why the boxes could not be set up.
#[derive(Debug)]
pub enum ScanError {
    /// A host's entry is wrong: the host's directory name and why.
    Entry(Vec<u8>, String),
    /// ROOT or a host could not be read now.
    Io(std::io::Error),
}

impl HostBoxes {
    /// The host whose directory is `id`, if it takes uploads.
    pub fn find(&self, id: DirId) -> Option<&HostBox> {
        self.hosts.iter().find(|h| h.id == id)
    }

    /// Every host that takes uploads.
    pub fn hosts(&self) -> &[HostBox] {
        &self.hosts
    }

    /// (device, inode) of every box.
    pub fn sealed(&self) -> Arc<[DirId]> {
        Arc::clone(&self.sealed)
    }

    /// What a tree without a box of its own knows of the boxes.
    pub fn none(&self) -> Incoming {
        Incoming::none(self.sealed())
    }
}

/// Finds the hosts of `base` (ROOT) that have a `.incoming`, and opens
/// their boxes.
pub fn scan(base: &Root, common: &Common) -> Result<HostBoxes, ScanError> {
    let mut seen: Vec<DirId> = Vec::new();
    let mut found: Vec<(HostBox, Incoming)> = Vec::new();
    for name in root_names(base)? {
        let (tree, meta) = match open_host(base, &name) {
            Ok(t) => t,
            Err(FsError::Busy(e) | FsError::Io(e)) => return Err(ScanError::Io(e)),
            // Not a tree HOST could select.
            Err(_) => continue,
        };
        let id = (meta.dev, meta.ino);
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let Some(text) = read_entry(&tree).map_err(|e| entry(&name, e))? else {
            continue;
        };
        let dir = parse_entry(&text).map_err(|e| ScanError::Entry(name.clone(), e))?;
        let settings = Settings {
            dir: dir.clone(),
            min_free: common.min_free,
            mode: common.mode,
            tree: name.clone(),
        };
        let inc = Incoming::open(&tree, settings, common.hook.clone())
            .map_err(|e| entry(&name, Entry::Bad(format!("the drop box {e}"))))?;
        let tree = Arc::new(tree);
        let host = HostBox {
            name,
            id,
            tree,
            dir,
        };
        found.push((host, inc));
    }
    found.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let sealed: Arc<[DirId]> = found.iter().filter_map(|(_, inc)| inc.id()).collect();
    let hosts = found
        .into_iter()
        .map(|(host, inc)| {
            host.tree.set_incoming(inc.sealing(Arc::clone(&sealed)));
            host
        })
        .collect();
    Ok(HostBoxes { hosts, sealed })
}

/// What reading a `.incoming` ran into.
enum Entry {
    Bad(String),
    Io(std::io::Error),
}

fn entry(name: &[u8], e: Entry) -> ScanError {
    match e {
        Entry::Bad(why) => ScanError::Entry(name.to_vec(), why),
        Entry::Io(e) => ScanError::Io(e),
    }
}

/// The names in ROOT that HOST could select (as `host_dir` makes them):
/// directories first, then symlinks, each by name, so that a host is
/// known by its directory's name rather than an alias's, whatever the
/// order of the entries.
fn root_names(base: &Root) -> Result<Vec<Vec<u8>>, ScanError> {
    let (dir, _) = base
        .open_dir(&VPath::root())
        .map_err(|e| ScanError::Io(fs_io(e)))?;
    let fd = OwnedFd::from(dir);
    let mut names = Vec::new();
    let mut entries = rustix::fs::Dir::read_from(&fd).map_err(|e| ScanError::Io(e.into()))?;
    for _ in 0..ROOT_ENTRIES_MAX {
        let Some(e) = entries.next() else {
            names.sort();
            return Ok(names.into_iter().map(|(_, name)| name).collect());
        };
        let e = e.map_err(|e| ScanError::Io(e.into()))?;
        let name = e.file_name().to_bytes();
        if host_dir(name).as_deref() == Some(name) {
            let link = e.file_type() == rustix::fs::FileType::Symlink;
            names.push((link, name.to_vec()));
        }
    }
    Err(ScanError::Io(std::io::Error::other(format!(
        "more than {ROOT_ENTRIES_MAX} entries in ROOT"
    ))))
}

fn fs_io(e: FsError) -> std::io::Error {
    match e {
        FsError::Busy(e) | FsError::Io(e) => e,
        _ => std::io::Error::other("ROOT is not a published directory"),
    }
}

/// The bytes of the host's `.incoming` (at most [`ENTRY_MAX`]), `None`
/// without one. Read as a message file is: never through a symlink, only
/// a world-readable regular file (whoever may not read it should not
/// decide where uploads go), never a FIFO or a device.
fn read_entry(tree: &Root) -> Result<Option<Vec<u8>>, Entry> {
    let bad = |why: &str| Entry::Bad(format!("{ENTRY} {why}"));
    // Retried a few times, as a message file's open is (fs/message.rs):
    // openat2 says EAGAIN when a rename raced the lookup.
    let open = |flags: OFlags| {
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(tree.fd(), ENTRY, flags, Mode::empty(), RESOLVE) {
                Err(Errno::AGAIN | Errno::INTR) if tries < 8 => tries += 1,
                r => return r,
            }
        }
    };
    let seen = match open(OFlags::PATH | OFlags::CLOEXEC) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP | Errno::XDEV) => return Err(bad("is a symlink: want a file")),
        Err(e) => return Err(Entry::Io(e.into())),
    };
    let check = |fd: &OwnedFd| -> Result<DirId, Entry> {
        let st = rustix::fs::fstat(fd).map_err(|e| Entry::Io(e.into()))?;
        let meta = meta_from_stat(&st);
        if meta.kind != crate::core::meta::Kind::File || meta.mode & 0o004 == 0 {
            return Err(bad("is not a world-readable regular file"));
        }
        Ok((meta.dev, meta.ino))
    };
    let id = check(&seen)?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = open(flags).map_err(|e| Entry::Io(e.into()))?;
    if check(&fd)? != id {
        return Err(bad("changed while it was read"));
    }
    let mut out = vec![0; ENTRY_MAX + 1];
    let mut len = 0;
    while len < out.len() {
        match rustix::io::read(fd.as_fd(), &mut out[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(Entry::Io(e.into())),
        }
    }
    if len > ENTRY_MAX {
        return Err(bad("is too long: want one path"));
    }
    out.truncate(len);
    Ok(Some(out))
}

/// The box's path from the text of a `.incoming`: one line (a final
/// newline, spaces around it allowed), a directory beneath the host's
/// tree, given relative to it (a leading `/` is the tree's top).
fn parse_entry(text: &[u8]) -> Result<VPath, String> {
    let text = std::str::from_utf8(text).map_err(|_| format!("{ENTRY} is not UTF-8"))?;
    let line = text.trim();
    if line.contains('\n') {
        return Err(format!("{ENTRY} holds more than one line: want one path"));
    }
    if line.split('/').any(|c| c == "..") {
        return Err(format!(
            "{ENTRY} names {line:?}, outside the host's tree: want a directory beneath it"
        ));
    }
    parse_incoming(line).map_err(|_| {
        format!("{ENTRY} names {line:?}: want a directory beneath the host's tree, e.g. incoming")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_tree::TempTree;

    #[test]
    fn entries() {
        assert_eq!(parse_entry(b"incoming\n").unwrap().as_bytes(), b"/incoming");
        assert_eq!(parse_entry(b" /pub/in \n").unwrap().as_bytes(), b"/pub/in");
        for bad in [
            &b""[..],
            b"\n",
            b"/",
            b".",
            b"../b.example/in",
            b"in/../../x",
            b"a\nb",
            b".hidden",
            b"in/.x",
            b"\xff",
        ] {
            assert!(
                parse_entry(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn common() -> Common {
        Common {
            min_free: 0,
            mode: 0o600,
            hook: None,
        }
    }

    fn layout() -> TempTree {
        let t = TempTree::new("hostboxes");
        t.dir("0", 0o755);
        t.dir("a.example", 0o755);
        t.dir("a.example/in", 0o733);
        t.file("a.example/.incoming", 0o644, b"in\n");
        t.symlink("alias.example", "a.example");
        t.dir("b.example", 0o755);
        t.dir("b.example/pub", 0o755);
        t.dir("b.example/pub/up", 0o733);
        t.file("b.example/.incoming", 0o644, b"/pub/up\n");
        t.dir("c.example", 0o755);
        t
    }

    fn scan_of(t: &TempTree) -> Result<HostBoxes, ScanError> {
        scan(&Root::open(&t.path).unwrap(), &common())
    }

    #[test]
    fn hosts_with_boxes() {
        let t = layout();
        let boxes = scan_of(&t).unwrap();
        let names: Vec<_> = boxes.hosts().iter().map(|h| h.name.clone()).collect();
        // The alias is its host, found once; c.example has no box.
        assert_eq!(names, [&b"a.example"[..], b"b.example"]);
        assert_eq!(boxes.sealed().len(), 2);
        for h in boxes.hosts() {
            let inc = h.tree.incoming().unwrap();
            assert_eq!(inc.settings().unwrap().dir, h.dir);
            assert!(boxes.find(h.id).is_some());
        }
    }

    /// Every tree hides every box: ROOT as a host, a host that is a box,
    /// the box's own host. A host's uploads come with its tree.
    #[test]
    fn every_tree_hides_every_box() {
        use crate::core::session::{FsAnswer, FsRequest, Tree};
        use crate::fs::trees::Trees;
        let t = layout();
        t.file("a.example/in/up", 0o644, b"uploaded\n");
        t.chmod("a.example/in", 0o755);
        t.symlink("all.example", "/");
        t.symlink("inbox.example", "a.example/in");
        let base = Arc::new(Root::open(&t.path).unwrap());
        let boxes = scan(&base, &common()).unwrap();
        let trees = Trees::vhosts(Arc::clone(&base))
            .unwrap()
            .with_boxes(boxes, 7);
        assert_eq!(trees.default_uploads(), None);
        assert_eq!(trees.drop_boxes().len(), 2);
        let host = |name: &str| match trees.execute(Tree::Default, FsRequest::Host(name.into())) {
            FsAnswer::Host(Ok(h)) => h,
            _ => panic!("no host {name}"),
        };
        let stat = |tree: &Arc<Root>, path: &str| {
            let path = VPath::resolve(&VPath::root(), path.as_bytes()).unwrap();
            match trees.execute(Tree::Host(Arc::clone(tree)), FsRequest::Stat(path)) {
                FsAnswer::Stat(r) => r,
                _ => panic!("not a Stat answer"),
            }
        };
        let a = host("a.example");
        assert_eq!(a.uploads.as_ref().map(|u| u.max_size), Some(7));
        assert!(Arc::ptr_eq(&a.tree, &host("alias.example").tree));
        assert!(stat(&a.tree, "/in/up").is_err());
        let all = host("all.example");
        assert!(all.uploads.is_none());
        assert!(stat(&all.tree, "/a.example/in").is_ok());
        assert!(stat(&all.tree, "/a.example/in/up").is_err());
        let inbox = host("inbox.example");
        assert!(stat(&inbox.tree, "/up").is_err());
        assert!(host("c.example").uploads.is_none());
    }

    #[test]
    fn bad_entries_stop_the_start() {
        for (file, body, mode) in [
            ("c.example/.incoming", &b"../a.example/in"[..], 0o644),
            ("c.example/.incoming", b"missing", 0o644),
            ("c.example/.incoming", b"in", 0o600),
            ("c.example/.incoming", b"", 0o644),
        ] {
            let t = layout();
            t.file(file, mode, body);
            match scan_of(&t) {
                Err(ScanError::Entry(name, _)) => assert_eq!(name, b"c.example"),
                Err(e) => panic!("{e:?}"),
                Ok(_) => panic!("{body:?} accepted"),
            }
        }
        let t = layout();
        t.symlink("c.example/.incoming", "../a.example/.incoming");
        assert!(matches!(scan_of(&t), Err(ScanError::Entry(..))));
        // A box that is a symlink, even to a directory of the tree.
        let t = layout();
        t.dir("c.example/real", 0o733);
        t.symlink("c.example/in", "real");
        t.file("c.example/.incoming", 0o644, b"in");
        assert!(matches!(scan_of(&t), Err(ScanError::Entry(..))));
    }
}
