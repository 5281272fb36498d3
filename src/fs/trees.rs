//! The trees a process serves: ROOT alone, or with `--vhosts`
//! publicfile's layout, where ROOT/0 is the tree of a session that names
//! no host and ROOT/NAME that of one whose HOST named NAME.
//!
//! A host's tree is found beneath ROOT's descriptor by the same confined
//! lookup as every other path, so the publishing rules hold for it: a
//! published directory (world-readable and -searchable, no dot-name),
//! reached through symlinks only inside ROOT and only to what those rules
//! publish. Its descriptor then confines that session's lookups as ROOT's
//! does (`..` and absolute symlinks stop at the host's tree). Each HOST
//! looks the name up afresh (a host added, removed or renamed counts at
//! once); sessions of one host share one descriptor, held while any of
//! them lives. ROOT/0 is opened once, at start, like ROOT itself.
//!
//! With drop boxes (`--host-incoming`, `fs::incoming::hosts`), a host
//! that has one is the tree opened at start, its box with it; every
//! other tree is told of the boxes, which stay write-only in it too.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::exec::{self, Real};
use super::incoming::Incoming;
use super::incoming::hosts::HostBoxes;
use super::message::{self, absent, descriptor};
use super::{FsError, Meta, Root};
use crate::core::config::Uploads;
use crate::core::message::{MessageFile, host_dir};
use crate::core::session::{FsAnswer, FsRequest, HostTree, Tree};
use crate::core::vpath::VPath;

/// Host trees remembered for sharing, at most (each a descriptor held
/// while a session uses it); past this, a host's sessions open their own.
const SHARED_MAX: usize = 1024;

/// What the filesystem requests of a process are answered against.
pub struct Trees {
    /// ROOT, or ROOT/0 with `--vhosts`.
    default: Arc<Root>,
    hosts: Option<Hosts>,
}

/// `--vhosts`: ROOT, where HOST finds the trees.
struct Hosts {
    base: Arc<Root>,
    shared: Mutex<Vec<Shared>>,
    /// The hosts that take uploads, with `--host-incoming`.
    boxes: Option<Boxes>,
}

/// The drop boxes of the hosts, and what the sessions are told of them.
struct Boxes {
    hosts: HostBoxes,
    /// `--max-upload`.
    max_size: u64,
}

/// A host tree some session holds: (device, inode) of its directory.
struct Shared {
    id: (u64, u64),
    root: Weak<Root>,
}

impl Trees {
    /// ROOT for every session; HOST selects nothing.
    pub fn single(root: Arc<Root>) -> Trees {
        Trees {
            default: root,
            hosts: None,
        }
    }

    /// Publicfile's layout beneath `base` (ROOT). ROOT/0 must be a
    /// published directory: `NotFound` otherwise.
    pub fn vhosts(base: Arc<Root>) -> Result<Trees, FsError> {
        let (default, _) = open_host(&base, b"0")?;
        Ok(Trees {
            default: Arc::new(default),
            hosts: Some(Hosts {
                base,
                shared: Mutex::new(Vec::new()),
                boxes: None,
            }),
        })
    }

    /// The hosts' drop boxes (found by `fs::incoming::hosts::scan` on
    /// this ROOT), uploads of at most `max_size` bytes. ROOT/0 is the tree
    /// of its box, if it has one.
    pub fn with_boxes(mut self, hosts: HostBoxes, max_size: u64) -> Trees {
        let Some(h) = &mut self.hosts else {
            return self;
        };
        let default = rustix::fs::fstat(self.default.fd())
            .ok()
            .and_then(|st| hosts.find((st.st_dev, st.st_ino)));
        match default {
            Some(host) => self.default = Arc::clone(&host.tree),
            None => self.default.set_incoming(hosts.none()),
        }
        h.boxes = Some(Boxes { hosts, max_size });
        self
    }

