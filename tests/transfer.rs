//! Data transfers: RETR in every data mode over IPv4 and IPv6, REST,
//! TYPE A, ABOR, data-connection rules, timeouts and the transfer log.

#[macro_use]
mod common;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::client::{self, DM, Data, IAC, IP, accept_bounded, connect_tuned, crlf_lines};
use common::parse::{must_ls, must_mlsx};
use common::tree::{self, BIG_LEN, FILE_LEN, TEXT, big_content, file_content};
use common::*;

server_tests!(
    retr_every_file_every_mode,
    retr_refused_without_data_connection,
    retr_refused_passive_no_150,
    retr_without_port_or_pasv_is_425,
    rest_then_retr,
    rest_beyond_size_and_garbage,
    type_a_converts_lf_to_crlf,
    abor_during_retr,
    abor_with_telnet_ip_dm_during_retr,
    abor_during_active_retr,
    active_connects_from_ephemeral_port,
    active_to_the_unspecified_address,
    opening_reply_comes_before_the_data,
    new_pasv_closes_previous_listener,
    pasv_refuses_other_peer,
    data_connect_timeout_is_425,
    active_connect_refused_is_425,
    idle_timeout_421,
    transfer_log_lines,
    pasv_ports_option,
    pasv_address_option,
    many_transfers_one_session,
    concurrent_sessions,
    file_shrinks_during_retr,
    client_vanishes_mid_transfer,
    large_directory_listings,
    a_cached_download_is_read_once,
);

/// `RETR path` with 0xff bytes doubled (Telnet IAC IAC).
fn retr_line(path: &[u8]) -> Vec<u8> {
    let mut v = b"RETR ".to_vec();
    for &b in path {
        v.push(b);
        if b == IAC {
            v.push(IAC);
        }
    }
    v
}

fn retr_every_file_every_mode(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for &mode in client::modes(fam) {
            for (path, content) in tree::public_files() {
                let t = c.transfer(mode, &retr_line(&path));
                assert_eq!(
                    t.codes(),
                    (150, Some(226)),
                    "RETR {} over {fam:?} {mode:?}: {} / {:?}",
                    common::parse::show(&path),
                    t.prelim.text(),
                    t.fin.as_ref().map(Reply::text)
                );
                assert!(
                    t.data == content,
                    "RETR {} over {fam:?} {mode:?}: {} bytes, want {} (content differs)",
                    common::parse::show(&path),
                    t.data.len(),
                    content.len()
                );
            }
        }
        c.expect("NOOP", 200);
    }
}

/// Paths RETR must refuse with 550 (missing, hidden, private, not a
/// regular file, leading outside the root).
const REFUSED: &[&str] = &[
    "missing",
    "pub/missing",
    ".secret",
    ".git/config",
    "pub/.hidden",
    "private.txt",
    "privdir/inside.txt",
    "fifo",
    "pub",
    "/",
    "escape",
    "abs-out",
    "rel-out",
    "up/passwd",
    "link-to-file/x",
];

fn retr_refused_without_data_connection(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for p in REFUSED {
            c.refused(format!("RETR {p}").as_bytes(), 550);
        }
        c.expect("NOOP", 200);
        c.assert_nothing_leaked();
    }
}

fn retr_refused_passive_no_150(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        let mode = c.default_mode();
        for p in REFUSED {
            let t = c.transfer(mode, format!("RETR {p}").as_bytes());
            assert_eq!(t.prelim.code, 550, "RETR {p}: {}", t.prelim.text());
            assert!(!t.data_touched, "RETR {p}: data sent after 550");
        }
        // The session still transfers afterwards.
        assert_eq!(c.get("RETR one-byte"), b"x");
        c.assert_nothing_leaked();
    }
}

fn retr_without_port_or_pasv_is_425(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("RETR pub/file", 425);
    c.expect("LIST", 425);
    c.expect("NLST", 425);
    c.expect("MLSD", 425);
    // A completed passive transfer uses up its PASV.
    assert_eq!(c.get("RETR one-byte"), b"x");
    c.expect("RETR one-byte", 425);
    c.expect("NOOP", 200);
}

