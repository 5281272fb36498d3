//! Uploads (STOR): C clients at once, each storing one file of SIZE bytes
//! (the same pseudo-random bytes, held in memory, so the generator reads
//! no disk), each its own session. The time runs from the first connect
//! to the last 226 and, with `--sync-dir`, to the file being durable: a
//! server that does not fsync before its 226 (vsftpd) has the generator
//! fsync the stored file and its directory, counted in its time, so every
//! target is measured to the same end. MB/s (10^6 bytes), the server's and
//! the machine's CPU per GiB.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crate::fail::Failures;
use crate::ftp::{self, Ctrl};
use crate::out::{Args, Record, die};
use crate::procfs;

/// Bytes sent per write: large, as a client uploading a file would.
const WRITE: usize = 1 << 20;

/// One client's upload: login, TYPE I, EPSV, STOR, the bytes, 226, QUIT.
fn one(
    addr: SocketAddr,
    name: &str,
    body: &[u8],
    size: u64,
    sync_dir: Option<&str>,
) -> io::Result<u64> {
    let mut c = Ctrl::login(addr)?;
    c.cmd(b"TYPE I\r\n", &[200])?;
    let mut data = c.epsv()?;
    c.cmd(format!("STOR {name}\r\n").as_bytes(), &[125, 150])?;
    let mut left = size;
    while left > 0 {
        let n = left.min(body.len() as u64) as usize;
        data.write_all(&body[..n])?;
        left -= n as u64;
    }
    data.shutdown(Shutdown::Write)?;
    // The server closes once it has it all.
    let mut sink = [0u8; 64];
    while io::Read::read(&mut data, &mut sink)? > 0 {}
    drop(data);
    c.expect("STOR", &[226, 250])?;
    if let Some(dir) = sync_dir {
        let base = Path::new(name).file_name().unwrap_or_default();
        let f = std::fs::File::open(Path::new(dir).join(base))?;
        f.sync_all()?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    let _ = c.cmd(b"QUIT\r\n", &[221]);
    Ok(size)
}

pub fn upload(a: &Args) {
    let dir = a
        .str("path")
        .unwrap_or_else(|| die("upload: --path is required (the upload directory)"));
    let size: u64 = a.num("size", 16 << 20);
    let clients: usize = a.num::<usize>("clients", 1).max(1);
    let tag = a.str("tag").unwrap_or("u").to_owned();
    let sync_dir = a.str("sync-dir").map(str::to_owned);
    let srv = a.server_cpu();
    let addr = a.addr();
    let body: Arc<Vec<u8>> = Arc::new(pattern(WRITE));
    let busy0 = procfs::machine_cpu().0;
    let srv0 = srv.secs();
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let body = Arc::clone(&body);
            let name = format!("{dir}/{tag}-{i}");
            let sync_dir = sync_dir.clone();
            thread::spawn(move || one(addr, &name, &body, size, sync_dir.as_deref()))
        })
        .collect();
    let mut failures = Failures::default();
    let mut bytes = 0u64;
    for h in handles {
        match h.join() {
            Ok(Ok(n)) => bytes += n,
            Ok(Err(e)) => failures.add(&e),
            Err(_) => failures.add(&ftp::err("a client thread panicked".into())),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let srv1 = srv.secs();
    let busy1 = procfs::machine_cpu().0;
    let mut rec = Record::new("upload", a);
    let gib = bytes as f64 / (1u64 << 30) as f64;
    rec.num("clients", clients as f64);
    rec.num("size", size as f64);
    rec.num("bytes", bytes as f64);
    rec.num("secs", secs);
    rec.num("mb_s", bytes as f64 / secs / 1e6);
    rec.str(
        "synced_by",
        if sync_dir.is_some() {
            "client"
        } else {
            "server"
        },
    );
    if gib > 0.0 {
        rec.num("cpu_s_per_gib", (busy1 - busy0) / gib);
        if a.server_pid().is_some() {
            rec.num("server_cpu_s_per_gib", (srv1 - srv0) / gib);
            rec.str("cpu_method", srv.method());
        }
    }
    failures.record(&mut rec, "");
    rec.print();
}

/// `n` bytes that do not compress: an upload of real data.
fn pattern(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
