//! The command line of `aftpd-supervisor`. The session options come from
//! [`SessionArgs`], so they mean exactly what they mean to `ftpd`; only
//! the multi-session options are declared here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::args::{self, Arg, Lexer, UsageError};
use crate::config::{SESSION_HELP, SYNTAX_HELP, SessionArgs};

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

/// What the command line asks the supervisor to do.
#[derive(Debug)]
pub struct Args {
    /// The options `ftpd` takes too.
    pub session: SessionArgs,
    /// `--listen`, repeatable; empty: the default address.
    pub listen: Vec<SocketAddr>,
    /// `--threads`, 1 to [`MAX_THREADS`]; `None`: one per CPU.
    pub threads: Option<usize>,
    pub engine: Engine,
    /// At least 1.
    pub max_sessions: usize,
    /// 0 for no limit.
    pub max_per_ip: u32,
    pub shutdown_timeout: Duration,
    pub user: Option<String>,
    /// `None`: the current directory.
    pub root: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            session: SessionArgs::default(),
            listen: Vec::new(),
            threads: None,
            engine: Engine::Auto,
            max_sessions: 10000,
            max_per_ip: 50,
            shutdown_timeout: Duration::from_secs(10),
            user: None,
            root: None,
        }
    }
}

/// More worker threads than this is a typing error, not a plan.
pub const MAX_THREADS: usize = 1024;

/// `--help`, before the session options.
const HELP_HEAD: &str = "\
Serve a read-only, anonymous FTP archive (ROOT, default: the current
directory) to many clients from one process: bind, drop privileges, then run
worker threads, each an event loop (epoll or io_uring) holding thousands of
sessions.

Arguments:
  ROOT                    the directory to serve (default: the current
                          directory)

Options:
  --listen ADDR:PORT      address to listen on, ADDR:PORT, e.g. 0.0.0.0:21 or
                          [::1]:2121 (repeatable; default [::]:2121
                          dual-stack, port 21 when started as root; ignored
                          when sockets are passed by systemd)
  --threads N             worker threads, each an event loop serving many
                          sessions (default: the number of CPUs)
  --engine ENGINE         the workers' event mechanism: auto (io_uring if the
                          kernel allows it, else epoll), epoll, or uring
                          (default auto)
  --max-sessions N        most sessions at once, over all workers; more are
                          answered with 421 (default 10000)
  --max-per-ip N          most sessions at once from one client address, 0
                          for no limit (default 50)
  --shutdown-timeout SECS on SIGTERM/SIGINT, how long transfers in flight may
                          take to finish before the remaining sessions are
                          closed with 421 (default 10)
  --user NAME             when started as root: the user to run as after the
                          chroot, from /etc/passwd (default: $UID and $GID,
                          as set by envuidgid; also the way to give a user
                          known only to LDAP or another NSS service)
  -h, --help              print this help and exit

Session options, the same as ftpd's:
";

/// The rest of `--help`, after the options.
const HELP_TAIL: &str = "
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
  After dropping privileges it enters a sandbox (unless --no-sandbox):
  Landlock lets it read beneath ROOT (and write the --xferlog directory)
  where the kernel has Landlock, and a seccomp filter allows only the
  system calls its workers need.
  SIGHUP: reopen the --xferlog file (after a log rotation); logs go to
  standard error or syslog (facility FTP), which need no reopening.

Exit codes:
  0    stopped by SIGTERM or SIGINT
  100  usage error: bad option, root with no user to switch to, or a
       passed descriptor that is not a listening TCP socket
  111  temporary failure: cannot bind, no root directory, out of resources";

/// The whole `--help` text, for the program called `name`.
pub fn help(name: &str) -> String {
    format!(
        "Usage: {name} [OPTIONS] [--] [ROOT]\n\n{HELP_HEAD}{SESSION_HELP}\n{SYNTAX_HELP}{HELP_TAIL}"
    )
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Args),
    /// `--help`: print this and exit 0.
    Help(String),
}

/// Parses the process's arguments. A usage error is exit code 100 (the
/// daemontools convention); its message names the option and ends with a
/// hint to try `--help`.
pub fn from_env() -> Result<Parsed, Fail> {
    let (name, lx) = Lexer::from_env("aftpd-supervisor");
    read(&name, lx)
}

/// Parses `args` (without the program name).
pub fn parse(name: &str, args: &[&str]) -> Result<Parsed, Fail> {
    read(name, Lexer::new(args.iter().copied()))
}

fn read(name: &str, lx: Lexer) -> Result<Parsed, Fail> {
    read_args(name, lx)
        .map_err(|e| Fail::Usage(format!("{e}\nTry '{name} --help' for more information.")))
}

