"""LIST, NLST, MLSD of a directory of 100,000 entries."""

from common import PEERS, cell, fmt, med, of, stat, targets_in

TITLE = "Listings of a directory of 100,000 entries"
CMDS = ("LIST", "NLST", "MLSD")


def section(recs, rep):
    targets = targets_in(recs)
    rep.w(f"## {TITLE}\n")
    figs, status, problems = {}, {}, []
    for t in targets:
        for cmd in CMDS:
            ls = of(recs, target=t, cmd=cmd)
            ok = [r for r in ls if r.get("status") == "ok"]
            figs[(t, cmd)] = {k: stat([r.get(k) for r in ok]) for k in ("secs", "peak_rss_kib", "growth_kib")}
            if ls and not ok:
                status[(t, cmd)] = ls[0].get("status", "error")
            short = [r["lines"] for r in ok if r.get("lines", 100000) < 100000]
            if short:
                problems.append(f"{t} {cmd}: listed only {min(short):,} of 100,000 entries")
            rep.keep("listings", t, f"{cmd}_secs", figs[(t, cmd)]["secs"])

    def best(cmd):
        v = [med(figs[(p, cmd)]["secs"]) for p in PEERS if (p, cmd) in figs and figs[(p, cmd)]["secs"]]
        return min(v) if v else None

    rows = []
    for t in targets:
        row = [t]
        for cmd in CMDS:
            f = figs[(t, cmd)]
            b = best(cmd)
            row.append(status.get((t, cmd)) or cell(f["secs"]))
            row.append(f"{med(f['secs']) / b:.2f}×" if f["secs"] and b else "–")
            if cmd == "LIST":
                pk = f["peak_rss_kib"]
                row.append(f"{fmt(med(pk) / 1024) if pk else '–'} / {cell(f['growth_kib'])}")
            else:
                row.append(cell(f["growth_kib"]))
        rows.append(row)
    rep.table(["target", "LIST s", "×peer", "LIST peak RSS MiB / growth KiB", "NLST s", "×peer", "NLST growth KiB",
               "MLSD s", "×peer", "MLSD growth KiB"], rows)
    rep.w("Wall time from sending the command to the end of data and the 226 reply, one fresh session each. "
          "Peak RSS: sum of VmHWM over the server's processes, reset (clear_refs 5) just before the command; "
          "growth: that peak minus their RSS just before. 'refused': the server does not implement the command.\n")
    for p in problems:
        rep.w(f"- {p}")
    if problems:
        rep.w()
    for t in ("supervisor-epoll", "supervisor-uring", "ftpd-tcpserver"):
        secs = [med(figs[(t, c)]["secs"]) for c in ("LIST", "MLSD") if (t, c) in figs and figs[(t, c)]["secs"]]
        if secs:
            rep.goal(f"LIST/MLSD of 100,000 entries < 0.15 s: {t}", " / ".join(fmt(s) for s in secs),
                     all(s < 0.15 for s in secs))
