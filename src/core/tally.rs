//! What sessions count for the metrics: commands by verb, listing
//! entries. One [`Tally`] per worker, shared by its sessions (an `Arc`
//! each) and summed over the workers when the metrics are read: relaxed
//! atomic additions on a counter no other worker writes, cheap enough for
//! every command.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::proto::command::{NOT_OFFERED, TLS_VERBS, UPLOAD_VERBS, VERBS, WRITE_VERBS};

/// The verbs counted one by one, in this order; anything else is
/// [`OTHER`].
pub fn verbs() -> impl Iterator<Item = &'static str> {
    VERBS
        .iter()
        .chain(&["CLNT", "SITE"])
        .chain(TLS_VERBS.iter())
        .chain(UPLOAD_VERBS.iter())
        .chain(WRITE_VERBS.iter())
        .chain(NOT_OFFERED.iter())
        .copied()
}

/// How many verbs are counted one by one.
pub const COUNTED: usize =
    VERBS.len() + 2 + TLS_VERBS.len() + UPLOAD_VERBS.len() + WRITE_VERBS.len() + NOT_OFFERED.len();

/// The label of a line whose verb is none of [`verbs`] (unknown, or too
/// long to be one).
pub const OTHER: &str = "other";

/// A verb's place among [`verbs`], [`COUNTED`] for any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verb(u8);

impl Verb {
    /// Before any command.
    pub const NONE: Verb = Verb(u8::MAX);

    /// The verb of a command line (its first word, any case).
    pub fn of(line: &[u8]) -> Verb {
        let word = line.split(|&b| b == b' ').next().unwrap_or_default();
        if word.is_empty() || word.len() > 4 {
            return Verb(COUNTED as u8);
        }
        let at = verbs().position(|v| v.as_bytes().eq_ignore_ascii_case(word));
        Verb(at.unwrap_or(COUNTED) as u8)
    }

    /// Its name: the verb in capitals, [`OTHER`], or `-` for
    /// [`Verb::NONE`].
    pub fn name(self) -> &'static str {
        match self {
            Verb::NONE => "-",
            Verb(i) => verbs().nth(usize::from(i)).unwrap_or(OTHER),
        }
    }
}

/// A worker's counts.
#[derive(Debug)]
pub struct Tally {
    /// By [`Verb`], the last for [`OTHER`].
    commands: [AtomicU64; COUNTED + 1],
    /// Entries written into listings (LIST, NLST, MLSD, STAT).
    listed: AtomicU64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            commands: std::array::from_fn(|_| AtomicU64::new(0)),
            listed: AtomicU64::new(0),
        }
    }
}

impl Tally {
    pub fn command(&self, verb: Verb) {
        if let Some(c) = self.commands.get(usize::from(verb.0)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn listed(&self, entries: u64) {
        self.listed.fetch_add(entries, Ordering::Relaxed);
    }

    /// Commands so far, by verb name ([`OTHER`] last).
    pub fn commands(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        verbs()
            .chain(std::iter::once(OTHER))
            .zip(self.commands.iter().map(|c| c.load(Ordering::Relaxed)))
    }

    pub fn listed_entries(&self) -> u64 {
        self.listed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_named() {
        assert!(COUNTED < usize::from(u8::MAX));
        assert_eq!(verbs().count(), COUNTED);
        assert_eq!(Verb::of(b"RETR /x").name(), "RETR");
        assert_eq!(Verb::of(b"retr /x").name(), "RETR");
        assert_eq!(Verb::of(b"stor x").name(), "STOR");
        assert_eq!(Verb::of(b"AUTH TLS").name(), "AUTH");
        assert_eq!(Verb::of(b"CLNT x").name(), "CLNT");
        assert_eq!(Verb::of(b"XYZZY").name(), OTHER);
        assert_eq!(Verb::of(b"").name(), OTHER);
        assert_eq!(Verb::of(b"\xff\xfe").name(), OTHER);
        assert_eq!(Verb::NONE.name(), "-");
        let mut seen = std::collections::HashSet::new();
        assert!(verbs().all(|v| seen.insert(v)), "a verb twice");
    }

    #[test]
    fn counts_add_up() {
        let t = Tally::default();
        t.command(Verb::of(b"NOOP"));
        t.command(Verb::of(b"noop"));
        t.command(Verb::of(b"BOGUS"));
        t.command(Verb::NONE);
        t.listed(7);
        let c: std::collections::HashMap<_, _> = t.commands().collect();
        assert_eq!(c["NOOP"], 2);
        assert_eq!(c[OTHER], 1);
        assert_eq!(c["RETR"], 0);
        assert_eq!(c.len(), COUNTED + 1);
        assert_eq!(t.listed_entries(), 7);
    }
}
