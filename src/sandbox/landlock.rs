//! Landlock over its three system calls: `landlock_create_ruleset`,
//! `landlock_add_rule` and `landlock_restrict_self` (Linux 5.13 and
//! later; see the kernel's Documentation/userspace-api/landlock.rst).
//!
//! The constants and structures are those of the kernel UAPI header,
//! include/uapi/linux/landlock.h; the libc crate has the system call
//! numbers but none of these. Only what [`super::restrict_filesystem`]
//! uses is here: path-beneath rules, scopes, no network rights.
//!
//! # Compatibility
//!
//! The kernel says which ABI it has (`LANDLOCK_CREATE_RULESET_VERSION`),
//! and rejects a right it does not know (`EINVAL`), so the rights handled
//! are those of [`LANDLOCK_ABI`] masked down to that version
//! ([`handled_fs`], [`handled_scopes`]): best effort, as the kernel's
//! documentation recommends. A newer kernel gets the rights of
//! [`LANDLOCK_ABI`] and no more, so that no right added since can deny
//! something the server needs.
//!
//! `LANDLOCK_ACCESS_FS_REFER` is special: ABI 1 cannot handle it (and
//! always denies moving or linking a file to another directory), so it is
//! masked out there like a right from the future.

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{Enforced, LANDLOCK_ABI};

// Filesystem rights (`LANDLOCK_ACCESS_FS_*`, include/uapi/linux/landlock.h),
// with the ABI that brought each.

/// ABI 1: execute a file.
pub const ACCESS_FS_EXECUTE: u64 = 1 << 0;
/// ABI 1: open a file for writing.
pub const ACCESS_FS_WRITE_FILE: u64 = 1 << 1;
/// ABI 1: open a file for reading.
pub const ACCESS_FS_READ_FILE: u64 = 1 << 2;
/// ABI 1: open a directory or list its content.
pub const ACCESS_FS_READ_DIR: u64 = 1 << 3;
/// ABI 1: remove an empty directory or rename one.
pub const ACCESS_FS_REMOVE_DIR: u64 = 1 << 4;
/// ABI 1: unlink (or rename) a file.
pub const ACCESS_FS_REMOVE_FILE: u64 = 1 << 5;
/// ABI 1: create (or rename or link) a character device.
pub const ACCESS_FS_MAKE_CHAR: u64 = 1 << 6;
/// ABI 1: create (or rename) a directory.
pub const ACCESS_FS_MAKE_DIR: u64 = 1 << 7;
/// ABI 1: create (or rename or link) a regular file.
pub const ACCESS_FS_MAKE_REG: u64 = 1 << 8;
/// ABI 1: create (or rename or link) a UNIX domain socket.
pub const ACCESS_FS_MAKE_SOCK: u64 = 1 << 9;
/// ABI 1: create (or rename or link) a named pipe.
pub const ACCESS_FS_MAKE_FIFO: u64 = 1 << 10;
/// ABI 1: create (or rename or link) a block device.
pub const ACCESS_FS_MAKE_BLOCK: u64 = 1 << 11;
/// ABI 1: create (or rename or link) a symbolic link.
pub const ACCESS_FS_MAKE_SYM: u64 = 1 << 12;
/// ABI 2: link or rename a file from or to another directory.
pub const ACCESS_FS_REFER: u64 = 1 << 13;
/// ABI 3: truncate a file (`truncate`, `ftruncate`, `O_TRUNC`).
pub const ACCESS_FS_TRUNCATE: u64 = 1 << 14;
/// ABI 5: `ioctl` on a character or block device.
pub const ACCESS_FS_IOCTL_DEV: u64 = 1 << 15;

/// The thirteen rights of ABI 1.
const ACCESS_FS_ABI1: u64 = ACCESS_FS_EXECUTE
    | ACCESS_FS_WRITE_FILE
    | ACCESS_FS_READ_FILE
    | ACCESS_FS_READ_DIR
    | ACCESS_FS_REMOVE_DIR
    | ACCESS_FS_REMOVE_FILE
    | ACCESS_FS_MAKE_CHAR
    | ACCESS_FS_MAKE_DIR
    | ACCESS_FS_MAKE_REG
    | ACCESS_FS_MAKE_SOCK
    | ACCESS_FS_MAKE_FIFO
    | ACCESS_FS_MAKE_BLOCK
    | ACCESS_FS_MAKE_SYM;

