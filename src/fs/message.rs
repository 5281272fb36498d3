//! Reading a message file (`.message`, `.banner`, `.welcome`): the one
//! deliberate exception to "a dotfile is never read". Only from a
//! published directory (found as every other lookup is), only the file
//! of that exact name in it, never through a symlink, only a
//! world-readable regular file, only its first
//! [`MAX_BYTES`]. A FIFO or a device
//! of that name is never opened for reading.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::{FsError, Kind, Meta, Root, meta_from_stat};
use crate::core::message::{MAX_BYTES, MessageFile};
use crate::core::vpath::VPath;

/// One name beneath the directory, no symlink anywhere (the name itself
/// included), no magic link.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// The first `MAX_BYTES` of `file` in the published directory `dir` of
/// `root`. Anything else there (nothing, a symlink, a directory, a FIFO,
/// a file the world may not read) is `NotFound`.
pub fn read(root: &Root, dir: &VPath, file: MessageFile) -> Result<Vec<u8>, FsError> {
    let (opened, _) = root.open_dir(dir).map_err(absent)?;
    let dir = descriptor(opened);
    let name = file.name();
    // Look first, through an O_PATH descriptor that opens nothing: a
    // device is never opened (that can have side effects), a FIFO never
    // waited on.
    let seen = readable(&open(&dir, name, OFlags::PATH | OFlags::CLOEXEC)?)?;
    // Then open the same name for reading; should it have been swapped
    // meanwhile, O_NONBLOCK keeps a FIFO from blocking and what was
    // opened is checked again.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = open(&dir, name, flags)?;
    let meta = readable(&fd)?;
    if (meta.dev, meta.ino) != (seen.dev, seen.ino) {
        return Err(FsError::NotFound);
    }
    read_start(&fd)
}

/// The descriptor of what [`Root::open_dir`] gives.
pub(super) fn descriptor(dir: impl Into<OwnedFd>) -> OwnedFd {
    dir.into()
}

/// Whatever keeps a directory from having a message reads as absent;
/// only a failure worth trying again is kept.
pub(super) fn absent(e: FsError) -> FsError {
    match e {
        FsError::Busy(_) | FsError::Io(_) => e,
        _ => FsError::NotFound,
    }
}

fn open(dir: &OwnedFd, name: &[u8], flags: OFlags) -> Result<OwnedFd, FsError> {
    let flags = flags | OFlags::NOFOLLOW;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, name, flags, Mode::empty(), RESOLVE) {
            Err(Errno::AGAIN | Errno::INTR) if tries < 8 => tries += 1,
            r => return r.map_err(|e| absent(e.into())),
        }
    }
}

/// The facts of a world-readable regular file; `NotFound` for anything
/// else.
fn readable(fd: &OwnedFd) -> Result<Meta, FsError> {
    let meta = meta_from_stat(&rustix::fs::fstat(fd)?);
    if meta.kind == Kind::File && meta.mode & 0o004 != 0 {
        Ok(meta)
    } else {
        Err(FsError::NotFound)
    }
}

/// Up to `MAX_BYTES` from the start of the file.
fn read_start(fd: &OwnedFd) -> Result<Vec<u8>, FsError> {
    let mut buf = vec![0u8; MAX_BYTES];
    let mut len = 0;
    // Each turn reads at least a byte, or ends.
    while len < buf.len() {
        match rustix::io::pread(fd.as_fd(), &mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_tree::TempTree;

    fn vp(s: &str) -> VPath {
        VPath::resolve(&VPath::root(), s.as_bytes()).unwrap()
    }

    fn tree() -> TempTree {
        let t = TempTree::new("message");
        t.dir("pub", 0o755);
        t.file("pub/.message", 0o644, b"Welcome to pub\n");
        t.dir("private", 0o711);
        t.file("private/.message", 0o644, b"private dir\n");
        t.dir("secret", 0o755);
        t.file("secret/.message", 0o600, b"not for the world\n");
        t.file("secret/passwd", 0o644, b"root:x:0:0\n");
        t.dir("linked", 0o755);
        t.symlink("linked/.message", "../secret/passwd");
        t.dir("fifo", 0o755);
        t.fifo("fifo/.message", 0o644);
        t.dir("dir", 0o755);
        t.dir("dir/.message", 0o755);
        t.dir("big", 0o755);
        t.file("big/.message", 0o644, &vec![b'x'; MAX_BYTES * 3]);
        t.file(".banner", 0o644, b"top banner\n");
        t
    }

    #[test]
    fn reads_a_public_message() {
        let t = tree();
        let root = Root::open(&t.path).unwrap();
        let got = read(&root, &vp("/pub"), MessageFile::Dir).unwrap();
        assert_eq!(got, b"Welcome to pub\n");
        let got = read(&root, &VPath::root(), MessageFile::Banner).unwrap();
        assert_eq!(got, b"top banner\n");
        let got = read(&root, &vp("/big"), MessageFile::Dir).unwrap();
        assert_eq!(got.len(), MAX_BYTES);
    }

    #[test]
    fn nothing_else_is_a_message() {
        let t = tree();
        let root = Root::open(&t.path).unwrap();
        for dir in [
            "/private", "/secret", "/linked", "/fifo", "/dir", "/missing",
        ] {
            assert!(
                matches!(
                    read(&root, &vp(dir), MessageFile::Dir),
                    Err(FsError::NotFound)
                ),
                "{dir}"
            );
        }
        assert!(matches!(
            read(&root, &vp("/pub"), MessageFile::Welcome),
            Err(FsError::NotFound)
        ));
    }
}
