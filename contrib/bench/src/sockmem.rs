//! The kernel memory held by a server's TCP sockets: `ss -tmneaO` (one
//! line per socket, with its inode and skmem counters), summed over the
//! sockets whose inodes the server's processes hold open. Over loopback
//! the machine-wide counter (/proc/net/sockstat mem) also holds the
//! clients' receive buffers, so only a per-socket sum is the server's.

use std::collections::HashSet;
use std::fs;
use std::process::Command;

use crate::procfs;

/// Bytes, summed over the server's sockets.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct SockMem {
    pub sockets: u64,
    /// Receive queues (skmem r: rmem_alloc).
    pub rmem: u64,
    /// Send queues (skmem w: wmem_queued, what is queued and not yet
    /// acknowledged, with its overhead).
    pub wmem: u64,
    /// Memory charged ahead of use (skmem f: forward_alloc).
    pub fwd: u64,
}

impl SockMem {
    /// What the sockets hold: the TCP memory accounting charges these.
    pub fn total(&self) -> u64 {
        self.rmem + self.wmem + self.fwd
    }
}

/// Socket inodes open in the processes of the tree rooted at `pid`.
fn inodes(pid: i32) -> HashSet<u64> {
    let mut set = HashSet::new();
    for p in procfs::tree(pid) {
        let Ok(dir) = fs::read_dir(format!("/proc/{p}/fd")) else {
            continue;
        };
        for e in dir.flatten() {
            if let Ok(t) = fs::read_link(e.path())
                && let Some(n) = t
                    .to_str()
                    .and_then(|s| s.strip_prefix("socket:["))
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse().ok())
            {
                set.insert(n);
            }
        }
    }
    set
}

/// One line of `ss -tmneaOH`: its inode and skmem counters.
fn parse_line(l: &str) -> Option<(u64, SockMem)> {
    let ino = l
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ino:"))?
        .parse()
        .ok()?;
    let sk = l.split("skmem:(").nth(1)?.split(')').next()?;
    let mut m = SockMem {
        sockets: 1,
        ..SockMem::default()
    };
    for f in sk.split(',') {
        let digits = f.find(|c: char| c.is_ascii_digit())?;
        let (k, v) = f.split_at(digits);
        let v: u64 = v.parse().ok()?;
        match k {
            "r" => m.rmem = v,
            "w" => m.wmem = v,
            "f" => m.fwd = v,
            _ => {}
        }
    }
    Some((ino, m))
}

/// The socket memory of the server whose process tree starts at `pid`;
/// None when `ss` (Debian package iproute2) cannot be run.
pub fn server(pid: i32) -> Option<SockMem> {
    let ours = inodes(pid);
    let out = Command::new("ss").args(["-tmneaOH"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let mut sum = SockMem::default();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((ino, m)) = parse_line(l)
            && ours.contains(&ino)
        {
            sum.sockets += 1;
            sum.rmem += m.rmem;
            sum.wmem += m.wmem;
            sum.fwd += m.fwd;
        }
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines() {
        let l = "ESTAB 0 2000 127.0.0.1:21301 127.0.0.1:50486 ino:576916 sk:2 cgroup:/ <-> \
                 skmem:(r10,rb131072,t4,tb3939840,f4096,w2304,o0,bl0,d0)";
        let (ino, m) = parse_line(l).unwrap();
        assert_eq!(ino, 576916);
        assert_eq!((m.rmem, m.wmem, m.fwd, m.total()), (10, 2304, 4096, 6410));
        assert!(parse_line("LISTEN 0 128 0.0.0.0:22 0.0.0.0:*").is_none());
    }
}
