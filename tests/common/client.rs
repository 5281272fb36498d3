//! A small blocking FTP client for the tests: exact replies, raw bytes,
//! and every wait bounded.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, RawFd};
use std::thread;
use std::time::{Duration, Instant};

use super::server::{Family, Server};
use super::tree::FORBIDDEN;

/// Bound on any single wait for the server.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a whole data transfer.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

/// One reply, possibly multi-line (RFC 959 4.2): the lines without their
/// CRLF, Telnet escapes already undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<Vec<u8>>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
    pub fn first_line(&self) -> String {
        String::from_utf8_lossy(&self.lines[0]).into_owned()
    }
    pub fn last_line(&self) -> String {
        String::from_utf8_lossy(self.lines.last().unwrap()).into_owned()
    }
    pub fn is_multiline(&self) -> bool {
        self.lines.len() > 1
    }
    /// The lines between the first and the last of a multi-line reply.
    pub fn inner(&self) -> &[Vec<u8>] {
        if self.lines.len() < 2 {
            &[]
        } else {
            &self.lines[1..self.lines.len() - 1]
        }
    }
}

/// The three digits and the separator of a reply line, if it has them.
fn line_code(line: &[u8]) -> Option<(u16, u8)> {
    if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = std::str::from_utf8(&line[..3]).unwrap().parse().unwrap();
    Some((code, line[3]))
}

/// Collects one reply from lines (without CRLF) supplied by `next`.
pub fn read_reply_from(
    mut next: impl FnMut() -> io::Result<Option<Vec<u8>>>,
) -> io::Result<Option<Reply>> {
    let first = match next()? {
        None => return Ok(None),
        Some(l) => l,
    };
    let (code, sep) = match line_code(&first) {
        Some(c) => c,
        None if first.len() == 3 && first.iter().all(u8::is_ascii_digit) => {
            // "200" alone: a reply with no text.
            let code = std::str::from_utf8(&first).unwrap().parse().unwrap();
            return Ok(Some(Reply {
                code,
                lines: vec![first],
            }));
        }
        None => {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!(
                    "reply line without a code: {:?}",
                    String::from_utf8_lossy(&first)
                ),
            ));
        }
    };
    let mut lines = vec![first];
    match sep {
        b' ' => {}
        b'-' => loop {
            let l = next()?.ok_or_else(|| {
                io::Error::new(ErrorKind::UnexpectedEof, "EOF inside a multi-line reply")
            })?;
            let end = matches!(line_code(&l), Some((c, b' ')) if c == code)
                || (l.len() == 3 && l == lines[0][..3]);
            lines.push(l);
            if end {
                break;
            }
            if lines.len() > 100_000 {
                return Err(io::Error::other("multi-line reply too long"));
            }
        },
        _ => {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!(
                    "bad reply separator: {:?}",
                    String::from_utf8_lossy(&lines[0])
                ),
            ));
        }
    }
    Ok(Some(Reply { code, lines }))
}

/// Splits a byte stream (e.g. ftpd's standard output) into replies.
pub fn parse_replies(bytes: &[u8]) -> Vec<Reply> {
    let mut lines = bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|l| strip_eol(l).to_vec());
    let mut out = Vec::new();
    while let Some(r) = read_reply_from(|| Ok(lines.next())).unwrap() {
        out.push(r);
    }
    out
}

fn strip_eol(l: &[u8]) -> &[u8] {
    let l = l.strip_suffix(b"\n").unwrap_or(l);
    l.strip_suffix(b"\r").unwrap_or(l)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pasv,
    Epsv,
    Port,
    Eprt,
}

pub const ALL_MODES_V4: [Mode; 4] = [Mode::Pasv, Mode::Epsv, Mode::Port, Mode::Eprt];
pub const ALL_MODES_V6: [Mode; 2] = [Mode::Epsv, Mode::Eprt];

pub fn modes(fam: Family) -> &'static [Mode] {
    match fam {
        Family::V4 => &ALL_MODES_V4,
        Family::V6 => &ALL_MODES_V6,
    }
}

/// A data connection being set up.
pub enum Data {
    /// Connected to the server's passive port.
    Passive(TcpStream),
    /// Waiting for the server to connect.
    Active(TcpListener),
}

/// What a data command produced.
#[derive(Debug)]
pub struct Transfer {
    pub prelim: Reply,
    pub data: Vec<u8>,
    pub fin: Option<Reply>,
    /// For a command refused without a preliminary reply: whether the
    /// server opened (active) or sent anything on (passive) the data
    /// connection anyway.
    pub data_touched: bool,
}

