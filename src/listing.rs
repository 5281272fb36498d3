//! Directory listings, streamed: a [`Lister`] reads a directory a batch at a
//! time and formats lines into a caller's buffer, so a directory of 100,000
//! entries costs a bounded amount of memory.
//!
//! Formats: `ls -l` lines (LIST), EPLF (LIST with `--list-format eplf`),
//! bare names (NLST), RFC 3659 facts (MLSD, MLST). Every line ends in CRLF.
//! Hidden names (leading `.`) and names with control characters are never
//! listed; neither is any entry that is not public, nor a symlink that does
//! not resolve inside the root.

use std::ffi::CStr;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use rustix::fs::{AtFlags, Dir, FileType, statx};

use crate::fs::{Kind, Meta, Root, STATX_FIELDS};
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
    state: State,
}

enum State {
    /// Reading a directory, one `getdents` buffer at a time.
    Dir(Box<DirListing>),
    /// One formatted line, not yet handed out.
    Line(Vec<u8>),
    /// The directory could not be read; reported by the next `fill`.
    Failed(io::Error),
    Done,
}

struct DirListing {
    root: Arc<Root>,
    dir: Dir,
    path: VPath,
    style: Style,
    now_unix: i64,
    batch: Batch,
    /// The directory has no more entries beyond `batch`.
    eof: bool,
    /// (device, inode) of the listed directory and of each one above it,
    /// found when a symlink to a directory first needs them.
    lineage: OnceLock<Vec<(u64, u64)>>,
}

impl Lister {
    /// Lists the directory `dir` (an fd from [`Root::open_dir`]) whose
    /// virtual path is `path`. `now_unix` decides the `ls -l` date form
    /// (time of day within six months, year otherwise).
    pub fn dir(root: Arc<Root>, dir: OwnedFd, path: VPath, style: Style, now_unix: i64) -> Lister {
        let state = match Dir::new(dir) {
            Ok(dir) => State::Dir(Box::new(DirListing {
                root,
                dir,
                path,
                style,
                now_unix,
                batch: Batch::default(),
                eof: false,
                lineage: OnceLock::new(),
            })),
            Err(e) => State::Failed(e.into()),
        };
        Lister { state }
    }

    /// A listing of one entry (LIST or NLST naming a file).
    pub fn single(name: &[u8], meta: &Meta, style: Style, now_unix: i64) -> Lister {
        let mut line = Vec::new();
        format_line(&mut line, name, meta, style, now_unix);
        Lister {
            state: State::Line(line),
        }
    }

    /// Appends whole lines to `out` until it holds at least `limit` bytes or
    /// the listing ends. Returns `Ok(true)` once the listing is complete.
    pub fn fill(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Dir(mut listing) => {
                let finished = listing.fill(out, limit)?;
                if !finished {
                    self.state = State::Dir(listing);
                }
                Ok(finished)
            }
            State::Line(line) => {
                out.extend_from_slice(&line);
                Ok(true)
            }
            State::Failed(e) => Err(e),
            State::Done => Ok(true),
        }
    }
}

/// Entries read from the directory at most this many at a time, all
/// stat-ed before any is formatted: a few tens of KiB whatever the
/// directory's size.
const BATCH: usize = 1024;
/// A batch with this many entries to stat is shared with a second thread.
const PARALLEL_MIN: usize = 64;
/// Entries a thread takes at a time from a shared batch.
const CHUNK: usize = 16;
/// The helper thread's stack: it only stats.
const HELPER_STACK: usize = 64 * 1024;

/// Names read ahead, with their facts once stat-ed.
#[derive(Default)]
struct Batch {
    /// Every name with its NUL, one after another.
    names: Vec<u8>,
    /// Where each name starts and ends (its NUL) in `names`.
    spans: Vec<(usize, usize)>,
    /// What to list for each name; `None` leaves it out.
    metas: Vec<Option<Meta>>,
    /// The next entry to format.
    next: usize,
}

