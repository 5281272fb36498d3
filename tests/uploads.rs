//! Uploads into the drop box (`--incoming`, issue 15), with the real
//! programs on loopback: STOR and STOU in every data mode over IPv4 and
//! IPv6, the refusals, the write-only rule, every way an upload can fail
//! (each test looks at the disk afterwards: nothing under the final name,
//! no temporary left), two sessions racing for one name, the upload hook,
//! a full disk (a 1 MiB tmpfs, mounted by the test: root only, it fails
//! otherwise), and real clients (curl -T, lftp put and mput, Python's
//! ftplib), in clear and over FTPS (PROT P; a TLS data connection cut
//! without its close_notify stores nothing). With `--vhosts
//! --host-incoming`: each host's own drop box, a host without one
//! refusing as a read-only server does, uploads to one host never seen
//! through another, a wrong `.incoming` refused at start.

#[macro_use]
mod common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::client::{Mode, accept_bounded, modes, read_to_eof, reset};
use common::server::{DROP_GID, DROP_UID, clean_env};
use common::tools::{Output, require, run};
use common::*;

server_tests!(
    stor_every_mode_and_family,
    stor_type_a_and_xferlog,
    bursts_and_pauses_arrive_whole,
    stou_names_what_it_made,
    refusals_change_nothing,
    write_only,
    abor_leaves_nothing,
    broken_connection_leaves_nothing,
    stall_leaves_nothing,
    size_cap_leaves_nothing,
    stop_leaves_nothing,
    disk_full_leaves_nothing,
    min_free_refuses,
    racing_sessions,
    hook_runs_outside_the_session,
    curl_put,
    lftp_put_and_mput,
    python_ftplib_storbinary,
    tls_curl_put,
    tls_ftplib_storbinary,
    tls_truncated_upload_leaves_nothing,
    tls_lftp_put,
    host_boxes_take_uploads,
    host_boxes_are_write_only_across_hosts,
    host_hook_gets_the_path_from_root,
);

const LIMIT: Duration = Duration::from_secs(120);

/// A tree with a drop box `incoming` (mode 0733, owned by the server's
/// user, as an operator sets one up) and an operator-made `incoming/sub`,
/// and a server taking uploads there with `opts` added.
fn drop_box(kind: Kind, opts: Opts) -> (Tree, Server) {
    drop_box_with(kind, |_| opts)
}

/// [`drop_box`], with options that need the tree (files beside it).
fn drop_box_with(kind: Kind, opts: impl FnOnce(&Tree) -> Opts) -> (Tree, Server) {
    let tree = Tree::new();
    make_drop_box(&tree.root.join("incoming"));
    make_drop_box(&tree.root.join("incoming/sub"));
    let opts = opts(&tree);
    let opts = Opts {
        args: ["--incoming", "incoming"]
            .iter()
            .map(|s| s.to_string())
            .chain(opts.args)
            .collect(),
    };
    let server = Server::start(kind, &tree, opts);
    (tree, server)
}

fn make_drop_box(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    own(dir);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o733)).unwrap();
}

/// Gives `path` to the server's user (as root; otherwise the server is
/// the caller, who owns it already).
fn own(path: &Path) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(DROP_UID), Some(DROP_GID)).unwrap();
    }
}

/// `--min-free 0`: the test machine's free space is not the point.
fn opts() -> Opts {
    Opts::new().arg("--min-free").arg("0")
}

/// `len` bytes that differ from file to file (`seed`).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The entries of `dir`, sorted; the lock file that reserves names being
/// uploaded (`.aftpd-uploads`, empty) is left out, and checked empty.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            if n == ".aftpd-uploads" {
                let len = std::fs::metadata(dir.join(n)).unwrap().len();
                assert_eq!(len, 0, "the lock file holds data");
                return false;
            }
            true
        })
        .collect();
    v.sort();
    v
}