impl Transfer {
    pub fn codes(&self) -> (u16, Option<u16>) {
        (self.prelim.code, self.fin.as_ref().map(|r| r.code))
    }
}

pub struct Client {
    stream: TcpStream,
    /// Decoded (Telnet-unescaped) bytes not yet consumed.
    buf: Vec<u8>,
    iac: Iac,
    /// Every byte received on the control connection, raw.
    pub received: Vec<u8>,
    /// Every byte received on data connections.
    pub data_received: Vec<u8>,
    /// Telnet option negotiations received: (verb, option).
    pub telnet: Vec<(u8, u8)>,
    pub fam: Family,
    eof: bool,
}

#[derive(Debug, Clone, Copy)]
enum Iac {
    Normal,
    Seen,
    Opt(u8),
}

pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
pub const IP: u8 = 244;
pub const DM: u8 = 242;

fn family_of(addr: &SocketAddr) -> Family {
    if addr.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    }
}

impl Client {
    /// Connects; reads nothing.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            iac: Iac::Normal,
            received: Vec::new(),
            data_received: Vec::new(),
            telnet: Vec::new(),
            fam: family_of(&addr),
            eof: false,
        }
    }

    /// Connects from `bind` (e.g. 127.0.0.2, another "host"); reads
    /// nothing.
    pub fn connect_from(addr: SocketAddr, bind: IpAddr) -> Client {
        let stream = connect_tuned(addr, Some(bind), None)
            .unwrap_or_else(|e| panic!("connect to {addr} from {bind}: {e}"));
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            iac: Iac::Normal,
            received: Vec::new(),
            data_received: Vec::new(),
            telnet: Vec::new(),
            fam: family_of(&addr),
            eof: false,
        }
    }

    /// Connects and reads the 220 greeting.
    pub fn open(server: &Server, fam: Family) -> Client {
        let mut c = Client::connect(server.addr(fam));
        let g = c.reply();
        assert_eq!(g.code, 220, "greeting: {}", g.text());
        c
    }

    /// Connects, reads the greeting, logs in anonymously and sets TYPE I,
    /// as every real client does (RFC 959's default type is ASCII).
    pub fn login(server: &Server, fam: Family) -> Client {
        let mut c = Client::open(server, fam);
        c.login_only();
        c.expect("TYPE I", 200);
        c
    }

    pub fn login_only(&mut self) {
        self.expect("USER anonymous", 331);
        self.expect("PASS test@example.invalid", 230);
    }

    /// Closes the control connection with a reset (SO_LINGER 0), as a
    /// client that crashed or was cut off.
    pub fn reset(self) {
        reset(self.stream);
    }

    /// Reads one reply, waiting at most `limit` (then `None`); panics on
    /// EOF or garbage.
    pub fn reply_within(&mut self, limit: Duration) -> Option<Reply> {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        let r = self.try_reply();
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        match r {
            Ok(Some(r)) => Some(r),
            Ok(None) => panic!("connection closed instead of a reply"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }
    pub fn peer_addr(&self) -> SocketAddr {
        self.stream.peer_addr().unwrap()
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to control connection: {e}"));
    }

    /// What has arrived on the control connection and is not read yet,
    /// without waiting and without consuming it.
    pub fn peek_control(&mut self) -> Vec<u8> {
        let mut out = self.buf.clone();
        let mut tmp = [0u8; 4096];
        self.stream.set_nonblocking(true).unwrap();
        if let Ok(n) = self.stream.peek(&mut tmp) {
            out.extend_from_slice(&tmp[..n]);
        }
        self.stream.set_nonblocking(false).unwrap();
        out
    }

    /// Sends `line` + CRLF.
    pub fn send(&mut self, line: &[u8]) {
        let mut v = line.to_vec();
        v.extend_from_slice(b"\r\n");
        self.send_raw(&v);
    }

    /// Sends a command line and reads its reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.cmd_bytes(line.as_bytes())
    }

    pub fn cmd_bytes(&mut self, line: &[u8]) -> Reply {
        self.send(line);
        self.reply_for(&String::from_utf8_lossy(line))
    }

    /// Sends a command and asserts the reply code.
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line:?} -> {:?}", r.text());
        r
    }

    /// Sends a command and asserts the reply code is one of `codes`.
    pub fn expect_one_of(&mut self, line: &str, codes: &[u16]) -> Reply {
        let r = self.cmd(line);
        assert!(
            codes.contains(&r.code),
            "{line:?} -> {:?}, want one of {codes:?}",
            r.text()
        );
        r
    }

    /// Reads one reply; panics on EOF, timeout or garbage.
    pub fn reply(&mut self) -> Reply {
        self.reply_for("(no command)")
    }

    fn reply_for(&mut self, what: &str) -> Reply {
        match self.try_reply() {
            Ok(Some(r)) => r,
            Ok(None) => panic!("after {what:?}: connection closed instead of a reply"),
            Err(e) => panic!("after {what:?}: reading a reply: {e}"),
        }
    }

    /// Reads one reply; `Ok(None)` on a clean EOF before any byte of it.
    pub fn try_reply(&mut self) -> io::Result<Option<Reply>> {
        read_reply_from(|| self.read_line())
    }

    fn decode(&mut self, raw: &[u8]) {
        for &b in raw {
            self.iac = match (self.iac, b) {
                (Iac::Normal, IAC) => Iac::Seen,
                (Iac::Normal, b) => {
                    self.buf.push(b);
                    Iac::Normal
                }
                (Iac::Seen, IAC) => {
                    self.buf.push(IAC);
                    Iac::Normal
                }
                (Iac::Seen, v @ WILL..=DONT) => Iac::Opt(v),
                (Iac::Seen, _) => Iac::Normal,
                (Iac::Opt(v), o) => {
                    self.telnet.push((v, o));
                    Iac::Normal
                }
            };
        }
    }

    /// Reads more bytes into the buffer; false on EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut tmp = [0u8; 65536];
        let n = loop {
            match self.stream.read(&mut tmp) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.received.extend_from_slice(&tmp[..n]);
        self.decode(&tmp[..n]);
        Ok(true)
    }

    /// One line without its CRLF (or bare LF); `None` on EOF at a line
    /// boundary. Bounded by [`TIMEOUT`].
    pub fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(Some(strip_eol(&line).to_vec()));
            }
            if self.buf.len() > 1 << 20 {
                return Err(io::Error::other("reply line longer than 1 MiB"));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(ErrorKind::TimedOut, "no complete line"));
            }
            if !self.fill()? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "EOF after a partial line {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Waits (bounded by `limit`) for the server to close the control
    /// connection; returns whatever else arrived. Panics on timeout.
    pub fn expect_eof(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let start = self.buf.len();
        loop {
            match self.fill() {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // A reset also ends the connection.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("waiting for EOF: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "server did not close the control connection within {limit:?}"
            );
        }
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        self.buf[start..].to_vec()
    }

    // ---------------------------------------------------------------
    // Data connections.

    /// PASV: asserts the exact 227 form and returns the address.
    pub fn pasv(&mut self) -> SocketAddr {
        let r = self.expect("PASV", 227);
        parse_227(&r).unwrap_or_else(|| panic!("bad 227 reply: {:?}", r.text()))
    }

    /// EPSV: asserts the exact 229 form; the address is the control
    /// connection's peer address with the given port.
    pub fn epsv(&mut self) -> SocketAddr {
        let r = self.expect("EPSV", 229);
        let port = parse_229(&r).unwrap_or_else(|| panic!("bad 229 reply: {:?}", r.text()));
        SocketAddr::new(self.peer_addr().ip(), port)
    }

    /// Sets up a data connection in `mode`. `rcvbuf` shrinks the client's
    /// receive buffer (so a large transfer cannot complete unread).
    pub fn setup(&mut self, mode: Mode, rcvbuf: Option<i32>) -> Data {
        match mode {
            Mode::Pasv | Mode::Epsv => {
                let addr = if mode == Mode::Pasv {
                    self.pasv()
                } else {
                    self.epsv()
                };
                let s = connect_tuned(addr, None, rcvbuf)
                    .unwrap_or_else(|e| panic!("connect to data port {addr}: {e}"));
                Data::Passive(s)
            }
            Mode::Port | Mode::Eprt => {
                let ip = self.local_addr().ip();
                let l = TcpListener::bind(SocketAddr::new(ip, 0)).unwrap();
                if let Some(n) = rcvbuf {
                    set_rcvbuf(raw_fd(&l), n);
                }
                let a = l.local_addr().unwrap();
                let line = if mode == Mode::Port {
                    port_arg(&a)
                } else {
                    eprt_arg(&a)
                };
                self.expect(&line, 200);
                Data::Active(l)
            }
        }
    }

    /// Runs a data command (RETR, LIST, ...) in `mode`.
    pub fn transfer(&mut self, mode: Mode, cmd: &[u8]) -> Transfer {
        let data = self.setup(mode, None);
        self.transfer_with(data, cmd)
    }

    /// Runs a data command over an already prepared data connection.
    pub fn transfer_with(&mut self, data: Data, cmd: &[u8]) -> Transfer {
        self.send(cmd);
        let what = String::from_utf8_lossy(cmd).into_owned();
        let prelim = self.reply_for(&what);
        if !(100..200).contains(&prelim.code) {
            let touched = data_touched(data);
            return Transfer {
                prelim,
                data: Vec::new(),
                fin: None,
                data_touched: touched,
            };
        }
        let mut stream = match data {
            Data::Passive(s) => s,
            Data::Active(l) => {
                accept_bounded(&l, TIMEOUT)
                    .unwrap_or_else(|e| panic!("{what}: server did not connect: {e}"))
                    .0
            }
        };
        let bytes = read_to_eof(&mut stream, TRANSFER_TIMEOUT)
            .unwrap_or_else(|e| panic!("{what}: reading data: {e}"));
        self.data_received.extend_from_slice(&bytes);
        // Closed before the final reply, as curl, wget, lftp and ftplib
        // do: the server waits a moment for it before its 226.
        drop(stream);
        let fin = self.reply_for(&what);
        Transfer {
            prelim,
            data: bytes,
            fin: Some(fin),
            data_touched: true,
        }
    }

    /// The default data mode for this family (PASV on IPv4, EPSV on IPv6).
    pub fn default_mode(&self) -> Mode {
        match self.fam {
            Family::V4 => Mode::Pasv,
            Family::V6 => Mode::Epsv,
        }
    }

    /// A data command that must succeed with 150, data, 226.
    pub fn get_mode(&mut self, mode: Mode, cmd: &str) -> Vec<u8> {
        let t = self.transfer(mode, cmd.as_bytes());
        assert_eq!(
            t.codes(),
            (150, Some(226)),
            "{cmd:?} in {mode:?}: {:?} / {:?}",
            t.prelim.text(),
            t.fin.as_ref().map(Reply::text)
        );
        t.data
    }

    pub fn get(&mut self, cmd: &str) -> Vec<u8> {
        let m = self.default_mode();
        self.get_mode(m, cmd)
    }

    pub fn get_bytes(&mut self, cmd: &[u8]) -> Vec<u8> {
        let m = self.default_mode();
        let t = self.transfer(m, cmd);
        assert_eq!(
            t.codes(),
            (150, Some(226)),
            "{:?}: {:?} / {:?}",
            String::from_utf8_lossy(cmd),
            t.prelim.text(),
            t.fin.as_ref().map(Reply::text)
        );
        t.data
    }

    /// A data command that must be refused with `code`, with no 1xx reply
    /// and no data connection: uses an active mode (PORT on IPv4, EPRT on
    /// IPv6) so "no connection" can be observed.
    pub fn refused(&mut self, cmd: &[u8], code: u16) -> Reply {
        let mode = match self.fam {
            Family::V4 => Mode::Port,
            Family::V6 => Mode::Eprt,
        };
        let t = self.transfer(mode, cmd);
        assert_eq!(
            t.prelim.code,
            code,
            "{:?} -> {:?} (then {:?})",
            String::from_utf8_lossy(cmd),
            t.prelim.text(),
            t.fin.as_ref().map(Reply::text)
        );
        assert!(
            !t.data_touched,
            "{:?}: refused with {} but the server opened a data connection",
            String::from_utf8_lossy(cmd),
            t.prelim.code
        );
        t.prelim
    }

    /// Panics if anything forbidden (the canary, private contents) was
    /// ever received on the control or a data connection.
    pub fn assert_nothing_leaked(&self) {
        for f in FORBIDDEN {
            for (what, hay) in [("control", &self.received), ("data", &self.data_received)] {
                assert!(
                    find(hay, f).is_none(),
                    "LEAK: {:?} appeared on the {what} connection",
                    String::from_utf8_lossy(f)
                );
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` strictly.
pub fn parse_227(r: &Reply) -> Option<SocketAddr> {
    let l = r.first_line();
    let rest = l.strip_prefix("227 Entering Passive Mode (")?;
    let inner = &rest[..rest.find(')')?];
    let n: Vec<u8> = inner
        .split(',')
        .map(|x| x.parse::<u8>())
        .collect::<Result<_, _>>()
        .ok()?;
    if n.len() != 6 {
        return None;
    }
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(n[0], n[1], n[2], n[3])),
        u16::from(n[4]) * 256 + u16::from(n[5]),
    ))
}

/// Parses `229 Entering Extended Passive Mode (|||port|)` strictly.
pub fn parse_229(r: &Reply) -> Option<u16> {
    let l = r.first_line();
    let rest = l.strip_prefix("229 Entering Extended Passive Mode (|||")?;
    let port = &rest[..rest.find("|)")?];
    port.parse().ok()
}

pub fn port_arg(a: &SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            format!(
                "PORT {},{},{},{},{},{}",
                o[0],
                o[1],
                o[2],
                o[3],
                a.port() >> 8,
                a.port() & 255
            )
        }
        IpAddr::V6(_) => panic!("PORT needs IPv4"),
    }
}

pub fn eprt_arg(a: &SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(ip) => format!("EPRT |1|{ip}|{}|", a.port()),
        IpAddr::V6(ip) => format!("EPRT |2|{ip}|{}|", a.port()),
    }
}

fn raw_fd<T: std::os::fd::AsRawFd>(t: &T) -> RawFd {
    t.as_raw_fd()
}

fn set_rcvbuf(fd: RawFd, n: i32) {
    // SAFETY: fd is a valid socket; the option value is an int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &n as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// Connects to `addr`, optionally from `bind` (e.g. 127.0.0.2) and with a
/// small receive buffer set before the handshake.
pub fn connect_tuned(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    rcvbuf: Option<i32>,
) -> io::Result<TcpStream> {
    let af = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(af, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    if let Some(n) = rcvbuf {
        set_rcvbuf(fd, n);
    }
    if let Some(ip) = bind {
        let (ss, len) = sockaddr(&SocketAddr::new(ip, 0));
        // SAFETY: ss/len describe a valid sockaddr.
        let rc = unsafe { libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (ss, len) = sockaddr(&addr);
    // SAFETY: as above; a blocking connect over loopback.
    let rc = unsafe { libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Accepts one connection within `limit`.
pub fn accept_bounded(l: &TcpListener, limit: Duration) -> io::Result<(TcpStream, SocketAddr)> {
    l.set_nonblocking(true)?;
    let deadline = Instant::now() + limit;
    loop {
        match l.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(TIMEOUT))?;
                s.set_write_timeout(Some(TIMEOUT))?;
                return Ok((s, a));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(io::Error::new(ErrorKind::TimedOut, "no connection"));
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Closes `s` with a reset instead of a FIN (SO_LINGER 0): the peer sees
/// ECONNRESET, and no TIME_WAIT is left behind (thousands of connections
/// per test do not use up the loopback's ephemeral ports).
pub fn reset(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the right size.
    unsafe {
        libc::setsockopt(
            raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(s);
}

/// Reads exactly `n` bytes (fewer only at EOF), bounded by
/// [`TRANSFER_TIMEOUT`]; `pause` runs between reads (a slow reader).
pub fn read_some(s: &mut TcpStream, n: usize, mut pause: impl FnMut()) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    let mut out = Vec::with_capacity(n);
    let mut tmp = vec![0u8; 16 * 1024];
    while out.len() < n {
        let want = (n - out.len()).min(tmp.len());
        match s.read(&mut tmp[..want]) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&tmp[..k]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(ErrorKind::TimedOut, "transfer too slow"));
        }
        pause();
    }
    Ok(out)
}

/// Reads until EOF, bounded by `limit` overall and [`TIMEOUT`] per read.
pub fn read_to_eof(s: &mut TcpStream, limit: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut tmp = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(ErrorKind::TimedOut, "transfer too slow"));
        }
    }
}

/// After a refusal: did the server touch the data connection? Active:
/// did it connect within a short grace period? Passive: did it send any
/// byte?
fn data_touched(data: Data) -> bool {
    let grace = Duration::from_millis(300);
    match data {
        Data::Active(l) => accept_bounded(&l, grace).is_ok(),
        Data::Passive(mut s) => {
            s.set_read_timeout(Some(grace)).unwrap();
            let mut b = [0u8; 1];
            matches!(s.read(&mut b), Ok(n) if n > 0)
        }
    }
}

/// Splits a listing into lines, asserting every line ends in CRLF (and
/// that there is no bare LF).
pub fn crlf_lines(data: &[u8]) -> Vec<Vec<u8>> {
    data.split_inclusive(|&b| b == b'\n')
        .map(|l| {
            assert!(
                l.ends_with(b"\r\n"),
                "listing line not CRLF-terminated: {:?}",
                String::from_utf8_lossy(l)
            );
            l[..l.len() - 2].to_vec()
        })
        .collect()
}

/// The loopback address of a family.
pub fn loopback(fam: Family) -> IpAddr {
    match fam {
        Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}
