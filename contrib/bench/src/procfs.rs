//! What the measurements read from /proc and the memory cgroup: a server's
//! process tree, its memory (Pss, peak RSS), its CPU time, the machine's
//! busy time and the kernel's memory counters.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// The fields of /proc/PID/stat after the command name (which may hold
/// spaces and parentheses, hence the search for the last ')').
fn stat_fields(pid: i32) -> Option<Vec<u64>> {
    let s = read(&format!("/proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')')? + 2..];
    // Field 3 (state) is a letter; keep positions by mapping it to 0.
    Some(
        rest.split(' ')
            .map(|f| f.trim().parse().unwrap_or(0))
            .collect(),
    )
}

/// The pid and every descendant of it, found by walking /proc once: forking
/// servers (and tcpserver) hold their sessions in child processes.
pub fn tree(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            // stat fields after comm: state(0) ppid(1) ...
            if let Some(f) = stat_fields(pid) {
                children.entry(f[1] as i32).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    if fs::metadata(format!("/proc/{root}")).is_err() {
        return out;
    }
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        out.push(p);
        if let Some(c) = children.get(&p) {
            todo.extend(c);
        }
    }
    out
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Proportional set size (KiB): shared pages are split among the processes
/// that map them, so summing over a forking server's processes is fair.
pub fn pss_kib(pid: i32) -> u64 {
    read(&format!("/proc/{pid}/smaps_rollup"))
        .and_then(|s| kib_field(&s, "Pss:"))
        .unwrap_or(0)
}

pub fn status_kib(pid: i32, key: &str) -> u64 {
    read(&format!("/proc/{pid}/status"))
        .and_then(|s| kib_field(&s, key))
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux 4.0+, root), so a later VmHWM is
/// the peak of what happened in between.
pub fn reset_hwm(pid: i32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds of a process tree: each process's own time plus that of its
/// reaped children (cutime/cstime), so sessions that ended in between
/// still count once (a child's own time while it lives, its parent's
/// cutime after it was waited for).
///
/// A single-threaded process's own time comes from /proc/PID/schedstat, in
/// nanoseconds: /proc/PID/stat counts in clock ticks (10 ms), and 2,000
/// session processes that each ran a millisecond would sum to nothing. A
/// process with threads (the supervisor) keeps ticks: its stat also holds
/// the time of threads that have exited (io_uring's workers), which the
/// per-thread schedstat no longer shows.
pub fn tree_cpu_secs(pids: &[i32]) -> f64 {
    let tck = clk_tck();
    let mut secs = 0.0;
    for &p in pids {
        // Fields after comm: utime(11) stime(12) cutime(13) cstime(14)
        // num_threads(17).
        let Some(f) = stat_fields(p) else { continue };
        if f.len() < 18 {
            continue;
        }
        secs += (f[13] + f[14]) as f64 / tck;
        secs += match (f[17], schedstat_ns(p)) {
            (1, Some(ns)) => ns as f64 / 1e9,
            _ => (f[11] + f[12]) as f64 / tck,
        };
    }
    secs
}

/// The server's CPU time: from its own CPU-accounting cgroup when the run
/// script made one (`--cpu-cg DIR`: every process the server ever ran,
/// exited ones included, in nanoseconds), else from its process tree in
/// /proc (exited processes count only if their parent waited for them).
pub struct ServerCpu {
    pid: Option<i32>,
    cg: Option<PathBuf>,
}

impl ServerCpu {
    pub fn new(pid: Option<i32>, cg: Option<&str>) -> ServerCpu {
        let cg = cg
            .map(PathBuf::from)
            .filter(|d| d.join("cpuacct.usage").exists() || d.join("cpu.stat").exists());
        ServerCpu { pid, cg }
    }

    pub fn method(&self) -> &'static str {
        if self.cg.is_some() { "cgroup" } else { "proc" }
    }

    pub fn secs(&self) -> f64 {
        if let Some(d) = &self.cg {
            let f = |n: &str| read(d.join(n).to_str().unwrap_or(""));
            if let Some(ns) = f("cpuacct.usage").and_then(|s| s.trim().parse::<u64>().ok()) {
                return ns as f64 / 1e9;
            }
            if let Some(us) = f("cpu.stat").and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
            }) {
                return us as f64 / 1e6;
            }
        }
        self.pid.map_or(0.0, |p| tree_cpu_secs(&tree(p)))
    }
}

/// CPU seconds of a process so far, from each of its threads' schedstat
/// (nanoseconds): a multi-threaded process whose threads all live through
/// the measurement (HAProxy's), where clock ticks would be too coarse for
/// a few seconds.
pub fn threads_cpu_secs(pid: i32) -> f64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| {
            read(&format!(
                "/proc/{pid}/task/{}/schedstat",
                e.file_name().to_str()?
            ))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
        })
        .sum::<u64>() as f64
        / 1e9
}

