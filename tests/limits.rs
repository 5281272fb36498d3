//! Bandwidth limits, with the real binaries: `--max-rate` (both programs,
//! every engine; downloads and uploads), `--max-rate-total` and
//! `--max-rate-per-ip` (the supervisor, both engines). The bounds on time and rates are generous:
//! they show that a limit holds and is shared fairly, not how precisely
//! (contrib/bench measures that).

#[allow(unused_macros)]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::client::{connect_tuned, read_to_eof};
use common::server::{DROP_GID, DROP_UID, is_root};
use common::{Client, Family, Kind, Opts, Server, Tree};

const MIB: u64 = 1 << 20;
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A download in progress: a thread reads its data connection and counts.
struct Download {
    control: Client,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Download {
    /// RETR `path` from `server`, from address `from`; `pace`: read at
    /// most this many bytes, then sleep this long (a slow client).
    fn start(
        server: &Server,
        from: IpAddr,
        path: &str,
        pace: Option<(usize, Duration)>,
    ) -> Download {
        let mut control = Client::connect_from(server.addr(Family::V4), from);
        assert_eq!(control.reply().code, 220);
        control.login_only();
        control.expect("TYPE I", 200);
        let addr = control.pasv();
        let mut data = connect_tuned(addr, Some(from), None).unwrap();
        control.send(format!("RETR {path}").as_bytes());
        let r = control.reply();
        assert_eq!(r.code, 150, "{}", r.text());
        let bytes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bytes.clone(), stop.clone());
        let reader = thread::spawn(move || read_counting(&mut data, &b, &s, pace));
        Download {
            control,
            bytes,
            stop,
            reader: Some(reader),
        }
    }

    fn got(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let _ = &self.control;
    }
}

