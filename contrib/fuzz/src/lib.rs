//! What each fuzz target feeds the library and the invariants it checks.
//! Every check is an `assert!`: a violation is a crash libFuzzer saves.
//!
//! Only the library's public API and std are used, so that the main
//! crate's tests/fuzz_regressions.rs can include this file as it is and
//! replay every saved input on the stable compiler.
//!
//! - [`command_line`]: Telnet removal and line splitting
//!   (`proto::telnet::LineReader`), then command parsing
//!   (`proto::command::parse`).
//! - [`vpath`]: the virtual-path normaliser (`vpath::VPath::resolve`).
//! - [`addr`]: PORT and EPRT arguments (`proto::addr`).
//! - [`session`]: the whole session core over a real temporary tree, its
//!   driver events (listener bound, data connection up, transfer ended,
//!   time passing, output written, EOF) chosen by the input too.
//! - [`fs`]: lookups and listings of the served tree (`fs::Root`,
//!   `fs::dir::DirReader`) over symlinks, private directories, hidden
//!   names and special files, against an oracle (see `fs_target.rs`).

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use aftpd::core::clock::Now;
use aftpd::core::config::SessionConfig;
use aftpd::core::listing::ListFormat;
use aftpd::core::proto::addr::{EprtError, parse_eprt, parse_port};
use aftpd::core::proto::command::{self, Command};
use aftpd::core::proto::telnet::{Line, LineReader, MAX_LINE};
use aftpd::core::session::{Action, DataConn, Endpoints, Record, Session, Source, TransferError};
use aftpd::core::vpath::{VPath, VPathError};
use aftpd::fs::Root;

mod fs_target;
pub use fs_target::fs_lookups as fs;

const IAC: u8 = 255;
const DONT: u8 = 254;
const WONT: u8 = 252;

// ---------------------------------------------------------------------
// The command line.

