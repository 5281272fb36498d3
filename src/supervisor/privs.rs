//! Who the supervisor runs as: root must name an unprivileged user to
//! become after binding (`--user NAME`, or `$UID`/`$GID` as set by
//! envuidgid); anyone else stays who they are and is confined by
//! `fs::Root`. The mechanism (chroot, set*id, no_new_privs) is the shared
//! [`crate::privs`].

use super::Fail;

/// The uid and gid to switch to when started as root (`root`), `None`
/// otherwise. Root with no user to switch to, or told to stay root, is a
/// usage error: the supervisor refuses to serve as root.
pub fn target(user: Option<&str>, root: bool) -> Result<Option<(u32, u32)>, Fail> {
    if !root {
        if user.is_some() {
            return Err(Fail::Usage("--user needs to be started as root".into()));
        }
        return Ok(None);
    }
    let (uid, gid) = match user {
        Some(name) => match crate::privs::lookup_user(name) {
            Ok(Some(ids)) => ids,
            Ok(None) => {
                return Err(Fail::Usage(format!(
                    "--user {name}: no such user in /etc/passwd (give a user known only to NSS as $UID and $GID)"
                )));
            }
            Err(e) => return Err(Fail::Temp(format!("--user {name}: cannot look it up: {e}"))),
        },
        None => match crate::privs::from_env().map_err(Fail::Usage)? {
            Some(ids) => ids,
            None => {
                return Err(Fail::Usage(
                    "refusing to run as root: give --user NAME or set $UID and $GID".into(),
                ));
            }
        },
    };
    if uid == 0 {
        return Err(Fail::Usage(
            "refusing to run as root: the user to switch to is root".into(),
        ));
    }
    Ok(Some((uid, gid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_root() {
        assert!(matches!(target(None, false), Ok(None)));
        assert!(matches!(target(Some("nobody"), false), Err(Fail::Usage(_))));
    }

    #[test]
    fn root_needs_a_user() {
        assert!(matches!(target(Some("root"), true), Err(Fail::Usage(_))));
        assert!(matches!(
            target(Some("surely-no-such-user-exists"), true),
            Err(Fail::Usage(_))
        ));
    }
}