/// Time on CPU of a task so far (the first field of schedstat), in ns.
fn schedstat_ns(pid: i32) -> Option<u64> {
    read(&format!("/proc/{pid}/schedstat"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whole-machine CPU from the first line of /proc/stat: (busy, all) in
/// seconds, busy being everything but idle and iowait.
pub fn machine_cpu() -> (f64, f64) {
    let s = read("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let all: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let t = clk_tck();
    ((all - idle) as f64 / t, all as f64 / t)
}

/// CPU seconds used by this process (the generator) so far.
pub fn self_cpu_secs() -> f64 {
    let (u, s) = self_cpu_split();
    u + s
}

/// CPU seconds of this process's waited-for children (curl).
pub fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (user, system) CPU seconds of this process so far. Over loopback the
/// system part includes the kernel's TCP work for both ends of whatever the
/// process sends, so user time is the generator's own cost.
pub fn self_cpu_split() -> (f64, f64) {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// The size of one TCP socket object (KiB), from /proc/slabinfo (root
/// only); 2.3 KiB, a typical size, when it cannot be read.
pub fn tcp_obj_kib(v6: bool) -> f64 {
    let name = if v6 { "TCPv6" } else { "TCP" };
    read("/proc/slabinfo")
        .and_then(|s| {
            s.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                if w.next()? != name {
                    return None;
                }
                w.nth(2)?.parse::<f64>().ok()
            })
        })
        .map(|b| b / 1024.0)
        .unwrap_or(2.3)
}

/// MemAvailable from /proc/meminfo, in MiB.
pub fn mem_available_mib() -> u64 {
    read("/proc/meminfo")
        .and_then(|m| kib_field(&m, "MemAvailable:"))
        .map(|k| k / 1024)
        .unwrap_or(u64::MAX)
}

/// The kernel's memory counters that grow with connections and processes,
/// machine-wide (KiB). These include the client's half of each loopback
/// connection and whatever else the machine does: the memory cgroup below
/// is the precise figure for the server alone.
#[derive(Clone, Copy, Default)]
pub struct Kernel {
    pub slab: u64,
    pub kernel_stack: u64,
    pub page_tables: u64,
    pub tcp_mem: u64,
}

impl Kernel {
    pub fn read() -> Kernel {
        let m = read("/proc/meminfo").unwrap_or_default();
        let f = |k| kib_field(&m, k).unwrap_or(0);
        let pages = sockstat("mem");
        Kernel {
            slab: f("Slab:"),
            kernel_stack: f("KernelStack:"),
            page_tables: f("PageTables:"),
            tcp_mem: pages * 4,
        }
    }

    pub fn total(&self) -> u64 {
        self.slab + self.kernel_stack + self.page_tables + self.tcp_mem
    }
}

/// A field of the TCP line of /proc/net/sockstat, machine-wide:
/// "TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 1" (mem in pages).
pub fn sockstat(field: &str) -> u64 {
    read("/proc/net/sockstat")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|&x| x == field)?;
            w.get(i + 1)?.parse::<u64>().ok()
        })
        .unwrap_or(0)
}

