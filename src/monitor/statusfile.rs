//! `ftpd --status-dir DIR`: each session's line ([`Row`]) in a file of
//! its own in DIR, for `aftpd-status --dir DIR`. A session claims a slot
//! file (`ftpd.N`) at start, before the chroot and the sandbox, by
//! holding a POSIX write lock on it, and rewrites its line in place
//! (one `pwritev2` of a fixed-size record, no truncation, no new open:
//! nothing the sandbox forbids). The lock goes with the process, however
//! it ends, so a reader shows exactly the files that are locked, and
//! only lines written by the lock's owner; a slot whose session ended is
//! taken by the next one. No file is ever removed, and there are never
//! more than [`MAX_SLOTS`], nor more than a few (16) beyond the
//! most sessions that ran at once.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, fcntl};

use super::row::Row;
use crate::core::clock::Now;
use crate::core::session::{SessionStatus, TransferKind};

/// The size of a record: a line, padded with spaces.
pub const RECORD: usize = 1024;
/// Slot files at most.
pub const MAX_SLOTS: u32 = 4096;
/// Where a session starts looking: its pid modulo this, so sessions
/// starting together rarely try the same file first, while the files
/// stay no more than this many beyond the most sessions at once. (A
/// session tries the files one by one: with many sessions at once a
/// start costs an open and a lock attempt for each running session.)
const SPREAD: u32 = 16;
const PREFIX: &str = "ftpd.";
/// How often a transfer's progress is written.
const EVERY: Duration = Duration::from_secs(1);

fn lock_of(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// What makes a line worth writing at once.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    verb: &'static str,
    logged_in: bool,
    transfer: Option<(TransferKind, Vec<u8>)>,
}

impl Key {
    fn of(s: &SessionStatus<'_>) -> Key {
        Key {
            verb: s.verb,
            logged_in: s.logged_in,
            transfer: s
                .transfer
                .as_ref()
                .map(|t| (t.kind, t.path.as_bytes().to_vec())),
        }
    }

    /// Whether `s` would make the same key (without allocating).
    fn matches(&self, s: &SessionStatus<'_>) -> bool {
        let same_transfer = match (&self.transfer, &s.transfer) {
            (None, None) => true,
            (Some((k, p)), Some(t)) => *k == t.kind && p.as_slice() == t.path.as_bytes(),
            _ => false,
        };
        self.verb == s.verb && self.logged_in == s.logged_in && same_transfer
    }
}

/// A session's status file.
#[derive(Debug)]
pub struct StatusFile {
    file: File,
    pid: u32,
    last: Option<(Key, Instant)>,
}

impl StatusFile {
    /// Claims a free slot in `dir` for process `pid`.
    pub fn claim(dir: &Path, pid: u32) -> io::Result<StatusFile> {
        for i in 0..MAX_SLOTS {
            let n = (pid % SPREAD + i) % MAX_SLOTS;
            let path = dir.join(format!("{PREFIX}{n}"));
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(f) => f,
                // A name taken by something else (a symlink, a directory).
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => continue,
                Err(e) if e.kind() == io::ErrorKind::IsADirectory => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            };
            if !file.metadata()?.is_file() {
                continue;
            }
            match fcntl(
                &file,
                FcntlArg::F_SETLK(&lock_of(libc::F_WRLCK as libc::c_short)),
            ) {
                Ok(_) => {
                    return Ok(StatusFile {
                        file,
                        pid,
                        last: None,
                    });
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        Err(io::Error::other(format!(
            "{}: all {MAX_SLOTS} status files in use",
            dir.display()
        )))
    }

    /// Writes the session's line if it changed, or once a second while a
    /// transfer runs. Errors are not the client's business: the line is
    /// tried again at the next change.
    pub fn publish(&mut self, status: &SessionStatus<'_>, now: Now) {
        let due = match &self.last {
            None => true,
            Some((k, _)) if !k.matches(status) => true,
            Some((_, at)) => status.transfer.is_some() && now.mono >= *at + EVERY,
        };
        if due && self.write(&Row::of(status, self.pid, now)).is_ok() {
            self.last = Some((Key::of(status), now.mono));
        }
    }

    fn write(&self, row: &Row) -> io::Result<()> {
        let record = record(row);
        let n = rustix::io::pwritev2(
            self.file.as_fd(),
            &[IoSlice::new(&record)],
            0,
            rustix::io::ReadWriteFlags::empty(),
        )?;
        if n == record.len() {
            Ok(())
        } else {
            Err(io::ErrorKind::WriteZero.into())
        }
    }
}

/// A row's record: its line, the path shortened (ending in `...`) if the
/// line would not fit, padded with spaces to [`RECORD`] bytes.
fn record(row: &Row) -> Vec<u8> {
    let mut line = row.line();
    if line.len() > RECORD {
        let mut short = row.clone();
        if let Some(x) = &mut short.transfer {
            let keep = x.path.len().saturating_sub(line.len() - RECORD + 3);
            x.path.truncate(keep);
            x.path.push_str("...");
        }
        line = short.line();
        line.truncate(RECORD);
    }
    let mut out = line.into_bytes();
    out.resize(RECORD, b' ');
    out
}

/// The lines of the sessions running now, from the slot files in `dir`.
pub fn read_dir(dir: &Path) -> io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let slot = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.parse::<u32>().ok());
        if slot.is_none_or(|n| n >= MAX_SLOTS) {
            continue;
        }
        if let Some(row) = read_slot(&entry.path())? {
            rows.push(row);
        }
    }
    rows.sort_by_key(|r| (r.since, r.pid));
    Ok(rows)
}

