//! An in-memory tree that answers the session's filesystem requests with
//! the same publishing rules as the real one (`crate::fs`): the core's
//! unit tests and the `session` fuzz target drive a session with it, so
//! they need no disk. Symlinks are the real layer's business and are not
//! modelled here. With [`MemFs::vhosts`] it has publicfile's layout: the
//! default tree is `/0`, a host's tree `/NAME`. Its write side models the
//! drop box: uploads staged in memory (the test plays the data path with
//! [`MemFs::stage`]), names reserved while they are, committed without
//! replacing anything, and the incoming directory write-only
//! ([`MemFs::incoming`]).

use std::collections::BTreeMap;

use super::config::within;
use super::message::{self, MessageFile};
use super::meta::{FsError, Kind, Meta};
use super::session::{Created, FsAnswer, FsRequest, Handles, HostTree, Listed, Tree, UploadName};
use super::vpath::VPath;

/// Entries a `ReadDir` answer holds at most: small, so that tests see
/// listings that take several batches.
pub const BATCH: usize = 3;

/// The handles of an in-memory tree.
#[derive(Debug)]
pub struct Mem;

impl Handles for Mem {
    type File = MemFile;
    type Dir = MemDir;
    type Tree = MemTree;
    type Upload = MemUpload;
}

/// An upload in progress: its number among the tree's uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemUpload {
    pub id: u64,
}

/// An upload's data so far, and the path (of the whole) it will have.
#[derive(Debug, Clone)]
struct Staged {
    path: Vec<u8>,
    body: Vec<u8>,
}

/// A host's tree: the directory it is, `/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemTree(pub Vec<u8>);

/// An open file: its bytes as they were when opened.
#[derive(Debug, Clone)]
pub struct MemFile {
    pub body: Vec<u8>,
}

/// A directory being read: its published entries, and how far.
#[derive(Debug)]
pub struct MemDir {
    entries: Vec<(Vec<u8>, Meta)>,
    next: usize,
}

#[derive(Debug, Clone)]
enum Node {
    File {
        mode: u32,
        body: Vec<u8>,
    },
    Dir {
        mode: u32,
    },
    /// A FIFO, socket or device: never published.
    Other,
}

/// The tree: absolute paths (`/`, `/pub`, `/pub/a.txt`) to nodes.
#[derive(Debug, Clone)]
pub struct MemFs {
    nodes: BTreeMap<Vec<u8>, Node>,
    /// Modification time of every entry, seconds since the epoch.
    pub mtime: i64,
    /// Publicfile's layout: the default tree is `/0`, HOST finds `/NAME`.
    vhosts: bool,
    /// The write-only incoming directory (a path of the whole), if any.
    incoming: Option<VPath>,
    /// Uploads in progress, by number.
    staged: BTreeMap<u64, Staged>,
    /// Uploads committed, by number: a discard after the commit (its
    /// session gave up waiting) removes what it stored.
    committed: BTreeMap<u64, Vec<u8>>,
    next_upload: u64,
    /// Free bytes, and what must stay free (`--min-free`).
    pub free: u64,
    pub min_free: u64,
    /// The mode of committed uploads (`--upload-mode`).
    pub upload_mode: u32,
}

impl Default for MemFs {
    fn default() -> MemFs {
        MemFs::new()
    }
}

impl MemFs {
    /// An empty tree: the root directory, mode 0755.
    pub fn new() -> MemFs {
        let mut nodes = BTreeMap::new();
        nodes.insert(b"/".to_vec(), Node::Dir { mode: 0o755 });
        MemFs {
            nodes,
            mtime: 1_700_000_000,
            vhosts: false,
            incoming: None,
            staged: BTreeMap::new(),
            committed: BTreeMap::new(),
            next_upload: 1,
            free: u64::MAX,
            min_free: 0,
            upload_mode: 0o600,
        }
    }

    /// Makes `path` (an existing directory) the write-only incoming
    /// directory: it and the directories beneath it can be entered and
    /// list empty, whatever their mode; no file beneath it is served.
    pub fn incoming(&mut self, path: &str) -> &mut MemFs {
        self.incoming = VPath::resolve(&VPath::root(), path.as_bytes()).ok();
        self
    }

