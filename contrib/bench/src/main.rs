//! aftpd-bench: the load generator and measurement tool behind
//! contrib/bench/run. Each subcommand measures one thing against one
//! running server and prints one JSON record on standard output.

mod bulk;
mod data;
mod fail;
mod ftp;
mod idle;
mod limits;
mod listing;
mod out;
mod procfs;
mod sessions;
mod slowread;
mod sockmem;
mod stats;
mod tls;
mod underload;
mod upload;

use out::{Args, die};

const USAGE: &str = "\
usage: aftpd-bench COMMAND [OPTIONS] [--label KEY=VALUE ...]

Commands (each prints one JSON record; --label pairs are copied into it).
Every rate comes with its failures, by class (refused, data_connect, 425,
421, reply, timeout, reset, bytes, other).
  sessions --addr A [--path /small] [-n N] [-c C] [--max-secs S] [--warmup W]
           [--size BYTES] [--close fin|rst] [--tls [--resume]] [--server-pid P]
           [--extra-pid P]
      N whole sessions (connect, USER anonymous, PASS, TYPE I, EPSV, RETR,
      QUIT) on C threads, at most S seconds, closing normally (fin, the
      default) or with a RST: sessions/s, p50/p99 latency, successes and
      failures per second, the generator's own CPU. --tls: FTPS (AUTH TLS,
      PBSZ 0, PROT P first; a full handshake each session, the data
      connection resuming it; --resume: each client thread's control
      connections resume its previous session, its data connections the
      control connection's). --extra-pid: that process's own CPU too
      (a balancer in front of the server).
  bulk --addr A --path /big [--repeat R] [--reader own|curl] [--copy]
       [--tls] [--server-pid P]
      R downloads: MB/s (10^6 bytes), CPU seconds per GiB of the server
      and of the machine. Our reader discards the bytes in the kernel
      (unless --copy); curl runs one session per download. --tls: over
      PROT P (our reader decrypts with rustls; curl --ssl-reqd).
  rate --addr A --path P --rate BYTES_PER_S [--bytes B] [--server-pid P]
      One download of the last B bytes of P (default 256 MiB) from a
      server limited to RATE: elapsed against nominal (B / RATE), bytes
      second by second.
  fair --addr A --path P [-n N] [--secs S] [--settle T] [--limit BYTES_PER_S]
       [--server-pid P]
      N clients download P again and again at once; T seconds after all
      run, each one's rate over S seconds: Jain's index, the total
      against LIMIT.
  underload --addr A --secs S [--probe ctl|session] [--probe-path P]
            [--probe-size B] [--interval-ms I] [--load none|retr|list|meta]
            [-n N] [--load-path PATTERN] [--load-files F] [--load-size B]
            [--meta-files M] [--ramp R] [--server-pid P]
      N load clients (retr: download PATTERN again and again; list: LIST it;
      meta: LIST it, then SIZE and MDTM of PATTERN/eJ in turn; {i} in the
      pattern is the client's index modulo F) and, after R seconds, a
      probe for S seconds: ctl times NOOP and a RETR of P on one session,
      session times whole short sessions. Probe p50/p99, load throughput.
  slowread --addr A -n N --path P [--rate BYTES_PER_S] [--burst B]
           [--login-c C] [--settle S] [--window W] --server-pid P
           [--memcg DIR]
      N concurrent downloads, each read at RATE (a token bucket): each
      client's rate over the window (slowest/median), server CPU per GiB,
      memory per active download (Pss, kernel, the server's socket buffers
      from ss).
  idle --addr A -k K [-c C] [--hold S] [--tls] --server-pid P [--memcg DIR]
       [--client-memcg DIR] [--min-avail-mib M]
      K logged-in idle sessions held for S seconds: memory per session
      (sum of Pss over the server's processes, kernel memory). Logins stop
      early if MemAvailable falls below M MiB (default 3072). --tls: each
      session AUTH TLS (a full handshake), PBSZ 0, PROT P before the login.
  upload --addr A --path /incoming [--size BYTES] [--clients C] [--tag T]
         [--sync-dir DIR] [--server-pid P]
      C uploads at once (STOR /incoming/T-I, SIZE bytes each, one session
      each): MB/s, CPU seconds per GiB of the server and of the machine.
      With --sync-dir (where the files land on disk), the generator fsyncs
      each stored file and its directory before its upload counts as done,
      for servers that do not before their 226.
  list --addr A --cmd LIST|NLST|MLSD --path /dir --server-pid P
      One listing: wall time, bytes, lines, the server's peak RSS.
  mkdata DIR [--big-mib M] [--entries E]
      The data set: DIR/big-MM (M MiB), DIR/small (4 KiB), DIR/tiny (15
      bytes), DIR/slow-64M, DIR/dir/ (E entries). Idempotent.
  mkslow DIR [--files F] [--file-mib M] [--dirs D] [--entries E]
      The slow-disk tree (behind slowfs): DIR/small, DIR/cold/fI (F files
      of M MiB), DIR/cold/dI/eJ (D directories of E files). Idempotent.
  sockmem PID
      The socket buffers of the server whose process tree starts at PID.
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
        "sessions" => sessions::sessions(&Args::parse(rest)),
        "bulk" => bulk::bulk(&Args::parse(rest)),
        "rate" => limits::rate(&Args::parse(rest)),
        "fair" => limits::fair(&Args::parse(rest)),
        "underload" => underload::underload(&Args::parse(rest)),
        "slowread" => slowread::slowread(&Args::parse(rest)),
        "idle" => idle::idle(&Args::parse(rest)),
        "list" => listing::list(&Args::parse(rest)),
        "upload" => upload::upload(&Args::parse(rest)),
        "ping" => listing::ping(&Args::parse(rest)),
        "sockmem" => {
            let pid = rest
                .first()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| die("sockmem PID"));
            println!("{:?}", sockmem::server(pid));
        }
        "mkdata" => {
            let dir = rest
                .first()
                .filter(|d| !d.starts_with("--"))
                .unwrap_or_else(|| die("mkdata DIR"));
            let a = Args::parse(&rest[1..]);
            data::mkdata(dir, a.num("big-mib", 1024), a.num("entries", 100_000));
        }
        "mkslow" => {
            let dir = rest
                .first()
                .filter(|d| !d.starts_with("--"))
                .unwrap_or_else(|| die("mkslow DIR"));
            let a = Args::parse(&rest[1..]);
            data::mkslow(
                dir,
                a.num("files", 32),
                a.num("file-mib", 64),
                a.num("dirs", 8),
                a.num("entries", 50),
            );
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