impl Batch {
    fn name(&self, i: usize) -> &CStr {
        name_at(&self.names, self.spans[i])
    }
}

fn name_at(names: &[u8], (start, end): (usize, usize)) -> &CStr {
    // Built from a CStr with its one NUL at `end`: cannot fail.
    CStr::from_bytes_with_nul(&names[start..=end]).unwrap_or_default()
}

impl DirListing {
    fn fill(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
        while out.len() < limit {
            if self.batch.next == self.batch.spans.len() {
                if self.eof {
                    return Ok(true);
                }
                self.read_batch()?;
                continue;
            }
            let i = self.batch.next;
            self.batch.next += 1;
            if let Some(meta) = &self.batch.metas[i] {
                let name = self.batch.name(i).to_bytes();
                format_line(out, name, meta, self.style, self.now_unix);
            }
        }
        Ok(false)
    }

    /// Reads up to [`BATCH`] listable names and stats them.
    fn read_batch(&mut self) -> io::Result<()> {
        let batch = &mut self.batch;
        batch.names.clear();
        batch.spans.clear();
        batch.next = 0;
        while batch.spans.len() < BATCH {
            let entry = match self.dir.read() {
                None => {
                    self.eof = true;
                    break;
                }
                Some(entry) => entry?,
            };
            let name = entry.file_name().to_bytes_with_nul();
            if !listable_name(&name[..name.len() - 1]) || !may_be_public(entry.file_type()) {
                continue;
            }
            let start = batch.names.len();
            batch.names.extend_from_slice(name);
            batch.spans.push((start, batch.names.len() - 1));
        }
        batch.metas.clear();
        batch.metas.resize(batch.spans.len(), None);
        let lookup = Lookup {
            root: &self.root,
            dir: self.dir.fd()?,
            path: &self.path,
            lineage: &self.lineage,
        };
        lookup.stat_all(&batch.names, &batch.spans, &mut batch.metas);
        Ok(())
    }
}

/// Stats the entries of one directory.
#[derive(Clone, Copy)]
struct Lookup<'a> {
    root: &'a Root,
    dir: BorrowedFd<'a>,
    path: &'a VPath,
    lineage: &'a OnceLock<Vec<(u64, u64)>>,
}

impl Lookup<'_> {
    /// Fills `metas[i]` for the name at `spans[i]` in `names`. The kernel's lookup of each name
    /// is the whole cost of a large listing (our formatting is under a
    /// tenth), and it waits on memory more than it computes, so a large
    /// batch is shared with a second thread: the two take chunks in turn,
    /// and if the helper cannot be made, or gets no CPU, this thread
    /// simply does it all.
    fn stat_all(self, names: &[u8], spans: &[(usize, usize)], metas: &mut [Option<Meta>]) {
        let chunks = Mutex::new(spans.chunks(CHUNK).zip(metas.chunks_mut(CHUNK)));
        let work = || {
            loop {
                let Some((spans, metas)) = chunks.lock().ok().and_then(|mut c| c.next()) else {
                    return;
                };
                for (&span, meta) in spans.iter().zip(metas) {
                    *meta = self.entry_meta(name_at(names, span));
                }
            }
        };
        if spans.len() < PARALLEL_MIN {
            return work();
        }
        thread::scope(|s| {
            // A failed spawn (no threads left, or a sandbox that forbids
            // them) only costs the speed-up.
            let _helper = thread::Builder::new()
                .stack_size(HELPER_STACK)
                .spawn_scoped(s, work);
            work();
        });
    }

    /// The facts to list for entry `name`, or `None` to leave it out: not
    /// public, gone, unreadable, a symlink that does not resolve inside
    /// the root, or one that leads back up ([`Lookup::loops_back`]). One
    /// `statx` against the directory fd; a symlink costs one more lookup,
    /// confined like every other.
    fn entry_meta(self, name: &CStr) -> Option<Meta> {
        let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC;
        let st = statx(self.dir, name, flags, STATX_FIELDS).ok()?;
        let meta = if FileType::from_raw_mode(u32::from(st.stx_mode) as _) == FileType::Symlink {
            let child = self.path.child(name.to_bytes())?;
            let meta = self.root.stat_entry(&child).ok()?;
            if meta.kind == Kind::Dir && self.loops_back(&meta) {
                return None;
            }
            meta
        } else {
            Meta::from_statx(&st)
        };
        meta.is_public().then_some(meta)
    }
}