fn rest_then_retr(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for &mode in client::modes(fam) {
            c.expect("REST 100", 350);
            let d = c.get_mode(mode, "RETR pub/file");
            assert!(
                d == file_content()[100..],
                "REST 100 in {mode:?}: {} bytes",
                d.len()
            );
            // REST is cleared by RETR.
            let d = c.get_mode(mode, "RETR pub/file");
            assert!(
                d == file_content(),
                "RETR after a REST RETR must send it all"
            );
        }
        let off = 4 * 1024 * 1024 + 1;
        c.expect(&format!("REST {off}"), 350);
        let d = c.get("RETR big.bin");
        assert!(d == big_content()[off..], "REST {off}: {} bytes", d.len());
        c.expect("REST 0", 350);
        assert!(c.get("RETR big.bin") == big_content());
        // REST at exactly the size: nothing left to send.
        c.expect(&format!("REST {BIG_LEN}"), 350);
        assert!(c.get("RETR big.bin").is_empty());
    }
}

fn rest_beyond_size_and_garbage(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect(&format!("REST {}", FILE_LEN + 1), 350);
    c.refused(b"RETR pub/file", 554);
    c.expect("NOOP", 200);
    for bad in [
        "REST",
        "REST abc",
        "REST -5",
        "REST 1x",
        "REST 99999999999999999999999",
    ] {
        c.expect(bad, 501);
    }
    // The failed RETR did not leave an offset behind.
    assert!(c.get("RETR pub/file") == file_content());
}

fn crlf(text: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for &b in text {
        if b == b'\n' {
            v.push(b'\r');
        }
        v.push(b);
    }
    v
}

fn type_a_converts_lf_to_crlf(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        c.expect("TYPE A", 200);
        for &mode in client::modes(fam) {
            let d = c.get_mode(mode, "RETR text.txt");
            assert_eq!(d, crlf(TEXT), "TYPE A RETR in {mode:?}");
        }
        c.expect("TYPE A N", 200);
        assert_eq!(c.get("RETR text.txt"), crlf(TEXT));
        c.expect("TYPE I", 200);
        assert_eq!(c.get("RETR text.txt"), TEXT);
        c.expect("TYPE L 8", 200);
        assert_eq!(c.get("RETR text.txt"), TEXT);
    }
}

/// Starts `RETR big.bin` over a data connection with a tiny receive
/// buffer, reads a little, and returns the data stream.
fn start_big_retr(c: &mut Client, mode: Mode) -> TcpStream {
    let data = c.setup(mode, Some(4096));
    c.send(b"RETR big.bin");
    let r = c.reply();
    assert_eq!(r.code, 150, "RETR big.bin: {}", r.text());
    let mut ds = match data {
        Data::Passive(s) => s,
        Data::Active(l) => accept_bounded(&l, client::TIMEOUT).unwrap().0,
    };
    let mut got = vec![0u8; 65536];
    let mut n = 0;
    while n < got.len() {
        let k = ds.read(&mut got[n..]).unwrap();
        assert!(k > 0, "data closed after {n} bytes");
        n += k;
    }
    assert!(got == big_content()[..n]);
    ds
}

fn expect_abort_replies(c: &mut Client) {
    let r = c.reply();
    assert_eq!(
        r.code,
        426,
        "first reply to ABOR during a transfer: {}",
        r.text()
    );
    let r = c.reply();
    assert_eq!(r.code, 226, "second reply to ABOR: {}", r.text());
}

fn after_abort_session_goes_on(c: &mut Client, ds: TcpStream) {
    // The server closed (or reset) the data connection: it ends.
    let mut ds = ds;
    ds.set_read_timeout(Some(client::TIMEOUT)).unwrap();
    let _ = client::read_to_eof(&mut ds, client::TRANSFER_TIMEOUT);
    c.expect("NOOP", 200);
    assert_eq!(c.get("RETR one-byte"), b"x");
    assert!(c.get("RETR pub/file") == file_content());
}

