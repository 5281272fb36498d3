//! A listing being produced: LIST, NLST and MLSD on the data connection,
//! STAT with a path on the control connection. The session asks for a
//! directory a batch at a time (`FsRequest::ReadDir`) and formats each
//! batch as room is made, so a directory of 100,000 entries costs a
//! bounded amount of memory, and a batch is formatted in pieces of
//! `CHUNK` bytes, so one huge listing never holds up the engine.

use std::time::Instant;

use super::{FsRequest, Handles, Session};
use crate::core::clock::Now;
use crate::core::listing::{Style, format_line};
use crate::core::meta::{Entries, FsError, Meta};
use crate::core::proto::reply::{self, Code};

/// Bytes formatted before waiting for them to be sent.
const CHUNK: usize = 16 * 1024;

/// Where the lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListTo {
    /// The data connection (`Source::Stream`).
    Data,
    /// The control connection, inside a 213 reply (STAT path).
    Control,
}

pub(super) struct Listing<H: Handles> {
    to: ListTo,
    style: Style,
    now_unix: i64,
    /// The directory, while more may be read from it and no read is in
    /// flight.
    dir: Option<H::Dir>,
    entries: Entries,
    /// The next entry of `entries` to format.
    next: usize,
    /// Nothing more to read.
    eof: bool,
    /// A read in flight: its request id and deadline.
    reading: Option<(u32, Instant)>,
}

impl<H: Handles> Listing<H> {
    /// A listing of a directory, read batch by batch.
    pub(super) fn dir(to: ListTo, dir: H::Dir, style: Style, now: Now) -> Listing<H> {
        Listing {
            to,
            style,
            now_unix: now.unix(),
            dir: Some(dir),
            entries: Entries::default(),
            next: 0,
            eof: false,
            reading: None,
        }
    }

    /// A listing of one entry (LIST or NLST naming a file).
    pub(super) fn single(to: ListTo, name: &[u8], meta: Meta, style: Style, now: Now) -> Self {
        let mut entries = Entries::default();
        entries.push(name, meta);
        Listing {
            to,
            style,
            now_unix: now.unix(),
            dir: None,
            entries,
            next: 0,
            eof: true,
            reading: None,
        }
    }

    pub(super) fn to_data(&self) -> bool {
        self.to == ListTo::Data
    }

    pub(super) fn reading(&self, id: u32) -> bool {
        self.reading.is_some_and(|(r, _)| r == id)
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.reading.map(|(_, d)| d)
    }

    /// Formats entries onto `out` until it holds `CHUNK` bytes or the
    /// batch is used up.
    fn format(&mut self, out: &mut Vec<u8>) {
        while out.len() < CHUNK {
            let Some((name, meta)) = self.entries.get(self.next) else {
                return;
            };
            match self.to {
                ListTo::Data => format_line(out, name, meta, self.style, self.now_unix),
                ListTo::Control => {
                    // Lines that could pass for a reply's last line are
                    // indented by `middle`.
                    let mut line = Vec::with_capacity(128);
                    format_line(&mut line, name, meta, self.style, self.now_unix);
                    let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
                    reply::middle(out, text);
                }
            }
            self.next += 1;
        }
    }

    fn batch_done(&self) -> bool {
        self.next >= self.entries.len()
    }
}

impl<H: Handles> Session<H> {
    /// Starts sending `listing` (for the control connection, after the
    /// first line of its 213 reply).
    pub(super) fn start_listing(&mut self, listing: Listing<H>, now: Now) {
        self.listing = Some(Box::new(listing));
        self.continue_listing(now);
    }

    /// Formats what there is room for, asks for the next batch when the
    /// current one is used up, and ends the listing when all is said.
    pub(super) fn continue_listing(&mut self, now: Now) {
        let Some(l) = self.listing.as_deref_mut() else {
            return;
        };
        let out = match l.to {
            ListTo::Data => &mut self.data_out,
            ListTo::Control => &mut self.out,
        };
        if out.len() >= CHUNK {
            return;
        }
        let before = l.next;
        l.format(out);
        if let Some(t) = &self.tally {
            t.listed((l.next - before) as u64);
        }
        if !l.batch_done() {
            return;
        }
        if l.eof {
            let to = l.to;
            self.listing = None;
            if to == ListTo::Control {
                self.reply(Code::FileStatus, "End of status.");
            }
            return;
        }
        if l.reading.is_none()
            && let Some(dir) = l.dir.take()
        {
            let mut entries = std::mem::take(&mut l.entries);
            entries.clear();
            l.next = 0;
            let deadline = now.mono + self.config.data_timeout;
            let id = self.request(FsRequest::ReadDir(dir, entries));
            if let Some(l) = self.listing.as_deref_mut() {
                l.reading = Some((id, deadline));
            }
        }
    }

    /// A batch of the directory being listed arrived.
    pub(super) fn on_read_dir(
        &mut self,
        dir: H::Dir,
        entries: Entries,
        result: Result<bool, FsError>,
        now: Now,
    ) {
        let Some(l) = self.listing.as_deref_mut() else {
            return;
        };
        l.reading = None;
        match result {
            Ok(eof) => {
                l.entries = entries;
                l.next = 0;
                l.eof = eof;
                l.dir = (!eof).then_some(dir);
                if l.to == ListTo::Data {
                    self.transfer_alive(now);
                }
                self.continue_listing(now);
            }
            Err(_) => self.listing_failed(now),
        }
    }

    /// A directory read failed or took longer than the data timeout.
    fn listing_failed(&mut self, now: Now) {
        let Some(l) = self.listing.take() else {
            return;
        };
        match l.to {
            ListTo::Control => self.reply(
                Code::FileStatus,
                "End of status (listing incomplete: read error).",
            ),
            ListTo::Data => {
                self.finish_transfer("read-error", now);
                self.reply(Code::LocalError, "Read error; transfer aborted.");
            }
        }
    }

    /// Acts on a directory read that did not come back in time; whether
    /// it did.
    pub(super) fn listing_timed_out(&mut self, now: Now) -> bool {
        let late = self
            .listing
            .as_ref()
            .and_then(|l| l.deadline())
            .is_some_and(|d| now.mono >= d);
        if late {
            self.listing_failed(now);
            self.process(now);
        }
        late
    }
}