// Scopes (`LANDLOCK_SCOPE_*`, include/uapi/linux/landlock.h), ABI 6.

/// ABI 6: connect to an abstract UNIX socket made outside the domain.
pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
/// ABI 6: send a signal to a process outside the domain.
pub const SCOPE_SIGNAL: u64 = 1 << 1;

/// `landlock_create_ruleset` flag: return the ABI version, make nothing.
const CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;

/// No flags, for the calls that take some.
const NO_FLAGS: libc::c_uint = 0;

/// `enum landlock_rule_type`: `LANDLOCK_RULE_PATH_BENEATH`.
const RULE_PATH_BENEATH: libc::c_uint = 1;

/// `struct landlock_ruleset_attr` (include/uapi/linux/landlock.h). The
/// kernel takes its size as an argument: `handled_access_net` came with
/// ABI 4, `scoped` with ABI 6 (see [`ruleset_attr_size`]).
#[repr(C)]
#[derive(Debug, Default)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (include/uapi/linux/landlock.h),
/// packed in the header too: 12 bytes.
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The filesystem rights handled on a kernel of Landlock ABI `abi`: those
/// of [`LANDLOCK_ABI`] that `abi` knows (none for 0: no Landlock).
pub fn handled_fs(abi: u32) -> u64 {
    let abi = abi.min(LANDLOCK_ABI);
    let mut rights = 0;
    if abi >= 1 {
        rights |= ACCESS_FS_ABI1;
    }
    if abi >= 2 {
        rights |= ACCESS_FS_REFER;
    }
    if abi >= 3 {
        rights |= ACCESS_FS_TRUNCATE;
    }
    // ABI 4 brought network rights only (none handled here).
    if abi >= 5 {
        rights |= ACCESS_FS_IOCTL_DEV;
    }
    rights
}

/// The scopes handled on a kernel of Landlock ABI `abi`.
pub fn handled_scopes(abi: u32) -> u64 {
    if abi.min(LANDLOCK_ABI) >= 6 {
        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    } else {
        0
    }
}

/// How many bytes of [`RulesetAttr`] to pass: up to the last field filled
/// (`scoped` where there are scopes, else `handled_access_fs` alone, as no
/// network rights are handled), so that an older kernel is never handed a
/// field it does not know.
fn ruleset_attr_size(attr: &RulesetAttr) -> usize {
    if attr.scoped != 0 {
        size_of::<RulesetAttr>()
    } else if attr.handled_access_net != 0 {
        offset_of!(RulesetAttr, scoped)
    } else {
        offset_of!(RulesetAttr, handled_access_net)
    }
}

/// What a kernel of Landlock ABI `abi` (at least 1) enforces of the
/// policy, once restricted.
pub fn enforced(abi: u32) -> Enforced {
    if abi >= LANDLOCK_ABI {
        Enforced::Full(abi.to_string())
    } else {
        Enforced::Partial(abi.to_string())
    }
}

/// Why a kernel enforces no Landlock at all, from the error of
/// `landlock_create_ruleset`: `ENOSYS` and `EOPNOTSUPP` are documented;
/// anything else (say a container's seccomp filter) is shown as it is.
fn unavailable(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "not in this kernel".into(),
        Some(libc::EOPNOTSUPP) => "disabled in this kernel".into(),
        _ => format!("landlock_create_ruleset: {e}"),
    }
}

/// `rc` of a system call, or its errno with what failed.
fn check(rc: libc::c_long, call: &str) -> io::Result<libc::c_long> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("landlock: {call}: {e}")))
    } else {
        Ok(rc)
    }
}

/// The kernel's Landlock ABI version (1 or more), or why there is none.
fn abi_version() -> Result<u32, String> {
    // SAFETY: a NULL attribute with size 0 and the VERSION flag: the
    // kernel reads no memory and makes no descriptor, it returns a number.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0_usize,
            CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        return Err(unavailable(&io::Error::last_os_error()));
    }
    match u32::try_from(rc) {
        Ok(abi) if abi >= 1 => Ok(abi),
        _ => Err(format!("version {rc}")),
    }
}

