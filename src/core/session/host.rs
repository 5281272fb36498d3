//! HOST (RFC 7151), before USER. Without `--vhosts` any well-formed name
//! is accepted and changes nothing. With it, publicfile's layout: the
//! name, lower-cased and checked as one path component
//! ([`host_dir`]), names the tree ROOT/NAME, which the filesystem layer
//! looks up beneath ROOT with the publishing rules (a published
//! directory, reached through symlinks only inside ROOT); the session's
//! filesystem requests go to that tree from then on (`Tree::Host`).
//! An unknown name is a 504, as RFC 7151 asks, and leaves the session's
//! tree as it was (ROOT/0 until a HOST succeeds).

use super::pending::Then;
use super::{FsRequest, Handles, HostTree, Login, Session, Tree};
use crate::core::clock::Now;
use crate::core::message::{Message, host_dir};
use crate::core::meta::FsError;
use crate::core::proto::reply::Code;

/// The 220's last line, after the host's banner if it has one.
const HOST_READY: &str = "Host ready: log in with USER and PASS.";

impl<H: Handles> Session<H> {
    pub(super) fn host(&mut self, name: &[u8], now: Now) {
        if self.login != Login::Start {
            return self.reply(Code::BadSequence, "HOST must come before USER.");
        }
        if !self.config.vhosts {
            return self.reply(Code::Ready, "Host accepted.");
        }
        match host_dir(name) {
            Some(dir) => self.ask(FsRequest::Host(dir), Then::Host, now),
            None => self.reply(Code::BadArguments, "Not a host name here."),
        }
    }

    /// The answer to HOST's lookup.
    pub(super) fn host_found(&mut self, r: Result<HostTree<H>, FsError>, now: Now) {
        match r {
            Ok(HostTree {
                tree,
                banner,
                uploads,
            }) => {
                self.tree = Tree::Host(tree);
                // Each host has its own drop box, or none.
                if self.config.uploads != uploads {
                    let mut config = (*self.config).clone();
                    config.uploads = uploads;
                    self.config = std::sync::Arc::new(config);
                }
                Message::parse(&banner).reply(&mut self.out, Code::Ready, HOST_READY);
            }
            Err(FsError::Busy(_) | FsError::Io(_)) => self.host_unavailable(now),
            Err(_) => self.reply(Code::BadParameter, "Unknown host."),
        }
    }

    /// HOST could not be answered now (the filesystem failed or did not
    /// answer in time): 421, which is how RFC 959 says "not now", and the
    /// client may connect again.
    pub(super) fn host_unavailable(&mut self, now: Now) {
        self.reply(
            Code::Unavailable,
            "Host temporarily unavailable; closing control connection.",
        );
        self.close("host-unavailable", now);
    }
}
