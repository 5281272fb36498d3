//! Whole sessions back to back on C client threads: the rate a server
//! sustains, the latency of a session, and every failure by class, second
//! by second (a run past 60 s shows what TIME_WAIT does to passive ports).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::fail::{self, Class, Failures};
use crate::ftp::{self, Close, Ctrl};
use crate::out::{Args, Record, die};
use crate::procfs;
use crate::stats::Lat;
use crate::tls;

/// What one session does, as a download client does it: connect, 220,
/// USER, PASS, TYPE I, EPSV, data connection, RETR, 226, QUIT, 221.
pub struct Spec<'a> {
    pub addr: SocketAddr,
    /// `RETR path\r\n`
    pub retr: &'a [u8],
    pub size: Option<u64>,
    pub close: Close,
    /// FTPS: AUTH TLS, PBSZ 0, PROT P before the login, a full handshake
    /// each session (or, with `resume`, resuming the client thread's
    /// previous session), the data connection resuming it.
    pub tls: Option<TlsSpec>,
}

/// What FTPS sessions share: the client configuration, and what the
/// handshakes did.
pub struct TlsSpec {
    pub base: Arc<rustls::ClientConfig>,
    /// One configuration per client thread, whose resumption store its
    /// sessions share (`--resume`); empty: each session its own store.
    pub threads: Vec<Arc<rustls::ClientConfig>>,
    /// Protocol and suite of the first control connection.
    pub negotiated: OnceLock<String>,
    /// Data connections that resumed the control connection's session,
    /// and those that did not (a server that does not insist on it).
    pub resumed: AtomicU64,
    pub not_resumed: AtomicU64,
    /// Control connections that resumed an earlier session, and those
    /// that made a full handshake.
    pub ctrl_resumed: AtomicU64,
    pub ctrl_full: AtomicU64,
}

impl TlsSpec {
    /// `resume_threads`: the number of client threads whose sessions
    /// resume one another (0: a full handshake each session).
    pub fn new(resume_threads: usize) -> TlsSpec {
        let base = tls::base_config();
        TlsSpec {
            threads: (0..resume_threads)
                .map(|_| tls::resuming_config(&base))
                .collect(),
            base,
            negotiated: OnceLock::new(),
            resumed: AtomicU64::new(0),
            not_resumed: AtomicU64::new(0),
            ctrl_resumed: AtomicU64::new(0),
            ctrl_full: AtomicU64::new(0),
        }
    }