fn create_ruleset(attr: &RulesetAttr) -> io::Result<OwnedFd> {
    let size = ruleset_attr_size(attr);
    // SAFETY: `attr` is a live `RulesetAttr` of at least `size` bytes; the
    // kernel only reads it, during the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::from_ref(attr),
            size,
            NO_FLAGS,
        )
    };
    let fd = check(rc, "landlock_create_ruleset")?;
    let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just made this descriptor (O_CLOEXEC), and
    // nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn add_path_beneath(ruleset: &OwnedFd, dir: BorrowedFd<'_>, access: u64) -> io::Result<()> {
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: dir.as_raw_fd(),
    };
    // SAFETY: both descriptors are open for the whole call (borrowed), and
    // `attr` is a live `PathBeneathAttr` (the layout of the rule type
    // given) that the kernel only reads, during the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            std::ptr::from_ref(&attr),
            NO_FLAGS,
        )
    };
    check(rc, "landlock_add_rule").map(drop)
}

fn restrict_self(ruleset: &OwnedFd) -> io::Result<()> {
    // SAFETY: no pointers; the ruleset descriptor is open for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_restrict_self,
            ruleset.as_raw_fd(),
            NO_FLAGS,
        )
    };
    check(rc, "landlock_restrict_self").map(drop)
}