impl Lookup<'_> {
    /// Whether directory `meta` is the listed one or one above it. Links
    /// are listed as what they point to, so a link to `.`, `..` or `/`
    /// would show a directory that contains itself, and a mirroring
    /// client would copy the tree again inside itself until the kernel's
    /// limit on symlinks in a path.
    fn loops_back(self, meta: &Meta) -> bool {
        let lineage = self.lineage.get_or_init(|| {
            let root = VPath::root();
            let here = (*self.path != root).then(|| self.path.clone());
            std::iter::once(root)
                .chain(self.path.ancestors())
                .chain(here)
                .filter_map(|d| self.root.stat_entry(&d).ok())
                .map(|m| (m.dev, m.ino))
                .collect()
        });
        lineage.contains(&(meta.dev, meta.ino))
    }
}

/// Whether a `d_type` leaves any chance of a public entry, so FIFOs,
/// sockets and devices cost no `stat` at all.
fn may_be_public(t: FileType) -> bool {
    matches!(
        t,
        FileType::RegularFile | FileType::Directory | FileType::Symlink | FileType::Unknown
    )
}

fn format_line(out: &mut Vec<u8>, name: &[u8], meta: &Meta, style: Style, now_unix: i64) {
    match style {
        Style::List(ListFormat::Ls) => ls_line(out, name, meta, now_unix),
        Style::List(ListFormat::Eplf) => eplf_line(out, name, meta),
        Style::Nlst => {
            out.extend_from_slice(name);
            out.extend_from_slice(b"\r\n");
        }
        Style::Mlsd(facts) => mlsx_line(out, name, meta, facts),
    }
}

/// Formats into a byte buffer; writing to a `Vec` cannot fail.
fn push_fmt(out: &mut Vec<u8>, args: fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
}

/// `ls -l` shows the time of day for entries from the last six months (and
/// up to an hour ahead, for clock skew), the year otherwise.
const SIX_MONTHS: i64 = 15_778_800;
const SKEW: i64 = 3600;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One `ls -l` line for `name`, CRLF-terminated.
pub fn ls_line(out: &mut Vec<u8>, name: &[u8], meta: &Meta, now_unix: i64) {
    // Owner and group are always `ftp`: real account names are nobody's
    // business. Column widths are those of vsftpd, which clients parse.
    let perms = permissions(meta);
    let perms = String::from_utf8_lossy(&perms);
    push_fmt(
        out,
        format_args!(
            "{perms} {:>4} ftp      ftp      {:>8} ",
            meta.nlink, meta.size
        ),
    );
    ls_date(out, meta.mtime, now_unix);
    out.push(b' ');
    out.extend_from_slice(name);
    out.extend_from_slice(b"\r\n");
}

/// `drwxr-xr-x`, with the setuid, setgid and sticky letters in place of the
/// execute bits they share a column with.
fn permissions(meta: &Meta) -> [u8; 10] {
    let m = meta.mode;
    let special = |set: bool, exec: bool, letter: u8| match (set, exec) {
        (true, true) => letter,
        (true, false) => letter.to_ascii_uppercase(),
        (false, true) => b'x',
        (false, false) => b'-',
    };
    let bit = |mask: u32, c: u8| if m & mask != 0 { c } else { b'-' };
    [
        if meta.kind == Kind::Dir { b'd' } else { b'-' },
        bit(0o400, b'r'),
        bit(0o200, b'w'),
        special(m & 0o4000 != 0, m & 0o100 != 0, b's'),
        bit(0o040, b'r'),
        bit(0o020, b'w'),
        special(m & 0o2000 != 0, m & 0o010 != 0, b's'),
        bit(0o004, b'r'),
        bit(0o002, b'w'),
        special(m & 0o1000 != 0, m & 0o001 != 0, b't'),
    ]
}

