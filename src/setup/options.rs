//! The session options, declared once for both programs: the
//! `with_session_options!` macro adds them, with their help, their value
//! checks and the [`SessionArgs`] they make, to each program's `argh`
//! command line (argh has no way to flatten one struct into another).
//! [`SessionOptions`] is a command line of only these, for the help's
//! grouping and for tests.

use std::path::PathBuf;
use std::time::Duration;

use crate::core::config::{PasvRule, SessionConfig, TlsPolicy, Uploads};
use crate::core::listing::ListFormat;
use crate::core::net::Net;
use crate::core::proxy::ProxyPolicy;
use crate::core::rate::Rate;
use crate::core::vpath::VPath;
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
    /// `--incoming` and the options that go with it.
    pub uploads: Option<UploadArgs>,
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

/// Where the drop boxes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropBoxes {
    /// `--incoming DIR`, beneath the root.
    One(VPath),
    /// `--vhosts --host-incoming`: each host's, named by its `.incoming`
    /// (`fs::incoming::hosts`), found at start.
    PerHost,
}

/// The drop boxes: what the filesystem layer and the upload hook need
/// (the session's part is `SessionConfig::uploads`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadArgs {
    pub boxes: DropBoxes,
    /// `--max-upload SIZE`: the most one upload may store.
    pub max_size: u64,
    /// `--min-free SIZE`: bytes an upload must leave free.
    pub min_free: u64,
    /// `--upload-mode MODE`: the permission bits of stored files.
    pub mode: u32,
    /// `--upload-hook PROG`.
    pub hook: Option<PathBuf>,
    /// `--upload-hook-max N`: hooks running at once.
    pub hook_max: usize,
}

/// Defaults of the upload options.
pub const MAX_UPLOAD: u64 = 1 << 30;
pub const MIN_FREE: u64 = 1 << 30;
pub const UPLOAD_MODE: u32 = 0o600;
pub const HOOK_MAX: usize = 4;

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
    pub incoming: Option<VPath>,
    pub host_incoming: bool,
    pub max_upload: Option<u64>,
    pub min_free: Option<u64>,
    pub upload_mode: Option<u32>,
    pub upload_hook: Option<PathBuf>,
    pub upload_hook_max: Option<usize>,
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
        if g.vhosts && g.incoming.is_some() {
            // Each host has its own tree: one drop box for all of them
            // would be a directory of none.
            return Err(Fail::usage(
                "--incoming cannot be used with --vhosts: each host names its drop box \
                 in ROOT/NAME/.incoming, taken with --host-incoming",
            ));
        }
        if g.host_incoming && !g.vhosts {
            return Err(Fail::usage(
                "--host-incoming needs --vhosts (without it, --incoming DIR)",
            ));
        }
        let boxes = match (&g.incoming, g.host_incoming) {
            (Some(dir), _) => Some(DropBoxes::One(dir.clone())),
            (None, true) => Some(DropBoxes::PerHost),
            (None, false) => None,
        };
        let max_size = g.max_upload.unwrap_or(MAX_UPLOAD);
        let uploads = match boxes {
            Some(boxes) => Some(UploadArgs {
                boxes,
                max_size,
                min_free: g.min_free.unwrap_or(MIN_FREE),
                mode: g.upload_mode.unwrap_or(UPLOAD_MODE),
                hook: g.upload_hook.clone(),
                hook_max: g.upload_hook_max.unwrap_or(HOOK_MAX),
            }),
            None => {
                // An upload option alone is a mistake: say so rather than
                // serve read-only while the operator expects uploads.
                let alone = [
                    ("--max-upload", g.max_upload.is_some()),
                    ("--min-free", g.min_free.is_some()),
                    ("--upload-mode", g.upload_mode.is_some()),
                    ("--upload-hook", g.upload_hook.is_some()),
                    ("--upload-hook-max", g.upload_hook_max.is_some()),
                ];
                if let Some((name, _)) = alone.iter().find(|(_, given)| *given) {
                    return Err(Fail::usage(format!(
                        "{name} needs --incoming (or --vhosts --host-incoming)"
                    )));
                }
                None
            }
        };
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
                // Per host, each host's (the program finds them).
                uploads: g.incoming.map(|incoming| Uploads { incoming, max_size }),
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
            uploads,
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
        let d = SessionConfig::default();
        SessionArgs {
            config: d,
            log: LogTo::Stderr,
            xferlog: None,
            sandbox: Sandbox::Enter,
            uploads: None,
            tls: None,
            messages: MessagePaths::default(),
            proxy: None,
            max_rate: None,
        }
    }
}

/// Parses `--upload-mode`: octal permission bits, at most 0777 (no
/// set-id or sticky bits); the error says what was wanted.
pub fn upload_mode(text: &str) -> Result<u32, String> {
    let bad = || "want octal permission bits, 0 to 0777, e.g. 0640".to_owned();
    if text.is_empty() || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    match u32::from_str_radix(text, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(bad()),
    }
}

