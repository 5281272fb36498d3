//! The transfer log in wu-ftpd's xferlog format, which log analysers
//! (webalizer, AWStats, xferstats, ...) read: one line per finished or
//! failed download (listings are not logged, as in wu-ftpd).
//!
//! ```text
//! Sat Nov 21 06:00:00 2026 1 192.0.2.7 1234 /pub/file b _ o a anonymous ftp 0 * c
//! ```
//!
//! The fields: the time the transfer ended (UTC: a chrooted server has no
//! zoneinfo), whole seconds it took (at least 1), the client's address
//! (never a DNS name), bytes sent, the path in the archive, `a`scii or
//! `b`inary, `_` (no special action), `o`utgoing, `a`nonymous, the user
//! name (`anonymous`: the password, which wu-ftpd logs here, is not kept),
//! the service `ftp`, authentication `0` (none), `*` (no authenticated user
//! id), and `c`omplete or `i`ncomplete.
//!
//! A path is escaped as in the session log ([`crate::log::format::escape`]): every
//! byte outside printable ASCII, and space and backslash, is written as
//! `\xNN`, so a line always has the same number of fields and no name can
//! forge one.
//!
//! The file is opened (append, created 0640) before the chroot and kept
//! open. The supervisor also keeps a descriptor of the file's directory,
//! so that [`Xferlog::reopen`] (on SIGHUP, after a log rotation) works
//! from inside the chroot. Lines are written by [`crate::log::Logger`],
//! which owns the xferlog: without blocking, through a bounded queue and
//! a writer thread where the file system cannot append without blocking.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags};

use super::format::escape;
use super::sink::Appender;
use crate::core::session::{TransferKind, TransferRecord};

/// The mode a new xferlog is created with (before the umask).
const MODE: u32 = 0o640;

/// The xferlog line for `t`, ended at `end_unix` (seconds since the epoch),
/// without a newline; `None` for what the xferlog does not record
/// (listings). Downloads have direction `o`, uploads `i`.
pub fn format(t: &TransferRecord, end_unix: i64) -> Option<String> {
    let direction = match t.kind {
        TransferKind::Retr => 'o',
        TransferKind::Stor => 'i',
        TransferKind::List | TransferKind::Nlst | TransferKind::Mlsd => return None,
    };
    let host = t
        .peer
        .map_or_else(|| "-".to_owned(), |a| a.ip().to_canonical().to_string());
    Some(format!(
        "{} {} {host} {} {} {} _ {direction} a anonymous ftp 0 * {}",
        crate::core::calendar::ctime_utc(end_unix),
        seconds(t.duration),
        t.bytes,
        escape(t.path.as_bytes()),
        if t.ascii { 'a' } else { 'b' },
        if t.result == "ok" { 'c' } else { 'i' },
    ))
}

/// Whole seconds, rounded to the nearest, at least 1 (wu-ftpd never logs
/// 0, and analysers divide by it).
fn seconds(d: Duration) -> u64 {
    let rounded = d.as_secs() + u64::from(d.subsec_nanos() >= 500_000_000);
    rounded.max(1)
}

/// An open transfer log.
pub struct Xferlog {
    file: Arc<Appender>,
    path: PathBuf,
    /// The directory and file name, for [`Xferlog::reopen`].
    reopen: Option<(OwnedFd, OsString)>,
}

