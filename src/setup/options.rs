//! The session options, declared once for both programs: the
//! `with_session_options!` macro adds them, with their help, their value
//! checks and the [`SessionArgs`] they make, to each program's `argh`
//! command line (argh has no way to flatten one struct into another).
//! [`SessionOptions`] is a command line of only these, for the help's
//! grouping and for tests.

use std::path::PathBuf;
use std::time::Duration;

use crate::core::config::{PasvRule, SessionConfig, TlsPolicy};
use crate::core::listing::ListFormat;
use crate::core::proxy::{Net, ProxyPolicy};
use crate::core::rate::Rate;
use crate::setup::Fail;

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

/// The session options, read: the [`SessionConfig`] they describe, and
/// the log and sandbox options, which each program applies in its own
/// set-up.
#[derive(Debug, Clone)]
pub struct SessionArgs {
    pub config: SessionConfig,
    pub log: LogTo,
    /// `--xferlog FILE`, opened before the chroot.
    pub xferlog: Option<PathBuf>,
    pub sandbox: Sandbox,
    /// `--max-rate`: bytes per second of each data transfer.
    pub max_rate: Option<Rate>,
    /// `--banner FILE` and `--welcome FILE`, read before the chroot into
    /// `config` (see [`crate::setup::messages`]).
    pub messages: MessagePaths,
    /// `--proxy-protocol` with its `--proxy-from` networks: every control
    /// connection begins with a PROXY header from one of them.
    pub proxy: Option<ProxyPolicy>,
    /// `--tls-cert` and `--tls-key`, when TLS is on (read before the
    /// chroot).
    pub tls: Option<TlsFiles>,
}

/// Where the banner and the welcome are read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagePaths {
    pub banner: Option<PathBuf>,
    pub welcome: Option<PathBuf>,
}

/// Where the certificate chain and its private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    /// The key: `--tls-key`, else the certificate file (one PEM file may
    /// hold both).
    pub key: PathBuf,
}

/// The session options as given, before the defaults fill the gaps
/// (what `with_session_options!` hands over).
#[derive(Debug, Default)]
pub struct Given {
    pub timeout: Option<Duration>,
    pub data_timeout: Option<Duration>,
    pub list_format: Option<ListFormat>,
    pub no_greeting: bool,
    pub syslog: bool,
    pub pasv_ports: Option<(u16, u16)>,
    pub pasv_address: Vec<PasvRule>,
    pub xferlog: Option<PathBuf>,
    pub no_sandbox: bool,
    pub banner: Option<PathBuf>,
    pub welcome: Option<PathBuf>,
    pub dir_messages: bool,
    pub vhosts: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls: Option<TlsPolicy>,
    pub max_rate: Option<Rate>,
}

impl TryFrom<Given> for SessionArgs {
    type Error = Fail;

    fn try_from(g: Given) -> Result<SessionArgs, Fail> {
        let d = SessionConfig::default();
        // TLS is on by default once there is a certificate, and needs one.
        let policy = match (g.tls, &g.tls_cert) {
            (Some(p), None) if p.enabled() => {
                return Err(Fail::usage("--tls needs --tls-cert FILE"));
            }
            (Some(p), _) => p,
            (None, Some(_)) => TlsPolicy::Optional,
            (None, None) => TlsPolicy::Off,
        };
        if g.tls_key.is_some() && g.tls_cert.is_none() {
            return Err(Fail::usage("--tls-key needs --tls-cert FILE"));
        }
        let tls = match g.tls_cert {
            Some(cert) if policy.enabled() => Some(TlsFiles {
                key: g.tls_key.unwrap_or_else(|| cert.clone()),
                cert,
            }),
            _ => None,
        };
        Ok(SessionArgs {
            config: SessionConfig {
                greeting: !g.no_greeting,
                idle_timeout: g.timeout.unwrap_or(d.idle_timeout),
                data_timeout: g.data_timeout.unwrap_or(d.data_timeout),
                list_format: g.list_format.unwrap_or(d.list_format),
                pasv_ports: g.pasv_ports,
                pasv_address: g.pasv_address,
                // The texts are read by the program, before the chroot.
                banner: None,
                welcome: None,
                dir_messages: g.dir_messages,
                vhosts: g.vhosts,
                tls: policy,
            },
            log: if g.syslog {
                LogTo::Syslog
            } else {
                LogTo::Stderr
            },
            xferlog: g.xferlog,
            sandbox: if g.no_sandbox {
                Sandbox::Skip
            } else {
                Sandbox::Enter
            },
            messages: MessagePaths {
                banner: g.banner,
                welcome: g.welcome,
            },
            proxy: None,
            tls,
            max_rate: g.max_rate,
        })
    }
}

