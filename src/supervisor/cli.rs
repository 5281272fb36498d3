//! The command line of `aftpd-supervisor`: its own multi-session options,
//! and the session options (declared once, in
//! [`crate::setup::options`]), so they mean exactly what they mean to
//! `ftpd`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::rate::{Rate, parse_rate};
use crate::setup::Fail;
use crate::setup::cli::{self, Help, Parsed};
use crate::setup::options::{SessionArgs, seconds, with_session_options};

/// `--engine`: how the workers wait and move bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// io_uring where it works, else epoll (with a log line saying why).
    Auto,
    Epoll,
    Uring,
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "auto" => Ok(Engine::Auto),
            "epoll" => Ok(Engine::Epoll),
            "uring" | "io_uring" => Ok(Engine::Uring),
            _ => Err("want auto, epoll or uring".to_owned()),
        }
    }
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Auto => "auto",
            Engine::Epoll => "epoll",
            Engine::Uring => "uring",
        }
    }
}

with_session_options! {
    /// aftpd-supervisor's command line, as argh reads it.
    #[derive(argh::FromArgs, argh::ArgsInfo, Debug)]
    #[argh(help_triggers("-h", "--help"))]
    pub struct Options {
        /// the directory to serve (default: the current directory)
        #[argh(positional, arg_name = "ROOT")]
        pub root: Vec<String>,
        /// address to listen on, ADDR:PORT, e.g. 0.0.0.0:21 or \[::1\]:2121
        /// (repeatable; default \[::\]:2121 dual-stack, port 21 when started
        /// as root; ignored when sockets are passed by systemd)
        #[argh(option, arg_name = "ADDR:PORT", from_str_fn(listen_address))]
        pub listen: Vec<SocketAddr>,
        /// worker threads, each an event loop serving many sessions
        /// (default: the number of CPUs)
        #[argh(option, arg_name = "N", from_str_fn(threads))]
        pub threads: Option<usize>,
        /// the workers' event mechanism: auto (io_uring if the kernel
        /// allows it, else epoll), epoll, or uring (default auto)
        #[argh(option, arg_name = "ENGINE")]
        pub engine: Option<Engine>,
        /// most sessions at once, over all workers; more are answered with
        /// 421 (default: as many as the open-files limit holds, at three
        /// descriptors a session, at most 10000)
        #[argh(option, arg_name = "N", from_str_fn(max_sessions))]
        pub max_sessions: Option<usize>,
        /// most sessions at once from one client address, 0 for no limit
        /// (default 50)
        #[argh(option, arg_name = "N", from_str_fn(whole_number))]
        pub max_per_ip: Option<u32>,
        /// most bytes per second of all downloads together, shared fairly
        /// among them (K, M, G as for --max-rate; default: no limit)
        #[argh(option, arg_name = "RATE", from_str_fn(parse_rate))]
        pub max_rate_total: Option<Rate>,
        /// most bytes per second of all downloads of one client address
        /// together, and of its uploads together (default: no limit)
        #[argh(option, arg_name = "RATE", from_str_fn(parse_rate))]
        pub max_rate_per_ip: Option<Rate>,
        /// on SIGTERM/SIGINT, how long transfers in flight may take to
        /// finish before the remaining sessions are closed with 421
        /// (default 10)
        #[argh(option, arg_name = "SECS", from_str_fn(shutdown_timeout))]
        pub shutdown_timeout: Option<Duration>,
        /// when started as root: the user to run as after the chroot, from
        /// /etc/passwd (default: $UID and $GID as envuidgid sets them, else
        /// ftp, else nobody)
        #[argh(option, arg_name = "NAME")]
        pub user: Option<String>,
        /// serve the status of the open sessions (read by aftpd-status) on
        /// a UNIX socket made at PATH, mode 0600, before the chroot
        /// (default: none)
        #[argh(option, arg_name = "PATH")]
        pub control: Option<PathBuf>,
        /// serve Prometheus metrics over HTTP on ADDR:PORT, e.g.
        /// 127.0.0.1:9121 (default: none, and nothing is counted)
        #[argh(option, arg_name = "ADDR:PORT", from_str_fn(listen_address))]
        pub metrics: Option<SocketAddr>,
    }
}

