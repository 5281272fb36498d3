//! A probe client under load: while N load clients download files, list
//! directories or loop over metadata, one probe times what a bystander
//! sees (a NOOP and a small RETR on one logged-in session, or whole short
//! sessions). With `--load none` it measures the probe's idle figures, to
//! which the loaded ones are compared.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fail::{self, Class, Failures};
use crate::ftp::{self, Close, Ctrl};
use crate::out::{Args, Record, die};
use crate::procfs;
use crate::sessions::{Spec, one_session};
use crate::stats::Lat;

#[derive(Clone, Copy, PartialEq)]
enum Load {
    None,
    /// Download a file, again and again, in one session.
    Retr,
    /// LIST a directory, again and again.
    List,
    /// LIST a directory, then SIZE and MDTM of one of its files, in turn.
    Meta,
}

/// What the load clients share with the main thread: counters read at the
/// window's edges, a stop flag, and each client's open sockets so that the
/// main thread can cut a transfer short when the window ends.
struct Shared {
    stop: AtomicBool,
    ops: AtomicU64,
    bytes: AtomicU64,
    fds: Vec<[AtomicI32; 2]>,
}

impl Shared {
    fn hold(&self, i: usize, slot: usize, s: &TcpStream) {
        self.fds[i][slot].store(s.as_raw_fd(), Ordering::SeqCst);
    }

    fn release(&self, i: usize, slot: usize) {
        self.fds[i][slot].store(-1, Ordering::SeqCst);
    }

    /// Ends every load connection: blocked reads return at once. A slot
    /// may name a descriptor already closed and reused by another load
    /// client, which is stopping anyway.
    fn cut(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for pair in &self.fds {
            for fd in pair {
                let f = fd.load(Ordering::SeqCst);
                if f >= 0 {
                    // SAFETY: shutdown on a descriptor number; at worst it
                    // is not a socket (ENOTSOCK) or another load socket.
                    unsafe { libc::shutdown(f, libc::SHUT_RDWR) };
                }
            }
        }
    }
}

struct LoadSpec {
    addr: SocketAddr,
    kind: Load,
    /// Path pattern: `{i}` is the client's index modulo `files`.
    path: String,
    files: usize,
    size: Option<u64>,
    meta_files: usize,
}

fn path_for(p: &str, i: usize, files: usize) -> String {
    p.replace("{i}", &(i % files.max(1)).to_string())
}

/// One load session: log in, then repeat its operation until told to stop.
fn load_session(sh: &Shared, i: usize, l: &LoadSpec) -> io::Result<()> {
    let path = path_for(&l.path, i, l.files);
    let mut c = Ctrl::connect(l.addr)?;
    sh.hold(i, 0, &c.sock);
    c.log_in()?;
    c.cmd(b"TYPE I\r\n", &[200])?;
    let mut j = 0;
    while !sh.stop.load(Ordering::Relaxed) {
        let (cmd, what) = match l.kind {
            Load::Retr => ("RETR", path.as_str()),
            _ => ("LIST", path.as_str()),
        };
        let data = c.epsv()?;
        sh.hold(i, 1, &data);
        c.cmd(format!("{cmd} {what}\r\n").as_bytes(), &[125, 150])?;
        let n = ftp::drain_counted(&data, &sh.bytes)?;
        sh.release(i, 1);
        drop(data);
        c.expect(cmd, &[226, 250])?;
        if l.kind == Load::Retr
            && let Some(want) = l.size
            && n != want
        {
            return Err(fail::tagged(
                Class::Bytes,
                format!("got {n} bytes, expected {want}"),
            ));
        }
        sh.ops.fetch_add(1, Ordering::Relaxed);
        if l.kind == Load::Meta {
            let f = format!("{path}/e{j}");
            j = (j + 1) % l.meta_files.max(1);
            c.cmd(format!("SIZE {f}\r\n").as_bytes(), &[213])?;
            c.cmd(format!("MDTM {f}\r\n").as_bytes(), &[213])?;
            sh.ops.fetch_add(2, Ordering::Relaxed);
        }
    }
    let _ = c.cmd(b"QUIT\r\n", &[221]);
    sh.release(i, 0);
    Ok(())
}

