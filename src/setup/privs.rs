//! Whom a program runs as, and dropping root for good: the same rules for
//! both programs, which differ only in what root with no user named does
//! ([`Unnamed`]).
//!
//! Started as root, a program chroots into the served directory and
//! becomes an unprivileged user (`--user NAME`, or `$UID`/`$GID` as
//! envuidgid sets them), with that user's group as its only group; it
//! never serves as uid 0. Started as anyone else, it stays who it is
//! (`fs::Root` confines every lookup with openat2). Either way it sets
//! `PR_SET_NO_NEW_PRIVS`, so no exec can gain privileges afterwards.

use std::fmt;
use std::io;
use std::path::Path;

use nix::unistd::{Gid, Uid};

use super::Fail;

/// What root does when no user to become is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnamed {
    /// Refuse to run (exit 100): publicfile's rule, kept by `ftpd`.
    Refuse,
    /// Become `ftp` if `/etc/passwd` has it, else `nobody` (65534:65534),
    /// as vsftpd and Pure-FTPd do: the supervisor's rule.
    Default,
}

/// How the user to become was chosen, for the start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    /// `--user NAME`.
    Named(String),
    /// `$UID` and `$GID`.
    Env,
    /// No user named: the default ([`Unnamed::Default`]), by name.
    Default(&'static str),
}

/// The unprivileged user a process started as root becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub chosen: Chosen,
}

impl fmt::Display for Identity {
    /// `ftp(107:113,default)`, `www(33:33)` or `65534:65534($UID)`: one
    /// token for a `user=` field of the log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (uid, gid) = (self.uid, self.gid);
        match &self.chosen {
            Chosen::Named(name) => write!(f, "{name}({uid}:{gid})"),
            Chosen::Env => write!(f, "{uid}:{gid}($UID)"),
            Chosen::Default(name) => write!(f, "{name}({uid}:{gid},default)"),
        }
    }
}

/// The user that [`Unnamed::Default`] prefers, if `/etc/passwd` has it.
pub const DEFAULT_USER: &str = "ftp";
/// The user it falls back to, and its ids (Debian's `nobody:nogroup`,
/// which every Linux distribution now uses).
pub const FALLBACK_USER: (&str, u32, u32) = ("nobody", 65534, 65534);

/// The user to become: `None` when not started as root. `user` is
/// `--user NAME` (for root only); `env` is `$UID`/`$GID` as [`from_env`]
/// reads them; `lookup` finds a user's ids in the password file.
pub fn choose(
    root: bool,
    user: Option<&str>,
    env: Result<Option<(u32, u32)>, String>,
    unnamed: Unnamed,
    lookup: impl Fn(&str) -> io::Result<Option<(u32, u32)>>,
) -> Result<Option<Identity>, Fail> {
    if !root {
        if user.is_some() {
            return Err(Fail::usage("--user needs to be started as root"));
        }
        return Ok(None);
    }
    let id = |(uid, gid), chosen| Identity { uid, gid, chosen };
    let who = match (user, env.map_err(Fail::usage)?) {
        (Some(name), _) => match lookup(name) {
            Ok(Some(ids)) => id(ids, Chosen::Named(name.to_owned())),
            Ok(None) => {
                return Err(Fail::usage(format!(
                    "--user {name}: no such user in /etc/passwd (give a user known only to NSS as $UID and $GID)"
                )));
            }
            Err(e) => {
                return Err(Fail::temporary(format!(
                    "--user {name}: cannot look it up: {e}"
                )));
            }
        },
        (None, Some(ids)) => id(ids, Chosen::Env),
        (None, None) => match unnamed {
            Unnamed::Refuse => {
                return Err(Fail::usage(
                    "refusing to run as root without $UID and $GID (use envuidgid)",
                ));
            }
            Unnamed::Default => match lookup(DEFAULT_USER) {
                Ok(Some(ids)) => id(ids, Chosen::Default(DEFAULT_USER)),
                // An unreadable password file is as good as one without
                // `ftp`: nobody is the safe choice either way.
                Ok(None) | Err(_) => {
                    let (name, uid, gid) = FALLBACK_USER;
                    id((uid, gid), Chosen::Default(name))
                }
            },
        },
    };
    if who.uid == 0 {
        return Err(Fail::usage(format!(
            "refusing to run as root: the user to become, {who}, is uid 0"
        )));
    }
    Ok(Some(who))
}

