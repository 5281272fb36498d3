//! How every session behaves, whichever program runs it, and the parsers
//! of the option values that describe it. Pure data: the command lines
//! (`crate::config`) fill it in.

use std::net::IpAddr;
use std::time::Duration;

use super::listing::ListFormat;
use super::message::Message;
use super::net::Net;
use super::vpath::VPath;

/// How every session behaves, whichever program runs it.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Print the `220` greeting (off for `tcpserver -B` set-ups).
    pub greeting: bool,
    /// An idle control connection is closed with 421 after this long.
    pub idle_timeout: Duration,
    /// Bound on setting up a data connection, and on a stalled transfer.
    pub data_timeout: Duration,
    pub list_format: ListFormat,
    /// Passive listeners bind a port in this range (any ephemeral port when
    /// `None`).
    pub pasv_ports: Option<(u16, u16)>,
    /// The address PASV advertises, by client network: the first rule whose
    /// network holds the client's address wins; the control connection's
    /// local address otherwise.
    pub pasv_address: Vec<PasvRule>,
    /// Uploads into a drop box (`--incoming`); `None`: every write verb
    /// is refused.
    pub uploads: Option<Uploads>,
    /// `--banner`: the text of the 220 greeting.
    pub banner: Option<Message>,
    /// `--welcome`: shown in the 230 reply to PASS (unless the host's tree
    /// has its own).
    pub welcome: Option<Message>,
    /// `--dir-messages`: a directory's `.message` is shown in the 250
    /// reply to CWD into it, once a session.
    pub dir_messages: bool,
    /// `--vhosts`: HOST selects the tree ROOT/NAME; without it a session
    /// gets ROOT/0.
    pub vhosts: bool,
    /// FTPS (RFC 4217): whether TLS is offered, required or implicit.
    pub tls: TlsPolicy,
}

/// `--tls`: how the session treats TLS (the engine holds the certificate;
/// the core only decides what is allowed when).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// No TLS: AUTH, PBSZ and PROT are answered 502, as by a server
    /// without FTPS.
    #[default]
    Off,
    /// AUTH TLS is offered; plain FTP is served too.
    Optional,
    /// No login before AUTH TLS, no data transfer before PROT P.
    Required,
    /// TLS from the first byte (the greeting is inside it), PROT P
    /// implied.
    Implicit,
}

impl TlsPolicy {
    /// Whether the session speaks TLS at all.
    pub fn enabled(self) -> bool {
        self != TlsPolicy::Off
    }
}

/// Parses `off`, `optional`, `required` or `implicit` for `--tls`; the
/// error says what was wanted.
pub fn parse_tls_policy(s: &str) -> Result<TlsPolicy, String> {
    match s {
        "off" => Ok(TlsPolicy::Off),
        "optional" => Ok(TlsPolicy::Optional),
        "required" => Ok(TlsPolicy::Required),
        "implicit" => Ok(TlsPolicy::Implicit),
        _ => Err("want off, optional, required or implicit".to_owned()),
    }
}

/// Uploads as the session sees them (the filesystem layer applies the
/// rest: free space, mode, the hook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploads {
    /// STOR and STOU work in this directory and in the directories the
    /// operator made beneath it, and nowhere else.
    pub incoming: VPath,
    /// The most one upload may store, in bytes (`--max-upload`).
    pub max_size: u64,
}

impl Uploads {
    /// Whether uploads may go into directory `dir`.
    pub fn takes(&self, dir: &VPath) -> bool {
        within(dir, &self.incoming)
    }
}

/// Whether `path` is `dir` or lies beneath it.
pub fn within(path: &VPath, dir: &VPath) -> bool {
    let (p, d) = (path.as_bytes(), dir.as_bytes());
    dir.is_root() || p == d || (p.starts_with(d) && p.get(d.len()) == Some(&b'/'))
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            greeting: true,
            idle_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(30),
            list_format: ListFormat::Ls,
            pasv_ports: None,
            pasv_address: Vec::new(),
            uploads: None,
            tls: TlsPolicy::Off,
            banner: None,
            welcome: None,
            dir_messages: false,
            vhosts: false,
        }
    }
}