fn abor_during_retr(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        let mode = c.default_mode();
        let ds = start_big_retr(&mut c, mode);
        c.send(b"ABOR");
        expect_abort_replies(&mut c);
        after_abort_session_goes_on(&mut c, ds);
    }
    s.assert_no_crash();
}

fn abor_with_telnet_ip_dm_during_retr(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let ds = start_big_retr(&mut c, Mode::Pasv);
    c.send_raw(&[IAC, IP, IAC, DM]);
    c.send(b"ABOR");
    expect_abort_replies(&mut c);
    after_abort_session_goes_on(&mut c, ds);
}

fn abor_during_active_retr(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for (fam, mode) in [(Family::V4, Mode::Port), (Family::V6, Mode::Eprt)] {
        let mut c = Client::login(&s, fam);
        let ds = start_big_retr(&mut c, mode);
        c.send(b"ABOR");
        expect_abort_replies(&mut c);
        after_abort_session_goes_on(&mut c, ds);
    }
}

fn active_connects_from_ephemeral_port(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for (fam, mode) in [
        (Family::V4, Mode::Port),
        (Family::V4, Mode::Eprt),
        (Family::V6, Mode::Eprt),
    ] {
        let mut c = Client::login(&s, fam);
        let l = match c.setup(mode, None) {
            Data::Active(l) => l,
            Data::Passive(_) => unreachable!(),
        };
        c.send(b"RETR pub/file");
        assert_eq!(c.reply().code, 150);
        let (mut ds, from) = accept_bounded(&l, client::TIMEOUT).unwrap();
        assert_eq!(
            from.ip(),
            c.peer_addr().ip(),
            "data connection from the server's address"
        );
        assert_ne!(from.port(), 20, "the server must not use port 20");
        let d = client::read_to_eof(&mut ds, client::TRANSFER_TIMEOUT).unwrap();
        assert!(d == file_content());
        assert_eq!(c.reply().code, 226);
    }
}

/// RFC 959: the 150 comes before the data. A small file goes out whole at
/// once: its data and end must not reach the client before the reply that
/// announces them (aria2 read 150 and 226 together, then waited for a
/// reply that had already come). On loopback a reply written before the
/// data is in the client's queue by the time the data is.
fn opening_reply_comes_before_the_data(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for (fam, mode) in [
        (Family::V4, Mode::Pasv),
        (Family::V4, Mode::Port),
        (Family::V6, Mode::Epsv),
        (Family::V6, Mode::Eprt),
    ] {
        let mut c = Client::login(&s, fam);
        c.expect("TYPE I", 200);
        for _ in 0..5 {
            let data = c.setup(mode, None);
            c.send(b"RETR one-byte");
            let mut d = match data {
                Data::Passive(d) => d,
                Data::Active(l) => accept_bounded(&l, client::TIMEOUT).unwrap().0,
            };
            d.set_read_timeout(Some(client::TIMEOUT)).unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(d.read(&mut byte).unwrap(), 1, "{mode:?}");
            let pending = c.peek_control();
            assert!(
                pending.starts_with(b"150 "),
                "{mode:?}: data before the 150; control holds {:?}",
                String::from_utf8_lossy(&pending)
            );
            assert_eq!(client::read_to_eof(&mut d, client::TIMEOUT).unwrap(), b"");
            assert_eq!(c.reply().code, 150);
            assert_eq!(c.reply().code, 226);
        }
    }
}

