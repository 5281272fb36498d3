//! Carrying out the core's filesystem requests against the real tree.
//! Each call may wait for the disk: `ftpd` makes it in its one thread,
//! the supervisor on a helper thread (`engine::pool`), never on a worker
//! that serves other sessions.

use std::fs::File;
use std::sync::Arc;

use super::Root;
use super::dir::DirReader;
use super::incoming::Upload;
use super::walk::Found;
use crate::core::meta::{FsError, Kind, Meta};
use crate::core::session::{Created, FsAnswer, FsRequest, Handles, Listed};
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
    type Upload = Upload;
}

/// Answers `request` in the tree `root`. What is not published is
/// `NotFound`. (`FsRequest::Host` is for `fs::trees::Trees`, which knows
/// the hosts; a lone tree has none.)
pub fn execute(root: &Arc<Root>, request: FsRequest<Real>) -> FsAnswer<Real> {
    match request {
        FsRequest::Stat(path) => FsAnswer::Stat(published(root, &path)),
        FsRequest::OpenFile(path) => FsAnswer::File(open_file(root, &path)),
        FsRequest::OpenList(path) => FsAnswer::List(open_list(root, path)),
        FsRequest::ReadDir(mut dir, mut entries) => {
            let result = dir.read_batch(&mut entries).map_err(FsError::Io);
            FsAnswer::ReadDir(dir, entries, result)
        }
        FsRequest::Message { dir, file } => {
            FsAnswer::Message(super::message::read(root, &dir, file))
        }
        FsRequest::Host(_) => FsAnswer::Host(Err(FsError::NotFound)),
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

/// What the drop box (`fs::incoming`) makes of `path`, if uploads are
/// on: in the box by name, or led into it by symlinks.
enum DropBox {
    /// Neither: the usual rules alone.
    Outside,
    /// In the box by name: answered by the box.
    Named,
    /// A file physically in the box: not there for anyone.
    File,
    /// A directory physically in the box: entered, listed empty.
    Dir,
}

fn drop_box(root: &Root, path: &VPath) -> Result<DropBox, FsError> {
    let Some(inc) = root.incoming() else {
        return Ok(DropBox::Outside);
    };
    if inc.covers(path) {
        return Ok(DropBox::Named);
    }
    Ok(match inc.reached(root, path)? {
        Some((Found::File { .. }, true)) => DropBox::File,
        Some((Found::Dir(_), true)) => DropBox::Dir,
        _ => DropBox::Outside,
    })
}

fn open_file(root: &Root, path: &VPath) -> Result<(Arc<File>, Meta), FsError> {
    match drop_box(root, path)? {
        DropBox::Named | DropBox::File => Err(FsError::NotFound),
        DropBox::Outside | DropBox::Dir => root.open_file(path).map(|(f, m)| (Arc::new(f), m)),
    }
}

/// The facts of a published file or directory. In the drop box, only
/// its directories, whatever their mode; none of its files.
fn published(root: &Root, path: &VPath) -> Result<Meta, FsError> {
    match drop_box(root, path)? {
        DropBox::Named => {
            if let Some(inc) = root.incoming() {
                return inc.stat(root, path);
            }
        }
        DropBox::File => return Err(FsError::NotFound),
        DropBox::Outside | DropBox::Dir => {}
    }
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
    // The drop box, by its name or through a link, lists empty.
    match (drop_box(root, &path)?, root.incoming()) {
        (DropBox::Named, Some(inc)) => {
            let dir = inc.list(root, &path)?;
            let reader = DirReader::empty(Arc::clone(root), dir).map_err(FsError::Io)?;
            return Ok(Listed::Dir(Box::new(reader)));
        }
        (DropBox::Dir, _) => {
            let (dir, _) = root.open_dir(&path)?;
            let reader = DirReader::empty(Arc::clone(root), dir).map_err(FsError::Io)?;
            return Ok(Listed::Dir(Box::new(reader)));
        }
        _ => {}
    }
    let (fd, _) = root.open_dir(&path)?;
    let reader = DirReader::new(Arc::clone(root), fd).map_err(FsError::Io)?;
    Ok(Listed::Dir(Box::new(reader)))
}
