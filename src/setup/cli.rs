//! Reading a command line with `argh`, the same way for both programs:
//! `--opt value` (argh has no `--opt=value`), options before or after the
//! positional arguments, `--` to end them, `-h`/`--help` for the help.
//! What differs from argh's own `from_env`: a usage error is one line
//! (the program adds its name) and exit 100, not 1; the help is laid out
//! here, from the same declaration argh parses (`ArgsInfo`), with each
//! option's value named beside it.

use std::ffi::OsString;
use std::path::Path;

use argh::{ArgsInfo, FlagInfo, FlagInfoKind, FromArgs};

use super::Fail;
use super::options::SessionOptions;

/// What a command line asks for.
#[derive(Debug)]
pub enum Parsed<T> {
    Run(T),
    /// `-h` or `--help`: print this and exit 0.
    Help(String),
}

/// The parts of a program's `--help` that are not its options.
#[derive(Debug, Clone, Copy)]
pub struct Help {
    /// After `Usage: NAME `: `[OPTIONS] [--] ROOT`.
    pub usage: &'static str,
    /// What the program does, before the arguments.
    pub about: &'static str,
    /// When the program has options of its own: the heading of the
    /// session options, which then come after its own.
    pub session_heading: Option<&'static str>,
    /// After the options: notes, exit codes, examples.
    pub tail: &'static str,
}

/// The program's name for messages: the last component of `argv[0]`, or
/// `default` when there is none.
pub fn program_name(default: &str) -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .and_then(|a0| Path::new(a0).file_name())
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(default)
        .to_owned()
}

/// The process's arguments (without the program name), read as `T` and
/// then by `check` (which turns them into the program's settings), with
/// the program's help.
pub fn from_env<T: FromArgs + ArgsInfo, A>(
    name: &str,
    help: &Help,
    check: impl FnOnce(T) -> Result<A, Fail>,
) -> Result<Parsed<A>, Fail> {
    let args = utf8(std::env::args_os().skip(1)).map_err(|f| hint(name, f))?;
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match read(name, &refs, check)? {
        Parsed::Run(a) => Ok(Parsed::Run(a)),
        Parsed::Help(_) => Ok(Parsed::Help(render::<T>(name, help))),
    }
}

/// Arguments as text: argh reads `&str`, so an argument that is not UTF-8
/// (a path in another encoding) is a usage error that says which.
fn utf8(args: impl Iterator<Item = OsString>) -> Result<Vec<String>, Fail> {
    args.enumerate()
        .map(|(i, a)| {
            a.into_string().map_err(|a| {
                Fail::usage(format!(
                    "argument {} is not UTF-8: {:?}",
                    i + 1,
                    a.to_string_lossy()
                ))
            })
        })
        .collect()
}

/// Reads `args` (without the program name) as `T`, then by `check`. A
/// usage error is one line that names the option at fault and ends with a
/// pointer to `--help`. On `--help` the text is argh's own (empty: the
/// crate is built without its help); [`from_env`] puts the program's in
/// its place.
pub fn read<T: FromArgs, A>(
    name: &str,
    args: &[&str],
    check: impl FnOnce(T) -> Result<A, Fail>,
) -> Result<Parsed<A>, Fail> {
    let checked = match T::from_args(&[name], args) {
        Ok(t) => check(t),
        Err(e) if e.status.is_ok() => return Ok(Parsed::Help(e.output)),
        Err(e) => Err(Fail::usage(explain(one_line(&e.output)))),
    };
    checked.map(Parsed::Run).map_err(|f| hint(name, f))
}

/// argh's message, with a word on `--opt=value`, a form it does not read.
fn explain(msg: String) -> String {
    let attached = msg
        .strip_prefix("Unrecognized argument: ")
        .and_then(|arg| arg.split_once('='))
        .filter(|(opt, _)| opt.starts_with("--"));
    match attached {
        Some((opt, value)) => {
            format!("{msg}: an option's value is the next argument ({opt} {value})")
        }
        None => msg,
    }
}

/// Reads `args` as `T`, nothing more.
pub fn parse<T: FromArgs>(name: &str, args: &[&str]) -> Result<Parsed<T>, Fail> {
    read(name, args, Ok)
}

fn hint(name: &str, f: Fail) -> Fail {
    Fail {
        message: format!("{} (try '{name} --help')", f.message),
        ..f
    }
}

/// argh's message on one line: its parts joined, without the trailing
/// newline.
fn one_line(msg: &str) -> String {
    let parts: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    parts.join(" ")
}

