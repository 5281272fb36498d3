//! Privileges: chroot, setgroups/setgid/setuid, no_new_privs.

use std::io;
use std::path::Path;

use nix::unistd::{Gid, Uid};

/// Confines the process to `root_path` and drops root for good: chroot
/// there, then take `uid`/`gid` as the only identity (no supplementary
/// groups). Fails unless the change is irreversible.
pub fn drop_to(root_path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    if uid == 0 {
        return Err(io::Error::other("refusing to run as uid 0"));
    }
    nix::unistd::chdir(root_path)?;
    nix::unistd::chroot(".")?;
    nix::unistd::chdir("/")?;
    let gid = Gid::from_raw(gid);
    nix::unistd::setgroups(&[gid])?;
    // nix goes through libc, whose set*id apply to every thread.
    nix::unistd::setgid(gid)?;
    nix::unistd::setuid(Uid::from_raw(uid))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(io::Error::other("root privileges could be regained"));
    }
    Ok(())
}

/// Sets `PR_SET_NO_NEW_PRIVS`: no exec can ever grant privileges again.
pub fn no_new_privs() -> io::Result<()> {
    rustix::thread::set_no_new_privs(true)?;
    Ok(())
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `$UID` and `$GID` as envuidgid sets them: both or neither.
pub fn from_env() -> Result<Option<(u32, u32)>, String> {
    // Not UTF-8 is not a number either: lossy keeps it failing.
    let var = |name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    parse_ids(var("UID").as_deref(), var("GID").as_deref())
}

fn parse_ids(uid: Option<&str>, gid: Option<&str>) -> Result<Option<(u32, u32)>, String> {
    let num = |name: &str, v: &str| {
        v.parse::<u32>()
            .map_err(|_| format!("bad ${name} {v:?}: not a number"))
    };
    match (uid, gid) {
        (None, None) => Ok(None),
        (Some(u), Some(g)) => Ok(Some((num("UID", u)?, num("GID", g)?))),
        (Some(_), None) => Err("$UID is set but $GID is not".into()),
        (None, Some(_)) => Err("$GID is set but $UID is not".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(parse_ids(None, None), Ok(None));
        assert_eq!(
            parse_ids(Some("65534"), Some("65533")),
            Ok(Some((65534, 65533)))
        );
        assert!(parse_ids(Some("65534"), None).is_err());
        assert!(parse_ids(None, Some("1")).is_err());
        assert!(parse_ids(Some("nobody"), Some("1")).is_err());
        assert!(parse_ids(Some("1"), Some("-1")).is_err());
        assert!(parse_ids(Some(""), Some("1")).is_err());
        assert!(parse_ids(Some("99999999999"), Some("1")).is_err());
    }
}
