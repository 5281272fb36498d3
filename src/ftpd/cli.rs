//! ftpd's command line: the session options (declared once, in
//! [`crate::setup::options`]) and exactly one ROOT.

use std::path::PathBuf;

use crate::setup::Fail;
use crate::setup::cli::{self, Help, Parsed};
use crate::setup::options::{SessionArgs, with_session_options};

with_session_options! {
    /// ftpd's command line, as argh reads it.
    #[derive(argh::FromArgs, argh::ArgsInfo, Debug)]
    #[argh(help_triggers("-h", "--help"))]
    pub struct Options {
        /// the directory to serve
        #[argh(positional, arg_name = "ROOT")]
        pub root: Vec<String>,
        /// keep this session's status in a file of DIR, for aftpd-status
        /// to show; the file is claimed before the chroot (default: none)
        #[argh(option, arg_name = "DIR")]
        pub status_dir: Option<PathBuf>,
    }
}

/// The command line, read and checked.
#[derive(Debug)]
pub struct Args {
    /// The options the supervisor takes too.
    pub session: SessionArgs,
    /// The directory to serve.
    pub root: PathBuf,
    /// `--status-dir DIR`.
    pub status_dir: Option<PathBuf>,
}

impl TryFrom<Options> for Args {
    type Error = Fail;

    fn try_from(o: Options) -> Result<Args, Fail> {
        let root = cli::one_root(&o.root, true)?.unwrap_or_default().into();
        Ok(Args {
            session: o.session()?,
            root,
            status_dir: o.status_dir,
        })
    }
}

/// Reads the process's command line.
pub fn from_env(name: &str) -> Result<Parsed<Args>, Fail> {
    cli::from_env::<Options, Args>(name, &HELP, Args::try_from)
}

