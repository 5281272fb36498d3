"""2,000 slow clients at 1 MB/s: fairness, CPU per GiB, memory."""

from common import PEERS, fail_text, failures, fmt, marked, of, targets_in, tick

TITLE = "Many slow clients"
OURS = ("supervisor-epoll", "supervisor-uring")


def total_kib(r):
    parts = [r.get("user_kib"), r.get("cg_kernel_kib", 0), r.get("sock_kib")]
    return sum(parts) if all(isinstance(p, (int, float)) for p in parts) else None


def section(recs, rep):
    targets = targets_in(recs)
    n = max([r.get("clients", 0) for r in recs] or [0])
    rate = max([r.get("rate_limit", 0) for r in recs] or [0])
    secs = max([r.get("secs", 0) for r in recs] or [0])
    rep.w(f"## {TITLE}: {n:,} downloads of a 64 MiB file at once, each read at {rate / 1e6:g} MB/s\n")
    rep.w(f"Each client reads through a token bucket ({rate / 1e6:g} MB/s, at most 256 KiB banked, so a "
          f"client the server starved cannot catch up faster than its link). Measured over {secs:.0f} s once "
          "every download runs. Client rates: of the clients downloading through the whole window. Memory per "
          "active download, KiB, at mid-window less the server at rest: **user** = Pss over the server's "
          "processes; **kernel** = the kernel memory charged to its cgroup (stacks, page tables, files; without "
          "socket buffers); **sockets** = the server's TCP socket buffers, from `ss -tm` summed over the sockets "
          "the server's processes hold (rmem_alloc + wmem_queued + forward_alloc). Machine TCP: "
          "/proc/net/sockstat's TCP pages, both ends of every connection, per download; 'pressure': the kernel "
          "was above tcp_mem's pressure threshold and shrinking every socket's buffers.\n")
    rows, totals = [], {}
    for t in targets:
        rs = of(recs, target=t)
        if not rs:
            continue
        r = rs[0]
        ft, fb = failures(rs)
        tot = total_kib(r)
        totals[t] = (tot, ft)
        rows.append([t, f"{int(r.get('rated_clients', 0)):,} / {int(r.get('active', 0)):,}",
                     marked(fmt(r.get("mb_s")), ft),
                     f"{fmt(r.get('client_min_mb_s'))} / {fmt(r.get('client_median_mb_s'))} / {fmt(r.get('client_max_mb_s'))}",
                     fmt(r.get("slowest_over_median")), fmt(r.get("server_cpu_s_per_gib")),
                     fmt(r.get("user_kib")), fmt(r.get("cg_kernel_kib")), fmt(r.get("sock_kib")), fmt(tot),
                     f"{fmt(r.get('machine_tcp_kib'))} ({r.get('tcp_pressure_mid', '?')})",
                     f"{fmt(r.get('server_cores'))} / {fmt(r.get('gen_cores'))} / {fmt(r.get('machine_busy_cores'))}",
                     fail_text(ft, fb)])
    best = [v for p, (v, f) in totals.items() if p in PEERS and v and not f]
    best = min(best) if best else None
    for row in rows:
        v, f = totals[row[0]]
        row.insert(11, f"{v / best:.2f}×" if v and best else "–")
        s = of(recs, target=row[0])[0].get("slowest_over_median")
        row.append(f"{tick(bool(v and best) and v / best <= 0.25 and not f)} / {tick(s is not None and s >= 0.8 and not f)}")
    rep.table(["target", "clients rated / active", "total MB/s", "client MB/s min / median / max",
               "slowest / median", "server CPU s/GiB", "user KiB", "kernel KiB", "sockets KiB", "total KiB",
               "machine TCP KiB (pressure)", "×best peer", "cores: server / generator / machine", "failures",
               "goals: ≤ 0.25× / ≥ 0.8"],
              rows)
    rep.w("Cores: CPU time per second of the window, of the server, of the load generator, and of the whole "
          "machine (everything busy): where the machine is full, the total rate is the machine's limit and the "
          "spread between clients is what the server decides.\n")
    for t in OURS:
        rs = of(recs, target=t)
        if not rs:
            continue
        r = rs[0]
        v, f = totals.get(t, (None, 0))
        if v and best:
            rep.goal(f"slow clients: {t} memory per active download ≤ 0.25× the best peer's",
                     f"{v / best:.2f}× ({fmt(v)} KiB against {fmt(best)})", v / best <= 0.25 and not f)
        s = r.get("slowest_over_median")
        if s is not None:
            rep.goal(f"slow clients: {t} slowest client ≥ 0.8× the median", f"{fmt(s)}", s >= 0.8 and not f)
