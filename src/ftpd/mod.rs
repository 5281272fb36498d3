//! ftpd: one anonymous, read-only FTP session on standard input and output.
//! [`cli`] reads the command line, [`start`] sets the process up (log,
//! privileges, sandbox), and [`main`] runs the session on the poll engine.

pub mod cli;
pub mod start;

use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::Arc;

use crate::core::clock::Now;
use crate::core::rate::RateLimits;
use crate::core::session::Session;
use crate::engine::{net, poll, proxy};
use crate::fs::Root;
use crate::log::Logger;
use crate::log::xferlog::Xferlog;
use crate::monitor::statusfile::StatusFile;
use crate::setup::cli::{Parsed, program_name};
use crate::setup::messages::MessageFiles;
use crate::setup::options::Sandbox;
use crate::setup::{self, Fail, fds, vhosts};

use self::cli::Args;

pub fn main() -> ExitCode {
    // First, before anything opens a file: of what was inherited, only the
    // connection (0, 1) and the log (2) are ftpd's.
    if let Err(e) = fds::close_from(3) {
        let f = Fail::temporary(format!("cannot close inherited descriptors: {e}"));
        return setup::report("ftpd", &f);
    }
    let name = program_name("ftpd");
    let args = match cli::from_env(&name) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(f) => return setup::report(&name, &f),
    };
    if let Err(e) = net::ignore_sigpipe() {
        let f = Fail::temporary(format!("cannot ignore SIGPIPE: {e}"));
        return setup::report(&name, &f);
    }
    let mut logger = match start::open_logger(args.session.log) {
        Ok(l) => l,
        Err(f) => return setup::report(&name, &f),
    };
    logger.catch_panics();
    // From here on the log says why ftpd stops: standard error may be the
    // client's connection (inetd).
    match serve(args, &mut logger) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            logger.error(&f.message);
            f.exit.into()
        }
    }
}

/// Everything from the open log to the end of the session.
fn serve(args: Args, logger: &mut Logger) -> Result<(), Fail> {
    if let Some(path) = &args.session.xferlog {
        // Before the chroot, which hides the log's directory.
        let x = Xferlog::open(path)
            .map_err(|e| Fail::temporary(format!("cannot open the xferlog {e}")))?;
        logger.set_xferlog(x);
    }
    // Before the chroot too: the paths may be outside ROOT.
    let config = MessageFiles::open(&args.session.messages)?.apply(args.session.config)?;
    let root_path = args.root.as_path();
    let root = Root::open(root_path)
        .map_err(|e| Fail::temporary(format!("cannot open {}: {e}", root_path.display())))?;
    let root = Arc::new(root);

    // The super-server passes the control connection as fds 0 and 1.
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    let (control_in, control_out) = (stdin.as_fd(), stdout.as_fd());
    // Read once, before the chroot changes what the process can see.
    let ends = net::control_endpoints(control_in);
    net::set_control_options(control_in);

    // The drop box, and its hook's helper (forked now: one thread, not
    // yet chrooted); with --host-incoming, the hosts' boxes with the trees.
    let hook = match &args.session.uploads {
        Some(uploads) => {
            let log_to = args.session.log;
            crate::setup::uploads::open(&root, root_path, uploads, start::whom()?, move || {
                start::open_logger(log_to).unwrap_or_else(|_| Logger::discard())
            })?
        }
        None => None,
    };
    let uploads = args.session.uploads.as_ref().map(|u| (u, hook));
    let trees = vhosts::trees(Arc::clone(&root), config.vhosts, root_path, uploads)?;
    // Sessions that send no HOST take ROOT/0's uploads, if it has a box.
    let mut config = config;
    if let Some(u) = trees.default_uploads() {
        config.uploads = Some(u);
    }
    // The key may be readable by root only: read before the drop.
    let tls = match &args.session.tls {
        Some(files) => Some(crate::setup::tls::load(files)?),
        None => None,
    };

    // Claimed before the chroot hides the directory; written through the
    // descriptor afterwards.
    let mut status = match &args.status_dir {
        Some(dir) => Some(
            StatusFile::claim(dir, std::process::id())
                .map_err(|e| Fail::temporary(format!("cannot claim a status file: {e}")))?,
        ),
        None => None,
    };

    // Read before the chroot hides /proc.
    net::ephemeral_ports();
    start::drop_privileges(root_path)?;
    if args.session.sandbox == Sandbox::Enter {
        let boxes = crate::setup::uploads::box_fds(&trees);
        start::enter_sandbox(&root, &boxes, logger)?;
    }
    // Sandboxed: a log writer thread, if one is needed, is confined too.
    logger.start_writers();

    // Behind a load balancer, the client's addresses come first, in a
    // PROXY header (read sandboxed: it is the first thing a peer says).
    let (ends, first) = match &args.session.proxy {
        None => (ends, Vec::new()),
        Some(policy) => {
            let timeout = policy.timeout(config.idle_timeout);
            let header = proxy::read_header(policy, ends, control_in, control_out, timeout, logger)
                .map_err(|e| Fail::temporary(format!("I/O failure: {e}")))?;
            match header {
                Some(client) => client,
                // A health check answered, or a connection refused (and
                // logged): no session.
                None => return Ok(()),
            }
        }
    };
    let now = Now::get();
    let rates = RateLimits::new(args.session.max_rate, None, None, now.mono);
    let mut session = Session::new(Arc::new(config), ends, now);
    if !first.is_empty() {
        session.on_control(&first, now);
    }
    poll::run(
        session,
        Arc::new(trees),
        ends.peer,
        control_in,
        control_out,
        logger,
        tls,
        rates,
        &mut |session| {
            if let Some(s) = &mut status {
                s.publish(&session.status(), Now::get());
            }
        },
    )
    .map_err(|e| Fail::temporary(format!("I/O failure: {e}")))
}
