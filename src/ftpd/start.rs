//! ftpd's start-up: where its log goes, whom it runs as (publicfile's
//! rule, through the shared [`crate::setup::privs`]), and its sandbox.

use std::path::Path;

use crate::fs::Root;
use crate::log::Logger;
use crate::sandbox;
use crate::setup::Fail;
use crate::setup::options::LogTo;
use crate::setup::privs::{self, Unnamed};

/// The logger the options ask for.
pub fn open_logger(to: LogTo) -> Result<Logger, Fail> {
    if to == LogTo::Stderr {
        if !stderr_is_control() {
            return Ok(Logger::stderr("ftpd"));
        }
        // inetd and xinetd pass the connection as fd 2 too: a log line
        // there would reach the client. Syslog then, if there is one.
        return Ok(Logger::syslog("ftpd").unwrap_or_else(|_| Logger::discard()));
    }
    Logger::syslog("ftpd").map_err(|e| Fail::temporary(format!("cannot log to syslog: {e}")))
}

/// Whether standard error is the control connection itself (the same
/// socket as standard input), as inetd and xinetd set it up.
fn stderr_is_control() -> bool {
    let (Ok(err), Ok(inp)) = (
        rustix::fs::fstat(std::io::stderr()),
        rustix::fs::fstat(std::io::stdin()),
    ) else {
        return false;
    };
    let socket = rustix::fs::FileType::from_raw_mode(err.st_mode) == rustix::fs::FileType::Socket;
    socket && (err.st_dev, err.st_ino) == (inp.st_dev, inp.st_ino)
}

/// As root: chroot into the root and become $UID/$GID, which must be
/// given (publicfile's rule). As anyone else: nothing to drop (openat2
/// confines lookups). Either way, no exec can gain privileges afterwards.
pub fn drop_privileges(root_path: &Path) -> Result<(), Fail> {
    privs::confine(root_path, whom()?.as_ref())
}

/// Whom ftpd becomes (see [`drop_privileges`]): `None` when not root.
pub fn whom() -> Result<Option<privs::Identity>, Fail> {
    privs::choose(
        privs::is_root(),
        None,
        privs::from_env(),
        Unnamed::Refuse,
        privs::lookup_user,
    )
}

/// Landlock (read beneath the root, write in the drop boxes `boxes`,
/// nothing else) and the poll engine's seccomp allow-list, from here to
/// the end of the session. Said in the log only when the kernel cannot
/// enforce all of it.
pub fn enter_sandbox(
    root: &Root,
    boxes: &[std::os::fd::BorrowedFd<'_>],
    logger: &mut Logger,
) -> Result<(), Fail> {
    match sandbox::enter_uploads(sandbox::Profile::Poll, root.fd(), None, boxes) {
        Ok(report) if report.is_complete() => Ok(()),
        Ok(report) => {
            logger.info(format!("sandbox incomplete: {report}"));
            Ok(())
        }
        Err(e) => Err(Fail::temporary(format!("cannot enter the sandbox: {e}"))),
    }
}