/// The first byte is a chunk size: the rest is fed once whole and once in
/// chunks of that size, which must give the same lines and the same
/// Telnet refusals. Every line is bounded and LF-free; every refusal is
/// `IAC DONT x` or `IAC WONT x`; what stays buffered is at most one line.
/// Each line is parsed, and parsing does not depend on the verb's case.
pub fn command_line(data: &[u8]) {
    let Some((&k, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(k) + 1;
    let (lines, replies, rest) = read_lines(input, input.len().max(1));
    let (lines2, replies2, rest2) = read_lines(input, chunk);
    assert_eq!(lines, lines2, "chunking changed the lines");
    assert_eq!(replies, replies2, "chunking changed the refusals");
    assert_eq!(rest, rest2);
    assert!(rest <= MAX_LINE + 1, "{rest} bytes buffered without a line");
    assert_eq!(replies.len() % 3, 0, "{replies:?}");
    for r in replies.chunks(3) {
        assert!(r[0] == IAC && (r[1] == DONT || r[1] == WONT), "{r:?}");
    }
    for line in &lines {
        let Line::Text(t) = line else { continue };
        assert!(t.len() <= MAX_LINE + 1, "a line of {} bytes", t.len());
        assert!(!t.contains(&b'\n'));
        let parsed = command::parse(t);
        // The verb is case-insensitive: the same line with the verb in
        // the other case parses the same.
        let verb_end = t.iter().position(|&b| b == b' ').unwrap_or(t.len());
        let mut swapped = t.clone();
        for b in &mut swapped[..verb_end] {
            if b.is_ascii_alphabetic() {
                *b ^= 0x20;
            }
        }
        assert_eq!(
            parsed,
            command::parse(&swapped),
            "case of the verb mattered"
        );
        check_command(t, &parsed);
    }
}

/// Lines, refusals and the bytes still buffered, feeding `input` in
/// chunks of `chunk` bytes and taking lines after each.
fn read_lines(input: &[u8], chunk: usize) -> (Vec<Line>, Vec<u8>, usize) {
    let mut r = LineReader::new();
    let mut lines = Vec::new();
    let mut replies = Vec::new();
    for c in input.chunks(chunk) {
        r.feed(c);
        while let Some(l) = r.next_line() {
            lines.push(l);
        }
        replies.extend(r.take_replies());
        assert!(r.buffered() <= MAX_LINE + 1, "{} buffered", r.buffered());
    }
    (lines, replies, r.buffered())
}

/// What a parsed command must agree with.
fn check_command(line: &[u8], parsed: &Result<Command, command::ParseError>) {
    let arg = match line.iter().position(|&b| b == b' ') {
        Some(i) => &line[i + 1..],
        None => &[][..],
    };
    match parsed {
        Ok(Command::Port(a)) => assert_eq!(parse_port(arg), Some(*a)),
        Ok(Command::Eprt(a)) => assert_eq!(parse_eprt(arg), Ok(*a)),
        Ok(Command::Rest(_)) => assert!(!arg.is_empty()),
        _ => {}
    }
}

// ---------------------------------------------------------------------
// Virtual paths.

/// The first byte says how much of the rest is a working directory (made
/// with CWD-like resolution from the root); the remainder is the path
/// argument. A resolved path is absolute, normal (no empty, `.` or `..`
/// component, no trailing slash), never hidden, never holds a NUL, and
/// resolving it again, from anywhere, gives it back.
pub fn vpath(data: &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(k).min(rest.len());
    let (cwd_arg, arg) = rest.split_at(split);
    let cwd = VPath::resolve(&VPath::root(), cwd_arg).unwrap_or_else(|_| VPath::root());
    check_vpath(&cwd);
    match VPath::resolve(&cwd, arg) {
        Ok(p) => {
            check_vpath(&p);
            assert_eq!(
                VPath::resolve(&VPath::root(), p.as_bytes()).as_ref(),
                Ok(&p)
            );
            assert_eq!(VPath::resolve(&cwd, p.as_bytes()).as_ref(), Ok(&p));
            assert_eq!(VPath::resolve(&p, b"").as_ref(), Ok(&p));
            assert_eq!(VPath::resolve(&p, b".").as_ref(), Ok(&p));
            assert_eq!(VPath::resolve(&p, b"..").as_ref(), Ok(&p.parent()));
            let rel = p.relative();
            if p.is_root() {
                assert_eq!(rel, b".");
            } else {
                assert_eq!(VPath::resolve(&VPath::root(), rel).as_ref(), Ok(&p));
            }
            for a in p.ancestors() {
                check_vpath(&a);
                assert!(p.as_bytes().starts_with(a.as_bytes()));
            }
            let name = p.name().to_vec();
            if !p.is_root() {
                assert_eq!(p.parent().child(&name).as_ref(), Some(&p));
            }
        }
        Err(VPathError::Nul) => assert!(arg.contains(&0)),
        Err(VPathError::Hidden) => assert!(
            arg.split(|&b| b == b'/')
                .any(|c| c.first() == Some(&b'.') && c != b"." && c != b".."),
            "refused as hidden: {arg:?}"
        ),
    }
}

fn check_vpath(p: &VPath) {
    let b = p.as_bytes();
    assert_eq!(b.first(), Some(&b'/'), "{p:?}");
    assert!(!b.contains(&0), "{p:?}");
    if b.len() > 1 {
        assert_ne!(b.last(), Some(&b'/'), "{p:?}");
        for c in b[1..].split(|&x| x == b'/') {
            assert!(!c.is_empty(), "{p:?}");
            assert_ne!(c[0], b'.', "{p:?}");
        }
    }
}

// ---------------------------------------------------------------------
// PORT and EPRT.

/// Parsing never panics, and what parses formats back to an argument
/// that parses to the same address.
pub fn addr(data: &[u8]) {
    if let Some(a) = parse_port(data) {
        let [h1, h2, h3, h4] = a.ip().octets();
        let (p1, p2) = (a.port() >> 8, a.port() & 0xff);
        let again = format!("{h1},{h2},{h3},{h4},{p1},{p2}");
        assert_eq!(parse_port(again.as_bytes()), Some(a));
    }
    match parse_eprt(data) {
        Ok(a) => {
            assert_ne!(a.port(), 0);
            let (proto, ip) = match a.ip() {
                IpAddr::V4(ip) => (1, ip.to_string()),
                IpAddr::V6(ip) => (2, ip.to_string()),
            };
            let again = format!("|{proto}|{ip}|{}|", a.port());
            assert_eq!(parse_eprt(again.as_bytes()), Ok(a));
        }
        Err(EprtError::Protocol | EprtError::Syntax) => {}
    }
}

// ---------------------------------------------------------------------
// The session.

/// A tree to serve, made once per process: public files and directories,
/// hidden, private and unreadable entries, symlinks in and out, odd names,
/// and a canary outside the root that must never be served.
pub struct Tree {
    pub base: PathBuf,
    pub root: Arc<Root>,
    /// (dev, ino) of every file a transfer may send.
    pub public: HashSet<(u64, u64)>,
}

/// Bytes of the canary outside the root, and of the non-public files
/// inside it: never in anything the session hands out.
pub const CANARY: &[u8] = b"CANARY-fuzz-outside-the-root";
pub const SECRET: &[u8] = b"SECRET-fuzz-not-public";

pub fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| make_tree().expect("cannot make the fuzzing tree"))
}

