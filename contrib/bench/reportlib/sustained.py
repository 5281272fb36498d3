"""90 s of sessions past TIME_WAIT, at c=32 and c=256."""

from common import fail_text, failures, fmt, marked, of, targets_in

TITLE = "Sustained sessions, past TIME_WAIT"


def window_rate(v, a, b):
    part = v[a:b]
    return sum(part) / len(part) if part else None


def section(recs, rep):
    targets = targets_in(recs)
    # The asked length: a run ends later only while sessions in flight
    # finish (up to the 20 s timeout).
    secs = min([r.get("secs", 0) for r in recs] or [0])
    closes = [c for c in ("fin", "rst") if of(recs, close=c)]
    rep.w(f"## {TITLE}\n")
    rep.w(f"Whole sessions back to back for {secs:.0f} s on C client threads, a fresh server for each run, "
          "clients closing normally (fin) unless the close column says rst. Closing normally, the side that "
          "closes first keeps each connection's ports in TIME_WAIT for 60 s: a server whose passive listeners "
          "cannot reuse such ports runs out of them after a minute. "
          "Rates are per second of the run; *0–60 s* and *60 s–end* split the run at TIME_WAIT's length; "
          "*worst 5 s* is the lowest rate over 5 consecutive seconds. Each run's server listens on an address "
          "of 127.0.0.0/8 of its own, so what earlier runs left in TIME_WAIT does not hold its ports; the "
          "TIME_WAIT sockets on the whole machine at the start and end of the run are shown for context.\n")
    if secs < 60:
        rep.w(f"**This run lasted {secs:.0f} s, less than TIME_WAIT: its figures say nothing about what "
              "happens past 60 s.**\n")
    rows = []
    for close in closes:
        for c in (32, 256):
            for t in targets:
                rs = of(recs, target=t, c=c, close=close)
                if not rs:
                    continue
                r = rs[0]
                # Whole seconds only: the last one is cut short by the end.
                ok = r.get("ok_per_s", [])[:-1]
                total, by = failures(rs)
                worst = min((sum(ok[i:i + 5]) / 5 for i in range(0, len(ok) - 4)), default=None)
                first, late = window_rate(ok, 0, 60), window_rate(ok, 60, len(ok))
                rate = r.get("rate")
                rows.append([t, c, close, marked(fmt(rate), total), fmt(first), fmt(late) if len(ok) > 60 else "–",
                             fmt(worst), fmt(r.get("p50_ms")) + " / " + fmt(r.get("p99_ms")),
                             fail_text(total, by), f"{int(r.get('tw_start', 0)):,} / {int(r.get('tw_end', 0)):,}"])
                rep.keep("sustained", f"{t} c={c} {close}", "rate", {"median": rate, "min": rate, "max": rate, "n": 1})
                if close == "fin" and t.startswith(("supervisor", "ftpd")):
                    # Shorter than TIME_WAIT (quick mode) shows nothing.
                    met = None if secs < 60 else total == 0
                    rep.goal(f"sustained sessions at c={c}, FIN, past 60 s: {t} without failures",
                             f"{fmt(rate)}/s over {secs:.0f} s, failures: {fail_text(total, by)}", met)
    rep.table(["target", "c", "close", "sessions/s", "0–60 s", "60 s–end", "worst 5 s", "p50 / p99 ms",
               "failures", "TIME_WAIT start / end"], rows)