/// An unspecified address in PORT or EPRT means the client itself: lftp
/// sends `EPRT |2|::|port|` over IPv6 loopback.
fn active_to_the_unspecified_address(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        let l = TcpListener::bind(SocketAddr::new(c.local_addr().ip(), 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let line = match fam {
            Family::V4 => format!("PORT 0,0,0,0,{},{}", port >> 8, port & 0xff),
            Family::V6 => format!("EPRT |2|::|{port}|"),
        };
        c.expect(&line, 200);
        let t = c.transfer_with(Data::Active(l), b"RETR pub/file");
        assert_eq!(t.codes(), (150, Some(226)), "{line}: {}", t.prelim.text());
        assert!(t.data == file_content(), "{line}");
    }
}

/// Connecting to `addr` must fail (the listener is closed), allowing a
/// short grace period for the server to close it.
fn assert_closed_listener(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(_) => return,
            Ok(s) => drop(s),
        }
        assert!(
            Instant::now() < deadline,
            "the previous passive listener {addr} is still open"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn new_pasv_closes_previous_listener(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let a1 = c.pasv();
    let a2 = c.pasv();
    assert_closed_listener(a1);
    let a3 = c.epsv();
    assert_closed_listener(a2);
    let mut c6 = Client::login(&s, Family::V6);
    let b1 = c6.epsv();
    let _b2 = c6.epsv();
    assert_closed_listener(b1);
    // The last one works.
    let ds = connect_tuned(a3, None, None).unwrap();
    let d = c.transfer_with(Data::Passive(ds), b"RETR one-byte");
    assert_eq!(d.codes(), (150, Some(226)));
    assert_eq!(d.data, b"x");
}

fn pasv_refuses_other_peer(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    for epsv in [false, true] {
        let mut c = Client::login(&s, Family::V4);
        let a = if epsv { c.epsv() } else { c.pasv() };
        let mut intruder = connect_tuned(a, Some(other), None)
            .expect("connect from 127.0.0.2 (the listener should accept at TCP level)");
        let ours = connect_tuned(a, None, None).unwrap();
        let t = c.transfer_with(Data::Passive(ours), b"RETR pub/file");
        assert_eq!(t.codes(), (150, Some(226)), "{}", t.prelim.text());
        assert!(
            t.data == file_content(),
            "the session's own connection gets the data"
        );
        // The intruder was closed without a byte of data.
        intruder.set_read_timeout(Some(client::TIMEOUT)).unwrap();
        let mut buf = [0u8; 4096];
        match intruder.read(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("the connection from 127.0.0.2 received {n} bytes"),
        }
    }
}

fn data_connect_timeout_is_425(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new().data_timeout(2));
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        if fam == Family::V4 {
            c.pasv();
        } else {
            c.epsv();
        }
        let start = Instant::now();
        c.send(b"RETR pub/file");
        let mut r = c.reply();
        if r.code == 150 {
            r = c.reply();
        }
        assert_eq!(r.code, 425, "RETR with nobody connecting: {}", r.text());
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(8),
            "with --data-timeout 2, 425 came after {waited:?}"
        );
        c.expect("NOOP", 200);
        assert_eq!(c.get("RETR one-byte"), b"x");
    }
    // A listing waits the same bounded time.
    let mut c = Client::login(&s, Family::V4);
    c.pasv();
    let start = Instant::now();
    let r = c.cmd("LIST /pub");
    assert_eq!(r.code, 425, "LIST with nobody connecting: {}", r.text());
    assert!(start.elapsed() <= Duration::from_secs(8));
    c.expect("NOOP", 200);
}

fn active_connect_refused_is_425(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new().data_timeout(5));
    let mut c = Client::login(&s, Family::V4);
    // A port nobody listens on, and none of the kernel's own picks (a
    // passive listener of a test running beside this one could take it).
    let port = common::port::free_port(Ipv4Addr::LOCALHOST.into());
    let a = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    c.expect(&client::port_arg(&a), 200);
    c.send(b"RETR pub/file");
    let mut r = c.reply();
    if r.code == 150 {
        r = c.reply();
    }
    assert_eq!(r.code, 425, "{}", r.text());
    c.expect("NOOP", 200);
}

fn idle_timeout_421(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new().timeout(2));
    let mut c = Client::login(&s, Family::V4);
    let start = Instant::now();
    let r = c.reply();
    let waited = start.elapsed();
    assert_eq!(r.code, 421, "idle session: {}", r.text());
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(8),
        "with --timeout 2, 421 came after {waited:?}"
    );
    c.expect_eof(Duration::from_secs(5));
    // Activity resets the timer: a session that keeps talking survives.
    let mut c = Client::login(&s, Family::V6);
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(1000));
        c.expect("NOOP", 200);
    }
}

