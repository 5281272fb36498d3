//! ftpd: one anonymous, read-only FTP session on standard input and output.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::args::{self, Arg, Lexer, UsageError};
use crate::config::{LogTo, SESSION_HELP, SYNTAX_HELP, Sandbox, SessionArgs};
use crate::core::clock::Now;
use crate::core::session::Session;
use crate::engine::{net, poll};
use crate::fs::Root;
use crate::log::Logger;
use crate::log::xferlog::Xferlog;
use crate::privs;
use crate::sandbox;

/// Temporary failure: the client may try again later (djb's convention).
const EXIT_TEMPORARY: u8 = 111;
/// Usage or configuration error: trying again will not help.
const EXIT_PERMANENT: u8 = 100;

/// The command line, read.
#[derive(Debug)]
struct Args {
    /// The options the supervisor takes too.
    session: SessionArgs,
    /// The directory to serve.
    root: PathBuf,
}

/// What the command line asks for.
#[derive(Debug)]
enum Parsed {
    Run(Args),
    /// `--help`: print this and exit 0.
    Help(String),
}

/// `--help`, before the options.
const HELP_HEAD: &str = "\
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

After dropping privileges ftpd enters a sandbox (unless --no-sandbox):
Landlock lets it read beneath ROOT and nothing else, where the kernel has
Landlock, and a seccomp filter allows only the system calls it needs.

Arguments:
  ROOT                    the directory to serve

Options:
";

/// The rest of `--help`, after the options.
const HELP_TAIL: &str = "
Exit status: 0 when the session has ended, 100 on a usage or configuration
error (retrying will not help), 111 on a temporary failure (cannot open
ROOT, drop privileges, or do I/O).

Example:
  envuidgid ftp tcpserver -vRHl0 0 21 ftpd /srv/ftp";

/// The whole `--help` text, for the program called `name`.
fn help(name: &str) -> String {
    format!(
        "Usage: {name} [OPTIONS] [--] ROOT\n\n{HELP_HEAD}{SESSION_HELP}\
         \x20 -h, --help              print this help and exit\n\n{SYNTAX_HELP}{HELP_TAIL}"
    )
}

pub fn main() -> ExitCode {
    let (name, lx) = Lexer::from_env("ftpd");
    let args = match parse(&name, lx) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // djb's exit codes: a usage error is permanent.
            eprintln!("{name}: {e}\nTry '{name} --help' for more information.");
            return ExitCode::from(EXIT_PERMANENT);
        }
    };
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

/// Reads the command line: options anywhere, exactly one ROOT.
fn parse(name: &str, mut lx: Lexer) -> Result<Parsed, UsageError> {
    let mut session = SessionArgs::default();
    let mut root: Option<PathBuf> = None;
    while let Some(arg) = lx.next_arg()? {
        match arg {
            Arg::Positional(p) if root.is_none() => root = Some(p.into()),
            Arg::Positional(p) => return Err(args::unexpected(&p)),
            Arg::Short(s) if s == "h" => return Ok(Parsed::Help(help(name))),
            Arg::Long(opt) if opt == "help" => {
                lx.no_value()?;
                return Ok(Parsed::Help(help(name)));
            }
            Arg::Long(opt) if session.take(&opt, &mut lx)? => {}
            Arg::Short(_) | Arg::Long(_) => return Err(lx.unknown()),
        }
    }
    let root = root.ok_or_else(|| UsageError("missing ROOT, the directory to serve".into()))?;
    Ok(Parsed::Run(Args { session, root }))
}

/// Everything from the options to the end of the session; `Err` holds the
/// exit status, the reason already logged.
fn serve(args: Args) -> Result<(), u8> {
    let config = args.session.config;
    if let Err(e) = net::ignore_sigpipe() {
        eprintln!("ftpd: cannot ignore SIGPIPE: {e}");
        return Err(EXIT_TEMPORARY);
    }
    let mut logger = open_logger(args.session.log)?;
    logger.catch_panics();
    if let Some(path) = &args.session.xferlog {
        // Before the chroot, which hides the log's directory.
        match Xferlog::open(path) {
            Ok(x) => logger.set_xferlog(x),
            Err(e) => {
                logger.error(format!("cannot open the xferlog {e}"));
                return Err(EXIT_TEMPORARY);
            }
        }
    }
    let fail = |logger: &mut Logger, code: u8, msg: String| {
        logger.error(&msg);
        code
    };

    let root_path = args.root.as_path();
    let root = Root::open(root_path).map_err(|e| {
        fail(
            &mut logger,
            EXIT_TEMPORARY,
            format!("cannot open {}: {e}", root_path.display()),
        )
    })?;

    // The super-server passes the control connection as fds 0 and 1.
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    let (control_in, control_out) = (stdin.as_fd(), stdout.as_fd());
    // Read once, before the chroot changes what the process can see.
    let ends = net::control_endpoints(control_in);
    net::set_control_options(control_in);

    drop_privileges(root_path, &mut logger)?;
    if args.session.sandbox == Sandbox::Enter {
        enter_sandbox(&root, &mut logger)?;
    }
    // Sandboxed: a log writer thread, if one is needed, is confined too.
    logger.start_writers();

    let session = Session::new(Arc::new(config), Arc::new(root), ends, Now::get());
    poll::run(session, control_in, control_out, &mut logger)
        .map_err(|e| fail(&mut logger, EXIT_TEMPORARY, format!("I/O failure: {e}")))
}

