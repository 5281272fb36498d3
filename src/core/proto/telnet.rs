//! Control-connection input: Telnet sequences removed, lines split at LF
//! (a CR before it dropped), line length bounded.
//!
//! RFC 959 runs the control connection over Telnet. Clients send IAC IP and
//! IAC DM (Synch) before ABOR; some negotiate options. Commands (IP, DM,
//! NOP, ...) are dropped, and option offers refused: WILL with DONT, DO
//! with WONT. IAC IAC is a data byte 255. Many clients send a file name's
//! 255 bytes undoubled: an IAC followed by a byte that is no Telnet command
//! (below 240) is taken as data, both bytes. So is IAC SB: with every
//! option refused no subnegotiation can be meant, and skipping to an IAC SE
//! that never comes would swallow every command after it.

use std::collections::VecDeque;

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;

/// The longest command line accepted, without its line ending.
pub const MAX_LINE: usize = 4096;

/// A complete line from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Text(Vec<u8>),
    /// The line was longer than [`MAX_LINE`]; its bytes were discarded.
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Iac,
    /// After IAC WILL/WONT/DO/DONT: the option byte comes next.
    Option(u8),
}

/// Turns control-connection bytes into lines, and Telnet offers into
/// refusals to send back.
#[derive(Debug)]
pub struct LineReader {
    state: State,
    partial: Vec<u8>,
    overflow: bool,
    lines: VecDeque<Line>,
    queued: usize,
    replies: Vec<u8>,
}

impl Default for LineReader {
    fn default() -> Self {
        Self::new()
    }
}

impl LineReader {
    pub fn new() -> LineReader {
        LineReader {
            state: State::Data,
            partial: Vec::new(),
            overflow: false,
            lines: VecDeque::new(),
            queued: 0,
            replies: Vec::new(),
        }
    }

    /// Takes bytes as read from the connection.
    pub fn feed(&mut self, input: &[u8]) {
        for &b in input {
            self.state = match self.state {
                State::Data if b == IAC => State::Iac,
                State::Data => {
                    self.data(b);
                    State::Data
                }
                State::Iac => match b {
                    IAC => {
                        self.data(IAC);
                        State::Data
                    }
                    0..SE | SB => {
                        self.data(IAC);
                        self.data(b);
                        State::Data
                    }
                    WILL | WONT | DO | DONT => State::Option(b),
                    _ => State::Data,
                },
                State::Option(verb) => {
                    match verb {
                        WILL => self.replies.extend_from_slice(&[IAC, DONT, b]),
                        DO => self.replies.extend_from_slice(&[IAC, WONT, b]),
                        _ => {}
                    }
                    State::Data
                }
            };
        }
    }

    fn data(&mut self, b: u8) {
        if b == b'\n' {
            let line = if self.overflow {
                Line::TooLong
            } else {
                let mut text = std::mem::take(&mut self.partial);
                if text.last() == Some(&b'\r') {
                    text.pop();
                }
                Line::Text(text)
            };
            self.overflow = false;
            self.queued += match &line {
                Line::Text(t) => t.len() + 1,
                Line::TooLong => 1,
            };
            self.lines.push_back(line);
        } else if !self.overflow {
            // One more than MAX_LINE leaves room for the CR of a CRLF.
            if self.partial.len() > MAX_LINE {
                self.overflow = true;
                self.partial = Vec::new();
            } else {
                self.partial.push(b);
            }
        }
    }

    /// The next complete line, without removing it.
    pub fn peek(&self) -> Option<&Line> {
        self.lines.front()
    }

    /// Removes and returns the next complete line.
    pub fn next_line(&mut self) -> Option<Line> {
        let line = self.lines.pop_front()?;
        self.queued -= match &line {
            Line::Text(t) => t.len() + 1,
            Line::TooLong => 1,
        };
        if self.lines.is_empty() && self.lines.capacity() > 0 {
            self.lines = VecDeque::new();
        }
        Some(line)
    }

    /// Bytes held in complete lines and the partial one.
    pub fn buffered(&self) -> usize {
        self.queued + self.partial.len()
    }

    /// Telnet refusals to send to the client, taken once.
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> (Vec<Line>, Vec<u8>) {
        let mut r = LineReader::new();
        r.feed(input);
        let mut out = Vec::new();
        while let Some(l) = r.next_line() {
            out.push(l);
        }
        (out, r.take_replies())
    }

    fn text(s: &[u8]) -> Line {
        Line::Text(s.to_vec())
    }

    #[test]
    fn crlf_and_bare_lf() {
        let (l, _) = lines(b"USER a\r\nPASS b\nNOOP\r\n");
        assert_eq!(l, vec![text(b"USER a"), text(b"PASS b"), text(b"NOOP")]);
    }

    #[test]
    fn partial_lines_wait() {
        let mut r = LineReader::new();
        r.feed(b"NO");
        assert!(r.next_line().is_none());
        r.feed(b"OP\r");
        assert!(r.next_line().is_none());
        r.feed(b"\n");
        assert_eq!(r.next_line(), Some(text(b"NOOP")));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn telnet_commands_dropped() {
        // IAC IP, IAC DM (Synch) before ABOR, as RFC 959 asks clients to send.
        let (l, replies) = lines(b"\xff\xf4\xff\xf2ABOR\r\n");
        assert_eq!(l, vec![text(b"ABOR")]);
        assert!(replies.is_empty());
    }

    #[test]
    fn telnet_options_refused() {
        let (l, replies) = lines(b"\xff\xfb\x01\xff\xfd\x03\xff\xfc\x05NOOP\r\n");
        assert_eq!(l, vec![text(b"NOOP")]);
        assert_eq!(replies, b"\xff\xfe\x01\xff\xfc\x03");
    }

    #[test]
    fn escaped_iac_and_subnegotiation() {
        let (l, _) = lines(b"RETR a\xff\xffb\r\n");
        assert_eq!(l, vec![text(b"RETR a\xffb")]);
        // No option is ever agreed, so IAC SB is data: it cannot swallow
        // the commands after it. A stray IAC SE is dropped like IAC NOP.
        let (l, _) = lines(b"RETR \xff\xfa\x18\x01\r\nNOOP\xff\xf0\r\n");
        assert_eq!(l, vec![text(b"RETR \xff\xfa\x18\x01"), text(b"NOOP")]);
    }

    #[test]
    fn undoubled_255_is_data() {
        let (l, _) = lines(b"RETR bin\xffary\r\nRETR end\xff\r\n");
        assert_eq!(l, vec![text(b"RETR bin\xffary"), text(b"RETR end\xff")]);
    }

    #[test]
    fn long_line_reported_and_discarded() {
        let mut input = vec![b'A'; 100 * 1024];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let mut r = LineReader::new();
        for chunk in input.chunks(4096) {
            r.feed(chunk);
            assert!(r.buffered() <= MAX_LINE + 2);
        }
        assert_eq!(r.next_line(), Some(Line::TooLong));
        assert_eq!(r.next_line(), Some(text(b"NOOP")));
    }

    #[test]
    fn longest_line_accepted() {
        let mut input = vec![b'A'; MAX_LINE];
        input.extend_from_slice(b"\r\n");
        let (l, _) = lines(&input);
        assert_eq!(l, vec![Line::Text(vec![b'A'; MAX_LINE])]);
    }
}