/// The drop box holds exactly `names` (no temporary, nothing else).
fn holds_only(t: &Tree, names: &[&str]) {
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.push("sub".into());
    want.sort();
    // The server writes its log after replying: give a commit or a
    // discard in flight a moment, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = entries(&t.root.join("incoming"));
        if got == want || Instant::now() > deadline {
            assert_eq!(got, want, "what the drop box holds");
            assert_eq!(entries(&t.root.join("incoming/sub")), Vec::<String>::new());
            return;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// A data connection for an upload, open.
fn data_conn(c: &mut Client, mode: Mode, cmd: &str) -> (Reply, Option<TcpStream>) {
    let d = c.setup(mode, None);
    c.send(cmd.as_bytes());
    let pre = c.reply();
    if !(100..200).contains(&pre.code) {
        return (pre, None);
    }
    let s = match d {
        Data::Passive(s) => s,
        Data::Active(l) => {
            accept_bounded(&l, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{cmd}: the server did not connect: {e}"))
                .0
        }
    };
    (pre, Some(s))
}

/// Sends `body` for `cmd` (STOR or STOU) in `mode`: the preliminary and
/// the final reply (none when refused).
fn put(c: &mut Client, mode: Mode, cmd: &str, body: &[u8]) -> (Reply, Option<Reply>) {
    let (pre, s) = data_conn(c, mode, cmd);
    let Some(mut s) = s else {
        return (pre, None);
    };
    s.write_all(body).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let _ = read_to_eof(&mut s, Duration::from_secs(30));
    let fin = c.reply();
    (pre, Some(fin))
}

/// An upload that must succeed: 150 then 226.
fn stored(c: &mut Client, cmd: &str, body: &[u8]) {
    let mode = c.default_mode();
    let (pre, fin) = put(c, mode, cmd, body);
    assert_eq!(pre.code, 150, "{cmd}: {}", pre.text());
    let fin = fin.unwrap();
    assert_eq!(fin.code, 226, "{cmd}: {}", fin.text());
}

fn check_file(t: &Tree, name: &str, body: &[u8], mode: u32) {
    let p = t.root.join("incoming").join(name);
    let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        got == body,
        "{name}: {} bytes stored, {} sent",
        got.len(),
        body.len()
    );
    let md = std::fs::metadata(&p).unwrap();
    assert_eq!(md.mode() & 0o7777, mode, "{name}: mode");
    if is_root() {
        assert_eq!((md.uid(), md.gid()), (DROP_UID, DROP_GID), "{name}: owner");
    }
}

// ---------------------------------------------------------------- flows

fn stor_every_mode_and_family(kind: Kind) {
    let (t, s) = drop_box(kind, opts());
    let mut names = Vec::new();
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for (i, &mode) in modes(fam).iter().enumerate() {
            let name = format!("{fam:?}-{mode:?}");
            let body = data(300_000 + i * 7, i as u64 + 1);
            let (pre, fin) = put(&mut c, mode, &format!("STOR incoming/{name}"), &body);
            assert_eq!(pre.code, 150, "{name}: {}", pre.text());
            assert_eq!(fin.map(|r| r.code), Some(226), "{name}");
            check_file(&t, &name, &body, 0o600);
            s.wait_log_line("a stor record", |l| {
                l.starts_with("transfer ")
                    && l.contains("kind=stor")
                    && l.contains(&format!("path=/incoming/{name} "))
                    && l.contains(&format!("bytes={} ", body.len()))
                    && l.contains("result=ok")
            });
            names.push(name);
        }
        // Into a subdirectory the operator made, from there.
        c.expect("CWD /incoming/sub", 250);
        stored(&mut c, &format!("STOR {fam:?}"), b"deep");
        assert_eq!(
            std::fs::read(t.root.join(format!("incoming/sub/{fam:?}"))).unwrap(),
            b"deep"
        );
        std::fs::remove_file(t.root.join(format!("incoming/sub/{fam:?}"))).unwrap();
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    holds_only(&t, &names);
}

fn stor_type_a_and_xferlog(kind: Kind) {
    let tree = Tree::new();
    make_drop_box(&tree.root.join("incoming"));
    make_drop_box(&tree.root.join("incoming/sub"));
    let xferlog = tree.base.join("xferlog");
    // ftpd through setpriv opens it as the server's user.
    std::fs::write(&xferlog, b"").unwrap();
    own(&xferlog);
    let o = opts()
        .arg("--incoming")
        .arg("incoming")
        .arg("--upload-mode")
        .arg("0640")
        .arg("--xferlog")
        .arg(xferlog.to_str().unwrap());
    let s = Server::start(kind, &tree, o);
    let mut c = Client::login(&s, Family::V4);
    c.expect("TYPE A", 200);
    // CRLF becomes LF, across the reads too; a bare CR or LF stays.
    let mut text = Vec::new();
    for i in 0..20_000 {
        text.extend_from_slice(format!("line {i}\r\n").as_bytes());
    }
    text.extend_from_slice(b"bare\rcr\nlf\r");
    stored(&mut c, "STOR incoming/text", &text);
    let mut want = Vec::new();
    for i in 0..20_000 {
        want.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    want.extend_from_slice(b"bare\rcr\nlf\r");
    check_file(&tree, "text", &want, 0o640);
    c.expect("TYPE I", 200);
    stored(&mut c, "STOR incoming/bin", b"a\r\nb");
    check_file(&tree, "bin", b"a\r\nb", 0o640);
    c.expect("QUIT", 221);
    // wu-ftpd's xferlog: direction i, the type, complete.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&xferlog).unwrap_or_default();
        let text_line = log.lines().find(|l| l.contains(" /incoming/text "));
        let bin_line = log.lines().find(|l| l.contains(" /incoming/bin "));
        if let (Some(a), Some(b)) = (text_line, bin_line) {
            assert!(
                a.contains(&format!(" {} /incoming/text a _ i a ", want.len())),
                "{a}"
            );
            assert!(a.ends_with(" c"), "{a}");
            assert!(b.contains(" 4 /incoming/bin b _ i a "), "{b}");
            break;
        }
        assert!(Instant::now() < deadline, "no xferlog lines: {log}");
        thread::sleep(Duration::from_millis(25));
    }
}

fn stou_names_what_it_made(kind: Kind) {
    let (t, s) = drop_box(kind, opts());
    let mut c = Client::login(&s, Family::V6);
    c.expect("CWD incoming", 250);
    let mut made = Vec::new();
    for (i, cmd) in ["STOU", "STOU", "STOU report", "STOU report"]
        .iter()
        .enumerate()
    {
        let mode = c.default_mode();
        let body = data(1000, i as u64);
        let (pre, fin) = put(&mut c, mode, cmd, &body);
        // RFC 1123 §4.1.2.9: "150 FILE: name".
        assert_eq!(pre.code, 150, "{cmd}");
        let name = pre
            .text()
            .strip_prefix("150 FILE: ")
            .unwrap_or_else(|| panic!("{cmd}: {}", pre.text()))
            .trim_end()
            .to_string();
        assert_eq!(fin.map(|r| r.code), Some(226));
        check_file(&t, &name, &body, 0o600);
        assert!(!made.contains(&name), "{name} made twice");
        made.push(name);
    }
    assert_eq!(made[2], "report");
    assert_eq!(made[3], "report.1");
    let names: Vec<&str> = made.iter().map(String::as_str).collect();
    holds_only(&t, &names);
}

fn refusals_change_nothing(kind: Kind) {
    let (t, s) = drop_box(kind, opts());
    std::fs::write(t.root.join("incoming/there"), b"the operator's").unwrap();
    let before = t.snapshot();
    let mut c = Client::login(&s, Family::V4);
    for cmd in [
        "STOR incoming/there",
        "STOR incoming/.hidden",
        "STOR incoming/nosuchdir/x",
        "STOR pub/x",
        "STOR x",
        "STOR incoming",
        "STOR incoming/sub",
        "STOU",
        "STOR /incoming/../pub/file",
    ] {
        c.refused(cmd.as_bytes(), 553);
    }
    c.refused(b"STOR incoming/a\x01b", 553);
    c.refused(format!("STOR incoming/{}", "n".repeat(256)).as_bytes(), 553);
    c.expect("REST 10", 350);
    c.refused(b"STOR incoming/resumed", 554);
    // A place refused whatever the REST says is 553, as without it.
    c.expect("REST 10", 350);
    c.refused(b"STOR pub/x", 553);
    for (cmd, code) in [
        ("APPE incoming/there", 550),
        ("DELE incoming/there", 550),
        ("MKD incoming/new", 550),
        ("RMD incoming/sub", 550),
        ("RNFR incoming/there", 550),
        ("RNTO incoming/other", 503),
        ("SITE CHMOD 777 incoming/there", 500),
    ] {
        c.expect(cmd, code);
    }
    c.expect("QUIT", 221);
    assert_eq!(before, t.snapshot(), "a refused write changed the tree");
    holds_only(&t, &["there"]);
    c.assert_nothing_leaked();
}

fn write_only(kind: Kind) {
    let (t, s) = drop_box(kind, opts().arg("--upload-mode").arg("0644"));
    // A drop box anyone may list (it lists empty), and links from the
    // public tree into it.
    std::fs::set_permissions(
        t.root.join("incoming"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("../incoming/up", t.root.join("pub/to-upload")).unwrap();
    std::os::unix::fs::symlink("../incoming", t.root.join("pub/to-incoming")).unwrap();
    let mut c = Client::login(&s, Family::V4);
    stored(&mut c, "STOR incoming/up", b"SECRET-upload-body");
    check_file(&t, "up", b"SECRET-upload-body", 0o644);
    for cmd in [
        "RETR incoming/up",
        "RETR /incoming/up",
        "RETR pub/to-upload",
        "RETR pub/to-incoming/up",
    ] {
        c.refused(cmd.as_bytes(), 550);
    }
    for cmd in ["SIZE incoming/up", "MDTM incoming/up", "SIZE pub/to-upload"] {
        c.expect(cmd, 550);
    }
    c.expect("CWD incoming", 250);
    for cmd in ["LIST", "NLST", "MLSD", "LIST /pub/to-incoming"] {
        let listed = c.get(cmd);
        assert!(
            listed.is_empty(),
            "{cmd}: {}",
            String::from_utf8_lossy(&listed)
        );
    }
    let pub_list = c.get("NLST /pub");
    let names = String::from_utf8_lossy(&pub_list);
    assert!(
        !names.contains("to-upload"),
        "a link to an upload listed: {names}"
    );
    c.expect("QUIT", 221);
    assert!(
        common::client::find(&c.data_received, b"SECRET-upload").is_none()
            && common::client::find(&c.received, b"SECRET-upload").is_none(),
        "an upload came back"
    );
}

// ---------------------------------------------------------------- failures

/// An upload that comes in bursts with pauses between them (the server
/// finds the socket empty and waits for more, again and again), then in
/// one large burst (longer than a helper's turn): every byte, in order,
/// counted once.
fn bursts_and_pauses_arrive_whole(kind: Kind) {
    let (t, s) = drop_box(kind, opts());
    let mut c = Client::login(&s, Family::V4);
    let body = data(24 << 20, 5);
    let mode = c.default_mode();
    let (pre, d) = data_conn(&mut c, mode, "STOR incoming/bursts");
    assert_eq!(pre.code, 150, "{}", pre.text());
    let mut d = d.unwrap();
    let mut at = 0;
    for (i, n) in [1usize, 10, 4096, 65_537, 300_000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        d.write_all(&body[at..at + n]).unwrap();
        d.flush().unwrap();
        at += n;
        std::thread::sleep(Duration::from_millis(20 * (i as u64 % 3)));
    }
    d.write_all(&body[at..]).unwrap();
    d.shutdown(Shutdown::Write).unwrap();
    let _ = read_to_eof(&mut d, Duration::from_secs(30));
    let fin = c.reply();
    assert_eq!(fin.code, 226, "{}", fin.text());
    check_file(&t, "bursts", &body, 0o600);
    s.wait_log_line("the stor record", |l| {
        l.starts_with("transfer ")
            && l.contains("path=/incoming/bursts ")
            && l.contains(&format!("bytes={} ", body.len()))
            && l.contains("result=ok")
    });
}

/// Starts `STOR incoming/f`, sends `n` bytes and leaves the data
/// connection open.
fn half_upload(c: &mut Client, n: usize) -> TcpStream {
    let mode = c.default_mode();
    let (pre, s) = data_conn(c, mode, "STOR incoming/f");
    assert_eq!(pre.code, 150, "{}", pre.text());
    let mut s = s.unwrap();
    s.write_all(&data(n, 9)).unwrap();
    s.flush().unwrap();
    s
}

/// Waits (bounded) for the transfer record of incoming/f with `result`.
fn wait_result(s: &Server, result: &str) {
    s.wait_log_line(&format!("result={result}"), |l| {
        l.contains("kind=stor") && l.contains("path=/incoming/f ") && l.contains(result)
    });
}

fn abor_leaves_nothing(kind: Kind) {
    let (t, s) = drop_box(kind, opts());
    let mut c = Client::login(&s, Family::V4);
    let data = half_upload(&mut c, 200_000);
    c.send(b"ABOR");
    assert_eq!(c.reply().code, 426);
    assert_eq!(c.reply().code, 226);
    drop(data);
    wait_result(&s, "result=aborted");
    holds_only(&t, &[]);
    // The name is free again.
    stored(&mut c, "STOR incoming/f", b"second try");
    holds_only(&t, &["f"]);
}

fn broken_connection_leaves_nothing(kind: Kind) {
    let (t, s) = drop_box(kind, opts());
    let mut c = Client::login(&s, Family::V6);
    let data = half_upload(&mut c, 300_000);
    reset(data);
    assert_eq!(c.reply().code, 426);
    wait_result(&s, "result=connection-lost");
    holds_only(&t, &[]);
    // The control connection going away mid-upload: the same.
    let mut c = Client::login(&s, Family::V4);
    let _data = half_upload(&mut c, 100_000);
    c.reset();
    wait_result(&s, "result=control-closed");
    holds_only(&t, &[]);
}

fn stall_leaves_nothing(kind: Kind) {
    let (t, s) = drop_box(kind, opts().data_timeout(2));
    let mut c = Client::login(&s, Family::V4);
    let _data = half_upload(&mut c, 100_000);
    // Then nothing: the data timeout ends it.
    let r = c.reply();
    assert_eq!(r.code, 426, "{}", r.text());
    wait_result(&s, "result=timeout");
    holds_only(&t, &[]);
}

fn size_cap_leaves_nothing(kind: Kind) {
    let (t, s) = drop_box(kind, opts().arg("--max-upload").arg("100K"));
    let mut c = Client::login(&s, Family::V4);
    // Exactly the cap is fine; a byte more is not.
    stored(&mut c, "STOR incoming/max", &data(100 * 1024, 1));
    let mode = c.default_mode();
    let (pre, s2) = data_conn(&mut c, mode, "STOR incoming/f");
    assert_eq!(pre.code, 150);
    let mut d = s2.unwrap();
    // The server may close the connection before all of it is sent.
    let _ = d.write_all(&data(400 * 1024, 2));
    let r = c.reply();
    assert_eq!(r.code, 552, "{}", r.text());
    drop(d);
    wait_result(&s, "result=too-large");
    holds_only(&t, &["max"]);
}

/// The server told to stop (SIGTERM) mid-upload: the supervisor lets the
/// transfer run for --shutdown-timeout, then ends it; ftpd just ends.
/// Nothing stays either way.
fn stop_leaves_nothing(kind: Kind) {
    let extra = if kind.is_supervisor() {
        opts().arg("--shutdown-timeout").arg("1")
    } else {
        opts()
    };
    let (t, s) = drop_box(kind, extra);
    let mut c = Client::login(&s, Family::V4);
    let _data = half_upload(&mut c, 100_000);
    for pid in s.pids() {
        // SAFETY: kill(2) of a server process this test started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    c.expect_eof(Duration::from_secs(20));
    if kind.is_supervisor() {
        s.wait_log_line("stopped", |l| l == "stopped");
    }
    holds_only(&t, &[]);
}

/// Fails unless root: mounting a tmpfs needs it.
fn need_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root (it mounts a tmpfs): run the tests as root"
    );
}

/// A 1 MiB tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        require("mount", "mount");
        let o = format!("size=1m,mode=0733,uid={DROP_UID},gid={DROP_GID}");
        let mut m = Command::new("mount");
        m.args(["-t", "tmpfs", "-o", &o, "aftpd-test", dir.to_str().unwrap()]);
        run(m, Duration::from_secs(10)).assert_success("mount tmpfs");
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let mut u = Command::new("umount");
        u.arg("-l").arg(&self.0);
        let _ = run(u, Duration::from_secs(10));
    }
}

fn disk_full_leaves_nothing(kind: Kind) {
    need_root("the full-disk test");
    let tree = Tree::new();
    let dir = tree.root.join("incoming");
    std::fs::create_dir(&dir).unwrap();
    let _fs = Tmpfs::mount(&dir);
    make_drop_box(&dir.join("sub"));
    let s = Server::start(kind, &tree, opts().arg("--incoming").arg("incoming"));
    let mut c = Client::login(&s, Family::V4);
    // Fits.
    stored(&mut c, "STOR incoming/small", &data(200 * 1024, 1));
    // Does not: 452, and nothing of it stays.
    let mode = c.default_mode();
    let (pre, d) = data_conn(&mut c, mode, "STOR incoming/f");
    assert_eq!(pre.code, 150);
    let mut d = d.unwrap();
    let _ = d.write_all(&data(2 << 20, 2));
    let _ = d.shutdown(Shutdown::Write);
    let r = c.reply();
    assert_eq!(r.code, 452, "{}", r.text());
    drop(d);
    wait_result(&s, "result=no-space");
    holds_only(&tree, &["small"]);
    // And the space is back: the next upload that fits is stored.
    stored(&mut c, "STOR incoming/again", &data(300 * 1024, 3));
    holds_only(&tree, &["again", "small"]);
}

fn min_free_refuses(kind: Kind) {
    // More than any test machine has free.
    let (t, s) = drop_box(kind, Opts::new().arg("--min-free").arg("1000000G"));
    let mut c = Client::login(&s, Family::V4);
    c.refused(b"STOR incoming/f", 452);
    holds_only(&t, &[]);
}

fn racing_sessions(kind: Kind) {
    let (t, s) = drop_box(kind, opts());
    // One upload in progress holds its name.
    let mut a = Client::login(&s, Family::V4);
    let mut b = Client::login(&s, Family::V6);
    let mut first = half_upload(&mut a, 1000);
    b.refused(b"STOR incoming/f", 553);
    first.write_all(&data(1000, 10)).unwrap();
    first.shutdown(Shutdown::Write).unwrap();
    let _ = read_to_eof(&mut first, Duration::from_secs(10));
    assert_eq!(a.reply().code, 226);
    let mut want = data(1000, 9);
    want.extend_from_slice(&data(1000, 10));
    check_file(&t, "f", &want, 0o600);
    // Eight sessions at once for one name: one wins, whole; the rest 553.
    let addr = s.addr(Family::V4);
    let racers: Vec<_> = (0..8u64)
        .map(|i| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                assert_eq!(c.reply().code, 220);
                c.login_only();
                c.expect("TYPE I", 200);
                let body = data(256 * 1024, 100 + i);
                let (pre, fin) = put(&mut c, Mode::Pasv, "STOR incoming/race", &body);
                (pre.code, fin.map(|r| r.code), body)
            })
        })
        .collect();
    let results: Vec<_> = racers.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter(|r| r.1 == Some(226)).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        results.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>()
    );
    for r in &results {
        assert!(
            r.1 == Some(226) || r.0 == 553 || r.1 == Some(553),
            "{:?}",
            (r.0, r.1)
        );
    }
    check_file(&t, "race", &winners[0].2, 0o600);
    holds_only(&t, &["f", "race"]);
}

