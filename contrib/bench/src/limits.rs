//! Bandwidth limits measured from the client's side: how close a limited
//! download comes to its nominal time (`rate`), and how fairly a total
//! limit is shared between downloads running together (`fair`).

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::fail::Failures;
use crate::ftp::{self, Ctrl};
use crate::out::{Args, Record, die};
use crate::procfs::ServerCpu;

/// One recv of at most `max` bytes, discarded in the kernel. Ok(None) on
/// a read timeout (the socket's), so the caller can look at the clock.
fn recv_trunc(s: &TcpStream, max: usize) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: with MSG_TRUNC a TCP socket discards up to len bytes
        // without writing to the buffer; the buffer is valid anyway.
        let mut b = [0u8; 1];
        let r = unsafe {
            libc::recv(
                s.as_raw_fd(),
                b.as_mut_ptr() as *mut libc::c_void,
                max,
                libc::MSG_TRUNC,
            )
        };
        if r >= 0 {
            return Ok(Some(r as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// The last `bytes` of `path` (REST to its size less `bytes`, or the
/// whole file when it is smaller), timed from RETR to the last byte.
fn limited_download(
    a: &Args,
    path: &str,
    bytes: u64,
) -> io::Result<(u64, f64, Vec<f64>, f64, f64)> {
    let mut c = Ctrl::login(a.addr())?;
    c.cmd(b"TYPE I\r\n", &[200])?;
    c.cmd(format!("SIZE {path}\r\n").as_bytes(), &[213])?;
    let size: u64 = String::from_utf8_lossy(c.last_line())
        .get(4..)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ftp::err("SIZE: no number".into()))?;
    let offset = size.saturating_sub(bytes);
    if offset > 0 {
        c.cmd(format!("REST {offset}\r\n").as_bytes(), &[350])?;
    }
    let data = c.epsv()?;
    let cpu = a.server_cpu();
    let srv0 = cpu.secs();
    let t0 = Instant::now();
    c.cmd(format!("RETR {path}\r\n").as_bytes(), &[125, 150])?;
    // Bytes per second of the transfer, to show how steady it is.
    let mut per_s: Vec<f64> = Vec::new();
    let mut n = 0u64;
    let mut first = None;
    while let Some(r) = recv_trunc(&data, 1 << 30)? {
        if r == 0 {
            break;
        }
        let el = t0.elapsed();
        first.get_or_insert(el);
        n += r as u64;
        let i = el.as_secs() as usize;
        if per_s.len() <= i {
            per_s.resize(i + 1, 0.0);
        }
        per_s[i] += r as f64;
    }
    let secs = t0.elapsed().as_secs_f64();
    let srv1 = cpu.secs();
    drop(data);
    c.expect("RETR", &[226, 250])?;
    let _ = c.cmd(b"QUIT\r\n", &[221]);
    let first_ms = first.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    Ok((n, secs, per_s, srv1 - srv0, first_ms))
}

/// `rate`: one download of the last `--bytes` of `--path` under a server
/// limited to `--rate` bytes/s: elapsed against nominal (bytes / rate).
pub fn rate(a: &Args) {
    let path = a
        .str("path")
        .unwrap_or_else(|| die("rate: --path is required"));
    let bytes: u64 = a.num("bytes", 256 << 20);
    let limit: f64 = a.num("rate", 0.0);
    if limit <= 0.0 {
        die("rate: --rate BYTES_PER_S is required");
    }
    let mut rec = Record::new("rate", a);
    rec.num("limit", limit);
    match limited_download(a, path, bytes) {
        Ok((n, secs, per_s, srv, first_ms)) => {
            let nominal = n as f64 / limit;
            rec.num("bytes", n as f64);
            rec.num("secs", secs);
            rec.num("nominal_secs", nominal);
            rec.num("ratio", secs / nominal);
            rec.num("first_byte_ms", first_ms);
            rec.num("server_cpu_s", srv);
            rec.list("bytes_per_s", &per_s);
            let mut f = Failures::default();
            if n != bytes {
                f.add(&crate::fail::tagged(
                    crate::fail::Class::Bytes,
                    format!("got {n} bytes, expected {bytes}"),
                ));
            }
            f.record(&mut rec, "");
        }
        Err(e) => {
            let mut f = Failures::default();
            f.add(&e);
            f.record(&mut rec, "");
        }
    }
    rec.print();
}

/// One of the `fair` clients: downloads `path` again and again, adding to
/// `got` as bytes come, until `stop`.
fn fair_client(
    a: &Args,
    retr: &[u8],
    got: &AtomicU64,
    running: &AtomicUsize,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut c = Ctrl::login(a.addr())?;
    c.cmd(b"TYPE I\r\n", &[200])?;
    let mut counted = false;
    while !stop.load(Ordering::Relaxed) {
        let data = c.epsv()?;
        // Short read timeouts: the stop flag is seen within 100 ms even
        // while the server holds the transfer back.
        data.set_read_timeout(Some(Duration::from_millis(100)))?;
        c.cmd(retr, &[125, 150])?;
        if !counted {
            running.fetch_add(1, Ordering::Relaxed);
            counted = true;
        }
        let mut quiet = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                // The window is over: end the transfer at once.
                ftp::abort(data);
                ftp::abort(c.sock);
                return Ok(());
            }
            match recv_trunc(&data, 1 << 30)? {
                Some(0) => break,
                Some(r) => {
                    got.fetch_add(r as u64, Ordering::Relaxed);
                    quiet = Instant::now();
                }
                None if quiet.elapsed() > ftp::IO_TIMEOUT => {
                    return Err(crate::fail::tagged(
                        crate::fail::Class::Timeout,
                        "no data for 20 s".into(),
                    ));
                }
                None => {}
            }
        }
        drop(data);
        c.expect("RETR", &[226, 250])?;
    }
    ftp::abort(c.sock);
    Ok(())
}