    /// Every drop box served, with its host's directory (empty for
    /// ROOT's, `--incoming`): for the sandbox and the log.
    pub fn drop_boxes(&self) -> Vec<(&[u8], &Incoming)> {
        match self.hosts.as_ref().and_then(|h| h.boxes.as_ref()) {
            Some(b) => b
                .hosts
                .hosts()
                .iter()
                .filter_map(|h| Some((h.name.as_slice(), h.tree.incoming()?)))
                .collect(),
            None => self
                .default
                .incoming()
                .filter(|inc| inc.fd().is_some())
                .map(|inc| (&b""[..], inc))
                .into_iter()
                .collect(),
        }
    }

    /// The uploads the tree of sessions that name no host takes, with
    /// `--host-incoming`: ROOT/0's box, if it has one.
    pub fn default_uploads(&self) -> Option<Uploads> {
        let boxes = self.hosts.as_ref()?.boxes.as_ref()?;
        let dir = self.default.incoming()?.settings()?.dir.clone();
        Some(Uploads {
            incoming: dir,
            max_size: boxes.max_size,
        })
    }

    /// The tree of sessions that name no host.
    pub fn default_tree(&self) -> &Arc<Root> {
        &self.default
    }

    /// Answers `request` for `tree`. Every call may wait for the disk.
    pub fn execute(&self, tree: Tree<Real>, request: FsRequest<Real>) -> FsAnswer<Real> {
        match (request, &self.hosts) {
            (FsRequest::Host(name), Some(hosts)) => FsAnswer::Host(hosts.find(&name)),
            (request, _) => match &tree {
                Tree::Host(root) => exec::execute(root, request),
                Tree::Default => exec::execute(&self.default, request),
            },
        }
    }
}

impl Hosts {
    /// The tree of host `name`, its banner, and its uploads.
    fn find(&self, name: &[u8]) -> Result<HostTree<Real>, FsError> {
        let (root, meta) = open_host(&self.base, name)?;
        let (tree, uploads) = match &self.boxes {
            None => (self.share(root, &meta), None),
            Some(b) => match b.hosts.find((meta.dev, meta.ino)) {
                // The tree opened at start, with its box.
                Some(host) => (
                    Arc::clone(&host.tree),
                    Some(Uploads {
                        incoming: host.dir.clone(),
                        max_size: b.max_size,
                    }),
                ),
                None => {
                    root.set_incoming(b.hosts.none());
                    (self.share(root, &meta), None)
                }
            },
        };
        // A banner that cannot be read is no banner.
        let banner = message::read(&tree, &VPath::root(), MessageFile::Banner).unwrap_or_default();
        Ok(HostTree {
            tree,
            banner,
            uploads,
        })
    }

    /// The tree a session holds already for the directory `meta`, or
    /// `root`, remembered for the next.
    fn share(&self, root: Root, meta: &Meta) -> Arc<Root> {
        let id = (meta.dev, meta.ino);
        let mut shared = lock(&self.shared);
        shared.retain(|s| s.root.strong_count() > 0);
        if let Some(held) = shared
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.root.upgrade())
        {
            return held;
        }
        let root = Arc::new(root);
        if shared.len() < SHARED_MAX {
            shared.push(Shared {
                id,
                root: Arc::downgrade(&root),
            });
        }
        root
    }
}

