//! The trees a program serves, from ROOT and `--vhosts`.

use std::path::Path;
use std::sync::Arc;

use super::Fail;
use crate::fs::trees::Trees;
use crate::fs::{FsError, Root};

/// ROOT alone, or with `vhosts` publicfile's layout beneath it. A ROOT/0
/// that is not a published directory is a configuration error (exit
/// 100): every client that sends no HOST would find nothing.
pub fn trees(root: Arc<Root>, vhosts: bool, shown: &Path) -> Result<Trees, Fail> {
    if !vhosts {
        return Ok(Trees::single(root));
    }
    Trees::vhosts(root).map_err(|e| match e {
        FsError::Busy(e) | FsError::Io(e) => {
            Fail::temporary(format!("--vhosts: cannot open {}/0: {e}", shown.display()))
        }
        _ => Fail::usage(format!(
            "--vhosts: {}/0 is not a published directory (world-readable and -searchable): it is the tree of clients that send no HOST",
            shown.display()
        )),
    })
}
