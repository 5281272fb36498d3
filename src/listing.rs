//! Directory listings, streamed: a [`Lister`] reads a directory a batch at a
//! time and formats lines into a caller's buffer, so a directory of 100,000
//! entries costs a bounded amount of memory.
//!
//! Formats: `ls -l` lines (LIST), EPLF (LIST with `--list-format eplf`),
//! bare names (NLST), RFC 3659 facts (MLSD, MLST). Every line ends in CRLF.
//! Hidden names (leading `.`) and names with control characters are never
//! listed; neither is any entry that is not public, nor a symlink that does
//! not resolve inside the root.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::fs::{Meta, Root};
use crate::vpath::VPath;

/// The LIST format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListFormat {
    /// `ls -l` lines, what every client parses.
    #[default]
    Ls,
    /// Easily Parsed LIST Format (publicfile).
    Eplf,
}

/// The MLST/MLSD facts a session has selected with `OPTS MLST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts(u8);

impl Facts {
    pub const TYPE: Facts = Facts(1);
    pub const SIZE: Facts = Facts(2);
    pub const MODIFY: Facts = Facts(4);
    pub const PERM: Facts = Facts(8);
    pub const UNIQUE: Facts = Facts(16);
    pub const UNIX_MODE: Facts = Facts(32);
    /// Every fact, in FEAT order, with its RFC 3659 name.
    pub const ALL: [(Facts, &'static str); 6] = [
        (Facts::TYPE, "type"),
        (Facts::SIZE, "size"),
        (Facts::MODIFY, "modify"),
        (Facts::PERM, "perm"),
        (Facts::UNIQUE, "unique"),
        (Facts::UNIX_MODE, "unix.mode"),
    ];

    pub const fn empty() -> Facts {
        Facts(0)
    }
    pub const fn all() -> Facts {
        Facts(63)
    }
    pub const fn contains(self, f: Facts) -> bool {
        self.0 & f.0 == f.0
    }
    pub const fn with(self, f: Facts) -> Facts {
        Facts(self.0 | f.0)
    }
}

impl Default for Facts {
    fn default() -> Facts {
        Facts::all()
    }
}

/// Which listing to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    List(ListFormat),
    Nlst,
    Mlsd(Facts),
}

/// A listing in progress, formatted a batch at a time.
pub struct Lister {
    _private: (),
}

impl Lister {
    /// Lists the directory `dir` (an fd from [`Root::open_dir`]) whose
    /// virtual path is `path`. `now_unix` decides the `ls -l` date form
    /// (time of day within six months, year otherwise).
    pub fn dir(root: Arc<Root>, dir: OwnedFd, path: VPath, style: Style, now_unix: i64) -> Lister {
        let _ = (root, dir, path, style, now_unix);
        todo!("listing::Lister::dir")
    }

    /// A listing of one entry (LIST or NLST naming a file).
    pub fn single(name: &[u8], meta: &Meta, style: Style, now_unix: i64) -> Lister {
        let _ = (name, meta, style, now_unix);
        todo!("listing::Lister::single")
    }

    /// Appends whole lines to `out` until it holds at least `limit` bytes or
    /// the listing ends. Returns `Ok(true)` once the listing is complete.
    pub fn fill(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
        let _ = (out, limit);
        todo!("listing::Lister::fill")
    }
}

/// One `ls -l` line for `name`, CRLF-terminated.
pub fn ls_line(out: &mut Vec<u8>, name: &[u8], meta: &Meta, now_unix: i64) {
    let _ = (out, name, meta, now_unix);
    todo!("listing::ls_line")
}

/// One EPLF line for `name`, CRLF-terminated.
pub fn eplf_line(out: &mut Vec<u8>, name: &[u8], meta: &Meta) {
    let _ = (out, name, meta);
    todo!("listing::eplf_line")
}

/// RFC 3659 facts then `' '` then `name`, CRLF-terminated (no leading
/// space: MLST adds its own). `perm` is what this read-only session may do:
/// `r` on files, `el` on directories.
pub fn mlsx_line(out: &mut Vec<u8>, name: &[u8], meta: &Meta, facts: Facts) {
    let _ = (out, name, meta, facts);
    todo!("listing::mlsx_line")
}

/// `YYYYMMDDHHMMSS` in UTC, for MDTM and the `modify` fact.
pub fn utc_timestamp(unix: i64) -> [u8; 14] {
    let _ = unix;
    todo!("listing::utc_timestamp")
}

/// Whether a directory entry may appear in a listing at all: not hidden,
/// no control characters, not empty.
pub fn listable_name(name: &[u8]) -> bool {
    !name.is_empty() && name[0] != b'.' && !name.iter().any(|&b| b < 0x20 || b == 0x7f)
}