fn transfer_log_lines(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let me = c.local_addr();
    assert!(c.get("RETR pub/file") == file_content());
    c.expect("QUIT", 221);
    c.expect_eof(Duration::from_secs(5));
    let start = s.wait_log_line("start", |l| {
        l.starts_with("start ") && l.contains(&format!("peer={me}"))
    });
    assert!(start.contains("peer=127.0.0.1:"), "{start}");
    let tr = s.wait_log_line("transfer of /pub/file", |l| {
        l.starts_with("transfer ") && l.contains("path=/pub/file ")
    });
    for want in [
        &format!("peer={me}") as &str,
        "kind=retr",
        &format!("bytes={FILE_LEN}"),
        "type=I",
        "result=ok",
        "seconds=",
    ] {
        assert!(tr.contains(want), "transfer line lacks {want:?}: {tr}");
    }
    let end = s.wait_log_line("end", |l| {
        l.starts_with("end ") && l.contains(&format!("peer={me}"))
    });
    assert!(end.contains("reason=quit"), "{end}");
    assert!(end.contains("seconds="), "{end}");
}

fn pasv_ports_option(kind: Kind) {
    let lo = 20000 + (std::process::id() % 20000) as u16;
    let hi = lo + 199;
    let (_t, s) = setup(
        kind,
        Opts::new().arg("--pasv-ports").arg(format!("{lo}-{hi}")),
    );
    let mut c = Client::login(&s, Family::V4);
    for _ in 0..3 {
        let a = c.pasv();
        assert!(
            (lo..=hi).contains(&a.port()),
            "PASV port {} not in {lo}-{hi}",
            a.port()
        );
        let e = c.epsv();
        assert!(
            (lo..=hi).contains(&e.port()),
            "EPSV port {} not in {lo}-{hi}",
            e.port()
        );
        assert_eq!(c.get("RETR one-byte"), b"x");
    }
}

fn pasv_address_option(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new().arg("--pasv-address").arg("127.0.0.5"));
    let mut c = Client::login(&s, Family::V4);
    let a = c.pasv();
    assert_eq!(a.ip(), "127.0.0.5".parse::<IpAddr>().unwrap());
    // EPSV carries no address.
    c.epsv();
}

fn many_transfers_one_session(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    for i in 0..60 {
        let mode = client::ALL_MODES_V4[i % 4];
        assert_eq!(c.get_mode(mode, "RETR one-byte"), b"x", "transfer {i}");
        let names = c.get_mode(mode, "NLST pub");
        assert!(!names.is_empty());
    }
    c.expect("NOOP", 200);
}

fn concurrent_sessions(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let addr4 = s.addr(Family::V4);
    let addr6 = s.addr(Family::V6);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let addr = if i % 2 == 0 { addr4 } else { addr6 };
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                assert_eq!(c.reply().code, 220);
                c.login_only();
                c.expect("TYPE I", 200);
                for _ in 0..3 {
                    assert!(c.get("RETR pub/file") == file_content());
                }
                c.expect("QUIT", 221);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a concurrent session failed");
    }
    s.assert_no_crash();
}

fn file_shrinks_during_retr(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let mut ds = start_big_retr(&mut c, Mode::Pasv);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(t.root.join("big.bin"))
        .unwrap();
    f.set_len(1000).unwrap();
    drop(f);
    let rest = client::read_to_eof(&mut ds, client::TRANSFER_TIMEOUT);
    if let Ok(rest) = rest {
        assert!(
            65536 + rest.len() < BIG_LEN,
            "a transfer of a file that shrank cannot deliver the old size"
        );
    }
    let r = c.reply();
    assert!(
        matches!(r.code, 426 | 451 | 550 | 552),
        "a file that shrinks mid-transfer must end with an error, got {}",
        r.text()
    );
    c.expect("NOOP", 200);
    assert_eq!(c.get("RETR one-byte"), b"x");
    s.assert_no_crash();
}

