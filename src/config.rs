//! Options. The session options are declared once, in [`SessionArgs`]
//! (parsing) and [`SESSION_HELP`] (their part of `--help`), and both
//! programs' command lines take them from there, so `ftpd` and
//! `aftpd-supervisor` cannot drift apart.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::args::{self, Lexer, UsageError};
use crate::listing::ListFormat;

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
        }
    }
}

/// `--pasv-address [CIDR=]ADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasvRule {
    pub net: IpAddr,
    pub prefix: u8,
    pub advertise: IpAddr,
}

impl PasvRule {
    /// Parses `ADDR` (every client) or `NET/PREFIX=ADDR`; the error says
    /// what was wanted.
    pub fn parse(s: &str) -> Result<PasvRule, String> {
        let bad = || "want ADDR or NET/PREFIX=ADDR".to_owned();
        let (net, advertise) = match s.split_once('=') {
            None => {
                let a: IpAddr = s.parse().map_err(|_| bad())?;
                let any = match a {
                    IpAddr::V4(_) => IpAddr::from([0u8; 4]),
                    IpAddr::V6(_) => IpAddr::from([0u16; 8]),
                };
                return Ok(PasvRule {
                    net: any,
                    prefix: 0,
                    advertise: a,
                });
            }
            Some((n, a)) => (n, a.parse::<IpAddr>().map_err(|_| bad())?),
        };
        let (addr, prefix) = net.split_once('/').ok_or_else(bad)?;
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(PasvRule {
            net,
            prefix,
            advertise,
        })
    }

    /// Whether `client` lies in this rule's network.
    pub fn matches(&self, client: IpAddr) -> bool {
        match (self.net, client.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(c)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(c) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(c)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(c) & mask
            }
            _ => false,
        }
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

/// Where the log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    /// Standard error (for `ftpd`, syslog instead when standard error is
    /// the connection itself, as inetd sets it up).
    Stderr,
    /// `--syslog`: syslog, facility FTP.
    Syslog,
}

/// Whether to enter the sandbox (Landlock, seccomp) after dropping
/// privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    Enter,
    /// `--no-sandbox`: for debugging, or a kernel that misbehaves.
    Skip,
}

/// The options both programs take, parsed: the [`SessionConfig`] they
/// describe, and the log and sandbox options, which each program applies
/// in its own set-up.
#[derive(Debug, Clone)]
pub struct SessionArgs {
    pub config: SessionConfig,
    pub log: LogTo,
    /// `--xferlog FILE`, opened before the chroot.
    pub xferlog: Option<PathBuf>,
    pub sandbox: Sandbox,
}

impl Default for SessionArgs {
    fn default() -> SessionArgs {
        SessionArgs {
            config: SessionConfig::default(),
            log: LogTo::Stderr,
            xferlog: None,
            sandbox: Sandbox::Enter,
        }
    }
}