/// Removes the trees of this process (for tests; a fuzzer just exits).
pub fn remove_tree() {
    let _ = fs::remove_dir_all(&tree().base);
    fs_target::remove_fs_tree();
}

fn make_tree() -> std::io::Result<Tree> {
    let base = std::env::temp_dir().join(format!("aftpd-fuzz-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let root = base.join("root");
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m));
    let file = |rel: &str, body: &[u8], m: u32| -> std::io::Result<()> {
        let p = root.join(rel);
        fs::write(&p, body)?;
        mode(&p, m)
    };
    let dir = |rel: &str, m: u32| -> std::io::Result<()> {
        let p = root.join(rel);
        fs::create_dir_all(&p)?;
        mode(&p, m)
    };
    fs::create_dir_all(&root)?;
    mode(&base, 0o755)?;
    mode(&root, 0o755)?;
    fs::write(base.join("canary.txt"), CANARY)?;
    dir("pub", 0o755)?;
    dir("pub/a", 0o755)?;
    dir("pub/a/b", 0o755)?;
    dir("say\"hi\"", 0o755)?;
    dir("privdir", 0o700)?;
    dir(".git", 0o755)?;
    file("readme", b"read me\nline two\n", 0o644)?;
    file("empty", b"", 0o644)?;
    file("pub/file", &[7u8; 3000], 0o644)?;
    file("pub/a/b/deep", b"deep\n", 0o644)?;
    file("say\"hi\"/q", b"quoted\n", 0o644)?;
    file("caf\u{e9}", b"utf8 name\n", 0o644)?;
    file("privdir/inside", SECRET, 0o644)?;
    file("private", SECRET, 0o600)?;
    file(".hidden", SECRET, 0o644)?;
    file(".git/config", SECRET, 0o644)?;
    file("pub/.dot", SECRET, 0o644)?;
    {
        use std::os::unix::ffi::OsStrExt;
        for name in [
            &b"bin\xffary"[..],
            b"new\nline",
            b"cr\rname",
            b"tab\tname",
            b"x\x01y",
        ] {
            let p = root.join(std::ffi::OsStr::from_bytes(name));
            fs::write(&p, b"odd name\n")?;
            mode(&p, 0o644)?;
        }
    }
    for i in 0..40 {
        file(&format!("pub/a/n{i:02}"), b"n", 0o644)?;
    }
    let link = |target: &Path, rel: &str| std::os::unix::fs::symlink(target, root.join(rel));
    link(Path::new("/etc/passwd"), "escape")?;
    link(Path::new("../../../.."), "up")?;
    link(&base.join("canary.txt"), "abs-out")?;
    link(Path::new("../canary.txt"), "rel-out")?;
    link(Path::new("readme"), "link")?;
    link(Path::new("pub"), "publink")?;
    link(Path::new("loop"), "loop")?;
    link(Path::new("privdir/inside"), "privlink")?;
    let served = Root::open(&root)?;
    let mut public = HashSet::new();
    for rel in [
        "readme",
        "empty",
        "pub/file",
        "pub/a/b/deep",
        "say\"hi\"/q",
        "caf\u{e9}",
    ] {
        let m = fs::metadata(root.join(rel))?;
        public.insert((m.dev(), m.ino()));
    }
    for e in fs::read_dir(&root)?.chain(fs::read_dir(root.join("pub/a"))?) {
        let e = e?;
        let m = fs::symlink_metadata(e.path())?;
        if m.is_file()
            && m.mode() & 0o004 != 0
            && !e.file_name().as_encoded_bytes().starts_with(b".")
        {
            public.insert((m.dev(), m.ino()));
        }
    }
    Ok(Tree {
        base,
        root: Arc::new(served),
        public,
    })
}

