"""What metrics, status and bandwidth limits cost, and how well the limits
hold (issue 16)."""

from common import cell, fail_text, failures, fmt, marked, med, of, stat, tick

TITLE = "Running a busy archive: metrics, status and limits on, against off"
GOAL = 1.03


def per_rep(recs, t, phase, fig):
    """{rep: value} of a figure, for runs without failures."""
    out = {}
    for r in of(recs, target=t, phase=phase):
        v = fig(r)
        if v is not None and not r.get("failures"):
            out[r.get("rep")] = v
    return out


def sess_rate(r):
    return r.get("rate") if r.get("ok") else None


def sess_cpu(r):
    if r.get("ok") and r.get("server_cores") and r.get("rate"):
        return r["server_cores"] / r["rate"] * 1000
    return None


def bulk_cpu(r):
    return r.get("server_cpu_s_per_gib")


def paired(a, b, inverse=False):
    """The ratio b/a (a/b with inverse) of each repetition that has both."""
    xs = [(a[k] / b[k] if inverse else b[k] / a[k]) for k in a if k in b and a[k] and b[k]]
    return stat(xs)


def cost_section(recs, rep):
    rows = []
    for e in ("epoll", "uring"):
        p, o = f"supervisor-{e}", f"supervisor-{e}-ops"
        if not of(recs, target=p, phase="sessions") or not of(recs, target=o, phase="sessions"):
            continue
        rate_p, rate_o = per_rep(recs, p, "sessions", sess_rate), per_rep(recs, o, "sessions", sess_rate)
        cpu_p, cpu_o = per_rep(recs, p, "sessions", sess_cpu), per_rep(recs, o, "sessions", sess_cpu)
        gib_p, gib_o = per_rep(recs, p, "bulk", bulk_cpu), per_rep(recs, o, "bulk", bulk_cpu)
        # Costs as ratios ops/plain: rate plain/ops (slower is dearer).
        x_rate = paired(rate_p, rate_o, inverse=True)
        x_cpu = paired(cpu_p, cpu_o)
        x_gib = paired(gib_p, gib_o)
        ft, fb = failures([r for r in of(recs, target=p) + of(recs, target=o)
                           if r.get("phase") in ("sessions", "bulk")])
        polls = of(recs, target=o, kind="poller")
        scr = (sum(int(r.get("scrapes_ok", 0)) for r in polls), sum(int(r.get("scrapes_failed", 0)) for r in polls))
        sts = (sum(int(r.get("status_ok", 0)) for r in polls), sum(int(r.get("status_failed", 0)) for r in polls))
        rows.append([e, marked(cell(stat(list(rate_p.values()))), ft), cell(stat(list(rate_o.values()))),
                     cell(x_rate), cell(stat(list(cpu_p.values()))), cell(stat(list(cpu_o.values()))), cell(x_cpu),
                     cell(stat(list(gib_p.values()))), cell(stat(list(gib_o.values()))), cell(x_gib),
                     f"{scr[0]} / {scr[1]}, {sts[0]} / {sts[1]}", fail_text(ft, fb)])
        for name, x in (("sessions/s", x_rate), ("server CPU per session", x_cpu), ("bulk server CPU per GiB", x_gib)):
            rep.keep("overhead", o, f"cost_{name}", x)
            if x:
                rep.goal(f"issue 16: {e}, metrics + status + limits on: {name} costs ≤ {GOAL}× off",
                         f"{cell(x)}× (median of {x['n']} paired runs [min–max])",
                         med(x) <= GOAL)
    if not rows:
        return
    rep.table(["engine", "sessions/s off", "on", "cost ×", "server CPU ms/session off", "on", "cost ×",
               "bulk server CPU s/GiB off", "on", "cost ×", "scrapes ok / failed, status ok / failed", "failures"],
              rows)
    rep.w(f"*Off*: `supervisor-E` as in the other scenarios, with `--pasv-ports` below the ephemeral range (so "
          "that the servers' TIME_WAIT sockets of a minute of runs never take the ports the generator connects "
          "from). *On* (`supervisor-E-ops`): with `--metrics`, "
          "`--control`, `--max-rate-total 100G --max-rate-per-ip 100G` (limits that never bind, so every send "
          "passes both buckets), while curl scrapes /metrics and aftpd-status asks the control socket once a "
          "second. Sessions: c=32, the sessions scenario's session; bulk: downloads of the big file, our reader. "
          "The two take turns in short slices (a session run of 1–2 s, one or two downloads), each started "
          "fresh, their order swapped every pair. **cost ×**: on against off for each pair (rate off/on, "
          "CPU on/off), median [min–max] of those; the goal is ≤ "
          f"{GOAL}×. Two runs of the same server on a shared machine differ by more than 3% (see the spread): "
          "only the median of many pairs can tell a few per cent.\n")