/// Whether TCP is under memory pressure machine-wide (/proc/net/protocols,
/// the TCP row's "press" column): above tcp_mem's second threshold the
/// kernel shrinks every socket's buffers.
pub fn tcp_memory_pressure() -> bool {
    let s = read("/proc/net/protocols").unwrap_or_default();
    let mut lines = s.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let Some(col) = head.iter().position(|&h| h == "press") else {
        return false;
    };
    lines
        .find(|l| l.starts_with("TCP "))
        .and_then(|l| l.split_whitespace().nth(col).map(|v| v == "yes"))
        .unwrap_or(false)
}

/// A memory cgroup that holds the server and nothing else (the run script
/// starts the server in it): its kernel memory counter is the server's
/// side of the sockets, its processes' stacks, page tables and slab
/// objects, without the client's half or the rest of the machine.
pub struct Memcg {
    dir: PathBuf,
    v2: bool,
}

impl Memcg {
    pub fn open(dir: &str) -> Option<Memcg> {
        let dir = PathBuf::from(dir);
        if dir.join("memory.current").exists() {
            Some(Memcg { dir, v2: true })
        } else if dir.join("memory.usage_in_bytes").exists() {
            Some(Memcg { dir, v2: false })
        } else {
            None
        }
    }

    fn num(&self, f: &str) -> u64 {
        read(self.dir.join(f).to_str().unwrap_or(""))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Socket buffer memory charged to the group, KiB (cgroup v2's "sock";
    /// v1 counts it only once a TCP limit was set, so it is usually 0).
    pub fn sock_kib(&self) -> u64 {
        if self.v2 {
            let stat =
                read(self.dir.join("memory.stat").to_str().unwrap_or("")).unwrap_or_default();
            stat.lines()
                .find_map(|l| l.strip_prefix("sock ")?.trim().parse::<u64>().ok())
                .unwrap_or(0)
                / 1024
        } else {
            self.num("memory.kmem.tcp.usage_in_bytes") / 1024
        }
    }

    /// (all charged memory, kernel part) in KiB.
    pub fn read(&self) -> (u64, u64) {
        if self.v2 {
            let stat =
                read(self.dir.join("memory.stat").to_str().unwrap_or("")).unwrap_or_default();
            let field = |k: &str| {
                stat.lines()
                    .find_map(|l| {
                        l.strip_prefix(k)?
                            .strip_prefix(' ')?
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            let kernel = match field("kernel") {
                0 => {
                    field("kernel_stack")
                        + field("pagetables")
                        + field("slab")
                        + field("sock")
                        + field("percpu")
                }
                k => k + field("sock"),
            };
            (self.num("memory.current") / 1024, kernel / 1024)
        } else {
            (
                self.num("memory.usage_in_bytes") / 1024,
                (self.num("memory.kmem.usage_in_bytes")
                    + self.num("memory.kmem.tcp.usage_in_bytes"))
                    / 1024,
            )
        }
    }
}

/// One look at a server's memory.
#[derive(Clone, Copy, Default)]
pub struct MemSnap {
    pub procs: usize,
    pub pss: u64,
    pub rss: u64,
    pub cg_all: u64,
    pub cg_kernel: u64,
    pub kernel: Kernel,
}

pub fn mem_snap(root: i32, cg: Option<&Memcg>) -> MemSnap {
    let pids = tree(root);
    let (cg_all, cg_kernel) = cg.map(|c| c.read()).unwrap_or((0, 0));
    MemSnap {
        procs: pids.len(),
        pss: pids.iter().map(|&p| pss_kib(p)).sum(),
        rss: pids.iter().map(|&p| status_kib(p, "VmRSS:")).sum(),
        cg_all,
        cg_kernel,
        kernel: Kernel::read(),
    }
}