/// `--proxy-protocol` and `--proxy-from`, which only make sense together:
/// a header believed from anywhere would let anyone choose the address
/// the limits, the peer checks and the logs see.
pub fn proxy_policy(on: bool, from: &[Net]) -> Result<Option<ProxyPolicy>, String> {
    match (on, from.is_empty()) {
        (false, true) => Ok(None),
        (true, false) => Ok(Some(ProxyPolicy {
            from: from.to_vec(),
        })),
        (true, true) => Err("--proxy-protocol needs --proxy-from NET/PREFIX: \
             the load balancers that may send a header"
            .to_owned()),
        (false, false) => Err("--proxy-from is for --proxy-protocol: give both".to_owned()),
    }
}

impl Default for SessionArgs {
    fn default() -> SessionArgs {
        SessionArgs {
            config: SessionConfig::default(),
            log: LogTo::Stderr,
            xferlog: None,
            sandbox: Sandbox::Enter,
            messages: MessagePaths::default(),
            proxy: None,
            tls: None,
            max_rate: None,
        }
    }
}

/// Declares the `argh` command-line struct given, with the session options
/// added after its own fields (which must end with a comma), and a
/// `session()` method that reads them into [`SessionArgs`]. The struct
/// needs `#[derive(argh::FromArgs, argh::ArgsInfo)]` among its
/// attributes. Each option's doc comment is its `--help` text.
macro_rules! with_session_options {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident { $($own:tt)* }
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $($own)*
            /// close an idle control connection after SECS seconds
            /// (default 60)
            #[argh(option, arg_name = "SECS", from_str_fn($crate::setup::options::timeout))]
            pub timeout: Option<std::time::Duration>,
            /// bound, in seconds, on opening a data connection and on a
            /// stalled transfer, one whose client took no data for SECS
            /// seconds (default 30)
            #[argh(option, arg_name = "SECS", from_str_fn($crate::setup::options::timeout))]
            pub data_timeout: Option<std::time::Duration>,
            /// LIST format: ls (ls -l lines, the default) or eplf
            #[argh(
                option,
                arg_name = "FORMAT",
                from_str_fn($crate::core::config::parse_list_format)
            )]
            pub list_format: Option<$crate::core::listing::ListFormat>,
            /// do not print the 220 greeting (tcpserver -B prints one)
            #[argh(switch)]
            pub no_greeting: bool,
            /// log through syslog (facility FTP) instead of standard error
            #[argh(switch)]
            pub syslog: bool,
            /// passive data ports (default: any ephemeral port)
            #[argh(
                option,
                arg_name = "LO-HI",
                from_str_fn($crate::core::config::parse_port_range)
            )]
            pub pasv_ports: Option<(u16, u16)>,
            /// address to advertise in PASV replies, ADDR for every client
            /// or NET/PREFIX=ADDR for clients in NET (repeatable; default:
            /// the control connection's local address)
            #[argh(
                option,
                arg_name = "[NET/PREFIX=]ADDR",
                from_str_fn($crate::core::config::PasvRule::parse)
            )]
            pub pasv_address: Vec<$crate::core::config::PasvRule>,
            /// append a line per download to FILE in wu-ftpd's xferlog
            /// format (times in UTC); opened before the chroot
            #[argh(option, arg_name = "FILE")]
            pub xferlog: Option<std::path::PathBuf>,
            /// do not enter the sandbox (Landlock, seccomp) after dropping
            /// privileges: for debugging, or a kernel that misbehaves
            #[argh(switch)]
            pub no_sandbox: bool,
            /// the text of the 220 greeting, read from FILE (before the
            /// chroot; the supervisor reads it again on SIGHUP), shown as
            /// a multi-line reply
            #[argh(option, arg_name = "FILE")]
            pub banner: Option<std::path::PathBuf>,
            /// a text read from FILE as --banner is, shown in the 230
            /// reply after login
            #[argh(option, arg_name = "FILE")]
            pub welcome: Option<std::path::PathBuf>,
            /// show a directory's .message file in the 250 reply to CWD
            /// into it, the first time a session enters it
            #[argh(switch)]
            pub dir_messages: bool,
            /// virtual hosts with publicfile's layout: ROOT/0 is served to
            /// a client that sends no HOST, ROOT/NAME to one that sends
            /// HOST NAME (unknown names are answered 504); each tree may
            /// hold a .banner and a .welcome
            #[argh(switch)]
            pub vhosts: bool,
            /// every control connection must begin, within 5 seconds,
            /// with a PROXY protocol header (v1 or v2, as HAProxy's
            /// send-proxy writes it) from a --proxy-from address; its
            /// client address replaces the connection's (others are
            /// closed unanswered)
            #[argh(switch)]
            pub proxy_protocol: bool,
            /// a load balancer that may send PROXY headers, NET/PREFIX or
            /// ADDR (repeatable; with --proxy-protocol)
            #[argh(
                option,
                arg_name = "NET/PREFIX",
                from_str_fn($crate::core::proxy::Net::parse)
            )]
            pub proxy_from: Vec<$crate::core::proxy::Net>,
            /// FTPS: the certificate chain (PEM), read before the chroot;
            /// turns TLS on (--tls optional)
            #[argh(option, arg_name = "FILE")]
            pub tls_cert: Option<std::path::PathBuf>,
            /// FTPS: the certificate's private key (PEM; default: the
            /// --tls-cert file), read before the chroot
            #[argh(option, arg_name = "FILE")]
            pub tls_key: Option<std::path::PathBuf>,
            /// FTPS: off, optional (AUTH TLS offered; the default with a
            /// certificate), required (no login or transfer in clear) or
            /// implicit (TLS from the first byte, as on port 990)
            #[argh(
                option,
                arg_name = "MODE",
                from_str_fn($crate::core::config::parse_tls_policy)
            )]
            pub tls: Option<$crate::core::config::TlsPolicy>,
            /// most bytes per second of each data transfer (download or
            /// listing), K, M or G for 1024, 1024², 1024³: 512K, 10M
            /// (default: no limit)
            #[argh(
                option,
                arg_name = "RATE",
                from_str_fn($crate::core::rate::parse_rate)
            )]
            pub max_rate: Option<$crate::core::rate::Rate>,
        }

        impl $name {
            /// The session options given, with the defaults for the rest;
            /// a usage error for options that do not go together.
            pub fn session(
                &self,
            ) -> Result<$crate::setup::options::SessionArgs, $crate::setup::Fail> {
                let proxy = $crate::setup::options::proxy_policy(
                    self.proxy_protocol,
                    &self.proxy_from,
                )
                .map_err($crate::setup::Fail::usage)?;
                let args: $crate::setup::options::SessionArgs = $crate::setup::options::Given {
                    timeout: self.timeout,
                    data_timeout: self.data_timeout,
                    list_format: self.list_format,
                    no_greeting: self.no_greeting,
                    syslog: self.syslog,
                    pasv_ports: self.pasv_ports,
                    pasv_address: self.pasv_address.clone(),
                    xferlog: self.xferlog.clone(),
                    no_sandbox: self.no_sandbox,
                    banner: self.banner.clone(),
                    welcome: self.welcome.clone(),
                    dir_messages: self.dir_messages,
                    vhosts: self.vhosts,
                    tls_cert: self.tls_cert.clone(),
                    tls_key: self.tls_key.clone(),
                    tls: self.tls,
                    max_rate: self.max_rate,
                }
                .try_into()?;
                Ok($crate::setup::options::SessionArgs { proxy, ..args })
            }
        }
    };
}
pub(crate) use with_session_options;