/// `Nov 21 06:00` when recent, `Nov 21  2019` otherwise.
fn ls_date(out: &mut Vec<u8>, mtime: i64, now_unix: i64) {
    let t = Civil::from_unix(mtime);
    let month = MONTHS[(t.month - 1) as usize];
    let recent =
        mtime > now_unix.saturating_sub(SIX_MONTHS) && mtime <= now_unix.saturating_add(SKEW);
    if recent {
        push_fmt(
            out,
            format_args!("{month} {:>2} {:02}:{:02}", t.day, t.hour, t.minute),
        );
    } else {
        push_fmt(out, format_args!("{month} {:>2}  {}", t.day, t.year));
    }
}

/// One EPLF line for `name`, CRLF-terminated.
pub fn eplf_line(out: &mut Vec<u8>, name: &[u8], meta: &Meta) {
    let mtime = meta.mtime.max(0);
    push_fmt(out, format_args!("+i{}.{},m{mtime},", meta.dev, meta.ino));
    match meta.kind {
        Kind::Dir => out.extend_from_slice(b"/,"),
        _ => push_fmt(out, format_args!("s{},r,", meta.size)),
    }
    out.push(b'\t');
    out.extend_from_slice(name);
    out.extend_from_slice(b"\r\n");
}

/// RFC 3659 facts then `' '` then `name`, CRLF-terminated (no leading
/// space: MLST adds its own). `perm` is what this read-only session may do:
/// `r` on files, `el` on directories.
pub fn mlsx_line(out: &mut Vec<u8>, name: &[u8], meta: &Meta, facts: Facts) {
    let is_dir = meta.kind == Kind::Dir;
    if facts.contains(Facts::TYPE) {
        out.extend_from_slice(if is_dir { b"type=dir;" } else { b"type=file;" });
    }
    // RFC 3659 7.5.7: size applies to non-directory types only.
    if facts.contains(Facts::SIZE) && !is_dir {
        push_fmt(out, format_args!("size={};", meta.size));
    }
    if facts.contains(Facts::MODIFY) {
        out.extend_from_slice(b"modify=");
        out.extend_from_slice(&utc_timestamp(meta.mtime));
        out.push(b';');
    }
    if facts.contains(Facts::PERM) {
        out.extend_from_slice(if is_dir { b"perm=el;" } else { b"perm=r;" });
    }
    if facts.contains(Facts::UNIQUE) {
        push_fmt(out, format_args!("unique={:x}g{:x};", meta.dev, meta.ino));
    }
    if facts.contains(Facts::UNIX_MODE) {
        push_fmt(out, format_args!("unix.mode={:04o};", meta.mode & 0o7777));
    }
    out.push(b' ');
    out.extend_from_slice(name);
    out.extend_from_slice(b"\r\n");
}

/// The last second a 14-digit timestamp can show: 9999-12-31 23:59:59.
const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// `YYYYMMDDHHMMSS` in UTC, for MDTM and the `modify` fact.
pub fn utc_timestamp(unix: i64) -> [u8; 14] {
    let t = Civil::from_unix(unix.clamp(0, MAX_TIMESTAMP));
    let mut out = [b'0'; 14];
    let fields = [
        (0, 4, t.year as u32),
        (4, 2, t.month),
        (6, 2, t.day),
        (8, 2, t.hour),
        (10, 2, t.minute),
        (12, 2, t.second),
    ];
    for (at, width, mut value) in fields {
        for digit in out[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out
}

/// `Www Mmm dd hh:mm:ss yyyy` in UTC, as `ctime(3)` and `date` print it
/// (day of month padded with a space: `Sat Nov  1 06:00:00 2026`), for
/// the xferlog.
pub fn ctime_utc(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let t = Civil::from_unix(unix.clamp(0, MAX_TIMESTAMP));
    // 1970-01-01 was a Thursday.
    let weekday = (unix.clamp(0, MAX_TIMESTAMP).div_euclid(86_400) + 4).rem_euclid(7) as usize;
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[weekday],
        MONTHS[(t.month - 1) as usize],
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.year
    )
}

/// A UTC calendar date and time of day.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Civil {
    fn from_unix(unix: i64) -> Civil {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }
}

