//! aftpd-bench: the load generator and measurement tool behind
//! contrib/bench/run. Each subcommand measures one thing against one
//! running server and prints one JSON record on standard output.

mod data;
mod ftp;
mod measure;
mod out;
mod procfs;

use out::{Args, die};

const USAGE: &str = "\
usage: aftpd-bench COMMAND [OPTIONS] [--label KEY=VALUE ...]

Commands (each prints one JSON record; --label pairs are copied into it):
  sessions --addr A [--path /small] [-n N] [-c C] [--max-secs S] [--warmup W]
           [--size BYTES] [--server-pid P]
      N whole sessions (connect, USER anonymous, PASS, TYPE I, EPSV, RETR,
      QUIT) on C threads, at most S seconds: sessions/s, p50/p99 latency,
      the generator's own CPU.
  bulk --addr A --path /big [--copy] [--server-pid P]
      One download: MB/s (10^6 bytes), whole-machine CPU seconds per GiB.
      Without --copy the client discards the bytes in the kernel.
  idle --addr A -k K [-c C] [--hold S] --server-pid P [--memcg DIR]
       [--client-memcg DIR] [--min-avail-mib M]
      K logged-in idle sessions held for S seconds: memory per session
      (sum of Pss over the server's processes, kernel memory). Logins stop
      early if MemAvailable falls below M MiB (default 3072).
  list --addr A --cmd LIST|NLST|MLSD --path /dir --server-pid P
      One listing: wall time, bytes, lines, the server's peak RSS.
  mkdata DIR [--big-mib M] [--entries E]
      The data set: DIR/big-MM (M MiB), DIR/small (4 KiB), DIR/dir/ (E
      entries). Idempotent.
  ping --addr A [--secs S]
      Waits (at most S seconds) until a server greets with 220.
  tree PID
      Prints PID and its descendants, one a line.
";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprint!("{USAGE}");
        std::process::exit(100);
    };
    raise_nofile();
    let rest = &argv[1..];
    match cmd.as_str() {
        "sessions" => measure::sessions(&Args::parse(rest)),
        "bulk" => measure::bulk(&Args::parse(rest)),
        "idle" => measure::idle(&Args::parse(rest)),
        "list" => measure::list(&Args::parse(rest)),
        "ping" => measure::ping(&Args::parse(rest)),
        "mkdata" => {
            let dir = rest
                .first()
                .filter(|d| !d.starts_with("--"))
                .unwrap_or_else(|| die("mkdata DIR"));
            let a = Args::parse(&rest[1..]);
            data::mkdata(dir, a.num("big-mib", 1024), a.num("entries", 100_000));
        }
        "tree" => {
            let pid = rest
                .first()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| die("tree PID"));
            for p in procfs::tree(pid) {
                println!("{p}");
            }
        }
        "-h" | "--help" | "help" => print!("{USAGE}"),
        _ => {
            eprint!("{USAGE}");
            std::process::exit(100);
        }
    }
}

/// Ten thousand idle sessions need ten thousand descriptors.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
