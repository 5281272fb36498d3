//! Who the supervisor runs as. Root must switch to an unprivileged user
//! (`--user NAME`, or `$UID`/`$GID` as set by envuidgid) after binding;
//! anyone else stays who they are and is confined by `fs::Root`.
//!
//! Thin local equivalents of the shared `crate::privs` names
//! (`is_root`, `from_env`, `drop_to`, `no_new_privs`), kept here until that
//! module exists; swap for `pub use crate::privs::...` then.

use std::io;
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use super::Fail;

/// Whether the process runs with root's effective uid.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `$UID` and `$GID`, when both are set (envuidgid); an error when only one
/// is, or either is not a number.
pub fn from_env() -> Result<Option<(Uid, Gid)>, String> {
    let uid = std::env::var_os("UID");
    let gid = std::env::var_os("GID");
    match (uid, gid) {
        (None, None) => Ok(None),
        (Some(u), Some(g)) => {
            let num = |v: &std::ffi::OsStr, name: &str| {
                v.to_str()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .ok_or_else(|| format!("${name} is not a number: {}", v.to_string_lossy()))
            };
            Ok(Some((
                Uid::from_raw(num(&u, "UID")?),
                Gid::from_raw(num(&g, "GID")?),
            )))
        }
        _ => Err("set both $UID and $GID, or neither".into()),
    }
}

/// The user to switch to, as root; `None` when not root. Root with no user
/// to switch to, or asked to stay root, is a usage error: the supervisor
/// refuses to serve as root.
pub fn target(user: Option<&str>, root: bool) -> Result<Option<(Uid, Gid)>, Fail> {
    if !root {
        if user.is_some() {
            return Err(Fail::Usage("--user needs to be started as root".into()));
        }
        return Ok(None);
    }
    let ids = match user {
        Some(name) => match User::from_name(name) {
            Ok(Some(u)) => (u.uid, u.gid),
            Ok(None) => return Err(Fail::Usage(format!("--user {name}: no such user"))),
            Err(e) => return Err(Fail::Temp(format!("--user {name}: cannot look it up: {e}"))),
        },
        None => match from_env().map_err(Fail::Usage)? {
            Some(ids) => ids,
            None => {
                return Err(Fail::Usage(
                    "refusing to run as root: give --user NAME or set $UID and $GID".into(),
                ));
            }
        },
    };
    if ids.0.is_root() {
        return Err(Fail::Usage(
            "refusing to run as root: the user to switch to is root".into(),
        ));
    }
    Ok(Some(ids))
}

/// Chroots into `root` and switches to `uid`/`gid` with `gid` as the only
/// group, in the order that leaves no way back.
pub fn drop_to(root: &Path, uid: Uid, gid: Gid) -> io::Result<()> {
    nix::unistd::chdir(root)?;
    nix::unistd::chroot(".")?;
    nix::unistd::chdir("/")?;
    nix::unistd::setgroups(&[gid])?;
    nix::unistd::setgid(gid)?;
    nix::unistd::setuid(uid)?;
    if nix::unistd::geteuid() != uid
        || nix::unistd::getegid() != gid
        || nix::unistd::setuid(Uid::from_raw(0)).is_ok()
    {
        return Err(io::Error::other("privileges were not dropped"));
    }
    Ok(())
}

/// `PR_SET_NO_NEW_PRIVS`: no exec can gain privileges afterwards.
pub fn no_new_privs() -> io::Result<()> {
    rustix::thread::set_no_new_privs(true)?;
    Ok(())
}
