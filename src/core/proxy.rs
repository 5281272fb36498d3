//! The PROXY protocol (HAProxy's; v1 text, v2 binary), sans-IO: which
//! load balancers may send a header (`--proxy-from`), and the reading of
//! the header that then begins every control connection. One reader for
//! the three engines: they feed it bytes and the time, and act on its
//! [`Verdict`].
//!
//! The header's source address is the client; it replaces the socket's
//! peer everywhere (the passive peer check, PORT/EPRT, `--max-per-ip`,
//! `--pasv-address`, the logs). The socket's own local address stays:
//! passive listeners are bound there and active connections leave from
//! there, on the node itself, whatever address the balancer listens on.
//!
//! The parsing is the `ppp` crate's; what is decided here is whom to
//! believe, how much to wait for (which version a connection speaks is
//! told by the signatures, and a v1 line is handed over once it has
//! ended), and what a header means for a session.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ppp::{PartialResult, v1, v2};

use super::net::Net;
use super::session::Endpoints;

/// The longest header accepted: v1's own limit is 107 bytes; a v2 header
/// is 16 bytes and up to 64 KiB of addresses and TLVs, of which this
/// much is taken (a balancer's TLVs are a few hundred bytes at most).
pub const MAX_HEADER: usize = V2_FIXED + 4096;

/// v1's limit on a header line, CRLF included.
const V1_MAX: usize = 107;

/// A v2 header's fixed part: signature, version and command, family and
/// protocol, length.
const V2_FIXED: usize = 16;

/// How long a connection may take to send its header (or the idle
/// `--timeout`, if shorter): a balancer sends it at once.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// `--proxy-protocol`: every control connection begins with a header, and
/// only the balancers in `from` may send one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPolicy {
    pub from: Vec<Net>,
}

impl ProxyPolicy {
    /// Whether `ip` may set client addresses.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.from.iter().any(|n| n.contains(ip))
    }

    /// The bound on waiting for a header, for sessions whose idle timeout
    /// is `idle`.
    pub fn timeout(&self, idle: Duration) -> Duration {
        HEADER_TIMEOUT.min(idle)
    }
}

/// Why a connection was closed before it became a session. The
/// connection gets no reply at all: whoever it is did not speak the
/// protocol the server was told to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its source is not in `--proxy-from` (or unknown).
    Untrusted,
    /// Not a PROXY header, or a broken one (the parser's words).
    Malformed(String),
    /// A v2 header longer than [`MAX_HEADER`].
    TooLong(usize),
    /// A PROXY command for something other than a TCP client over IPv4
    /// or IPv6 (UDP, a Unix socket, an unspecified family).
    NoClient(&'static str),
    /// No complete header within the bound.
    Timeout,
    /// The connection ended (or failed) before the header was complete.
    Closed,
}

impl Refusal {
    /// A token for the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Untrusted => "untrusted-source",
            Refusal::Malformed(_) => "malformed",
            Refusal::TooLong(_) => "too-long",
            Refusal::NoClient(_) => "no-client",
            Refusal::Timeout => "timeout",
            Refusal::Closed => "closed",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())?;
        match self {
            Refusal::Malformed(why) => write!(f, " ({})", why.trim_end_matches('.')),
            Refusal::TooLong(n) => write!(f, " ({n} bytes, at most {MAX_HEADER})"),
            Refusal::NoClient(what) => write!(f, " ({what})"),
            _ => Ok(()),
        }
    }
}

/// What a connection turned out to be, once its header is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet: more bytes are wanted (within the deadline).
    More,
    /// A client relayed by a trusted balancer: a session with these
    /// ends. `rest` is what came after the header in the same reads, the
    /// session's first input (a client may pipeline).
    Client { ends: Endpoints, rest: Vec<u8> },
    /// The balancer speaking for itself (a v2 LOCAL command, or v1
    /// `PROXY UNKNOWN`): a health check, never a session. It is answered
    /// with one status line and closed.
    Check,
    /// Closed without a word; the log says why.
    Refused(Refusal),
}

/// The header of one control connection, being read.
#[derive(Debug)]
pub struct HeaderReader {
    /// The socket's ends: the local one stays, the peer is the balancer.
    socket: Endpoints,
    /// What has come so far, when the header did not come in one read;
    /// never more than [`MAX_HEADER`] bytes.
    buf: Vec<u8>,
    deadline: Instant,
}

impl HeaderReader {
    /// A reader for a connection whose socket has the ends `socket`,
    /// accepted at `now`; refused at once when its peer may not send a
    /// header.
    pub fn new(
        policy: &ProxyPolicy,
        socket: Endpoints,
        now: Instant,
        timeout: Duration,
    ) -> Result<HeaderReader, Refusal> {
        match socket.peer {
            Some(p) if policy.trusts(p.ip()) => Ok(HeaderReader {
                socket,
                buf: Vec::new(),
                deadline: now + timeout,
            }),
            _ => Err(Refusal::Untrusted),
        }
    }

    /// The socket's peer: the balancer.
    pub fn balancer(&self) -> Option<SocketAddr> {
        self.socket.peer
    }