/// What the command line asks the supervisor to do, checked.
#[derive(Debug)]
pub struct Args {
    /// The options `ftpd` takes too.
    pub session: SessionArgs,
    /// `--listen`, repeatable; empty: the default address.
    pub listen: Vec<SocketAddr>,
    /// `--threads`, 1 to [`MAX_THREADS`]; `None`: one per CPU.
    pub threads: Option<usize>,
    pub engine: Engine,
    /// At least 1; `None`: derived from the open-files limit.
    pub max_sessions: Option<usize>,
    /// 0 for no limit.
    pub max_per_ip: u32,
    /// `--max-rate-total`, `--max-rate-per-ip`.
    pub max_rate_total: Option<Rate>,
    pub max_rate_per_ip: Option<Rate>,
    pub shutdown_timeout: Duration,
    pub user: Option<String>,
    /// `None`: the current directory.
    pub root: Option<PathBuf>,
    /// `--control PATH`: the status socket.
    pub control: Option<PathBuf>,
    /// `--metrics ADDR:PORT`.
    pub metrics: Option<SocketAddr>,
}

impl TryFrom<Options> for Args {
    type Error = Fail;

    fn try_from(o: Options) -> Result<Args, Fail> {
        let root = cli::one_root(&o.root, false)?.map(PathBuf::from);
        Ok(Args {
            session: o.session()?,
            listen: o.listen,
            threads: o.threads,
            engine: o.engine.unwrap_or(Engine::Auto),
            max_sessions: o.max_sessions,
            max_per_ip: o.max_per_ip.unwrap_or(50),
            max_rate_total: o.max_rate_total,
            max_rate_per_ip: o.max_rate_per_ip,
            shutdown_timeout: o.shutdown_timeout.unwrap_or(Duration::from_secs(10)),
            user: o.user,
            root,
            control: o.control,
            metrics: o.metrics,
        })
    }
}

/// More worker threads than this is a typing error, not a plan.
pub const MAX_THREADS: usize = 1024;

fn listen_address(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "want ADDR:PORT, e.g. 0.0.0.0:21 or [::1]:2121".to_owned())
}

fn threads(s: &str) -> Result<usize, String> {
    count(s, 1, MAX_THREADS)
}

fn max_sessions(s: &str) -> Result<usize, String> {
    count(s, 1, usize::MAX)
}

fn whole_number(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| "want a whole number".to_owned())
}

fn shutdown_timeout(s: &str) -> Result<Duration, String> {
    seconds(s, 0)
}

/// Reads a whole number from `min` to `max`.
fn count(s: &str, min: usize, max: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == usize::MAX => Err(format!("want a whole number, at least {min}")),
        _ => Err(format!("want a whole number from {min} to {max}")),
    }
}

/// Reads the process's command line.
pub fn from_env(name: &str) -> Result<Parsed<Args>, Fail> {
    cli::from_env::<Options, Args>(name, &HELP, Args::try_from)
}

pub const HELP: Help = Help {
    usage: "[OPTIONS] [--] [ROOT]",
    about: "\
Serve a read-only, anonymous FTP archive (ROOT, default: the current
directory) to many clients from one process: bind, drop privileges, then run
worker threads, each an event loop (epoll or io_uring) holding thousands of
sessions. With --incoming DIR, clients may also upload into DIR, a
write-only drop box; with --vhosts --host-incoming, into each host's own,
named by its ROOT/NAME/.incoming (see ftpd --help and aftpd-supervisor(8),
UPLOADS).
",
    session_heading: Some("Session options, the same as ftpd's:"),
    tail: "
An option's value is the next argument: --timeout 90. Options may come
before or after ROOT; '--' ends them (for a ROOT that starts with '-').
Options with a value may be given once, except those marked repeatable.

