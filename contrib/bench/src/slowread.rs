//! Many slow clients, the public-archive case: N downloads at once, each
//! client reading at about RATE bytes a second (a token bucket, as a slow
//! link would pace it). Measured over a window once every download runs:
//! each client's rate, the server's CPU per GiB, and the server's memory
//! per active download, its processes and its sockets' buffers.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::fail::Failures;
use crate::ftp::{self, Ctrl};
use crate::out::{Args, Record, die};
use crate::procfs::{self, Memcg};
use crate::sockmem;

/// A client's state, for the main thread: only clients reading through the
/// whole window have a rate.
const LOGGING_IN: u8 = 0;
const READING: u8 = 1;
const DONE: u8 = 2;
const FAILED: u8 = 3;

/// A download in progress, owned by the reader thread.
struct Client {
    id: usize,
    // Kept open: the 226 arrives at the end and sits unread.
    _ctrl: Ctrl,
    data: TcpStream,
    tokens: f64,
    done: bool,
}

/// Reads no more than a chunk at a time once the bucket holds one: tens of
/// thousands of recv calls a second for 2,000 clients, not hundreds of
/// thousands.
const CHUNK: f64 = 64.0 * 1024.0;

/// The reader: every few milliseconds, each client's bucket fills at RATE
/// (capped at `burst`, so a client the server starved cannot catch up
/// faster than its link), and the client takes what the bucket allows.
fn reader(
    rx: mpsc::Receiver<Client>,
    got: &[AtomicU64],
    state: &[AtomicU8],
    stop: &AtomicBool,
    rate: f64,
    burst: f64,
) -> Failures {
    let mut cs: Vec<Client> = Vec::new();
    let mut fails = Failures::default();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(c) = rx.try_recv() {
            cs.push(c);
        }
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        for c in cs.iter_mut().filter(|c| !c.done) {
            c.tokens = (c.tokens + rate * dt).min(burst);
            if c.tokens < CHUNK {
                continue;
            }
            // SAFETY: MSG_TRUNC discards without writing to the buffer.
            let mut b = [0u8; 1];
            let r = unsafe {
                libc::recv(
                    c.data.as_raw_fd(),
                    b.as_mut_ptr() as *mut libc::c_void,
                    c.tokens as usize,
                    libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                c.tokens -= r as f64;
                got[c.id].fetch_add(r as u64, Ordering::Relaxed);
            } else if r == 0 {
                c.done = true;
                state[c.id].store(DONE, Ordering::Relaxed);
            } else {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::Interrupted
                {
                    fails.add(&e);
                    c.done = true;
                    state[c.id].store(FAILED, Ordering::Relaxed);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for c in cs {
        ftp::abort(c.data);
    }
    fails
}

/// The server's memory: processes (Pss), its cgroup's kernel memory, its
/// sockets' buffers, and the machine's TCP pages (both ends), in KiB.
struct Mem {
    pss: u64,
    cg_kernel: u64,
    sock: Option<sockmem::SockMem>,
    tcp_pages_kib: u64,
    tcp_pressure: bool,
}

fn mem(pid: i32, cg: Option<&Memcg>) -> Mem {
    let s = procfs::mem_snap(pid, cg);
    // Socket buffers are counted from ss, once: not again from the cgroup.
    let cg_sock = cg.map_or(0, |c| c.sock_kib());
    Mem {
        pss: s.pss,
        cg_kernel: s.cg_kernel.saturating_sub(cg_sock),
        sock: sockmem::server(pid),
        tcp_pages_kib: procfs::sockstat("mem") * 4,
        tcp_pressure: procfs::tcp_memory_pressure(),
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len() - 1)]
}

pub fn slowread(a: &Args) {
    let addr = a.addr();
    let n: usize = a.num("n", 2000);
    let rate: f64 = a.num("rate", 1e6);
    let burst: f64 = a.num("burst", 256.0 * 1024.0);
    let path = a
        .str("path")
        .unwrap_or_else(|| die("slowread: --path is required"));
    let login_c: usize = a.num::<usize>("login-c", 32).max(1);
    let settle = Duration::from_secs_f64(a.num("settle", 3.0));
    let window: f64 = a.num("window", 20.0);
    let pid = a
        .server_pid()
        .unwrap_or_else(|| die("slowread: --server-pid is required"));
    let cg = a.str("memcg").and_then(Memcg::open);
    let cpu = a.server_cpu();
    let srv_cpu = || cpu.secs();

    std::thread::sleep(Duration::from_millis(500));
    let base = mem(pid, cg.as_ref());
    let got: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let state: Vec<AtomicU8> = (0..n).map(|_| AtomicU8::new(LOGGING_IN)).collect();
    let count = |st: u8| {
        state
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) == st)
            .count()
    };
    let (stop, next) = (AtomicBool::new(false), AtomicU64::new(0));
    let retr = format!("RETR {path}\r\n");
    let (tx, rx) = mpsc::channel::<Client>();
    let mut rec = Record::new("slowread", a);
    std::thread::scope(|sc| {
        let rd = {
            let (got, state, stop) = (&got, &state, &stop);
            sc.spawn(move || reader(rx, got, state, stop, rate, burst))
        };
        // Logins, C at a time; each client starts reading once its 150 is in.
        let t_login = Instant::now();
        let logins: Vec<_> = (0..login_c)
            .map(|_| {
                let (tx, next, retr, state) = (tx.clone(), &next, &retr, &state);
                sc.spawn(move || {
                    let mut f = Failures::default();
                    loop {
                        let id = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if id >= n {
                            break;
                        }
                        let r = (|| -> std::io::Result<Client> {
                            let mut c = Ctrl::login(addr)?;
                            c.cmd(b"TYPE I\r\n", &[200])?;
                            let data = c.epsv()?;
                            c.cmd(retr.as_bytes(), &[125, 150])?;
                            Ok(Client {
                                id,
                                _ctrl: c,
                                data,
                                tokens: 0.0,
                                done: false,
                            })
                        })();
                        match r {
                            Ok(c) => {
                                state[id].store(READING, Ordering::Relaxed);
                                let _ = tx.send(c);
                            }
                            Err(e) => {
                                state[id].store(FAILED, Ordering::Relaxed);
                                f.add(&e);
                            }
                        }
                    }
                    f
                })
            })
            .collect();
        drop(tx);
        let mut lf = Failures::default();
        for h in logins {
            lf.merge(&h.join().expect("login thread"));
        }
        let login_secs = t_login.elapsed().as_secs_f64();
        std::thread::sleep(settle);

        let g0: Vec<u64> = got.iter().map(|g| g.load(Ordering::Relaxed)).collect();
        let s0: Vec<u8> = state.iter().map(|s| s.load(Ordering::Relaxed)).collect();
        let (done0, srv0, t0) = (count(DONE), srv_cpu(), Instant::now());
        let (gen0, busy0) = (procfs::self_cpu_secs(), procfs::machine_cpu().0);
        std::thread::sleep(Duration::from_secs_f64(window / 2.0));
        let mid = mem(pid, cg.as_ref());
        let active_mid = count(READING);
        let rest = Duration::from_secs_f64(window).saturating_sub(t0.elapsed());
        std::thread::sleep(rest);
        let g1: Vec<u64> = got.iter().map(|g| g.load(Ordering::Relaxed)).collect();
        let (done1, srv1, wall) = (count(DONE), srv_cpu(), t0.elapsed().as_secs_f64());
        let (gen1, busy1) = (procfs::self_cpu_secs(), procfs::machine_cpu().0);
        let s1: Vec<u8> = state.iter().map(|s| s.load(Ordering::Relaxed)).collect();
        stop.store(true, Ordering::Relaxed);
        let rf = rd.join().expect("reader");

        // Rates of the clients that were downloading through the whole
        // window (not those that finished or failed in it).
        let mut rates: Vec<f64> = (0..n)
            .filter(|&i| s0[i] == READING && s1[i] == READING)
            .map(|i| (g1[i] - g0[i]) as f64 / wall)
            .collect();
        rates.sort_by(|x, y| x.total_cmp(y));
        let bytes: u64 = g0.iter().zip(&g1).map(|(a, b)| b - a).sum();
        let gib = bytes as f64 / (1u64 << 30) as f64;

        rec.num("clients", n as f64);
        rec.num("rate_limit", rate);
        rec.num("login_secs", login_secs);
        lf.record(&mut rec, "login_");
        rf.record(&mut rec, "read_");
        rec.num("failures", (lf.total() + rf.total()) as f64);
        rec.num("done_before_window", done0 as f64);
        rec.num("done_in_window", (done1 - done0) as f64);
        rec.num("active", active_mid as f64);
        rec.num("secs", wall);
        rec.num("mb_s", bytes as f64 / wall / 1e6);
        rec.num(
            "server_cpu_s_per_gib",
            if gib > 0.0 {
                (srv1 - srv0) / gib
            } else {
                f64::NAN
            },
        );
        rec.num("server_cores", (srv1 - srv0) / wall);
        // The generator must not be the bottleneck: its cores, and the
        // machine's, over the window.
        rec.num("gen_cores", (gen1 - gen0) / wall);
        rec.num("machine_busy_cores", (busy1 - busy0) / wall);
        rec.num("rated_clients", rates.len() as f64);
        for (k, p) in [
            ("min", 0.0),
            ("p1", 1.0),
            ("p10", 10.0),
            ("median", 50.0),
            ("max", 100.0),
        ] {
            rec.num(&format!("client_{k}_mb_s"), pct(&rates, p) / 1e6);
        }
        rec.num("slowest_over_median", pct(&rates, 0.0) / pct(&rates, 50.0));
        // Memory per active download, KiB: mid-window less at rest.
        let per = |x: u64, y: u64| (x as f64 - y as f64) / active_mid.max(1) as f64;
        rec.num("user_kib", per(mid.pss, base.pss));
        if cg.is_some() {
            rec.num("cg_kernel_kib", per(mid.cg_kernel, base.cg_kernel));
        }
        if let (Some(m), Some(b)) = (mid.sock, base.sock) {
            rec.num("sockets", m.sockets as f64);
            rec.num("sock_kib", per(m.total(), b.total()) / 1024.0);
            rec.num("sock_wmem_kib", per(m.wmem, b.wmem) / 1024.0);
            rec.num("sock_rmem_kib", per(m.rmem, b.rmem) / 1024.0);
            rec.num("sock_fwd_kib", per(m.fwd, b.fwd) / 1024.0);
        }
        rec.num(
            "machine_tcp_kib",
            per(mid.tcp_pages_kib, base.tcp_pages_kib),
        );
        rec.num("machine_tcp_mib_mid", mid.tcp_pages_kib as f64 / 1024.0);
        rec.str(
            "tcp_pressure_mid",
            if mid.tcp_pressure { "yes" } else { "no" },
        );
    });
    rec.print();
}
