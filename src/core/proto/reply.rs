//! Reply formatting (RFC 959 §4.2): `123 text` or `123-first` ... `123 last`.
//!
//! Text may carry file names, which are bytes: they pass through, except
//! that CR and LF can never end a reply line early (RFC 959 encodes an LF
//! in a pathname as NUL, and a CR as CR NUL), and a 0xFF byte is doubled
//! (RFC 854: on a Telnet connection data 255 is IAC IAC).

/// Every reply code this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Code {
    Opening = 150,
    Ok = 200,
    NotNeeded = 202,
    SystemStatus = 211,
    FileStatus = 213,
    Help = 214,
    SystemType = 215,
    Ready = 220,
    Goodbye = 221,
    DataClosed = 225,
    TransferDone = 226,
    Passive = 227,
    ExtPassive = 229,
    LoggedIn = 230,
    /// RFC 2228: security data exchange complete (AUTH accepted).
    AuthOk = 234,
    FileOk = 250,
    PathName = 257,
    NeedPassword = 331,
    PendingMore = 350,
    Unavailable = 421,
    CantOpenData = 425,
    TransferAborted = 426,
    FileBusy = 450,
    LocalError = 451,
    NoStorage = 452,
    Unknown = 500,
    BadArguments = 501,
    NotImplemented = 502,
    BadSequence = 503,
    BadParameter = 504,
    /// RFC 4217: data connection cannot be opened with this PROT setting.
    ProtRequired = 521,
    NetProtocol = 522,
    NotLoggedIn = 530,
    /// RFC 2228: request denied for policy reasons.
    PolicyDenied = 534,
    /// RFC 2228: protection level not supported by the mechanism.
    ProtNotSupported = 536,
    FileUnavailable = 550,
    StorageExceeded = 552,
    NameNotAllowed = 553,
    BadRestart = 554,
}

impl Code {
    pub fn number(self) -> u16 {
        self as u16
    }

    fn digits(self) -> [u8; 3] {
        let n = self.number();
        [
            b'0' + (n / 100) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ]
    }
}

fn push_text(out: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        match b {
            b'\n' => out.push(0),
            b'\r' => out.extend_from_slice(b"\r\0"),
            0xff => out.extend_from_slice(b"\xff\xff"),
            _ => out.push(b),
        }
    }
}

/// `code text\r\n`.
pub fn single(out: &mut Vec<u8>, code: Code, text: impl AsRef<[u8]>) {
    out.extend_from_slice(&code.digits());
    out.push(b' ');
    push_text(out, text.as_ref());
    out.extend_from_slice(b"\r\n");
}

/// The first line of a multi-line reply: `code-text\r\n`.
pub fn first(out: &mut Vec<u8>, code: Code, text: impl AsRef<[u8]>) {
    out.extend_from_slice(&code.digits());
    out.push(b'-');
    push_text(out, text.as_ref());
    out.extend_from_slice(b"\r\n");
}

/// A middle line of a multi-line reply. A line that starts with a digit
/// is indented by one space: RFC 959 ends a reply at `ddd `, but clients
/// are looser (Python's ftplib ends it at any line that starts with the
/// code and no `-`, `2260` or a bare `226` included).
pub fn middle(out: &mut Vec<u8>, text: impl AsRef<[u8]>) {
    let text = text.as_ref();
    if text.first().is_some_and(u8::is_ascii_digit) {
        out.push(b' ');
    }
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// A whole multi-line reply.
pub fn multi<I, T>(out: &mut Vec<u8>, code: Code, head: &str, lines: I, tail: &str)
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    first(out, code, head);
    for l in lines {
        middle(out, l);
    }
    single(out, code, tail);
}

/// A path in double quotes for 257 replies, embedded quotes doubled
/// (RFC 959 appendix II).
pub fn quoted_path(path: &[u8]) -> Vec<u8> {
    let mut q = Vec::with_capacity(path.len() + 2);
    q.push(b'"');
    for &b in path {
        q.push(b);
        if b == b'"' {
            q.push(b'"');
        }
    }
    q.push(b'"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        let mut out = Vec::new();
        single(&mut out, Code::Ok, "NOOP ok.");
        assert_eq!(out, b"200 NOOP ok.\r\n");
    }

    #[test]
    fn multi_line() {
        let mut out = Vec::new();
        multi(
            &mut out,
            Code::SystemStatus,
            "Features:",
            [" SIZE", " MDTM"],
            "End",
        );
        assert_eq!(out, b"211-Features:\r\n SIZE\r\n MDTM\r\n211 End\r\n");
    }

    #[test]
    fn middle_lines_never_end_a_reply() {
        let mut out = Vec::new();
        middle(&mut out, "226 done");
        middle(&mut out, "2260");
        middle(&mut out, "226");
        middle(&mut out, "x226 ");
        assert_eq!(out, b" 226 done\r\n 2260\r\n 226\r\nx226 \r\n");
    }

    #[test]
    fn names_cannot_break_lines() {
        let mut out = Vec::new();
        single(&mut out, Code::PathName, quoted_path(b"/a\"b\nc\rd"));
        assert_eq!(out, b"257 \"/a\"\"b\0c\r\0d\"\r\n");
    }

    #[test]
    fn data_255_is_doubled() {
        let mut out = Vec::new();
        middle(&mut out, b"bin\xffary");
        assert_eq!(out, b"bin\xff\xffary\r\n");
    }
}
