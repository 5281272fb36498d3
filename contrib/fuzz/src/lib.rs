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
//! - [`session`]: the whole session core over an in-memory tree, its
//!   engine events (listener bound, data connection up, transfer ended,
//!   time passing, output written, EOF, filesystem answers now or late)
//!   chosen by the input too.
//! - [`fs`]: lookups and listings of the served tree (`fs::Root`,
//!   `fs::dir::DirReader`) over symlinks, private directories, hidden
//!   names and special files, against an oracle (see `fs_target.rs`).
//! - [`proxy_header`]: the PROXY protocol header reader
//!   (`core::proxy::HeaderReader`), the input cut into reads anywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use aftpd::core::clock::Now;
use aftpd::core::config::{SessionConfig, TlsPolicy, Uploads};
use aftpd::core::listing::ListFormat;
use aftpd::core::memfs::{Mem, MemFs};
use aftpd::core::message::Message;
use aftpd::core::proto::addr::{EprtError, parse_eprt, parse_port};
use aftpd::core::proto::command::{self, Command};
use aftpd::core::proto::telnet::{Line, LineReader, MAX_LINE};
use aftpd::core::session::{
    Action, DataConn, DataOut, Endpoints, FsRequest, Record, Session, Source, TlsFailure,
    TransferError, Tree,
};
use aftpd::core::vpath::{VPath, VPathError};

mod fs_target;
mod proxy_target;
pub use fs_target::fs_lookups as fs;
pub use proxy_target::proxy_header;

/// Removes the trees of this process (for tests; a fuzzer just exits).
pub fn remove_tree() {
    fs_target::remove_fs_tree();
}

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

/// Bytes of every file that is not published: never in anything the
/// session hands out.
pub const SECRET: &[u8] = b"SECRET-fuzz-not-public";

/// The tree the session serves: an in-memory one (the core asks for
/// filesystem work and takes the answers as events, so no disk is
/// needed), with public files and directories, hidden, private and
/// special entries, and odd names, and messages (`.message` files, shown
/// or not). The real filesystem layer has its own target. With `vhosts`
/// it has publicfile's layout: the same tree as `/0` and as the host
/// `/h.example`, and a host that is not published.
pub fn tree(vhosts: bool) -> MemFs {
    let mut t = MemFs::new();
    if !vhosts {
        fill(&mut t, "");
        // The drop box: what is in it is never listed or handed out.
        t.incoming("/pub/in");
        return t;
    }
    t.vhosts();
    for top in ["0", "h.example"] {
        t.dir(top, 0o755);
        fill(&mut t, &format!("{top}/"));
    }
    t.file("h.example/.banner", 0o644, b"Host H\n220 not the end\n")
        .file("h.example/.welcome", 0o644, b"Welcome to H\n")
        .dir("priv.example", 0o700)
        .file("priv.example/.banner", 0o644, SECRET)
        .file("priv.example/readme", 0o644, SECRET)
        .file("secret.example", 0o644, SECRET);
    t
}

/// The tree's entries, beneath `top` (empty, or ending in `/`).
fn fill(fs: &mut MemFs, top: &str) {
    let mut t = Prefixed { fs, top };
    t.dir("pub", 0o755)
        .dir("pub/a", 0o755)
        .dir("pub/a/b", 0o755)
        .dir("say\"hi\"", 0o755)
        .dir("privdir", 0o700)
        .dir("nox", 0o744)
        .dir(".git", 0o755)
        .dir("pub/in", 0o733)
        .file("pub/in/dropped", 0o644, SECRET)
        .file("readme", 0o644, b"read me\nline two\n")
        .file("empty", 0o644, b"")
        .file("pub/file", 0o644, &[7u8; 3000])
        .file("pub/a/b/deep", 0o644, b"deep\n")
        .file("say\"hi\"/q", 0o644, b"quoted\n")
        .file("caf\u{e9}", 0o644, b"utf8 name\n")
        .file("privdir/inside", 0o644, SECRET)
        .file("nox/inside", 0o644, SECRET)
        .file("private", 0o600, SECRET)
        .file(".hidden", 0o644, SECRET)
        .file(".git/config", 0o644, SECRET)
        .file("pub/.dot", 0o644, SECRET)
        .file("new\nline", 0o644, b"odd name\n")
        .file("tab\tname", 0o644, b"odd name\n")
        .file(
            "pub/.message",
            0o644,
            b"About pub\n226 not the end\n\x1b[2J",
        )
        .file("pub/a/.message", 0o600, SECRET)
        .file("privdir/.message", 0o644, SECRET)
        .file(".welcome", 0o644, b"230 welcome\n")
        .other("fifo");
    for i in 0..40 {
        t.file(&format!("pub/a/n{i:02}"), 0o644, b"n");
    }
}

/// A tree's entries beneath a directory.
struct Prefixed<'a> {
    fs: &'a mut MemFs,
    top: &'a str,
}