/// Reads until EOF or `stop`, adding to `bytes`; bounded to a minute.
fn read_counting(
    s: &mut TcpStream,
    bytes: &AtomicU64,
    stop: &AtomicBool,
    pace: Option<(usize, Duration)>,
) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 64 * 1024];
    let want = pace.map_or(buf.len(), |(n, _)| n.min(buf.len()));
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match s.read(&mut buf[..want]) {
            Ok(0) => return,
            Ok(n) => {
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                if let Some((_, pause)) = pace {
                    thread::sleep(pause);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// What each download received during `d`.
fn during(downloads: &[&Download], d: Duration) -> Vec<f64> {
    let before: Vec<u64> = downloads.iter().map(|x| x.got()).collect();
    thread::sleep(d);
    downloads
        .iter()
        .zip(before)
        .map(|(x, b)| (x.got() - b) as f64)
        .collect()
}

/// Jain's fairness index: 1 when all are equal, 1/n when one has all.
fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    sum * sum / (xs.len() as f64 * squares)
}

fn mib(x: f64) -> String {
    format!("{:.2} MiB", x / MIB as f64)
}

/// `--max-rate`: a download takes about its size over the rate (not
/// less; the limit lets 50 ms worth go at once), zero-copy (binary) and
/// copied (TYPE A) alike, with every byte intact.
fn a_limited_download_keeps_its_rate(kind: Kind) {
    let tree = Tree::new();
    let size = 40 * MIB;
    let path = tree.big_file("big", size);
    let text: Vec<u8> = b"a line of text\n".repeat(200_000);
    std::fs::write(tree.root.join("text"), &text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let public = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(tree.root.join("text"), public).unwrap();
    let server = Server::start(kind, &tree, Opts::new().arg("--max-rate").arg("16M"));
    let rate = 16.0 * MIB as f64;
    let mut c = Client::login(&server, Family::V4);

    let t = Instant::now();
    let data = c.get("RETR big");
    let took = t.elapsed().as_secs_f64();
    assert_eq!(data.len() as u64, size);
    assert!(
        data == std::fs::read(&path).unwrap(),
        "the file arrived changed"
    );
    let nominal = size as f64 / rate;
    assert!(
        took >= 0.9 * nominal,
        "{} in {took:.2} s: faster than 16M",
        mib(size as f64)
    );
    assert!(
        took <= 4.0 * nominal,
        "{} in {took:.2} s: far slower than 16M",
        mib(size as f64)
    );

    c.expect("TYPE A", 200);
    let t = Instant::now();
    let data = c.get("RETR text");
    let took = t.elapsed().as_secs_f64();
    assert_eq!(data, b"a line of text\r\n".repeat(200_000));
    let nominal = data.len() as f64 / rate;
    assert!(
        took >= 0.9 * nominal - 0.05,
        "TYPE A: {} in {took:.2} s",
        mib(data.len() as f64)
    );
    server_alive(server);
}

/// `--max-rate` on an upload (`--incoming`): its own bucket, in the
/// upload direction, slows what the server reads; it takes about its
/// size over the rate (the same bounds as a download's), and is stored
/// byte for byte.
fn a_limited_upload_keeps_its_rate(kind: Kind) {
    use std::os::unix::fs::PermissionsExt;
    let tree = Tree::new();
    let drop_box = tree.root.join("incoming");
    std::fs::create_dir(&drop_box).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&drop_box, Some(DROP_UID), Some(DROP_GID)).unwrap();
    }
    std::fs::set_permissions(&drop_box, std::fs::Permissions::from_mode(0o733)).unwrap();
    let opts = Opts::new()
        .arg("--incoming")
        .arg("incoming")
        .arg("--min-free")
        .arg("0")
        .arg("--max-rate")
        .arg("8M");
    let server = Server::start(kind, &tree, opts);
    let rate = 8.0 * MIB as f64;
    let size = 24 * MIB;
    let body: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
    let mut c = Client::login(&server, Family::V4);
    c.expect("TYPE I", 200);
    let addr = c.pasv();
    let mut data = connect_tuned(addr, None, None).unwrap();
    c.send(b"STOR incoming/up.bin");
    let r = c.reply();
    assert_eq!(r.code, 150, "{}", r.text());

    let t = Instant::now();
    data.write_all(&body).unwrap();
    data.shutdown(Shutdown::Write).unwrap();
    let _ = read_to_eof(&mut data, Duration::from_secs(60));
    let r = c.reply();
    let took = t.elapsed().as_secs_f64();
    assert_eq!(r.code, 226, "{}", r.text());
    assert!(
        std::fs::read(drop_box.join("up.bin")).unwrap() == body,
        "the upload was stored changed"
    );
    let nominal = size as f64 / rate;
    assert!(
        took >= 0.9 * nominal,
        "an upload of {} in {took:.2} s: faster than 8M",
        mib(size as f64)
    );
    assert!(
        took <= 4.0 * nominal,
        "an upload of {} in {took:.2} s: far slower than 8M",
        mib(size as f64)
    );
    server_alive(server);
}

fn server_alive(mut server: Server) {
    server.assert_alive();
}

/// Declares the tests: `all` against every server kind (as
/// `server_tests!` does), `shared` against the supervisor's two engines.
macro_rules! limit_tests {
    (all: [$($all:ident),*], shared: [$($shared:ident),*]) => {
        mod ftpd {
            $( #[test] fn $all() { super::$all($crate::common::Kind::Ftpd) } )*
        }
        mod ftpd_setpriv {
            $( #[test] fn $all() { super::$all($crate::common::Kind::FtpdSetpriv) } )*
        }
        mod supervisor {
            $( #[test] fn $all() { super::$all($crate::common::Kind::Supervisor) } )*
            $( #[test] fn $shared() { super::$shared($crate::common::Kind::Supervisor) } )*
        }
        mod supervisor_uring {
            $( #[test] fn $all() { super::$all($crate::common::Kind::SupervisorUring) } )*
            $( #[test] fn $shared() { super::$shared($crate::common::Kind::SupervisorUring) } )*
        }
    };
}

/// Ten downloads under `--max-rate-total` share it evenly (Jain's index
/// of at least 0.95 over 10 s), and no more than it together.
fn ten_downloads_share_the_total(kind: Kind) {
    let tree = Tree::new();
    tree.big_file("big", 64 * MIB);
    let server = Server::start(kind, &tree, Opts::new().arg("--max-rate-total").arg("10M"));
    server.wait_log_line("with the limit", |l| l.contains(" max-rate-total=10M "));
    let downloads: Vec<Download> = (0..10)
        .map(|_| Download::start(&server, LOCAL, "/big", None))
        .collect();
    let all: Vec<&Download> = downloads.iter().collect();
    thread::sleep(Duration::from_secs(1));
    let got = during(&all, Duration::from_secs(10));
    let sum: f64 = got.iter().sum();
    let limit = 10.0 * 10.0 * MIB as f64;
    let shown: Vec<String> = got.iter().map(|&g| mib(g)).collect();
    assert!(
        jain(&got) >= 0.95,
        "Jain's index {:.3}: {shown:?}",
        jain(&got)
    );
    assert!(sum <= 1.05 * limit, "{} in 10 s over 10M", mib(sum));
    assert!(
        sum >= 0.8 * limit,
        "{} in 10 s under 10M: {shown:?}",
        mib(sum)
    );
    drop(downloads);
    server_alive(server);
}

/// A client that reads slowly leaves its share to the others, and a
/// download that joins gets its share within a second.
fn a_newcomer_and_a_slow_reader(kind: Kind) {
    let tree = Tree::new();
    tree.big_file("big", 64 * MIB);
    let server = Server::start(kind, &tree, Opts::new().arg("--max-rate-total").arg("8M"));
    // 16 KiB each 100 ms: at most 160 KiB/s.
    let slow = Download::start(
        &server,
        LOCAL,
        "/big",
        Some((16 * 1024, Duration::from_millis(100))),
    );
    let fast: Vec<Download> = (0..4)
        .map(|_| Download::start(&server, LOCAL, "/big", None))
        .collect();
    thread::sleep(Duration::from_secs(2));
    let late = Download::start(&server, LOCAL, "/big", None);
    let first = during(&[&late], Duration::from_millis(1500))[0];
    // Five fast downloads share what the slow one leaves.
    let share = (8.0 * MIB as f64 - 160.0 * 1024.0) / 5.0;
    assert!(
        first >= 0.5 * 1.5 * share,
        "the newcomer got {} in its first 1.5 s",
        mib(first)
    );
    let mut all: Vec<&Download> = fast.iter().collect();
    all.push(&late);
    all.push(&slow);
    let got = during(&all, Duration::from_secs(3));
    let fast_sum: f64 = got[..5].iter().sum();
    let shown: Vec<String> = got.iter().map(|&g| mib(g)).collect();
    assert!(
        fast_sum >= 0.8 * 3.0 * 5.0 * share,
        "the fast downloads got {} in 3 s: {shown:?}",
        mib(fast_sum)
    );
    assert!(
        fast_sum + got[5] <= 1.05 * 3.0 * 8.0 * MIB as f64,
        "{shown:?}"
    );
    assert!(jain(&got[..5]) >= 0.9, "{shown:?}");
    drop((slow, fast, late));
    server_alive(server);
}

/// `--max-rate-per-ip`: one address's downloads share its limit; another
/// address has a limit of its own.
fn per_address(kind: Kind) {
    let tree = Tree::new();
    tree.big_file("big", 64 * MIB);
    let server = Server::start(kind, &tree, Opts::new().arg("--max-rate-per-ip").arg("4M"));
    let here: Vec<Download> = (0..2)
        .map(|_| Download::start(&server, LOCAL, "/big", None))
        .collect();
    let there = Download::start(&server, OTHER, "/big", None);
    thread::sleep(Duration::from_secs(1));
    let got = during(&[&here[0], &here[1], &there], Duration::from_secs(4));
    let shown: Vec<String> = got.iter().map(|&g| mib(g)).collect();
    let limit = 4.0 * 4.0 * MIB as f64;
    let pair = got[0] + got[1];
    assert!(
        pair <= 1.1 * limit && pair >= 0.75 * limit,
        "127.0.0.1: {shown:?}"
    );
    assert!(jain(&got[..2]) >= 0.9, "127.0.0.1: {shown:?}");
    assert!(
        got[2] <= 1.1 * limit && got[2] >= 0.75 * limit,
        "127.0.0.2: {shown:?}"
    );
    drop((here, there));
    server_alive(server);
}

limit_tests!(
    all: [a_limited_download_keeps_its_rate, a_limited_upload_keeps_its_rate],
    shared: [
        ten_downloads_share_the_total,
        a_newcomer_and_a_slow_reader,
        per_address
    ]
);
