//! Carrying out the core's filesystem requests against the real tree.
//! Each call may wait for the disk: `ftpd` makes it in its one thread,
//! the supervisor on a helper thread (`engine::pool`), never on a worker
//! that serves other sessions.

use std::fs::File;
use std::sync::Arc;

use super::Root;
use super::dir::DirReader;
use crate::core::meta::{FsError, Kind, Meta};
use crate::core::session::{FsAnswer, FsRequest, Handles, Listed};
use crate::core::vpath::VPath;

/// The handles of the real tree: an open file (shared, so that an
/// operation in flight on a helper thread or in the kernel can hold it
/// while the transfer it belongs to is dropped), a directory being read,
/// a virtual host's tree (shared by its sessions, see `fs::trees`).
#[derive(Debug)]
pub struct Real;

impl Handles for Real {
    type File = Arc<File>;
    type Dir = Box<DirReader>;
    type Tree = Arc<Root>;
}

/// Answers `request` in the tree `root`. What is not published is
/// `NotFound`. (`FsRequest::Host` is for `fs::trees::Trees`, which knows
/// the hosts; a lone tree has none.)
pub fn execute(root: &Arc<Root>, request: FsRequest<Real>) -> FsAnswer<Real> {
    match request {
        FsRequest::Stat(path) => FsAnswer::Stat(published(root, &path)),
        FsRequest::OpenFile(path) => {
            FsAnswer::File(root.open_file(&path).map(|(f, m)| (Arc::new(f), m)))
        }
        FsRequest::OpenList(path) => FsAnswer::List(open_list(root, path)),
        FsRequest::ReadDir(mut dir, mut entries) => {
            let result = dir.read_batch(&mut entries).map_err(FsError::Io);
            FsAnswer::ReadDir(dir, entries, result)
        }
        FsRequest::Message { dir, file } => {
            FsAnswer::Message(super::message::read(root, &dir, file))
        }
        FsRequest::Host(_) => FsAnswer::Host(Err(FsError::NotFound)),
    }
}

/// The facts of a published file or directory.
fn published(root: &Root, path: &VPath) -> Result<Meta, FsError> {
    match root.stat(path)? {
        m if m.is_public() => Ok(m),
        _ => Err(FsError::NotFound),
    }
}

fn open_list(root: &Arc<Root>, path: VPath) -> Result<Listed<Real>, FsError> {
    let meta = published(root, &path)?;
    if meta.kind != Kind::Dir {
        return Ok(Listed::File(meta));
    }
    let (fd, _) = root.open_dir(&path)?;
    let reader = DirReader::new(Arc::clone(root), fd).map_err(FsError::Io)?;
    Ok(Listed::Dir(Box::new(reader)))
}