/// One whole session, driven by the input: the first byte picks the
/// configuration, then each op byte picks an event (and takes its
/// arguments from the bytes after it):
///
/// - `0..=3`: control bytes (a length byte, then that many bytes), fed
///   only while the session wants input, as a driver would;
/// - `4`: the listener asked for is bound, or fails;
/// - `5`: the data connection is up;
/// - `6`: the transfer ends, complete or with one of its errors;
/// - `7`: time passes (seconds from the next byte), then `on_tick`;
/// - `8`: the driver writes part of the output;
/// - `9`: the client closes the control connection.
///
/// Checked: the control output is well-formed replies (CRLF, a code on
/// every first and last line, bounded lines) and ends with CRLF once all
/// is written; listeners are on the local address; active connections go
/// only to the client, on ports >= 1024; every file handed out is a public
/// file of the tree; listings are CRLF lines naming nothing hidden; no
/// canary or secret is ever in any of it.
pub fn session(data: &[u8]) {
    let t = tree();
    let Some((&cfg, mut input)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        greeting: cfg & 1 == 0,
        idle_timeout: Duration::from_secs(60),
        data_timeout: Duration::from_secs(30),
        list_format: if cfg & 2 == 0 {
            ListFormat::Ls
        } else {
            ListFormat::Eplf
        },
        pasv_ports: None,
        pasv_address: Vec::new(),
    };
    let v6 = cfg & 4 != 0;
    let (local_ip, peer_ip): (IpAddr, IpAddr) = if v6 {
        (Ipv6Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into())
    } else {
        (Ipv4Addr::LOCALHOST.into(), Ipv4Addr::LOCALHOST.into())
    };
    let ends = Endpoints {
        local: Some(SocketAddr::new(local_ip, 21)),
        peer: Some(SocketAddr::new(peer_ip, 40000)),
    };
    let start = Instant::now();
    let mut now = Now {
        mono: start,
        wall: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    };
    let mut s = Session::new(Arc::new(config), Arc::clone(&t.root), ends, now);
    let mut d = Driver::default();
    d.actions(&mut s, local_ip, peer_ip);
    let mut take = |n: usize| -> &[u8] {
        let (a, b) = input.split_at(n.min(input.len()));
        input = b;
        a
    };
    let mut ops = 0;
    while let Some(&op) = take(1).first() {
        ops += 1;
        if ops > 10_000 {
            break;
        }
        match op % 10 {
            0..=3 => {
                let n = take(1).first().map_or(0, |&n| usize::from(n) + 1);
                let bytes = take(n).to_vec();
                if s.wants_control_input() {
                    s.on_control(&bytes, now);
                } else {
                    // A driver would write output first.
                    d.write(&mut s, usize::MAX);
                }
            }
            4 => {
                if d.listen_pending {
                    d.listen_pending = false;
                    let ok = take(1).first().is_none_or(|b| b & 1 == 0);
                    let result = if ok {
                        Ok(SocketAddr::new(local_ip, 50000))
                    } else {
                        Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
                    };
                    s.on_listening(result, now);
                }
            }
            5 => {
                if d.transfer && !d.connected {
                    d.connected = true;
                    s.on_data_connected(now);
                }
            }
            6 => {
                if d.transfer {
                    d.transfer = false;
                    d.connected = false;
                    let how = take(1).first().copied().unwrap_or(0);
                    let e = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
                    let result = match how % 5 {
                        0 => Ok(d.sent),
                        1 => Err(TransferError::Connect(e())),
                        2 => Err(TransferError::Connection(e())),
                        3 => Err(TransferError::Shrunk),
                        _ => Err(TransferError::Source(e())),
                    };
                    s.on_transfer_done(result, now);
                }
            }
            7 => {
                let secs = take(1).first().copied().unwrap_or(1);
                now.mono += Duration::from_secs(u64::from(secs));
                now.wall += Duration::from_secs(u64::from(secs));
                if let Some(deadline) = s.next_deadline() {
                    assert!(deadline >= start, "a deadline before the session");
                }
                s.on_tick(now);
            }
            8 => {
                let n = take(1).first().map_or(1, |&n| usize::from(n) * 97 + 1);
                d.write(&mut s, n);
            }
            _ => s.on_control_eof(now),
        }
        d.actions(&mut s, local_ip, peer_ip);
        if s.is_closed() && d.closed {
            break;
        }
    }
    // The driver writes everything out (a STAT listing comes in batches).
    for _ in 0..10_000 {
        if s.output().is_empty() {
            break;
        }
        d.write(&mut s, usize::MAX);
        d.actions(&mut s, local_ip, peer_ip);
    }
    assert!(s.output().is_empty(), "output never drained");
    check_replies(&d.out);
    assert!(find(&d.out, CANARY).is_none() && find(&d.out, SECRET).is_none());
}

/// What a driver keeps of the session's requests.
#[derive(Default)]
struct Driver {
    /// Every byte written on the control connection.
    out: Vec<u8>,
    listen_pending: bool,
    transfer: bool,
    connected: bool,
    sent: u64,
    closed: bool,
}

