//! The Landlock policy, through the `landlock` crate (the Landlock
//! maintainers' own binding of the three system calls).
//!
//! # Compatibility
//!
//! The rights handled are those of [`LANDLOCK_ABI`], in the crate's
//! best-effort mode: a kernel with an older Landlock enforces the part it
//! knows (the crate drops the rest, `LANDLOCK_ACCESS_FS_REFER` on ABI 1
//! included, and grants in a rule only what is handled), one without
//! Landlock enforces nothing, and [`RulesetStatus`] says which. A newer
//! kernel gets the rights of [`LANDLOCK_ABI`] and no more, so that no right
//! added since can deny something the server needs: the crate never
//! handles a right it was not asked to.

use std::io;
use std::os::fd::BorrowedFd;

use landlock::{
    ABI, Access, AccessFs, LandlockStatus, PathBeneath, RestrictionStatus, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope,
};

use super::Enforced;

/// The Landlock ABI whose rights are handled (Linux 6.12: scopes).
pub const LANDLOCK_ABI: ABI = ABI::V6;

/// What the root's rule grants: reading files and listing directories.
fn read() -> landlock::BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

/// What the writable directory's rule grants: writing (appending to) and
/// creating regular files, as reopening a rotated log needs. Not reading,
/// truncating, removing or making directories.
fn write() -> landlock::BitFlags<AccessFs> {
    AccessFs::WriteFile | AccessFs::MakeReg
}

/// What a drop box's rule grants (`--incoming`, each host's with
/// `--host-incoming`): writing files, making
/// them (and linking them under their names), and removing them (a
/// temporary name, an upload given up). No directories, no other kind
/// of file, no truncation.
fn upload() -> landlock::BitFlags<AccessFs> {
    AccessFs::WriteFile | AccessFs::MakeReg | AccessFs::RemoveFile
}

/// The ruleset, not yet enforced: every filesystem right and scope of
/// [`LANDLOCK_ABI`] handled, so denied but for the rules' grants.
fn ruleset(
    root: BorrowedFd<'_>,
    writable: Option<BorrowedFd<'_>>,
    incoming: &[BorrowedFd<'_>],
) -> Result<RulesetCreated, RulesetError> {
    let mut created = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        // No signal to, and no abstract UNIX socket of, anything outside.
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?
        .add_rule(PathBeneath::new(root, read()))?;
    // One rule a drop box: each beneath its own directory, nothing
    // between them.
    for &dir in incoming {
        created = created.add_rule(PathBeneath::new(dir, upload()))?;
    }
    match writable {
        Some(dir) => created.add_rule(PathBeneath::new(dir, write())),
        None => Ok(created),
    }
}

/// The policy of [`super::restrict_filesystem`]: read beneath `root`,
/// write and create files in `writable`, write, make and remove files in
/// each of `incoming` (the drop boxes), every other handled right denied.
/// Sets no_new_privs, even where there is no Landlock.
pub fn restrict(
    root: BorrowedFd<'_>,
    writable: Option<BorrowedFd<'_>>,
    incoming: &[BorrowedFd<'_>],
) -> io::Result<Enforced> {
    let status = ruleset(root, writable, incoming)
        .and_then(RulesetCreated::restrict_self)
        .map_err(|e| io::Error::other(format!("landlock: {e}")))?;
    if !status.no_new_privs {
        // Asked for (the crate's default), so this cannot be; but Landlock
        // is no confinement without it, so say so rather than trust it.
        return Err(io::Error::other("landlock: no_new_privs not set"));
    }
    Ok(enforced(&status))
}

/// What the kernel enforced, for the log.
fn enforced(status: &RestrictionStatus) -> Enforced {
    report(&status.ruleset, status.landlock)
}

fn report(ruleset: &RulesetStatus, landlock: LandlockStatus) -> Enforced {
    let abi = ABI::from(landlock);
    match (ruleset, landlock) {
        (_, LandlockStatus::NotImplemented) => Enforced::None("not in this kernel".into()),
        (_, LandlockStatus::NotEnabled) => Enforced::None("disabled in this kernel".into()),
        (RulesetStatus::FullyEnforced, _) => Enforced::Full(abi.to_string()),
        (RulesetStatus::PartiallyEnforced, _) => Enforced::Partial(abi.to_string()),
        (RulesetStatus::NotEnforced, _) => Enforced::None(format!("nothing enforced at abi{abi}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use landlock::{CompatLevel, Compatible};
    use std::os::fd::AsFd;

    fn available(abi: ABI) -> LandlockStatus {
        LandlockStatus::Available {
            effective_abi: abi,
            kernel_abi: None,
        }
    }

    #[test]
    fn what_is_enforced() {
        let full = report(&RulesetStatus::FullyEnforced, available(ABI::V6));
        assert_eq!(full, Enforced::Full("6".into()));
        assert!(full.is_full());
        assert_eq!(full.to_string(), "landlock=abi6");
        let newer = report(&RulesetStatus::FullyEnforced, available(ABI::V7));
        assert_eq!(newer.to_string(), "landlock=abi7");
        let partial = report(&RulesetStatus::PartiallyEnforced, available(ABI::V3));
        assert_eq!(partial.to_string(), "landlock=partial(abi3)");
        assert!(!partial.is_full());
        let none = report(&RulesetStatus::NotEnforced, LandlockStatus::NotImplemented);
        assert_eq!(none.to_string(), "landlock=off(not in this kernel)");
        let off = report(&RulesetStatus::NotEnforced, LandlockStatus::NotEnabled);
        assert_eq!(off.to_string(), "landlock=off(disabled in this kernel)");
    }

    #[test]
    fn the_policy_is_that_of_abi6() {
        let all = AccessFs::from_all(LANDLOCK_ABI);
        // Thirteen rights of ABI 1, REFER (2), TRUNCATE (3), IOCTL_DEV (5).
        assert_eq!(all.bits(), 0xffff);
        assert_eq!(all & read(), read());
        assert_eq!(all & write(), write());
        // A rule grants no execute, truncate, removal or directory making.
        for right in [
            AccessFs::Execute,
            AccessFs::Truncate,
            AccessFs::RemoveFile,
            AccessFs::RemoveDir,
            AccessFs::MakeDir,
            AccessFs::MakeSym,
            AccessFs::Refer,
            AccessFs::IoctlDev,
        ] {
            assert!(!(read() | write()).contains(right), "{right:?}");
        }
    }

    /// Where the kernel has ABI 6 or later, it takes all of the policy:
    /// nothing is dropped by best effort. Nothing is restricted (no
    /// `restrict_self`).
    #[test]
    fn this_kernel_takes_the_whole_policy() {
        let probe = Ruleset::default();
        let Ok(created) = probe
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        else {
            eprintln!("this kernel has no Landlock of ABI 6: nothing to check");
            return;
        };
        let dir = rustix::fs::open(
            "/",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let created = created
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .unwrap()
            .create()
            .unwrap()
            .add_rule(PathBeneath::new(dir.as_fd(), read()))
            .unwrap()
            .add_rule(PathBeneath::new(dir.as_fd(), write()))
            .unwrap();
        drop(created);
        // And the same through the function the servers use.
        ruleset(dir.as_fd(), Some(dir.as_fd()), &[dir.as_fd(), dir.as_fd()]).unwrap();
    }
}
