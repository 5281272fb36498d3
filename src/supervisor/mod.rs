//! `aftpd-supervisor`: one process serving many sessions. This module is
//! everything but the event mechanism: the command line, binding,
//! privileges, limits, logging, signals and the choice of engine. The
//! workers' event loops live in `engine::epoll` and `engine::uring`, on
//! the same [`Context`] and the shared `engine::worker`. What it shares
//! with `ftpd` (options, privileges, exit codes) is in [`crate::setup`].

pub mod activation;
pub mod certs;
pub mod cli;
pub mod listen;
pub mod nofile;
pub mod signals;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::fs::Root;
use crate::log::xferlog::Xferlog;
use crate::setup::cli::{Parsed, program_name};
use crate::setup::messages::MessageFiles;
use crate::setup::options::{LogTo, Sandbox};
use crate::setup::privs::{self, Unnamed};
use crate::setup::{self, Exit, Fail, fds, vhosts};

use self::cli::{Args, Engine};
use self::signals::{Outcome, Signals};
use crate::core::admission::Limits;
use crate::core::rate::RateLimits;
use crate::engine::context::{Context, Latest};
use crate::engine::pool::Pool;
use crate::engine::stop::Stop;
use crate::log::Logger;
use crate::monitor::board::Board;
use crate::monitor::counters::Stats;
use crate::monitor::server::{self, Monitor};

/// The name in log lines.
const NAME: &str = "aftpd-supervisor";

/// Bytes of log lines that may wait for a stalled log reader (about
/// 9,000 sessions' start and end lines) before lines are dropped.
const LOG_BACKLOG: usize = 1 << 20;

/// How long queued log lines may take to be written at exit.
const LOG_FLUSH: Duration = Duration::from_secs(2);

/// The program: parses the command line, runs, and returns the exit code.
pub fn main() -> ExitCode {
    let name = program_name("aftpd-supervisor");
    let args = match cli::from_env(&name) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(f) => return setup::report(&name, &f),
    };
    match run(args) {
        Ok(code) => code,
        Err(f) => setup::report(&name, &f),
    }
}