pub const HELP: Help = Help {
    usage: "[OPTIONS] [--] ROOT",
    about: "\
Serve one anonymous, read-only FTP session on standard input and output,
from the directory ROOT.

A super-server starts one ftpd per client, with the control connection as
fds 0 and 1: tcpserver (ucspi-tcp), inetd or xinetd (nowait), systemd
(Accept=yes), s6 or runit. Only world-readable files and world-readable,
-searchable directories are served; names starting with a dot never are.

Started as root, ftpd requires $UID and $GID (as envuidgid sets them): it
chroots into ROOT and becomes that user before reading a command. Started
as any other user, it still confines every lookup beneath ROOT (openat2,
Linux 5.6 or later). Logs go to standard error, one line per session start,
end and transfer, unless --syslog is given (or standard error is the
connection itself, as inetd sets it up: then syslog if there is one).
Descriptors other than 0, 1 and 2 that it inherits are closed at start.

After dropping privileges ftpd enters a sandbox (unless --no-sandbox):
Landlock lets it read beneath ROOT and nothing else, where the kernel has
Landlock, and a seccomp filter allows only the system calls it needs.

With --incoming DIR, clients may also upload (STOR, STOU) into DIR, a
write-only drop box: never replacing a file, stored only once complete
and durable, neither listed nor served until an operator moves it out.
The sandbox then lets ftpd write files there, and nowhere else. With
--vhosts, --host-incoming gives each host the drop box its ROOT/NAME/.incoming
names (a path in its tree; a host without one takes no uploads), read at
start: a wrong one is exit 100.

With --status-dir DIR the session claims a file of DIR (a POSIX lock,
before the chroot) and keeps its status line there for aftpd-status.
",
    session_heading: None,
    tail: "
An option's value is the next argument: --timeout 90. Options may come
before or after ROOT; '--' ends them (for a ROOT that starts with '-').
Options with a value may be given once, except those marked repeatable.

Exit status: 0 when the session has ended, 100 on a usage or configuration
error (retrying will not help), 111 on a temporary failure (cannot open
ROOT, drop privileges, or do I/O).

Example:
  envuidgid ftp tcpserver -vRHl0 0 21 ftpd /srv/ftp",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::Exit;
    use crate::setup::options::LogTo;
    use std::time::Duration;

    fn parsed(args: &[&str]) -> Result<Parsed<Args>, Fail> {
        cli::read::<Options, Args>("ftpd", args, Args::try_from)
    }

    fn run(args: &[&str]) -> Args {
        match parsed(args) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn usage(args: &[&str]) -> String {
        match parsed(args) {
            Err(f) if f.exit == Exit::Usage => {
                assert_eq!(f.message.lines().count(), 1, "{f}");
                assert!(f.message.ends_with(" (try 'ftpd --help')"), "{f}");
                f.message
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn root_and_options_in_any_order() {
        let a = run(&["/srv/ftp"]);
        assert_eq!(a.root, PathBuf::from("/srv/ftp"));
        assert!(a.session.config.greeting);
        let a = run(&["--no-greeting", "/srv/ftp", "--timeout", "5", "--syslog"]);
        assert_eq!(a.root, PathBuf::from("/srv/ftp"));
        assert!(!a.session.config.greeting);
        assert_eq!(a.session.config.idle_timeout, Duration::from_secs(5));
        assert_eq!(a.session.log, LogTo::Syslog);
    }

    #[test]
    fn double_dash_ends_the_options() {
        assert_eq!(run(&["--", "-x"]).root, PathBuf::from("-x"));
        assert_eq!(run(&["--", "--help"]).root, PathBuf::from("--help"));
        assert_eq!(run(&["--", "-"]).root, PathBuf::from("-"));
        // A directory called "help" is a ROOT like any other.
        assert_eq!(run(&["help"]).root, PathBuf::from("help"));
        // An option's value is the next argument, whatever it looks like.
        assert_eq!(
            run(&["--xferlog", "--help", "/srv"]).session.xferlog,
            Some(PathBuf::from("--help"))
        );
    }

    #[test]
    fn root_is_required_once() {
        assert!(usage(&[]).starts_with("missing ROOT, the directory to serve"));
        assert!(usage(&["--syslog"]).starts_with("missing ROOT"));
        assert!(usage(&["/a", "/b"]).starts_with("unexpected argument \"/b\""));
        assert!(usage(&["/a", "--", "/b"]).starts_with("unexpected argument \"/b\""));
    }

    #[test]
    fn usage_errors_name_the_option() {
        assert!(usage(&["--bogus", "/srv"]).contains("--bogus"));
        assert!(usage(&["-v", "/srv"]).contains("-v"));
        // The supervisor's own options are not ftpd's.
        assert!(usage(&["--listen", "x", "/srv"]).contains("--listen"));
        assert!(usage(&["/srv", "--timeout"]).contains("'--timeout'"));
        assert!(usage(&["--timeout", "0", "/srv"]).contains("'--timeout' with value '0'"));
        assert!(usage(&["--timeout=5", "/srv"]).contains("--timeout=5"));
        // `-` alone reads as an option to argh: `-- -` serves a ROOT `-`.
        assert!(usage(&["-"]).contains('-'));
    }

    #[test]
    fn help() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["/srv", "-h"],
            &["--help", "/srv"],
        ] {
            assert!(matches!(parsed(args), Ok(Parsed::Help(_))), "{args:?}");
        }
        // argh takes no option after the help.
        assert!(usage(&["--help", "--bogus"]).contains("help"));
        let text = cli::render::<Options>("ftpd", &HELP);
        assert!(
            text.starts_with("Usage: ftpd [OPTIONS] [--] ROOT\n"),
            "{text}"
        );
        for want in [
            "\n  ROOT                    the directory to serve\n",
            "\n  --timeout SECS          close an idle control connection",
            "\n  --pasv-address [NET/PREFIX=]ADDR\n",
            "\n  -h, --help              print this help and exit\n",
            "Exit status",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert!(!text.contains("--listen"), "{text}");
        for line in text.lines() {
            assert!(line.len() < 80, "{line:?}");
        }
    }
}
