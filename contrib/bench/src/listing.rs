//! One listing of a big directory: wall time, bytes, lines and the
//! server's peak RSS while it listed; and `ping`, waiting for a greeting.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use crate::ftp::{self, Ctrl};
use crate::out::{Args, Record, die};
use crate::procfs;

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
        let cpu = a.server_cpu();
        let srv0 = cpu.secs();
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
        let srv1 = cpu.secs();
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