/// Starts the server described by `args` and serves until a signal stops
/// it. Returns the exit code.
pub fn run(args: Args) -> Result<ExitCode, Fail> {
    // First: it changes the environment (no other thread may exist yet) and
    // claims descriptors 3 and up.
    let inherited = activation::take().map_err(Fail::usage)?;
    // Then, before anything opens a file: every other inherited descriptor
    // above 2 goes.
    let passed = inherited.as_ref().map_or(0, Vec::len);
    fds::close_from(activation::FIRST_FD as u32 + passed as u32)
        .map_err(|e| Fail::temporary(format!("cannot close inherited descriptors: {e}")))?;
    // The command line has checked every value (--threads 1 to 1024,
    // --max-sessions at least 1, ...). The message files are opened now,
    // before the chroot, and kept for SIGHUP.
    let messages = MessageFiles::open(&args.session.messages)?;
    let config = Arc::new(messages.apply(args.session.config)?);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let root_dir = root_path(args.root.as_deref())?;
    let as_root = privs::is_root();
    let target = privs::choose(
        as_root,
        args.user.as_deref(),
        privs::from_env(),
        Unnamed::Default,
        privs::lookup_user,
    )?;

    // Everything that needs the outside world (the syslog socket, the
    // CPU count above, the password file) before the chroot.
    let mut log = if args.session.log == LogTo::Syslog {
        Logger::syslog(NAME).map_err(|e| Fail::temporary(format!("cannot log to syslog: {e}")))?
    } else {
        Logger::stderr(NAME)
    }
    .with_backlog(LOG_BACKLOG);
    log.catch_panics();
    if let Some(path) = &args.session.xferlog {
        let x = Xferlog::open_reopenable(path)
            .map_err(|e| Fail::temporary(format!("cannot open the xferlog {e}")))?;
        log = log.with_xferlog(x);
    }
    // Rust ignores SIGPIPE already; say so anyway, as ftpd does, since a
    // closed peer must be an EPIPE, never the end of the server.
    crate::engine::net::ignore_sigpipe()
        .map_err(|e| Fail::temporary(format!("cannot ignore SIGPIPE: {e}")))?;
    let nofile = nofile::raise();
    let max_sessions = args
        .max_sessions
        .unwrap_or_else(|| nofile::default_max_sessions(nofile, threads));

    // The upload hook's helper: forked while this is the only thread,
    // before the chroot, and before the TLS key is read (the process
    // that runs hooks never holds it).
    let hook = match &args.session.uploads {
        Some(u) => {
            let syslog = args.session.log == LogTo::Syslog;
            crate::setup::uploads::hook(&root_dir, u, target.as_ref(), move || {
                let log = if syslog {
                    Logger::syslog(NAME).unwrap_or_else(|_| Logger::discard())
                } else {
                    Logger::stderr(NAME)
                };
                log.with_backlog(LOG_BACKLOG)
            })?
        }
        None => None,
    };

    // The key may be readable by root only: read before the drop.
    let tls = match &args.session.tls {
        Some(files) => Some(Arc::new(crate::setup::tls::load(files)?)),
        None => None,
    };
    let ktls = tls.as_ref().map(|_| crate::engine::tls::ktls::probe());
    // While the process has one thread and its privileges: the helper
    // that reads the certificate again on SIGHUP.
    let mut certs =
        match &args.session.tls {
            Some(files) => Some(certs::Helper::start(files).map_err(|e| {
                Fail::temporary(format!("cannot start the certificate helper: {e}"))
            })?),
            None => None,
        };

    let activated = inherited.is_some();
    let sets = match inherited {
        Some(listeners) => {
            if !args.listen.is_empty() {
                log.info(format_args!(
                    "--listen ignored: serving the {} socket(s) passed by the service manager (LISTEN_FDS)",
                    listeners.len()
                ));
            }
            activation::share(listeners, threads)
                .map_err(|e| Fail::temporary(format!("cannot share the passed sockets: {e}")))?
        }
        None => {
            let addrs = listen::addresses(&args.listen, as_root);
            listen::bind_all(&addrs, threads, |from, to| {
                log.warn(format_args!("no IPv6: listening on {to} instead of {from}"))
            })
            .map_err(|e| Fail::temporary(e.to_string()))?
        }
    };
    // The monitor's sockets, like the listeners, before the chroot: the
    // control socket's path lies outside ROOT.
    let control = match &args.control {
        Some(path) => Some(
            server::bind_control(path)
                .map_err(|e| Fail::temporary(format!("cannot make the control socket {e}")))?,
        ),
        None => None,
    };
    let metrics =
        match args.metrics {
            Some(addr) => Some(server::bind_metrics(addr).map_err(|e| {
                Fail::temporary(format!("cannot listen for metrics on {addr}: {e}"))
            })?),
            None => None,
        };
    let bound: Vec<SocketAddr> = sets
        .first()
        .map(|s| s.iter().filter_map(|l| l.local_addr().ok()).collect())
        .unwrap_or_default();

    // Read before the chroot hides /proc.
    crate::engine::net::ephemeral_ports();
    privs::confine(&root_dir, target.as_ref())?;
    // Inside the chroot, ROOT is `/`.
    let root_now = if target.is_some() {
        Path::new("/")
    } else {
        &root_dir
    };
    let root = Root::open(root_now)
        .map_err(|e| Fail::temporary(format!("cannot open {}: {e}", root_dir.display())))?;
    if let Some(u) = &args.session.uploads {
        crate::setup::uploads::drop_box(&root, u, hook.clone())?;
    }
    let user = match &target {
        Some(who) => who.to_string(),
        None => format!(
            "{}:{}(not-root)",
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw()
        ),
    };

    // After the privileges are dropped: io_uring_disabled=1 admits some
    // users only.
    let engine = choose_engine(args.engine, threads, &log)?;

    // Before any worker exists, so that every thread inherits the mask.
    let signals = Signals::block().map_err(|e| Fail::temporary(format!("signals: {e}")))?;
    let root = Arc::new(root);
    let uploads = args.session.uploads.as_ref().map(|u| (u, hook));
    let trees = Arc::new(vhosts::trees(
        Arc::clone(&root),
        config.vhosts,
        &root_dir,
        uploads,
    )?);
    // Sessions that send no HOST take ROOT/0's uploads, if it has a box.
    let config = match trees.default_uploads() {
        Some(u) => Arc::new(crate::core::config::SessionConfig {
            uploads: Some(u),
            ..(*config).clone()
        }),
        None => config,
    };
    let pool = Pool::new(Arc::clone(&trees), threads, DISK_THREADS)
        .map_err(|e| Fail::temporary(format!("cannot set up the disk helpers: {e}")))?;
    let pasv_ports = config.pasv_ports;
    let ctx = Arc::new(Context {
        config: Latest::new(config),
        root,
        pool,
        limits: Arc::new(Limits::new(max_sessions, args.max_per_ip).with_passive_ports(pasv_ports)),
        rates: RateLimits::new(
            args.session.max_rate,
            args.max_rate_per_ip,
            args.max_rate_total,
            std::time::Instant::now(),
        ),
        stats: args.metrics.map(|_| Stats::new(threads)),
        board: Board::new(threads),
        log,
        stop: Stop::new(threads).map_err(|e| Fail::temporary(format!("eventfd: {e}")))?,
        shutdown_timeout: args.shutdown_timeout,
        proxy: args.session.proxy,
        tls,
    });

    let engine_name = engine.name();
    let profile = engine.profile();
    // Landlock before the workers exist (it binds the calling thread and
    // those it creates), seccomp once they do (on every thread at once),
    // and only then do the workers start serving.
    let landlock = if args.session.sandbox == Sandbox::Skip {
        None
    } else {
        let dir = ctx.log.xferlog_dir();
        let boxes = crate::setup::uploads::box_fds(&trees);
        Some(
            crate::sandbox::restrict_filesystem_uploads(ctx.root.fd(), dir, &boxes)
                .map_err(|e| Fail::temporary(format!("cannot enter the sandbox: {e}")))?,
        )
    };
    // Confined by Landlock now: log writer threads may start (seccomp
    // below covers them too).
    ctx.log.start_writers();
    let (workers, gates) = spawn_workers(&ctx, sets, engine)?;
    // Confined like the workers; it serves only once they do.
    let monitor = Monitor {
        control,
        metrics,
        engine: engine_name,
    };
    monitor
        .spawn(&ctx)
        .map_err(|e| Fail::temporary(format!("cannot start the monitor thread: {e}")))?;
    let sandbox = match landlock {
        None => "sandbox=off".to_owned(),
        Some(landlock) => {
            let uploads = !crate::setup::uploads::box_fds(&trees).is_empty();
            let seccomp = crate::sandbox::restrict_syscalls_uploads(profile, uploads, true)
                .map_err(|e| Fail::temporary(format!("cannot enter the sandbox: {e}")))?;
            crate::sandbox::Report { landlock, seccomp }.to_string()
        }
    };

    // Said before the workers serve: the sockets are bound and listening
    // already, and a log reader sees the start line before any session's.
    let list: Vec<String> = bound.iter().map(ToString::to_string).collect();
    ctx.log.info(format_args!(
        "listening on {}{} root={}{} user={user} threads={threads} engine={} max-sessions={max_sessions} max-per-ip={}{}{} open-files={} {sandbox}",
        list.join(","),
        if activated { " (passed by the service manager)" } else { "" },
        root_dir.display(),
        crate::setup::uploads::describe(&trees),
        engine_name,
        args.max_per_ip,
        ctx.rates.describe(),
        monitoring(args.control.as_deref(), args.metrics),
        nofile.map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
    ));
    // Only a limit the operator chose can be too much for the descriptors;
    // the default is derived from them.
    if let Some(asked) = args.max_sessions
        && !nofile::holds(nofile, asked, threads)
    {
        ctx.log.warn(format_args!(
            "open-files limit {} may not hold --max-sessions {asked} (a busy session needs up to {} descriptors)",
            nofile.unwrap_or(u64::MAX),
            nofile::PER_SESSION,
        ));
    }

    if let Some(k) = &ktls {
        ctx.log.info(format_args!("{k}"));
    }

    for gate in gates {
        // A worker that is gone already is noticed by the wait below.
        let _ = gate.send(());
    }

    let outcome = signals.wait(&workers, || {
        ctx.log.reopen();
        if let (Some(helper), Some(tls)) = (certs.as_mut(), &ctx.tls) {
            reload_tls(helper, tls, &ctx.log);
        }
        reread_messages(&ctx, &messages);
    });
    ctx.stop.trigger();
    let bound = ctx.shutdown_timeout + Duration::from_secs(5);
    match outcome {
        Outcome::Signalled(sig) => {
            ctx.log.info(format_args!(
                "{sig}: no longer accepting; transfers in flight have {}s to finish",
                ctx.shutdown_timeout.as_secs()
            ));
            let clean = signals::join_all(workers, bound);
            ctx.log.info(format_args!("stopped"));
            ctx.log.flush(LOG_FLUSH);
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                Exit::Temporary.into()
            })
        }
        Outcome::WorkerEnded => {
            ctx.log
                .error(format_args!("a worker ended unexpectedly; stopping"));
            signals::join_all(workers, bound);
            ctx.log.flush(LOG_FLUSH);
            Ok(Exit::Temporary.into())
        }
    }
}