// ---------------------------------------------------------------- the hook

const HOOK: &str = r#"#!/bin/sh
# Records its argument, environment and directory, counts the hooks running
# at once, and waits for the test's word before it ends.
dir="$(dirname "$0")"
echo "$1|$AFTPD_PEER|$AFTPD_SIZE|$AFTPD_NAME|$(pwd)|$(id -u)|$PATH" >> "$dir/ran"
touch "$dir/running/$$"
ls "$dir/running" | wc -l >> "$dir/concurrent"
i=0
while [ ! -e "$dir/release" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
rm -f "$dir/running/$$"
case "$1" in *fail-me) exit 3 ;; esac
exit 0
"#;

fn hook_runs_outside_the_session(kind: Kind) {
    let tree = Tree::new();
    make_drop_box(&tree.root.join("incoming"));
    make_drop_box(&tree.root.join("incoming/sub"));
    let hd = tree.scratch("hook");
    std::fs::create_dir(hd.join("running")).unwrap();
    for p in [hd.clone(), hd.join("running")] {
        own(&p);
    }
    let script = hd.join("hook.sh");
    std::fs::write(&script, HOOK).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = opts()
        .arg("--incoming")
        .arg("incoming")
        .arg("--upload-hook")
        .arg(script.to_str().unwrap())
        .arg("--upload-hook-max")
        .arg("2");
    let s = Server::start(kind, &tree, o);
    let mut c = Client::login(&s, Family::V4);
    // The hooks wait for the release file: each 226 coming meanwhile shows
    // the session does not wait for its hook.
    for (i, name) in ["one", "two", "three", "fail-me"].iter().enumerate() {
        stored(
            &mut c,
            &format!("STOR incoming/{name}"),
            &data(1000 + i, i as u64),
        );
    }
    c.expect("NOOP", 200);
    // Two start (the cap), the others wait.
    let ran = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(hd.join("ran")).unwrap_or_default();
            if text.lines().count() >= n {
                return text;
            }
            assert!(Instant::now() < deadline, "{n} hooks did not run: {text:?}");
            thread::sleep(Duration::from_millis(25));
        }
    };
    ran(2);
    assert!(!hd.join("release").exists());
    std::fs::write(hd.join("release"), b"").unwrap();
    let text = ran(4);
    let root = std::fs::canonicalize(&tree.root).unwrap();
    let mut seen: Vec<&str> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 7, "{line}");
        let name = f[0]
            .strip_prefix("incoming/")
            .unwrap_or_else(|| panic!("{line}"));
        let i = ["one", "two", "three", "fail-me"]
            .iter()
            .position(|n| *n == name)
            .unwrap();
        assert_eq!(f[1], "127.0.0.1", "{line}");
        assert_eq!(f[2], (1000 + i).to_string(), "{line}");
        assert_eq!(f[3], name, "{line}");
        assert_eq!(Path::new(f[4]), root, "{line}");
        // SAFETY: geteuid has no preconditions.
        let uid = if is_root() {
            DROP_UID
        } else {
            unsafe { libc::geteuid() }
        };
        assert_eq!(f[5], uid.to_string(), "{line}");
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["fail-me", "one", "three", "two"]);
    // Never more than two at once.
    let counts = std::fs::read_to_string(hd.join("concurrent")).unwrap();
    for n in counts.lines() {
        let n: usize = n.trim().parse().unwrap();
        assert!((1..=2).contains(&n), "{n} hooks ran at once: {counts:?}");
    }
    s.wait_log_line("the failed hook", |l| {
        l.contains("upload-hook:") && l.contains("incoming/fail-me") && l.contains("3")
    });
    c.expect("QUIT", 221);
}