impl Xferlog {
    /// Opens `path` for appending, creating it (mode 0640) if need be.
    pub fn open(path: &Path) -> io::Result<Xferlog> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(MODE)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Xferlog {
            file: Arc::new(Appender::new(file)),
            path: path.to_owned(),
            reopen: None,
        })
    }

    /// Like [`Xferlog::open`], and keeps a descriptor of the directory
    /// (`O_PATH`) so that [`Xferlog::reopen`] works after a chroot.
    pub fn open_reopenable(path: &Path) -> io::Result<Xferlog> {
        let mut log = Xferlog::open(path)?;
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{}: not a file name", path.display())))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dirfd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::other(format!("{}: {e}", dir.display())))?;
        log.reopen = Some((dirfd, name.to_owned()));
        Ok(log)
    }

    /// The path given at start, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory descriptor [`Xferlog::reopen`] creates the file in,
    /// if reopenable: the sandbox lets the process write there.
    pub fn dir(&self) -> Option<BorrowedFd<'_>> {
        self.reopen.as_ref().map(|(d, _)| d.as_fd())
    }

    /// The line for `t`, ended now, with its newline; `None` for what
    /// the xferlog does not record.
    pub fn line(t: &TransferRecord) -> Option<Vec<u8>> {
        let now = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(_) => 0,
        };
        let mut line = format(t, now)?;
        line.push('\n');
        Some(line.into_bytes())
    }

    /// The file, as the log writes it.
    pub fn appender(&self) -> Arc<Appender> {
        Arc::clone(&self.file)
    }

    /// Opens the file again by name (after a rotation moved it away),
    /// through the directory descriptor kept since start. On failure the
    /// old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let Some((dir, name)) = &self.reopen else {
            return Err(io::Error::other("not reopenable"));
        };
        // openat2, the one open the sandbox's seccomp filter allows;
        // RESOLVE_BENEATH: the name stays a name in that directory.
        let fd = rustix::fs::openat2(
            dir,
            name.as_bytes(),
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::from_raw_mode(MODE),
            rustix::fs::ResolveFlags::BENEATH,
        )?;
        self.file.replace(File::from(fd));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::vpath::VPath;

    /// 2026-11-21 06:00:00 UTC, a Saturday.
    const T: i64 = 1_795_240_800;

    fn record(path: &[u8]) -> TransferRecord {
        TransferRecord {
            peer: Some("127.0.0.1:40000".parse().unwrap()),
            kind: TransferKind::Retr,
            path: VPath::resolve(&VPath::root(), path).unwrap(),
            bytes: 1234,
            duration: Duration::from_millis(300),
            ascii: false,
            result: "ok",
        }
    }

    #[test]
    fn wu_ftpd_line() {
        assert_eq!(
            format(&record(b"/pub/file"), T).unwrap(),
            "Sat Nov 21 06:00:00 2026 1 127.0.0.1 1234 /pub/file b _ o a anonymous ftp 0 * c"
        );
    }

    #[test]
    fn ascii_incomplete_ipv6_long() {
        let t = TransferRecord {
            peer: Some("[2001:db8::7]:2121".parse().unwrap()),
            ascii: true,
            result: "aborted",
            duration: Duration::from_millis(2500),
            ..record(b"/a")
        };
        assert_eq!(
            format(&t, T + 86_400 * 12).unwrap(),
            "Thu Dec  3 06:00:00 2026 3 2001:db8::7 1234 /a a _ o a anonymous ftp 0 * i"
        );
        let mapped = TransferRecord {
            peer: Some("[::ffff:192.0.2.1]:21".parse().unwrap()),
            ..record(b"/a")
        };
        assert!(format(&mapped, T).unwrap().contains(" 1 192.0.2.1 1234 "));
        let unknown = TransferRecord {
            peer: None,
            ..record(b"/a")
        };
        assert!(format(&unknown, T).unwrap().contains(" 1 - 1234 "));
    }

    #[test]
    fn uploads_come_in() {
        let t = TransferRecord {
            kind: TransferKind::Stor,
            ..record(b"/incoming/x")
        };
        assert_eq!(
            format(&t, T).unwrap(),
            "Sat Nov 21 06:00:00 2026 1 127.0.0.1 1234 /incoming/x b _ i a anonymous ftp 0 * c"
        );
    }

    #[test]
    fn listings_are_not_logged() {
        for kind in [TransferKind::List, TransferKind::Nlst, TransferKind::Mlsd] {
            let t = TransferRecord {
                kind,
                ..record(b"/pub")
            };
            assert_eq!(format(&t, T), None);
        }
    }

    #[test]
    fn names_cannot_add_fields() {
        let line = format(&record(b"/a b\n\tc\\\xe9"), T).unwrap();
        assert!(line.contains(" /a\\x20b\\x0a\\x09c\\x5c\\xe9 "), "{line}");
        assert_eq!(line.split_whitespace().count(), 18);
        assert_eq!(
            format(&record(b"/x"), T)
                .unwrap()
                .split_whitespace()
                .count(),
            18
        );
    }

    #[test]
    fn seconds_round_and_floor_at_one() {
        assert_eq!(seconds(Duration::ZERO), 1);
        assert_eq!(seconds(Duration::from_millis(1499)), 1);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::from_secs(3600)), 3600);
    }

    #[test]
    fn ctime() {
        assert_eq!(
            crate::core::calendar::ctime_utc(0),
            "Thu Jan  1 00:00:00 1970"
        );
        assert_eq!(
            crate::core::calendar::ctime_utc(951_782_400),
            "Tue Feb 29 00:00:00 2000"
        );
        assert_eq!(
            crate::core::calendar::ctime_utc(T),
            "Sat Nov 21 06:00:00 2026"
        );
    }

    #[test]
    fn reopen_after_rotation() {
        let dir = std::env::temp_dir().join(format!("aftpd-xferlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("xferlog");
        let log = Xferlog::open_reopenable(&path).unwrap();
        let write = |p: &[u8]| {
            use crate::log::outlet::Sink;
            log.appender()
                .write(&Xferlog::line(&record(p)).unwrap())
                .unwrap()
        };
        write(b"/one");
        std::fs::rename(&path, dir.join("xferlog.1")).unwrap();
        write(b"/two");
        log.reopen().unwrap();
        write(b"/three");
        let old = std::fs::read_to_string(dir.join("xferlog.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 2, "{old}");
        assert!(old.contains(" /one ") && old.contains(" /two "));
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains(" /three "));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
        // Not reopenable: an error, and the file stays in use.
        let plain = Xferlog::open(&path).unwrap();
        assert!(plain.reopen().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
