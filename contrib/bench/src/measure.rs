//! The measurements: whole sessions, one bulk download, idle sessions and
//! listings. Each prints one record (see out::Record).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::ftp::{self, Ctrl};
use crate::out::{Args, Record, die};
use crate::procfs::{self, Memcg};

/// One whole session, as a download client does it.
fn one_session(addr: SocketAddr, retr: &[u8], size: Option<u64>, buf: &mut [u8]) -> io::Result<()> {
    let mut c = Ctrl::login(addr)?;
    c.cmd(b"TYPE I\r\n", &[200])?;
    let mut data = c.epsv()?;
    c.cmd(retr, &[125, 150])?;
    let (n, _) = ftp::drain(&mut data, true, buf)?;
    ftp::abort(data);
    c.expect("RETR", &[226, 250])?;
    if let Some(want) = size
        && n != want
    {
        return Err(ftp::err(format!("got {n} bytes, expected {want}")));
    }
    c.cmd(b"QUIT\r\n", &[221])?;
    ftp::abort(c.sock);
    Ok(())
}

struct Run {
    lat_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs up to `n` sessions on `c` threads until `deadline`. Each thread is
/// one client doing sessions back to back: blocking I/O is the cheapest
/// client there is at these concurrencies (no readiness calls at all).
fn run_sessions(
    addr: SocketAddr,
    retr: &[u8],
    size: Option<u64>,
    n: u64,
    c: usize,
    deadline: Instant,
) -> Run {
    let next = AtomicU64::new(0);
    let runs: Vec<Run> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..c)
            .map(|_| {
                let next = &next;
                s.spawn(move || {
                    let mut r = Run {
                        lat_us: Vec::with_capacity((n as usize / c.max(1)) + 16),
                        errors: 0,
                        first_error: None,
                    };
                    let mut buf = vec![0u8; 64 * 1024];
                    while next.fetch_add(1, Ordering::Relaxed) < n && Instant::now() < deadline {
                        let t = Instant::now();
                        match one_session(addr, retr, size, &mut buf) {
                            Ok(()) => r
                                .lat_us
                                .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                            Err(e) => {
                                r.errors += 1;
                                r.first_error.get_or_insert_with(|| e.to_string());
                                // A server that refuses everything: stop
                                // rather than spin on errors.
                                if r.errors > 50 && r.errors > r.lat_us.len() as u64 {
                                    break;
                                }
                            }
                        }
                    }
                    r
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let mut all = Run {
        lat_us: Vec::new(),
        errors: 0,
        first_error: None,
    };
    for r in runs {
        all.lat_us.extend(r.lat_us);
        all.errors += r.errors;
        if all.first_error.is_none() {
            all.first_error = r.first_error;
        }
    }
    all
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

fn server_cpu(pid: Option<i32>) -> f64 {
    pid.map(|p| procfs::tree_cpu_secs(&procfs::tree(p)))
        .unwrap_or(0.0)
}

pub fn sessions(a: &Args) {
    let addr = a.addr();
    let path = a.str("path").unwrap_or("/small");
    let n: u64 = a.num("n", 1000);
    let c: usize = a.num::<usize>("c", 1).max(1);
    let max_secs: f64 = a.num("max-secs", 30.0);
    let warmup: u64 = a.num("warmup", 20);
    let size = a.str("size").map(|_| a.num::<u64>("size", 0));
    let pid = a.server_pid();
    let retr = format!("RETR {path}\r\n").into_bytes();

    // Warm-up: page cache, the server's allocator, tcpserver's first forks.
    let w = run_sessions(
        addr,
        &retr,
        size,
        warmup,
        c,
        Instant::now() + Duration::from_secs(10),
    );

    let ((gu0, gs0), (busy0, all0), srv0) = (
        procfs::self_cpu_split(),
        procfs::machine_cpu(),
        server_cpu(pid),
    );
    let t0 = Instant::now();
    let mut r = run_sessions(
        addr,
        &retr,
        size,
        n,
        c,
        t0 + Duration::from_secs_f64(max_secs),
    );
    let wall = t0.elapsed().as_secs_f64();
    let ((gu1, gs1), (busy1, all1), srv1) = (
        procfs::self_cpu_split(),
        procfs::machine_cpu(),
        server_cpu(pid),
    );
    r.lat_us.sort_unstable();

    let mut rec = Record::new("sessions", a);
    rec.num("c", c as f64);
    rec.num("ok", r.lat_us.len() as f64);
    rec.num("errors", r.errors as f64);
    rec.num("warmup_errors", w.errors as f64);
    rec.num("secs", wall);
    rec.num("rate", r.lat_us.len() as f64 / wall);
    rec.num("p50_ms", pct(&r.lat_us, 50.0));
    rec.num("p99_ms", pct(&r.lat_us, 99.0));
    rec.num("max_ms", pct(&r.lat_us, 100.0));
    // The generator's own CPU, in cores: well under the machine's count
    // means it was not the bottleneck.
    rec.num("gen_cores", (gu1 - gu0 + gs1 - gs0) / wall);
    rec.num("gen_user_cores", (gu1 - gu0) / wall);
    rec.num("machine_busy_cores", (busy1 - busy0) / wall);
    rec.num("machine_cores", (all1 - all0) / wall);
    if pid.is_some() {
        rec.num("server_cores", (srv1 - srv0) / wall);
    }
    if let Some(e) = r.first_error.or(w.first_error) {
        rec.str("error", &e);
    }
    rec.print();
}

pub fn bulk(a: &Args) {
    let addr = a.addr();
    let path = a
        .str("path")
        .unwrap_or_else(|| die("bulk: --path is required"));
    let copy = a.flag("copy");
    let pid = a.server_pid();
    // Several downloads back to back in one session, so one measurement
    // lasts long enough (about a second) for CPU ticks and timers.
    let repeat: u32 = a.num::<u32>("repeat", 1).max(1);
    let run = || -> io::Result<(u64, f64, f64, f64, f64)> {
        let mut c = Ctrl::login(addr)?;
        c.cmd(b"TYPE I\r\n", &[200])?;
        // Big socket buffers on the client would only hide a slow server;
        // leave the kernel's autotuning alone.
        let mut buf = vec![0u8; 1 << 20];
        let retr = format!("RETR {path}\r\n");
        let (gen0, (busy0, _), srv0) = (
            procfs::self_cpu_secs(),
            procfs::machine_cpu(),
            server_cpu(pid),
        );
        let t0 = Instant::now();
        let mut n = 0;
        for _ in 0..repeat {
            let mut data = c.epsv()?;
            c.cmd(retr.as_bytes(), &[125, 150])?;
            n += ftp::drain(&mut data, !copy, &mut buf)?.0;
            ftp::abort(data);
            c.expect("RETR", &[226, 250])?;
        }
        let secs = t0.elapsed().as_secs_f64();
        // Read before QUIT: a forking server's session process still lives.
        let (gen1, (busy1, _), srv1) = (
            procfs::self_cpu_secs(),
            procfs::machine_cpu(),
            server_cpu(pid),
        );
        let _ = c.cmd(b"QUIT\r\n", &[221]);
        ftp::abort(c.sock);
        Ok((n, secs, busy1 - busy0, srv1 - srv0, gen1 - gen0))
    };
    let mut rec = Record::new("bulk", a);
    match run() {
        Ok((n, secs, busy, srv, gen_cpu)) => {
            let gib = n as f64 / (1u64 << 30) as f64;
            rec.num("bytes", n as f64);
            rec.num("downloads", repeat as f64);
            rec.num("secs", secs);
            rec.num("mb_s", n as f64 / secs / 1e6);
            rec.num("machine_cpu_s", busy);
            rec.num("cpu_s_per_gib", busy / gib);
            if pid.is_some() {
                rec.num("server_cpu_s_per_gib", srv / gib);
            }
            rec.num("gen_cpu_s_per_gib", gen_cpu / gib);
        }
        Err(e) => rec.str("error", &e.to_string()),
    }
    rec.print();
}

pub fn idle(a: &Args) {
    let addr = a.addr();
    let k: usize = a.num("k", 1000);
    let c: usize = a.num::<usize>("c", 32).clamp(1, k.max(1));
    let hold: f64 = a.num("hold", 3.0);
    let pid = a
        .server_pid()
        .unwrap_or_else(|| die("idle: --server-pid is required"));
    let min_avail: u64 = a.num("min-avail-mib", 3072);
    let cg = a.str("memcg").and_then(Memcg::open);
    // The generator's own memory cgroup: its kernel memory is the client's
    // half of the loopback connections, to subtract from the machine's.
    let client_cg = a.str("client-memcg").and_then(Memcg::open);

    // The server at rest, before any session.
    std::thread::sleep(Duration::from_millis(500));
    let base = procfs::mem_snap(pid, cg.as_ref());
    let client_base = client_cg.as_ref().map(|c| c.read().1);

    let t0 = Instant::now();
    let next = AtomicU64::new(0);
    let (sessions, errors, first_error) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..c)
            .map(|_| {
                let next = &next;
                s.spawn(move || {
                    let (mut held, mut errs, mut first) = (Vec::new(), 0u64, None);
                    while next.fetch_add(1, Ordering::Relaxed) < k as u64 {
                        // A forking server can need many GiB for 10,000
                        // sessions: stop short rather than push a shared
                        // machine into the OOM killer.
                        if held.len() % 64 == 0 && procfs::mem_available_mib() < min_avail {
                            first.get_or_insert_with(|| {
                                format!("stopped early: MemAvailable below {min_avail} MiB")
                            });
                            break;
                        }
                        match Ctrl::login(addr) {
                            Ok(c) => held.push(c),
                            Err(e) => {
                                errs += 1;
                                first.get_or_insert_with(|| e.to_string());
                                if errs > 50 {
                                    break;
                                }
                            }
                        }
                    }
                    (held, errs, first)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(k);
        let (mut errs, mut first) = (0, None);
        for h in hs {
            let (held, e, f) = h.join().expect("client thread");
            all.extend(held);
            errs += e;
            if first.is_none() {
                first = f;
            }
        }
        (all, errs, first)
    });
    let login_secs = t0.elapsed().as_secs_f64();
    // Let lazily freed buffers and deferred work settle: we want the cost
    // of a session that sits idle, not of one that just logged in.
    std::thread::sleep(Duration::from_secs_f64(hold));
    let snap = procfs::mem_snap(pid, cg.as_ref());
    let client_snap = client_cg.as_ref().map(|c| c.read().1);
    let ok = sessions.len();
    let per = |after: u64, before: u64| (after as f64 - before as f64) / ok.max(1) as f64;

    let mut rec = Record::new("idle", a);
    rec.num("k", k as f64);
    rec.num("ok", ok as f64);
    rec.num("errors", errors as f64);
    rec.num("login_secs", login_secs);
    rec.num("procs_base", base.procs as f64);
    rec.num("procs", snap.procs as f64);
    rec.num("pss_base_kib", base.pss as f64);
    rec.num("pss_kib", snap.pss as f64);
    // Per session, in KiB: user memory (Pss, what the issue asks for), RSS
    // for reference, the server's kernel memory (memory cgroup: its
    // sockets, stacks, page tables, slab), and the machine's kernel
    // counters (both ends of each loopback connection, and any noise).
    rec.num("user_kib", per(snap.pss, base.pss));
    rec.num("rss_kib", per(snap.rss, base.rss));
    if cg.is_some() {
        rec.num("cg_kernel_kib", per(snap.cg_kernel, base.cg_kernel));
        rec.num("cg_all_kib", per(snap.cg_all, base.cg_all));
    }
    rec.num(
        "machine_kernel_kib",
        per(snap.kernel.total(), base.kernel.total()),
    );
    // The server's kernel memory, two ways. (1) Its memory cgroup's kernel
    // counter, plus the accepted socket itself, which the kernel allocates
    // in softirq context and charges to no cgroup (one object of the TCP
    // slab cache). Precise, but blind to whatever else is not accounted.
    // (2) The machine's kernel counters, less what the client's cgroup was
    // charged: complete, but noisy, and wrong when memory pressure makes the
    // kernel shrink its caches meanwhile.
    let tcp_obj = procfs::tcp_obj_kib(addr.is_ipv6());
    rec.num("tcp_obj_kib", tcp_obj);
    let machine_server = match (client_base, client_snap) {
        (Some(b), Some(s)) => {
            rec.num("client_kernel_kib", per(s, b));
            let m = per(snap.kernel.total(), base.kernel.total()) - per(s, b);
            rec.num("machine_server_kernel_kib", m);
            Some(m)
        }
        _ => None,
    };
    match (&cg, machine_server) {
        (Some(_), _) => {
            rec.num("kernel_kib", per(snap.cg_kernel, base.cg_kernel) + tcp_obj);
            rec.str("kernel_method", "memcg+tcp_sock");
        }
        (None, Some(m)) => {
            rec.num("kernel_kib", m);
            rec.str("kernel_method", "machine-client");
        }
        _ => {}
    }
    rec.num("machine_slab_kib", per(snap.kernel.slab, base.kernel.slab));
    rec.num(
        "machine_kstack_kib",
        per(snap.kernel.kernel_stack, base.kernel.kernel_stack),
    );
    rec.num(
        "machine_pgtables_kib",
        per(snap.kernel.page_tables, base.kernel.page_tables),
    );
    rec.num(
        "machine_tcpmem_kib",
        per(snap.kernel.tcp_mem, base.kernel.tcp_mem),
    );

    // End the sessions and wait (bounded) for a forking server to reap its
    // children, so the next measurement starts from rest.
    let t1 = Instant::now();
    for s in sessions {
        ftp::abort(s.sock);
    }
    while procfs::tree(pid).len() > base.procs && t1.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    rec.num("teardown_secs", t1.elapsed().as_secs_f64());
    if let Some(e) = first_error {
        rec.str("error", &e);
    }
    rec.print();
}

pub fn list(a: &Args) {
    let addr = a.addr();
    let cmd = a.str("cmd").unwrap_or("LIST");
    let path = a
        .str("path")
        .unwrap_or_else(|| die("list: --path is required"));
    let pid = a
        .server_pid()
        .unwrap_or_else(|| die("list: --server-pid is required"));
    let mut rec = Record::new("list", a);
    rec.str("cmd", cmd);
    let run = |rec: &mut Record| -> io::Result<()> {
        let mut c = Ctrl::login(addr)?;
        let mut data = c.epsv()?;
        let before: HashMap<i32, u64> = procfs::tree(pid)
            .into_iter()
            .map(|p| {
                procfs::reset_hwm(p);
                (p, procfs::status_kib(p, "VmRSS:"))
            })
            .collect();
        let srv0 = server_cpu(Some(pid));
        let t0 = Instant::now();
        c.send(format!("{cmd} {path}\r\n").as_bytes())?;
        let code = c.reply()?;
        if code != 125 && code != 150 {
            rec.str("status", "refused");
            rec.str("reply", &String::from_utf8_lossy(c.last_line()));
            return Ok(());
        }
        let mut buf = vec![0u8; 256 * 1024];
        let (bytes, lines) = ftp::drain(&mut data, false, &mut buf)?;
        c.expect(cmd, &[226, 250])?;
        let secs = t0.elapsed().as_secs_f64();
        let after = procfs::tree(pid);
        let srv1 = server_cpu(Some(pid));
        let (mut peak, mut growth) = (0u64, 0i64);
        for &p in &after {
            let hwm = procfs::status_kib(p, "VmHWM:");
            peak += hwm;
            growth += hwm as i64 - *before.get(&p).unwrap_or(&0) as i64;
        }
        ftp::abort(data);
        let _ = c.cmd(b"QUIT\r\n", &[221]);
        ftp::abort(c.sock);
        rec.str("status", "ok");
        rec.num("secs", secs);
        rec.num("bytes", bytes as f64);
        rec.num("lines", lines as f64);
        // Peak RSS over the server's processes while it listed, and how much
        // of it the listing added (VmHWM was reset just before).
        rec.num("peak_rss_kib", peak as f64);
        rec.num("growth_kib", growth as f64);
        rec.num("server_cpu_s", srv1 - srv0);
        Ok(())
    };
    if let Err(e) = run(&mut rec) {
        rec.str("status", "error");
        rec.str("error", &e.to_string());
    }
    rec.print();
}

pub fn ping(a: &Args) {
    let addr = a.addr();
    let deadline = Instant::now() + Duration::from_secs_f64(a.num("secs", 10.0));
    loop {
        let r = Ctrl::connect(addr).and_then(|mut c| {
            c.expect("greeting", &[220])?;
            let _ = c.cmd(b"QUIT\r\n", &[221]);
            Ok(())
        });
        match r {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => die(&format!("{addr}: no greeting: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
