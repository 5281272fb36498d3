//! Uploads into the drop box (`--incoming`). STOR and STOU ask the
//! filesystem for a temporary file with the name reserved
//! (`FsRequest::Create`), the data path writes what the client sends into
//! it, and once the client has closed the data connection the session
//! asks for the commit (made durable, then named without replacing
//! anything) and only then says 226. Every other end (ABOR, a broken or
//! stalled data connection, the size cap, a full disk, the session
//! closing) asks for the upload to be discarded: nothing of it remains.

use std::time::{Duration, Instant};

use super::UploadName;
use super::data::Transfer;
use super::pending::Then;
use super::{Created, DataConn, FsAnswer, FsRequest, Handles, Session, Source, TransferKind};
use crate::core::clock::Now;
use crate::core::meta::FsError;
use crate::core::proto::reply::Code;
use crate::core::vpath::{VPath, VPathError};

/// Bytes received between two checks of the free space.
const SPACE_EVERY: u64 = 8 << 20;
/// The longest wait for a commit: an fsync of a large upload on a slow
/// disk may take far longer than any lookup.
const COMMIT_WAIT: Duration = Duration::from_secs(300);
/// The longest name an upload may have (NAME_MAX of Linux filesystems).
pub const NAME_MAX: usize = 255;

/// The upload of the transfer in progress (or being committed).
pub(super) struct Uploading<H: Handles> {
    upload: H::Upload,
    /// Received bytes at which the free space is checked next.
    check_at: u64,
    /// A free-space check in flight: its request id and deadline.
    checking: Option<(u32, Instant)>,
}

/// Whether `name` may be an upload's name: not hidden, no `/`, no
/// control characters, at most [`NAME_MAX`] bytes. The filesystem may
/// still refuse it (`FsError::BadName`).
pub fn name_allowed(name: &[u8]) -> bool {
    name.len() <= NAME_MAX
        && crate::core::listing::listable_name(name)
        && !name.contains(&b'/')
        && name != b".."
}

impl<H: Handles> Session<H> {
    /// STOR (`unique` false) and STOU.
    pub(super) fn stor(&mut self, arg: Option<Vec<u8>>, unique: bool, now: Now) {
        let rest = std::mem::take(&mut self.rest);
        let verb = if unique { "STOU" } else { "STOR" };
        let Some(uploads) = self.config.uploads.clone() else {
            return self.refuse_write(verb);
        };
        let name = match (arg, unique) {
            (Some(a), _) => match VPath::resolve(&self.cwd, &a) {
                Ok(p) if !p.is_root() => Some(p),
                Ok(_) | Err(VPathError::Hidden) => {
                    return self.reply(Code::NameNotAllowed, "File name not allowed.");
                }
                Err(VPathError::Nul) => {
                    return self.reply(Code::BadArguments, "Invalid file name.");
                }
            },
            (None, false) => {
                return self.reply(Code::BadArguments, "STOR needs a file name.");
            }
            (None, true) => None,
        };
        let (dir, base) = match &name {
            Some(p) => (p.parent(), Some(p.name().to_vec())),
            None => (self.cwd.clone(), None),
        };
        if base.as_deref().is_some_and(|b| !name_allowed(b)) {
            return self.reply(Code::NameNotAllowed, "File name not allowed.");
        }
        if !uploads.takes(&dir) {
            let mut text = b"Uploads go into ".to_vec();
            text.extend_from_slice(uploads.incoming.as_bytes());
            text.extend_from_slice(b" only.");
            return self.reply(Code::NameNotAllowed, text);
        }
        // After the name and place: a STOR refused whatever the REST says
        // 553 (RFC 959), not 554, so a client does not retry it without.
        if rest != 0 {
            // RFC 3659 §5.5: a restart the server cannot honour.
            return self.reply(
                Code::BadRestart,
                "Uploads are never resumed or appended to: send the whole file.",
            );
        }
        let Some(conn) = self.data_conn() else {
            return;
        };
        let name = match (name, unique) {
            (Some(p), false) => UploadName::Named(p),
            (_, true) => UploadName::Unique { dir, base },
            (None, false) => return,
        };
        let peer = self.ends.peer;
        self.ask(
            FsRequest::Create { name, peer },
            Then::Stor { conn, unique },
            now,
        );
    }

    /// The answer to `FsRequest::Create`: the transfer starts, or the
    /// refusal is answered.
    pub(super) fn created(
        &mut self,
        conn: DataConn,
        unique: bool,
        r: Result<Created<H>, FsError>,
        now: Now,
    ) {
        let c = match r {
            Ok(c) => c,
            Err(e) => return self.refuse_upload(&e),
        };
        let limit = self.config.uploads.as_ref().map_or(0, |u| u.max_size);
        let mode = if self.ascii { "ASCII" } else { "BINARY" };
        // RFC 1123 §4.1.2.9: STOU's 150 names the file, as `FILE: name`.
        let opening = if unique {
            format!("FILE: {}", String::from_utf8_lossy(c.path.name()))
        } else {
            format!(
                "Opening {mode} mode data connection for {}.",
                String::from_utf8_lossy(c.path.as_bytes())
            )
        };
        self.upload = Some(Box::new(Uploading {
            upload: c.upload,
            check_at: SPACE_EVERY,
            checking: None,
        }));
        let source = Source::Upload {
            file: c.file,
            ascii: self.ascii,
            limit,
        };
        self.start_transfer(conn, source, TransferKind::Stor, c.path, opening, now);
    }

