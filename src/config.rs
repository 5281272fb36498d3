//! Options. The session options are declared once, in [`SessionArgs`]
//! (parsing) and [`SESSION_HELP`] (their part of `--help`), and both
//! programs' command lines take them from there, so `ftpd` and
//! `aftpd-supervisor` cannot drift apart.

use std::path::PathBuf;

use crate::args::{self, Lexer, UsageError};
use crate::core::config::{PasvRule, SessionConfig, parse_list_format, parse_port_range};

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
    use crate::core::listing::ListFormat;
    use std::time::Duration;

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
}
