//! Commands that need the filesystem: each asks with an [`FsRequest`] and
//! is finished here when the answer comes ([`Session::on_fs`]).

use std::time::Instant;

use super::data::Transfer;
use super::listing::{ListTo, Listing};
use super::{DataConn, FsAnswer, FsRequest, Handles, Listed, Session, Source, TransferKind};
use crate::core::calendar;
use crate::core::clock::Now;
use crate::core::listing::{self, Style};
use crate::core::meta::{FsError, Kind, Meta};
use crate::core::proto::reply::{self, Code};
use crate::core::vpath::VPath;

/// A command waiting for the answer to request `id`.
pub(super) struct Pending {
    pub(super) id: u32,
    /// Past this, the command is answered 450 and the answer ignored.
    pub(super) deadline: Instant,
    pub(super) then: Then,
}

/// What to do with the answer.
pub(super) enum Then {
    Cwd(VPath),
    Size,
    Mdtm,
    Mlst(VPath),
    Retr {
        path: VPath,
        conn: DataConn,
        rest: u64,
    },
    /// LIST, NLST or MLSD.
    List {
        path: VPath,
        conn: DataConn,
        kind: TransferKind,
    },
    Stat(VPath),
    /// HOST's lookup of the host's tree.
    Host,
    /// The tree's welcome, for the 230 after PASS.
    Welcome,
    /// The message of the directory CWD entered, for the 250.
    DirMessage(VPath),
    /// STOR or STOU: the upload's temporary file.
    Stor {
        conn: DataConn,
        unique: bool,
    },
    /// An upload received whole, being committed; its transfer's record.
    Commit(Box<Transfer>),
}

/// How a failed request is answered: LIST, NLST and STAT have no 550 in
/// RFC 959's list, but clients read 450 as "try again" (lftp retries for
/// half an hour): LIST and NLST answer 550 as RETR does; STAT keeps 450.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Code550,
    Code450,
}

impl<H: Handles> Session<H> {
    /// Sends `request`; the command goes on in [`Session::resume`] with
    /// `then` once the answer comes.
    pub(super) fn ask(&mut self, request: FsRequest<H>, then: Then, now: Now) {
        let id = self.request(request);
        self.pending = Some(Box::new(Pending {
            id,
            deadline: now.mono + self.config.data_timeout,
            then,
        }));
    }

    /// Answers a failed lookup. What is not published reads exactly as
    /// absent (the filesystem layer says `NotFound` for both).
    pub(super) fn refuse(&mut self, e: &FsError, refusal: Refusal) {
        let text = match e {
            FsError::NotFound => "No such file or directory.",
            FsError::NotFile => "Not a plain file.",
            FsError::NotDir => "Not a directory.",
            FsError::Busy(_) => "Temporarily unavailable; try again later.",
            FsError::Io(_) => "Cannot read that.",
            FsError::Exists | FsError::BadName | FsError::NoSpace => "Not possible here.",
        };
        let code = match (e, refusal) {
            (FsError::Busy(_), _) | (_, Refusal::Code450) => Code::FileBusy,
            _ => Code::FileUnavailable,
        };
        self.reply(code, text);
    }

    /// Finishes the command that asked, with the filesystem's answer.
    pub(super) fn resume(&mut self, then: Then, answer: FsAnswer<H>, now: Now) {
        match (then, answer) {
            (Then::Cwd(path), FsAnswer::Stat(r)) => match r {
                Ok(m) if m.kind == Kind::Dir => self.entered(path, now),
                Ok(_) => self.reply(Code::FileUnavailable, "Not a directory."),
                Err(e) => self.refuse(&e, Refusal::Code550),
            },
            (Then::Size, FsAnswer::Stat(r)) => match self.plain_file(r) {
                // The ASCII size differs from the binary one; RFC 3659 §4.
                Some(_) if self.ascii => self.reply(
                    Code::FileUnavailable,
                    "SIZE not available in ASCII mode: use TYPE I.",
                ),
                Some(meta) => self.reply(Code::FileStatus, meta.size.to_string()),
                None => {}
            },
            (Then::Mdtm, FsAnswer::Stat(r)) => {
                if let Some(meta) = self.plain_file(r) {
                    self.reply(Code::FileStatus, calendar::utc_timestamp(meta.mtime));
                }
            }
            (Then::Mlst(path), FsAnswer::Stat(r)) => match r {
                Ok(meta) => self.mlst_reply(&path, &meta),
                Err(e) => self.refuse(&e, Refusal::Code550),
            },
            (Then::Retr { path, conn, rest }, FsAnswer::File(r)) => match r {
                Ok((file, meta)) => self.retr_opened(path, conn, rest, file, meta, now),
                Err(e) => self.refuse(&e, Refusal::Code550),
            },
            (Then::List { path, conn, kind }, FsAnswer::List(r)) => {
                self.list_opened(path, conn, kind, r, now)
            }
            (Then::Stat(path), FsAnswer::List(r)) => match r {
                Ok(listed) => {
                    let mut head = b"Status of ".to_vec();
                    head.extend_from_slice(path.as_bytes());
                    head.push(b':');
                    reply::first(&mut self.out, Code::FileStatus, head);
                    let style = Style::List(self.config.list_format);
                    let listing = match listed {
                        Listed::Dir(dir) => Listing::dir(ListTo::Control, dir, style, now),
                        Listed::File(meta) => {
                            Listing::single(ListTo::Control, path.name(), meta, style, now)
                        }
                    };
                    self.start_listing(listing, now);
                }
                Err(e) => self.refuse(&e, Refusal::Code450),
            },
            (Then::Host, FsAnswer::Host(r)) => self.host_found(r, now),
            // A message that cannot be read is left out.
            (Then::Welcome, FsAnswer::Message(r)) => self.welcome(r.ok()),
            (Then::DirMessage(dir), FsAnswer::Message(r)) => self.dir_message(&dir, r.ok()),
            (Then::Stor { conn, unique }, FsAnswer::Created(r)) => {
                self.created(conn, unique, r, now)
            }
            (Then::Commit(t), FsAnswer::Committed(r)) => self.committed(*t, r, now),
            // An answer of another kind than asked: an engine bug. Say so
            // rather than hang the command.
            _ => self.reply(Code::LocalError, "Internal error; try again."),
        }
    }

