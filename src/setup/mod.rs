//! What both programs do to start, written once: read the command line
//! ([`cli`], with the session options declared in [`options`]), choose
//! whom to run as and drop privileges ([`privs`]), close the descriptors
//! they inherited ([`fds`]), and end with djb's exit codes ([`Exit`]) and
//! one line saying why ([`Fail`]).
//!
//! Dependencies run one way: `ftpd` and `supervisor` use this module; it
//! uses nothing of theirs, nor the engines.

pub mod cli;
pub mod fds;
pub mod messages;
pub mod options;
pub mod privs;
pub mod tls;
pub mod uploads;
pub mod vhosts;

use std::fmt;
use std::process::ExitCode;

/// How a program that could not do its job ends (daemontools' convention,
/// which tcpserver and supervise read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 100: a usage or configuration error; trying again will not help.
    Usage,
    /// 111: a temporary failure (cannot bind, cannot open ROOT, I/O).
    Temporary,
}

impl Exit {
    pub const fn code(self) -> u8 {
        match self {
            Exit::Usage => 100,
            Exit::Temporary => 111,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// Why a program could not start or go on: how it exits, and one line for
/// the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub exit: Exit,
    pub message: String,
}

impl Fail {
    pub fn usage(message: impl Into<String>) -> Fail {
        Fail {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    pub fn temporary(message: impl Into<String>) -> Fail {
        Fail {
            exit: Exit::Temporary,
            message: message.into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Says `fail` on standard error as `program: message`, for a program
/// with no log yet (or none but standard error), and gives its exit code.
pub fn report(program: &str, fail: &Fail) -> ExitCode {
    eprintln!("{program}: {}", fail.message);
    fail.exit.into()
}
