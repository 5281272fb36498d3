//! Behind a load balancer (`--proxy-protocol`): real HAProxy (Debian's
//! `haproxy`, started here on loopback with the contrib configuration,
//! stopped by pid) in front of two supervisors, one per engine, and once
//! in front of ftpd under tcpserver. Clients on other loopback addresses
//! (127.0.0.2, 127.0.0.3, ...) stand for hosts on the internet; the
//! balancer is 127.0.0.1. The nodes share the balancer's address, so a
//! client's passive data connection (to the control connection's address,
//! as curl, ftplib and EPSV do) goes straight to the node, as a published
//! passive range would (README, "Scaling out").
//!
//! Then bad input against each program directly: what is not a header
//! from a trusted balancer is closed without a word within the header
//! timeout, and the process serves on.

#[allow(unused_macros)]
mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::client::{connect_tuned, read_to_eof};
use common::port::free_port;
use common::server::{DROP_GID, DROP_UID, clean_env, ftpd_path, supervisor_path};
use common::tools::{require, run};
use common::tree::{big_content, file_content};
use common::{Client, Tree, is_root};

/// The balancer, and the trusted network of the nodes' `--proxy-from`.
const BALANCER: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// The header timeout the nodes get (their `--timeout`).
const HEADER_SECS: u64 = 2;
/// Bound on anything the tests wait for.
const WAIT: Duration = Duration::from_secs(20);
const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib");

fn client_ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Polls `cond` every 20 ms until it holds (true) or `bound` passes.
fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + bound;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------ nodes

/// What serves behind the balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prog {
    Epoll,
    Uring,
    /// ftpd under tcpserver.
    Ftpd,
}

/// One server on 127.0.0.1, its standard error in its own log.
struct Node {
    prog: Prog,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Node {
    /// `prog` serving `tree`'s root with `args`, logging to
    /// `tree.base/NAME.log`; returns once it listens.
    fn start(prog: Prog, tree: &Tree, name: &str, args: &[String]) -> Node {
        let port = free_port(BALANCER.into());
        let addr = SocketAddr::from((BALANCER, port));
        let log = tree.base.join(format!("{name}.log"));
        let logf = File::create(&log).unwrap();
        let mut cmd = match prog {
            Prog::Epoll | Prog::Uring => {
                let bin = supervisor_path().expect("aftpd-supervisor is built");
                let mut c = Command::new(bin);
                let engine = if prog == Prog::Epoll {
                    "epoll"
                } else {
                    "uring"
                };
                c.args(["--engine", engine, "--threads", "2", "--listen"])
                    .arg(addr.to_string());
                c.args(args).arg(&tree.root);
                c
            }
            Prog::Ftpd => {
                require("tcpserver", "ucspi-tcp-ipv6");
                let mut c = Command::new("tcpserver");
                c.args(["-v", "-RHl0", "127.0.0.1"])
                    .arg(port.to_string())
                    .arg(ftpd_path())
                    .args(args)
                    .arg(&tree.root);
                c
            }
        };
        clean_env(&mut cmd);
        if is_root() {
            cmd.env("UID", DROP_UID.to_string())
                .env("GID", DROP_GID.to_string());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf));
        let mut node = Node {
            prog,
            child: cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {prog:?}: {e}")),
            addr,
            log,
        };
        // The supervisor's start line; tcpserver's first status line.
        let ready = if prog == Prog::Ftpd {
            "status: 0/"
        } else {
            "listening on"
        };
        let up = wait_until(WAIT, || node.log_text().contains(ready) || !node.running());
        assert!(
            up && node.running(),
            "{prog:?} did not start; log:\n{}",
            node.log_text()
        );
        node
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The log once `pred` holds for it (a line may come a moment after
    /// the event, from a writer thread); panics with the log otherwise.
    fn wait_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut text = String::new();
        let ok = wait_until(WAIT, || {
            text = self.log_text();
            pred(&text)
        });
        assert!(ok, "{:?} log: no {what}:\n{text}", self.prog);
        text
    }

    /// The peers of the sessions this node's log shows.
    fn session_peers(&self) -> Vec<SocketAddr> {
        self.log_text()
            .lines()
            .filter_map(|l| l.split_once("start peer=").map(|(_, p)| p))
            .filter_map(|p| p.split_whitespace().next()?.parse().ok())
            .collect()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let mut st = None;
        wait_until(WAIT, || {
            st = self.child.try_wait().unwrap();
            st.is_some()
        });
        st.unwrap_or_else(|| panic!("{:?} did not exit; log:\n{}", self.prog, self.log_text()))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- {:?} log ---\n{}", self.prog, self.log_text());
        }
    }
}