/// SIGHUP: the certificate and key as the files hold them now, for new
/// TLS sessions; sessions in progress keep theirs. On any error the old
/// ones stay.
fn reload_tls(helper: &mut certs::Helper, tls: &crate::engine::tls::ServerTls, log: &Logger) {
    match helper.read().and_then(|pem| tls.reload(&pem)) {
        Ok(()) => log.info(format_args!("SIGHUP: reloaded the TLS certificate and key")),
        Err(e) => log.error(format_args!(
            "SIGHUP: TLS certificate not reloaded ({e}); keeping the old one"
        )),
    }
}

/// `control=PATH metrics=ADDR:PORT` for the start line, as far as given.
fn monitoring(control: Option<&Path>, metrics: Option<SocketAddr>) -> String {
    let mut s = String::new();
    if let Some(p) = control {
        let p = crate::log::format::escape(p.as_os_str().as_encoded_bytes());
        s.push_str(&format!(" control={p}"));
    }
    if let Some(a) = metrics {
        s.push_str(&format!(" metrics={a}"));
    }
    s
}

/// SIGHUP: the banner and welcome read again, for the sessions that
/// start from now on (those open keep theirs).
fn reread_messages(ctx: &Context, messages: &MessageFiles) {
    if !messages.any() {
        return;
    }
    let (config, notes) = messages.reread(&ctx.config.get());
    for note in notes {
        ctx.log.warn(format_args!("SIGHUP: {note}"));
    }
    ctx.config.set(config);
    ctx.log
        .info(format_args!("SIGHUP: read the banner and welcome again"));
}

