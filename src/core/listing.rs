//! Formatting listings: `ls -l` lines (LIST), EPLF (LIST with
//! `--list-format eplf`), bare names (NLST), RFC 3659 facts (MLSD, MLST).
//! Every line ends in CRLF. The entries come from the filesystem layer,
//! already filtered by the publishing rules; this only formats them.

use std::fmt;
use std::io::Write;

use super::calendar::{Civil, MONTHS, utc_timestamp};
use super::meta::{Kind, Meta};

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

pub fn format_line(out: &mut Vec<u8>, name: &[u8], meta: &Meta, style: Style, now_unix: i64) {
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

/// Whether a directory entry may appear in a listing at all: not hidden,
/// no control characters, not empty.
pub fn listable_name(name: &[u8]) -> bool {
    !name.is_empty() && name[0] != b'.' && !name.iter().any(|&b| b < 0x20 || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
