"""Short session runs at c=1 and c=32 (and the RST variant, if run)."""

from common import (PEERS, cell, fail_text, failures, fmt, marked, med, of, stat, targets_in)

TITLE = "Sessions (connect, USER, PASS, TYPE I, EPSV, RETR 4 KiB, QUIT), short runs"


def figures(rs):
    ok = [r for r in rs if r.get("ok")]
    return {
        "rate": stat([r["rate"] for r in ok]),
        "p50": stat([r.get("p50_ms") for r in ok]),
        "p99": stat([r.get("p99_ms") for r in ok]),
        "cpu_ms": stat([r["server_cores"] / r["rate"] * 1000 for r in ok if r.get("server_cores") and r["rate"]]),
        "gen": stat([r.get("gen_cores") for r in ok]),
        "other": stat([max(0.0, r["machine_busy_cores"] - r["gen_cores"] - r["server_cores"])
                       for r in ok if "server_cores" in r]),
        "fail": failures(rs),
    }


def section(recs, rep):
    targets = targets_in(recs)
    closes = [c for c in ("fin", "rst") if of(recs, close=c)]
    for close in closes:
        rc = of(recs, close=close)
        how = "closing normally (FIN)" if close == "fin" else "closing with a RST (SO_LINGER 0): no TIME_WAIT, not what clients do"
        rep.w(f"## {TITLE}, {how}\n")
        figs = {(t, c): figures(of(rc, target=t, c=c)) for t in targets for c in (1, 32)}

        def best_peer(c):
            vals = [med(figs[(p, c)]["rate"]) for p in PEERS
                    if (p, c) in figs and figs[(p, c)]["rate"] and not figs[(p, c)]["fail"][0]]
            return max(vals) if vals else None

        rows = []
        for t in targets:
            row = [t]
            for c in (1, 32):
                f = figs[(t, c)]
                total, by = f["fail"]
                bp = best_peer(c)
                x = f"{med(f['rate']) / bp:.2f}×" if f["rate"] and bp and not total else "–"
                row += [marked(cell(f["rate"]), total), x,
                        f"{fmt(med(f['p50']))} / {fmt(med(f['p99']))}", fail_text(total, by)]
                rep.keep(f"sessions-{close}", t, f"c{c}_rate", f["rate"])
                rep.keep(f"sessions-{close}", t, f"c{c}_p99_ms", f["p99"])
            f = figs[(t, 32)]
            row += [fmt(med(f["cpu_ms"])), fmt(med(f["gen"])), fmt(med(f["other"]))]
            rows.append(row)
        rep.table(["target", "c=1 sessions/s", "×peer", "p50 / p99 ms", "failures",
                   "c=32 sessions/s", "×peer", "p50 / p99 ms", "failures",
                   "server CPU ms/session c=32", "generator cores c=32", "other load, cores"], rows)
        rep.w("A few seconds per run, inside TIME_WAIT's 60 s (the sustained scenario goes past it). "
              "A struck-through rate had failures and is not a result; ×peer is against the best peer "
              "without failures. Server CPU per session: user + system time of the server's processes (with "
              "reaped children) per session at c=32. Generator cores: its CPU time per second of wall time "
              "(over loopback its system time includes the kernel's TCP work for both ends). Other load: the "
              "machine's busy cores less the server's and the generator's.\n")
        if close == "fin":
            for c in (1, 32):
                a, b = figs.get(("ftpd-tcpserver", c)), figs.get(("floor-tcpserver", c))
                if a and b and a["rate"] and b["rate"]:
                    x = med(a["rate"]) / med(b["rate"])
                    ok = x >= 0.9 and not a["fail"][0] and not b["fail"][0]
                    rep.goal(f"ftpd under tcpserver ≥ 0.9× the exec'd C responder's sessions/s at c={c}",
                             f"{x:.2f}× ({fmt(med(a['rate']))} against {fmt(med(b['rate']))})"
                             + ("" if not a["fail"][0] else f", {a['fail'][0]} failures"), ok)