with_session_options! {
    /// The session options alone: the options `ftpd` and
    /// `aftpd-supervisor` share.
    #[derive(argh::FromArgs, argh::ArgsInfo, Debug)]
    #[argh(help_triggers("-h", "--help"))]
    pub struct SessionOptions {}
}

impl SessionOptions {
    /// The names of the session options, `--timeout` and so on.
    pub fn names() -> Vec<&'static str> {
        use argh::ArgsInfo;
        SessionOptions::get_args_info()
            .flags
            .iter()
            .map(|f| f.long)
            .filter(|&l| l != "--help")
            .collect()
    }
}

/// The longest timeout: a year keeps deadlines far from the end of the
/// clock (adding a huge timeout to the time would overflow).
const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// Reads a whole number of seconds, `min` to a year.
pub fn seconds(text: &str, min: u64) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(n) if (min..=MAX_SECONDS).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "want whole seconds, {min} to {MAX_SECONDS} (a year)"
        )),
    }
}

/// A timeout that must be at least a second.
pub fn timeout(text: &str) -> Result<Duration, String> {
    seconds(text, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::cli::{self, Parsed};

    /// Reads `args` as nothing but session options.
    fn session(args: &[&str]) -> Result<SessionArgs, String> {
        match cli::parse::<SessionOptions>("t", args) {
            Ok(Parsed::Run(o)) => o.session().map_err(|f| f.message),
            Ok(Parsed::Help(_)) => panic!("{args:?}: help"),
            Err(f) => Err(f.message),
        }
    }

    fn error(args: &[&str]) -> String {
        match session(args) {
            Ok(s) => panic!("{args:?} parsed: {s:?}"),
            Err(e) => e,
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
        assert_eq!(s.proxy, None);
        assert_eq!(s.messages, MessagePaths::default());
        assert!(!s.config.dir_messages);
        assert!(!s.config.vhosts);
        assert_eq!(s.max_rate, None);
    }

    #[test]
    fn proxy_options_go_together() {
        let s = session(&[
            "--proxy-protocol",
            "--proxy-from",
            "10.0.0.0/24",
            "--proxy-from",
            "::1",
        ])
        .unwrap();
        let p = s.proxy.unwrap();
        assert_eq!(p.from.len(), 2);
        assert!(p.trusts("10.0.0.9".parse().unwrap()));
        assert!(p.trusts("::1".parse().unwrap()));
        assert!(!p.trusts("10.0.1.9".parse().unwrap()));
        let e = error(&["--proxy-protocol"]);
        assert!(e.contains("--proxy-protocol needs --proxy-from"), "{e}");
        let e = error(&["--proxy-from", "10.0.0.1"]);
        assert!(e.contains("--proxy-from is for --proxy-protocol"), "{e}");
        let e = error(&["--proxy-protocol", "--proxy-from", "10.0.0.0/40"]);
        assert!(e.contains("'--proxy-from' with value '10.0.0.0/40'"), "{e}");
    }

    #[test]
    fn every_session_option() {
        let s = session(&[
            "--timeout",
            "90",
            "--data-timeout",
            "7",
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
            "--banner",
            "/etc/aftpd/banner",
            "--welcome",
            "/etc/aftpd/welcome",
            "--dir-messages",
            "--vhosts",
            "--max-rate",
            "512K",
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
        assert_eq!(s.messages.banner, Some(PathBuf::from("/etc/aftpd/banner")));
        assert_eq!(
            s.messages.welcome,
            Some(PathBuf::from("/etc/aftpd/welcome"))
        );
        assert!(s.config.dir_messages);
        assert!(s.config.vhosts);
        assert_eq!(s.max_rate.map(Rate::get), Some(512 * 1024));
    }

    #[test]
    fn pasv_address_repeats_in_order() {
        let s = session(&[
            "--pasv-address",
            "10.0.0.0/8=192.0.2.1",
            "--pasv-address",
            "192.0.2.2",
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
        for (opt, v) in [
            ("--timeout", "5"),
            ("--data-timeout", "5"),
            ("--list-format", "ls"),
            ("--pasv-ports", "2000-3000"),
            ("--xferlog", "5"),
            ("--banner", "b"),
            ("--welcome", "w"),
            ("--max-rate", "1M"),
        ] {
            let e = error(&[opt, v, opt, v]);
            assert!(e.contains(&format!("'{opt}'")), "{e}");
            assert!(e.contains("duplicate"), "{e}");
        }
    }

    #[test]
    fn bad_session_values_name_the_option() {
        for (args, want) in [
            (
                &["--timeout", "0"][..],
                "option '--timeout' with value '0': want whole seconds",
            ),
            (&["--timeout", "x"], "'--timeout' with value 'x'"),
            (
                &["--data-timeout", "-1"],
                "'--data-timeout' with value '-1'",
            ),
            (&["--timeout", "18446744073709551615"], "'--timeout'"),
            (
                &["--list-format", "dos"],
                "'--list-format' with value 'dos': want ls or eplf",
            ),
            (
                &["--pasv-ports", "10-5"],
                "'--pasv-ports' with value '10-5': want LO-HI",
            ),
            (
                &["--pasv-address", "x"],
                "'--pasv-address' with value 'x': want ADDR",
            ),
            (&["--timeout"], "'--timeout'"),
            (&["--xferlog"], "'--xferlog'"),
            (
                &["--max-rate", "1"],
                "'--max-rate' with value '1': want bytes per second",
            ),
            (&["--max-rate", "5X"], "'--max-rate' with value '5X'"),
            // `--opt=value` is not a form argh reads: an unknown option.
            (&["--timeout=5"], "--timeout=5"),
            (&["--syslog=yes"], "--syslog=yes"),
        ] {
            let e = error(args);
            assert!(e.contains(want), "{args:?}: {e:?}");
            assert_eq!(e.lines().count(), 1, "{e:?}");
        }
    }

    #[test]
    fn names_are_the_options_of_the_readme() {
        assert_eq!(
            SessionOptions::names(),
            [
                "--timeout",
                "--data-timeout",
                "--list-format",
                "--no-greeting",
                "--syslog",
                "--pasv-ports",
                "--pasv-address",
                "--xferlog",
                "--no-sandbox",
                "--banner",
                "--welcome",
                "--dir-messages",
                "--vhosts",
                "--proxy-protocol",
                "--proxy-from",
                "--tls-cert",
                "--tls-key",
                "--tls",
                "--max-rate",
            ]
        );
    }

    #[test]
    fn tls_options() {
        let s = session(&[]).unwrap();
        assert_eq!(s.config.tls, TlsPolicy::Off);
        assert_eq!(s.tls, None);
        let s = session(&["--tls-cert", "/c.pem"]).unwrap();
        assert_eq!(s.config.tls, TlsPolicy::Optional);
        assert_eq!(
            s.tls,
            Some(TlsFiles {
                cert: "/c.pem".into(),
                key: "/c.pem".into()
            })
        );
        let s = session(&["--tls-cert", "/c", "--tls-key", "/k", "--tls", "required"]).unwrap();
        assert_eq!(s.config.tls, TlsPolicy::Required);
        assert_eq!(s.tls.unwrap().key, PathBuf::from("/k"));
        let s = session(&["--tls", "implicit", "--tls-cert", "/c"]).unwrap();
        assert_eq!(s.config.tls, TlsPolicy::Implicit);
        let s = session(&["--tls", "off", "--tls-cert", "/c"]).unwrap();
        assert_eq!(s.config.tls, TlsPolicy::Off);
        assert_eq!(s.tls, None);
        assert_eq!(
            session(&["--tls", "off"]).unwrap().config.tls,
            TlsPolicy::Off
        );
        assert!(error(&["--tls", "required"]).contains("--tls-cert"));
        assert!(error(&["--tls-key", "/k"]).contains("--tls-cert"));
        assert!(error(&["--tls", "yes", "--tls-cert", "/c"]).contains("want off, optional"));
    }

    #[test]
    fn timeouts() {
        assert_eq!(seconds("1", 1), Ok(Duration::from_secs(1)));
        assert_eq!(seconds("0", 0), Ok(Duration::ZERO));
        assert!(seconds("0", 1).is_err());
        assert!(seconds("-1", 0).is_err());
        assert!(seconds("31536001", 1).is_err());
        assert!(seconds("18446744073709551615", 1).is_err());
        assert!(seconds("", 1).is_err());
    }
}