Notes:
  Started as root, it binds first, then chroots into ROOT and becomes
  --user NAME, or $UID and $GID (as set by envuidgid), or else the user
  ftp if /etc/passwd has one, or else nobody (65534:65534); the start line
  says which (user=...). It never serves as root. Not root, every lookup
  is confined beneath ROOT with openat2.
  Inherited descriptors other than 0, 1, 2 and the sockets passed by
  systemd are closed at start.
  The soft open-files limit is raised to the hard limit at start; without
  --max-sessions, the session limit is what that limit holds.
  Socket activation: when $LISTEN_PID is its process id, it serves the
  $LISTEN_FDS listening TCP sockets passed from fd 3 on (systemd's
  sd_listen_fds protocol) and binds nothing; --listen is then ignored.
  SIGTERM, SIGINT: stop accepting, let transfers in flight finish for up to
  --shutdown-timeout seconds, close the other sessions with 421, exit 0.
  --engine auto probes io_uring at start (the kernel may lack it; seccomp
  profiles and kernel.io_uring_disabled refuse it) and falls back to epoll,
  saying so in the log; --engine uring where io_uring is unavailable exits
  111. The io_uring ring is restricted to the operations the server uses.
  After dropping privileges it enters a sandbox (unless --no-sandbox):
  Landlock lets it read beneath ROOT (and write the --xferlog directory,
  and files in the drop boxes, one rule each)
  where the kernel has Landlock, and a seccomp filter allows only the
  system calls its workers need.
  SIGHUP: reopen the --xferlog file (after a log rotation); logs go to
  standard error or syslog (facility FTP), which need no reopening.
  --max-rate, --max-rate-per-ip and --max-rate-total are token buckets on
  the data path: files still go without a copy, in smaller slices, and the
  transfers under a shared limit take turns, about 1/N each.
  --control makes its socket before the chroot, mode 0600, for
  aftpd-status; it stays after a stop, and the next start replaces it.
  --metrics serves GET /metrics (Prometheus text format), read-only, one
  bounded request at a time.