def limits_section(recs, rep):
    rows = []
    for r in of(recs, phase="rate"):
        ft, fb = failures([r])
        x = r.get("ratio")
        ps = r.get("bytes_per_s") or []
        rows.append([r.get("target"), fmt((r.get("bytes") or 0) / 2**20), fmt((r.get("limit") or 0) / 2**20),
                     marked(fmt(r.get("secs")), ft), fmt(r.get("nominal_secs")), f"{x:.3f}×" if x else "–",
                     f"{fmt(ps[0] / 2**20)} / {fmt(med(stat(ps[1:-1])) / 2**20) if len(ps) > 2 else '–'}"
                     if ps else "–", fmt(r.get("server_cpu_s")), fail_text(ft, fb)])
        if x:
            rep.goal(f"issue 16: a download at --max-rate takes its nominal time ±5%: {r.get('target')}",
                     f"{x:.3f}× ({fmt(r.get('secs'))} s for {fmt(r.get('nominal_secs'))} s)",
                     0.95 <= x <= 1.05 and not ft)
    if rows:
        rep.w("### Rate accuracy: one download under `--max-rate`\n")
        rep.table(["target", "MiB", "limit MiB/s", "elapsed s", "nominal s", "elapsed / nominal",
                   "MiB in the first second / median second", "server CPU s", "failures"], rows)
        rep.w("The end of the big file (REST to its size less the download's length), from RETR to the last "
              "byte, the server started with `--max-rate` (K, M, G are powers of 1024). A bucket holds 50 ms "
              "worth, so the first second carries that much more.\n")
    rows = []
    for r in of(recs, phase="fair"):
        ft, fb = failures([r])
        j, tr = r.get("jain"), r.get("total_ratio")
        rows.append([r.get("target"), int(r.get("n", 0)), fmt(r.get("secs")), fmt((r.get("limit") or 0) / 2**20),
                     marked(fmt((r.get("total") or 0) / 2**20), ft), f"{tr:.3f}×" if tr else "–",
                     f"{j:.4f}" if j else "–",
                     f"{fmt((r.get('min_share') or 0) / 2**20)} / {fmt((r.get('max_share') or 0) / 2**20)}",
                     fmt(r.get("server_cpu_s_per_gib")), f"{tick(j is not None and j >= 0.95 and not ft)}",
                     fail_text(ft, fb)])
        if j is not None:
            rep.goal(f"issue 16: 10 downloads under --max-rate-total: Jain's index ≥ 0.95: {r.get('target')}",
                     f"{j:.4f}", j >= 0.95 and not ft)
        if tr:
            rep.goal(f"issue 16: 10 downloads under --max-rate-total: total within ±5% of the limit: "
                     f"{r.get('target')}", f"{tr:.3f}×", 0.95 <= tr <= 1.05 and not ft)
    if rows:
        rep.w("### Fairness: downloads sharing `--max-rate-total`\n")
        rep.table(["target", "clients", "window s", "limit MiB/s", "total MiB/s", "total / limit", "Jain's index",
                   "client MiB/s min / max", "server CPU s/GiB", "Jain ≥ 0.95", "failures"], rows)
        rep.w("Each client downloads the big file again and again; the window starts 2 s after all of them "
              "run. Jain's index: (Σx)² / (n·Σx²) over the clients' rates, 1 when all are equal, 1/n when one "
              "takes everything.\n")


def section(recs, rep):
    rep.w(f"## {TITLE}\n")
    cost_section(recs, rep)
    limits_section(recs, rep)
