//! What a client, or several, can make a server hold: passive ports and
//! their queues, memory for replies nobody reads. Each against every
//! program (ftpd, ftpd through setpriv, the supervisor on epoll and on
//! io_uring), over loopback.

#[macro_use]
mod common;

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::client::{self, connect_tuned};
use common::tools::require;
use common::tree::file_content;
use common::{Client, Data, Family, Kind, Opts, setup};

server_tests!(
    squatters_cannot_block_a_passive_transfer,
    an_unused_passive_listener_is_closed,
    replies_nobody_reads_are_bounded,
);

/// The supervisor counts passive listeners per address; `ftpd`, a
/// process per connection, leaves per-address limits to its super-server.
mod passive_share {
    use super::*;

    #[test]
    fn supervisor() {
        one_address_cannot_take_the_passive_ports(Kind::Supervisor);
    }

    #[test]
    fn supervisor_uring() {
        one_address_cannot_take_the_passive_ports(Kind::SupervisorUring);
    }
}

fn other_host() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

/// Connections from another address to a passive port are closed at once,
/// before and during the transfer: they cannot fill its queue, and the
/// client, which connects before it sends RETR (curl, ftplib, wget do),
/// gets its file.
fn squatters_cannot_block_a_passive_transfer(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for epsv in [false, true] {
        let mut c = Client::login(&s, Family::V4);
        let a = if epsv { c.epsv() } else { c.pasv() };
        // More than any listen queue a server would give one transfer.
        let squatters: Vec<TcpStream> = (0..40)
            .filter_map(|_| connect_tuned(a, Some(other_host()), None).ok())
            .collect();
        assert!(!squatters.is_empty(), "no connection from 127.0.0.2 at all");
        let ours = TcpStream::connect_timeout(&a, client::TIMEOUT)
            .expect("the client's own data connection, after the squatters");
        let t = c.transfer_with(Data::Passive(ours), b"RETR pub/file");
        assert_eq!(t.codes(), (150, Some(226)), "{}", t.prelim.text());
        assert!(t.data == file_content());
        for mut sq in squatters {
            sq.set_read_timeout(Some(client::TIMEOUT)).unwrap();
            let mut buf = [0u8; 64];
            if let Ok(n @ 1..) = sq.read(&mut buf) {
                panic!("a connection from 127.0.0.2 received {n} bytes");
            }
        }
        c.expect("NOOP", 200);
    }
}

/// A passive listener no transfer uses is closed after the data timeout:
/// the port is free again, and a transfer command then gets 425.
fn an_unused_passive_listener_is_closed(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new().data_timeout(2));
    let mut c = Client::login(&s, Family::V4);
    let a = c.pasv();
    let began = Instant::now();
    let mut closed = false;
    // Knocking from another address: the server closes such connections
    // and goes on listening (one from the client's own would be taken as
    // the data connection, which ends the listening).
    while began.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(200));
        match connect_tuned(a, Some(other_host()), None) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "the passive port still listens after 10 s");
    assert!(
        began.elapsed() >= Duration::from_millis(1500),
        "closed before the data timeout"
    );
    c.expect("RETR pub/file", 425);
    c.expect("NOOP", 200);
}

/// One address holds at most a quarter of a `--pasv-ports` range: the
/// others still get passive ports.
fn one_address_cannot_take_the_passive_ports(kind: Kind) {
    let base = common::port::free_port("127.0.0.1".parse().unwrap());
    let range = format!("{base}-{}", base + 7);
    let (_t, s) = setup(kind, Opts::new().arg("--pasv-ports").arg(range));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Client::login(&s, Family::V4);
        c.pasv();
        held.push(c);
    }
    let mut third = Client::login(&s, Family::V4);
    third.expect("PASV", 425);
    third.expect("EPSV", 425);
    let addr = s.addr(Family::V4);
    let mut other = Client::connect_from(addr, other_host());
    assert_eq!(other.reply().code, 220);
    other.login_only();
    let a = other.pasv();
    assert!((base..=base + 7).contains(&a.port()), "{a}");
    // Given back when a listener closes.
    drop(held.pop());
    let began = Instant::now();
    loop {
        let r = third.cmd("PASV");
        if r.code == 227 {
            break;
        }
        assert_eq!(r.code, 425);
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "never given back"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A client that sends commands and never reads the replies makes the
/// server hold a bounded amount for it: commands wait while replies are
/// queued, and the kernel's send queue of the control connection stays
/// small (measured from outside, with `ss`). Once the client reads, every
/// reply arrives.
fn replies_nobody_reads_are_bounded(kind: Kind) {
    require("ss", "iproute2");
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let ours = c.local_addr();
    let server = c.peer_addr();
    let line = b"HELP\r\n";
    let count = 16 * 1024 / line.len();
    let mut all = Vec::with_capacity(count * line.len());
    for _ in 0..count {
        all.extend_from_slice(line);
    }
    c.send_raw(&all);
    // Let the server answer all it will.
    let mut last = 0;
    let began = Instant::now();
    let mut queued = 0;
    while began.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(300));
        queued = send_queue(server, ours);
        if queued == last && queued > 0 {
            break;
        }
        last = queued;
    }
    assert!(queued > 0, "no reply queued at all");
    assert!(
        queued <= 192 * 1024,
        "the server's socket holds {queued} bytes of replies nobody reads"
    );
    // Every HELP is answered once the client reads.
    c.set_read_timeout(client::TIMEOUT);
    let mut got = 0;
    for _ in 0..count {
        let r = c.reply();
        assert_eq!(r.code, 214);
        got += 1;
    }
    assert_eq!(got, count);
    c.expect("NOOP", 200);
}

/// The send queue of the server's end of the connection between `server`
/// and `client` (`ss -tn`'s Send-Q).
fn send_queue(server: SocketAddr, client: SocketAddr) -> u64 {
    let out = Command::new("ss")
        .args(["-tnH", "state", "established"])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Recv-Q Send-Q Local Peer
        if f.len() >= 4 && f[2] == server.to_string() && f[3] == client.to_string() {
            return f[1].parse().unwrap_or(0);
        }
    }
    panic!("ss shows no connection {server} -> {client}:\n{text}");
}
