//! A small command-line lexer, shared by `ftpd` and `aftpd-supervisor`.
//!
//! It splits the arguments into options and positionals; what an option
//! means, and whether it takes a value, is for the caller to say: on
//! [`Arg::Long`] the caller asks [`Lexer::value`] (or [`Lexer::parse`]) for
//! the value only when the option has one, so the lexer needs no table of
//! options. The syntax, the common one of getopt_long:
//!
//! - `--name` is an option; its value, if it takes one, is either the next
//!   argument, whatever it looks like (`--xferlog -log` names the file
//!   `-log`), or what follows `=` (`--timeout=120`);
//! - `-h` is the one short option; any other `-x` is an unknown option;
//! - `--` ends the options: every later argument is a positional, even one
//!   starting with `-`;
//! - anything else (including `-` alone) is a positional, wherever it is.
//!
//! Values are `OsString`s, so a path need not be UTF-8; [`Lexer::parse`]
//! wants UTF-8 and says so when it is not.
//!
//! The project used the `argh` crate for this. It goes because `argh` needs
//! a proc-macro crate, and with `crt-static` applied to host builds Cargo
//! cannot build proc-macros; a lexer this size is cheaper than the
//! dependency was.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A bad command line: one line that names the option at fault. The
/// program prints it after its name, with a hint to try `--help`, and
/// exits 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// One item of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `--name` or `--name=value`: the name without the dashes. A value
    /// after `=` waits for [`Lexer::value`].
    Long(String),
    /// `-x...`: what follows the dash (`"h"` for `-h`).
    Short(String),
    /// Anything else, and everything after `--`.
    Positional(OsString),
}

/// Hands out the arguments one [`Arg`] at a time.
#[derive(Debug)]
pub struct Lexer {
    args: std::vec::IntoIter<OsString>,
    /// The option last returned, as the user wrote it (`--timeout`), for
    /// error messages.
    current: String,
    /// The value of `--name=value`, until the caller takes it.
    attached: Option<OsString>,
    /// After `--`: every argument is a positional.
    positional_only: bool,
    /// The options given so far that may be given only once (see
    /// [`Lexer::once`]).
    given: Vec<String>,
}

