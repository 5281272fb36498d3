//! What the session core asks of a driver, and what a driver reports back.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::core::vpath::VPath;
use crate::fs::dir::Lister;

/// A request from the core to its driver. The driver carries each out in
/// order and reports back through the `Session::on_*` methods.
pub enum Action {
    /// Open a passive listener on `ip`, port from `ports` (any ephemeral port
    /// when `None`), replacing any listener or data connection the session
    /// had. Report with `Session::on_listening`.
    Listen {
        ip: IpAddr,
        ports: Option<(u16, u16)>,
    },
    /// Obtain the data connection and send `source` over it, then close it.
    /// Report `Session::on_data_connected` once connected (accepting only
    /// peers for which `Session::data_peer_allowed` is true), progress with
    /// `Session::on_data_progress`, the end with `Session::on_transfer_done`.
    Transfer { conn: DataConn, source: Source },
    /// Drop the listener, the data connection and any transfer, silently.
    AbortData,
    /// Write out what is left of the control output, then close the session.
    Close,
    /// A line for the session or transfer log.
    Log(Record),
}

/// Where the data connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataConn {
    /// Accept on the listener opened by the last `Action::Listen`.
    Passive,
    /// Connect to the client at `to`, from `from` with an ephemeral port.
    Active { to: SocketAddr, from: IpAddr },
}

/// What to send on the data connection.
pub enum Source {
    /// `len` bytes of `file` from `offset`: the size when it was opened,
    /// less the REST offset. `ascii` turns LF into CRLF on the way out.
    /// A file that ends before `len` bytes is `TransferError::Shrunk`.
    File {
        file: File,
        offset: u64,
        len: u64,
        ascii: bool,
    },
    /// A listing, formatted batch by batch.
    Listing(Lister),
}

/// Why a transfer did not complete.
#[derive(Debug)]
pub enum TransferError {
    /// The data connection could not be made (connect refused, accept
    /// failed).
    Connect(io::Error),
    /// The data connection broke (reset, peer closed).
    Connection(io::Error),
    /// The file ended before the size announced (truncated meanwhile).
    Shrunk,
    /// Reading the file or directory failed.
    Source(io::Error),
}

/// A log record: session start and end, and one per transfer.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    SessionStart {
        peer: Option<SocketAddr>,
    },
    SessionEnd {
        peer: Option<SocketAddr>,
        seconds: f64,
        reason: &'static str,
    },
    Transfer(TransferRecord),
}

/// One finished (or failed) download or listing.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRecord {
    pub peer: Option<SocketAddr>,
    pub kind: TransferKind,
    pub path: VPath,
    pub bytes: u64,
    pub duration: Duration,
    pub ascii: bool,
    /// `"ok"`, or why it ended early (`"aborted"`, `"shrunk"`, ...).
    pub result: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    Retr,
    List,
    Nlst,
    Mlsd,
}