/// The policy of [`super::restrict_filesystem`]: read beneath `root`,
/// write and create files in `writable`, write, create and remove files
/// in `incoming` (the drop box), every other handled right denied.
pub fn restrict(
    root: BorrowedFd<'_>,
    writable: Option<BorrowedFd<'_>>,
    incoming: Option<BorrowedFd<'_>>,
) -> io::Result<Enforced> {
    let no_new_privs = || {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| io::Error::new(e.kind(), format!("landlock: no_new_privs: {e}")))
    };
    let abi = match abi_version() {
        Ok(abi) => abi,
        Err(why) => {
            // Best effort: nothing to enforce, but no_new_privs all the same.
            no_new_privs()?;
            return Ok(Enforced::None(why));
        }
    };
    let attr = RulesetAttr {
        handled_access_fs: handled_fs(abi),
        handled_access_net: 0,
        scoped: handled_scopes(abi),
    };
    let ruleset = create_ruleset(&attr)?;
    let read = (ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR) & attr.handled_access_fs;
    add_path_beneath(&ruleset, root, read)?;
    if let Some(dir) = writable {
        let write = (ACCESS_FS_WRITE_FILE | ACCESS_FS_MAKE_REG) & attr.handled_access_fs;
        add_path_beneath(&ruleset, dir, write)?;
    }
    // The drop box (`fs::incoming`): files written, made (and linked
    // under their names), and removed (a temporary name, an upload given
    // up); no directories, no other kind of file.
    if let Some(dir) = incoming {
        let upload = ACCESS_FS_WRITE_FILE | ACCESS_FS_MAKE_REG | ACCESS_FS_REMOVE_FILE;
        add_path_beneath(&ruleset, dir, upload & attr.handled_access_fs)?;
    }
    // Without no_new_privs (or CAP_SYS_ADMIN) restrict_self is EPERM.
    no_new_privs()?;
    restrict_self(&ruleset)?;
    // The ruleset's descriptor closes here: the domain lives on without it.
    drop(ruleset);
    Ok(enforced(abi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn rights_per_abi() {
        assert_eq!(handled_fs(0), 0);
        assert_eq!(handled_fs(1).count_ones(), 13);
        assert_eq!(handled_fs(1), 0x1fff);
        assert_eq!(
            handled_fs(1) & ACCESS_FS_REFER,
            0,
            "ABI 1 cannot handle REFER"
        );
        assert_eq!(handled_fs(2), handled_fs(1) | ACCESS_FS_REFER);
        assert_eq!(handled_fs(3), handled_fs(2) | ACCESS_FS_TRUNCATE);
        assert_eq!(handled_fs(4), handled_fs(3), "ABI 4 brought network rights");
        assert_eq!(handled_fs(5), handled_fs(4) | ACCESS_FS_IOCTL_DEV);
        assert_eq!(handled_fs(6), 0xffff);
        // A newer kernel: the rights of LANDLOCK_ABI, nothing more.
        assert_eq!(handled_fs(7), handled_fs(LANDLOCK_ABI));
        assert_eq!(handled_fs(u32::MAX), handled_fs(LANDLOCK_ABI));
    }

    #[test]
    fn scopes_per_abi() {
        for abi in 0..6 {
            assert_eq!(handled_scopes(abi), 0, "abi {abi}");
        }
        for abi in [6, 7, 99] {
            assert_eq!(handled_scopes(abi), 0b11, "abi {abi}");
        }
    }

    #[test]
    fn the_rules_grant_only_handled_rights() {
        // The kernel refuses (EINVAL) a rule with a right not handled.
        for abi in 1..=LANDLOCK_ABI + 1 {
            let fs = handled_fs(abi);
            for grant in [
                ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR,
                ACCESS_FS_WRITE_FILE | ACCESS_FS_MAKE_REG,
            ] {
                assert_eq!(grant & fs, grant, "abi {abi}");
            }
        }
    }

    #[test]
    fn layouts_match_the_uapi_header() {
        assert_eq!(size_of::<RulesetAttr>(), 24);
        assert_eq!(offset_of!(RulesetAttr, handled_access_net), 8);
        assert_eq!(offset_of!(RulesetAttr, scoped), 16);
        assert_eq!(size_of::<PathBeneathAttr>(), 12);
        assert_eq!(offset_of!(PathBeneathAttr, parent_fd), 8);
    }

    #[test]
    fn attr_size_per_abi() {
        let attr = |abi| RulesetAttr {
            handled_access_fs: handled_fs(abi),
            handled_access_net: 0,
            scoped: handled_scopes(abi),
        };
        for abi in 1..6 {
            assert_eq!(ruleset_attr_size(&attr(abi)), 8, "abi {abi}");
        }
        for abi in [6, 7] {
            assert_eq!(ruleset_attr_size(&attr(abi)), 24, "abi {abi}");
        }
        let net = RulesetAttr {
            handled_access_net: 1,
            ..RulesetAttr::default()
        };
        assert_eq!(ruleset_attr_size(&net), 16);
    }

    /// This kernel takes the ruleset of every ABI up to its own (the
    /// masks and the attribute's size), and the rules in it; nothing is
    /// restricted (no `restrict_self`).
    #[test]
    fn this_kernel_takes_the_ruleset_of_every_abi() {
        let Ok(kernel) = abi_version() else {
            return;
        };
        let dir = rustix::fs::open(
            "/",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        for abi in 1..=kernel.min(LANDLOCK_ABI) {
            let attr = RulesetAttr {
                handled_access_fs: handled_fs(abi),
                handled_access_net: 0,
                scoped: handled_scopes(abi),
            };
            let ruleset = create_ruleset(&attr).unwrap_or_else(|e| panic!("abi {abi}: {e}"));
            add_path_beneath(
                &ruleset,
                dir.as_fd(),
                ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR,
            )
            .unwrap();
            add_path_beneath(
                &ruleset,
                dir.as_fd(),
                ACCESS_FS_WRITE_FILE | ACCESS_FS_MAKE_REG,
            )
            .unwrap();
        }
        // A right this ruleset does not handle: the kernel says EINVAL.
        let attr = RulesetAttr {
            handled_access_fs: ACCESS_FS_READ_FILE,
            ..RulesetAttr::default()
        };
        let ruleset = create_ruleset(&attr).unwrap();
        let e = add_path_beneath(&ruleset, dir.as_fd(), ACCESS_FS_READ_DIR).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn what_is_enforced() {
        assert_eq!(enforced(1), Enforced::Partial("1".into()));
        assert_eq!(enforced(5), Enforced::Partial("5".into()));
        assert_eq!(enforced(6), Enforced::Full("6".into()));
        assert_eq!(enforced(7).to_string(), "landlock=abi7");
        assert_eq!(enforced(3).to_string(), "landlock=partial(abi3)");
        let errno = io::Error::from_raw_os_error;
        assert_eq!(unavailable(&errno(libc::ENOSYS)), "not in this kernel");
        assert_eq!(
            unavailable(&errno(libc::EOPNOTSUPP)),
            "disabled in this kernel"
        );
        let off = Enforced::None(unavailable(&errno(libc::EPERM)));
        assert!(
            off.to_string()
                .starts_with("landlock=off(landlock_create_ruleset: Operation not permitted"),
            "{off}"
        );
    }
}
