//! Command lines into typed commands. Verbs are case-insensitive; the
//! argument is everything after the first space, byte for byte (file names
//! may hold spaces and need not be UTF-8).

use std::net::{SocketAddr, SocketAddrV4};

use super::addr::{self, EprtError};
use crate::core::listing::Facts;

/// TYPE: how a file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// `A` or `A N`: LF becomes CRLF on the way out.
    Ascii,
    /// `I` or `L 8`: bytes as they are.
    Image,
}

/// Which address family EPSV asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    Any,
    Ipv4,
    Ipv6,
    /// `EPSV ALL`: from now on only EPSV sets up data connections.
    All,
}

/// OPTS arguments understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opts {
    /// `OPTS UTF8 ON|OFF` (RFC 2640; names pass through either way).
    Utf8(bool),
    /// `OPTS MLST fact;fact;` (RFC 3659 §7.9).
    Mlst(Facts),
}

/// LIST and NLST: `ls`-style options (`-la`) are dropped, the rest is the
/// path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListArg {
    pub path: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(Vec<u8>),
    Pass,
    Acct,
    Pwd,
    Cwd(Vec<u8>),
    Cdup,
    Type(DataType),
    /// STRU F, the only structure served.
    StruFile,
    /// MODE S, the only mode served.
    ModeStream,
    Port(SocketAddrV4),
    Pasv,
    Eprt(SocketAddr),
    Epsv(EpsvArg),
    Rest(u64),
    Retr(Vec<u8>),
    Size(Vec<u8>),
    Mdtm(Vec<u8>),
    List(ListArg),
    Nlst(ListArg),
    Mlsd(Option<Vec<u8>>),
    Mlst(Option<Vec<u8>>),
    Stat(Option<Vec<u8>>),
    Feat,
    Opts(Opts),
    Syst,
    Help(Option<Vec<u8>>),
    Noop,
    Allo,
    Abor,
    Quit,
    Host(Vec<u8>),
    /// CLNT (a client names itself; ncftp sends it): noted, ignored.
    Clnt,
    /// STOR, with its argument if any: an upload where `--incoming`
    /// allows it, else refused as a write.
    Stor(Option<Vec<u8>>),
    /// STOU, with the name a client may suggest (RFC 959 gives it none).
    Stou(Option<Vec<u8>>),
    /// A verb that would change the archive (APPE, DELE, MKD, ...).
    Write(&'static str),
    /// SITE: no site commands are offered.
    Site,
    /// A verb known but not offered here (REIN, SMNT, CCC, ...).
    NotOffered(&'static str),
    /// RFC 2228 AUTH with its mechanism, if any (the session answers 502
    /// when TLS is off).
    Auth(Option<Vec<u8>>),
    /// RFC 2228 PBSZ with its size, if any.
    Pbsz(Option<Vec<u8>>),
    /// RFC 2228 PROT with its level, if any.
    Prot(Option<Vec<u8>>),
}

/// Why a line is not a command we can act on, one reply code each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// 500: no such verb.
    Unknown,
    /// 501: the argument is missing or malformed.
    Syntax(&'static str),
    /// 504: a parameter value not implemented (TYPE E, MODE B, ...).
    Unsupported(&'static str),
    /// 522: EPRT/EPSV with a network protocol not supported.
    Protocol,
}

/// Verbs that would modify the archive.
pub const WRITE_VERBS: [&str; 11] = [
    "APPE", "DELE", "MKD", "XMKD", "RMD", "XRMD", "RNFR", "RNTO", "MFMT", "MFF", "MFCT",
];

/// Verbs recognised but not offered: the security extensions other than
/// AUTH, PBSZ and PROT, REIN, SMNT, RFC 1639's long-address LPRT/LPSV
/// (EPRT/EPSV do their work)...
pub const NOT_OFFERED: [&str; 10] = [
    "SMNT", "REIN", "ADAT", "CCC", "MIC", "CONF", "ENC", "LANG", "LPRT", "LPSV",
];

/// Every verb served, for HELP.
pub const VERBS: [&str; 34] = [
    "ABOR", "ACCT", "ALLO", "CDUP", "CWD", "EPRT", "EPSV", "FEAT", "HELP", "HOST", "LIST", "MDTM",
    "MLSD", "MLST", "MODE", "NLST", "NOOP", "OPTS", "PASS", "PASV", "PORT", "PWD", "QUIT", "REST",
    "RETR", "SIZE", "STAT", "STRU", "SYST", "TYPE", "USER", "XCUP", "XCWD", "XPWD",
];

/// The upload verbs, served with `--incoming` (refused as writes
/// without it).
pub const UPLOAD_VERBS: [&str; 2] = ["STOR", "STOU"];

/// The FTPS verbs, served when TLS is on.
pub const TLS_VERBS: [&str; 3] = ["AUTH", "PBSZ", "PROT"];

impl Command {
    /// Whether the command may be given before logging in.
    pub fn allowed_before_login(&self) -> bool {
        matches!(
            self,
            Command::User(_)
                | Command::Pass
                | Command::Acct
                | Command::Quit
                | Command::Feat
                | Command::Syst
                | Command::Help(_)
                | Command::Noop
                | Command::Opts(_)
                | Command::Host(_)
                | Command::Clnt
                | Command::Stat(None)
                | Command::Abor
                | Command::NotOffered(_)
                | Command::Auth(_)
                | Command::Pbsz(_)
                | Command::Prot(_)
        )
    }
}

/// Parses one command line (without its line ending).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let (verb, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if verb.is_empty() || verb.len() > 4 {
        return Err(ParseError::Unknown);
    }
    let mut v = [0u8; 4];
    for (d, s) in v.iter_mut().zip(verb) {
        *d = s.to_ascii_uppercase();
    }
    let verb = std::str::from_utf8(&v[..verb.len()]).map_err(|_| ParseError::Unknown)?;
    let need = |what: &'static str| -> Result<Vec<u8>, ParseError> {
        match arg {
            Some(a) if !a.is_empty() => Ok(a.to_vec()),
            _ => Err(ParseError::Syntax(what)),
        }
    };
    let optional = || arg.filter(|a| !a.is_empty()).map(<[u8]>::to_vec);
    Ok(match verb {
        "USER" => Command::User(need("USER needs a name")?),
        "PASS" => Command::Pass,
        "ACCT" => Command::Acct,
        "PWD" | "XPWD" => Command::Pwd,
        "CWD" | "XCWD" => Command::Cwd(need("CWD needs a directory")?),
        "CDUP" | "XCUP" => Command::Cdup,
        "TYPE" => Command::Type(parse_type(&need("TYPE needs a type code")?)?),
        "STRU" => match need("STRU needs a structure")?
            .to_ascii_uppercase()
            .as_slice()
        {
            b"F" => Command::StruFile,
            b"R" | b"P" => return Err(ParseError::Unsupported("only STRU F is supported")),
            _ => return Err(ParseError::Syntax("unknown structure")),
        },
        "MODE" => match need("MODE needs a mode")?.to_ascii_uppercase().as_slice() {
            b"S" => Command::ModeStream,
            b"B" | b"C" | b"Z" => return Err(ParseError::Unsupported("only MODE S is supported")),
            _ => return Err(ParseError::Syntax("unknown mode")),
        },
        "PORT" => Command::Port(
            addr::parse_port(&need("PORT needs an address")?)
                .ok_or(ParseError::Syntax("PORT wants h1,h2,h3,h4,p1,p2"))?,
        ),
        "PASV" => Command::Pasv,
        "EPRT" => Command::Eprt(addr::parse_eprt(&need("EPRT needs an address")?).map_err(
            |e| match e {
                EprtError::Syntax => ParseError::Syntax("EPRT wants |proto|address|port|"),
                EprtError::Protocol => ParseError::Protocol,
            },
        )?),
        "EPSV" => Command::Epsv(
            match optional().map(|a| a.to_ascii_uppercase()).as_deref() {
                None => EpsvArg::Any,
                Some(b"1") => EpsvArg::Ipv4,
                Some(b"2") => EpsvArg::Ipv6,
                Some(b"ALL") => EpsvArg::All,
                Some(p) if p.iter().all(u8::is_ascii_digit) => return Err(ParseError::Protocol),
                Some(_) => return Err(ParseError::Syntax("EPSV takes 1, 2 or ALL")),
            },
        ),
        "REST" => Command::Rest(parse_offset(&need("REST needs an offset")?)?),
        "RETR" => Command::Retr(need("RETR needs a file name")?),
        "SIZE" => Command::Size(need("SIZE needs a file name")?),
        "MDTM" => Command::Mdtm(need("MDTM needs a file name")?),
        "LIST" => Command::List(parse_list_arg(arg)),
        "NLST" => Command::Nlst(parse_list_arg(arg)),
        "MLSD" => Command::Mlsd(optional()),
        "MLST" => Command::Mlst(optional()),
        "STAT" => Command::Stat(parse_list_arg(arg).path),
        "FEAT" => Command::Feat,
        "OPTS" => Command::Opts(parse_opts(&need("OPTS needs an option")?)?),
        "SYST" => Command::Syst,
        "HELP" => Command::Help(optional()),
        "NOOP" => Command::Noop,
        "ALLO" => Command::Allo,
        "ABOR" => Command::Abor,
        "QUIT" => Command::Quit,
        "HOST" => {
            let host = need("HOST needs a host name")?;
            if !valid_host(&host) {
                return Err(ParseError::Syntax("HOST wants a domain name or [address]"));
            }
            Command::Host(host)
        }
        "CLNT" => Command::Clnt,
        "STOR" => Command::Stor(optional()),
        "STOU" => Command::Stou(optional()),
        "AUTH" => Command::Auth(optional()),
        "PBSZ" => Command::Pbsz(optional()),
        "PROT" => Command::Prot(optional()),
        "SITE" => {
            need("SITE needs a command")?;
            Command::Site
        }
        _ => {
            if let Some(w) = WRITE_VERBS.iter().find(|w| **w == verb) {
                Command::Write(w)
            } else if let Some(n) = NOT_OFFERED.iter().find(|n| **n == verb) {
                Command::NotOffered(n)
            } else {
                return Err(ParseError::Unknown);
            }
        }
    })
}