fn client_vanishes_mid_transfer(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    {
        let mut c = Client::login(&s, Family::V4);
        let ds = start_big_retr(&mut c, Mode::Pasv);
        drop(ds);
        drop(c);
    }
    if !kind.is_supervisor() {
        // The per-connection process notices and exits.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !s.pids().is_empty() {
            assert!(
                Instant::now() < deadline,
                "ftpd did not exit after the client left"
            );
            thread::sleep(Duration::from_millis(50));
        }
        s.assert_no_crash();
    }
    // Others are served.
    let mut c = Client::login(&s, Family::V4);
    assert_eq!(c.get("RETR one-byte"), b"x");
}

/// A directory of several listing batches: its entries are stat-ed by two
/// threads, inside the sandbox of each program. Every public entry comes
/// once with its own size (its number), in LIST, NLST and MLSD; private
/// and hidden ones never.
fn large_directory_listings(kind: Kind) {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    let (t, s) = setup(kind, Opts::new());
    let dir = t.root.join("large");
    let chmod = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    let mut public = BTreeMap::new();
    for i in 0..2500usize {
        let size = i % 300;
        let (name, mode) = match i % 9 {
            0 => (format!("private-{i:04}"), 0o600),
            1 => (format!(".hidden-{i:04}"), 0o644),
            _ => (format!("file-{i:04}"), 0o644),
        };
        let path = dir.join(&name);
        std::fs::write(&path, vec![b'x'; size]).unwrap();
        chmod(&path, mode);
        if mode == 0o644 && !name.starts_with('.') {
            public.insert(name.into_bytes(), size as u64);
        }
    }
    let mut c = Client::login(&s, Family::V4);
    c.expect("TYPE I", 200);
    let listed: BTreeMap<Vec<u8>, u64> = crlf_lines(&c.get("LIST large"))
        .iter()
        .map(|l| {
            let l = must_ls(l);
            (l.name, l.size)
        })
        .collect();
    assert_eq!(listed, public, "LIST");
    let mut names = crlf_lines(&c.get("NLST large"));
    names.sort();
    let want: Vec<Vec<u8>> = public.keys().cloned().collect();
    assert_eq!(names, want, "NLST");
    let facts: BTreeMap<Vec<u8>, u64> = crlf_lines(&c.get("MLSD large"))
        .iter()
        .map(|l| {
            let m = must_mlsx(l);
            (m.name, m.facts["size"].parse().unwrap())
        })
        .collect();
    assert_eq!(facts, public, "MLSD");
    c.expect("QUIT", 221);
}

/// How many bytes process `pid` has read so far: read(2), pread and
/// sendfile(2) all count (`rchar` of /proc/PID/io).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_else(|e| {
        panic!("/proc/{pid}/io: {e} (a kernel without CONFIG_TASK_IO_ACCOUNTING?)")
    });
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rchar in /proc/{pid}/io: {io}"))
}

/// A download of a file in the page cache is read once, by its zero-copy
/// send, and not first into a buffer as well: the server's read count
/// grows by about the file's size, not twice that. As root the files
/// belong to root and the server runs unprivileged, as an archive's
/// server does, and cachestat(2) refuses to look at them (EPERM): taken
/// once for "the kernel has no cachestat", which had a helper thread read
/// every byte before it was sent.
fn a_cached_download_is_read_once(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let len = 32 << 20;
    let path = t.big_file("cached.bin", len as u64);
    assert_eq!(
        std::fs::read(&path).unwrap().len(),
        len,
        "into the page cache"
    );
    let mut c = Client::login(&s, Family::V4);
    c.expect("TYPE I", 200);
    let pids = s.pids();
    assert_eq!(
        pids.len(),
        1,
        "one server process for the session: {pids:?}"
    );
    let before = bytes_read(pids[0]);
    assert_eq!(c.get("RETR cached.bin").len(), len);
    let read = bytes_read(pids[0]) - before;
    assert!(
        read < len as u64 + len as u64 / 4,
        "the server read {read} bytes to send {len}"
    );
    c.expect("QUIT", 221);
}
