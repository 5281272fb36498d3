//! The trees a program serves, from ROOT and `--vhosts`, with the hosts'
//! drop boxes of `--host-incoming`.

use std::path::Path;
use std::sync::Arc;

use super::Fail;
use super::options::{DropBoxes, UploadArgs};
use crate::fs::incoming::hosts::{self, Common, ENTRY, ScanError};
use crate::fs::trees::Trees;
use crate::fs::{FsError, Root};
use crate::hook::Hook;

/// ROOT alone, or with `vhosts` publicfile's layout beneath it. A ROOT/0
/// that is not a published directory is a configuration error (exit
/// 100): every client that sends no HOST would find nothing. With
/// `uploads` per host, the hosts' drop boxes are found and opened now; a
/// wrong `.incoming`, or none at all, is a configuration error too.
pub fn trees(
    root: Arc<Root>,
    vhosts: bool,
    shown: &Path,
    uploads: Option<(&UploadArgs, Option<Arc<Hook>>)>,
) -> Result<Trees, Fail> {
    if !vhosts {
        return Ok(Trees::single(root));
    }
    let trees = Trees::vhosts(Arc::clone(&root)).map_err(|e| match e {
        FsError::Busy(e) | FsError::Io(e) => {
            Fail::temporary(format!("--vhosts: cannot open {}/0: {e}", shown.display()))
        }
        _ => Fail::usage(format!(
            "--vhosts: {}/0 is not a published directory (world-readable and -searchable): it is the tree of clients that send no HOST",
            shown.display()
        )),
    })?;
    let Some((args, hook)) = uploads else {
        return Ok(trees);
    };
    if args.boxes != DropBoxes::PerHost {
        return Ok(trees);
    }
    let common = Common {
        min_free: args.min_free,
        mode: args.mode,
        hook,
    };
    let boxes = hosts::scan(&root, &common).map_err(|e| match e {
        ScanError::Entry(name, why) => Fail::usage(format!(
            "--host-incoming: {}/{}/{ENTRY}: {why}",
            shown.display(),
            String::from_utf8_lossy(&name)
        )),
        ScanError::Io(e) => Fail::temporary(format!(
            "--host-incoming: cannot read the hosts of {}: {e}",
            shown.display()
        )),
    })?;
    if boxes.hosts().is_empty() {
        // Asked for uploads, given none: say so rather than serve
        // read-only while the operator expects uploads.
        return Err(Fail::usage(format!(
            "--host-incoming: no host has a drop box: write its path (e.g. incoming) in {}/NAME/{ENTRY}",
            shown.display()
        )));
    }
    Ok(trees.with_boxes(boxes, args.max_size))
}
