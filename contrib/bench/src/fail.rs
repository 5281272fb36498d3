//! Why a session failed, counted by class, so every rate can be printed
//! with what went wrong beside it: a rate with failures is not a result.

use std::fmt;
use std::io;

use crate::out::Record;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The control connection was refused (nobody listening, backlog full).
    Refused,
    /// The data connection to the advertised passive port failed.
    DataConnect,
    /// 425: the server could not open a data connection (passive ports).
    R425,
    /// 421: the server refused the session (limits, shutdown).
    R421,
    /// Any other unexpected reply.
    Reply,
    /// A wait ran past the client's bound (ftp::IO_TIMEOUT).
    Timeout,
    /// A connection reset or closed in the middle of the session.
    Reset,
    /// A download of the wrong length.
    Bytes,
    /// A TLS handshake or record the client could not complete (FTPS).
    Tls,
    Other,
}

pub const CLASSES: [Class; 10] = [
    Class::Refused,
    Class::DataConnect,
    Class::R425,
    Class::R421,
    Class::Reply,
    Class::Timeout,
    Class::Reset,
    Class::Bytes,
    Class::Tls,
    Class::Other,
];

impl Class {
    /// The record's field name (fail_KEY) and the report's label.
    pub fn key(self) -> &'static str {
        match self {
            Class::Refused => "refused",
            Class::DataConnect => "data_connect",
            Class::R425 => "425",
            Class::R421 => "421",
            Class::Reply => "reply",
            Class::Timeout => "timeout",
            Class::Reset => "reset",
            Class::Bytes => "bytes",
            Class::Tls => "tls",
            Class::Other => "other",
        }
    }
}

/// An error that knows its class; carried inside an io::Error.
#[derive(Debug)]
pub struct Tagged {
    pub class: Class,
    pub msg: String,
}

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Tagged {}

pub fn tagged(class: Class, msg: String) -> io::Error {
    io::Error::other(Tagged { class, msg })
}

pub fn classify(e: &io::Error) -> Class {
    if let Some(t) = e.get_ref().and_then(|r| r.downcast_ref::<Tagged>()) {
        return t.class;
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Class::Refused,
        // A read timeout on a blocking socket is EAGAIN.
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Class::Timeout,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => Class::Reset,
        _ => Class::Other,
    }
}

/// Failures by class, and the first message seen (for the log).
#[derive(Clone, Default)]
pub struct Failures {
    counts: [u64; CLASSES.len()],
    pub first: Option<String>,
}

impl Failures {
    pub fn add(&mut self, e: &io::Error) {
        let c = classify(e);
        self.counts[CLASSES.iter().position(|&x| x == c).unwrap_or(0)] += 1;
        self.first.get_or_insert_with(|| e.to_string());
    }

    pub fn merge(&mut self, o: &Failures) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
        if self.first.is_none() {
            self.first.clone_from(&o.first);
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `PREFIXfailures` and one `PREFIXfail_KEY` per class that happened.
    pub fn record(&self, rec: &mut Record, prefix: &str) {
        rec.num(&format!("{prefix}failures"), self.total() as f64);
        for (c, n) in CLASSES.iter().zip(self.counts) {
            if n > 0 {
                rec.num(&format!("{prefix}fail_{}", c.key()), n as f64);
            }
        }
        if let Some(e) = &self.first {
            rec.str(&format!("{prefix}first_error"), e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let mut f = Failures::default();
        f.add(&tagged(Class::R425, "425 no port".into()));
        f.add(&io::Error::from(io::ErrorKind::WouldBlock));
        f.add(&io::Error::from(io::ErrorKind::ConnectionRefused));
        f.add(&io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(f.total(), 4);
        assert_eq!(f.counts[2], 1);
        assert_eq!(f.counts[0], 2);
        assert_eq!(f.counts[5], 1);
        assert_eq!(f.first.as_deref(), Some("425 no port"));
        let mut r = Record::new("x", &crate::out::Args::parse(&[]));
        f.record(&mut r, "");
        r.num("end", 0.0);
        let s = r.finish();
        assert!(
            s.contains(r#""failures":4,"fail_refused":2,"fail_425":1,"fail_timeout":1"#),
            "{s}"
        );
    }
}