/// RFC 7151's host name: a domain name (dot-separated labels of letters,
/// digits, hyphens and, for internationalised names, UTF-8) or an IPv4 or
/// IPv6 address in brackets.
fn valid_host(h: &[u8]) -> bool {
    if let Some(inner) = h.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]")) {
        return std::str::from_utf8(inner).is_ok_and(|a| a.parse::<std::net::IpAddr>().is_ok());
    }
    let name = h.strip_suffix(b".").unwrap_or(h);
    h.len() <= 255
        && std::str::from_utf8(name).is_ok()
        && name.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        })
}

fn parse_type(arg: &[u8]) -> Result<DataType, ParseError> {
    let arg = arg.to_ascii_uppercase();
    let words: Vec<&[u8]> = arg
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    match words.as_slice() {
        [b"A"] | [b"A", b"N"] => Ok(DataType::Ascii),
        [b"I"] | [b"L", b"8"] => Ok(DataType::Image),
        [b"A" | b"E", b"T" | b"C"] | [b"E"] | [b"E", b"N"] => Err(ParseError::Unsupported(
            "only TYPE A, A N, I and L 8 are supported",
        )),
        [b"L", n] if !n.is_empty() && n.iter().all(u8::is_ascii_digit) => {
            Err(ParseError::Unsupported("only TYPE L 8 is supported"))
        }
        _ => Err(ParseError::Syntax("unknown TYPE")),
    }
}

