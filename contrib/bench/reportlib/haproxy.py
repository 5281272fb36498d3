"""HAProxy with the PROXY protocol in front of two supervisors, against one
supervisor alone (issue 17)."""

from common import cell, fail_text, failures, fmt, marked, med, of, stat, targets_in

TITLE = "Scaling out: HAProxy in front of two supervisors, against one alone"


def figures(rs):
    ok = [r for r in rs if r.get("ok")]
    return {
        "rate": stat([r["rate"] for r in ok]),
        "p50": stat([r.get("p50_ms") for r in ok]),
        "p99": stat([r.get("p99_ms") for r in ok]),
        # The whole set-up's CPU (balancer and nodes: one cgroup) per session.
        "cpu_ms": stat([r["server_cores"] / r["rate"] * 1000 for r in ok if r.get("server_cores") and r["rate"]]),
        # HAProxy's own threads, per 1,000 sessions.
        "lb_s_k": stat([r["extra_cpu_s"] / r["ok"] * 1000 for r in ok if "extra_cpu_s" in r]),
        "lb_cores": stat([r.get("extra_cores") for r in ok]),
        "nodes_ms": stat([(r["server_cores"] - r["extra_cores"]) / r["rate"] * 1000
                          for r in ok if "extra_cores" in r and r.get("server_cores") and r["rate"]]),
        "gen": stat([r.get("gen_cores") for r in ok]),
        "busy": stat([r.get("machine_busy_cores") for r in ok]),
        "fail": failures(rs),
    }


def section(recs, rep):
    targets = targets_in(recs)
    rep.w(f"## {TITLE}\n")
    rep.w("`haproxy-supervisor-E`: Debian's HAProxy with contrib/haproxy/haproxy.cfg (TCP mode, "
          "`send-proxy-v2`, `balance leastconn`, health checks every 2 s, a log line per connection, here to a "
          "file) in front of two `aftpd-supervisor --engine E --proxy-protocol --proxy-from 127.0.0.1/32` nodes, "
          "each with its own port and `--pasv-ports` range; the client's data connections go straight to the "
          "node. `supervisor-E`: one supervisor, no balancer. The session is the sessions scenario's (connect, "
          "USER, PASS, TYPE I, EPSV, RETR 4 KiB, QUIT). **×direct**: sessions/s through the balancer against "
          "the same engine alone. **Set-up CPU**: balancer and nodes together (one cgroup) per session; "
          "**HAProxy CPU**: its own threads (schedstat) per 1,000 sessions, and in cores; **nodes**: the rest. "
          "All on one 2-core machine: the balancer takes its CPU from the same cores as the nodes and the "
          "generator, so the rate through it is what is left, not what a separate balancer host would give.\n")
    figs = {(t, c): figures(of(recs, target=t, c=c)) for t in targets for c in (1, 32)}
    rows = []
    for t in targets:
        direct = t.removeprefix("haproxy-")
        row = [t]
        for c in (1, 32):
            f = figs[(t, c)]
            total, by = f["fail"]
            d = figs.get((direct, c))
            x = "–"
            if t != direct and d and f["rate"] and d["rate"] and not total and not d["fail"][0]:
                x = f"{med(f['rate']) / med(d['rate']):.2f}×"
            row += [marked(cell(f["rate"]), total), x, f"{fmt(med(f['p50']))} / {fmt(med(f['p99']))}"]
            rep.keep("haproxy", t, f"c{c}_rate", f["rate"])
        f = figs[(t, 32)]
        total = f["fail"][0] + figs[(t, 1)]["fail"][0]
        by = dict(f["fail"][1])
        for k, n in figs[(t, 1)]["fail"][1].items():
            by[k] = by.get(k, 0) + n
        row += [cell(f["cpu_ms"]), cell(f["lb_s_k"]), fmt(med(f["lb_cores"])), cell(f["nodes_ms"]),
                f"{fmt(med(f['gen']))} / {fmt(med(f['busy']))}", fail_text(total, by)]
        rep.keep("haproxy", t, "c32_setup_cpu_ms", f["cpu_ms"])
        rep.keep("haproxy", t, "c32_haproxy_cpu_s_per_1000", f["lb_s_k"])
        rows.append(row)
    rep.table(["target", "c=1 sessions/s", "×direct", "p50 / p99 ms", "c=32 sessions/s", "×direct", "p50 / p99 ms",
               "set-up CPU ms/session c=32", "HAProxy CPU s/1,000 sessions", "HAProxy cores", "nodes CPU ms/session",
               "cores: generator / machine", "failures"], rows)
    for e in ("epoll", "uring"):
        f, d = figs.get((f"haproxy-supervisor-{e}", 32)), figs.get((f"supervisor-{e}", 32))
        if not (f and d and f["rate"] and d["rate"]):
            continue
        rep.goal(f"issue 17: sessions/s at c=32 through HAProxy ({e} nodes) beside the direct figure, and the "
                 "balancer's own cost",
                 f"{fmt(med(f['rate']))} against {fmt(med(d['rate']))} direct ({med(f['rate']) / med(d['rate']):.2f}×); "
                 f"HAProxy {fmt(med(f['lb_s_k']))} CPU s per 1,000 sessions",
                 "reported (the issue sets no figure)")
