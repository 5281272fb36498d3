"""A bystander's short sessions while 50 sessions list 100,000 entries."""

from common import fail_text, failures, fmt, marked, of, targets_in, probes, tick

TITLE = "A bystander under heavy listings"


def section(recs, rep):
    targets = targets_in(recs)
    loaded = of(recs, phase="listers")
    n = max([r.get("clients", 0) for r in loaded] or [0])
    secs = max([r.get("secs", 0) for r in loaded] or [0])
    rep.w(f"## {TITLE}\n")
    rep.w(f"{n} sessions each LIST the directory of 100,000 entries in a loop while a bystander does short "
          "sessions (connect, login, TYPE I, EPSV, RETR of 15 bytes, QUIT), one every 20 ms, for "
          f"{secs:.0f} s; idle: the bystander alone on the same server just before. Goal: its p99 within 3× "
          "its idle p99. A p99 over few sessions (n) is a weak figure; failed sessions have no time and are "
          "counted beside. The listers stop when the window ends; a bystander session still waiting then ends "
          "soon after (its time is a lower bound: 'in flight at the end').\n")
    rows = []
    for t in targets:
        i, l = of(recs, target=t, phase="idle"), of(recs, target=t, phase="listers")
        if not i or not l:
            continue
        i, l = i[0], l[0]
        ft, fb = failures([l], "probe_")
        it, ib = failures([i], "probe_")
        lt, lb = failures([l], "load_")
        p99i, p99l = i.get("session_p99_ms"), l.get("session_p99_ms")
        x = p99l / p99i if p99i and p99l else None
        rows.append([t, f"{fmt(i.get('session_p50_ms'))} / {fmt(p99i)} ({i.get('session_n', 0):,})",
                     f"{fmt(l.get('session_p50_ms'))} / {fmt(p99l)} ({probes(l, 'session_n')})",
                     marked(f"{x:.2f}×" if x else "–", ft + it), f"{fmt(l.get('session_max_ms'))}",
                     fail_text(ft + it, {**ib, **fb}), fmt(l.get("load_mb_s")), fail_text(lt, lb),
                     fmt(l.get("server_cores")), tick(bool(x) and x <= 3 and not ft)])
        rep.keep("bystander", t, "p99_ratio", {"median": x, "min": x, "max": x, "n": 1} if x else None)
        if t.startswith(("supervisor", "ftpd")) and x:
            rep.goal(f"bystander p99 under {n} listers within 3× idle: {t}",
                     f"{x:.2f}× ({fmt(p99l)} ms against {fmt(p99i)} ms)", x <= 3 and not ft)
    rep.table(["target", "idle p50 / p99 ms (n)", "under listers p50 / p99 ms (n)", "p99 ×idle", "max ms",
               "bystander failures", "listing MB/s", "listers' failures", "server cores",
               "goal ≤ 3×"], rows)
