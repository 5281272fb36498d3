//! What the session core asks of an engine, and what an engine reports
//! back.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::core::message::MessageFile;
use crate::core::meta::{Entries, FsError, Meta};
use crate::core::vpath::VPath;

/// The things an engine opens for the core and the core only passes
/// around: a file being sent, a directory being listed. The core never
/// looks inside them, so it needs no I/O to hold them, and an in-memory
/// tree can stand in for the disk in tests.
pub trait Handles {
    type File: Send + 'static;
    type Dir: Send + 'static;
    /// An upload being received: a temporary file in the incoming
    /// directory, its name reserved, not yet under that name. Clones
    /// name the same upload (the session keeps one while a request
    /// carries another).
    type Upload: Clone + Send + 'static;
    /// A virtual host's tree (`--vhosts`), as HOST found it.
    type Tree: Clone + Send + 'static;
}

/// Which tree a filesystem request is for.
pub enum Tree<H: Handles> {
    /// The one the engine serves by default: ROOT, or ROOT/0 with
    /// `--vhosts`.
    Default,
    /// The tree of the host the session chose with HOST.
    Host(H::Tree),
}

impl<H: Handles> Clone for Tree<H> {
    fn clone(&self) -> Tree<H> {
        match self {
            Tree::Default => Tree::Default,
            Tree::Host(t) => Tree::Host(t.clone()),
        }
    }
}

/// A request from the core to its engine. The engine carries each out in
/// order and reports back through the `Session::on_*` methods.
pub enum Action<H: Handles> {
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
    Transfer { conn: DataConn, source: Source<H> },
    /// Drop the listener, the data connection and any transfer, silently.
    AbortData,
    /// Filesystem work, answered with `Session::on_fs(id, ..)`. Whether
    /// the engine does it at once, on a helper thread or through io_uring
    /// is its business; the session waits for the answer (bounded by the
    /// data timeout) and ignores answers to requests it gave up on.
    /// `tree` says which tree the request is for.
    Fs {
        id: u32,
        tree: Tree<H>,
        request: FsRequest<H>,
    },
    /// From now on the control connection speaks TLS (RFC 4217): what is
    /// read is TLS records, and the output queued now and later goes out
    /// inside TLS. For AUTH TLS it comes once the 234 is written in clear;
    /// for implicit TLS, first of all. A handshake that fails is reported
    /// with `Session::on_control_tls_failed`. `early`: bytes the session
    /// was handed after it asked (the start of the ClientHello, read with
    /// a PROXY header): the first TLS input.
    StartTls { early: Vec<u8> },
    /// Write out what is left of the control output, then close the session.
    Close,
    /// A line for the session or transfer log.
    Log(Record),
}

/// Filesystem work beneath the served root. Every answer applies the
/// publishing rules: what is not published is `FsError::NotFound`,
/// exactly as if it did not exist.
pub enum FsRequest<H: Handles> {
    /// The facts of a published file or directory.
    Stat(VPath),
    /// A published regular file, opened for reading (RETR).
    OpenFile(VPath),
    /// What a listing of this path shows: a published directory opened for
    /// reading, or the facts of a published file (listed as one line).
    OpenList(VPath),
    /// The next batch of a directory being listed, into `Entries` (handed
    /// over empty, to be reused).
    ReadDir(H::Dir, Entries),
    /// The first [`MAX_BYTES`](crate::core::message::MAX_BYTES) bytes of a message file in the
    /// published directory `dir`: a regular, world-readable file, not a
    /// symlink. The only way a dotfile is ever read.
    Message { dir: VPath, file: MessageFile },
    /// The tree of virtual host `name` (a directory name made by
    /// [`host_dir`](crate::core::message::host_dir)): the published directory ROOT/NAME, with
    /// its [`MessageFile::Banner`] if it has one. Answered from ROOT
    /// whatever the request's tree.
    Host(Vec<u8>),
    /// A new upload (STOR, STOU): a temporary file beside `name`'s place,
    /// that name reserved against other sessions. Refused with
    /// `FsError::Exists` when the name is taken (a file, or another
    /// session's upload), `NoSpace` when the filesystem has less than the
    /// operator's minimum free, `BadName` when the directory is not one
    /// for uploads or the filesystem refuses the name.
    Create {
        name: UploadName,
        /// The client, for the upload hook's environment.
        peer: Option<std::net::SocketAddr>,
    },
    /// Whether the filesystem of an upload still has the operator's
    /// minimum free (`FsError::NoSpace` if not).
    Space(H::Upload),
    /// The upload's data is complete: make it durable, then give it its
    /// name without replacing anything (`FsError::Exists` if the name was
    /// taken meanwhile).
    Commit(H::Upload),
    /// The upload failed or was given up: nothing of it may remain, not
    /// even under its name should a commit have got that far. Answered
    /// with `FsAnswer::Discarded`, which nobody waits for.
    Discard(H::Upload),
}