impl Prefixed<'_> {
    fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.fs.dir(&format!("{}{path}", self.top), mode);
        self
    }

    fn file(&mut self, path: &str, mode: u32, body: &[u8]) -> &mut Self {
        self.fs.file(&format!("{}{path}", self.top), mode, body);
        self
    }

    fn other(&mut self, path: &str) -> &mut Self {
        self.fs.other(&format!("{}{path}", self.top));
        self
    }
}

/// One whole session, driven by the input: the first byte picks the
/// configuration (its bits: no greeting, EPLF, IPv6, answers held,
/// `--vhosts`, `--dir-messages`, a banner and a welcome, FTPS and
/// uploads), then each op byte picks an event (and takes its arguments
/// from the bytes after it):
///
/// - `0..=3`: control bytes (a length byte, then that many bytes), fed
///   only while the session wants input, as an engine would;
/// - `4`: the listener asked for is bound, or fails;
/// - `5`: the data connection is up;
/// - `6`: the transfer ends, complete or with one of its errors;
/// - `7`: time passes (seconds from the next byte), then `on_tick`;
/// - `8`: the engine writes part of the output;
/// - `9`: the client closes the control connection;
/// - `10`: the filesystem answers what it was asked (the next byte's low
///   bit says whether it answers at once from now on);
/// - `11`: the data connection takes part of a listing.
///
/// Checked: the control output is well-formed replies (CRLF, a code on
/// every first and last line, bounded lines) and ends with CRLF once all
/// is written; listeners are on the local address; active connections go
/// only to the client, on ports >= 1024; every file handed out is a
/// published one and its range within it; listings are CRLF lines naming
/// nothing hidden; no secret is ever in any of it.
pub fn session(data: &[u8]) {
    let Some((&cfg, mut input)) = data.split_first() else {
        return;
    };
    let vhosts = cfg & 16 != 0;
    let fs = tree(vhosts);
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
        banner: (cfg & 64 != 0).then(|| Message::parse(b"Banner\n220 not the end\n")),
        welcome: (cfg & 64 != 0).then(|| Message::parse(b"Hello\n230-nor this\n")),
        dir_messages: cfg & 32 != 0,
        vhosts,
        // The last bit: the second round's features, off in the older
        // corpora. FTPS, its policy by the first two bits (optional
        // serves clear sessions too), and uploads into /pub/in (the real
        // server takes no --incoming with --vhosts).
        tls: match (cfg & 128 != 0, cfg & 3) {
            (false, _) => TlsPolicy::Off,
            (true, 0) => TlsPolicy::Optional,
            (true, 1) => TlsPolicy::Required,
            (true, _) => TlsPolicy::Implicit,
        },
        uploads: (cfg & 128 != 0 && !vhosts).then(|| Uploads {
            incoming: VPath::resolve(&VPath::root(), b"/pub/in").unwrap_or_else(|_| VPath::root()),
            max_size: 1 << 20,
        }),
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
    let mut s: Session<Mem> = Session::new(Arc::new(config), ends, now);
    let mut d = Driver {
        fs,
        answer_now: cfg & 8 == 0,
        ..Driver::default()
    };
    d.actions(&mut s, local_ip, peer_ip, now);
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
        match op % 12 {
            0..=3 => {
                let n = take(1).first().map_or(0, |&n| usize::from(n) + 1);
                let bytes = take(n).to_vec();
                if s.wants_control_input() {
                    s.on_control(&bytes, now);
                } else {
                    // An engine would write output first.
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
                    let result = match how % 12 {
                        0 => Ok(d.sent),
                        1 => Err(TransferError::Connect(e())),
                        2 => Err(TransferError::Connection(e())),
                        3 => Err(TransferError::Shrunk),
                        4 => Err(TransferError::TooLarge),
                        5 => Err(TransferError::NoSpace),
                        6 => Err(TransferError::Sink(e())),
                        7 => Err(TransferError::Tls(TlsFailure::NotResumed)),
                        8 => Err(TransferError::Tls(TlsFailure::Handshake)),
                        9 => Err(TransferError::Tls(TlsFailure::Broken)),
                        10 => Err(TransferError::Tls(TlsFailure::Truncated)),
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
            9 => s.on_control_eof(now),
            10 => {
                d.answer_now = take(1).first().is_some_and(|b| b & 1 == 0);
                d.answer_held(&mut s, now);
            }
            _ => {
                if d.stream && d.connected && s.data_may_flow() {
                    let n = take(1).first().map_or(1, |&n| usize::from(n) * 61 + 1);
                    d.take_stream(&mut s, n);
                }
            }
        }
        d.actions(&mut s, local_ip, peer_ip, now);
        if s.is_closed() && d.closed {
            break;
        }
    }
    // The engine answers and writes everything out (a STAT listing comes
    // in batches).
    d.answer_now = true;
    for _ in 0..10_000 {
        d.answer_held(&mut s, now);
        d.actions(&mut s, local_ip, peer_ip, now);
        if s.output().is_empty() {
            break;
        }
        d.write(&mut s, usize::MAX);
    }
    assert!(s.output().is_empty(), "output never drained");
    check_replies(&d.out);
    assert!(find(&d.out, SECRET).is_none());
    // A message's control characters never reach the client.
    assert!(find(&d.out, b"\x1b[2J").is_none());
    check_listing(&d.listed);
}

/// What an engine keeps of the session's requests.
#[derive(Default)]
struct Driver {
    fs: MemFs,
    /// Answer filesystem requests as they come (else they wait).
    answer_now: bool,
    held: Vec<(u32, Tree<Mem>, FsRequest<Mem>)>,
    /// Every byte written on the control connection.
    out: Vec<u8>,
    /// Every byte of listings taken from the session.
    listed: Vec<u8>,
    listen_pending: bool,
    transfer: bool,
    /// The transfer is a listing (`Source::Stream`).
    stream: bool,
    connected: bool,
    sent: u64,
    closed: bool,
}

impl Driver {
    fn write(&mut self, s: &mut Session<Mem>, n: usize) {
        let out = s.output();
        let n = n.min(out.len());
        self.out.extend_from_slice(&out[..n]);
        s.consume_output(n);
    }

    fn take_stream(&mut self, s: &mut Session<Mem>, n: usize) {
        if let DataOut::Bytes(b) = s.data_output() {
            let n = n.min(b.len());
            self.listed.extend_from_slice(&b[..n]);
            self.sent += n as u64;
            s.consume_data(n);
        }
    }

    fn answer_held(&mut self, s: &mut Session<Mem>, now: Now) {
        for (id, tree, request) in std::mem::take(&mut self.held) {
            let answer = self.fs.answer(&tree, request);
            s.on_fs(id, answer, now);
        }
    }

    fn actions(&mut self, s: &mut Session<Mem>, local: IpAddr, peer: IpAddr, now: Now) {
        for _ in 0..100_000 {
            let Some(a) = s.poll_action() else {
                return;
            };
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
                    self.stream = matches!(source, Source::Stream);
                    self.sent = check_source(source);
                    self.transfer = true;
                    self.connected = false;
                }
                Action::AbortData => {
                    self.listen_pending = false;
                    self.transfer = false;
                    self.stream = false;
                    self.connected = false;
                }
                Action::Fs { id, tree, request } if self.answer_now => {
                    let answer = self.fs.answer(&tree, request);
                    s.on_fs(id, answer, now);
                }
                Action::Fs { id, tree, request } => self.held.push((id, tree, request)),
                Action::Close => self.closed = true,
                // The engine's business: the session goes on in plaintext.
                Action::StartTls { .. } => {}
                Action::Log(Record::Transfer(t)) => check_vpath(&t.path),
                Action::Log(_) => {}
            }
        }
        panic!("the session never stopped asking");
    }
}

