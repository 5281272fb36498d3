//! Reading a directory for a listing: a batch of names at a time, each
//! stat-ed against the directory's descriptor, with the publishing rules
//! applied (hidden and control-character names, entries that are not
//! published, symlinks whose target is not, or that lead back up). What
//! is left goes to the core as [`Entries`] to format.

use std::ffi::CStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::thread;

use rustix::fs::{AtFlags, Dir, FileType, statx};

use super::walk::{Chain, Found, Walk};
use super::{OpenDir, Root, STATX_FIELDS, meta_from_statx};
use crate::core::listing::listable_name;
use crate::core::meta::{Entries, Meta};

/// A directory being read, a batch at a time.
pub struct DirReader {
    root: Arc<Root>,
    dir: Dir,
    /// The physical path of the directory: symlink entries resolve from it.
    chain: Chain,
    batch: Batch,
    /// The directory has no more entries.
    eof: bool,
    /// (device, inode) of the root, of each directory on the way and of
    /// the listed one: a symlink entry to any of them is left out.
    lineage: Vec<(u64, u64)>,
}

impl DirReader {
    /// Reads the directory `dir` (from [`Root::open_dir`]). Its entries
    /// resolve from where it physically is.
    pub fn new(root: Arc<Root>, dir: OpenDir) -> io::Result<DirReader> {
        let OpenDir { fd, chain } = dir;
        let lineage = chain.ids().collect();
        Ok(DirReader {
            root,
            dir: Dir::new(fd)?,
            chain,
            batch: Batch::default(),
            eof: false,
            lineage,
        })
    }

    /// A reader of `dir` that lists nothing: the drop box is write-only
    /// (`fs::incoming`).
    pub fn empty(root: Arc<Root>, dir: OpenDir) -> io::Result<DirReader> {
        let mut r = DirReader::new(root, dir)?;
        r.eof = true;
        Ok(r)
    }

    /// Appends the listable entries among the next `BATCH` names of the
    /// directory to `out`. `Ok(true)` once the directory is exhausted.
    pub fn read_batch(&mut self, out: &mut Entries) -> io::Result<bool> {
        if self.eof {
            return Ok(true);
        }
        self.read_names()?;
        let batch = &self.batch;
        for (i, meta) in batch.metas.iter().enumerate() {
            if let Some(meta) = meta {
                out.push(batch.name(i).to_bytes(), *meta);
            }
        }
        Ok(self.eof)
    }

    /// Reads up to [`BATCH`] listable names and stats them.
    fn read_names(&mut self) -> io::Result<()> {
        let batch = &mut self.batch;
        batch.names.clear();
        batch.spans.clear();
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
            chain: &self.chain,
            lineage: &self.lineage,
        };
        lookup.stat_all(&batch.names, &batch.spans, &mut batch.metas);
        Ok(())
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

/// Stats the entries of one directory.
#[derive(Clone, Copy)]
struct Lookup<'a> {
    root: &'a Root,
    dir: BorrowedFd<'a>,
    chain: &'a Chain,
    lineage: &'a [(u64, u64)],
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
    /// published, gone, unreadable, a symlink whose target is not
    /// published, or one that leads back up ([`Lookup::loops_back`]). One
    /// `statx` against the directory fd; a symlink is resolved from the
    /// directory's physical place by the same walk as any lookup, its
    /// target checked as if it had been named (bounded work: at most
    /// `walk::MAX_LINKS` links, `walk::MAX_STEPS` components).
    fn entry_meta(self, name: &CStr) -> Option<Meta> {
        let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC;
        let st = statx(self.dir, name, flags, STATX_FIELDS).ok()?;
        if FileType::from_raw_mode(u32::from(st.stx_mode) as _) != FileType::Symlink {
            let meta = meta_from_statx(&st);
            return meta.is_public().then_some(meta);
        }
        self.link_meta(name)
    }

    /// [`Lookup::entry_meta`] for a symlink: kept out of the loop over
    /// plain entries, which is the whole cost of a large listing.
    #[inline(never)]
    fn link_meta(self, name: &CStr) -> Option<Meta> {
        let mut walk = Walk::from_dir(self.root, self.chain, self.dir);
        let found = walk.resolve(name.to_bytes()).ok()?;
        // An upload reached through a link stays unlisted (`fs::incoming`).
        if let (Some(inc), Found::File { .. }) = (self.root.incoming(), &found)
            && inc.holds(&walk.into_chain())
        {
            return None;
        }
        match found {
            Found::File { meta, .. } => Some(meta),
            Found::Dir(meta) if self.loops_back(&meta) => None,
            Found::Dir(meta) => Some(meta),
        }
    }