/// The options of a node behind the balancer: trust it, the header
/// timeout, its own passive range (slot `n`, so that concurrent tests and
/// nodes do not share one).
fn node_args(n: u16, extra: &[&str]) -> Vec<String> {
    let base = 40_000 + (std::process::id() % 40) as u16 * 500 + n * 50;
    let mut a: Vec<String> = [
        "--proxy-protocol",
        "--proxy-from",
        "127.0.0.1/32",
        "--timeout",
        &HEADER_SECS.to_string(),
        "--pasv-address",
        "127.0.0.1",
        "--pasv-ports",
        &format!("{base}-{}", base + 49),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn pasv_range(args: &[String]) -> (u16, u16) {
    let i = args.iter().position(|a| a == "--pasv-ports").unwrap();
    let (lo, hi) = args[i + 1].split_once('-').unwrap();
    (lo.parse().unwrap(), hi.parse().unwrap())
}

// --------------------------------------------------------------- HAProxy

/// HAProxy with contrib/haproxy/haproxy.cfg, adapted to loopback: the
/// frontend on 127.0.0.1, the given nodes as its servers, a stats socket
/// to see their health checks, checks more often.
struct HaProxy {
    child: Child,
    addr: SocketAddr,
    stats: SocketAddr,
    log: PathBuf,
}

impl HaProxy {
    fn start(tree: &Tree, nodes: &[&Node]) -> HaProxy {
        require("haproxy", "haproxy");
        let addr = SocketAddr::from((BALANCER, free_port(BALANCER.into())));
        let stats = SocketAddr::from((BALANCER, free_port(BALANCER.into())));
        let contrib = fs::read_to_string(Path::new(CONTRIB).join("haproxy/haproxy.cfg")).unwrap();
        // The shipped global section is for a system service (syslog,
        // chroot, user): this one runs in the foreground as the test.
        let at = contrib.find("\ndefaults").expect("a defaults section");
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("    server node{} {}\n", i + 1, n.addr))
            .collect();
        let mut cfg = format!(
            "global\n    log stderr format raw local0 info\n    stats socket ipv4@{stats} level admin\n{}",
            &contrib[at..]
        );
        for (from, to) in [
            ("    bind :21\n", format!("    bind {addr}\n")),
            (
                "    server node1 192.0.2.11:21\n    server node2 192.0.2.12:21\n",
                servers,
            ),
            ("check inter 2s", "check inter 300ms".to_owned()),
        ] {
            assert!(cfg.contains(from), "{from:?} is not in the contrib file");
            cfg = cfg.replace(from, &to);
        }
        let path = tree.base.join("haproxy.cfg");
        fs::write(&path, &cfg).unwrap();
        let log = tree.base.join("haproxy.log");
        let logf = File::create(&log).unwrap();
        let mut check = Command::new("haproxy");
        check.arg("-c").arg("-f").arg(&path);
        run(check, WAIT).assert_success("haproxy -c");
        let mut cmd = Command::new("haproxy");
        clean_env(&mut cmd);
        cmd.arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(logf.try_clone().unwrap()))
            .stderr(Stdio::from(logf));
        let child = cmd.spawn().expect("spawn haproxy");
        let h = HaProxy {
            child,
            addr,
            stats,
            log,
        };
        let names: Vec<String> = (1..=nodes.len()).map(|i| format!("node{i}")).collect();
        h.wait_state(&names, "UP");
        h
    }

    /// `show stat`: one map of column to value per proxy and server.
    fn stat(&self) -> Vec<BTreeMap<String, String>> {
        let Ok(mut s) = TcpStream::connect_timeout(&self.stats, Duration::from_secs(2)) else {
            return Vec::new();
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"show stat\n").unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let mut lines = text.lines();
        let Some(head) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
            return Vec::new();
        };
        let cols: Vec<&str> = head.split(',').collect();
        lines
            .map(|l| {
                cols.iter()
                    .zip(l.split(','))
                    .map(|(c, v)| (c.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// Waits until each of `servers` is in `state` (`UP`: by a passed
    /// health check, `L7OK`: the node answered it with its 220).
    fn wait_state(&self, servers: &[String], state: &str) {
        let mut last = Vec::new();
        let ok = wait_until(WAIT, || {
            last = self.stat();
            servers.iter().all(|name| {
                last.iter().any(|row| {
                    row.get("svname") == Some(name)
                        && row.get("status").map(String::as_str) == Some(state)
                        && (state != "UP"
                            || row.get("check_status").map(String::as_str) == Some("L7OK"))
                })
            })
        });
        if !ok {
            let rows: Vec<String> = last
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {}",
                        r.get("svname").map_or("", String::as_str),
                        r.get("status").map_or("", String::as_str),
                        r.get("check_status").map_or("", String::as_str)
                    )
                })
                .collect();
            panic!(
                "HAProxy: {servers:?} not {state}: {rows:?}\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    fn url(&self, path: &str) -> String {
        format!("ftp://{}/{path}", self.addr)
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- haproxy log ---\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

// ---------------------------------------------------------------- clients

/// curl from `from`, the output to `out`; `extra` picks the mode.
fn curl(tree: &Tree, from: IpAddr, url: &str, out: &Path, extra: &[&str]) {
    require("curl", "curl");
    let home = tree.scratch("home");
    let mut c = Command::new("curl");
    clean_env(&mut c);
    c.env("HOME", &home)
        .args(["-sS", "--max-time", "60", "--connect-timeout", "10"])
        .arg("--interface")
        .arg(from.to_string())
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(url);
    run(c, Duration::from_secs(90)).assert_success(&format!("curl {extra:?} from {from}"));
}

/// Downloads pub/file with Python's ftplib from `from`: once over PASV
/// (ftplib's own choice on IPv4), once over EPSV.
const FTPLIB: &str = r#"
import ftplib, sys
host, port, src, pasv_out, epsv_out = sys.argv[1:6]
f = ftplib.FTP(timeout=30, source_address=(src, 0))
f.connect(host, int(port))
f.login()
with open(pasv_out, 'wb') as o:
    f.retrbinary('RETR pub/file', o.write)
f.makepasv = lambda: ftplib.parse229(f.sendcmd('EPSV'), f.sock.getpeername())
with open(epsv_out, 'wb') as o:
    f.retrbinary('RETR pub/file', o.write)
f.quit()
print('DONE')
"#;

fn ftplib(tree: &Tree, from: IpAddr, to: SocketAddr) {
    require("python3", "python3");
    let (p, e) = (tree.base.join("ftplib-pasv"), tree.base.join("ftplib-epsv"));
    let mut c = Command::new("python3");
    clean_env(&mut c);
    c.arg("-c")
        .arg(FTPLIB)
        .arg(to.ip().to_string())
        .arg(to.port().to_string())
        .arg(from.to_string())
        .arg(&p)
        .arg(&e);
    let o = run(c, Duration::from_secs(90));
    o.assert_success(&format!("ftplib from {from}"));
    assert!(o.stdout_text().contains("DONE"), "{}", o.stdout_text());
    for f in [p, e] {
        assert!(fs::read(&f).unwrap() == file_content(), "ftplib {f:?}");
    }
}

/// A raw FTP client through `lb` from `from`, logged in, TYPE I.
fn login_from(lb: SocketAddr, from: IpAddr) -> Client {
    let mut c = Client::connect_from(lb, from);
    let g = c.reply();
    assert_eq!(g.code, 220, "{}", g.text());
    c.login_only();
    c.expect("TYPE I", 200);
    c
}

/// RETR `path` over a data connection from `from` to `data`, then 226.
fn retr_from(c: &mut Client, data: SocketAddr, from: IpAddr, path: &str) -> Vec<u8> {
    let mut s = connect_tuned(data, Some(from), None).unwrap();
    c.send(format!("RETR {path}").as_bytes());
    let r = c.reply();
    assert!(matches!(r.code, 125 | 150), "RETR: {}", r.text());
    let got = read_to_eof(&mut s, Duration::from_secs(60)).unwrap();
    let r = c.reply();
    assert_eq!(r.code, 226, "after RETR: {}", r.text());
    got
}

/// Whether the server closes `s` (EOF or reset) without sending a byte,
/// within `bound`.
fn closed_silently(mut s: TcpStream, bound: Duration) -> Result<(), String> {
    s.set_read_timeout(Some(bound)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => return Err(format!("not closed: {e}; got {got:?}")),
        }
    }
    if got.is_empty() {
        Ok(())
    } else {
        Err(format!("got {:?}", String::from_utf8_lossy(&got)))
    }
}

// ------------------------------------------------- two nodes, real clients

/// Two supervisors (epoll, io_uring) behind HAProxy: curl and ftplib from
/// four client addresses download over PASV and EPSV; the health checks
/// pass (L7OK) without being sessions; each node's log names the real
/// clients, never the balancer; both nodes serve.
#[test]
fn haproxy_spreads_real_clients_over_two_nodes() {
    let (ta, tb) = (Tree::new(), Tree::new());
    let a = Node::start(Prog::Epoll, &ta, "a", &node_args(0, &[]));
    let b = Node::start(Prog::Uring, &tb, "b", &node_args(1, &[]));
    let lb = HaProxy::start(&ta, &[&a, &b]);
    let out = ta.base.join("curl.bin");
    for n in [2, 3] {
        for mode in [&[][..], &["--disable-epsv"][..]] {
            let _ = fs::remove_file(&out);
            curl(&ta, client_ip(n), &lb.url("pub/file"), &out, mode);
            assert!(fs::read(&out).unwrap() == file_content(), "curl {mode:?}");
        }
        curl(&ta, client_ip(n), &lb.url("big.bin"), &out, &[]);
        assert!(fs::read(&out).unwrap() == big_content(), "curl big.bin");
    }
    for n in [4, 5] {
        ftplib(&ta, client_ip(n), lb.addr);
    }
    let want: Vec<IpAddr> = (2..=5).map(client_ip).collect();
    let mut seen = Vec::new();
    for node in [&a, &b] {
        let peers = node.session_peers();
        assert!(!peers.is_empty(), "{:?} served no session", node.prog);
        for p in &peers {
            assert!(
                want.contains(&p.ip()),
                "{:?} logged a session of {p}, not a client:\n{}",
                node.prog,
                node.log_text()
            );
        }
        seen.extend(peers.iter().map(|p| p.ip()));
        let log = node.log_text();
        assert!(
            !log.contains("peer=127.0.0.1:"),
            "the balancer (a health check?) in a session or transfer line:\n{log}"
        );
    }
    for ip in &want {
        assert!(seen.contains(ip), "no node logged {ip}");
    }
    // Every client's downloads, under its own address.
    for node in [&a, &b] {
        for l in node
            .log_text()
            .lines()
            .filter(|l| l.contains("transfer peer="))
        {
            assert!(l.contains("result=ok"), "{l}");
        }
    }
    // The health checks kept passing all along.
    lb.wait_state(&["node1".to_owned(), "node2".to_owned()], "UP");
}

/// `--max-per-ip` counts the clients behind the balancer, each by its own
/// address: two sessions from 127.0.0.2 fill its share, while 127.0.0.3
/// and 127.0.0.4 still come in through the same balancer.
#[test]
fn max_per_ip_counts_real_clients() {
    let t = Tree::new();
    let n = Node::start(
        Prog::Uring,
        &t,
        "node",
        &node_args(2, &["--max-per-ip", "2"]),
    );
    let lb = HaProxy::start(&t, &[&n]);
    let held = [
        login_from(lb.addr, client_ip(2)),
        login_from(lb.addr, client_ip(2)),
    ];
    let mut third = Client::connect_from(lb.addr, client_ip(2));
    let r = third.reply();
    assert_eq!(r.code, 421, "a third session from 127.0.0.2: {}", r.text());
    assert!(r.text().contains("your address"), "{}", r.text());
    let others: Vec<Client> = (3..=6).map(|i| login_from(lb.addr, client_ip(i))).collect();
    let log = n.wait_log("a max-per-ip refusal of 127.0.0.2", |l| {
        l.contains("refused peer=127.0.0.2:") && l.contains("reason=max-per-ip")
    });
    assert!(!log.contains("refused peer=127.0.0.1"), "{log}");
    drop((held, others));
}

/// The passive peer check and PORT/EPRT compare with the client from the
/// header: a data connection from the balancer's address or another
/// client's is closed, the client's own is served; PORT to the client
/// works, PORT to the balancer is refused.
#[test]
fn data_connections_belong_to_the_real_client() {
    let t = Tree::new();
    let args = node_args(3, &[]);
    let (lo, hi) = pasv_range(&args);
    let n = Node::start(Prog::Epoll, &t, "node", &args);
    let lb = HaProxy::start(&t, &[&n]);
    let me = client_ip(2);
    let mut c = login_from(lb.addr, me);
    for epsv in [false, true] {
        let data = if epsv { c.epsv() } else { c.pasv() };
        // The node's own --pasv-address and range, whoever relayed.
        assert_eq!(data.ip(), IpAddr::V4(BALANCER), "{data}");
        assert!((lo..=hi).contains(&data.port()), "{data} not in {lo}-{hi}");
        for stranger in [IpAddr::V4(BALANCER), client_ip(3)] {
            let s = connect_tuned(data, Some(stranger), None).unwrap();
            if let Err(e) = closed_silently(s, WAIT) {
                panic!("a data connection from {stranger}: {e}");
            }
        }
        assert!(retr_from(&mut c, data, me, "pub/file") == file_content());
    }
    n.wait_log("the refused data connections", |l| {
        l.contains("data connection(s) from addresses other than peer=127.0.0.2:")
    });
    // Active mode: only to the client's own address.
    let l = std::net::TcpListener::bind((me, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let arg = |ip: Ipv4Addr| {
        let o = ip.octets();
        format!(
            "PORT {},{},{},{},{},{}",
            o[0],
            o[1],
            o[2],
            o[3],
            port >> 8,
            port & 255
        )
    };
    let r = c.cmd(&arg(BALANCER));
    assert_eq!(r.code, 504, "PORT to the balancer: {}", r.text());
    c.expect(&arg(Ipv4Addr::new(127, 0, 0, 2)), 200);
    c.send(b"RETR pub/file");
    let r = c.reply();
    assert!(matches!(r.code, 125 | 150), "{}", r.text());
    let (mut s, from) = common::client::accept_bounded(&l, WAIT).unwrap();
    assert_eq!(
        from.ip(),
        IpAddr::V4(BALANCER),
        "the node connects from its own address"
    );
    assert!(read_to_eof(&mut s, WAIT).unwrap() == file_content());
    assert_eq!(c.reply().code, 226);
    c.expect("QUIT", 221);
}

/// A node stopped mid-transfer (SIGTERM) lets its download finish while
/// the balancer sends new sessions to the other node.
#[test]
fn stopped_node_finishes_while_the_other_takes_over() {
    const HUGE: u64 = 32 << 20;
    let (ta, tb) = (Tree::new(), Tree::new());
    for t in [&ta, &tb] {
        t.big_file("huge.bin", HUGE);
    }
    let extra = ["--shutdown-timeout", "60"];
    let mut a = Node::start(Prog::Epoll, &ta, "a", &node_args(4, &extra));
    let mut b = Node::start(Prog::Uring, &tb, "b", &node_args(5, &extra));
    let lb = HaProxy::start(&ta, &[&a, &b]);
    let me = client_ip(2);
    let mut c = login_from(lb.addr, me);
    let data = c.epsv();
    // A small receive buffer and a slow start keep the transfer in
    // flight while the node is told to stop.
    let mut s = connect_tuned(data, Some(me), Some(64 * 1024)).unwrap();
    c.send(b"RETR huge.bin");
    let r = c.reply();
    assert!(matches!(r.code, 125 | 150), "{}", r.text());
    let mut got =
        common::client::read_some(&mut s, 1 << 20, || thread::sleep(Duration::from_millis(2)))
            .unwrap();
    let a_serves = a.session_peers().iter().any(|p| p.ip() == me);
    let b_serves = b.session_peers().iter().any(|p| p.ip() == me);
    assert!(a_serves != b_serves, "one node serves the download");
    let (stopped, other, name) = if a_serves {
        (&mut a, &mut b, "node1")
    } else {
        (&mut b, &mut a, "node2")
    };
    stopped.terminate();
    // It stops listening at once; the balancer's checks then fail.
    let addr = stopped.addr;
    assert!(
        wait_until(WAIT, || TcpStream::connect(addr).is_err()),
        "the stopped node still listens"
    );
    lb.wait_state(&[name.to_owned()], "DOWN");
    let out = ta.base.join("during.bin");
    for n in 3..=6 {
        curl(&ta, client_ip(n), &lb.url("pub/file"), &out, &[]);
        assert!(fs::read(&out).unwrap() == file_content());
    }
    let took: Vec<IpAddr> = other.session_peers().iter().map(|p| p.ip()).collect();
    for n in 3..=6 {
        assert!(
            took.contains(&client_ip(n)),
            "{} went elsewhere",
            client_ip(n)
        );
    }
    assert!(
        !stopped.session_peers().iter().any(|p| p.ip() != me),
        "the stopping node took a new session"
    );
    // The download in flight runs to its end.
    got.extend(read_to_eof(&mut s, Duration::from_secs(60)).unwrap());
    assert_eq!(got.len() as u64, HUGE);
    let want = fs::read(ta.root.join("huge.bin")).unwrap();
    assert!(got == want, "the download's bytes");
    assert_eq!(c.reply().code, 226);
    let st = stopped.wait_exit();
    assert!(st.success(), "the stopped node: {st}");
    let log = stopped.log_text();
    assert!(
        log.lines().any(|l| l.contains("transfer peer=127.0.0.2:")
            && l.contains("path=/huge.bin")
            && l.contains("result=ok")),
        "{log}"
    );
}

/// ftpd under tcpserver behind HAProxy: the health checks pass (each an
/// ftpd that answers 220 and exits), curl downloads over EPSV and PASV,
/// and the log names the client.
#[test]
fn haproxy_in_front_of_ftpd_under_tcpserver() {
    let t = Tree::new();
    let n = Node::start(Prog::Ftpd, &t, "ftpd", &node_args(6, &[]));
    let lb = HaProxy::start(&t, &[&n]);
    let out = t.base.join("curl.bin");
    for mode in [&[][..], &["--disable-epsv"][..]] {
        let _ = fs::remove_file(&out);
        curl(&t, client_ip(2), &lb.url("pub/file"), &out, mode);
        assert!(fs::read(&out).unwrap() == file_content(), "curl {mode:?}");
    }
    let log = n.wait_log("two sessions of 127.0.0.2", |l| {
        l.matches("end peer=127.0.0.2:").count() >= 2
    });
    assert!(!log.contains("peer=127.0.0.1:"), "{log}");
    assert!(
        n.session_peers().iter().all(|p| p.ip() == client_ip(2)),
        "{log}"
    );
}

// ------------------------------------------------------------- bad input

const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for a TCP/IPv4 client `ip:port`, with a TLV.
fn v2_header(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut p = ip.to_vec();
    p.extend_from_slice(&[127, 0, 0, 1]);
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&21u16.to_be_bytes());
    p.extend_from_slice(&[0x05, 0, 3, b'i', b'd', b'1']); // a unique id: ignored
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&(p.len() as u16).to_be_bytes());
    h.extend_from_slice(&p);
    h
}

/// Connects to `node` from `from`, sends `pieces` with a pause between.
fn send_pieces(node: &Node, from: IpAddr, pieces: &[&[u8]]) -> TcpStream {
    let mut s = connect_tuned(node.addr, Some(from), None).unwrap();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            thread::sleep(Duration::from_millis(100));
        }
        s.write_all(p).unwrap();
    }
    s
}

/// Bad and good headers straight at `prog`: each bad one is closed
/// without a byte (within the header timeout) and logged with its
/// reason; split headers, pipelined commands and a health check work;
/// the process serves on.
fn bad_headers(prog: Prog) {
    let t = Tree::new();
    let mut n = Node::start(prog, &t, "node", &node_args(7 + prog as u16, &[]));
    let trusted = IpAddr::V4(BALANCER);
    let mut too_long_v1 = b"PROXY UNKNOWN ".to_vec();
    too_long_v1.resize(120, b'x');
    let mut past_end = v2_header([192, 0, 2, 9], 9);
    past_end[14..16].copy_from_slice(&200u16.to_be_bytes());
    let mut huge = v2_header([192, 0, 2, 9], 9);
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let cases: Vec<(&str, IpAddr, Vec<&[u8]>, &str)> = vec![
        (
            "truncated",
            trusted,
            vec![b"PROXY TCP4 192.0.2.7 19"],
            "timeout",
        ),
        (
            "v1 without CRLF in 107 bytes",
            trusted,
            vec![&too_long_v1],
            "malformed",
        ),
        (
            "v2 length past what arrives",
            trusted,
            vec![&past_end],
            "timeout",
        ),
        ("v2 longer than the limit", trusted, vec![&huge], "too-long"),
        (
            "outside --proxy-from",
            client_ip(2),
            vec![b"PROXY TCP4 192.0.2.7 198.51.100.1 5000 21\r\n"],
            "untrusted-source",
        ),
        ("garbage", trusted, vec![b"USER anonymous\r\n"], "malformed"),
        ("nothing", trusted, vec![], "timeout"),
    ];
    let bound = Duration::from_secs(HEADER_SECS + 15);
    for (what, from, pieces, reason) in &cases {
        let s = send_pieces(&n, *from, pieces);
        let local = s.local_addr().unwrap();
        if let Err(e) = closed_silently(s, bound) {
            panic!("{prog:?}, {what}: {e}");
        }
        let line = format!("proxy header refused peer={local} reason={reason}");
        n.wait_log(&line, |l| l.contains(&line));
    }
    // The peer closes half-way through its header.
    let s = send_pieces(&n, trusted, &[b"\r\n\r\n\0\r\n"]);
    let local = s.local_addr().unwrap();
    drop(s);
    let line = format!("proxy header refused peer={local} reason=closed");
    n.wait_log(&line, |l| l.contains(&line));

    // A health check: one line, then the end; not a session.
    let mut check = V2_SIG.to_vec();
    check.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let mut s = send_pieces(&n, trusted, &[&check]);
    let got = read_to_eof(&mut s, bound).unwrap();
    assert_eq!(got, b"220 aftpd: ready (health check).\r\n", "{prog:?}");

    // Headers split over several reads, commands pipelined behind them.
    let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 5007 21\r\nUSER anonymous\r\n";
    let v2 = [
        v2_header([192, 0, 2, 8], 5008),
        b"USER anonymous\r\n".to_vec(),
    ]
    .concat();
    for (peer, pieces) in [
        (
            "192.0.2.7:5007",
            vec![&v1[..6], &v1[6..23], &v1[23..44], &v1[44..]],
        ),
        ("192.0.2.8:5008", vec![&v2[..5], &v2[5..17], &v2[17..]]),
    ] {
        let mut c = Client::connect_from(n.addr, trusted);
        for (i, p) in pieces.iter().enumerate() {
            if i > 0 {
                thread::sleep(Duration::from_millis(100));
            }
            c.send_raw(p);
        }
        assert_eq!(c.reply().code, 220, "{prog:?}: split header");
        assert_eq!(c.reply().code, 331, "{prog:?}: the pipelined USER");
        c.expect("PASS x", 230);
        c.expect("QUIT", 221);
        let line = format!("start peer={peer}");
        n.wait_log(&line, |l| l.contains(&line));
    }
    let log = n.log_text();
    assert!(!log.contains("start peer=127.0.0.1"), "{log}");
    if prog != Prog::Ftpd {
        assert!(n.running(), "{prog:?} exited");
    }
}

#[test]
fn bad_headers_epoll() {
    bad_headers(Prog::Epoll);
}

#[test]
fn bad_headers_uring() {
    bad_headers(Prog::Uring);
}

#[test]
fn bad_headers_ftpd() {
    bad_headers(Prog::Ftpd);
}

/// Without `--proxy-protocol` nothing changes: a header is an unknown
/// command, and the greeting comes first.
#[test]
fn without_the_option_a_header_is_a_command() {
    let t = Tree::new();
    let n = Node::start(Prog::Epoll, &t, "node", &[]);
    let mut c = Client::connect_from(n.addr, client_ip(2));
    assert_eq!(c.reply().code, 220);
    let r = c.cmd("PROXY TCP4 192.0.2.7 198.51.100.1 5000 21");
    assert_eq!(r.code, 500, "{}", r.text());
    n.wait_log("the socket's peer", |l| l.contains("start peer=127.0.0.2:"));
}
