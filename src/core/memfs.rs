//! An in-memory tree that answers the session's filesystem requests with
//! the same publishing rules as the real one (`crate::fs`): the core's
//! unit tests and the `session` fuzz target drive a session with it, so
//! they need no disk. Symlinks are the real layer's business and are not
//! modelled here.

use std::collections::BTreeMap;

use super::meta::{FsError, Kind, Meta};
use super::session::{FsAnswer, FsRequest, Handles, Listed};
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
}

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
        }
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

    /// Answers `request` as the real filesystem layer would.
    pub fn answer(&self, request: FsRequest<Mem>) -> FsAnswer<Mem> {
        match request {
            FsRequest::Stat(p) => FsAnswer::Stat(self.published(p.as_bytes())),
            FsRequest::OpenFile(p) => FsAnswer::File(self.published(p.as_bytes()).and_then(|m| {
                match self.nodes.get(p.as_bytes()) {
                    Some(Node::File { body, .. }) => Ok((MemFile { body: body.clone() }, m)),
                    _ => Err(FsError::NotFile),
                }
            })),
            FsRequest::OpenList(p) => {
                FsAnswer::List(self.published(p.as_bytes()).map(|m| match m.kind {
                    Kind::Dir => Listed::Dir(self.open_dir(&p)),
                    _ => Listed::File(m),
                }))
            }
            FsRequest::ReadDir(mut dir, mut out) => {
                for (name, meta) in dir.entries.iter().skip(dir.next).take(BATCH) {
                    out.push(name, *meta);
                }
                dir.next = (dir.next + BATCH).min(dir.entries.len());
                let eof = dir.next == dir.entries.len();
                FsAnswer::ReadDir(dir, out, Ok(eof))
            }
        }
    }

    fn open_dir(&self, dir: &VPath) -> MemDir {
        let prefix = if dir.is_root() {
            b"/".to_vec()
        } else {
            let mut p = dir.as_bytes().to_vec();
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