/// The one ROOT among `positionals`: an error when there are more, or
/// (`required`) none.
pub fn one_root(positionals: &[String], required: bool) -> Result<Option<&str>, Fail> {
    match positionals {
        [] if required => Err(Fail::usage("missing ROOT, the directory to serve")),
        [] => Ok(None),
        [root] => Ok(Some(root)),
        [_, extra, ..] => Err(Fail::usage(format!(
            "unexpected argument {extra:?}: only one ROOT"
        ))),
    }
}

/// Where an option's description starts.
const COLUMN: usize = 26;
/// Help lines stay shorter than this.
const WIDTH: usize = 80;

/// The `--help` of `T` for the program called `name`.
pub fn render<T: ArgsInfo>(name: &str, help: &Help) -> String {
    let info = T::get_args_info();
    let mut out = format!("Usage: {name} {}\n\n{}", help.usage, help.about);
    if !info.positionals.is_empty() {
        out.push_str("\nArguments:\n");
        for p in info.positionals {
            entry(&mut out, p.name, p.description);
        }
    }
    let session = SessionOptions::names();
    let flags: Vec<&FlagInfo> = info
        .flags
        .iter()
        .filter(|f| f.long != "--help" && !f.hidden)
        .collect();
    let (own, shared): (Vec<&FlagInfo>, Vec<&FlagInfo>) = match help.session_heading {
        Some(_) => flags.iter().partition(|f| !session.contains(&f.long)),
        None => (flags, Vec::new()),
    };
    out.push_str("\nOptions:\n");
    for f in own {
        flag(&mut out, f);
    }
    entry(&mut out, "-h, --help", "print this help and exit");
    if let Some(heading) = help.session_heading {
        out.push_str(&format!("\n{heading}\n"));
        for f in shared {
            flag(&mut out, f);
        }
    }
    out.push_str(help.tail);
    out
}

fn flag(out: &mut String, f: &FlagInfo) {
    match f.kind {
        FlagInfoKind::Switch => entry(out, f.long, f.description),
        FlagInfoKind::Option { arg_name } => {
            entry(out, &format!("{} {arg_name}", f.long), f.description)
        }
    }
}

/// One entry of a list: `  NAME` and its description from [`COLUMN`],
/// wrapped; on the next line when the name is too long.
fn entry(out: &mut String, name: &str, description: &str) {
    let mut line = format!("  {name}");
    if line.len() >= COLUMN {
        out.push_str(&line);
        out.push('\n');
        line.clear();
    }
    for word in description.split_whitespace() {
        if line.len() > COLUMN && line.len() + 1 + word.len() >= WIDTH {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if line.len() < COLUMN {
            line.push_str(&" ".repeat(COLUMN - line.len()));
        } else {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_wrap_at_the_column() {
        let mut out = String::new();
        entry(&mut out, "--timeout SECS", &"word ".repeat(30));
        for line in out.lines() {
            assert!(line.len() < WIDTH, "{line:?}");
        }
        assert!(out.starts_with("  --timeout SECS          word word"));
        assert!(
            out.lines()
                .skip(1)
                .all(|l| l.starts_with(&" ".repeat(COLUMN)))
        );
        let mut out = String::new();
        entry(&mut out, "--pasv-address [NET/PREFIX=]ADDR", "text");
        assert_eq!(
            out,
            format!(
                "  --pasv-address [NET/PREFIX=]ADDR\n{}text\n",
                " ".repeat(COLUMN)
            )
        );
    }

    #[test]
    fn usage_errors_are_one_line() {
        assert_eq!(
            one_line("Unrecognized argument: --x\n"),
            "Unrecognized argument: --x"
        );
        assert_eq!(one_line("Required:\n    a\n    b\n"), "Required: a b");
    }

    #[test]
    fn attached_values_are_explained() {
        assert_eq!(
            explain("Unrecognized argument: --timeout=5".into()),
            "Unrecognized argument: --timeout=5: an option's value is the next argument (--timeout 5)"
        );
        assert_eq!(
            explain("Unrecognized argument: -x".into()),
            "Unrecognized argument: -x"
        );
    }

    #[test]
    fn arguments_must_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("--xferlog"),
            OsString::from_vec(b"/\xff".to_vec()),
        ];
        let e = utf8(args.into_iter()).unwrap_err();
        assert_eq!(e.exit, super::super::Exit::Usage);
        assert!(e.message.starts_with("argument 2 is not UTF-8"), "{e}");
    }

    #[test]
    fn roots() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(one_root(&v(&["/a"]), true), Ok(Some("/a")));
        assert_eq!(one_root(&v(&[]), false), Ok(None));
        assert!(
            one_root(&v(&[]), true)
                .unwrap_err()
                .message
                .contains("missing ROOT")
        );
        let e = one_root(&v(&["/a", "/b"]), false).unwrap_err();
        assert_eq!(e.message, "unexpected argument \"/b\": only one ROOT");
    }
}