/// Checks what a transfer would send; returns its length so far.
fn check_source(source: Source<Mem>) -> u64 {
    match source {
        Source::File {
            file, offset, len, ..
        } => {
            assert!(
                find(&file.body, SECRET).is_none(),
                "a file that is not published was handed out"
            );
            let end = offset.checked_add(len);
            assert!(end.is_some_and(|end| end <= file.body.len() as u64));
            len
        }
        Source::Stream => 0,
        // An upload's file is fresh: nothing in it to leak.
        Source::Upload { file, .. } => {
            assert!(file.body.is_empty(), "an upload into a file with data");
            0
        }
    }
}

/// Listing lines are CRLF lines, and name nothing hidden or unpublished.
fn check_listing(buf: &[u8]) {
    assert!(find(buf, SECRET).is_none());
    for line in buf.split_inclusive(|&b| b == b'\n') {
        if !line.ends_with(b"\n") {
            // The last line of a listing cut short by its transfer's end.
            continue;
        }
        assert!(line.ends_with(b"\r\n"), "listing line {line:?}");
        let body = &line[..line.len() - 2];
        assert!(!body.contains(&b'\r') && !body.contains(&b'\n'));
        // The name is the last field (MLSD: after "; ", EPLF: after the
        // tab, ls: after the time); none is hidden or unpublished.
        for hidden in [
            &b" .hidden"[..],
            b" .git",
            b" .dot",
            b"\t.hidden",
            b"\t.git",
            b" private",
            b" fifo",
            b" inside",
            b"name",
        ] {
            assert!(!body.ends_with(hidden), "unpublished name listed: {body:?}");
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
                } else {
                    // Clients are looser than RFC 959 (ftplib ends a reply
                    // at any line that starts with its code).
                    assert!(
                        !line.first().is_some_and(u8::is_ascii_digit),
                        "a middle line that starts with a digit: {line:?}"
                    );
                }
            }
        }
    }
    assert!(open.is_none(), "a multi-line reply never ended");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