/// ROOT as an absolute, existing directory.
fn root_path(given: Option<&Path>) -> Result<PathBuf, Fail> {
    let p = given.unwrap_or(Path::new("."));
    let abs =
        std::fs::canonicalize(p).map_err(|e| Fail::temporary(format!("{}: {e}", p.display())))?;
    if !abs.is_dir() {
        return Err(Fail::usage(format!("{}: not a directory", p.display())));
    }
    Ok(abs)
}

/// The workers' engine, chosen.
enum Chosen {
    Epoll,
    /// io_uring, with each worker's ring set up already.
    Uring(Vec<crate::engine::uring::Ring>),
}

impl Chosen {
    fn name(&self) -> &'static str {
        match self {
            Chosen::Epoll => Engine::Epoll.name(),
            Chosen::Uring(_) => Engine::Uring.name(),
        }
    }

    /// The seccomp allow-list its workers need.
    fn profile(&self) -> crate::sandbox::Profile {
        match self {
            Chosen::Epoll => crate::sandbox::Profile::Epoll,
            Chosen::Uring(_) => crate::sandbox::Profile::Uring,
        }
    }
}

/// The engine to run: `uring` only if io_uring works here (else an
/// error), `auto` io_uring if it works, else epoll with a line saying why.
/// Working means: every worker's ring could be set up, as the user the
/// workers run as (so the probe cannot pass where a worker would fail).
fn choose_engine(asked: Engine, workers: usize, log: &Logger) -> Result<Chosen, Fail> {
    match asked {
        Engine::Epoll => Ok(Chosen::Epoll),
        Engine::Uring => match crate::engine::uring::prepare(workers) {
            Ok(rings) => Ok(Chosen::Uring(rings)),
            Err(why) => Err(Fail::temporary(format!(
                "--engine uring: io_uring unavailable ({why})"
            ))),
        },
        Engine::Auto => match crate::engine::uring::prepare(workers) {
            Ok(rings) => Ok(Chosen::Uring(rings)),
            Err(why) => {
                log.info(format_args!(
                    "io_uring unavailable ({why}): falling back to epoll"
                ));
                Ok(Chosen::Epoll)
            }
        },
    }
}

