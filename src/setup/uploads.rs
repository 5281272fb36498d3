//! Turning uploads on (`--incoming`), the same way in both programs: the
//! upload hook's helper is forked first (while the program has one
//! thread, before the chroot), then the drop box is opened on the served
//! tree, which from then on answers the upload requests and keeps what is
//! uploaded write-only (`fs::incoming`).

use std::path::Path;

use super::Fail;
use super::options::UploadArgs;
use super::privs::Identity;
use crate::fs::Root;
use crate::fs::incoming::{Incoming, Settings};
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
) -> Result<Option<Hook>, Fail> {
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
        .map(Some)
        .map_err(|e| Fail::temporary(format!("cannot start the upload hook: {e}")))
}

/// Opens the drop box of `root` (the directory must exist).
pub fn drop_box(root: &Root, uploads: &UploadArgs, hook: Option<Hook>) -> Result<(), Fail> {
    let settings = Settings {
        dir: uploads.incoming.clone(),
        min_free: uploads.min_free,
        mode: uploads.mode,
    };
    let inc = Incoming::open(root, settings, hook)
        .map_err(|e| Fail::temporary(format!("cannot open the drop box: {e}")))?;
    root.set_incoming(inc);
    Ok(())
}

/// Both, for a program that has its root open before the chroot (`ftpd`).
pub fn open(
    root: &Root,
    root_path: &Path,
    uploads: &UploadArgs,
    who: Option<Identity>,
    logger: impl FnOnce() -> Logger,
) -> Result<(), Fail> {
    let hook = hook(root_path, uploads, who.as_ref(), logger)?;
    drop_box(root, uploads, hook)
}
