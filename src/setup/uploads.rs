//! Turning uploads on (`--incoming`, or `--vhosts --host-incoming`), the
//! same way in both programs: the upload hook's helper is forked first
//! (while the program has one thread, before the chroot), then the drop
//! box is opened on the served tree (the hosts' boxes with the trees, see
//! [`super::vhosts`]), which from then on answers the upload requests and
//! keeps what is uploaded write-only (`fs::incoming`).

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;

use super::Fail;
use super::options::{DropBoxes, UploadArgs};
use super::privs::Identity;
use crate::fs::Root;
use crate::fs::incoming::{Incoming, Settings};
use crate::fs::trees::Trees;
use crate::hook::{Hook, Spec};
use crate::log::Logger;

/// Forks the hook's helper if `--upload-hook` asks for one. `root_path`
/// is ROOT outside any chroot, `who` the user the server becomes,
/// `logger` makes the helper's log.
pub fn hook(
    root_path: &Path,
    uploads: &UploadArgs,
    who: Option<&Identity>,
    logger: impl FnOnce() -> Logger,
) -> Result<Option<Arc<Hook>>, Fail> {
    let Some(prog) = &uploads.hook else {
        return Ok(None);
    };
    let spec = Spec {
        prog: prog.clone(),
        max: uploads.hook_max,
        root: root_path.to_owned(),
        user: who.map(|w| (w.uid, w.gid)),
    };
    Hook::start(spec, logger)
        .map(|h| Some(Arc::new(h)))
        .map_err(|e| Fail::temporary(format!("cannot start the upload hook: {e}")))
}

/// Opens the drop box of `root` (the directory must exist), for
/// `--incoming`; the hosts' boxes are opened with the trees.
pub fn drop_box(root: &Root, uploads: &UploadArgs, hook: Option<Arc<Hook>>) -> Result<(), Fail> {
    let DropBoxes::One(dir) = &uploads.boxes else {
        return Ok(());
    };
    let settings = Settings {
        dir: dir.clone(),
        min_free: uploads.min_free,
        mode: uploads.mode,
        tree: Vec::new(),
    };
    let inc = Incoming::open(root, settings, hook)
        .map_err(|e| Fail::temporary(format!("cannot open the drop box: --incoming {e}")))?;
    root.set_incoming(inc);
    Ok(())
}

/// The hook, and the drop box of `--incoming`, for a program that has
/// its root open before the chroot (`ftpd`). The hook is returned for
/// the hosts' boxes.
pub fn open(
    root: &Root,
    root_path: &Path,
    uploads: &UploadArgs,
    who: Option<Identity>,
    logger: impl FnOnce() -> Logger,
) -> Result<Option<Arc<Hook>>, Fail> {
    let hook = hook(root_path, uploads, who.as_ref(), logger)?;
    drop_box(root, uploads, hook.clone())?;
    Ok(hook)
}

/// The directories of every drop box the trees serve: the sandbox's
/// write rules (none: no uploads, and none of their system calls).
pub fn box_fds(trees: &Trees) -> Vec<BorrowedFd<'_>> {
    trees
        .drop_boxes()
        .into_iter()
        .filter_map(|(_, inc)| inc.fd())
        .collect()
}

/// The drop boxes for the start line: ` incoming=/in`, or per host
/// ` incoming=a.example:/in,b.example:/pub/up`; empty without uploads.
pub fn describe(trees: &Trees) -> String {
    let boxes: Vec<String> = trees
        .drop_boxes()
        .into_iter()
        .filter_map(|(host, inc)| {
            let dir = String::from_utf8_lossy(inc.settings()?.dir.as_bytes()).into_owned();
            Some(match host {
                [] => dir,
                h => format!("{}:{dir}", String::from_utf8_lossy(h)),
            })
        })
        .collect();
    if boxes.is_empty() {
        return String::new();
    }
    format!(" incoming={}", boxes.join(","))
}