/// Helper threads that may wait for the disk at once, for the whole
/// process (made as they are needed): enough for a few dozen cold
/// downloads to read in parallel.
const DISK_THREADS: usize = 32;

/// Opens a waiting worker (see [`spawn_workers`]).
type Gate = mpsc::Sender<()>;

/// How long a new worker thread may take to start.
const WORKER_START: Duration = Duration::from_secs(10);

/// Starts the workers and waits until each has started and waits at its
/// gate: a worker serves once something is sent through its gate, and
/// ends at once if the gate is dropped unopened (the sandbox could not be
/// entered).
fn spawn_workers(
    ctx: &Arc<Context>,
    sets: Vec<Vec<TcpListener>>,
    engine: Chosen,
) -> Result<(Vec<std::thread::JoinHandle<()>>, Vec<Gate>), Fail> {
    let mut rings = match engine {
        Chosen::Uring(rings) => rings,
        Chosen::Epoll => Vec::new(),
    };
    let mut handles = Vec::with_capacity(sets.len());
    let mut gates = Vec::with_capacity(sets.len());
    let (ready, started) = mpsc::channel::<()>();
    for (i, listeners) in sets.into_iter().enumerate() {
        let ctx = Arc::clone(ctx);
        // One ring per worker was set up (as many as `sets`).
        let ring = rings.pop();
        let ready = ready.clone();
        let (open, gate) = mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                // The thread has started (its libc and std set-up, which
                // need calls the filter refuses, is done): say so, wait.
                let _ = ready.send(());
                drop(ready);
                if gate.recv().is_err() {
                    return;
                }
                let ran = match ring {
                    Some(r) => crate::engine::uring::run(&ctx, i, listeners, r),
                    None => crate::engine::epoll::run(&ctx, i, listeners),
                };
                if let Err(e) = ran {
                    ctx.log.error(format_args!("worker {i}: {e}"));
                }
            })
            .map_err(|e| Fail::temporary(format!("cannot start worker: {e}")))?;
        handles.push(h);
        gates.push(open);
    }
    for _ in 0..handles.len() {
        started
            .recv_timeout(WORKER_START)
            .map_err(|_| Fail::temporary("a worker did not start"))?;
    }
    Ok((handles, gates))
}
