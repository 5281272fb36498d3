//! What the core knows of the filesystem: the facts of an entry, a batch
//! of listed entries, and why a request failed. The filesystem layer
//! (`crate::fs`) fills them in; the core only reads them.

use std::io;

/// What kind of entry a path resolves to (after following symlinks inside
/// the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Devices, FIFOs, sockets: never served or listed.
    Other,
}

/// The facts the protocol needs about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
}

impl Meta {
    /// Publicfile's rule: world-readable regular files, world-readable and
    /// -searchable directories. Nothing else is ever served or listed.
    pub fn is_public(&self) -> bool {
        match self.kind {
            Kind::File => self.mode & 0o004 != 0,
            Kind::Dir => self.mode & 0o005 == 0o005,
            Kind::Other => false,
        }
    }
}

/// A batch of directory entries to list: each a name and its facts, in
/// directory order. Only entries that may be listed are in it (the
/// filesystem layer applies the publishing rules); the names share one
/// buffer, so a batch of a thousand entries is two allocations.
#[derive(Debug, Default, Clone)]
pub struct Entries {
    names: Vec<u8>,
    items: Vec<(u32, u32, Meta)>,
}

impl Entries {
    pub fn clear(&mut self) {
        self.names.clear();
        self.items.clear();
    }

    pub fn push(&mut self, name: &[u8], meta: Meta) {
        let start = self.names.len() as u32;
        self.names.extend_from_slice(name);
        self.items.push((start, name.len() as u32, meta));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Entry `i`: its name and facts.
    pub fn get(&self, i: usize) -> Option<(&[u8], &Meta)> {
        let (start, len, meta) = self.items.get(i)?;
        let (start, len) = (*start as usize, *len as usize);
        Some((self.names.get(start..start + len)?, meta))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Meta)> {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// Why a filesystem request failed, in the terms a reply needs.
#[derive(Debug)]
pub enum FsError {
    /// Nothing published by that name: missing, or there but not
    /// published (private, hidden, a FIFO, socket or device, a symlink
    /// leading to any of these, out of the root, nowhere or round in
    /// circles). One variant for all, so that no reply can tell them apart.
    NotFound,
    /// A regular file was required; the name is a published directory.
    NotFile,
    /// A directory was required; the name is a published file.
    NotDir,
    /// A temporary failure (EMFILE, ENFILE, ENOMEM, EAGAIN): try later, 450.
    Busy(io::Error),
    /// An upload's name is taken: by a file, or by another session's
    /// upload in progress. Never replaced: 553.
    Exists,
    /// Not a name or a place for an upload: 553.
    BadName,
    /// Less free space than the operator keeps free (or none): 452.
    NoSpace,
    /// Any other I/O error.
    Io(io::Error),
}