    /// No answer came in time. A login or a CWD has happened already and
    /// goes without its message; HOST cannot go on; a commit is given up
    /// (and undone should it complete); anything else may be tried again.
    pub(super) fn gave_up(&mut self, then: Then, now: Now) {
        match then {
            Then::Welcome => self.welcome(None),
            Then::DirMessage(dir) => self.dir_message(&dir, None),
            Then::Host => self.host_unavailable(now),
            Then::Commit(t) => self.commit_expired(*t, now),
            _ => self.reply(Code::FileBusy, "Temporarily unavailable; try again later."),
        }
    }

    /// The session closed while waiting for an answer.
    pub(super) fn pending_dropped(&mut self, then: Then, now: Now) {
        if let Then::Commit(t) = then {
            // The client never heard 226: what it sent is not kept.
            self.discard_upload();
            self.log_transfer(*t, "control-closed", now);
        }
    }

    /// The facts of a published regular file, or the refusal answered.
    fn plain_file(&mut self, r: Result<Meta, FsError>) -> Option<Meta> {
        match r {
            Ok(m) if m.kind == Kind::File => Some(m),
            Ok(_) => {
                self.refuse(&FsError::NotFile, Refusal::Code550);
                None
            }
            Err(e) => {
                self.refuse(&e, Refusal::Code550);
                None
            }
        }
    }

    fn mlst_reply(&mut self, path: &VPath, meta: &Meta) {
        let mut line = vec![b' '];
        listing::mlsx_line(&mut line, path.as_bytes(), meta, self.facts);
        let line = line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec();
        let mut head = b"Listing ".to_vec();
        head.extend_from_slice(path.as_bytes());
        reply::first(&mut self.out, Code::FileOk, head);
        reply::middle(&mut self.out, line);
        self.reply(Code::FileOk, "End.");
    }

    fn retr_opened(
        &mut self,
        path: VPath,
        conn: DataConn,
        rest: u64,
        file: H::File,
        meta: Meta,
        now: Now,
    ) {
        if rest > meta.size {
            return self.reply(
                Code::BadRestart,
                "Restart offset beyond the end of the file.",
            );
        }
        let mode = if self.ascii { "ASCII" } else { "BINARY" };
        let mut opening = format!("Opening {mode} mode data connection for ");
        opening.push_str(&String::from_utf8_lossy(path.as_bytes()));
        opening.push_str(&format!(" ({} bytes).", meta.size));
        let source = Source::File {
            file,
            offset: rest,
            len: meta.size - rest,
            ascii: self.ascii,
        };
        self.start_transfer(conn, source, TransferKind::Retr, path, opening, now);
    }

    fn list_opened(
        &mut self,
        path: VPath,
        conn: DataConn,
        kind: TransferKind,
        r: Result<Listed<H>, FsError>,
        now: Now,
    ) {
        let listed = match r {
            Ok(l) => l,
            Err(e) => return self.refuse(&e, Refusal::Code550),
        };
        let style = match kind {
            TransferKind::Nlst => Style::Nlst,
            TransferKind::Mlsd => Style::Mlsd(self.facts),
            _ => Style::List(self.config.list_format),
        };
        let listing = match listed {
            Listed::Dir(dir) => Listing::dir(ListTo::Data, dir, style, now),
            // RFC 3659 §7.2: MLSD of a non-directory is a 501.
            Listed::File(_) if kind == TransferKind::Mlsd => {
                return self.reply(Code::BadArguments, "Not a directory: use MLST.");
            }
            Listed::File(meta) => Listing::single(ListTo::Data, path.name(), meta, style, now),
        };
        let opening = "Here comes the directory listing.".to_string();
        self.start_transfer(conn, Source::Stream, kind, path, opening, now);
        self.start_listing(listing, now);
    }
}