fn parse_offset(arg: &[u8]) -> Result<u64, ParseError> {
    let bad = ParseError::Syntax("REST wants a byte offset");
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(bad)
}

/// Drops leading `-options` words; the rest, if any, is the path.
fn parse_list_arg(arg: Option<&[u8]>) -> ListArg {
    let mut rest = arg.unwrap_or_default();
    loop {
        while rest.first() == Some(&b' ') {
            rest = &rest[1..];
        }
        if rest.first() != Some(&b'-') {
            break;
        }
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        rest = &rest[end..];
    }
    ListArg {
        path: (!rest.is_empty()).then(|| rest.to_vec()),
    }
}

fn parse_opts(arg: &[u8]) -> Result<Opts, ParseError> {
    let (name, value) = match arg.iter().position(|&b| b == b' ') {
        Some(i) => (&arg[..i], &arg[i + 1..]),
        None => (arg, &b""[..]),
    };
    let not_understood = ParseError::Syntax("option not understood");
    match name.to_ascii_uppercase().as_slice() {
        b"UTF8" | b"UTF-8" => match value.to_ascii_uppercase().as_slice() {
            b"ON" | b"" => Ok(Opts::Utf8(true)),
            b"OFF" => Ok(Opts::Utf8(false)),
            _ => Err(not_understood),
        },
        b"MLST" => {
            let mut facts = Facts::empty();
            for want in value.split(|&b| b == b';') {
                let want = want.to_ascii_lowercase();
                if let Some((f, _)) = Facts::ALL.iter().find(|(_, n)| n.as_bytes() == want) {
                    facts = facts.with(*f);
                }
            }
            Ok(Opts::Mlst(facts))
        }
        _ => Err(not_understood),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Result<Command, ParseError> {
        parse(s)
    }

    #[test]
    fn verbs_case_insensitive() {
        assert_eq!(p(b"noop"), Ok(Command::Noop));
        assert_eq!(p(b"XpWd"), Ok(Command::Pwd));
        assert_eq!(
            p(b"user anonymous"),
            Ok(Command::User(b"anonymous".to_vec()))
        );
    }

    #[test]
    fn arguments_kept_byte_for_byte() {
        assert_eq!(p(b"RETR a file "), Ok(Command::Retr(b"a file ".to_vec())));
        assert_eq!(p(b"CWD caf\xe9"), Ok(Command::Cwd(b"caf\xe9".to_vec())));
        assert_eq!(
            p(b"RETR"),
            Err(ParseError::Syntax("RETR needs a file name"))
        );
        assert_eq!(
            p(b"RETR "),
            Err(ParseError::Syntax("RETR needs a file name"))
        );
    }

    #[test]
    fn unknown_and_refused() {
        assert_eq!(p(b"FOO"), Err(ParseError::Unknown));
        assert_eq!(p(b""), Err(ParseError::Unknown));
        assert_eq!(p(b"RETRIEVE x"), Err(ParseError::Unknown));
        assert_eq!(p(b"STOR x"), Ok(Command::Stor(Some(b"x".to_vec()))));
        assert_eq!(p(b"stor"), Ok(Command::Stor(None)));
        assert_eq!(p(b"STOU"), Ok(Command::Stou(None)));
        assert_eq!(p(b"STOU a b"), Ok(Command::Stou(Some(b"a b".to_vec()))));
        assert_eq!(p(b"xmkd x"), Ok(Command::Write("XMKD")));
        assert_eq!(p(b"SITE CHMOD 777 x"), Ok(Command::Site));
        assert_eq!(p(b"site help"), Ok(Command::Site));
        assert!(matches!(p(b"SITE"), Err(ParseError::Syntax(_))));
        assert_eq!(p(b"AUTH TLS"), Ok(Command::Auth(Some(b"TLS".to_vec()))));
        assert_eq!(p(b"auth"), Ok(Command::Auth(None)));
        assert_eq!(p(b"PBSZ 0"), Ok(Command::Pbsz(Some(b"0".to_vec()))));
        assert_eq!(p(b"PROT P"), Ok(Command::Prot(Some(b"P".to_vec()))));
        assert_eq!(p(b"CCC"), Ok(Command::NotOffered("CCC")));
        assert_eq!(p(b"LPSV"), Ok(Command::NotOffered("LPSV")));
    }

    #[test]
    fn host_names() {
        for ok in [
            &b"ftp.example.org"[..],
            b"ftp.example.org.",
            b"localhost",
            b"127.0.0.1",
            b"[127.0.0.1]",
            b"[::1]",
            b"xn--caf-dma.example",
            "café.example".as_bytes(),
        ] {
            assert!(
                matches!(p(&[b"HOST ", ok].concat()), Ok(Command::Host(_))),
                "{ok:?}"
            );
        }
        for bad in [
            &b"a b"[..],
            b"a..b",
            b".",
            b"[::1",
            b"[ftp.example.org]",
            b"a_b",
            b"a/b",
            b"\xff",
        ] {
            assert!(
                matches!(p(&[b"HOST ", bad].concat()), Err(ParseError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(p(b"HOST"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn types() {
        assert_eq!(p(b"TYPE A"), Ok(Command::Type(DataType::Ascii)));
        assert_eq!(p(b"TYPE a n"), Ok(Command::Type(DataType::Ascii)));
        assert_eq!(p(b"TYPE I"), Ok(Command::Type(DataType::Image)));
        assert_eq!(p(b"TYPE L 8"), Ok(Command::Type(DataType::Image)));
        assert!(matches!(p(b"TYPE E"), Err(ParseError::Unsupported(_))));
        assert!(matches!(p(b"TYPE A T"), Err(ParseError::Unsupported(_))));
        assert!(matches!(p(b"TYPE L 7"), Err(ParseError::Unsupported(_))));
        assert!(matches!(p(b"TYPE X"), Err(ParseError::Syntax(_))));
        assert!(matches!(p(b"TYPE"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn stru_and_mode() {
        assert_eq!(p(b"STRU F"), Ok(Command::StruFile));
        assert!(matches!(p(b"STRU R"), Err(ParseError::Unsupported(_))));
        assert_eq!(p(b"MODE s"), Ok(Command::ModeStream));
        assert!(matches!(p(b"MODE B"), Err(ParseError::Unsupported(_))));
        assert!(matches!(p(b"MODE Q"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn data_addresses() {
        assert_eq!(
            p(b"PORT 127,0,0,1,4,1"),
            Ok(Command::Port("127.0.0.1:1025".parse().unwrap()))
        );
        assert!(matches!(p(b"PORT 1,2,3"), Err(ParseError::Syntax(_))));
        assert_eq!(
            p(b"EPRT |2|::1|2000|"),
            Ok(Command::Eprt("[::1]:2000".parse().unwrap()))
        );
        assert_eq!(p(b"EPRT |9|x|1|"), Err(ParseError::Protocol));
        assert_eq!(p(b"EPSV"), Ok(Command::Epsv(EpsvArg::Any)));
        assert_eq!(p(b"EPSV all"), Ok(Command::Epsv(EpsvArg::All)));
        assert_eq!(p(b"EPSV 2"), Ok(Command::Epsv(EpsvArg::Ipv6)));
        assert_eq!(p(b"EPSV 7"), Err(ParseError::Protocol));
    }

    #[test]
    fn rest_offsets() {
        assert_eq!(p(b"REST 0"), Ok(Command::Rest(0)));
        assert_eq!(p(b"REST 123456789012"), Ok(Command::Rest(123456789012)));
        assert!(matches!(p(b"REST -1"), Err(ParseError::Syntax(_))));
        assert!(matches!(
            p(b"REST 99999999999999999999999"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn list_options_are_not_paths() {
        let list = |s: &[u8]| match p(s) {
            Ok(Command::List(a)) => a.path,
            other => panic!("{other:?}"),
        };
        assert_eq!(list(b"LIST"), None);
        assert_eq!(list(b"LIST -la"), None);
        assert_eq!(list(b"LIST -a -l pub"), Some(b"pub".to_vec()));
        assert_eq!(list(b"LIST pub dir"), Some(b"pub dir".to_vec()));
        assert_eq!(p(b"STAT -l /"), Ok(Command::Stat(Some(b"/".to_vec()))));
        assert_eq!(p(b"STAT"), Ok(Command::Stat(None)));
    }

    #[test]
    fn opts() {
        assert_eq!(p(b"OPTS UTF8 ON"), Ok(Command::Opts(Opts::Utf8(true))));
        assert_eq!(p(b"opts utf8 off"), Ok(Command::Opts(Opts::Utf8(false))));
        assert_eq!(
            p(b"OPTS MLST type;size;"),
            Ok(Command::Opts(Opts::Mlst(Facts::TYPE.with(Facts::SIZE))))
        );
        assert_eq!(
            p(b"OPTS MLST"),
            Ok(Command::Opts(Opts::Mlst(Facts::empty())))
        );
        assert!(matches!(p(b"OPTS FOO"), Err(ParseError::Syntax(_))));
    }
}
