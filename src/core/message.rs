//! Messages an operator writes for clients: the banner (the 220
//! greeting), the welcome (the 230 after login), a directory's `.message`
//! (the 250 after CWD), and with virtual hosts a host's own banner and
//! welcome. A file's bytes become lines that are safe in a multi-line
//! reply and on the terminal of whoever reads it; the file names of the
//! per-tree messages are here too.

use crate::core::proto::reply::{self, Code};

/// Bytes of a message file read at most (vsftpd's bound is about the
/// same); what follows is not shown.
pub const MAX_BYTES: usize = 4096;
/// Lines shown at most.
pub const MAX_LINES: usize = 100;
/// Bytes of one line shown at most; a longer line is cut.
pub const MAX_LINE: usize = 200;

/// A message file kept inside a served tree. Each is a dotfile, so that
/// no listing shows it and no RETR serves it: the filesystem layer reads
/// it only on purpose, for the reply it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFile {
    /// `.message` in a directory: shown in the 250 reply to CWD into it
    /// (`--dir-messages`).
    Dir,
    /// `.banner` at the top of a host's tree: the 220 reply to HOST.
    Banner,
    /// `.welcome` at the top of a host's tree: shown in the 230 reply to
    /// PASS.
    Welcome,
}

impl MessageFile {
    /// The file's name in its directory.
    pub fn name(self) -> &'static [u8] {
        match self {
            MessageFile::Dir => b".message",
            MessageFile::Banner => b".banner",
            MessageFile::Welcome => b".welcome",
        }
    }
}

/// A message as lines fit for a reply: valid UTF-8, no control
/// characters (an escape sequence would reach the client's terminal; a
/// CR or LF would end a line early), each at most [`MAX_LINE`] bytes, at
/// most [`MAX_LINES`] of them, no blank lines around them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    lines: Vec<String>,
}

impl Message {
    /// The message a file's bytes hold (only the first [`MAX_BYTES`] are
    /// looked at). Bytes that are not UTF-8 and control characters show
    /// as `?`, a tab as a space; CRLF and LF both end a line.
    pub fn parse(raw: &[u8]) -> Message {
        let raw = &raw[..raw.len().min(MAX_BYTES)];
        let mut lines: Vec<String> = raw
            .split(|&b| b == b'\n')
            .take(MAX_LINES + 1)
            .map(|l| clean_line(l.strip_suffix(b"\r").unwrap_or(l)))
            .collect();
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        let blank_head = lines.iter().take_while(|l| l.trim().is_empty()).count();
        lines.drain(..blank_head);
        lines.truncate(MAX_LINES);
        Message { lines }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// Writes the reply `code` with this message: `code-` and its first
    /// line, the others as middle lines (one that starts with a digit
    /// indented, so that no client takes it for the end), then `code
    /// last`. An empty message is the one line `code last`.
    pub fn reply(&self, out: &mut Vec<u8>, code: Code, last: &str) {
        let Some((first, rest)) = self.lines.split_first() else {
            return reply::single(out, code, last);
        };
        reply::first(out, code, first);
        for line in rest {
            reply::middle(out, line);
        }
        reply::single(out, code, last);
    }
}

/// One line: control characters (C0, DEL, C1) replaced, a tab a space,
/// cut at [`MAX_LINE`] bytes on a character boundary.
fn clean_line(raw: &[u8]) -> String {
    let mut line = String::with_capacity(raw.len().min(MAX_LINE));
    for c in String::from_utf8_lossy(raw).chars() {
        let c = match c {
            '\t' => ' ',
            '\u{fffd}' => '?',
            c if c.is_control() => '?',
            c => c,
        };
        if line.len() + c.len_utf8() > MAX_LINE {
            break;
        }
        line.push(c);
    }
    line
}

/// How or whether a client host name names a tree under `--vhosts`: the
/// directory name (publicfile's layout, ROOT/NAME), or `None` when it
/// cannot be one. Lower-cased (DNS names are case-insensitive), a final
/// dot dropped, an address in brackets written without them and in its
/// usual form (`[0::1]` is `::1`); then it must be one path component: not
/// empty, no `/`, no NUL or other control character, not starting with a
/// dot (so never `.`, `..` or a hidden name), at most 255 bytes.
pub fn host_dir(name: &[u8]) -> Option<Vec<u8>> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let dir = match name.strip_prefix(b"[").and_then(|n| n.strip_suffix(b"]")) {
        Some(inner) => std::str::from_utf8(inner)
            .ok()?
            .parse::<std::net::IpAddr>()
            .ok()?
            .to_string()
            .into_bytes(),
        None => name.to_ascii_lowercase(),
    };
    let one_component = !dir.is_empty()
        && dir.len() <= 255
        && dir[0] != b'.'
        && !dir.iter().any(|&b| b == b'/' || b < 0x20 || b == 0x7f);
    one_component.then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(raw: &[u8]) -> Vec<String> {
        Message::parse(raw).lines().map(str::to_owned).collect()
    }