    fn reset_counts(&self) {
        for c in [
            &self.resumed,
            &self.not_resumed,
            &self.ctrl_resumed,
            &self.ctrl_full,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    pub fn record(&self, rec: &mut Record) {
        rec.str("tls", self.negotiated.get().map_or("-", String::as_str));
        rec.num(
            "tls_data_resumed",
            self.resumed.load(Ordering::Relaxed) as f64,
        );
        rec.num(
            "tls_data_not_resumed",
            self.not_resumed.load(Ordering::Relaxed) as f64,
        );
        rec.num("resume", if self.threads.is_empty() { 0.0 } else { 1.0 });
        rec.num(
            "tls_ctrl_resumed",
            self.ctrl_resumed.load(Ordering::Relaxed) as f64,
        );
        rec.num(
            "tls_ctrl_full",
            self.ctrl_full.load(Ordering::Relaxed) as f64,
        );
    }
}

/// The FTPS session: connect, 220, AUTH TLS, handshake, PBSZ 0, PROT P,
/// USER, PASS, TYPE I, EPSV, data connection, RETR, its handshake, the
/// data, 150 and 226, QUIT, 221, close_notify.
fn tls_session(s: &Spec, t: &TlsSpec, slot: usize, buf: &mut [u8]) -> io::Result<()> {
    let mut c = Ctrl::connect(s.addr)?;
    c.expect("greeting", &[220])?;
    let cfg = match t.threads.get(slot) {
        Some(shared) => Arc::clone(shared),
        None => tls::session_config(&t.base),
    };
    let what = c.auth_tls(&cfg)?;
    t.negotiated.get_or_init(|| what);
    let ctr = if c.tls_resumed() == Some(true) {
        &t.ctrl_resumed
    } else {
        &t.ctrl_full
    };
    ctr.fetch_add(1, Ordering::Relaxed);
    c.user_pass()?;
    c.cmd(b"TYPE I\r\n", &[200])?;
    let data = c.epsv()?;
    // The handshake on the data connection goes before the 150 is read:
    // some servers send it only once the handshake is done.
    c.send(s.retr)?;
    let mut d = tls::Data::open(&cfg, data)?;
    let n = d.drain(buf)?;
    let ctr = if d.resumed() {
        &t.resumed
    } else {
        &t.not_resumed
    };
    ctr.fetch_add(1, Ordering::Relaxed);
    ftp::close(d.into_socket(), s.close);
    c.expect("RETR", &[125, 150])?;
    c.expect("RETR", &[226, 250])?;
    check_size(s, n)?;
    c.cmd(b"QUIT\r\n", &[221])?;
    c.close_tls();
    ftp::close(c.sock, s.close);
    Ok(())
}

fn check_size(s: &Spec, n: u64) -> io::Result<()> {
    match s.size {
        Some(want) if n != want => Err(fail::tagged(
            Class::Bytes,
            format!("got {n} bytes, expected {want}"),
        )),
        _ => Ok(()),
    }
}

pub fn one_session(s: &Spec, buf: &mut [u8]) -> io::Result<()> {
    session_on(s, 0, buf)
}

/// One session by client thread `slot` (with `--resume`, the thread whose
/// resumption store it uses).
fn session_on(s: &Spec, slot: usize, buf: &mut [u8]) -> io::Result<()> {
    if let Some(t) = &s.tls {
        return tls_session(s, t, slot, buf);
    }
    let mut c = Ctrl::login(s.addr)?;
    c.cmd(b"TYPE I\r\n", &[200])?;
    let mut data = c.epsv()?;
    c.cmd(s.retr, &[125, 150])?;
    let (n, _) = ftp::drain(&mut data, true, buf)?;
    ftp::close(data, s.close);
    c.expect("RETR", &[226, 250])?;
    check_size(s, n)?;
    c.cmd(b"QUIT\r\n", &[221])?;
    ftp::close(c.sock, s.close);
    Ok(())
}

/// What a run of sessions gives: latencies of the good ones, failures, and
/// both counted per second of the run.
#[derive(Default)]
pub struct Run {
    pub lat: Lat,
    pub fails: Failures,
    pub ok_per_s: Vec<u64>,
    pub fail_per_s: Vec<u64>,
}

fn bump(v: &mut Vec<u64>, i: usize) {
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] += 1;
}

fn add_into(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Runs up to `n` sessions on `c` threads until `deadline`. Each thread is
/// one client doing sessions back to back: blocking I/O is the cheapest
/// client there is at these concurrencies (no readiness calls at all).
pub fn run(s: &Spec, n: u64, c: usize, deadline: Instant) -> Run {
    let next = AtomicU64::new(0);
    let t0 = Instant::now();
    let runs: Vec<Run> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..c)
            .map(|slot| {
                let next = &next;
                sc.spawn(move || {
                    let mut r = Run::default();
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut in_a_row = 0u32;
                    while next.fetch_add(1, Ordering::Relaxed) < n && Instant::now() < deadline {
                        let t = Instant::now();
                        let res = session_on(s, slot, &mut buf);
                        let sec = t0.elapsed().as_secs() as usize;
                        match res {
                            Ok(()) => {
                                r.lat.push(t.elapsed());
                                bump(&mut r.ok_per_s, sec);
                                in_a_row = 0;
                            }
                            Err(e) => {
                                r.fails.add(&e);
                                bump(&mut r.fail_per_s, sec);
                                in_a_row += 1;
                                // A server that refuses everything: back off
                                // rather than spin (the run still ends at
                                // the deadline).
                                if in_a_row > 10 {
                                    std::thread::sleep(Duration::from_millis(10));
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
    let mut all = Run::default();
    for r in runs {
        all.lat.extend(r.lat);
        all.fails.merge(&r.fails);
        add_into(&mut all.ok_per_s, &r.ok_per_s);
        add_into(&mut all.fail_per_s, &r.fail_per_s);
    }
    all
}

pub fn sessions(a: &Args) {
    let path = a.str("path").unwrap_or("/small");
    let retr = format!("RETR {path}\r\n").into_bytes();
    let close = a.str("close").map_or(Close::Fin, |v| {
        Close::parse(v).unwrap_or_else(|| die("--close: fin or rst"))
    });
    let n: u64 = a.num("n", 1000);
    let c: usize = a.num::<usize>("c", 1).max(1);
    // --resume: each client thread's sessions resume its previous one.
    let resume = a.flag("resume");
    let spec = Spec {
        addr: a.addr(),
        retr: &retr,
        size: a.str("size").map(|_| a.num::<u64>("size", 0)),
        close,
        tls: a
            .flag("tls")
            .then(|| TlsSpec::new(if resume { c } else { 0 })),
    };
    let max_secs: f64 = a.num("max-secs", 30.0);
    let warmup: u64 = a.num("warmup", 20);
    let pid = a.server_pid();
    let cpu = a.server_cpu();
    // A process of the set-up measured on its own (the balancer in front
    // of the servers): its threads' CPU time.
    let extra: Option<i32> = a.str("extra-pid").map(|_| a.num("extra-pid", 0));
    let extra_cpu = || extra.map_or(0.0, procfs::threads_cpu_secs);

    // Warm-up: page cache, the server's allocator, tcpserver's first forks.
    let w = run(&spec, warmup, c, Instant::now() + Duration::from_secs(10));
    if let Some(t) = &spec.tls {
        // Count the measured sessions' handshakes only (with --resume, the
        // warm-up also left each thread a session to resume).
        t.reset_counts();
    }

    let tw0 = procfs::sockstat("tw");
    let ((gu0, gs0), (busy0, all0), srv0, x0) = (
        procfs::self_cpu_split(),
        procfs::machine_cpu(),
        cpu.secs(),
        extra_cpu(),
    );
    let t0 = Instant::now();
    let mut r = run(&spec, n, c, t0 + Duration::from_secs_f64(max_secs));
    let wall = t0.elapsed().as_secs_f64();
    let ((gu1, gs1), (busy1, all1), srv1, x1) = (
        procfs::self_cpu_split(),
        procfs::machine_cpu(),
        cpu.secs(),
        extra_cpu(),
    );

    let mut rec = Record::new("sessions", a);
    rec.num("c", c as f64);
    rec.str("close", close.name());
    rec.num("ok", r.lat.len() as f64);
    r.fails.record(&mut rec, "");
    rec.num("warmup_failures", w.fails.total() as f64);
    rec.num("secs", wall);
    rec.num("rate", r.lat.len() as f64 / wall);
    rec.num("p50_ms", r.lat.pct(50.0));
    rec.num("p99_ms", r.lat.pct(99.0));
    rec.num("max_ms", r.lat.pct(100.0));
    // The generator's own CPU, in cores: well under the machine's count
    // means it was not the bottleneck.
    rec.num("gen_cores", (gu1 - gu0 + gs1 - gs0) / wall);
    rec.num("gen_user_cores", (gu1 - gu0) / wall);
    rec.num("machine_busy_cores", (busy1 - busy0) / wall);
    rec.num("machine_cores", (all1 - all0) / wall);
    if pid.is_some() {
        rec.num("server_cores", (srv1 - srv0) / wall);
    }
    if extra.is_some() {
        rec.num("extra_cpu_s", x1 - x0);
        rec.num("extra_cores", (x1 - x0) / wall);
    }
    if let Some(t) = &spec.tls {
        t.record(&mut rec);
    }
    // TIME_WAIT sockets on the machine before and after: what the run left
    // behind, and what an earlier run left for this one.
    rec.num("tw_start", tw0 as f64);
    rec.num("tw_end", procfs::sockstat("tw") as f64);
    let f = |v: &[u64]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    rec.list("ok_per_s", &f(&r.ok_per_s));
    rec.list("fail_per_s", &f(&r.fail_per_s));
    if r.fails.first.is_none()
        && let Some(e) = &w.fails.first
    {
        rec.str("warmup_error", e);
    }
    rec.print();
}