/// Year, month (1-12), day (1-31) of a day count since 1970-01-01, in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days end each 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether a directory entry may appear in a listing at all: not hidden,
/// no control characters, not empty.
pub fn listable_name(name: &[u8]) -> bool {
    !name.is_empty() && name[0] != b'.' && !name.iter().any(|&b| b < 0x20 || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_tree::TempTree;
    use std::collections::HashMap;

    /// 2023-11-14 22:13:20 UTC.
    const NOW: i64 = 1_700_000_000;

    fn file(size: u64, mtime: i64, mode: u32) -> Meta {
        Meta {
            kind: Kind::File,
            size,
            mtime,
            mode,
            nlink: 1,
            dev: 2049,
            ino: 1_234_567,
        }
    }

    fn dir(mtime: i64) -> Meta {
        Meta {
            kind: Kind::Dir,
            size: 4096,
            mtime,
            mode: 0o755,
            nlink: 2,
            dev: 2049,
            ino: 255,
        }
    }

    fn ls(name: &[u8], meta: &Meta) -> String {
        let mut out = Vec::new();
        ls_line(&mut out, name, meta, NOW);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ls_recent_and_old() {
        // 2023-11-14 06:00 UTC: same day.
        let recent = NOW - 16 * 3600 - 13 * 60 - 20;
        assert_eq!(
            ls(b"pub", &dir(recent)),
            "drwxr-xr-x    2 ftp      ftp          4096 Nov 14 06:00 pub\r\n"
        );
        // 2000-02-29 00:00 UTC: years ago.
        assert_eq!(
            ls(b"README", &file(1234, 951_782_400, 0o644)),
            "-rw-r--r--    1 ftp      ftp          1234 Feb 29  2000 README\r\n"
        );
        // A day over six months ago shows the year; a day under, the time.
        let m = file(0, NOW - SIX_MONTHS - 86_400, 0o644);
        assert!(ls(b"a", &m).contains(" May 15  2023 a"), "{}", ls(b"a", &m));
        let m = file(0, NOW - SIX_MONTHS + 86_400, 0o644);
        assert!(ls(b"a", &m).contains(" May 17 07:13 a"), "{}", ls(b"a", &m));
        // Up to an hour in the future is recent; more is not.
        assert!(ls(b"a", &file(0, NOW + 3600, 0o644)).contains("Nov 14 23:13 a"));
        assert!(ls(b"a", &file(0, NOW + 3601, 0o644)).contains("Nov 14  2023 a"));
        // Before the epoch: still a date, never a panic.
        assert!(ls(b"a", &file(0, -1, 0o644)).contains("Dec 31  1969 a"));
    }

    #[test]
    fn ls_large_sizes_and_special_bits() {
        assert_eq!(
            ls(b"big.iso", &file(123_456_789_012_345, 951_782_400, 0o644)),
            "-rw-r--r--    1 ftp      ftp      123456789012345 Feb 29  2000 big.iso\r\n"
        );
        let perms = |mode, kind| {
            let mut m = file(0, 0, mode);
            m.kind = kind;
            String::from_utf8(permissions(&m).to_vec()).unwrap()
        };
        assert_eq!(perms(0o4755, Kind::File), "-rwsr-xr-x");
        assert_eq!(perms(0o4644, Kind::File), "-rwSr--r--");
        assert_eq!(perms(0o2755, Kind::File), "-rwxr-sr-x");
        assert_eq!(perms(0o2745, Kind::File), "-rwxr-Sr-x");
        assert_eq!(perms(0o1777, Kind::Dir), "drwxrwxrwt");
        assert_eq!(perms(0o1776, Kind::Dir), "drwxrwxrwT");
        assert_eq!(perms(0o0000, Kind::File), "----------");
    }

    #[test]
    fn eplf() {
        let mut out = Vec::new();
        eplf_line(&mut out, b"pub", &dir(951_782_400));
        eplf_line(&mut out, b"README", &file(1234, 951_782_400, 0o644));
        assert_eq!(
            out,
            b"+i2049.255,m951782400,/,\tpub\r\n+i2049.1234567,m951782400,s1234,r,\tREADME\r\n"
        );
    }

    #[test]
    fn mlsx() {
        let mut out = Vec::new();
        mlsx_line(&mut out, b"README", &file(1234, NOW, 0o644), Facts::all());
        mlsx_line(&mut out, b"pub", &dir(951_782_400), Facts::all());
        let some = Facts::empty().with(Facts::TYPE).with(Facts::MODIFY);
        mlsx_line(&mut out, b"x y", &file(1, NOW, 0o4755), some);
        let mode = Facts::empty().with(Facts::UNIX_MODE).with(Facts::SIZE);
        mlsx_line(&mut out, b"x", &file(1, NOW, 0o4755), mode);
        mlsx_line(&mut out, b"bare", &dir(0), Facts::empty());
        let expected = concat!(
            "type=file;size=1234;modify=20231114221320;perm=r;unique=801g12d687;unix.mode=0644; README\r\n",
            "type=dir;modify=20000229000000;perm=el;unique=801gff;unix.mode=0755; pub\r\n",
            "type=file;modify=20231114221320; x y\r\n",
            "size=1;unix.mode=4755; x\r\n",
            " bare\r\n",
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn timestamps() {
        let ts = |t| String::from_utf8(utc_timestamp(t).to_vec()).unwrap();
        assert_eq!(ts(0), "19700101000000");
        assert_eq!(ts(-86_400), "19700101000000");
        assert_eq!(ts(951_782_400), "20000229000000");
        assert_eq!(ts(951_868_799), "20000229235959");
        assert_eq!(ts(951_868_800), "20000301000000");
        assert_eq!(ts(1_700_000_000), "20231114221320");
        assert_eq!(ts(4_102_444_800), "21000101000000");
        assert_eq!(ts(i64::MAX), "99991231235959");
    }

    #[test]
    fn lister_can_move_between_threads() {
        // The supervisor's workers own sessions, and sessions own listings.
        fn send<T: Send>() {}
        send::<Lister>();
    }

    #[test]
    fn single_entries() {
        let meta = file(5, NOW, 0o644);
        let mut out = Vec::new();
        let mut l = Lister::single(b"f", &meta, Style::Nlst, NOW);
        assert!(l.fill(&mut out, 0).unwrap());
        assert!(l.fill(&mut out, 4096).unwrap());
        assert_eq!(out, b"f\r\n");
        out.clear();
        let mut l = Lister::single(b"f", &meta, Style::List(ListFormat::Ls), NOW);
        assert!(l.fill(&mut out, 4096).unwrap());
        assert_eq!(
            out,
            b"-rw-r--r--    1 ftp      ftp             5 Nov 14 22:13 f\r\n"
        );
    }

    /// Lists `path` in `style`, a small batch at a time.
    fn list(root: &Arc<Root>, path: &str, style: Style) -> Vec<Vec<u8>> {
        let path = VPath::resolve(&VPath::root(), path.as_bytes()).unwrap();
        let (fd, _) = root.open_dir(&path).unwrap();
        let mut lister = Lister::dir(root.clone(), fd, path, style, NOW);
        let mut out = Vec::new();
        // `limit` counts what `out` holds, so each batch grows it by ~100.
        loop {
            let limit = out.len() + 100;
            if lister.fill(&mut out, limit).unwrap() {
                break;
            }
        }
        let mut lines: Vec<Vec<u8>> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| l.strip_suffix(b"\r").unwrap().to_vec())
            .collect();
        lines.sort();
        lines
    }

    fn archive() -> TempTree {
        let t = TempTree::new("listing");
        t.dir("pub", 0o755);
        t.file("pub/readme", 0o644, b"hello\n");
        t.file("pub/secret", 0o600, b"secret\n");
        t.dir("pub/sub", 0o755);
        t.dir("pub/private", 0o700);
        t.dir("pub/noexec", 0o744);
        t.fifo("pub/fifo", 0o644);
        t.file("pub/.hidden", 0o644, b"hidden\n");
        t.file("pub/new\nline", 0o644, b"x");
        t.file("pub/del\x7f", 0o644, b"x");
        t.file(b"pub/caf\xe9", 0o644, b"x");
        t.symlink("pub/link", "readme");
        t.symlink("pub/subdirlink", "sub");
        t.symlink("pub/passwd", "/etc/passwd");
        t.symlink("pub/escape", "../../..");
        t.symlink("pub/dangling", "nothere");
        t.symlink("pub/loop", "loop");
        t.symlink("pub/fifolink", "fifo");
        t.symlink("pub/secretlink", "secret");
        t.symlink("pub/.hiddenlink", "readme");
        t
    }

    #[test]
    fn lists_only_public_entries() {
        let t = archive();
        let root = Arc::new(Root::open(&t.path).unwrap());
        let names = list(&root, "/pub", Style::Nlst);
        let expected: Vec<&[u8]> = vec![b"caf\xe9", b"link", b"readme", b"sub", b"subdirlink"];
        assert_eq!(names, expected);
    }

    #[test]
    fn symlinks_show_their_target_never_the_link() {
        let t = archive();
        t.dir("etc", 0o755);
        t.file("etc/passwd", 0o644, b"root:x:0:0::/:/bin/sh\n");
        let root = Arc::new(Root::open(&t.path).unwrap());
        let lines = list(&root, "/pub", Style::List(ListFormat::Ls));
        let find = |name: &str| {
            lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .find(|l| l.ends_with(&format!(" {name}")))
        };
        let passwd = find("passwd").expect("absolute link resolves inside the root");
        assert!(passwd.starts_with("-rw-r--r--    1 ftp      ftp            22 "));
        let link = find("link").unwrap();
        assert!(link.starts_with("-rw-r--r--    1 ftp      ftp             6 "));
        assert!(find("subdirlink").unwrap().starts_with("drwxr-xr-x"));
        // ../../.. stops at the root: a directory above this one.
        assert_eq!(find("escape"), None);
        for l in &lines {
            assert!(!l.starts_with(b"l") && !l.windows(2).any(|w| w == b"->"));
        }
    }

    /// A link to the listed directory or one above it would show a tree
    /// that contains itself; links elsewhere, even to directories, stay.
    #[test]
    fn links_that_lead_back_up_are_left_out() {
        let t = TempTree::new("loops");
        for d in ["a", "a/b", "a/b/c", "other"] {
            t.dir(d, 0o755);
        }
        for (link, target) in [
            ("a/b/self", "."),
            ("a/b/up", ".."),
            ("a/b/top", "/"),
            ("a/b/again", "/a/b"),
            ("a/b/far", "../../a"),
            ("a/b/down", "c"),
            ("a/b/across", "../../other"),
            ("a/b/slash-c", "/a/b/c"),
        ] {
            t.symlink(link, target);
        }
        let root = Arc::new(Root::open(&t.path).unwrap());
        let names = list(&root, "/a/b", Style::Nlst);
        let expected: Vec<&[u8]> = vec![b"across", b"c", b"down", b"slash-c"];
        assert_eq!(names, expected);
        // The same links seen from elsewhere are plain directories.
        t.symlink("other/to-a", "/a");
        assert_eq!(list(&root, "/other", Style::Nlst), vec![b"to-a".to_vec()]);
    }

    #[test]
    fn styles_in_a_directory() {
        let t = TempTree::new("styles");
        t.file("f", 0o644, b"abc");
        t.dir("d", 0o755);
        let root = Arc::new(Root::open(&t.path).unwrap());
        let facts = Facts::empty().with(Facts::TYPE).with(Facts::SIZE);
        let lines = list(&root, "/", Style::Mlsd(facts));
        assert_eq!(
            lines,
            vec![b"type=dir; d".to_vec(), b"type=file;size=3; f".to_vec()]
        );
        let lines = list(&root, "/", Style::List(ListFormat::Eplf));
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.starts_with(b"+i")));
        assert!(lines.iter().any(|l| l.ends_with(b",/,\td")));
        assert!(lines.iter().any(|l| l.ends_with(b",s3,r,\tf")));
    }

    /// Batches are stat-ed by two threads in chunks: every fact must
    /// still land on its own name. Each file's size is its number, and
    /// the private ones and the links out of the root must stay out.
    #[test]
    fn each_entry_keeps_its_own_facts_across_threads() {
        const N: usize = 3 * BATCH + 77;
        let t = TempTree::new("facts");
        t.dir("d", 0o755);
        t.file("target", 0o644, b"");
        let mut expected = HashMap::new();
        for i in 0..N {
            let name = format!("e{i:05}");
            match i % 5 {
                0 => t.file(format!("d/{name}"), 0o600, b""),
                1 => t.symlink(format!("d/{name}"), "/etc/passwd"),
                2 => {
                    t.symlink(format!("d/{name}"), "../target");
                    expected.insert(name, 0);
                }
                _ => {
                    t.file(format!("d/{name}"), 0o644, &vec![b'x'; i]);
                    expected.insert(name, i);
                }
            }
        }
        let root = Arc::new(Root::open(&t.path).unwrap());
        let mut seen = HashMap::new();
        for line in list(&root, "/d", Style::List(ListFormat::Ls)) {
            let line = String::from_utf8(line).unwrap();
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (size, name) = (fields[4], fields[fields.len() - 1]);
            assert!(
                seen.insert(name.to_string(), size.parse::<usize>().unwrap())
                    .is_none()
            );
        }
        assert_eq!(seen, expected);
    }

    #[test]
    fn large_directory_streams_in_bounded_batches() {
        const N: usize = 5000;
        const LIMIT: usize = 4096;
        let t = TempTree::new("big");
        t.dir("big", 0o755);
        for i in 0..N {
            t.file(format!("big/file-{i:05}"), 0o644, b"");
        }
        let root = Arc::new(Root::open(&t.path).unwrap());
        let path = VPath::resolve(&VPath::root(), b"/big").unwrap();
        let (fd, _) = root.open_dir(&path).unwrap();
        let mut lister = Lister::dir(root, fd, path, Style::List(ListFormat::Ls), NOW);
        let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut calls = 0;
        let mut out = Vec::new();
        loop {
            out.clear();
            let done = lister.fill(&mut out, LIMIT).unwrap();
            calls += 1;
            // At most one line beyond the limit.
            assert!(out.len() < LIMIT + 512, "batch of {} bytes", out.len());
            assert!(out.is_empty() || out.ends_with(b"\r\n"));
            for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let name = line.rsplit(|&b| b == b' ').next().unwrap();
                let name = name.strip_suffix(b"\r").unwrap().to_vec();
                *seen.entry(name).or_default() += 1;
            }
            if done {
                break;
            }
        }
        assert!(calls > 50, "{calls} calls");
        assert_eq!(seen.len(), N);
        assert!(seen.values().all(|&n| n == 1));
        assert!(seen.contains_key(b"file-04999".as_slice()));
        // Finished listings stay finished.
        out.clear();
        assert!(lister.fill(&mut out, LIMIT).unwrap());
        assert!(out.is_empty());
    }
}
