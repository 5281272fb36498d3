"""A slow, cold disk: the probe's latency under cold downloads and
metadata loops, and cold throughput."""

from common import PROCESS_PEERS, fail_text, failures, fmt, marked, of, targets_in, probes, tick

TITLE = "A slow, cold disk"
PHASES = [("cold8", "8 cold downloaders"), ("cold32", "32 cold downloaders"), ("meta8", "8 LIST/SIZE/MDTM loopers")]


def section(recs, rep):
    targets = targets_in(recs)
    delay = max([r.get("delay_ms", 0) for r in recs] or [0])
    rep.w(f"## {TITLE}: {delay:g} ms a read and a lookup\n")
    rep.w("The servers serve a tree through slowfs (slowfs.c, a FUSE passthrough): under /cold each read of up to "
          f"128 KiB and each lookup is answered after {delay:g} ms, and nothing there stays in the kernel's caches "
          "(every open of a cold file starts cold; names and attributes expire at once). The probe's file /small is "
          "hot. A probe logs in once and times, every 20 ms, a NOOP and a RETR of /small (4 KiB): alone (idle), "
          "then under each load. ×idle: the p99 as a ratio to the same probe's idle p99 on the same server. "
          "Goals: p99 within 2× idle and under 5 ms; cold MB/s ≥ the best process-per-session peer "
          f"({', '.join(p for p in PROCESS_PEERS if p in targets)}).\n")
    idle = {}
    rows = []
    for t in targets:
        i = of(recs, target=t, phase="idle")
        if i:
            idle[t] = i[0]
            ft, fb = failures(i, "probe_")
            rows.append([t, f"{fmt(i[0].get('noop_p50_ms'))} / {fmt(i[0].get('noop_p99_ms'))}",
                         f"{fmt(i[0].get('retr_p50_ms'))} / {fmt(i[0].get('retr_p99_ms'))}",
                         f"{i[0].get('retr_n', 0):,}", fail_text(ft, fb)])
    rep.w("### The probe alone (idle)\n")
    rep.table(["target", "NOOP p50 / p99 ms", "RETR 4 KiB p50 / p99 ms", "probes", "failures"], rows)
    for phase, what in PHASES:
        pr = {t: of(recs, target=t, phase=phase) for t in targets}
        pr = {t: r[0] for t, r in pr.items() if r}
        if not pr:
            continue
        best = [pr[p].get("load_mb_s") for p in PROCESS_PEERS if p in pr and not failures([pr[p]], "load_")[0]]
        best = max(best) if best and phase.startswith("cold") else None
        rows = []
        for t, r in pr.items():
            i = idle.get(t, {})
            ft, fb = failures([r], "probe_")
            lt, lb = failures([r], "load_")
            xs = {}
            for k in ("noop", "retr"):
                a, b = r.get(f"{k}_p99_ms"), i.get(f"{k}_p99_ms")
                xs[k] = a / b if a and b else None
            tput = r.get("load_mb_s") if phase.startswith("cold") else r.get("load_ops_s")
            xb = f"{tput / best:.2f}×" if best and tput and not lt else "–"
            # The goals, for every row: the supervisor's are in the goal
            # table, the others' show who meets them.
            p99 = max(r.get("noop_p99_ms") or 1e9, r.get("retr_p99_ms") or 1e9)
            worst = max((x for x in xs.values() if x), default=None)
            lat_ok = bool(worst) and worst <= 2 and p99 < 5 and not ft
            tput_ok = bool(best) and bool(tput) and tput >= best and not lt
            rows.append([t, f"{fmt(r.get('noop_p50_ms'))} / {fmt(r.get('noop_p99_ms'))}",
                         marked(f"{xs['noop']:.2f}×" if xs["noop"] else "–", ft),
                         f"{fmt(r.get('retr_p50_ms'))} / {fmt(r.get('retr_p99_ms'))}",
                         marked(f"{xs['retr']:.2f}×" if xs["retr"] else "–", ft),
                         f"{fmt(r.get('noop_max_ms'))} / {fmt(r.get('retr_max_ms'))}",
                         probes(r, "retr_n"),
                         fail_text(ft, fb), marked(fmt(tput), lt), xb, fail_text(lt, lb),
                         tick(lat_ok) + (" / " + tick(tput_ok) if best else "")])
            rep.keep("slowdisk", t, f"{phase}_noop_p99_ms", _one(r.get("noop_p99_ms")))
            rep.keep("slowdisk", t, f"{phase}_retr_p99_ms", _one(r.get("retr_p99_ms")))
            rep.keep("slowdisk", t, f"{phase}_load", _one(tput))
            if t.startswith("supervisor"):
                rep.goal(f"slow disk, {what}: {t} probe p99 ≤ 2× idle and < 5 ms",
                         f"NOOP {fmt(r.get('noop_p99_ms'))} ms ({fmt(xs['noop'])}×), "
                         f"RETR {fmt(r.get('retr_p99_ms'))} ms ({fmt(xs['retr'])}×)", lat_ok)
                if best:
                    rep.goal(f"slow disk, {what}: {t} cold MB/s ≥ the best process-per-session peer",
                             f"{fmt(tput)} MB/s against {fmt(best)}", tput_ok)
        unit = "cold MB/s" if phase.startswith("cold") else "load ops/s"
        rep.w(f"### Under {what}\n")
        rep.table(["target", "NOOP p50 / p99 ms", "×idle", "RETR p50 / p99 ms", "×idle", "max NOOP / RETR ms",
                   "probes", "probe failures", unit, "×best peer" if best else "–", "load failures",
                   "goals: p99" + (" / MB/s" if best else "")], rows)
    rep.w("Probes: NOOP+RETR pairs timed in the window. The load stops when the window ends; a probe still "
          "waiting then gets its answer soon after, so its sample is a lower bound ('in flight at the end').\n")


def _one(v):
    return {"median": v, "min": v, "max": v, "n": 1} if isinstance(v, (int, float)) else None
