//! Moving a transfer's bytes to a non-blocking data socket: `sendfile(2)`
//! for binary files, `pread` plus LF->CRLF for TYPE A, batches of lines for
//! listings. Shared by every readiness-based driver (poll, epoll).

use std::os::fd::BorrowedFd;

use crate::session::{Source, TransferError};

/// Where a transfer stands after [`Pump::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The socket would block: wait until it is writable, then run again.
    Blocked,
    /// Everything was sent (not yet closed: the driver closes the socket).
    Done,
}

/// A transfer in progress.
pub struct Pump {
    _todo: Source,
}

impl Pump {
    pub fn new(source: Source) -> Pump {
        Pump { _todo: source }
    }

    /// Sends until the socket would block or the source is exhausted.
    pub fn run(&mut self, sock: BorrowedFd<'_>) -> Result<Progress, TransferError> {
        let _ = sock;
        todo!()
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        todo!()
    }
}