// ---------------------------------------------------------------- clients

fn url(s: &Server, fam: Family, path: &str) -> String {
    match s.addr(fam) {
        SocketAddr::V4(a) => format!("ftp://{}:{}/{path}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("ftp://[{}]:{}/{path}", a.ip(), a.port()),
    }
}

fn client_cmd(prog: &str, home: &Path) -> Command {
    let mut c = Command::new(prog);
    clean_env(&mut c);
    c.env("HOME", home).env("LC_ALL", "C.UTF-8");
    c
}

fn curl_put(kind: Kind) {
    require("curl", "curl");
    let (t, s) = drop_box(kind, opts());
    let home = t.scratch("home");
    let mut names = Vec::new();
    for (fam, how) in [
        (Family::V4, None),
        (Family::V4, Some("-")),
        (Family::V6, None),
        (Family::V6, Some("-")),
    ] {
        let name = format!(
            "curl-{fam:?}-{}",
            if how.is_some() { "active" } else { "passive" }
        );
        let body = data(700_000, names.len() as u64);
        let src = t.base.join(&name);
        std::fs::write(&src, &body).unwrap();
        let mut c = client_cmd("curl", &home);
        c.args(["-sS", "--max-time", "60", "-g", "-T"]).arg(&src);
        if let Some(p) = how {
            c.args(["-P", p]);
        }
        c.arg(url(&s, fam, "incoming/"));
        run(c, LIMIT).assert_success(&format!("curl -T {name}"));
        check_file(&t, &name, &body, 0o600);
        names.push(name);
    }
    // A name that exists: curl fails, the file stays as it was.
    let mut c = client_cmd("curl", &home);
    c.args(["-sS", "--max-time", "60", "-T"])
        .arg(t.base.join(&names[1]))
        .arg(url(&s, Family::V4, &format!("incoming/{}", names[0])));
    let o: Output = run(c, LIMIT);
    assert!(!o.status.success(), "curl replaced a file");
    check_file(&t, &names[0], &data(700_000, 0), 0o600);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    holds_only(&t, &names);
}

fn lftp_put_and_mput(kind: Kind) {
    require("lftp", "lftp");
    let (t, s) = drop_box(kind, opts());
    let home = t.scratch("home");
    let src = t.scratch("src");
    let mut bodies = Vec::new();
    for (i, n) in ["put-one", "m-a", "m-b", "m-c"].iter().enumerate() {
        let body = data(100_000 + i * 1000, 50 + i as u64);
        std::fs::write(src.join(n), &body).unwrap();
        bodies.push((n.to_string(), body));
    }
    let a = s.addr(Family::V4);
    let script = format!(
        "set ftp:passive-mode on; set net:max-retries 1; set net:timeout 10; \
         set cmd:fail-exit yes; open -u anonymous,x ftp://{}:{}; cd incoming; \
         lcd {}; put put-one; mput m-*",
        a.ip(),
        a.port(),
        src.display()
    );
    let mut c = client_cmd("lftp", &home);
    c.arg("-c").arg(script);
    run(c, LIMIT).assert_success("lftp put and mput");
    for (n, body) in &bodies {
        check_file(&t, n, body, 0o600);
    }
    holds_only(&t, &["m-a", "m-b", "m-c", "put-one"]);
}

const FTPLIB_SCRIPT: &str = r#"
import ftplib, io, sys
host, port, fam = sys.argv[1], int(sys.argv[2]), sys.argv[3]
f = ftplib.FTP()
f.connect(host, port, timeout=30)
f.login()
f.cwd("incoming")
body = bytes((i * 7 + 3) % 256 for i in range(500000))
print(f.storbinary("STOR py-" + fam, io.BytesIO(body)))
print(f.storlines("STOR py-" + fam + ".txt", io.BytesIO(b"one\ntwo\n")))
try:
    f.storbinary("STOR py-" + fam, io.BytesIO(b"again"))
    print("replaced")
except ftplib.error_perm as e:
    print("refused", str(e)[:3])
f.quit()
"#;

fn python_ftplib_storbinary(kind: Kind) {
    require("python3", "python3");
    let (t, s) = drop_box(kind, opts());
    let home = t.scratch("home");
    for fam in FAMILIES {
        let a = s.addr(fam);
        let mut c = client_cmd("python3", &home);
        c.arg("-c")
            .arg(FTPLIB_SCRIPT)
            .arg(a.ip().to_string())
            .arg(a.port().to_string())
            .arg(format!("{fam:?}"));
        let o = run(c, LIMIT);
        o.assert_success("python3 ftplib");
        let lines: Vec<String> = o.stdout_text().lines().map(String::from).collect();
        assert_eq!(lines[0], "226 Transfer complete.");
        assert_eq!(lines[1], "226 Transfer complete.");
        assert_eq!(lines[2], "refused 553");
        let body: Vec<u8> = (0..500_000u32).map(|i| ((i * 7 + 3) % 256) as u8).collect();
        check_file(&t, &format!("py-{fam:?}"), &body, 0o600);
        // storlines sends CRLF lines in TYPE A: stored with LF.
        check_file(&t, &format!("py-{fam:?}.txt"), b"one\ntwo\n", 0o600);
    }
    holds_only(&t, &["py-V4", "py-V4.txt", "py-V6", "py-V6.txt"]);
}

// ---------------------------------------------------------------- FTPS

/// A drop box served with FTPS (`--tls MODE`), its self-signed
/// certificate and key beside the tree, world-readable (ftpd through
/// setpriv reads them as nobody).
fn tls_drop_box(kind: Kind, mode: &str) -> (Tree, Server) {
    drop_box_with(kind, |t| {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (t.base.join("cert.pem"), t.base.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        opts()
            .arg("--tls-cert")
            .arg(c.to_str().unwrap())
            .arg("--tls-key")
            .arg(k.to_str().unwrap())
            .arg("--tls")
            .arg(mode)
    })
}

/// curl --ssl-reqd -T: AUTH TLS, PROT P, the file through TLS on the
/// data connection (a few MiB: many records, several write buffers),
/// stored byte for byte.
fn tls_curl_put(kind: Kind) {
    require("curl", "curl");
    let (t, s) = tls_drop_box(kind, "required");
    let home = t.scratch("home");
    let mut names = Vec::new();
    // Passive only: curl 7.88's active FTPS hangs (its bug 10666).
    for fam in FAMILIES {
        let name = format!("curl-tls-{fam:?}");
        let body = data(3 << 20, 100 + names.len() as u64);
        let src = t.base.join(&name);
        std::fs::write(&src, &body).unwrap();
        let mut c = client_cmd("curl", &home);
        c.args(["-sS", "-k", "--ssl-reqd", "--max-time", "60", "-g", "-T"])
            .arg(&src)
            .arg(url(&s, fam, "incoming/"));
        run(c, LIMIT).assert_success(&format!("curl --ssl-reqd -T {name}"));
        check_file(&t, &name, &body, 0o600);
        names.push(name);
    }
    // Without --ssl-reqd, under --tls required: refused, nothing stored.
    let src = t.base.join("clear");
    std::fs::write(&src, b"in clear").unwrap();
    let mut c = client_cmd("curl", &home);
    c.args(["-sS", "--max-time", "60", "-T"])
        .arg(&src)
        .arg(url(&s, Family::V4, "incoming/"));
    let o: Output = run(c, LIMIT);
    assert!(!o.status.success(), "a clear upload under --tls required");
    s.wait_log_line("a TLS upload", |l| {
        l.contains("kind=stor")
            && l.contains("path=/incoming/curl-tls-V6")
            && l.contains("result=ok")
    });
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    holds_only(&t, &names);
    s.assert_no_crash();
}

/// ftplib's FTP_TLS, made to resume the control connection's session on
/// its data connections (which stock ftplib does not do, and the server
/// demands): under `--tls required` an upload before PROT P is 521; then
/// storbinary (passive and active) and storlines (TYPE A) through TLS;
/// ftplib ends each with `unwrap()`, its close_notify, and waits for the
/// server's.
const FTPLIB_TLS: &str = r#"
import ftplib, io, ssl, sys
host, port, fam = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
class Reusing(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=self.sock.session)
            print('DATA', conn.session_reused)
        return conn, size
f = Reusing(context=ctx, timeout=30)
f.connect(host, port)
f.auth()
f.login('anonymous', 'x@example.invalid')
f.cwd('incoming')
try:
    f.storbinary('STOR clear-' + fam, io.BytesIO(b'in clear'))
    print('CLEAR stored')
except ftplib.error_perm as e:
    print('CLEAR', str(e)[:3])
f.prot_p()
body = bytes((i * 13 + 5) % 251 for i in range(2000000))
print('BIN', f.storbinary('STOR tls-' + fam, io.BytesIO(body)))
print('TXT', f.storlines('STOR tls-' + fam + '.txt', io.BytesIO(b'one\ntwo\n')))
f.set_pasv(False)
print('ACTIVE', f.storbinary('STOR tls-active-' + fam, io.BytesIO(body[:100000])))
f.quit()
"#;

fn tls_ftplib_storbinary(kind: Kind) {
    require("python3", "python3");
    let (t, s) = tls_drop_box(kind, "required");
    let home = t.scratch("home");
    let body: Vec<u8> = (0..2_000_000u32)
        .map(|i| ((i * 13 + 5) % 251) as u8)
        .collect();
    let mut names = Vec::new();
    for fam in FAMILIES {
        let a = s.addr(fam);
        let mut c = client_cmd("python3", &home);
        c.arg("-c")
            .arg(FTPLIB_TLS)
            .arg(a.ip().to_string())
            .arg(a.port().to_string())
            .arg(format!("{fam:?}"));
        let o = run(c, LIMIT);
        o.assert_success("python3 ftplib FTP_TLS storbinary");
        let text = o.stdout_text();
        assert!(text.contains("CLEAR 521"), "{text}");
        assert!(
            !text.contains("DATA False"),
            "a data connection did not resume: {text}"
        );
        assert!(text.contains("BIN 226 "), "{text}");
        assert!(text.contains("TXT 226 "), "{text}");
        assert!(text.contains("ACTIVE 226 "), "{text}");
        check_file(&t, &format!("tls-{fam:?}"), &body, 0o600);
        check_file(&t, &format!("tls-{fam:?}.txt"), b"one\ntwo\n", 0o600);
        check_file(&t, &format!("tls-active-{fam:?}"), &body[..100_000], 0o600);
        for n in ["tls-", "tls-active-"] {
            names.push(format!("{n}{fam:?}"));
        }
        names.push(format!("tls-{fam:?}.txt"));
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    holds_only(&t, &names);
    s.assert_no_crash();
}

/// An upload whose TLS data connection ends with a bare TCP FIN, no
/// close_notify (what a truncation attack looks like, RFC 4217 §9):
/// 426, nothing stored; the session goes on and a whole upload after it
/// is stored.
const TRUNCATED: &str = r#"
import ftplib, io, os, socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
f = ftplib.FTP_TLS(context=ctx, timeout=30)
f.connect(host, port)
f.auth()
f.login('anonymous', 'x@example.invalid')
f.prot_p()
f.cwd('incoming')
f.voidcmd('TYPE I')
conn = ftplib.FTP.ntransfercmd(f, 'STOR cut.bin')[0]
s = ctx.wrap_socket(conn, server_hostname=host, session=f.sock.session)
s.sendall(b'x' * 1000000)
# The FIN, under TLS: no close_notify goes out.
raw = socket.socket(fileno=os.dup(s.fileno()))
raw.shutdown(socket.SHUT_WR)
raw.settimeout(20)
try:
    while raw.recv(1 << 16):
        pass
except OSError:
    pass
try:
    reply = f.getresp()
except ftplib.Error as e:
    reply = str(e)
print('REPLY', reply[:3])
conn = ftplib.FTP.ntransfercmd(f, 'STOR whole.bin')[0]
s = ctx.wrap_socket(conn, server_hostname=host, session=f.sock.session)
s.sendall(b'y' * 1000)
s.unwrap()
s.close()
print('AFTER', f.voidresp()[:3])
f.quit()
"#;

fn tls_truncated_upload_leaves_nothing(kind: Kind) {
    require("python3", "python3");
    let (t, s) = tls_drop_box(kind, "optional");
    let a = s.addr(Family::V4);
    let mut c = client_cmd("python3", &t.scratch("home"));
    c.arg("-c")
        .arg(TRUNCATED)
        .arg(a.ip().to_string())
        .arg(a.port().to_string());
    let o = run(c, LIMIT);
    o.assert_success("python3 truncated TLS upload");
    let text = o.stdout_text();
    assert!(text.contains("REPLY 426"), "{text}");
    assert!(text.contains("AFTER 226"), "{text}");
    s.wait_log_line("the truncated upload", |l| {
        l.contains("kind=stor")
            && l.contains("path=/incoming/cut.bin")
            && l.contains("result=tls-truncated")
    });
    check_file(&t, "whole.bin", &[b'y'; 1000], 0o600);
    holds_only(&t, &["whole.bin"]);
    s.assert_no_crash();
}

/// lftp (GnuTLS) with ftp:ssl-force and ftp:ssl-protect-data: put and
/// mput through TLS. lftp closes its data socket as soon as it has
/// written the last byte, so anything the server sent that it did not
/// read (TLS 1.3 tickets, once) turned its close into a reset that threw
/// away what its kernel still held: the upload came in short.
fn tls_lftp_put(kind: Kind) {
    require("lftp", "lftp");
    let (t, s) = tls_drop_box(kind, "required");
    let home = t.scratch("home");
    let src = t.scratch("src");
    let mut bodies = Vec::new();
    for (i, n) in ["put-one", "m-a", "m-b"].iter().enumerate() {
        let body = data(1_000_000 + i * 1000, 70 + i as u64);
        std::fs::write(src.join(n), &body).unwrap();
        bodies.push((n.to_string(), body));
    }
    let a = s.addr(Family::V4);
    let script = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; \
         set ssl:verify-certificate no; set ftp:passive-mode on; \
         set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes; \
         open -u anonymous,x ftp://{}:{}; cd incoming; lcd {}; put put-one; mput m-*",
        a.ip(),
        a.port(),
        src.display()
    );
    let mut c = client_cmd("lftp", &home);
    c.arg("-c").arg(script);
    run(c, LIMIT).assert_success("lftp put and mput over TLS");
    // lftp retries what fails: every attempt must have been whole.
    let log = s.log_text();
    let stors: Vec<&str> = log.lines().filter(|l| l.contains("kind=stor")).collect();
    assert_eq!(stors.len(), 3, "{log}");
    assert!(stors.iter().all(|l| l.contains("result=ok")), "{log}");
    for (n, body) in &bodies {
        check_file(&t, n, body, 0o600);
    }
    holds_only(&t, &["m-a", "m-b", "put-one"]);
    s.assert_no_crash();
}

// ---------------------------------------------------------------- virtual hosts

/// The reply to a write of a server that takes no uploads.
const READ_ONLY: &str = "Permission denied: this is a read-only archive.";
const SECRET_UPLOAD: &[u8] = b"SECRET-host-upload-7f31";

fn mkdir_mode(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write_mode(path: &Path, body: &[u8], mode: u32) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// ROOT for `--vhosts --host-incoming`, beside the test tree:
///
/// ```text
/// hroot/
///   0/             .incoming "incoming"; incoming/ (its box)
///   a.example/     .incoming "in"; in/ (its box, 0755: lists empty);
///                  pub/readme, pub/peek -> ../in
///   b.example -> a.example            (an alias: a's box)
///   c.example/     .incoming "/pub/up"; pub/up/ (its box)
///   d.example/     in/ (0733, the server's), no .incoming: no box
///   all.example -> /                   (ROOT as a host: holds every box)
///   inbox.example -> a.example/in      (a host that is a's box)
/// ```
fn host_layout(t: &Tree) -> PathBuf {
    let v = t.base.join("hroot");
    mkdir_mode(&v.join("0/pub"), 0o755);
    write_mode(&v.join("0/pub/readme"), b"default\n", 0o644);
    write_mode(&v.join("0/.incoming"), b"incoming\n", 0o644);
    make_drop_box(&v.join("0/incoming"));
    let a = v.join("a.example");
    mkdir_mode(&a.join("pub"), 0o755);
    write_mode(&a.join("pub/readme"), b"a's\n", 0o644);
    write_mode(&a.join(".incoming"), b"in\n", 0o644);
    make_drop_box(&a.join("in"));
    std::fs::set_permissions(a.join("in"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../in", a.join("pub/peek")).unwrap();
    std::os::unix::fs::symlink("a.example", v.join("b.example")).unwrap();
    mkdir_mode(&v.join("c.example/pub"), 0o755);
    write_mode(&v.join("c.example/.incoming"), b" /pub/up \n", 0o644);
    make_drop_box(&v.join("c.example/pub/up"));
    mkdir_mode(&v.join("d.example"), 0o755);
    make_drop_box(&v.join("d.example/in"));
    std::os::unix::fs::symlink("/", v.join("all.example")).unwrap();
    std::os::unix::fs::symlink("a.example/in", v.join("inbox.example")).unwrap();
    v
}

fn host_opts() -> Opts {
    Opts::new()
        .arg("--vhosts")
        .arg("--host-incoming")
        .arg("--min-free")
        .arg("0")
}

/// Logged in after `HOST host` (the default tree without one).
fn host_login(s: &Server, fam: Family, host: Option<&str>) -> Client {
    let mut c = Client::open(s, fam);
    if let Some(h) = host {
        c.expect(&format!("HOST {h}"), 220);
    }
    c.login_only();
    c.expect("TYPE I", 200);
    c
}

/// The names in `dir` but the lock file.
fn names_in(dir: &Path) -> Vec<String> {
    entries(dir)
}

/// Each host takes uploads into its own box (an alias into its host's),
/// and only there; a host without a box answers writes exactly as a
/// server without uploads does.
fn host_boxes_take_uploads(kind: Kind) {
    let t = Tree::new();
    let v = host_layout(&t);
    let s = Server::start_at(kind, &t, &v, host_opts());
    if kind.is_supervisor() {
        s.wait_log_line("the boxes in the start line", |l| {
            l.contains("listening on")
                && l.contains(" incoming=0:/incoming,a.example:/in,c.example:/pub/up ")
        });
    }
    for fam in FAMILIES {
        let tag = match fam {
            Family::V4 => "4",
            Family::V6 => "6",
        };
        // No HOST: ROOT/0's box.
        let mut c = host_login(&s, fam, None);
        stored(&mut c, &format!("STOR incoming/zero{tag}"), b"zero");
        c.expect("QUIT", 221);
        let mut c = host_login(&s, fam, Some("a.example"));
        let st = c.expect("STAT", 211);
        assert!(st.text().contains("uploads into /in"), "{}", st.text());
        stored(&mut c, &format!("STOR in/a{tag}"), b"for a");
        let r = c.refused(b"STOR pub/x", 553);
        assert!(
            r.text().contains("Uploads go into /in only"),
            "{}",
            r.text()
        );
        c.refused(b"STOR /incoming/x", 553);
        c.expect("QUIT", 221);
        // The alias is its host: the same box.
        let mut c = host_login(&s, fam, Some("b.example"));
        stored(&mut c, &format!("STOR /in/b{tag}"), b"for b");
        c.expect("QUIT", 221);
        let mut c = host_login(&s, fam, Some("c.example"));
        stored(&mut c, &format!("STOR pub/up/c{tag}"), b"for c");
        c.expect("CWD /pub/up", 250);
        let mode = c.default_mode();
        let (pre, fin) = put(&mut c, mode, "STOU", b"unique");
        assert_eq!((pre.code, fin.map(|r| r.code)), (150, Some(226)));
        c.refused(b"STOR /in/x", 553);
        c.expect("QUIT", 221);
    }
    // Hosts without a box: refused as by a server without uploads, word
    // for word.
    let plain = Server::start_at(kind, &t, &v, Opts::new().arg("--vhosts"));
    for host in ["d.example", "inbox.example", "all.example"] {
        let mut c = host_login(&s, Family::V4, Some(host));
        let mut p = host_login(&plain, Family::V4, Some(host));
        for (cmd, code) in [
            ("STOR in/d", 553),
            ("STOU", 553),
            ("STOR /a.example/in/d", 553),
            ("APPE in/d", 550),
        ] {
            let got = c.refused(cmd.as_bytes(), code).text();
            let want = p.refused(cmd.as_bytes(), code).text();
            assert_eq!(got, want, "{host}: {cmd}");
            assert!(got.contains(READ_ONLY), "{host}: {cmd}: {got}");
        }
        let st = c.expect("STAT", 211).text();
        assert!(!st.contains("uploads into"), "{host}: {st}");
        c.expect("QUIT", 221);
    }
    // Without --host-incoming, a .incoming turns nothing on.
    for host in [None, Some("a.example"), Some("c.example")] {
        let mut p = host_login(&plain, Family::V4, host);
        for cmd in ["STOR in/x", "STOR incoming/x", "STOR pub/up/x"] {
            let got = p.refused(cmd.as_bytes(), 553).text();
            assert!(got.contains(READ_ONLY), "{host:?}: {cmd}: {got}");
        }
        p.expect("QUIT", 221);
    }
    let sorted = |mut v: Vec<&str>| {
        v.sort();
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(
        names_in(&v.join("0/incoming")),
        sorted(vec!["zero4", "zero6"])
    );
    assert_eq!(
        names_in(&v.join("a.example/in")),
        sorted(vec!["a4", "a6", "b4", "b6"])
    );
    let up = names_in(&v.join("c.example/pub/up"));
    assert_eq!(up.len(), 4, "{up:?}");
    assert!(up.contains(&"c4".to_string()) && up.contains(&"c6".to_string()));
    assert!(names_in(&v.join("d.example/in")).is_empty());
    assert_eq!(std::fs::read(v.join("a.example/in/b4")).unwrap(), b"for b");
    s.assert_no_crash();
}

/// What is being uploaded to one host, and what was, is seen through no
/// host: not its own (by name, through a link from its public tree), not
/// a host whose tree holds the box (ROOT as a host) or is the box. The
/// name is reserved in its box only.
fn host_boxes_are_write_only_across_hosts(kind: Kind) {
    let t = Tree::new();
    let v = host_layout(&t);
    let s = Server::start_at(kind, &t, &v, host_opts().arg("--upload-mode").arg("0644"));
    let mut a = host_login(&s, Family::V4, Some("a.example"));
    let mode = a.default_mode();
    let (pre, data) = data_conn(&mut a, mode, "STOR in/secret");
    assert_eq!(pre.code, 150, "{}", pre.text());
    let mut data = data.unwrap();
    data.write_all(SECRET_UPLOAD).unwrap();
    data.flush().unwrap();
    // The name is taken in a's box, by any of its names...
    let mut b = host_login(&s, Family::V4, Some("b.example"));
    let (pre, _) = data_conn(&mut b, mode, "STOR in/secret");
    assert_eq!(pre.code, 553, "{}", pre.text());
    b.expect("QUIT", 221);
    // ...and free in another host's.
    let mut c = host_login(&s, Family::V4, Some("c.example"));
    stored(&mut c, "STOR pub/up/secret", b"c's own");
    c.expect("QUIT", 221);
    hidden_everywhere(&s);
    data.shutdown(Shutdown::Write).unwrap();
    let _ = read_to_eof(&mut data, Duration::from_secs(30));
    let fin = a.reply();
    assert_eq!(fin.code, 226, "{}", fin.text());
    a.expect("QUIT", 221);
    assert_eq!(
        std::fs::read(v.join("a.example/in/secret")).unwrap(),
        SECRET_UPLOAD
    );
    // Stored, world-readable (0644): still nowhere.
    hidden_everywhere(&s);
    s.assert_no_crash();
}

/// The hook runs in ROOT for every host's uploads, given the path from
/// ROOT: the host's directory (an alias's host's), then the box's path.
fn host_hook_gets_the_path_from_root(kind: Kind) {
    let t = Tree::new();
    let v = host_layout(&t);
    let hd = t.scratch("hook");
    own(&hd);
    let script = hd.join("hook.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$1|$(pwd)\" >> \"$(dirname \"$0\")/ran\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = host_opts()
        .arg("--upload-hook")
        .arg(script.to_str().unwrap());
    let s = Server::start_at(kind, &t, &v, o);
    for (host, cmd) in [
        (None, "STOR incoming/h0"),
        (Some("a.example"), "STOR in/ha"),
        (Some("b.example"), "STOR in/hb"),
        (Some("c.example"), "STOR /pub/up/hc"),
    ] {
        let mut c = host_login(&s, Family::V4, host);
        stored(&mut c, cmd, b"hooked");
        c.expect("QUIT", 221);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(hd.join("ran")).unwrap_or_default();
        if text.lines().count() >= 4 {
            break text;
        }
        assert!(Instant::now() < deadline, "4 hooks did not run: {text:?}");
        thread::sleep(Duration::from_millis(25));
    };
    let root = std::fs::canonicalize(&v).unwrap();
    let mut paths: Vec<&str> = text
        .lines()
        .map(|l| {
            let (path, cwd) = l.split_once('|').unwrap();
            assert_eq!(Path::new(cwd), root, "{l}");
            path
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "0/incoming/h0",
            "a.example/in/ha",
            "a.example/in/hb",
            "c.example/pub/up/hc"
        ]
    );
    // Each names the stored file from ROOT.
    for p in &paths {
        assert_eq!(std::fs::read(v.join(p)).unwrap(), b"hooked", "{p}");
    }
}

/// a.example's upload `secret` is seen through no host.
fn hidden_everywhere(s: &Server) {
    let views: [(Option<&str>, &[&str], &[&str]); 5] = [
        (
            Some("a.example"),
            &["in/secret", "/in/secret", "pub/peek/secret"],
            &["in", "pub/peek"],
        ),
        (Some("b.example"), &["in/secret"], &["in"]),
        (
            Some("all.example"),
            &[
                "a.example/in/secret",
                "b.example/in/secret",
                "a.example/pub/peek/secret",
            ],
            &["a.example/in", "a.example/pub/peek", "inbox.example"],
        ),
        (Some("inbox.example"), &["secret", "/secret"], &["/"]),
        (None, &["in/secret", "../a.example/in/secret"], &["/"]),
    ];
    for (host, files, dirs) in views {
        let mut c = host_login(s, Family::V4, host);
        for f in files {
            c.refused(format!("RETR {f}").as_bytes(), 550);
            c.expect(&format!("SIZE {f}"), 550);
        }
        for d in dirs {
            let names = c.get(&format!("NLST {d}"));
            assert!(
                find_bytes(&names, b"secret").is_none(),
                "{host:?}: NLST {d}: {}",
                String::from_utf8_lossy(&names)
            );
            let listed = c.get(&format!("LIST {d}"));
            assert!(
                find_bytes(&listed, b"secret").is_none(),
                "{host:?}: LIST {d}"
            );
        }
        c.expect("QUIT", 221);
        assert!(
            find_bytes(&c.data_received, SECRET_UPLOAD).is_none()
                && find_bytes(&c.received, SECRET_UPLOAD).is_none(),
            "{host:?}: an upload came back"
        );
    }
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    common::client::find(hay, needle)
}

/// A `.incoming` that is wrong stops the start with 100, saying which and
/// why, in both programs: a path out of the host's tree, a directory that
/// is not there, a symlink, one the world may not read, none at all; and
/// `--host-incoming` without `--vhosts`.
#[test]
fn bad_host_incoming_exits_100() {
    /// A case's name, what it spoils in ROOT, what the error must say.
    type Case = (&'static str, fn(&Path), &'static str);
    let cases: [Case; 6] = [
        (
            "outside",
            |v| write_mode(&v.join("a.example/.incoming"), b"../0/incoming\n", 0o644),
            "outside the host's tree",
        ),
        (
            "missing",
            |v| write_mode(&v.join("a.example/.incoming"), b"nowhere\n", 0o644),
            "a.example/.incoming",
        ),
        (
            "symlink",
            |v| {
                std::fs::remove_file(v.join("a.example/.incoming")).unwrap();
                std::os::unix::fs::symlink("../0/.incoming", v.join("a.example/.incoming"))
                    .unwrap();
            },
            "symlink",
        ),
        (
            "unreadable",
            |v| write_mode(&v.join("a.example/.incoming"), b"in\n", 0o600),
            "world-readable",
        ),
        (
            "none",
            |v| {
                for h in ["0", "a.example", "c.example"] {
                    std::fs::remove_file(v.join(h).join(".incoming")).unwrap();
                }
            },
            "no host has a drop box",
        ),
        ("no-vhosts", |_| {}, "--host-incoming needs --vhosts"),
    ];
    for (name, spoil, want) in cases {
        let t = Tree::new();
        let v = host_layout(&t);
        spoil(&v);
        let args: &[&str] = if name == "no-vhosts" {
            &["--host-incoming"]
        } else {
            &["--vhosts", "--host-incoming"]
        };
        let mut opts = Opts::new();
        for a in args {
            opts = opts.arg(*a);
        }
        for kind in [Kind::Ftpd, Kind::FtpdSetpriv] {
            let cmd = common::server::ftpd_command(kind, &opts, &v);
            let out = run(cmd, Duration::from_secs(10));
            let err = out.stderr_text();
            assert_eq!(out.status.code(), Some(100), "{name}: {kind:?}: {err}");
            assert!(err.contains(want), "{name}: {kind:?}: {err}");
        }
        let bin = common::server::supervisor_path().expect("aftpd-supervisor");
        let mut cmd = Command::new(bin);
        clean_env(&mut cmd);
        if is_root() {
            cmd.env("UID", DROP_UID.to_string());
            cmd.env("GID", DROP_GID.to_string());
        }
        cmd.args(["--listen", "127.0.0.1:0"]).args(args).arg(&v);
        let out = run(cmd, Duration::from_secs(10));
        let err = out.stderr_text();
        assert_eq!(out.status.code(), Some(100), "{name}: supervisor: {err}");
        assert!(err.contains(want), "{name}: supervisor: {err}");
    }
}
