//! aftpd-status's command line.

use std::path::PathBuf;

use crate::setup::Fail;
use crate::setup::cli::{self, Help, Parsed};

/// Where the supervisor's control socket is when neither `--control`
/// nor `--dir` is given.
pub const DEFAULT_CONTROL: &str = "/run/aftpd/control";

/// aftpd-status's command line, as argh reads it.
#[derive(argh::FromArgs, argh::ArgsInfo, Debug)]
#[argh(help_triggers("-h", "--help"))]
pub struct Options {
    /// ask the aftpd-supervisor whose --control socket is PATH (default
    /// /run/aftpd/control, unless --dir is given)
    #[argh(option, arg_name = "PATH")]
    pub control: Option<PathBuf>,
    /// read the status files of the ftpd sessions started with
    /// --status-dir DIR
    #[argh(option, arg_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// print each session's line as the server wrote it (key=value
    /// fields), for scripts
    #[argh(switch)]
    pub raw: bool,
}

/// What to ask and how to show it.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    pub control: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub raw: bool,
}

impl TryFrom<Options> for Args {
    type Error = Fail;

    fn try_from(o: Options) -> Result<Args, Fail> {
        let control = match (&o.control, &o.dir) {
            (None, None) => Some(PathBuf::from(DEFAULT_CONTROL)),
            _ => o.control,
        };
        Ok(Args {
            control,
            dir: o.dir,
            raw: o.raw,
        })
    }
}

/// Reads the process's command line.
pub fn from_env(name: &str) -> Result<Parsed<Args>, Fail> {
    cli::from_env::<Options, Args>(name, &HELP, Args::try_from)
}

pub const HELP: Help = Help {
    usage: "[--control PATH] [--dir DIR] [--raw]",
    about: "\
Show the FTP sessions open now: the client's address, when it connected
(UTC), how long it has been idle, its last command, and the transfer in
progress with its bytes so far and its average rate. It asks
aftpd-supervisor on its control socket, and reads the status files of ftpd
sessions; the first may be asked only by the user that started the
supervisor (the socket's mode is 0600).
",
    session_heading: None,
    tail: "
Exit status: 0 when the status was shown, 100 on a usage error, 111 when
the supervisor could not be asked (not running, no permission) or the
directory could not be read.

Examples:
  aftpd-status --control /run/aftpd/control
  aftpd-status --dir /run/aftpd/ftpd --raw",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Args {
        match cli::read::<Options, Args>("aftpd-status", args, Args::try_from) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn sources() {
        assert_eq!(run(&[]).control, Some(PathBuf::from(DEFAULT_CONTROL)));
        let a = run(&["--dir", "/d", "--raw"]);
        assert_eq!(
            (a.control, a.dir, a.raw),
            (None, Some(PathBuf::from("/d")), true)
        );
        let a = run(&["--control", "/c", "--dir", "/d"]);
        assert_eq!(a.control, Some(PathBuf::from("/c")));
        assert!(cli::read::<Options, Args>("s", &["x"], Args::try_from).is_err());
        let help = cli::render::<Options>("aftpd-status", &HELP);
        for line in help.lines() {
            assert!(line.len() < 80, "{line:?}");
        }
    }
}