fn load_client(sh: &Shared, i: usize, l: &LoadSpec) -> Failures {
    let mut fails = Failures::default();
    while !sh.stop.load(Ordering::Relaxed) {
        if let Err(e) = load_session(sh, i, l) {
            sh.release(i, 0);
            sh.release(i, 1);
            // Errors after the stop are ours (the connections were cut).
            if sh.stop.load(Ordering::Relaxed) {
                break;
            }
            fails.add(&e);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fails
}

/// The probe's figures over the window.
#[derive(Default)]
struct Probe {
    noop: Lat,
    retr: Lat,
    session: Lat,
    fails: Failures,
    /// The longest operation still in flight when the window ended: the
    /// load stopped then, so its time is a lower bound of the stall.
    at_end: Option<Duration>,
}

impl Probe {
    fn done(&mut self, t: Instant, end: Instant) -> Duration {
        let d = t.elapsed();
        if Instant::now() > end {
            self.at_end = self.at_end.max(Some(d));
        }
        d
    }
}

fn probe_login(addr: SocketAddr) -> io::Result<Ctrl> {
    let mut c = Ctrl::login(addr)?;
    c.cmd(b"TYPE I\r\n", &[200])?;
    Ok(c)
}

/// A logged-in session timing NOOP, then a small RETR, every interval. It
/// logged in before the load started (`first`), as a client already
/// connected would have; after a failure it logs in again, untimed.
fn probe_ctl(
    addr: SocketAddr,
    first: io::Result<Ctrl>,
    path: &str,
    size: Option<u64>,
    gap: Duration,
    end: Instant,
) -> Probe {
    let mut p = Probe::default();
    let retr = format!("RETR {path}\r\n");
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = Some(first);
    while Instant::now() < end {
        let r = (|| -> io::Result<()> {
            let mut c = match first.take() {
                Some(c) => c?,
                None => probe_login(addr)?,
            };
            while Instant::now() < end {
                let t = Instant::now();
                c.cmd(b"NOOP\r\n", &[200])?;
                let d = p.done(t, end);
                p.noop.push(d);
                let t = Instant::now();
                let mut data = c.epsv()?;
                c.cmd(retr.as_bytes(), &[125, 150])?;
                let (n, _) = ftp::drain(&mut data, true, &mut buf)?;
                drop(data);
                c.expect("RETR", &[226, 250])?;
                if let Some(want) = size
                    && n != want
                {
                    return Err(fail::tagged(
                        Class::Bytes,
                        format!("got {n} bytes, expected {want}"),
                    ));
                }
                let d = p.done(t, end);
                p.retr.push(d);
                std::thread::sleep(gap);
            }
            let _ = c.cmd(b"QUIT\r\n", &[221]);
            Ok(())
        })();
        if let Err(e) = r {
            p.fails.add(&e);
            std::thread::sleep(gap);
        }
    }
    p
}

/// Whole short sessions (login, TYPE I, EPSV, RETR, QUIT), one every
/// interval: the bystander.
fn probe_session(
    addr: SocketAddr,
    path: &str,
    size: Option<u64>,
    gap: Duration,
    end: Instant,
) -> Probe {
    let mut p = Probe::default();
    let retr = format!("RETR {path}\r\n");
    let spec = Spec {
        addr,
        retr: retr.as_bytes(),
        size,
        close: Close::Fin,
        tls: None,
    };
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < end {
        let t = Instant::now();
        match one_session(&spec, &mut buf) {
            Ok(()) => {
                let d = p.done(t, end);
                p.session.push(d);
            }
            Err(e) => p.fails.add(&e),
        }
        std::thread::sleep(gap);
    }
    p
}

pub fn underload(a: &Args) {
    let addr = a.addr();
    let kind = match a.str("load").unwrap_or("none") {
        "none" => Load::None,
        "retr" => Load::Retr,
        "list" => Load::List,
        "meta" => Load::Meta,
        _ => die("--load: none, retr, list or meta"),
    };
    let n: usize = if kind == Load::None { 0 } else { a.num("n", 8) };
    let l = LoadSpec {
        addr,
        kind,
        path: a.str("load-path").unwrap_or("/").to_string(),
        files: a.num("load-files", n.max(1)),
        size: a.str("load-size").map(|_| a.num::<u64>("load-size", 0)),
        meta_files: a.num("meta-files", 10),
    };
    let probe_kind = a.str("probe").unwrap_or("ctl").to_string();
    let probe_path = a.str("probe-path").unwrap_or("/small").to_string();
    let probe_size = a.str("probe-size").map(|_| a.num::<u64>("probe-size", 0));
    let gap = Duration::from_millis(a.num("interval-ms", 20));
    let ramp = Duration::from_secs_f64(a.num("ramp", 2.0));
    let secs: f64 = a.num("secs", 10.0);
    let pid = a.server_pid();
    let cpu = a.server_cpu();
    let srv_cpu = || cpu.secs();

    let sh = Shared {
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        fds: (0..n)
            .map(|_| [AtomicI32::new(-1), AtomicI32::new(-1)])
            .collect(),
    };
    let mut rec = Record::new("underload", a);
    let first = match probe_kind.as_str() {
        "ctl" => Some(probe_login(addr)),
        "session" => None,
        _ => die("--probe: ctl or session"),
    };
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (sh, l) = (&sh, &l);
                sc.spawn(move || load_client(sh, i, l))
            })
            .collect();
        if n > 0 {
            std::thread::sleep(ramp);
        }
        let (ops0, bytes0, srv0, busy0) = (
            sh.ops.load(Ordering::Relaxed),
            sh.bytes.load(Ordering::Relaxed),
            srv_cpu(),
            procfs::machine_cpu().0,
        );
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs_f64(secs);
        // The probe runs beside; the window ends on time whatever it is
        // doing. The load stops then, so a probe stalled at the end gets
        // its answer soon after: its sample is a lower bound, and the
        // overrun says how long it had been waiting past the end.
        let (path, f) = (&probe_path, first);
        let ph = sc.spawn(move || match f {
            Some(c) => probe_ctl(addr, c, path, probe_size, gap, end),
            None => probe_session(addr, path, probe_size, gap, end),
        });
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        let wall = t0.elapsed().as_secs_f64();
        let (ops1, bytes1, srv1, busy1) = (
            sh.ops.load(Ordering::Relaxed),
            sh.bytes.load(Ordering::Relaxed),
            srv_cpu(),
            procfs::machine_cpu().0,
        );
        sh.cut();
        let mut p = ph.join().expect("probe");
        let overrun = end.elapsed().as_secs_f64();
        let mut lf = Failures::default();
        for h in hs {
            lf.merge(&h.join().expect("load client"));
        }

        rec.str("load", a.str("load").unwrap_or("none"));
        rec.num("clients", n as f64);
        rec.str("probe", &probe_kind);
        rec.num("secs", wall);
        rec.num("probe_overrun_s", overrun);
        if let Some(d) = p.at_end {
            rec.num("probe_at_end_ms", d.as_secs_f64() * 1000.0);
        }
        if probe_kind == "ctl" {
            p.noop.record(&mut rec, "noop_");
            p.retr.record(&mut rec, "retr_");
        } else {
            p.session.record(&mut rec, "session_");
        }
        p.fails.record(&mut rec, "probe_");
        rec.num("load_ops", (ops1 - ops0) as f64);
        rec.num("load_ops_s", (ops1 - ops0) as f64 / wall);
        rec.num("load_bytes", (bytes1 - bytes0) as f64);
        rec.num("load_mb_s", (bytes1 - bytes0) as f64 / wall / 1e6);
        lf.record(&mut rec, "load_");
        if pid.is_some() {
            rec.num("server_cores", (srv1 - srv0) / wall);
        }
        rec.num("machine_busy_cores", (busy1 - busy0) / wall);
    });
    rec.print();
}