/// Parses `--upload-hook-max`: 1 to 64 hooks at once.
pub fn hook_max(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err("want 1 to 64".to_owned()),
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
            /// hold a .banner, a .welcome and an .incoming (see
            /// --host-incoming)
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
                from_str_fn($crate::core::net::Net::parse)
            )]
            pub proxy_from: Vec<$crate::core::net::Net>,
            /// take anonymous uploads (STOR, STOU) into DIR, a directory
            /// beneath ROOT given relative to it, and the directories made
            /// beneath it; what is uploaded is neither listed nor served
            /// (default: no uploads, every write refused)
            #[argh(
                option,
                arg_name = "DIR",
                from_str_fn($crate::core::config::parse_incoming)
            )]
            pub incoming: Option<$crate::core::vpath::VPath>,
            /// with --vhosts: take anonymous uploads into each host's drop
            /// box, the directory its ROOT/NAME/.incoming names in its
            /// tree (read at start; a host without one takes none)
            #[argh(switch)]
            pub host_incoming: bool,
            /// the largest upload, in bytes or with K, M or G (default 1G)
            #[argh(
                option,
                arg_name = "SIZE",
                from_str_fn($crate::core::config::parse_size)
            )]
            pub max_upload: Option<u64>,
            /// refuse (452) an upload that would leave less than SIZE free
            /// on the incoming directory's filesystem (default 1G)
            #[argh(
                option,
                arg_name = "SIZE",
                from_str_fn($crate::core::config::parse_size)
            )]
            pub min_free: Option<u64>,
            /// permission bits of stored uploads, in octal (default 0600)
            #[argh(
                option,
                arg_name = "MODE",
                from_str_fn($crate::setup::options::upload_mode)
            )]
            pub upload_mode: Option<u32>,
            /// run PROG for each stored upload, with its path relative to
            /// ROOT as argument and AFTPD_PEER, AFTPD_SIZE, AFTPD_NAME set,
            /// as the server's user, outside the sandbox
            #[argh(option, arg_name = "PROG")]
            pub upload_hook: Option<std::path::PathBuf>,
            /// most upload hooks running at once, more wait (default 4)
            #[argh(
                option,
                arg_name = "N",
                from_str_fn($crate::setup::options::hook_max)
            )]
            pub upload_hook_max: Option<usize>,
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
            /// most bytes per second of each data transfer (download,
            /// listing or upload), K, M or G for 1024, 1024², 1024³: 512K,
            /// 10M (default: no limit)
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
                    incoming: self.incoming.clone(),
                    host_incoming: self.host_incoming,
                    max_upload: self.max_upload,
                    min_free: self.min_free,
                    upload_mode: self.upload_mode,
                    upload_hook: self.upload_hook.clone(),
                    upload_hook_max: self.upload_hook_max,
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
                "--incoming",
                "--host-incoming",
                "--max-upload",
                "--min-free",
                "--upload-mode",
                "--upload-hook",
                "--upload-hook-max",
                "--tls-cert",
                "--tls-key",
                "--tls",
                "--max-rate",
            ]
        );
    }

    #[test]
    fn upload_options() {
        let s = session(&[]).unwrap();
        assert_eq!(s.uploads, None);
        assert_eq!(s.config.uploads, None);
        let s = session(&["--incoming", "pub/incoming"]).unwrap();
        let u = s.uploads.unwrap();
        let dir = crate::core::config::parse_incoming("pub/incoming").unwrap();
        assert_eq!(u.boxes, DropBoxes::One(dir));
        assert_eq!((u.min_free, u.mode, u.hook_max), (1 << 30, 0o600, 4));
        assert_eq!(u.hook, None);
        let c = s.config.uploads.unwrap();
        assert_eq!(
            (c.incoming.as_bytes(), c.max_size),
            (&b"/pub/incoming"[..], 1 << 30)
        );
        let s = session(&[
            "--incoming",
            "in",
            "--max-upload",
            "5M",
            "--min-free",
            "0",
            "--upload-mode",
            "0640",
            "--upload-hook",
            "/usr/local/bin/scan",
            "--upload-hook-max",
            "2",
        ])
        .unwrap();
        let u = s.uploads.unwrap();
        assert_eq!((u.min_free, u.mode, u.hook_max), (0, 0o640, 2));
        assert_eq!(u.hook, Some(PathBuf::from("/usr/local/bin/scan")));
        assert_eq!(s.config.uploads.unwrap().max_size, 5 << 20);
        // Per host: the boxes are found at start, the session's uploads
        // with them.
        let s = session(&["--vhosts", "--host-incoming", "--max-upload", "2M"]).unwrap();
        let u = s.uploads.unwrap();
        assert_eq!((u.boxes, u.max_size), (DropBoxes::PerHost, 2 << 20));
        assert_eq!(s.config.uploads, None);
        for (args, want) in [
            (&["--max-upload", "1M"][..], "--max-upload needs --incoming"),
            (
                &["--incoming", "in", "--vhosts"],
                "--incoming cannot be used with --vhosts",
            ),
            (
                &["--upload-hook", "/bin/true"],
                "--upload-hook needs --incoming",
            ),
            (&["--host-incoming"], "--host-incoming needs --vhosts"),
            (
                &["--host-incoming", "--vhosts", "--incoming", "in"],
                "ROOT/NAME/.incoming",
            ),
            (&["--incoming", "."], "'--incoming' with value '.'"),
            (&["--incoming", "a/.b"], "'--incoming'"),
            (
                &["--incoming", "a", "--upload-mode", "4755"],
                "'--upload-mode'",
            ),
            (
                &["--incoming", "a", "--upload-mode", "rw"],
                "'--upload-mode'",
            ),
            (&["--incoming", "a", "--max-upload", "1T"], "'--max-upload'"),
            (
                &["--incoming", "a", "--upload-hook-max", "0"],
                "'--upload-hook-max'",
            ),
        ] {
            let e = error(args);
            assert!(e.contains(want), "{args:?}: {e:?}");
        }
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
