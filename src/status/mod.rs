//! `aftpd-status`: the sessions open now, as pure-ftpwho shows them:
//! who, since when, idle for how long, the last command, the transfer in
//! progress with its bytes and rate. It asks `aftpd-supervisor` on its
//! control socket (`--control PATH`), and reads the status files `ftpd`
//! sessions keep (`--dir DIR`).

pub mod cli;
pub mod table;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::core::clock::Now;
use crate::monitor::row::Row;
use crate::monitor::statusfile;
use crate::setup::cli::{Parsed, program_name};
use crate::setup::{self, Fail};

use self::cli::Args;

/// How long the supervisor may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest answer read (a few hundred bytes a session).
const MAX_ANSWER: u64 = 64 << 20;

pub fn main() -> ExitCode {
    let name = program_name("aftpd-status");
    let args = match cli::from_env(&name) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(f) => return setup::report(&name, &f),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => setup::report(&name, &f),
    }
}

/// What one source said.
#[derive(Debug, Default)]
pub struct Answer {
    pub rows: Vec<Row>,
    /// A note for the heading (workers that did not answer in time).
    pub note: Option<String>,
}

fn run(args: &Args) -> Result<(), Fail> {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    if let Some(path) = &args.control {
        let a = ask(path).map_err(|e| Fail::temporary(format!("{}: {e}", path.display())))?;
        rows.extend(a.rows);
        notes.extend(a.note);
    }
    if let Some(dir) = &args.dir {
        let found = statusfile::read_dir(dir)
            .map_err(|e| Fail::temporary(format!("{}: {e}", dir.display())))?;
        rows.extend(found);
    }
    let out = if args.raw {
        rows.iter().map(Row::line).collect()
    } else {
        table::render(&rows, &notes, Now::get().unix())
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Fail::temporary(format!("standard output: {e}")))
}

/// Asks the supervisor listening on the control socket at `path`.
pub fn ask(path: &Path) -> io::Result<Answer> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(b"status\n")?;
    let mut text = String::new();
    s.take(MAX_ANSWER).read_to_string(&mut text)?;
    parse_answer(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "not an answer from aftpd-supervisor",
        )
    })
}

/// Reads the supervisor's answer: its heading, a line per session, `end`.
fn parse_answer(text: &str) -> Option<Answer> {
    let mut lines = text.lines();
    let head = lines.next()?;
    let fields: Vec<(&str, &str)> = head
        .strip_prefix("status ")?
        .split(' ')
        .map(|w| w.split_once('='))
        .collect::<Option<_>>()?;
    let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let sessions: usize = get("sessions")?.parse().ok()?;
    let stale: usize = get("stale")?.parse().ok()?;
    let mut rows = Vec::with_capacity(sessions);
    for line in lines.by_ref() {
        if line == "end" {
            let note = (stale > 0).then(|| {
                format!("{stale} worker(s) did not answer in time: their sessions are missing")
            });
            return (rows.len() == sessions && lines.next().is_none())
                .then_some(Answer { rows, note });
        }
        rows.push(Row::parse(line)?);
    }
    // No `end`: cut short.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        let row = "session pid=1 peer=- since=1 active=1 at=1 user=- cmd=- xfer=- path=- bytes=0 seconds=0.000";
        let ok = format!("status pid=1 at=5 sessions=1 workers=2 stale=0\n{row}\nend\n");
        let a = parse_answer(&ok).unwrap();
        assert_eq!((a.rows.len(), a.note), (1, None));
        let stale = ok.replace("stale=0", "stale=1");
        assert!(
            parse_answer(&stale)
                .unwrap()
                .note
                .unwrap()
                .contains("1 worker")
        );
        assert!(
            parse_answer(&ok.replace("\nend\n", "\n")).is_none(),
            "cut short"
        );
        assert!(parse_answer(&ok.replace("sessions=1", "sessions=2")).is_none());
        assert!(parse_answer(&ok.replace("pid=1 peer", "pid=x peer")).is_none());
        assert!(parse_answer("error unknown request\n").is_none());
        assert!(parse_answer(&format!("{ok}junk\n")).is_none());
    }
}