fn open_logger(to: LogTo) -> Result<Logger, u8> {
    if to == LogTo::Stderr {
        if !stderr_is_control() {
            return Ok(Logger::stderr("ftpd"));
        }
        // inetd and xinetd pass the connection as fd 2 too: a log line
        // there would reach the client. Syslog then, if there is one.
        return Ok(Logger::syslog("ftpd").unwrap_or_else(|_| Logger::discard()));
    }
    Logger::syslog("ftpd").map_err(|e| {
        eprintln!("ftpd: cannot log to syslog: {e}");
        EXIT_TEMPORARY
    })
}

/// Whether standard error is the control connection itself (the same
/// socket as standard input), as inetd and xinetd set it up.
fn stderr_is_control() -> bool {
    let (Ok(err), Ok(inp)) = (
        rustix::fs::fstat(std::io::stderr()),
        rustix::fs::fstat(std::io::stdin()),
    ) else {
        return false;
    };
    let socket = rustix::fs::FileType::from_raw_mode(err.st_mode) == rustix::fs::FileType::Socket;
    socket && (err.st_dev, err.st_ino) == (inp.st_dev, inp.st_ino)
}

/// Landlock (read beneath the root, nothing else) and the poll driver's
/// seccomp allow-list, from here to the end of the session. Said in the
/// log only when the kernel cannot enforce all of it.
fn enter_sandbox(root: &Root, logger: &mut Logger) -> Result<(), u8> {
    match sandbox::enter(sandbox::Profile::Poll, root.fd(), None) {
        Ok(report) if report.is_complete() => Ok(()),
        Ok(report) => {
            logger.info(format!("sandbox incomplete: {report}"));
            Ok(())
        }
        Err(e) => {
            logger.error(format!("cannot enter the sandbox: {e}"));
            Err(EXIT_TEMPORARY)
        }
    }
}

/// As root: chroot into the root and become $UID/$GID. As anyone else:
/// nothing to drop (openat2 confines lookups). Either way, no exec can
/// gain privileges afterwards.
fn drop_privileges(root_path: &Path, logger: &mut Logger) -> Result<(), u8> {
    if privs::is_root() {
        let ids = privs::from_env().map_err(|e| {
            logger.error(&e);
            EXIT_PERMANENT
        })?;
        let Some((uid, gid)) = ids else {
            logger.error("refusing to run as root without $UID and $GID (use envuidgid)");
            return Err(EXIT_PERMANENT);
        };
        if uid == 0 {
            logger.error("refusing to run as root: $UID is 0");
            return Err(EXIT_PERMANENT);
        }
        privs::drop_to(root_path, uid, gid).map_err(|e| {
            logger.error(format!("cannot drop privileges: {e}"));
            EXIT_TEMPORARY
        })?;
    }
    privs::no_new_privs().map_err(|e| {
        logger.error(format!("cannot set no_new_privs: {e}"));
        EXIT_TEMPORARY
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Parsed, UsageError> {
        parse("ftpd", Lexer::new(args.iter().copied()))
    }

    fn run(args: &[&str]) -> Args {
        match parsed(args) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn usage(args: &[&str]) -> String {
        match parsed(args) {
            Err(e) => e.0,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn root_and_options_in_any_order() {
        let a = run(&["/srv/ftp"]);
        assert_eq!(a.root, PathBuf::from("/srv/ftp"));
        assert!(a.session.config.greeting);
        let a = run(&["--no-greeting", "/srv/ftp", "--timeout=5", "--syslog"]);
        assert_eq!(a.root, PathBuf::from("/srv/ftp"));
        assert!(!a.session.config.greeting);
        assert_eq!(
            a.session.config.idle_timeout,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(a.session.log, LogTo::Syslog);
    }

    #[test]
    fn double_dash_and_dash() {
        assert_eq!(run(&["--", "-x"]).root, PathBuf::from("-x"));
        assert_eq!(run(&["--", "--help"]).root, PathBuf::from("--help"));
        assert_eq!(run(&["-"]).root, PathBuf::from("-"));
        // A directory called "help" is a ROOT like any other.
        assert_eq!(run(&["help"]).root, PathBuf::from("help"));
    }

    #[test]
    fn root_is_required_once() {
        assert_eq!(usage(&[]), "missing ROOT, the directory to serve");
        assert_eq!(usage(&["--syslog"]), "missing ROOT, the directory to serve");
        assert!(usage(&["/a", "/b"]).starts_with("unexpected argument \"/b\""));
        assert!(usage(&["/a", "--", "/b"]).starts_with("unexpected argument \"/b\""));
    }

    #[test]
    fn usage_errors_name_the_option() {
        assert_eq!(usage(&["--bogus", "/srv"]), "unknown option --bogus");
        assert_eq!(usage(&["-v", "/srv"]), "unknown option -v");
        // The supervisor's own options are not ftpd's.
        assert_eq!(usage(&["--listen", "x", "/srv"]), "unknown option --listen");
        assert_eq!(usage(&["/srv", "--timeout"]), "--timeout needs a value");
        assert!(usage(&["--timeout", "0", "/srv"]).starts_with("bad --timeout \"0\""));
    }

    #[test]
    fn help() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["/srv", "-h"],
            &["--help", "--bogus"],
        ] {
            let Ok(Parsed::Help(text)) = parsed(args) else {
                panic!("{args:?}: no help");
            };
            assert!(
                text.starts_with("Usage: ftpd [OPTIONS] [--] ROOT\n"),
                "{text}"
            );
            assert!(text.contains("--pasv-address [NET/PREFIX=]ADDR"), "{text}");
            assert!(text.contains("Exit status"), "{text}");
            assert!(!text.contains("--listen"), "{text}");
            for line in text.lines() {
                assert!(line.len() < 80, "{line:?}");
            }
        }
        assert_eq!(usage(&["--help=yes"]), "--help takes no value");
    }
}