/// Confines the process to `root_path` and drops root for good when `who`
/// says whom to become (chroot there, then `who`'s ids as the only
/// identity); then, in every case, no_new_privs. The privileges are gone
/// only if they cannot be regained.
pub fn confine(root_path: &Path, who: Option<&Identity>) -> Result<(), Fail> {
    if let Some(who) = who {
        drop_to(root_path, who.uid, who.gid)
            .map_err(|e| Fail::temporary(format!("cannot drop privileges: {e}")))?;
    }
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| Fail::temporary(format!("cannot set no_new_privs: {e}")))
}

fn drop_to(root_path: &Path, uid: u32, gid: u32) -> io::Result<()> {
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
    use crate::setup::Exit;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          www:x:33:33::/var/www:/usr/sbin/nologin\n\
                          ftp:x:107:113::/srv/ftp:/usr/sbin/nologin\n";

    fn passwd(text: &'static str) -> impl Fn(&str) -> io::Result<Option<(u32, u32)>> {
        move |name| Ok(find_user(text, name))
    }

    fn exit_of(r: Result<Option<Identity>, Fail>) -> Exit {
        r.unwrap_err().exit
    }

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

    #[test]
    fn not_root_stays() {
        for unnamed in [Unnamed::Refuse, Unnamed::Default] {
            assert_eq!(
                choose(false, None, Ok(None), unnamed, passwd(PASSWD)),
                Ok(None)
            );
            // $UID/$GID are for root only; a non-root caller ignores them.
            assert_eq!(
                choose(false, None, Ok(Some((1, 1))), unnamed, passwd(PASSWD)),
                Ok(None)
            );
            let e = choose(false, Some("www"), Ok(None), unnamed, passwd(PASSWD));
            assert_eq!(exit_of(e), Exit::Usage);
        }
    }

    #[test]
    fn root_becomes_the_user_named() {
        let who = choose(
            true,
            Some("www"),
            Ok(Some((5, 5))),
            Unnamed::Refuse,
            passwd(PASSWD),
        )
        .unwrap()
        .unwrap();
        assert_eq!((who.uid, who.gid), (33, 33));
        assert_eq!(who.to_string(), "www(33:33)");
        let who = choose(
            true,
            None,
            Ok(Some((5, 6))),
            Unnamed::Refuse,
            passwd(PASSWD),
        )
        .unwrap()
        .unwrap();
        assert_eq!(who.to_string(), "5:6($UID)");
        let e = choose(
            true,
            Some("nope"),
            Ok(None),
            Unnamed::Default,
            passwd(PASSWD),
        );
        assert_eq!(exit_of(e), Exit::Usage);
        let e = choose(
            true,
            None,
            Err("bad $UID".into()),
            Unnamed::Default,
            passwd(PASSWD),
        );
        assert_eq!(exit_of(e), Exit::Usage);
    }

    #[test]
    fn root_never_stays_root() {
        for (user, env) in [(Some("root"), None), (None, Some((0, 0)))] {
            let e = choose(true, user, Ok(env), Unnamed::Default, passwd(PASSWD));
            assert_eq!(exit_of(e), Exit::Usage);
        }
        let e = choose(
            true,
            None,
            Ok(None),
            Unnamed::Default,
            passwd("ftp:x:0:0::/:/bin/sh\n"),
        );
        assert_eq!(exit_of(e), Exit::Usage);
    }

    #[test]
    fn unnamed_refuses_or_defaults() {
        let e = choose(true, None, Ok(None), Unnamed::Refuse, passwd(PASSWD));
        assert_eq!(exit_of(e), Exit::Usage);
        let who = choose(true, None, Ok(None), Unnamed::Default, passwd(PASSWD))
            .unwrap()
            .unwrap();
        assert_eq!(who.to_string(), "ftp(107:113,default)");
        let who = choose(
            true,
            None,
            Ok(None),
            Unnamed::Default,
            passwd("www:x:33:33::/:/bin/sh\n"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(who.to_string(), "nobody(65534:65534,default)");
        let unreadable = |_: &str| Err(io::Error::other("EACCES"));
        let who = choose(true, None, Ok(None), Unnamed::Default, unreadable)
            .unwrap()
            .unwrap();
        assert_eq!((who.uid, who.gid), (65534, 65534));
    }
}