    /// Whether directory `meta` is the listed one or one above it. Links
    /// are listed as what they point to, so a link to `.`, `..` or `/`
    /// would show a directory that contains itself, and a mirroring
    /// client would copy the tree again inside itself until the kernel's
    /// limit on symlinks in a path.
    fn loops_back(self, meta: &Meta) -> bool {
        self.lineage.contains(&(meta.dev, meta.ino))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::listing::{Facts, ListFormat, Style, format_line};
    use crate::core::meta::Kind;
    use crate::core::vpath::VPath;
    use crate::fs::test_tree::TempTree;
    use std::collections::HashMap;

    /// 2023-11-14 22:13:20 UTC.
    const NOW: i64 = 1_700_000_000;

    /// A listing formatted a batch at a time, as the session formats one: for
    /// the tests of what a directory lists.
    pub struct Lister {
        state: State,
    }

    enum State {
        Dir {
            reader: Box<DirReader>,
            style: Style,
            now_unix: i64,
            entries: Entries,
            next: usize,
        },
        /// One formatted line, not yet handed out.
        Line(Vec<u8>),
        /// The directory could not be read; reported by the next `fill`.
        Failed(io::Error),
        Done,
    }

    impl Lister {
        /// Lists the directory `dir` (from [`Root::open_dir`]) whose virtual
        /// path is `path`. `now_unix` decides the `ls -l` date form (time of
        /// day within six months, year otherwise).
        pub fn dir(root: Arc<Root>, dir: OpenDir, style: Style, now_unix: i64) -> Lister {
            let state = match DirReader::new(root, dir) {
                Ok(reader) => State::Dir {
                    reader: Box::new(reader),
                    style,
                    now_unix,
                    entries: Entries::default(),
                    next: 0,
                },
                Err(e) => State::Failed(e),
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
                State::Dir {
                    mut reader,
                    style,
                    now_unix,
                    mut entries,
                    mut next,
                } => {
                    let mut eof = false;
                    while out.len() < limit {
                        if next == entries.len() {
                            if eof {
                                return Ok(true);
                            }
                            entries.clear();
                            next = 0;
                            eof = reader.read_batch(&mut entries)?;
                            continue;
                        }
                        if let Some((name, meta)) = entries.get(next) {
                            format_line(out, name, meta, style, now_unix);
                        }
                        next += 1;
                    }
                    if eof && next == entries.len() {
                        return Ok(true);
                    }
                    self.state = State::Dir {
                        reader,
                        style,
                        now_unix,
                        entries,
                        next,
                    };
                    Ok(false)
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
        let mut lister = Lister::dir(root.clone(), fd, style, NOW);
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
        let mut lister = Lister::dir(root, fd, Style::List(ListFormat::Ls), NOW);
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

    /// Issue 18: a listing shows a symlink only where its target is
    /// published: not into a 0711 directory, not to a dotfile, not to a
    /// public directory inside a private one.
    #[test]
    fn links_to_unpublished_targets_are_left_out() {
        let t = TempTree::new("issue18-list");
        t.dir("p711", 0o711);
        t.file("p711/s.txt", 0o644, b"S\n");
        t.dir("p711/sub", 0o755);
        t.file(".hidden", 0o644, b"H\n");
        t.dir("d700", 0o700);
        t.fifo("fifo", 0o644);
        t.socket("socket", 0o777);
        t.dir("up", 0o755);
        t.symlink("up/a", "../p711/s.txt");
        t.symlink("up/b", "../.hidden");
        t.symlink("up/c", "../p711/sub");
        t.symlink("up/d", "../d700");
        t.symlink("up/e", "../fifo");
        t.symlink("up/f", "../socket");
        t.symlink("up/g", "/p711/sub/../s.txt");
        t.file("up/plain", 0o644, b"x");
        t.symlink("up/ok", "plain");
        let root = Arc::new(Root::open(&t.path).unwrap());
        let names = list(&root, "/up", Style::Nlst);
        let expected: Vec<&[u8]> = vec![b"ok", b"plain"];
        assert_eq!(names, expected);
    }

    /// A symlink entry resolves from where the listed directory physically
    /// is: listed through a link, `..` is the real parent.
    #[test]
    fn entries_resolve_from_the_physical_directory() {
        let t = TempTree::new("physical-list");
        t.dir("real", 0o755);
        t.dir("real/dir", 0o755);
        t.file("real/f", 0o644, b"12345");
        t.symlink("real/dir/up", "../f");
        t.dir("elsewhere", 0o755);
        t.file("elsewhere/f", 0o644, b"1");
        t.symlink("elsewhere/dir", "../real/dir");
        let root = Arc::new(Root::open(&t.path).unwrap());
        let lines = list(&root, "/elsewhere/dir", Style::List(ListFormat::Ls));
        assert_eq!(lines.len(), 1);
        let line = String::from_utf8(lines[0].clone()).unwrap();
        assert!(
            line.starts_with("-rw-r--r--    1 ftp      ftp             5 "),
            "{line}"
        );
    }

    /// Deeper than the levels a listing holds open: an entry that climbs
    /// to the top walks down again, and is still checked on the way.
    #[test]
    fn entries_that_climb_far() {
        let t = TempTree::new("climb-list");
        let depth = 3 * super::super::LISTING_HELD;
        let mut path = String::from("d");
        t.dir(&path, 0o755);
        for _ in 1..depth {
            path.push_str("/d");
            t.dir(&path, 0o755);
        }
        t.file("d/top", 0o644, b"top");
        t.symlink(
            format!("{path}/top"),
            format!("{}top", "../".repeat(depth - 1)),
        );
        t.symlink(format!("{path}/self"), "../".repeat(depth / 2));
        let root = Arc::new(Root::open(&t.path).unwrap());
        let names = list(&root, &format!("/{path}"), Style::Nlst);
        assert_eq!(names, vec![b"top".to_vec()]);
        t.chmod("d/d", 0o711);
        let p = VPath::resolve(&VPath::root(), path.as_bytes()).unwrap();
        assert!(matches!(
            root.open_dir(&p),
            Err(crate::fs::FsError::NotFound)
        ));
    }

    /// Many entries, each a long chain of links: each costs at most the
    /// expansion limit, and none past it is listed.
    #[test]
    fn chains_of_links_are_bounded_per_entry() {
        const N: usize = 200;
        let t = TempTree::new("chains");
        t.dir("c", 0o755);
        t.file("c/end", 0o644, b"end");
        let links = crate::fs::walk::MAX_LINKS as usize;
        for i in 0..links {
            let target = if i == 0 {
                "end".to_string()
            } else {
                format!("k{}", i - 1)
            };
            t.symlink(format!("c/k{i}"), target);
        }
        t.dir("d", 0o755);
        for i in 0..N {
            // e{i} -> ../c/k{k} -> ... -> k0 -> end: k + 2 links.
            t.symlink(format!("d/e{i:03}"), format!("../c/k{}", i % links));
        }
        let root = Arc::new(Root::open(&t.path).unwrap());
        let names = list(&root, "/d", Style::Nlst);
        let expected: Vec<Vec<u8>> = (0..N)
            .filter(|i| i % links + 2 <= links)
            .map(|i| format!("e{i:03}").into_bytes())
            .collect();
        assert_eq!(names, expected);
    }

    /// Not a test: times listing a directory of 100,000 plain files, to
    /// compare builds (prints, asserts nothing about time). Run with
    /// `cargo test --release --lib bench_listing -- --ignored --nocapture`;
    /// with `AFTPD_BENCH_ROOT=DIR`, lists DIR/big as it is (made once,
    /// so that two builds list the very same directory).
    #[test]
    #[ignore]
    fn bench_listing_100k() {
        const N: usize = 100_000;
        let t = TempTree::new("bench");
        let at = match std::env::var_os("AFTPD_BENCH_ROOT") {
            Some(dir) => std::path::PathBuf::from(dir),
            None => {
                t.dir("big", 0o755);
                for i in 0..N {
                    t.file(format!("big/file-{i:06}"), 0o644, b"");
                }
                t.path.clone()
            }
        };
        let root = Arc::new(Root::open(&at).unwrap());
        let path = VPath::resolve(&VPath::root(), b"/big").unwrap();
        // CPU time of the whole process (both threads): steadier than the
        // wall clock on a shared machine.
        let cpu = || {
            let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: getrusage fills the struct it is given.
            let u = unsafe {
                libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
                u.assume_init()
            };
            let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
            t(u.ru_utime) + t(u.ru_stime)
        };
        let mut times = Vec::new();
        let mut cpus = Vec::new();
        for _ in 0..25 {
            let start = std::time::Instant::now();
            let cpu_start = cpu();
            let (fd, _) = root.open_dir(&path).unwrap();
            let mut lister = Lister::dir(root.clone(), fd, Style::List(ListFormat::Ls), NOW);
            let mut out = Vec::new();
            let mut bytes = 0;
            while !lister.fill(&mut out, 64 * 1024).unwrap() {
                bytes += out.len();
                out.clear();
            }
            bytes += out.len();
            assert!(bytes > N * 40);
            times.push(start.elapsed());
            cpus.push(std::time::Duration::from_secs_f64(cpu() - cpu_start));
        }
        times.sort();
        cpus.sort();
        eprintln!(
            "bench_listing_100k cpu: min {:?} median {:?}",
            cpus[0],
            cpus[cpus.len() / 2]
        );
        eprintln!(
            "bench_listing_100k: min {:?} median {:?} max {:?}",
            times[0],
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
}