/// The line of a slot file whose owner is running.
fn read_slot(path: &Path) -> io::Result<Option<Row>> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let mut lock = lock_of(libc::F_WRLCK as libc::c_short);
    fcntl(&file, FcntlArg::F_GETLK(&mut lock)).map_err(io::Error::from)?;
    if lock.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    let owner = u32::try_from(lock.l_pid).unwrap_or(0);
    // A line being rewritten as it is read may come out mixed: read again.
    for _ in 0..3 {
        let mut buf = Vec::with_capacity(RECORD);
        (&mut file).take(RECORD as u64).read_to_end(&mut buf)?;
        let first = buf.split(|&b| b == b'\n').next().unwrap_or_default();
        if let Some(row) = std::str::from_utf8(first).ok().and_then(Row::parse) {
            // Not yet written by its owner (a slot just claimed): not shown.
            return Ok((row.pid == owner).then_some(row));
        }
        std::thread::sleep(Duration::from_millis(5));
        std::io::Seek::rewind(&mut file)?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::row::Xfer;

    fn row(pid: u32, path: &str) -> Row {
        Row {
            pid,
            peer: Some("192.0.2.1:4000".parse().unwrap()),
            since: 1,
            active: 2,
            at: 3,
            logged_in: true,
            verb: "RETR".into(),
            transfer: Some(Xfer {
                kind: "retr".into(),
                path: path.into(),
                bytes: 10,
                seconds: 1.0,
            }),
        }
    }

    #[test]
    fn records_fit() {
        let r = record(&row(1, "/x"));
        assert_eq!(r.len(), RECORD);
        let line = std::str::from_utf8(r.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(Row::parse(line), Some(row(1, "/x")));
        let long = format!("/{}", "y".repeat(3000));
        let r = record(&row(1, &long));
        assert_eq!(r.len(), RECORD);
        let line = std::str::from_utf8(r.split(|&b| b == b'\n').next().unwrap()).unwrap();
        let parsed = Row::parse(line).unwrap();
        assert!(parsed.transfer.unwrap().path.ends_with("yy..."));
    }

    /// Slots are claimed by locking, shown while locked and only with
    /// their owner's line, and free again once the owner lets go (here:
    /// the lock is the process's, so this test writes lines of its own
    /// pid and frees a slot by closing it).
    #[test]
    fn slots_are_claimed_and_read() {
        let dir = std::env::temp_dir().join(format!("aftpd-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pid = std::process::id();
        let a = StatusFile::claim(&dir, pid).unwrap();
        a.write(&row(pid, "/a")).unwrap();
        // POSIX locks do not conflict within one process: a second claim
        // here takes the same slot; F_GETLK from this process sees no
        // lock either. So check what another process would see through
        // the file alone.
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read(dir.join(format!("{PREFIX}{}", pid % SPREAD))).unwrap();
        assert_eq!(text.len(), RECORD);
        assert!(text.starts_with(b"session pid="));
        // Another name in the directory is ignored; so is a slot nobody
        // holds (this process's own lock reads as none).
        std::fs::write(dir.join("other"), b"x").unwrap();
        assert_eq!(read_dir(&dir).unwrap(), Vec::new());
        drop(a);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
