"""Memory per idle logged-in session, K=1,000 and 10,000, and the
projection beyond; the chart (../chart) draws what this keeps."""

from common import PEERS, cell, fmt, of, stat, targets_in

TITLE = "Memory per idle logged-in session (KiB)"


def figures(rs):
    ok = [r for r in rs if r.get("ok")]
    return {
        "user_kib": stat([r["user_kib"] for r in ok]),
        "kernel_kib": stat([r.get("kernel_kib") for r in ok]),
        "total_kib": stat([r["user_kib"] + r["kernel_kib"] for r in ok if "kernel_kib" in r]),
        "cg_kernel_kib": stat([r.get("cg_kernel_kib") for r in ok]),
        "machine_server_kernel_kib": stat([r.get("machine_server_kernel_kib") for r in ok]),
        "procs_per_session": stat([(r["procs"] - r["procs_base"]) / r["ok"] for r in ok]),
        "pss_base_kib": stat([r["pss_base_kib"] for r in ok]),
    }


def section(recs, rep):
    targets = targets_in(recs)
    ks = sorted({r["k"] for r in recs if "k" in r})
    figs = {(t, k): figures(of(recs, target=t, k=k)) for t in targets for k in ks}
    for (t, k), f in figs.items():
        for name, s in f.items():
            rep.keep("idle", t, f"idle{k}_{name}", s)

    def ratio(t, k):
        s = figs[(t, k)]["total_kib"]
        ps = [figs[(p, k)]["total_kib"]["median"] for p in PEERS if (p, k) in figs and figs[(p, k)]["total_kib"]]
        return f"{s['median'] / min(ps):.2f}×" if s and ps else "–"

    rep.w(f"## {TITLE}\n")
    head = ["target"]
    for k in ks:
        head += [f"K={k:,} user", "kernel", "total", "×peer"]
    rows = []
    for t in targets:
        row = [t]
        for k in ks:
            f = figs[(t, k)]
            row += [cell(f["user_kib"]), cell(f["kernel_kib"]), cell(f["total_kib"]), ratio(t, k)]
        rows.append(row)
    rep.table(head, rows)
    rep.w("- **user**: sum of Pss (/proc/PID/smaps_rollup) over the server's processes (all descendants of the "
          "process started), minus the same at rest, divided by K.\n"
          "- **kernel**: the kernel memory charged to the server's own memory cgroup (sockets' files and inodes, "
          "epoll entries, stacks, page tables, task structures), plus one TCP socket object (tcp_sock, from "
          "/proc/slabinfo) per session: the kernel allocates an accepted socket in softirq context and charges it "
          "to no cgroup.\n- **total** = user + kernel, per repetition. ×peer: against the best peer.\n")
    rep.w("#### Cross-check: the machine's kernel counters (KiB per session)\n")
    head = ["target"]
    for k in ks:
        head += [f"K={k:,} machine-wide", "memcg only", "processes/session"]
    rows = []
    for t in targets:
        row = [t]
        for k in ks:
            f = figs[(t, k)]
            row += [cell(f["machine_server_kernel_kib"]), cell(f["cg_kernel_kib"]), cell(f["procs_per_session"])]
        rows.append(row)
    rep.table(head, rows)
    rep.w("Machine-wide: growth of Slab + KernelStack + PageTables and TCP pages, less what the generator's own "
          "cgroup was charged. It sees what no cgroup is charged for (vsftpd's per-session network namespace), "
          "but also everything else the machine does.\n")
    if len(ks) >= 2:
        k1, k2 = ks[0], ks[-1]
        rep.w(f"### Projection beyond K={k2:,} (from the slope between K={k1:,} and K={k2:,})\n")
        rows = []
        for t in targets:
            a, b, base = figs[(t, k1)]["total_kib"], figs[(t, k2)]["total_kib"], figs[(t, k2)]["pss_base_kib"]
            if not (a and b and base):
                continue
            m1 = base["median"] + k1 * a["median"]
            m2 = base["median"] + k2 * b["median"]
            slope = (m2 - m1) / (k2 - k1)
            rows.append([t, fmt(slope), fmt(m2 / 1024), fmt((m2 + slope * (100000 - k2)) / 1024),
                         fmt((m2 + slope * (1000000 - k2)) / 1024)])
        rep.table(["target", "KiB/session (slope)", f"MiB at {k2:,}", "MiB at 100,000 (projected)",
                   "MiB at 1,000,000 (projected)"], rows)
    kmax = ks[-1] if ks else None
    for t in ("supervisor-epoll", "supervisor-uring"):
        f = figs.get((t, kmax))
        if f and f["user_kib"] and f["total_kib"]:
            rep.goal(f"≤ 2 KiB user memory per idle session at K={kmax:,}: {t}", f"{fmt(f['user_kib']['median'])} KiB",
                     f["user_kib"]["median"] <= 2)
            rep.goal(f"≤ 4 KiB per idle session incl. kernel at K={kmax:,}: {t}",
                     f"{fmt(f['total_kib']['median'])} KiB", f["total_kib"]["median"] <= 4)
    f = figs.get(("ftpd-tcpserver", kmax))
    if f and f["total_kib"]:
        rep.goal("ftpd under tcpserver ≤ 220 KiB per session incl. kernel", f"{fmt(f['total_kib']['median'])} KiB",
                 f["total_kib"]["median"] <= 220)
    return {"targets": targets, "ks": ks}