    #[test]
    fn lines_of_a_file() {
        assert_eq!(lines(b"one\r\ntwo\nthree"), ["one", "two", "three"]);
        assert_eq!(lines(b"\n\n  \nmiddle\n\nend\n\n\n"), ["middle", "", "end"]);
        assert!(Message::parse(b"").is_empty());
        assert!(Message::parse(b"\r\n \n\t\n").is_empty());
    }

    #[test]
    fn control_characters_never_pass() {
        assert_eq!(
            lines(b"a\x1b[31mred\x07\tb\rc\x00d\x7fe"),
            ["a?[31mred? b?c?d?e"]
        );
        // C1 controls (U+009B is a CSI on some terminals), bytes that are
        // not UTF-8, and 0xFF (Telnet's IAC) as well.
        assert_eq!(lines("x\u{9b}y".as_bytes()), ["x?y"]);
        assert_eq!(lines(b"caf\xe9 \xff"), ["caf? ?"]);
        assert_eq!(lines("café 日本".as_bytes()), ["café 日本"]);
    }

    #[test]
    fn bounded() {
        let long = "é".repeat(MAX_LINE);
        let got = lines(long.as_bytes());
        assert_eq!(got[0].len(), MAX_LINE);
        assert!(got[0].chars().all(|c| c == 'é'));
        let many = "x\n".repeat(MAX_LINES * 2);
        assert_eq!(lines(many.as_bytes()).len(), MAX_LINES);
        let big = vec![b'y'; MAX_BYTES * 4];
        let got = lines(&big);
        assert_eq!(got.iter().map(String::len).sum::<usize>(), MAX_LINE);
        // Only the first MAX_BYTES count: a line past them is not shown.
        let past = format!("a\n{}\nlast\n", "x".repeat(MAX_BYTES));
        let got = lines(past.as_bytes());
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], "x".repeat(MAX_LINE));
    }

    #[test]
    fn replies_every_client_parses() {
        let mut out = Vec::new();
        Message::parse(b"Welcome!\n220 is not the end\n226-nor this\n2xx\n42\n").reply(
            &mut out,
            Code::Ready,
            "Ready.",
        );
        assert_eq!(
            out,
            b"220-Welcome!\r\n 220 is not the end\r\n 226-nor this\r\n 2xx\r\n 42\r\n220 Ready.\r\n"
        );
        let mut out = Vec::new();
        Message::parse(b"\n").reply(&mut out, Code::LoggedIn, "In.");
        assert_eq!(out, b"230 In.\r\n");
        // A first line that starts with digits follows `230-`: no confusion.
        let mut out = Vec::new();
        Message::parse(b"230 x").reply(&mut out, Code::LoggedIn, "In.");
        assert_eq!(out, b"230-230 x\r\n230 In.\r\n");
    }

    #[test]
    fn host_names_as_directories() {
        let ok = |n: &[u8], d: &[u8]| assert_eq!(host_dir(n).as_deref(), Some(d), "{n:?}");
        ok(b"FTP.Example.ORG", b"ftp.example.org");
        ok(b"ftp.example.org.", b"ftp.example.org");
        ok(b"0", b"0");
        ok(b"127.0.0.1", b"127.0.0.1");
        ok(b"[127.0.0.1]", b"127.0.0.1");
        ok(b"[0:0::1]", b"::1");
        ok("CAFÉ.example".as_bytes(), "cafÉ.example".as_bytes());
        for bad in [
            &b""[..],
            b".",
            b"..",
            b".hidden",
            b"a/b",
            b"/",
            b"a\x00b",
            b"a\nb",
            b"a\x7f",
            b"[nonsense]",
            &[b'a'; 256],
        ] {
            assert_eq!(host_dir(bad), None, "{bad:?}");
        }
    }
}