/// The published directory NAME of `base`, as a tree of its own.
pub(crate) fn open_host(base: &Root, name: &[u8]) -> Result<(Root, Meta), FsError> {
    // The core made the name; this layer checks it again all the same:
    // one path component, nothing hidden.
    if host_dir(name).as_deref() != Some(name) {
        return Err(FsError::NotFound);
    }
    let path = VPath::root().child(name).ok_or(FsError::NotFound)?;
    let (dir, meta) = base.open_dir(&path).map_err(absent)?;
    Ok((
        Root {
            dir: descriptor(dir),
            incoming: std::sync::OnceLock::new(),
        },
        meta,
    ))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::meta::Kind;
    use crate::fs::test_tree::TempTree;

    fn vp(s: &str) -> VPath {
        VPath::resolve(&VPath::root(), s.as_bytes()).unwrap()
    }

    fn layout() -> TempTree {
        let t = TempTree::new("trees");
        t.dir("0", 0o755);
        t.file("0/default.txt", 0o644, b"default\n");
        t.dir("a.example", 0o755);
        t.file("a.example/a.txt", 0o644, b"a\n");
        t.file("a.example/.banner", 0o644, b"This is A.\n");
        t.symlink("a.example/up", "../0/default.txt");
        t.symlink("alias.example", "a.example");
        t.dir("private.example", 0o700);
        t.file("file.example", 0o644, b"not a tree\n");
        t.dir(".hidden", 0o755);
        t
    }

    fn host(trees: &Trees, name: &str) -> Result<HostTree<Real>, FsError> {
        match trees.execute(Tree::Default, FsRequest::Host(name.as_bytes().to_vec())) {
            FsAnswer::Host(r) => r,
            _ => panic!("not a Host answer"),
        }
    }

    fn stat(trees: &Trees, tree: Tree<Real>, path: &str) -> Result<Meta, FsError> {
        match trees.execute(tree, FsRequest::Stat(vp(path))) {
            FsAnswer::Stat(r) => r,
            _ => panic!("not a Stat answer"),
        }
    }

    #[test]
    fn default_and_host_trees() {
        let t = layout();
        let trees = Trees::vhosts(Arc::new(Root::open(&t.path).unwrap())).unwrap();
        assert_eq!(
            stat(&trees, Tree::Default, "/default.txt").unwrap().kind,
            Kind::File
        );
        assert!(stat(&trees, Tree::Default, "/a.example").is_err());
        let a = host(&trees, "a.example").unwrap();
        assert_eq!(a.banner, b"This is A.\n");
        let tree = Tree::Host(Arc::clone(&a.tree));
        assert!(stat(&trees, tree.clone(), "/a.txt").is_ok());
        // A host's tree is a root of its own: nothing climbs out of it.
        assert!(stat(&trees, tree.clone(), "/up").is_err());
        assert!(stat(&trees, tree, "/default.txt").is_err());
        // A symlink to a host's directory is that host, one descriptor.
        let alias = host(&trees, "alias.example").unwrap();
        assert!(Arc::ptr_eq(&a.tree, &alias.tree));
        assert!(alias.banner == a.banner);
        assert!(host(&trees, "0").is_ok());
    }

    #[test]
    fn only_published_directories_are_hosts() {
        let t = layout();
        let outside = TempTree::new("trees-outside");
        t.symlink("out.example", &outside.path);
        t.symlink("abs.example", "/a.example");
        let trees = Trees::vhosts(Arc::new(Root::open(&t.path).unwrap())).unwrap();
        for name in [
            "private.example",
            "file.example",
            "missing.example",
            ".hidden",
            "..",
            "a/b",
            "A.EXAMPLE",
            "",
        ] {
            assert!(
                matches!(host(&trees, name), Err(FsError::NotFound)),
                "{name}"
            );
        }
        // An absolute symlink resolves inside ROOT; one that leaves it,
        // nowhere.
        assert!(host(&trees, "abs.example").is_ok());
        assert!(matches!(
            host(&trees, "out.example"),
            Err(FsError::NotFound)
        ));
    }

    #[test]
    fn the_default_tree_must_be_there() {
        let t = TempTree::new("trees-no0");
        assert!(Trees::vhosts(Arc::new(Root::open(&t.path).unwrap())).is_err());
        t.dir("0", 0o700);
        assert!(Trees::vhosts(Arc::new(Root::open(&t.path).unwrap())).is_err());
        // Without --vhosts, HOST finds nothing.
        let single = Trees::single(Arc::new(Root::open(&t.path).unwrap()));
        assert!(matches!(host(&single, "0"), Err(FsError::NotFound)));
    }

    #[test]
    fn sessions_of_a_host_share_its_descriptor() {
        let t = layout();
        let trees = Trees::vhosts(Arc::new(Root::open(&t.path).unwrap())).unwrap();
        let first = host(&trees, "a.example").unwrap().tree;
        let again = host(&trees, "a.example").unwrap().tree;
        assert!(Arc::ptr_eq(&first, &again));
        drop((first, again));
        // Once no session holds it, it is closed; the next HOST opens it.
        let hosts = trees.hosts.as_ref().unwrap();
        let _third = host(&trees, "a.example").unwrap().tree;
        assert_eq!(lock(&hosts.shared).len(), 1);
    }
}
