//! Bulk RETR of a big file, page cache warm: MB/s and the CPU seconds per
//! GiB the server (and the machine) spent, with our own reader or curl.

use std::io;
use std::process::Command;
use std::time::Instant;

use crate::ftp::{self, Ctrl};
use crate::out::{Args, Record, die};
use crate::procfs::{self, ServerCpu};
use crate::tls;

/// CPU figures read around a transfer.
struct Cpu {
    gen_cpu: f64,
    busy: f64,
    srv: f64,
}

impl Cpu {
    fn now(srv: &ServerCpu) -> Cpu {
        Cpu {
            gen_cpu: procfs::self_cpu_secs() + procfs::children_cpu_secs(),
            busy: procfs::machine_cpu().0,
            srv: srv.secs(),
        }
    }
}

/// Our reader: downloads in one session, the bytes discarded in the kernel
/// (recv MSG_TRUNC), or copied out with `copy`. With `--tls`, over PROT P:
/// the bytes decrypted in the generator, each data connection resuming
/// the control connection's TLS session.
fn own(a: &Args, path: &str, repeat: u32, pid: &ServerCpu) -> io::Result<Got> {
    let mut c = Ctrl::connect(a.addr())?;
    c.expect("greeting", &[220])?;
    let tls = a
        .flag("tls")
        .then(|| tls::session_config(&tls::base_config()));
    let mut negotiated = None;
    if let Some(cfg) = &tls {
        negotiated = Some(c.auth_tls(cfg)?);
    }
    c.user_pass()?;
    c.cmd(b"TYPE I\r\n", &[200])?;
    // Big socket buffers on the client would only hide a slow server;
    // leave the kernel's autotuning alone.
    let mut buf = vec![0u8; 1 << 20];
    let retr = format!("RETR {path}\r\n");
    let copy = a.flag("copy");
    let c0 = Cpu::now(pid);
    let t0 = Instant::now();
    let mut n = 0;
    let mut resumed = 0;
    for _ in 0..repeat {
        let mut data = c.epsv()?;
        if let Some(cfg) = &tls {
            c.send(retr.as_bytes())?;
            let mut d = tls::Data::open(cfg, data)?;
            n += d.drain(&mut buf)?;
            resumed += d.resumed() as u32;
            drop(d);
            c.expect("RETR", &[125, 150])?;
        } else {
            c.cmd(retr.as_bytes(), &[125, 150])?;
            n += ftp::drain(&mut data, !copy, &mut buf)?.0;
            drop(data);
        }
        c.expect("RETR", &[226, 250])?;
    }
    let secs = t0.elapsed().as_secs_f64();
    // Read before QUIT: a forking server's session process still lives.
    let c1 = Cpu::now(pid);
    let _ = c.cmd(b"QUIT\r\n", &[221]);
    c.close_tls();
    drop(c);
    Ok(Got {
        n,
        secs,
        c0,
        c1,
        negotiated,
        resumed,
    })
}

/// What a reader got: bytes, seconds, CPU before and after, and for FTPS
/// what was negotiated and how many data connections resumed.
struct Got {
    n: u64,
    secs: f64,
    c0: Cpu,
    c1: Cpu,
    negotiated: Option<String>,
    resumed: u32,
}

/// curl, one session per download, as a user would run it: its own buffer
/// sizes and read pattern change how the server's sends are paced.
/// With `--tls`: explicit FTPS required (`--ssl-reqd`, which protects the
/// data too), the self-signed certificate accepted.
fn curl(a: &Args, path: &str, repeat: u32, pid: &ServerCpu) -> io::Result<Got> {
    let url = format!("ftp://{}{path}", a.addr());
    let tls: &[&str] = if a.flag("tls") {
        &["--ssl-reqd", "-k"]
    } else {
        &[]
    };
    let c0 = Cpu::now(pid);
    let t0 = Instant::now();
    let mut n = 0;
    for _ in 0..repeat {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "300"])
            .args(tls)
            .args(["-w", "%{size_download}", &url])
            .output()?;
        if !out.status.success() {
            return Err(ftp::err(format!(
                "curl {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        n += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .map_err(|_| ftp::err("curl: no size_download".into()))?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let c1 = Cpu::now(pid);
    Ok(Got {
        n,
        secs,
        c0,
        c1,
        negotiated: None,
        resumed: 0,
    })
}

pub fn bulk(a: &Args) {
    let path = a
        .str("path")
        .unwrap_or_else(|| die("bulk: --path is required"));
    let pid = &a.server_cpu();
    // Several downloads back to back, so one measurement lasts long enough
    // (about a second) for CPU ticks and timers.
    let repeat: u32 = a.num::<u32>("repeat", 1).max(1);
    let reader = a.str("reader").unwrap_or("own");
    let r = match reader {
        "own" => own(a, path, repeat, pid),
        "curl" => curl(a, path, repeat, pid),
        _ => die("--reader: own or curl"),
    };
    let mut rec = Record::new("bulk", a);
    rec.str("reader", reader);
    match r {
        Ok(Got {
            n,
            secs,
            c0,
            c1,
            negotiated,
            resumed,
        }) => {
            if let Some(t) = negotiated {
                rec.str("tls", &t);
                rec.num("tls_data_resumed", resumed as f64);
            }
            let gib = n as f64 / (1u64 << 30) as f64;
            rec.num("bytes", n as f64);
            rec.num("downloads", repeat as f64);
            rec.num("secs", secs);
            rec.num("mb_s", n as f64 / secs / 1e6);
            rec.num("machine_cpu_s", c1.busy - c0.busy);
            rec.num("cpu_s_per_gib", (c1.busy - c0.busy) / gib);
            if a.server_pid().is_some() {
                rec.num("server_cpu_s_per_gib", (c1.srv - c0.srv) / gib);
                rec.str("cpu_method", pid.method());
            }
            rec.num("gen_cpu_s_per_gib", (c1.gen_cpu - c0.gen_cpu) / gib);
            rec.num("failures", 0.0);
        }
        Err(e) => {
            let mut f = crate::fail::Failures::default();
            f.add(&e);
            f.record(&mut rec, "");
        }
    }
    rec.print();
}