Exit codes:
  0    stopped by SIGTERM or SIGINT
  100  usage error: bad option, a --user that does not exist or is root,
       or a passed descriptor that is not a listening TCP socket
  111  temporary failure: cannot bind, no root directory, out of resources",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::Exit;

    fn parsed(args: &[&str]) -> Result<Parsed<Args>, Fail> {
        cli::read::<Options, Args>("s", args, Args::try_from)
    }

    fn run(args: &[&str]) -> Args {
        match parsed(args) {
            Ok(Parsed::Run(a)) => a,
            Ok(Parsed::Help(_)) => panic!("{args:?}: help"),
            Err(f) => panic!("{args:?}: {f}"),
        }
    }

    fn usage(args: &[&str]) -> String {
        match parsed(args) {
            Err(f) if f.exit == Exit::Usage => f.message,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_repeats() {
        let a = run(&["--listen", "127.0.0.1:21", "--listen", "[::1]:2121", "/srv"]);
        assert_eq!(
            a.listen,
            ["127.0.0.1:21", "[::1]:2121"].map(|s| s.parse::<SocketAddr>().unwrap())
        );
        assert_eq!(a.threads, None);
        assert_eq!(a.max_sessions, None);
        assert_eq!(a.max_per_ip, 50);
        assert_eq!(a.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(a.user, None);
        assert_eq!(a.root, Some(PathBuf::from("/srv")));
        assert_eq!(a.session.config.idle_timeout, Duration::from_secs(60));
        assert_eq!(a.engine, Engine::Auto);
        assert_eq!(run(&[]).root, None);
    }

    #[test]
    fn every_own_option() {
        let a = run(&[
            "--threads",
            "3",
            "--engine",
            "epoll",
            "--max-sessions",
            "7",
            "--max-per-ip",
            "0",
            "--shutdown-timeout",
            "0",
            "--user",
            "ftp",
            "--max-rate-total",
            "100M",
            "--max-rate-per-ip",
            "2M",
            "--control",
            "/run/aftpd/control",
            "--metrics",
            "127.0.0.1:9121",
        ]);
        assert_eq!(a.threads, Some(3));
        assert_eq!(a.engine, Engine::Epoll);
        assert_eq!(a.max_sessions, Some(7));
        assert_eq!(a.max_per_ip, 0);
        assert_eq!(a.shutdown_timeout, Duration::ZERO);
        assert_eq!(a.user.as_deref(), Some("ftp"));
        assert_eq!(a.max_rate_total.map(Rate::get), Some(100 << 20));
        assert_eq!(a.max_rate_per_ip.map(Rate::get), Some(2 << 20));
        assert_eq!(a.control, Some(PathBuf::from("/run/aftpd/control")));
        assert_eq!(a.metrics, Some("127.0.0.1:9121".parse().unwrap()));
    }

    #[test]
    fn session_options_and_root_in_any_order() {
        let a = run(&["--timeout", "5", "/srv", "--no-greeting", "--threads", "1"]);
        assert_eq!(a.session.config.idle_timeout, Duration::from_secs(5));
        assert!(!a.session.config.greeting);
        assert_eq!(a.root, Some(PathBuf::from("/srv")));
        assert_eq!(a.threads, Some(1));
    }

    #[test]
    fn double_dash() {
        let a = run(&["--syslog", "--", "--threads"]);
        assert_eq!(a.root, Some(PathBuf::from("--threads")));
        assert_eq!(a.threads, None);
    }

    #[test]
    fn engines() {
        for (arg, want) in [
            ("auto", Engine::Auto),
            ("epoll", Engine::Epoll),
            ("uring", Engine::Uring),
        ] {
            assert_eq!(run(&["--engine", arg]).engine, want);
            assert_eq!(want.name(), arg);
        }
        assert_eq!(run(&["--engine", "io_uring"]).engine, Engine::Uring);
        assert!(usage(&["--engine", "kqueue"]).contains("'--engine' with value 'kqueue'"));
    }

    #[test]
    fn usage_errors() {
        for (args, want) in [
            (&["--bogus"][..], "--bogus"),
            (&["-x"], "-x"),
            (&["--listen", "nope"], "'--listen' with value 'nope'"),
            (&["--listen"], "'--listen'"),
            (&["--listen=127.0.0.1:21"], "--listen=127.0.0.1:21"),
            (&["--threads", "0"], "'--threads' with value '0'"),
            (&["--threads", "1025"], "'--threads' with value '1025'"),
            (&["--max-sessions", "0"], "'--max-sessions' with value '0'"),
            (&["--max-per-ip", "-1"], "'--max-per-ip' with value '-1'"),
            (&["--shutdown-timeout", "soon"], "'--shutdown-timeout'"),
            (&["--user"], "'--user'"),
            (&["--user", "a", "--user", "b"], "'--user' with value 'b'"),
            (&["--threads", "2", "--threads", "2"], "'--threads'"),
            (&["/a", "/b"], "unexpected argument \"/b\""),
            (&["--timeout", "0"], "'--timeout' with value '0'"),
            (
                &["--max-rate-total", "0"],
                "'--max-rate-total' with value '0'",
            ),
            (&["--max-rate-per-ip", "1.5M"], "'--max-rate-per-ip'"),
            (&["--metrics", "9121"], "'--metrics' with value '9121'"),
            (&["--control"], "'--control'"),
        ] {
            let e = usage(args);
            assert!(e.contains(want), "{args:?}: {e:?}");
            // One line, naming the option, pointing at --help.
            assert_eq!(e.lines().count(), 1, "{e:?}");
            assert!(e.ends_with(" (try 's --help')"), "{e:?}");
        }
    }

    #[test]
    fn help() {
        for args in [&["--help"][..], &["-h"], &["/srv", "--help"]] {
            assert!(matches!(parsed(args), Ok(Parsed::Help(_))), "{args:?}");
        }
        // After `--`, "--help" is a ROOT.
        assert_eq!(run(&["--", "--help"]).root, Some(PathBuf::from("--help")));
        // An option's value, even one that reads "--help".
        assert_eq!(run(&["--user", "--help"]).user.as_deref(), Some("--help"));
        let text = cli::render::<Options>("s", &HELP);
        assert!(
            text.starts_with("Usage: s [OPTIONS] [--] [ROOT]\n"),
            "{text}"
        );
        let own = text.find("\nOptions:\n").unwrap();
        let shared = text
            .find("\nSession options, the same as ftpd's:\n")
            .unwrap();
        for opt in [
            "--listen ADDR:PORT",
            "--max-per-ip N",
            "-h, --help",
            "--user NAME",
        ] {
            let at = text
                .find(opt)
                .unwrap_or_else(|| panic!("{opt} not in help"));
            assert!(own < at && at < shared, "{opt} not among the own options");
        }
        for opt in crate::setup::options::SessionOptions::names() {
            // "--max-rate " (with its value), not "--max-rate-total".
            let at = text.find(&format!("\n  {opt} ")).unwrap();
            assert!(at > shared, "{opt} not among the session options");
        }
        for line in text.lines() {
            assert!(line.len() < 80, "{line:?}");
        }
    }
}