fn read_args(name: &str, mut lx: Lexer) -> Result<Parsed, UsageError> {
    let mut a = Args::default();
    while let Some(arg) = lx.next_arg()? {
        let opt = match arg {
            Arg::Positional(p) if a.root.is_none() => {
                a.root = Some(p.into());
                continue;
            }
            Arg::Positional(p) => return Err(args::unexpected(&p)),
            Arg::Short(s) if s == "h" => return Ok(Parsed::Help(help(name))),
            Arg::Short(_) => return Err(lx.unknown()),
            Arg::Long(opt) => opt,
        };
        if a.session.take(&opt, &mut lx)? {
            continue;
        }
        match opt.as_str() {
            "help" => {
                lx.no_value()?;
                return Ok(Parsed::Help(help(name)));
            }
            // Repeatable: one listener (per thread) on each.
            "listen" => a.listen.push(lx.parse(|s| {
                s.parse()
                    .map_err(|_| "want ADDR:PORT, e.g. 0.0.0.0:21 or [::1]:2121".to_owned())
            })?),
            "threads" => a.threads = Some(lx.once()?.parse(|s| count(s, 1, MAX_THREADS))?),
            "engine" => a.engine = lx.once()?.parse(str::parse)?,
            "max-sessions" => a.max_sessions = lx.once()?.parse(|s| count(s, 1, usize::MAX))?,
            "max-per-ip" => {
                a.max_per_ip = lx
                    .once()?
                    .parse(|s| s.parse().map_err(|_| "want a whole number".to_owned()))?
            }
            "shutdown-timeout" => a.shutdown_timeout = lx.once()?.parse(|s| args::seconds(s, 0))?,
            "user" => a.user = Some(lx.once()?.parse(|s| Ok(s.to_owned()))?),
            _ => return Err(lx.unknown()),
        }
    }
    Ok(Parsed::Run(a))
}

/// Reads a whole number from `min` to `max`.
fn count(s: &str, min: usize, max: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == usize::MAX => Err(format!("want a whole number, at least {min}")),
        _ => Err(format!("want a whole number from {min} to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Args {
        match parse("s", args) {
            Ok(Parsed::Run(a)) => a,
            Ok(Parsed::Help(_)) => panic!("{args:?}: help"),
            Err(Fail::Usage(e) | Fail::Temp(e)) => panic!("{args:?}: {e}"),
        }
    }

    fn usage(args: &[&str]) -> String {
        match parse("s", args) {
            Err(Fail::Usage(e)) => e,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_repeats() {
        let a = run(&["--listen", "127.0.0.1:21", "--listen=[::1]:2121", "/srv"]);
        assert_eq!(
            a.listen,
            ["127.0.0.1:21", "[::1]:2121"].map(|s| s.parse::<SocketAddr>().unwrap())
        );
        assert_eq!(a.threads, None);
        assert_eq!(a.max_sessions, 10000);
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
            "--engine=epoll",
            "--max-sessions",
            "7",
            "--max-per-ip",
            "0",
            "--shutdown-timeout",
            "0",
            "--user",
            "ftp",
        ]);
        assert_eq!(a.threads, Some(3));
        assert_eq!(a.engine, Engine::Epoll);
        assert_eq!(a.max_sessions, 7);
        assert_eq!(a.max_per_ip, 0);
        assert_eq!(a.shutdown_timeout, Duration::ZERO);
        assert_eq!(a.user.as_deref(), Some("ftp"));
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
        assert!(usage(&["--engine", "kqueue"]).starts_with("bad --engine \"kqueue\""));
    }

    #[test]
    fn usage_errors() {
        for (args, want) in [
            (&["--bogus"][..], "unknown option --bogus"),
            (&["-x"], "unknown option -x"),
            (&["--listen", "nope"], "bad --listen \"nope\""),
            (&["--listen"], "--listen needs a value"),
            (&["--threads", "0"], "bad --threads \"0\""),
            (&["--threads", "1025"], "bad --threads \"1025\""),
            (&["--max-sessions", "0"], "bad --max-sessions \"0\""),
            (&["--max-per-ip", "-1"], "bad --max-per-ip \"-1\""),
            (&["--shutdown-timeout", "soon"], "bad --shutdown-timeout"),
            (&["--user"], "--user needs a value"),
            (
                &["--user", "a", "--user", "b"],
                "--user given more than once",
            ),
            (
                &["--threads=2", "--threads=2"],
                "--threads given more than once",
            ),
            (&["/a", "/b"], "unexpected argument \"/b\""),
            (&["--timeout", "0"], "bad --timeout \"0\""),
            (&["--help=x"], "--help takes no value"),
        ] {
            let e = usage(args);
            assert!(e.starts_with(want), "{args:?}: {e:?}");
            // One line about the option, one pointing at --help.
            assert_eq!(e.lines().count(), 2, "{e:?}");
            assert!(e.ends_with("Try 's --help' for more information."), "{e:?}");
        }
    }

    #[test]
    fn help() {
        for args in [&["--help"][..], &["-h"], &["/srv", "--help", "--bogus"]] {
            let Ok(Parsed::Help(text)) = parse("s", args) else {
                panic!("{args:?}: no help");
            };
            assert!(
                text.starts_with("Usage: s [OPTIONS] [--] [ROOT]\n"),
                "{text}"
            );
            for opt in [
                "--listen",
                "--max-per-ip",
                "--timeout",
                "--no-sandbox",
                "-h, --help",
            ] {
                assert!(text.contains(opt), "{opt} not in help");
            }
            for line in text.lines() {
                assert!(line.len() < 80, "{line:?}");
            }
        }
        // After `--`, "--help" is a ROOT.
        assert_eq!(run(&["--", "--help"]).root, Some(PathBuf::from("--help")));
        // An option's value, even one that reads "--help".
        assert_eq!(run(&["--user", "--help"]).user.as_deref(), Some("--help"));
    }
}