/// Jain's fairness index of the shares: (Σx)² / (n·Σx²), 1 when all are
/// equal, 1/n when one takes everything.
pub fn jain(x: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    let q: f64 = x.iter().map(|v| v * v).sum();
    if q == 0.0 {
        return f64::NAN;
    }
    s * s / (x.len() as f64 * q)
}

/// `fair`: `-n` clients download `--path` at once, again and again, from
/// a server with a total limit of `--limit` bytes/s; once all run and
/// `--settle` seconds passed, each one's bytes over `--secs` seconds:
/// Jain's index and the total against the limit.
pub fn fair(a: &Args) {
    let path = a
        .str("path")
        .unwrap_or_else(|| die("fair: --path is required"));
    let retr = format!("RETR {path}\r\n").into_bytes();
    let n: usize = a.num::<usize>("n", 10).max(1);
    let secs: f64 = a.num("secs", 20.0);
    let settle: f64 = a.num("settle", 2.0);
    let limit: f64 = a.num("limit", 0.0);
    let got: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let running = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let cpu: ServerCpu = a.server_cpu();
    let mut rec = Record::new("fair", a);
    let fails = std::thread::scope(|sc| {
        let hs: Vec<_> = got
            .iter()
            .map(|g| {
                let (retr, running, stop) = (&retr, &running, &stop);
                sc.spawn(move || fair_client(a, retr, g, running, stop))
            })
            .collect();
        let t0 = Instant::now();
        while running.load(Ordering::Relaxed) < n && t0.elapsed() < ftp::IO_TIMEOUT {
            std::thread::sleep(Duration::from_millis(10));
        }
        rec.num("started", running.load(Ordering::Relaxed) as f64);
        rec.num("start_secs", t0.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs_f64(settle));
        let snap = || {
            got.iter()
                .map(|g| g.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        };
        let (b0, srv0, w0) = (snap(), cpu.secs(), Instant::now());
        // The total second by second, to show how steady it is.
        let mut per_s = Vec::new();
        let mut last: u64 = b0.iter().sum();
        while w0.elapsed().as_secs_f64() < secs {
            let left = secs - w0.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_secs_f64(left.clamp(0.0, 1.0)));
            let now: u64 = snap().iter().sum();
            per_s.push((now - last) as f64);
            last = now;
        }
        let (b1, srv1, wall) = (snap(), cpu.secs(), w0.elapsed().as_secs_f64());
        stop.store(true, Ordering::Relaxed);
        let shares: Vec<f64> = b0
            .iter()
            .zip(&b1)
            .map(|(x, y)| (y - x) as f64 / wall)
            .collect();
        let total: f64 = shares.iter().sum();
        rec.num("n", n as f64);
        rec.num("secs", wall);
        rec.num("limit", limit);
        rec.num("total", total);
        if limit > 0.0 {
            rec.num("total_ratio", total / limit);
        }
        rec.num("jain", jain(&shares));
        let (lo, hi) = shares
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), &x| (l.min(x), h.max(x)));
        rec.num("min_share", lo);
        rec.num("max_share", hi);
        rec.num(
            "server_cpu_s_per_gib",
            (srv1 - srv0) / ((total * wall) / (1u64 << 30) as f64),
        );
        rec.list("shares", &shares);
        rec.list("total_per_s", &per_s);
        let mut f = Failures::default();
        for h in hs {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => f.add(&e),
                Err(_) => f.add(&ftp::err("client thread panicked".into())),
            }
        }
        f
    });
    fails.record(&mut rec, "");
    rec.print();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_index() {
        assert!((jain(&[5.0; 10]) - 1.0).abs() < 1e-12);
        let mut one = [0.0; 10];
        one[3] = 7.0;
        assert!((jain(&one) - 0.1).abs() < 1e-12);
        assert!((jain(&[1.0, 3.0]) - 0.8).abs() < 1e-12);
        assert!(jain(&[0.0, 0.0]).is_nan());
    }
}