impl Lexer {
    /// A lexer over `args`, without the program name.
    pub fn new<I>(args: I) -> Lexer
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        Lexer {
            args: args
                .into_iter()
                .map(Into::into)
                .collect::<Vec<_>>()
                .into_iter(),
            current: String::new(),
            attached: None,
            positional_only: false,
            given: Vec::new(),
        }
    }

    /// The process's arguments, and the program's name for messages: the
    /// last component of `argv[0]`, or `default` when there is none.
    pub fn from_env(default: &str) -> (String, Lexer) {
        let mut args = std::env::args_os();
        let name = args
            .next()
            .as_deref()
            .and_then(|a0| Path::new(a0).file_name())
            .and_then(OsStr::to_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(default)
            .to_owned();
        (name, Lexer::new(args))
    }

    /// The next argument, or `None` at the end.
    ///
    /// Errors when the option before took no value but was given one with
    /// `=` (`--syslog=yes`).
    pub fn next_arg(&mut self) -> Result<Option<Arg>, UsageError> {
        self.no_value()?;
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        if self.positional_only {
            return Ok(Some(Arg::Positional(arg)));
        }
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            self.positional_only = true;
            return self.next_arg();
        }
        if let Some(rest) = bytes.strip_prefix(b"--") {
            let (name, value) = match rest.iter().position(|&b| b == b'=') {
                Some(eq) => (&rest[..eq], Some(&rest[eq + 1..])),
                None => (rest, None),
            };
            // A name that is not UTF-8 matches no option; it is shown as
            // well as it can be in the error.
            let name = String::from_utf8_lossy(name).into_owned();
            self.current = format!("--{name}");
            self.attached = value.map(|v| OsStr::from_bytes(v).to_owned());
            return Ok(Some(Arg::Long(name)));
        }
        if let Some(rest) = bytes.strip_prefix(b"-").filter(|r| !r.is_empty()) {
            let short = String::from_utf8_lossy(rest).into_owned();
            self.current = format!("-{short}");
            return Ok(Some(Arg::Short(short)));
        }
        Ok(Some(Arg::Positional(arg)))
    }

    /// Checks that the option just returned, which takes no value, was
    /// not given one with `=`. [`Lexer::next_arg`] checks it too, so only an
    /// option after which the caller stops reading (`--help`) needs this.
    pub fn no_value(&mut self) -> Result<(), UsageError> {
        match self.attached.take() {
            Some(_) => Err(UsageError(format!("{} takes no value", self.current))),
            None => Ok(()),
        }
    }

    /// The value of the option just returned: what followed its `=`, or
    /// else the next argument, taken as it is.
    pub fn value(&mut self) -> Result<OsString, UsageError> {
        if let Some(v) = self.attached.take() {
            return Ok(v);
        }
        self.args
            .next()
            .ok_or_else(|| UsageError(format!("{} needs a value", self.current)))
    }

    /// The value of the option just returned, read by `read`, which says
    /// what it wants when the value does not do (`"want ls or eplf"`).
    pub fn parse<T>(
        &mut self,
        read: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, UsageError> {
        let raw = self.value()?;
        let Some(text) = raw.to_str() else {
            return Err(UsageError(format!(
                "bad {} {:?}: not UTF-8",
                self.current,
                raw.to_string_lossy()
            )));
        };
        read(text).map_err(|want| UsageError(format!("bad {} {text:?}: {want}", self.current)))
    }

    /// Says that the option just returned may be given only once: errors
    /// the second time. (Switches may repeat; they mean the same twice.)
    pub fn once(&mut self) -> Result<&mut Lexer, UsageError> {
        if self.given.contains(&self.current) {
            return Err(UsageError(format!("{} given more than once", self.current)));
        }
        self.given.push(self.current.clone());
        Ok(self)
    }

    /// The error for an option that no one took.
    pub fn unknown(&self) -> UsageError {
        UsageError(format!("unknown option {}", self.current))
    }
}

/// A positional argument nobody wants, or a ROOT given twice.
pub fn unexpected(arg: &OsStr) -> UsageError {
    UsageError(format!(
        "unexpected argument {:?}: only one ROOT",
        arg.to_string_lossy()
    ))
}