    /// Appends `bytes` to the upload in progress to `path`, as the data
    /// path would write them; false if there is none.
    pub fn stage(&mut self, path: &str, bytes: &[u8]) -> bool {
        let key = abs(path);
        match self.staged.values_mut().find(|s| s.path == key) {
            Some(s) => {
                s.body.extend_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    /// How many uploads are in progress (temporary files, in the real
    /// layer).
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// The body and mode of the file at `path`, published or not.
    pub fn contents(&self, path: &str) -> Option<(Vec<u8>, u32)> {
        match self.nodes.get(&abs(path)) {
            Some(Node::File { mode, body }) => Some((body.clone(), *mode)),
            _ => None,
        }
    }

    /// Serves `/0` by default and `/NAME` to HOST NAME (`--vhosts`).
    pub fn vhosts(&mut self) -> &mut MemFs {
        self.vhosts = true;
        self
    }

    /// Adds a directory (its parent must be added first to be reachable).
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut MemFs {
        self.nodes.insert(abs(path), Node::Dir { mode });
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, body: &[u8]) -> &mut MemFs {
        let body = body.to_vec();
        self.nodes.insert(abs(path), Node::File { mode, body });
        self
    }

    /// A FIFO, socket or device.
    pub fn other(&mut self, path: &str) -> &mut MemFs {
        self.nodes.insert(abs(path), Node::Other);
        self
    }

    /// Answers `request` for `tree` as the real filesystem layer would.
    pub fn answer(&mut self, tree: &Tree<Mem>, request: FsRequest<Mem>) -> FsAnswer<Mem> {
        let top: &[u8] = match tree {
            Tree::Host(MemTree(dir)) => dir,
            Tree::Default if self.vhosts => b"/0",
            Tree::Default => b"",
        };
        // A path of the tree, as a path of the whole.
        let at = |p: &VPath| -> Vec<u8> {
            match p.is_root() {
                true if top.is_empty() => b"/".to_vec(),
                true => top.to_vec(),
                false => [top, p.as_bytes()].concat(),
            }
        };
        match request {
            FsRequest::Stat(p) => FsAnswer::Stat(self.published(&at(&p))),
            FsRequest::OpenFile(p) => {
                FsAnswer::File(self.published(&at(&p)).and_then(
                    |m| match self.nodes.get(&at(&p)) {
                        Some(Node::File { body, .. }) => Ok((MemFile { body: body.clone() }, m)),
                        _ => Err(FsError::NotFile),
                    },
                ))
            }
            FsRequest::OpenList(p) => {
                FsAnswer::List(self.published(&at(&p)).map(|m| match m.kind {
                    Kind::Dir => Listed::Dir(self.open_dir(&at(&p))),
                    _ => Listed::File(m),
                }))
            }
            FsRequest::Message { dir, file } => FsAnswer::Message(self.message(&at(&dir), file)),
            FsRequest::Host(name) => FsAnswer::Host(self.host(&name)),
            FsRequest::ReadDir(mut dir, mut out) => {
                for (name, meta) in dir.entries.iter().skip(dir.next).take(BATCH) {
                    out.push(name, *meta);
                }
                dir.next = (dir.next + BATCH).min(dir.entries.len());
                let eof = dir.next == dir.entries.len();
                FsAnswer::ReadDir(dir, out, Ok(eof))
            }
            FsRequest::Create { name, .. } => FsAnswer::Created(self.create(top, name)),
            FsRequest::Space(_) => FsAnswer::Space(if self.free >= self.min_free {
                Ok(())
            } else {
                Err(FsError::NoSpace)
            }),
            FsRequest::Commit(u) => FsAnswer::Committed(self.commit(&u)),
            FsRequest::Discard(u) => {
                self.staged.remove(&u.id);
                if let Some(p) = self.committed.remove(&u.id) {
                    self.nodes.remove(&p);
                }
                FsAnswer::Discarded
            }
        }
    }

    /// A new upload in the tree at `top` (a path prefix of the whole).
    fn create(&mut self, top: &[u8], name: UploadName) -> Result<Created<Mem>, FsError> {
        let whole = |p: &VPath| -> Vec<u8> {
            if top.is_empty() {
                p.as_bytes().to_vec()
            } else {
                [top, p.as_bytes()].concat()
            }
        };
        let path = match name {
            UploadName::Named(p) => p,
            UploadName::Unique { dir, base } => {
                let base = base.unwrap_or_else(|| b"upload".to_vec());
                let free = (0..100).find_map(|i| {
                    let mut name = base.clone();
                    if i > 0 {
                        name.extend_from_slice(format!(".{i}").as_bytes());
                    }
                    let p = dir.child(&name)?;
                    (!self.taken(&whole(&p))).then_some(p)
                });
                free.ok_or(FsError::Exists)?
            }
        };
        match self.nodes.get(&whole(&path.parent())) {
            Some(Node::Dir { .. }) => {}
            _ => return Err(FsError::NotFound),
        }
        if self.taken(&whole(&path)) {
            return Err(FsError::Exists);
        }
        if self.free < self.min_free {
            return Err(FsError::NoSpace);
        }
        let id = self.next_upload;
        self.next_upload += 1;
        let staged = Staged {
            path: whole(&path),
            body: Vec::new(),
        };
        self.staged.insert(id, staged);
        Ok(Created {
            upload: MemUpload { id },
            file: MemFile { body: Vec::new() },
            path,
        })
    }

    /// Whether `path` names an entry or an upload in progress.
    fn taken(&self, path: &[u8]) -> bool {
        self.nodes.contains_key(path) || self.staged.values().any(|s| s.path == path)
    }

    fn commit(&mut self, u: &MemUpload) -> Result<(), FsError> {
        let s = self.staged.remove(&u.id).ok_or(FsError::NotFound)?;
        if self.nodes.contains_key(&s.path) {
            return Err(FsError::Exists);
        }
        let node = Node::File {
            mode: self.upload_mode,
            body: s.body,
        };
        self.nodes.insert(s.path.clone(), node);
        self.committed.insert(u.id, s.path);
        Ok(())
    }

    /// Whether `path` (of the whole) lies in the write-only incoming
    /// directory.
    fn in_incoming(&self, path: &[u8]) -> bool {
        let Some(inc) = &self.incoming else {
            return false;
        };
        VPath::resolve(&VPath::root(), path).is_ok_and(|p| within(&p, inc))
    }

    /// A message file of the published directory `dir`: a world-readable
    /// regular file, its first `MAX_BYTES`.
    fn message(&self, dir: &[u8], file: MessageFile) -> Result<Vec<u8>, FsError> {
        if self.published(dir)?.kind != Kind::Dir {
            return Err(FsError::NotFound);
        }
        let path = [dir.strip_suffix(b"/").unwrap_or(dir), b"/", file.name()].concat();
        match self.nodes.get(&path) {
            Some(Node::File { mode, body }) if mode & 0o004 != 0 => {
                Ok(body[..body.len().min(message::MAX_BYTES)].to_vec())
            }
            _ => Err(FsError::NotFound),
        }
    }

    /// The tree of host `name`: the published directory `/NAME`.
    fn host(&self, name: &[u8]) -> Result<HostTree<Mem>, FsError> {
        let dir = VPath::root().child(name).ok_or(FsError::NotFound)?;
        if !self.vhosts || self.published(dir.as_bytes())?.kind != Kind::Dir {
            return Err(FsError::NotFound);
        }
        let banner = self
            .message(dir.as_bytes(), MessageFile::Banner)
            .unwrap_or_default();
        Ok(HostTree {
            tree: MemTree(dir.as_bytes().to_vec()),
            banner,
            uploads: None,
        })
    }

    fn open_dir(&self, dir: &[u8]) -> MemDir {
        if self.in_incoming(dir) {
            // Write-only: nothing uploaded is listed.
            return MemDir {
                entries: Vec::new(),
                next: 0,
            };
        }
        let prefix = if dir == b"/" {
            b"/".to_vec()
        } else {
            let mut p = dir.to_vec();
            p.push(b'/');
            p
        };
        let entries = self
            .nodes
            .keys()
            .filter_map(|k| {
                let name = k.strip_prefix(prefix.as_slice())?;
                if name.is_empty() || name.contains(&b'/') || !listable(name) {
                    return None;
                }
                Some((name.to_vec(), self.published(k).ok()?))
            })
            .collect();
        MemDir { entries, next: 0 }
    }

    /// The facts of a published entry: every directory on the way and the
    /// entry itself public, no hidden name anywhere.
    fn published(&self, path: &[u8]) -> Result<Meta, FsError> {
        let parts: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let mut at = Vec::new();
        for part in parts {
            if part.starts_with(b".") {
                return Err(FsError::NotFound);
            }
            let parent = if at.is_empty() {
                b"/".to_vec()
            } else {
                at.clone()
            };
            match self.nodes.get(&parent) {
                Some(Node::Dir { mode }) if mode & 0o005 == 0o005 => {}
                // The drop box need not be readable: it lists empty anyway.
                Some(Node::Dir { .. }) if self.in_incoming(&parent) => {}
                _ => return Err(FsError::NotFound),
            }
            at.push(b'/');
            at.extend_from_slice(part);
        }
        let key = if at.is_empty() { b"/".to_vec() } else { at };
        let ino = self
            .nodes
            .keys()
            .position(|k| *k == key)
            .ok_or(FsError::NotFound)? as u64;
        let meta = |kind, mode, size| Meta {
            kind,
            size,
            mtime: self.mtime,
            mode,
            nlink: 1,
            dev: 1,
            ino,
        };
        if self.in_incoming(&key) {
            // Write-only: its directories can be entered (to upload), its
            // files do not exist for anonymous users.
            return match self.nodes.get(&key) {
                Some(Node::Dir { mode }) => Ok(meta(Kind::Dir, *mode, 4096)),
                _ => Err(FsError::NotFound),
            };
        }
        match self.nodes.get(&key) {
            Some(Node::File { mode, body }) if mode & 0o004 != 0 => {
                Ok(meta(Kind::File, *mode, body.len() as u64))
            }
            Some(Node::Dir { mode }) if mode & 0o005 == 0o005 => Ok(meta(Kind::Dir, *mode, 4096)),
            _ => Err(FsError::NotFound),
        }
    }
}

fn abs(path: &str) -> Vec<u8> {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        return b"/".to_vec();
    }
    if p.starts_with('/') {
        p.as_bytes().to_vec()
    } else {
        format!("/{p}").into_bytes()
    }
}

/// What a listing may show: no hidden names, no control characters.
fn listable(name: &[u8]) -> bool {
    crate::core::listing::listable_name(name)
}