    /// Answers a refused upload.
    fn refuse_upload(&mut self, e: &FsError) {
        let (code, text) = match e {
            FsError::Exists => (
                Code::NameNotAllowed,
                "File exists, or is being uploaded: uploads never replace a file.",
            ),
            FsError::NoSpace => (Code::NoStorage, "Insufficient storage space."),
            FsError::Busy(_) => (Code::FileBusy, "Temporarily unavailable; try again later."),
            FsError::Io(_) => (Code::LocalError, "Local error; nothing was stored."),
            FsError::BadName | FsError::NotFound => {
                (Code::NameNotAllowed, "File name not allowed here.")
            }
            FsError::NotFile | FsError::NotDir => (Code::NameNotAllowed, "Not a directory."),
        };
        self.reply(code, text);
    }

    /// `total` bytes of the upload received: asks for the free space now
    /// and then.
    pub(super) fn upload_progress(&mut self, total: u64, now: Now) {
        let Some(u) = self.upload.as_deref() else {
            return;
        };
        if total < u.check_at || u.checking.is_some() {
            return;
        }
        let request = FsRequest::Space(u.upload.clone());
        let id = self.request(request);
        let deadline = now.mono + self.config.data_timeout;
        if let Some(u) = self.upload.as_deref_mut() {
            u.checking = Some((id, deadline));
            u.check_at = total.saturating_add(SPACE_EVERY);
        }
    }

    /// Takes the answer to a free-space check; whether it was one.
    pub(super) fn on_space(&mut self, id: u32, answer: &FsAnswer<H>, now: Now) -> bool {
        let Some(u) = self.upload.as_deref_mut() else {
            return false;
        };
        if u.checking.is_none_or(|(c, _)| c != id) {
            return false;
        }
        u.checking = None;
        if let FsAnswer::Space(Err(FsError::NoSpace)) = answer
            && self.data.in_transfer()
        {
            self.finish_transfer("no-space", now);
            self.reply(
                Code::NoStorage,
                "Insufficient storage space; nothing was stored.",
            );
        }
        true
    }

    /// A free-space check that did not come back in time is forgotten
    /// (the next one is asked for later); the writes still see ENOSPC.
    pub(super) fn space_check_expired(&mut self, now: Now) {
        if let Some(u) = self.upload.as_deref_mut()
            && u.checking.is_some_and(|(_, d)| now.mono >= d)
        {
            u.checking = None;
        }
    }

    /// When a free-space check gives up.
    pub(super) fn space_deadline(&self) -> Option<Instant> {
        self.upload.as_ref().and_then(|u| u.checking.map(|c| c.1))
    }

    /// Every byte arrived and was written (`stored` of them, after TYPE A
    /// conversion): the upload is committed before the 226.
    pub(super) fn upload_received(&mut self, stored: u64, now: Now) {
        let Some(mut t) = self.take_transfer() else {
            return;
        };
        t.sent = stored;
        let Some(u) = self.upload.as_deref() else {
            self.log_transfer(*t, "write-error", now);
            return self.reply(Code::LocalError, "Local error; nothing was stored.");
        };
        let id = self.request(FsRequest::Commit(u.upload.clone()));
        let wait = COMMIT_WAIT.max(self.config.data_timeout);
        self.pending = Some(Box::new(super::pending::Pending {
            id,
            deadline: now.mono + wait,
            then: Then::Commit(t),
        }));
    }

    /// The answer to `FsRequest::Commit`.
    pub(super) fn committed(&mut self, t: Transfer, r: Result<(), FsError>, now: Now) {
        match r {
            Ok(()) => {
                // Stored and named: nothing to discard any more.
                self.upload = None;
                self.log_transfer(t, "ok", now);
                self.reply(Code::TransferDone, "Transfer complete.");
            }
            Err(e) => {
                self.discard_upload();
                let outcome = match e {
                    FsError::Exists => "exists",
                    FsError::NoSpace => "no-space",
                    _ => "write-error",
                };
                self.log_transfer(t, outcome, now);
                match e {
                    FsError::Exists => self.reply(
                        Code::NameNotAllowed,
                        "File exists (stored meanwhile by someone else); nothing was stored.",
                    ),
                    FsError::NoSpace => self.reply(
                        Code::NoStorage,
                        "Insufficient storage space; nothing was stored.",
                    ),
                    _ => self.reply(Code::LocalError, "Write error; nothing was stored."),
                }
            }
        }
    }

    /// A commit that did not come back in time: given up (the filesystem
    /// undoes it should it complete after all).
    pub(super) fn commit_expired(&mut self, t: Transfer, now: Now) {
        self.discard_upload();
        self.log_transfer(t, "timeout", now);
        self.reply(
            Code::LocalError,
            "Storing took too long; nothing was stored.",
        );
    }

    /// Asks for the upload in progress, if any, to be discarded.
    pub(super) fn discard_upload(&mut self) {
        if let Some(u) = self.upload.take() {
            self.request(FsRequest::Discard(u.upload));
        }
    }

    /// Whether an upload is being committed: its client waits for the
    /// 226, so a stopping server lets the commit finish first.
    pub fn storing(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| matches!(p.then, Then::Commit(_)))
    }
}
