//! Memory per idle logged-in session: K sessions log in and sit, then the
//! server's memory (Pss over its processes, its cgroup's kernel memory, the
//! machine's kernel counters) is compared with the server at rest. With
//! `--tls` each session is protected first (AUTH TLS, a full handshake,
//! PBSZ 0, PROT P), then logs in and sits.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::ftp::{self, Ctrl};
use crate::out::{Args, Record, die};
use crate::procfs::{self, Memcg};
use crate::tls;

/// One idle session: logged in, in clear or (`tls`) over TLS.
fn open(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> io::Result<(Ctrl, String)> {
    let Some(base) = tls else {
        return Ctrl::login(addr).map(|c| (c, String::new()));
    };
    let mut c = Ctrl::connect(addr)?;
    c.expect("greeting", &[220])?;
    // Its own store: a full handshake, as a client's first session.
    let what = c.auth_tls(&tls::session_config(base))?;
    c.user_pass()?;
    Ok((c, what))
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
    let tls_base = a.flag("tls").then(tls::base_config);
    let negotiated = OnceLock::new();

    // The server at rest, before any session.
    std::thread::sleep(Duration::from_millis(500));
    let base = procfs::mem_snap(pid, cg.as_ref());
    let client_base = client_cg.as_ref().map(|c| c.read().1);

    let t0 = Instant::now();
    let next = AtomicU64::new(0);
    let (sessions, errors, first_error) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..c)
            .map(|_| {
                let (next, tls_base, negotiated) = (&next, &tls_base, &negotiated);
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
                        match open(addr, tls_base.as_ref()) {
                            Ok((c, what)) => {
                                negotiated.get_or_init(|| what);
                                held.push(c);
                            }
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
    if tls_base.is_some() {
        rec.str("tls", negotiated.get().map_or("-", String::as_str));
    }
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
