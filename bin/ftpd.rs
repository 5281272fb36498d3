//! ftpd: one anonymous, read-only FTP session on standard input and output.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use aftpd::clock::Now;
use aftpd::driver::{net, poll};
use aftpd::fs::Root;
use aftpd::log::Logger;
use aftpd::privs;
use aftpd::session::Session;
use aftpd::xferlog::Xferlog;

/// Temporary failure: the client may try again later (djb's convention).
const EXIT_TEMPORARY: u8 = 111;
/// Usage or configuration error: trying again will not help.
const EXIT_PERMANENT: u8 = 100;

aftpd::session_options! {
    // One literal: argh prints the description as it is, newlines and all.
    #[doc = "Serve one anonymous, read-only FTP session on standard input and output,\n\
             from the directory ROOT.\n\
             \n\
             A super-server starts one ftpd per client, with the control connection as\n\
             fds 0 and 1: tcpserver (ucspi-tcp), inetd or xinetd (nowait), systemd\n\
             (Accept=yes), s6 or runit. Only world-readable files and world-readable,\n\
             -searchable directories are served; names starting with a dot never are.\n\
             \n\
             Started as root, ftpd requires $UID and $GID (as envuidgid sets them): it\n\
             chroots into ROOT and becomes that user before reading a command. Started\n\
             as any other user, it still confines every lookup beneath ROOT (openat2,\n\
             Linux 5.6 or later). Logs go to standard error, one line per session start,\n\
             end and transfer, unless --syslog is given (or standard error is the\n\
             connection itself, as inetd sets it up: then syslog if there is one).\n\
             \n\
             Exit status: 0 when the session has ended, 100 on a usage or configuration\n\
             error (retrying will not help), 111 on a temporary failure (cannot open\n\
             ROOT, drop privileges, or do I/O).\n\
             \n\
             Example:\n\
             \x20 envuidgid ftp tcpserver -vRHl0 0 21 ftpd /srv/ftp"]
    pub struct Args {
        /// the directory to serve
        #[argh(positional, arg_name = "ROOT")]
        pub root: String,
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(code) => return ExitCode::from(code),
    };
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

/// argh's parsing with djb's exit codes: a usage error is permanent (100).
fn parse_args() -> Result<Args, u8> {
    let mut strings = Vec::new();
    for arg in std::env::args_os() {
        match arg.into_string() {
            Ok(s) => strings.push(s),
            Err(arg) => {
                eprintln!("ftpd: argument is not UTF-8: {}", arg.to_string_lossy());
                return Err(EXIT_PERMANENT);
            }
        }
    }
    let strs: Vec<&str> = strings.iter().map(String::as_str).collect();
    let (cmd, rest) = strs.split_first().unwrap_or((&"ftpd", &[]));
    let cmd = Path::new(cmd)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("ftpd");
    argh::FromArgs::from_args(&[cmd], rest).map_err(|exit| match exit.status {
        Ok(()) => {
            println!("{}", exit.output);
            0
        }
        Err(()) => {
            eprintln!("{}\nRun {cmd} --help for more information.", exit.output);
            EXIT_PERMANENT
        }
    })
}

/// Everything from the options to the end of the session; `Err` holds the
/// exit status, the reason already logged.
fn serve(args: &Args) -> Result<(), u8> {
    let config = args.session_config().map_err(|e| {
        eprintln!("ftpd: {e}");
        EXIT_PERMANENT
    })?;
    if let Err(e) = net::ignore_sigpipe() {
        eprintln!("ftpd: cannot ignore SIGPIPE: {e}");
        return Err(EXIT_TEMPORARY);
    }
    let mut logger = open_logger(args.syslog)?;
    if let Some(path) = &args.xferlog {
        // Before the chroot, which hides the log's directory.
        match Xferlog::open(path) {
            Ok(x) => logger.set_xferlog(x),
            Err(e) => {
                logger.error(&format!("cannot open the xferlog {e}"));
                return Err(EXIT_TEMPORARY);
            }
        }
    }
    let fail = |logger: &mut Logger, code: u8, msg: String| {
        logger.error(&msg);
        code
    };

    let root_path = Path::new(&args.root);
    let root = Root::open(root_path).map_err(|e| {
        fail(
            &mut logger,
            EXIT_TEMPORARY,
            format!("cannot open {}: {e}", args.root),
        )
    })?;

    // The super-server passes the control connection as fds 0 and 1.
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    let (control_in, control_out) = (stdin.as_fd(), stdout.as_fd());
    // Read once, before the chroot changes what the process can see.
    let ends = net::control_endpoints(control_in);
    net::set_control_options(control_in);

    drop_privileges(root_path, &mut logger)?;

    let session = Session::new(Arc::new(config), Arc::new(root), ends, Now::get());
    poll::run(session, control_in, control_out, &mut logger)
        .map_err(|e| fail(&mut logger, EXIT_TEMPORARY, format!("I/O failure: {e}")))
}

fn open_logger(syslog: bool) -> Result<Logger, u8> {
    if !syslog {
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
            logger.error(&format!("cannot drop privileges: {e}"));
            EXIT_TEMPORARY
        })?;
    }
    privs::no_new_privs().map_err(|e| {
        logger.error(&format!("cannot set no_new_privs: {e}"));
        EXIT_TEMPORARY
    })
}