    /// When the header must be complete.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// Bytes read from the connection. Once it says anything but
    /// [`Verdict::More`], the reader is spent.
    pub fn feed(&mut self, input: &[u8]) -> Verdict {
        if self.buf.is_empty() {
            // The usual case: the whole header in the first read, parsed
            // where it lies.
            return match parse(input) {
                Parsed::Done { len, addr } => self.done(len, addr, input, &[]),
                Parsed::More if input.len() >= MAX_HEADER => {
                    Verdict::Refused(Refusal::TooLong(input.len()))
                }
                Parsed::More => {
                    self.buf.extend_from_slice(input);
                    Verdict::More
                }
                Parsed::Bad(r) => Verdict::Refused(r),
            };
        }
        let room = MAX_HEADER.saturating_sub(self.buf.len());
        let (now, later) = input.split_at(input.len().min(room));
        self.buf.extend_from_slice(now);
        let buf = std::mem::take(&mut self.buf);
        match parse(&buf) {
            Parsed::Done { len, addr } => self.done(len, addr, &buf, later),
            Parsed::More if buf.len() >= MAX_HEADER => {
                Verdict::Refused(Refusal::TooLong(buf.len()))
            }
            Parsed::More => {
                self.buf = buf;
                Verdict::More
            }
            Parsed::Bad(r) => Verdict::Refused(r),
        }
    }

    /// The header is the first `len` bytes of `read`; `later` follows.
    fn done(&self, len: usize, addr: Source, read: &[u8], later: &[u8]) -> Verdict {
        match addr {
            Source::Local => Verdict::Check,
            Source::Client(peer) => {
                let mut rest = read.get(len..).unwrap_or_default().to_vec();
                rest.extend_from_slice(later);
                Verdict::Client {
                    ends: Endpoints {
                        local: self.socket.local,
                        peer: Some(peer),
                    }
                    .canonical(),
                    rest,
                }
            }
        }
    }
}

/// Whom a complete header speaks for.
enum Source {
    Client(SocketAddr),
    /// The balancer itself.
    Local,
}

enum Parsed {
    More,
    Done { len: usize, addr: Source },
    Bad(Refusal),
}

/// Which version `input` begins, judged by the signatures alone: the
/// parsing is then `ppp`'s, one version at a time.
enum Start {
    /// A prefix of a signature: too early to tell.
    More,
    V1,
    V2,
    Neither,
}

/// v1's signature, with the space after it.
const V1_SIG: &[u8] = b"PROXY ";

fn start(input: &[u8]) -> Start {
    for (sig, version) in [(V1_SIG, Start::V1), (v2::PROTOCOL_PREFIX, Start::V2)] {
        if input.len() < sig.len() {
            if sig.starts_with(input) {
                return Start::More;
            }
        } else if input.starts_with(sig) {
            return version;
        }
    }
    Start::Neither
}

fn parse(input: &[u8]) -> Parsed {
    match start(input) {
        Start::More => Parsed::More,
        Start::Neither => Parsed::Bad(Refusal::Malformed("not a PROXY protocol header".to_owned())),
        Start::V1 => parse_v1(input),
        Start::V2 => parse_v2(input),
    }
}

/// `ppp` reads the input it is given as one v1 line: cut right after a
/// space, a line has an empty last field, which it refuses, and without
/// its CR whatever follows counts as part of it. So it is given the line
/// alone, once that has ended (an LF has come) or has reached v1's 107
/// bytes, and then what it says is final.
fn parse_v1(input: &[u8]) -> Parsed {
    let line = match input.iter().position(|&b| b == b'\n') {
        Some(lf) => input.get(..=lf).unwrap_or(input),
        None if input.len() >= V1_MAX => input,
        None => return Parsed::More,
    };
    match v1::Header::try_from(line) {
        Ok(h) => v1_source(&h),
        Err(e) => Parsed::Bad(Refusal::Malformed(e.to_string())),
    }
}

fn parse_v2(input: &[u8]) -> Parsed {
    match v2::Header::try_from(input) {
        Ok(h) => v2_source(&h),
        Err(v2::ParseError::Partial(_, length)) if V2_FIXED + length > MAX_HEADER => {
            Parsed::Bad(Refusal::TooLong(V2_FIXED + length))
        }
        Err(e) if e.is_incomplete() => Parsed::More,
        Err(e) => Parsed::Bad(Refusal::Malformed(e.to_string())),
    }
}

fn v1_source(h: &v1::Header<'_>) -> Parsed {
    let addr = match h.addresses {
        v1::Addresses::Tcp4(a) => {
            Source::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        v1::Addresses::Tcp6(a) => {
            Source::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        v1::Addresses::Unknown => Source::Local,
    };
    Parsed::Done {
        len: h.header.len(),
        addr,
    }
}

fn v2_source(h: &v2::Header<'_>) -> Parsed {
    let addr = match (h.command, h.protocol, h.addresses) {
        (v2::Command::Local, _, _) => Source::Local,
        (v2::Command::Proxy, v2::Protocol::Stream, v2::Addresses::IPv4(a)) => {
            Source::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        (v2::Command::Proxy, v2::Protocol::Stream, v2::Addresses::IPv6(a)) => {
            Source::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        (v2::Command::Proxy, v2::Protocol::Stream, _) => {
            return Parsed::Bad(Refusal::NoClient("not an IPv4 or IPv6 client"));
        }
        (v2::Command::Proxy, _, _) => return Parsed::Bad(Refusal::NoClient("not a TCP client")),
    };
    // TLVs, if any, are ignored: nothing here needs them.
    Parsed::Done { len: h.len(), addr }
}

#[cfg(test)]
mod tests;