impl Driver {
    fn write(&mut self, s: &mut Session, n: usize) {
        let out = s.output();
        let n = n.min(out.len());
        self.out.extend_from_slice(&out[..n]);
        s.consume_output(n);
    }

    fn actions(&mut self, s: &mut Session, local: IpAddr, peer: IpAddr) {
        while let Some(a) = s.poll_action() {
            match a {
                Action::Listen { ip, .. } => {
                    assert_eq!(ip, local, "a listener off the control connection's address");
                    self.listen_pending = true;
                }
                Action::Transfer { conn, source } => {
                    if let DataConn::Active { to, from } = conn {
                        assert_eq!(to.ip(), peer, "FTP bounce: {to}");
                        assert!(to.port() >= 1024, "a privileged port: {to}");
                        assert_eq!(from, local);
                    }
                    self.sent = check_source(source);
                    self.transfer = true;
                    self.connected = false;
                }
                Action::AbortData => {
                    self.listen_pending = false;
                    self.transfer = false;
                    self.connected = false;
                }
                Action::Close => self.closed = true,
                Action::Log(Record::Transfer(t)) => check_vpath(&t.path),
                Action::Log(_) => {}
            }
        }
    }
}

/// Checks what a transfer would send; returns its length.
fn check_source(source: Source) -> u64 {
    match source {
        Source::File {
            file, offset, len, ..
        } => {
            let m = file.metadata().expect("fstat of a file handed out");
            assert!(
                tree().public.contains(&(m.dev(), m.ino())),
                "a file that is not public was handed out"
            );
            assert!(offset.checked_add(len).is_some_and(|end| end <= m.len()));
            len
        }
        Source::Listing(mut lister) => {
            let mut buf = Vec::new();
            let mut done = false;
            for _ in 0..1000 {
                match lister.fill(&mut buf, 4096) {
                    Ok(true) => {
                        done = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(_) => break,
                }
            }
            assert!(done, "a listing of a small tree never ended");
            assert!(find(&buf, CANARY).is_none() && find(&buf, SECRET).is_none());
            for line in buf.split_inclusive(|&b| b == b'\n') {
                assert!(line.ends_with(b"\r\n"), "listing line {line:?}");
                let body = &line[..line.len() - 2];
                assert!(!body.contains(&b'\r') && !body.contains(&b'\n'));
                // The name is the last field (MLSD: after "; ", EPLF: after
                // the tab, ls: after the time); none is hidden.
                for hidden in [
                    &b" .hidden"[..],
                    b" .git",
                    b" .dot",
                    b"\t.hidden",
                    b"\t.git",
                ] {
                    assert!(!body.ends_with(hidden), "hidden name listed: {body:?}");
                }
            }
            buf.len() as u64
        }
    }
}

/// The control output, Telnet refusals removed and IAC IAC undone, is a
/// sequence of well-formed replies ending in CRLF.
fn check_replies(raw: &[u8]) {
    let mut text = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == IAC {
            match raw.get(i + 1) {
                Some(&IAC) => {
                    text.push(IAC);
                    i += 2;
                }
                Some(&(DONT | WONT)) => i += 3,
                other => panic!("a lone IAC in the output, then {other:?}"),
            }
        } else {
            text.push(raw[i]);
            i += 1;
        }
    }
    if text.is_empty() {
        return;
    }
    assert!(text.ends_with(b"\r\n"), "the output ends mid-line");
    let mut open: Option<[u8; 3]> = None;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("a line without CRLF: {line:?}"));
        assert!(
            line.len() <= 4 * MAX_LINE + 512,
            "a reply line of {} bytes",
            line.len()
        );
        // RFC 959: a CR in text is sent as CR NUL.
        for w in line.windows(2) {
            assert!(w[0] != b'\r' || w[1] == 0, "a bare CR in {line:?}");
        }
        assert!(line.last() != Some(&b'\r'));
        let code: Option<[u8; 3]> = (line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit))
            .then(|| [line[0], line[1], line[2]]);
        match open {
            None => {
                let c = code.unwrap_or_else(|| panic!("a reply without a code: {line:?}"));
                assert!(matches!(line[3], b' ' | b'-'), "{line:?}");
                assert!((b'1'..=b'5').contains(&c[0]), "{line:?}");
                if line[3] == b'-' {
                    open = Some(c);
                }
            }
            Some(c) => {
                if code == Some(c) && line[3] == b' ' {
                    open = None;
                }
            }
        }
    }
    assert!(open.is_none(), "a multi-line reply never ended");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
