//! Carrying out the core's filesystem requests against the real tree.
//! Each call may wait for the disk: `ftpd` makes it in its one thread,
//! the supervisor on a helper thread (`engine::pool`), never on a worker
//! that serves other sessions.

use std::fs::File;
use std::sync::Arc;

use super::Root;
use super::dir::DirReader;
use super::incoming::Upload;
use crate::core::meta::{FsError, Kind, Meta};
use crate::core::session::{Created, FsAnswer, FsRequest, Handles, Listed};
use crate::core::vpath::VPath;

/// The handles of the real tree: an open file (shared, so that an
/// operation in flight on a helper thread or in the kernel can hold it
/// while the transfer it belongs to is dropped), a directory being read.
#[derive(Debug)]
pub struct Real;

impl Handles for Real {
    type File = Arc<File>;
    type Dir = Box<DirReader>;
    type Upload = Upload;
}

/// Answers `request`. What is not published is `NotFound`.
pub fn execute(root: &Arc<Root>, request: FsRequest<Real>) -> FsAnswer<Real> {
    match request {
        FsRequest::Stat(path) => FsAnswer::Stat(published(root, &path)),
        FsRequest::OpenFile(path) => FsAnswer::File(open_file(root, &path)),
        FsRequest::OpenList(path) => FsAnswer::List(open_list(root, path)),
        FsRequest::ReadDir(mut dir, mut entries) => {
            let result = dir.read_batch(&mut entries).map_err(FsError::Io);
            FsAnswer::ReadDir(dir, entries, result)
        }
        FsRequest::Create { name, peer } => FsAnswer::Created(match root.incoming() {
            Some(inc) => inc.create(root, name, peer).map(|upload| Created {
                file: upload.file(),
                path: upload.path().clone(),
                upload,
            }),
            None => Err(FsError::BadName),
        }),
        FsRequest::Space(u) => FsAnswer::Space(root.incoming().map_or(Ok(()), |inc| inc.space(&u))),
        FsRequest::Commit(u) => FsAnswer::Committed(match root.incoming() {
            Some(inc) => inc.commit(&u),
            None => Err(FsError::BadName),
        }),
        FsRequest::Discard(u) => {
            if let Some(inc) = root.incoming() {
                inc.discard(&u);
            }
            FsAnswer::Discarded
        }
    }
}

/// The facts of a published file or directory. In the drop box, only
/// its directories, whatever their mode (`fs::incoming`).
fn published(root: &Root, path: &VPath) -> Result<Meta, FsError> {
    if let Some(inc) = root.incoming().filter(|i| i.covers(path)) {
        return inc.stat(root, path);
    }
    match root.stat(path)? {
        m if m.is_public() => {
            write_only(root, path, &m)?;
            Ok(m)
        }
        _ => Err(FsError::NotFound),
    }
}

/// The write-only rule for what is reached from outside the drop box: a
/// file that lies in it, physically (through a symlink), is not there.
fn write_only(root: &Root, path: &VPath, meta: &Meta) -> Result<(), FsError> {
    match root.incoming() {
        Some(inc) if meta.kind == Kind::File && inc.holds_file(root, path)? => {
            Err(FsError::NotFound)
        }
        _ => Ok(()),
    }
}

fn open_file(root: &Root, path: &VPath) -> Result<(Arc<File>, Meta), FsError> {
    if root.incoming().is_some_and(|i| i.covers(path)) {
        return Err(FsError::NotFound);
    }
    let (f, m) = root.open_file(path)?;
    write_only(root, path, &m)?;
    Ok((Arc::new(f), m))
}

fn open_list(root: &Arc<Root>, path: VPath) -> Result<Listed<Real>, FsError> {
    let meta = published(root, &path)?;
    if meta.kind != Kind::Dir {
        return Ok(Listed::File(meta));
    }
    if let Some(inc) = root.incoming() {
        // The drop box, by its name or through a symlink: listed empty.
        let flags =
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        let fd = root.lookup(&path, flags)?;
        if inc.covers(&path) || inc.inside(std::os::fd::AsFd::as_fd(&fd))? {
            let reader = DirReader::empty(Arc::clone(root), fd, path).map_err(FsError::Io)?;
            return Ok(Listed::Dir(Box::new(reader)));
        }
    }
    let (fd, _) = root.open_dir(&path)?;
    let reader = DirReader::new(Arc::clone(root), fd, path).map_err(FsError::Io)?;
    Ok(Listed::Dir(Box::new(reader)))
}