/// `--pasv-address [NET/PREFIX=]ADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasvRule {
    pub net: Net,
    pub advertise: IpAddr,
}

impl PasvRule {
    /// Parses `ADDR` (every client of its family) or `NET/PREFIX=ADDR`;
    /// the error says what was wanted.
    pub fn parse(s: &str) -> Result<PasvRule, String> {
        let bad = || "want ADDR or NET/PREFIX=ADDR".to_owned();
        match s.split_once('=') {
            None => {
                let advertise: IpAddr = s.parse().map_err(|_| bad())?;
                Ok(PasvRule {
                    net: Net::every(advertise),
                    advertise,
                })
            }
            Some((net, a)) => Ok(PasvRule {
                net: Net::parse(net).map_err(|_| bad())?,
                advertise: a.parse().map_err(|_| bad())?,
            }),
        }
    }

    /// Whether `client` lies in this rule's network.
    pub fn matches(&self, client: IpAddr) -> bool {
        self.net.contains(client)
    }
}

/// Parses `LO-HI` for `--pasv-ports`; the error says what was wanted.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || "want LO-HI, 1024 <= LO <= HI <= 65535".to_owned();
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 1024 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// Parses `ls` or `eplf` for `--list-format`; the error says what was
/// wanted.
pub fn parse_list_format(s: &str) -> Result<ListFormat, String> {
    match s {
        "ls" => Ok(ListFormat::Ls),
        "eplf" => Ok(ListFormat::Eplf),
        _ => Err("want ls or eplf".to_owned()),
    }
}

/// Parses a size for `--max-upload` and `--min-free`: bytes, or a
/// number with `K`, `M` or `G` (powers of 1024); the error says what was
/// wanted.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || "want a size: bytes, or a number with K, M or G".to_owned();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// Parses `--incoming DIR`: a directory beneath the root, given relative
/// to it; never the root itself (the whole archive would become
/// write-only) and never a hidden name.
pub fn parse_incoming(s: &str) -> Result<VPath, String> {
    let bad = || "want a directory beneath ROOT, e.g. incoming".to_owned();
    let path = VPath::resolve(&VPath::root(), s.as_bytes()).map_err(|_| bad())?;
    if path.is_root() {
        return Err(bad());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasv_rules() {
        let r = PasvRule::parse("10.0.0.0/8=192.0.2.1").unwrap();
        assert!(r.matches("10.1.2.3".parse().unwrap()));
        assert!(r.matches("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!r.matches("11.1.2.3".parse().unwrap()));
        let any = PasvRule::parse("192.0.2.9").unwrap();
        assert!(any.matches("203.0.113.5".parse().unwrap()));
        assert!(!any.matches("::1".parse().unwrap()));
        assert!(PasvRule::parse("10.0.0.0/33=1.2.3.4").is_err());
        assert!(PasvRule::parse("nonsense").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in [
            "",
            "G",
            "-1",
            "1.5G",
            "1T",
            "12x",
            "18446744073709551615G",
            " 1",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn incoming_dirs() {
        assert_eq!(parse_incoming("incoming").unwrap().as_bytes(), b"/incoming");
        assert_eq!(parse_incoming("/pub/in/").unwrap().as_bytes(), b"/pub/in");
        for bad in [".", "/", "..", "pub/.in", "a/../.."] {
            assert!(parse_incoming(bad).is_err(), "{bad:?}");
        }
        let u = Uploads {
            incoming: parse_incoming("pub/in").unwrap(),
            max_size: 1,
        };
        let vp = |s: &str| VPath::resolve(&VPath::root(), s.as_bytes()).unwrap();
        assert!(u.takes(&vp("/pub/in")));
        assert!(u.takes(&vp("/pub/in/sub")));
        assert!(!u.takes(&vp("/pub/inbox")));
        assert!(!u.takes(&vp("/pub")));
        assert!(!u.takes(&vp("/")));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("50000-50100"), Ok((50000, 50100)));
        assert!(parse_port_range("20-30").is_err());
        assert!(parse_port_range("6000-5000").is_err());
        assert!(parse_port_range("x").is_err());
    }
}
