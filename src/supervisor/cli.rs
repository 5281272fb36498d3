//! The command line of `aftpd-supervisor`. The session options come from
//! [`crate::session_options!`], so they mean exactly what they mean to
//! `ftpd`; only the multi-session options are declared here.

use std::net::SocketAddr;
use std::path::PathBuf;

use argh::FromArgs;

use super::Fail;

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
            _ => Err(format!("unknown engine {s:?}: want auto, epoll or uring")),
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

crate::session_options! {
    /// Serve a read-only, anonymous FTP archive (ROOT, default: the
    /// current directory) to many clients from one process: bind, drop
    /// privileges, then run worker threads, each an event loop (epoll or
    /// io_uring) holding thousands of sessions.
    pub struct Args {
        /// address to listen on, ADDR:PORT, e.g. 0.0.0.0:21 or [::1]:2121
        /// (repeatable; default [::]:2121 dual-stack, port 21 when started
        /// as root; ignored when sockets are passed by systemd)
        #[argh(option, arg_name = "ADDR:PORT")]
        pub listen: Vec<SocketAddr>,

        /// worker threads, each an event loop serving many sessions
        /// (default: the number of CPUs)
        #[argh(option, arg_name = "N")]
        pub threads: Option<usize>,

        /// the workers' event mechanism: auto (io_uring if the kernel
        /// allows it, else epoll), epoll, or uring (default auto)
        #[argh(option, default = "Engine::Auto", arg_name = "ENGINE")]
        pub engine: Engine,

        /// most sessions at once, over all workers; more are answered
        /// with 421 (default 10000)
        #[argh(option, default = "10000", arg_name = "N")]
        pub max_sessions: usize,

        /// most sessions at once from one client address, 0 for no limit
        /// (default 50)
        #[argh(option, default = "50", arg_name = "N")]
        pub max_per_ip: u32,

        /// on SIGTERM/SIGINT, how long transfers in flight may take to
        /// finish before the remaining sessions are closed with 421
        /// (default 10)
        #[argh(option, default = "10", arg_name = "SECS")]
        pub shutdown_timeout: u64,

        /// when started as root: the user to run as after the chroot
        /// (default: $UID and $GID, as set by envuidgid)
        #[argh(option, arg_name = "NAME")]
        pub user: Option<String>,

        /// the directory to serve (default: the current directory)
        #[argh(positional, arg_name = "ROOT")]
        pub root: Option<PathBuf>,
    }
}

/// The rest of `--help` (argh takes no attributes of its own through
/// `session_options!`, so notes and exit codes are appended here).
const HELP_MORE: &str = "
Notes:
  Started as root, it binds first, then chroots into ROOT and switches to
  --user NAME (or $UID and $GID, as set by envuidgid); it refuses to go on
  as root. Not root, every lookup is confined beneath ROOT with openat2.
  The soft open-files limit is raised to the hard limit at start.
  Socket activation: when $LISTEN_PID is its process id, it serves the
  $LISTEN_FDS listening TCP sockets passed from fd 3 on (systemd's
  sd_listen_fds protocol) and binds nothing; --listen is then ignored.
  SIGTERM, SIGINT: stop accepting, let transfers in flight finish for up to
  --shutdown-timeout seconds, close the other sessions with 421, exit 0.
  --engine auto probes io_uring at start (the kernel may lack it; seccomp
  profiles and kernel.io_uring_disabled refuse it) and falls back to epoll,
  saying so in the log; --engine uring where io_uring is unavailable exits
  111. The io_uring ring is restricted to the operations the server uses.
  SIGHUP: reopen the --xferlog file (after a log rotation); logs go to
  standard error or syslog (facility FTP), which need no reopening.

Exit codes:
  0    stopped by SIGTERM or SIGINT
  100  usage error: bad option, root with no user to switch to, or a
       passed descriptor that is not a listening TCP socket
  111  temporary failure: cannot bind, no root directory, out of resources";

/// What the command line asks for.
pub enum Parsed {
    Run(Args),
    /// `--help`: print this and exit 0.
    Help(String),
}

/// Parses the process's arguments. Unlike `argh::from_env`, a usage error
/// is exit code 100 (the daemontools convention), not 1.
pub fn from_env() -> Result<Parsed, Fail> {
    let mut strings = Vec::new();
    for arg in std::env::args_os() {
        match arg.into_string() {
            Ok(s) => strings.push(s),
            Err(bad) => {
                return Err(Fail::Usage(format!(
                    "argument is not valid UTF-8: {}",
                    bad.to_string_lossy()
                )));
            }
        }
    }
    let name = strings
        .first()
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
        .unwrap_or_else(|| "aftpd-supervisor".to_owned());
    let rest: Vec<&str> = strings.iter().skip(1).map(String::as_str).collect();
    parse(&name, &rest)
}

/// Parses `args` (without the program name).
pub fn parse(name: &str, args: &[&str]) -> Result<Parsed, Fail> {
    match <Args as FromArgs>::from_args(&[name], args) {
        Ok(a) => Ok(Parsed::Run(a)),
        Err(early) => match early.status {
            Ok(()) => Ok(Parsed::Help(format!(
                "{}\n{HELP_MORE}",
                early.output.trim_end()
            ))),
            Err(()) => Err(Fail::Usage(format!(
                "{}\nRun {name} --help for more information.",
                early.output.trim_end()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_repeats() {
        let Ok(Parsed::Run(a)) = parse(
            "s",
            &["--listen", "127.0.0.1:21", "--listen", "[::1]:2121", "/srv"],
        ) else {
            panic!("did not parse");
        };
        assert_eq!(a.listen.len(), 2);
        assert_eq!(a.max_sessions, 10000);
        assert_eq!(a.max_per_ip, 50);
        assert_eq!(a.shutdown_timeout, 10);
        assert_eq!(a.root, Some(PathBuf::from("/srv")));
        assert_eq!(a.timeout, 60);
        assert_eq!(a.engine, Engine::Auto);
    }

    #[test]
    fn engines() {
        for (arg, want) in [
            ("auto", Engine::Auto),
            ("epoll", Engine::Epoll),
            ("uring", Engine::Uring),
        ] {
            let Ok(Parsed::Run(a)) = parse("s", &["--engine", arg]) else {
                panic!("did not parse {arg}");
            };
            assert_eq!(a.engine, want);
            assert_eq!(want.name(), arg);
        }
        assert!(matches!(
            parse("s", &["--engine", "kqueue"]),
            Err(Fail::Usage(_))
        ));
    }

    #[test]
    fn usage_errors() {
        assert!(matches!(parse("s", &["--bogus"]), Err(Fail::Usage(_))));
        assert!(matches!(
            parse("s", &["--listen", "nope"]),
            Err(Fail::Usage(_))
        ));
        assert!(matches!(parse("s", &["--help"]), Ok(Parsed::Help(_))));
    }
}