/// Reads a whole number of seconds for a timeout option: at least `min`,
/// and at most a year, which keeps deadlines far from the end of the
/// clock (adding a huge timeout to the time would overflow).
pub fn seconds(text: &str, min: u64) -> Result<std::time::Duration, String> {
    const MAX: u64 = 365 * 24 * 3600;
    match text.parse::<u64>() {
        Ok(n) if (min..=MAX).contains(&n) => Ok(std::time::Duration::from_secs(n)),
        _ => Err(format!("want whole seconds, {min} to {MAX} (a year)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn all(args: &[&str]) -> Result<Vec<Arg>, UsageError> {
        let mut lx = Lexer::new(args.iter().copied());
        let mut out = Vec::new();
        while let Some(a) = lx.next_arg()? {
            out.push(a);
        }
        Ok(out)
    }

    fn long(n: &str) -> Arg {
        Arg::Long(n.into())
    }

    fn pos(p: &str) -> Arg {
        Arg::Positional(p.into())
    }

    #[test]
    fn kinds_of_argument() {
        assert_eq!(
            all(&["--syslog", "/srv", "-h", "-", "--x-y"]),
            Ok(vec![
                long("syslog"),
                pos("/srv"),
                Arg::Short("h".into()),
                pos("-"),
                long("x-y"),
            ])
        );
        assert_eq!(all(&[]), Ok(vec![]));
    }

    #[test]
    fn double_dash_ends_the_options() {
        assert_eq!(
            all(&["--syslog", "--", "--timeout", "-h", "--"]),
            Ok(vec![long("syslog"), pos("--timeout"), pos("-h"), pos("--")])
        );
    }

    #[test]
    fn values_next_or_attached() {
        let mut lx = Lexer::new(["--timeout", "5", "--xferlog=/a=b", "--user=", "/srv"]);
        assert_eq!(lx.next_arg(), Ok(Some(long("timeout"))));
        assert_eq!(lx.value(), Ok("5".into()));
        assert_eq!(lx.next_arg(), Ok(Some(long("xferlog"))));
        assert_eq!(lx.value(), Ok("/a=b".into()));
        assert_eq!(lx.next_arg(), Ok(Some(long("user"))));
        assert_eq!(lx.value(), Ok("".into()));
        assert_eq!(lx.next_arg(), Ok(Some(pos("/srv"))));
        assert_eq!(lx.next_arg(), Ok(None));
    }

    #[test]
    fn the_next_argument_is_a_value_whatever_it_looks_like() {
        for v in ["--help", "-h", "--", "-5"] {
            let mut lx = Lexer::new(["--xferlog", v]);
            assert_eq!(lx.next_arg(), Ok(Some(long("xferlog"))));
            assert_eq!(lx.value(), Ok(v.into()));
            assert_eq!(lx.next_arg(), Ok(None));
        }
    }

    #[test]
    fn missing_value() {
        let mut lx = Lexer::new(["--timeout"]);
        assert_eq!(lx.next_arg(), Ok(Some(long("timeout"))));
        assert_eq!(
            lx.value(),
            Err(UsageError("--timeout needs a value".into()))
        );
    }

    #[test]
    fn a_switch_given_a_value() {
        let mut lx = Lexer::new(["--syslog=yes"]);
        assert_eq!(lx.next_arg(), Ok(Some(long("syslog"))));
        assert_eq!(
            lx.next_arg(),
            Err(UsageError("--syslog takes no value".into()))
        );
    }

    #[test]
    fn parse_names_option_and_value() {
        let mut lx = Lexer::new(["--timeout=soon"]);
        lx.next_arg().unwrap();
        assert_eq!(
            lx.parse(|s| seconds(s, 1)),
            Err(UsageError(
                "bad --timeout \"soon\": want whole seconds, 1 to 31536000 (a year)".into()
            ))
        );
    }

    #[test]
    fn once_refuses_a_repeat() {
        let mut lx = Lexer::new(["--timeout", "5", "--pasv-address", "a", "--timeout=6"]);
        lx.next_arg().unwrap();
        assert_eq!(lx.once().and_then(|l| l.value()), Ok("5".into()));
        lx.next_arg().unwrap();
        assert!(lx.value().is_ok());
        lx.next_arg().unwrap();
        assert_eq!(
            lx.once().err(),
            Some(UsageError("--timeout given more than once".into()))
        );
    }

    #[test]
    fn unknown_names_what_was_written() {
        let mut lx = Lexer::new(["--bogus=1", "-x"]);
        lx.next_arg().unwrap();
        assert_eq!(lx.unknown(), UsageError("unknown option --bogus".into()));
        let _ = lx.value();
        assert_eq!(lx.next_arg(), Ok(Some(Arg::Short("x".into()))));
        assert_eq!(lx.unknown(), UsageError("unknown option -x".into()));
    }

    #[test]
    fn values_need_not_be_utf8() {
        let path = OsString::from_vec(b"/srv/\xff".to_vec());
        let mut lx = Lexer::new([OsString::from("--xferlog"), path.clone(), path.clone()]);
        lx.next_arg().unwrap();
        assert_eq!(lx.value(), Ok(path.clone()));
        assert_eq!(lx.next_arg(), Ok(Some(Arg::Positional(path.clone()))));
        // Where the value must be text, the error says so.
        let mut lx = Lexer::new([OsString::from("--timeout"), path]);
        lx.next_arg().unwrap();
        assert!(
            lx.parse(|s| seconds(s, 1))
                .unwrap_err()
                .0
                .contains("not UTF-8")
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(seconds("1", 1), Ok(std::time::Duration::from_secs(1)));
        assert_eq!(seconds("0", 0), Ok(std::time::Duration::ZERO));
        assert!(seconds("0", 1).is_err());
        assert!(seconds("-1", 0).is_err());
        assert!(seconds("31536001", 1).is_err());
        assert!(seconds("18446744073709551615", 1).is_err());
        assert!(seconds("", 1).is_err());
    }
}
