//! The operator's messages in replies: the banner in the 220 greeting,
//! the welcome in the 230 after login (the host's own `.welcome` first,
//! with `--vhosts`), and a directory's `.message` in the 250 after CWD
//! (`--dir-messages`), each a multi-line reply (`Message::reply`). The
//! files inside a tree are read by the filesystem layer on request
//! (`FsRequest::Message`); a request that is not answered in time costs
//! the message, never the login or the CWD.

use std::hash::{DefaultHasher, Hash, Hasher};

use super::pending::Then;
use super::{FsRequest, Handles, Session};
use crate::core::clock::Now;
use crate::core::message::{Message, MessageFile};
use crate::core::proto::reply::Code;
use crate::core::vpath::VPath;

/// The greeting's last line, after the banner if there is one.
const READY: &str = "aftpd: anonymous read-only FTP server ready.";
/// The same, when the server takes uploads.
const READY_UPLOADS: &str = "aftpd: anonymous FTP server ready.";
/// The 230's last line, after the welcome if there is one.
const LOGGED_IN: &str = "Logged in: anonymous read-only access.";
/// The 250's last line, after the directory's message if there is one.
const CHANGED: &str = "Directory changed.";

/// Directories a session remembers having shown the message of, at most:
/// a mirroring client that enters thousands is shown some again, and the
/// session stays small.
const SHOWN_MAX: usize = 64;

/// The directories whose message this session has shown (a hash of each
/// path): a message is shown the first time a session enters its
/// directory, as vsftpd and wu-ftpd do. A pointer until the first one,
/// so that a session without messages pays a word for it.
#[derive(Debug, Default)]
pub(super) struct Shown(Option<Box<Ring>>);

/// The last [`SHOWN_MAX`] directories shown, oldest overwritten first.
#[derive(Debug)]
pub(super) struct Ring {
    keys: [u64; SHOWN_MAX],
    len: usize,
    next: usize,
}

impl Shown {
    fn key(dir: &VPath) -> u64 {
        let mut h = DefaultHasher::new();
        dir.as_bytes().hash(&mut h);
        h.finish()
    }

    fn contains(&self, dir: &VPath) -> bool {
        self.0
            .as_ref()
            .is_some_and(|r| r.keys[..r.len].contains(&Shown::key(dir)))
    }

    fn add(&mut self, dir: &VPath) {
        let r = self.0.get_or_insert_with(|| {
            Box::new(Ring {
                keys: [0; SHOWN_MAX],
                len: 0,
                next: 0,
            })
        });
        r.keys[r.next] = Shown::key(dir);
        r.next = (r.next + 1) % SHOWN_MAX;
        r.len = (r.len + 1).min(SHOWN_MAX);
    }
}

impl<H: Handles> Session<H> {
    /// The 220 greeting, with the banner if there is one.
    pub(super) fn greet(&mut self) {
        if !self.config.greeting {
            return;
        }
        let ready = match self.config.uploads {
            None => READY,
            Some(_) => READY_UPLOADS,
        };
        match &self.config.banner {
            Some(m) => m.reply(&mut self.out, Code::Ready, ready),
            None => self.reply(Code::Ready, ready),
        }
    }

    /// PASS accepted: the 230, with the tree's own welcome (`--vhosts`,
    /// read first) or else `--welcome`.
    pub(super) fn logged_in(&mut self, now: Now) {
        if self.config.vhosts {
            let request = FsRequest::Message {
                dir: VPath::root(),
                file: MessageFile::Welcome,
            };
            self.ask(request, Then::Welcome, now);
        } else {
            self.welcome(None);
        }
    }

    /// The 230, with `own` (the tree's welcome file, if read) or else
    /// the configured welcome.
    pub(super) fn welcome(&mut self, own: Option<Vec<u8>>) {
        let own = own
            .map(|raw| Message::parse(&raw))
            .filter(|m| !m.is_empty());
        // Where uploads go is said at login, as the host chosen by HOST
        // has it.
        let last = match &self.config.uploads {
            None => LOGGED_IN.to_owned(),
            Some(u) => format!(
                "Logged in: anonymous access; uploads into {} only.",
                String::from_utf8_lossy(u.incoming.as_bytes())
            ),
        };
        match own.as_ref().or(self.config.welcome.as_ref()) {
            Some(m) => m.reply(&mut self.out, Code::LoggedIn, &last),
            None => self.reply(Code::LoggedIn, &last),
        }
    }

    /// CWD found `dir` a directory: the session is there now; the 250
    /// waits for the directory's message if it is to be shown.
    pub(super) fn entered(&mut self, dir: VPath, now: Now) {
        self.cwd = dir.clone();
        if !self.config.dir_messages || self.shown.contains(&dir) {
            return self.reply(Code::FileOk, CHANGED);
        }
        let file = MessageFile::Dir;
        let request = FsRequest::Message {
            dir: dir.clone(),
            file,
        };
        self.ask(request, Then::DirMessage(dir), now);
    }

    /// The 250 after CWD into `dir`, with its message `raw` if it had one.
    pub(super) fn dir_message(&mut self, dir: &VPath, raw: Option<Vec<u8>>) {
        let message = raw.map(|r| Message::parse(&r)).unwrap_or_default();
        if !message.is_empty() {
            self.shown.add(dir);
        }
        message.reply(&mut self.out, Code::FileOk, CHANGED);
    }
}
