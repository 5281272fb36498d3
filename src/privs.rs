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

/// The uid and gid of the user `name` in `/etc/passwd`.
///
/// The programs are linked statically, and a static glibc cannot load the
/// NSS modules `getpwnam` would consult (it crashes trying, on a name the
/// files do not hold). So this reads the file itself, as `useradd` writes
/// it; a user known only to LDAP or systemd-userdb is given by uid and gid
/// instead (`$UID`/`$GID`, as envuidgid sets them).
pub fn lookup_user(name: &str) -> io::Result<Option<(u32, u32)>> {
    let passwd = std::fs::read("/etc/passwd")?;
    Ok(find_user(&String::from_utf8_lossy(&passwd), name))
}

/// The uid and gid of `name` in the text of a passwd(5) file: the first
/// well-formed entry of that name.
fn find_user(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut field = line.split(':');
        if field.next()? != name {
            return None;
        }
        let _password = field.next()?;
        let uid = field.next()?.parse().ok()?;
        let gid = field.next()?.parse().ok()?;
        Some((uid, gid))
    })
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
    fn passwd_entries() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # a comment\n\
                      broken:x:12\n\
                      ftp:x:999:995::/srv/ftp:/usr/sbin/nologin\n\
                      ftp:x:1:1::/:/bin/sh\n\
                      odd:x:-1:5::/:/bin/sh\n";
        assert_eq!(find_user(passwd, "root"), Some((0, 0)));
        assert_eq!(find_user(passwd, "ftp"), Some((999, 995)));
        assert_eq!(find_user(passwd, "broken"), None);
        assert_eq!(find_user(passwd, "odd"), None);
        assert_eq!(find_user(passwd, "ft"), None);
        assert_eq!(find_user(passwd, ""), None);
        assert_eq!(find_user(passwd, "nobody"), None);
    }

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