/// Where a new upload goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadName {
    /// STOR: this path.
    Named(VPath),
    /// STOU: a name the filesystem picks in `dir`: `base` if the client
    /// suggested one and it is free, else one made from it (or from
    /// nothing).
    Unique { dir: VPath, base: Option<Vec<u8>> },
}

/// The answer to an [`FsRequest`] of the same kind.
pub enum FsAnswer<H: Handles> {
    Stat(Result<Meta, FsError>),
    File(Result<(H::File, Meta), FsError>),
    List(Result<Listed<H>, FsError>),
    /// The directory back, the batch, and whether the directory is
    /// exhausted.
    ReadDir(H::Dir, Entries, Result<bool, FsError>),
    /// The message file's bytes (at most [`MAX_BYTES`](crate::core::message::MAX_BYTES)).
    Message(Result<Vec<u8>, FsError>),
    Host(Result<HostTree<H>, FsError>),
    /// The upload, the file its data is written to, and the path it will
    /// have.
    Created(Result<Created<H>, FsError>),
    Space(Result<(), FsError>),
    Committed(Result<(), FsError>),
    Discarded,
}

/// What `FsRequest::Host` found.
pub struct HostTree<H: Handles> {
    pub tree: H::Tree,
    /// The bytes of the host's banner file, empty without one.
    pub banner: Vec<u8>,
    /// The host's drop box (`--host-incoming`), for its sessions in place
    /// of `SessionConfig::uploads`; `None`: the host takes no uploads.
    pub uploads: Option<crate::core::config::Uploads>,
}

/// What `FsRequest::Create` made.
pub struct Created<H: Handles> {
    pub upload: H::Upload,
    /// The temporary file, open for writing (the data path's end).
    pub file: H::File,
    /// The path the upload will have once committed.
    pub path: VPath,
}

/// What `FsRequest::OpenList` found.
pub enum Listed<H: Handles> {
    Dir(H::Dir),
    File(Meta),
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
pub enum Source<H: Handles> {
    /// `len` bytes of `file` from `offset`: the size when it was opened,
    /// less the REST offset. `ascii` turns LF into CRLF on the way out.
    /// A file that ends before `len` bytes is `TransferError::Shrunk`.
    File {
        file: H::File,
        offset: u64,
        len: u64,
        ascii: bool,
    },
    /// The session's own data output (a listing), read with
    /// `Session::data_output` until it says `DataOut::End`.
    Stream,
    /// The other way: what the client sends is written to `file` (an
    /// upload's temporary file) from its start, until the client closes
    /// the data connection. `ascii` turns CRLF into LF on the way in. More
    /// than `limit` bytes is `TransferError::TooLarge`. The transfer is
    /// done once every byte is written; `Ok(n)` counts the bytes stored.
    Upload {
        file: H::File,
        ascii: bool,
        limit: u64,
    },
}

/// What the session has for the data connection of a `Source::Stream`.
#[derive(Debug, PartialEq, Eq)]
pub enum DataOut<'a> {
    /// Bytes to send; report what was sent with `Session::consume_data`.
    Bytes(&'a [u8]),
    /// Nothing now, more to come: the session produces it as events
    /// (filesystem answers) arrive.
    Wait,
    /// Everything has been sent: close the connection, report the end.
    End,
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
    /// An upload sent more than its limit.
    TooLarge,
    /// Writing an upload failed for want of space (ENOSPC, EDQUOT).
    NoSpace,
    /// Writing an upload failed otherwise.
    Sink(io::Error),
    /// TLS on a protected data connection failed.
    Tls(TlsFailure),
}

/// How TLS on a data connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The handshake completed without resuming the control connection's
    /// TLS session (a third party may have raced to the data port).
    NotResumed,
    /// The handshake failed (garbage, an alert, the peer left).
    Handshake,
    /// A TLS error after the handshake (an alert, a corrupt record).
    Broken,
    /// An upload's data connection ended without the client's
    /// close_notify: the data may have been cut short by anyone who can
    /// send a TCP FIN (RFC 4217 §9, a truncation attack).
    Truncated,
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

/// One finished (or failed) download, upload or listing.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRecord {
    pub peer: Option<SocketAddr>,
    pub kind: TransferKind,
    pub path: VPath,
    pub bytes: u64,
    pub duration: Duration,
    pub ascii: bool,
    /// A token: `ok`, or why it ended early (`aborted`, `shrunk`,
    /// `connection-lost`, `control-closed`, ...).
    pub result: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    Retr,
    /// An upload (STOR or STOU).
    Stor,
    List,
    Nlst,
    Mlsd,
}