impl SessionArgs {
    /// Takes the option `--name` if it is a session option, reading its
    /// value from `lx`; `Ok(false)` when it is not one, for the program's
    /// own parser to try. Each value is checked here, so a bad one is a
    /// usage error that names its option.
    pub fn take(&mut self, name: &str, lx: &mut Lexer) -> Result<bool, UsageError> {
        let c = &mut self.config;
        match name {
            "timeout" => c.idle_timeout = lx.once()?.parse(|s| args::seconds(s, 1))?,
            "data-timeout" => c.data_timeout = lx.once()?.parse(|s| args::seconds(s, 1))?,
            "list-format" => c.list_format = lx.once()?.parse(parse_list_format)?,
            "no-greeting" => c.greeting = false,
            "syslog" => self.log = LogTo::Syslog,
            "pasv-ports" => c.pasv_ports = Some(lx.once()?.parse(parse_port_range)?),
            // Repeatable: one rule per client network.
            "pasv-address" => c.pasv_address.push(lx.parse(PasvRule::parse)?),
            "xferlog" => self.xferlog = Some(lx.once()?.value()?.into()),
            "no-sandbox" => self.sandbox = Sandbox::Skip,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The session options in `--help`, the same for both programs.
pub const SESSION_HELP: &str = "\
\x20 --timeout SECS          close an idle control connection after SECS
                          seconds (default 60)
  --data-timeout SECS     bound, in seconds, on opening a data connection
                          and on a stalled transfer, one whose client took
                          no data for SECS seconds (default 30)
  --list-format FORMAT    LIST format: ls (ls -l lines, the default) or eplf
  --no-greeting           do not print the 220 greeting (tcpserver -B prints
                          one)
  --syslog                log through syslog (facility FTP) instead of
                          standard error
  --pasv-ports LO-HI      passive data ports (default: any ephemeral port)
  --pasv-address [NET/PREFIX=]ADDR
                          address to advertise in PASV replies, ADDR for
                          every client or NET/PREFIX=ADDR for clients in NET
                          (repeatable; default: the control connection's
                          local address)
  --xferlog FILE          append a line per download to FILE in wu-ftpd's
                          xferlog format (times in UTC); opened before the
                          chroot
  --no-sandbox            do not enter the sandbox (Landlock, seccomp) after
                          dropping privileges: for debugging, or a kernel
                          that misbehaves
";

/// How options are written, for the end of both programs' `--help`.
pub const SYNTAX_HELP: &str = "\
An option's value is the next argument or follows '=': --timeout 90 or
--timeout=90. Options may come before or after ROOT; '--' ends them (for a
ROOT that starts with '-').
";

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

    /// Reads `args` as nothing but session options.
    fn session(args: &[&str]) -> Result<SessionArgs, UsageError> {
        let mut lx = Lexer::new(args.iter().copied());
        let mut s = SessionArgs::default();
        while let Some(arg) = lx.next_arg()? {
            match arg {
                args::Arg::Long(name) if s.take(&name, &mut lx)? => {}
                _ => return Err(lx.unknown()),
            }
        }
        Ok(s)
    }

    fn error(args: &[&str]) -> String {
        match session(args) {
            Ok(s) => panic!("{args:?} parsed: {s:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn session_defaults() {
        let s = session(&[]).unwrap();
        let d = SessionConfig::default();
        assert_eq!(s.config.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.config.data_timeout, Duration::from_secs(30));
        assert_eq!(s.config.idle_timeout, d.idle_timeout);
        assert_eq!(s.config.data_timeout, d.data_timeout);
        assert_eq!(s.config.list_format, ListFormat::Ls);
        assert!(s.config.greeting);
        assert_eq!(s.config.pasv_ports, None);
        assert!(s.config.pasv_address.is_empty());
        assert_eq!(s.log, LogTo::Stderr);
        assert_eq!(s.xferlog, None);
        assert_eq!(s.sandbox, Sandbox::Enter);
    }

    #[test]
    fn every_session_option() {
        let s = session(&[
            "--timeout",
            "90",
            "--data-timeout=7",
            "--list-format",
            "eplf",
            "--no-greeting",
            "--syslog",
            "--pasv-ports",
            "50000-50100",
            "--pasv-address",
            "192.0.2.9",
            "--xferlog",
            "/var/log/xferlog",
            "--no-sandbox",
        ])
        .unwrap();
        assert_eq!(s.config.idle_timeout, Duration::from_secs(90));
        assert_eq!(s.config.data_timeout, Duration::from_secs(7));
        assert_eq!(s.config.list_format, ListFormat::Eplf);
        assert!(!s.config.greeting);
        assert_eq!(s.config.pasv_ports, Some((50000, 50100)));
        assert_eq!(
            s.config.pasv_address,
            vec![PasvRule::parse("192.0.2.9").unwrap()]
        );
        assert_eq!(s.log, LogTo::Syslog);
        assert_eq!(s.xferlog, Some(PathBuf::from("/var/log/xferlog")));
        assert_eq!(s.sandbox, Sandbox::Skip);
        assert_eq!(
            session(&["--list-format=ls"]).unwrap().config.list_format,
            ListFormat::Ls
        );
    }

    #[test]
    fn pasv_address_repeats_in_order() {
        let s = session(&[
            "--pasv-address",
            "10.0.0.0/8=192.0.2.1",
            "--pasv-address=192.0.2.2",
        ])
        .unwrap();
        assert_eq!(
            s.config.pasv_address,
            vec![
                PasvRule::parse("10.0.0.0/8=192.0.2.1").unwrap(),
                PasvRule::parse("192.0.2.2").unwrap(),
            ]
        );
    }

    #[test]
    fn switches_may_repeat_values_may_not() {
        assert!(session(&["--syslog", "--syslog", "--no-greeting", "--no-greeting"]).is_ok());
        for opt in [
            "--timeout",
            "--data-timeout",
            "--list-format",
            "--pasv-ports",
            "--xferlog",
        ] {
            let v = if opt == "--list-format" {
                "ls"
            } else if opt == "--pasv-ports" {
                "2000-3000"
            } else {
                "5"
            };
            assert_eq!(
                error(&[opt, v, opt, v]),
                format!("{opt} given more than once")
            );
        }
    }

    #[test]
    fn bad_session_values_name_the_option() {
        for (args, want) in [
            (
                &["--timeout", "0"][..],
                "bad --timeout \"0\": want whole seconds",
            ),
            (&["--timeout", "x"], "bad --timeout \"x\""),
            (&["--data-timeout=-1"], "bad --data-timeout \"-1\""),
            (&["--timeout", "18446744073709551615"], "bad --timeout"),
            (
                &["--list-format", "dos"],
                "bad --list-format \"dos\": want ls or eplf",
            ),
            (
                &["--pasv-ports", "10-5"],
                "bad --pasv-ports \"10-5\": want LO-HI",
            ),
            (
                &["--pasv-address", "x"],
                "bad --pasv-address \"x\": want ADDR",
            ),
            (&["--timeout"], "--timeout needs a value"),
            (&["--xferlog"], "--xferlog needs a value"),
            (&["--syslog=yes"], "--syslog takes no value"),
            (&["--no-sandbox=1"], "--no-sandbox takes no value"),
        ] {
            let e = error(args);
            assert!(e.starts_with(want), "{args:?}: {e:?}");
        }
    }

    #[test]
    fn not_a_session_option() {
        let mut lx = Lexer::new(["--listen", "127.0.0.1:21"]);
        let mut s = SessionArgs::default();
        assert_eq!(lx.next_arg(), Ok(Some(args::Arg::Long("listen".into()))));
        assert_eq!(s.take("listen", &mut lx), Ok(false));
        // Its value is left for the program's own parser.
        assert_eq!(lx.value(), Ok("127.0.0.1:21".into()));
    }

    #[test]
    fn help_text_fits_80_columns() {
        for line in SESSION_HELP.lines().chain(SYNTAX_HELP.lines()) {
            assert!(line.len() < 80, "{line:?}");
        }
        for line in SESSION_HELP.lines() {
            assert!(line.starts_with("  "), "{line:?}");
        }
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("50000-50100"), Ok((50000, 50100)));
        assert!(parse_port_range("20-30").is_err());
        assert!(parse_port_range("6000-5000").is_err());
        assert!(parse_port_range("x").is_err());
    }
}
