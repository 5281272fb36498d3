//! `aftpd-status`: the sessions open now, from the supervisor's control
//! socket (`--control`, both engines) and from ftpd's status files
//! (`--status-dir`, as root with a chroot and through setpriv), with the
//! real binaries.

#[allow(unused_macros)]
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::client::connect_tuned;
use common::tools::{Output, run};
use common::{Client, Family, Kind, Opts, Server, Tree, is_root};

fn status(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aftpd-status"));
    cmd.args(args);
    run(cmd, Duration::from_secs(30))
}

/// A `--raw` line's fields.
fn fields(line: &str) -> HashMap<String, String> {
    let mut words = line.split(' ');
    assert_eq!(words.next(), Some("session"), "{line:?}");
    words
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("{w:?} in {line:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The sessions `aftpd-status ARGS --raw` shows, by peer.
fn sessions(args: &[&str]) -> HashMap<String, HashMap<String, String>> {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--raw");
    let out = status(&all);
    out.assert_success("aftpd-status --raw");
    out.stdout_text()
        .lines()
        .map(fields)
        .map(|f| (f["peer"].clone(), f))
        .collect()
}

/// Waits (bounded) until `pred` holds for what `aftpd-status ARGS` shows.
fn wait_for(
    args: &[&str],
    what: &str,
    pred: impl Fn(&HashMap<String, HashMap<String, String>>) -> bool,
) -> HashMap<String, HashMap<String, String>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = sessions(args);
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never {what}: {s:#?}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A download the server sends at its --max-rate, read by nobody: it
/// stays in progress.
struct Downloading {
    control: Client,
    _data: std::net::TcpStream,
}

fn start_download(server: &Server) -> Downloading {
    let mut control = Client::login(server, Family::V4);
    let addr = control.pasv();
    let data = connect_tuned(addr, None, None).unwrap();
    control.send(b"RETR big");
    assert_eq!(control.reply().code, 150);
    Downloading {
        control,
        _data: data,
    }
}

fn peer_of(c: &Client) -> String {
    c.local_addr().to_string()
}

/// The supervisor answers on its control socket, mode 0600, with a line
/// per session; a client that stalls there holds up no session, and
/// another request is answered once it is dropped.
fn the_supervisor_shows_its_sessions(kind: Kind) {
    let tree = Tree::new();
    tree.big_file("big", 64 << 20);
    let control = tree.scratch("run").join("control");
    let path = control.to_str().unwrap().to_owned();
    let opts = Opts::new()
        .arg("--control")
        .arg(&path)
        .arg("--max-rate")
        .arg("1M");
    let mut server = Server::start(kind, &tree, opts.clone());
    server.wait_log_line("naming the control socket", |l| l.contains(" control="));
    let meta = std::fs::metadata(&control).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        meta.uid(),
        unsafe { libc::geteuid() },
        "owned by whoever started it"
    );

    let mut idle = Client::login(&server, Family::V4);
    let busy = start_download(&server);
    let (a, b) = (peer_of(&idle), peer_of(&busy.control));
    let args = ["--control", path.as_str()];
    let s = wait_for(&args, "showing the download's progress", |s| {
        s.get(&b).is_some_and(|f| f["bytes"] != "0")
    });
    let x = &s[&a];
    assert_eq!(
        (x["user"].as_str(), x["cmd"].as_str(), x["xfer"].as_str()),
        ("anonymous", "TYPE", "-")
    );
    let y = &s[&b];
    assert_eq!(
        (y["cmd"].as_str(), y["xfer"].as_str(), y["path"].as_str()),
        ("RETR", "retr", "/big")
    );
    let pid = server.pids()[0].to_string();
    assert_eq!(y["pid"], pid);
    assert!(y["seconds"].parse::<f64>().unwrap() > 0.0);

    // The table.
    let out = status(&args);
    out.assert_success("aftpd-status");
    let text = out.stdout_text();
    assert!(text.lines().next().unwrap().contains(" session"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&b))
        .unwrap_or_else(|| panic!("{text}"));
    for want in ["RETR", "retr", "/big", "/s"] {
        assert!(line.contains(want), "{want} in {line:?}");
    }

    // A client that asks nothing: the sessions go on, and the next
    // request is answered once the monitor gives up on it.
    let stalled = UnixStream::connect(&control).unwrap();
    idle.expect("NOOP", 200);
    assert!(sessions(&args).contains_key(&a));
    drop(stalled);
    // An unknown request.
    let mut odd = UnixStream::connect(&control).unwrap();
    odd.write_all(b"hello\n").unwrap();
    let mut answer = String::new();
    odd.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    odd.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("error "), "{answer:?}");

    // The socket outlives the server (it cannot be removed from inside
    // the chroot); the next start replaces it.
    drop((idle, busy));
    server.assert_alive();
    drop(server);
    assert!(control.exists());
    let server = Server::start(kind, &tree, opts);
    server.wait_log_line("naming the control socket", |l| l.contains(" control="));
    let c = Client::login(&server, Family::V4);
    wait_for(&args, "the new server's session", |s| {
        s.contains_key(&peer_of(&c))
    });
}

/// Without a supervisor: exit 111, saying why.
#[test]
fn no_supervisor_is_a_temporary_failure() {
    let tree = Tree::new();
    let path = tree.scratch("run").join("nothing-here");
    let out = status(&["--control", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(111), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("nothing-here"),
        "{}",
        out.stderr_text()
    );
    let out = status(&["--bogus"]);
    assert_eq!(out.status.code(), Some(100));
}

/// Each ftpd session keeps its line in a slot file of --status-dir while
/// it runs; a session that ended is not shown, and its slot serves the
/// next one.
fn ftpd_sessions_show_in_a_directory(kind: Kind) {
    let tree = Tree::new();
    tree.big_file("big", 64 << 20);
    let dir = tree.scratch("status");
    if is_root() && kind == Kind::FtpdSetpriv {
        // setpriv's ftpd runs as 65534 from the start.
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    }
    let d = dir.to_str().unwrap().to_owned();
    let opts = Opts::new()
        .arg("--status-dir")
        .arg(&d)
        .arg("--max-rate")
        .arg("1M");
    let mut server = Server::start(kind, &tree, opts);
    let args = ["--dir", d.as_str()];
    let idle = Client::login(&server, Family::V4);
    let busy = start_download(&server);
    let (a, b) = (peer_of(&idle), peer_of(&busy.control));
    let s = wait_for(&args, "both sessions, the download under way", |s| {
        s.contains_key(&a) && s.get(&b).is_some_and(|f| f["bytes"] != "0")
    });
    let pids: Vec<String> = server.pids().iter().map(u32::to_string).collect();
    for p in [&a, &b] {
        assert!(
            pids.contains(&s[p]["pid"]),
            "{} not among {pids:?}",
            s[p]["pid"]
        );
    }
    assert_eq!(s[&a]["cmd"], "TYPE");
    assert_eq!(
        (s[&b]["cmd"].as_str(), s[&b]["path"].as_str()),
        ("RETR", "/big")
    );
    // The file is private.
    for e in std::fs::read_dir(&dir).unwrap() {
        let m = e.unwrap().metadata().unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
    let mut idle = idle;
    idle.expect("QUIT", 221);
    wait_for(&args, "the ended session gone", |s| {
        !s.contains_key(&a) && s.contains_key(&b)
    });
    // New sessions take free slots: however many come and go, the files
    // stay within 16 (where sessions start looking) of the most
    // sessions at once.
    for _ in 0..40 {
        let mut c = Client::login(&server, Family::V4);
        c.expect("QUIT", 221);
    }
    let again = Client::login(&server, Family::V4);
    wait_for(&args, "the new session", |s| {
        s.contains_key(&peer_of(&again))
    });
    let files = std::fs::read_dir(&dir).unwrap().count();
    // (An ended ftpd may linger for a moment, holding its file.)
    assert!(
        files <= 16 + 10,
        "{files} status files for at most 3 sessions at once"
    );
    drop((again, busy));
    server.assert_alive();
    assert_table_reads(&args);
}

fn assert_table_reads(args: &[&str]) {
    let out = status(args);
    out.assert_success("aftpd-status --dir");
    assert!(out.stdout_text().contains(" UTC"), "{}", out.stdout_text());
}

/// An ftpd given a directory it cannot use says so and exits 111.
#[test]
fn ftpd_without_its_status_directory() {
    let tree = Tree::new();
    let missing = tree.base.join("no-such-dir");
    let mut cmd = Command::new(common::server::ftpd_path());
    common::server::clean_env(&mut cmd);
    cmd.arg("--status-dir").arg(&missing).arg(&tree.root);
    let out = run(cmd, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(111), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("status file"),
        "{}",
        out.stderr_text()
    );
}

mod ftpd {
    #[test]
    fn ftpd_sessions_show_in_a_directory() {
        super::ftpd_sessions_show_in_a_directory(crate::common::Kind::Ftpd)
    }
}

mod ftpd_setpriv {
    #[test]
    fn ftpd_sessions_show_in_a_directory() {
        super::ftpd_sessions_show_in_a_directory(crate::common::Kind::FtpdSetpriv)
    }
}

mod supervisor {
    #[test]
    fn the_supervisor_shows_its_sessions() {
        super::the_supervisor_shows_its_sessions(crate::common::Kind::Supervisor)
    }
}

mod supervisor_uring {
    #[test]
    fn the_supervisor_shows_its_sessions() {
        super::the_supervisor_shows_its_sessions(crate::common::Kind::SupervisorUring)
    }
}
