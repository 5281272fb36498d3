"""What every scenario's report shares: loading records, statistics over
repetitions, number formats, failures, ratios and the goal table."""

import json
import statistics

PEERS = ["vsftpd", "vsftpd-tcpserver", "pure-ftpd"]
FLOOR = "floor-fork"
# Process-per-session servers, the "peers" of the slow-disk goals: ftpd
# under tcpserver is one too, but it is ours.
PROCESS_PEERS = ["vsftpd", "vsftpd-tcpserver", "pure-ftpd"]
# The TLS peers of the ftps scenario.
TLS_PEERS = ["vsftpd-tls", "pure-ftpd-tls"]
FAIL_KEYS = ["refused", "data_connect", "425", "421", "reply", "timeout", "reset", "bytes", "tls", "other"]


def load(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return recs


def stat(values):
    v = [x for x in values if isinstance(x, (int, float))]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, float) and v != v:
        return "–"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(s, scale=1.0):
    """median [min–max] of a stat, or the median alone."""
    if s is None:
        return "–"
    m = fmt(s["median"] * scale)
    if s["n"] > 1 and s["min"] != s["max"]:
        return f"{m} [{fmt(s['min'] * scale)}–{fmt(s['max'] * scale)}]"
    return m


def med(s):
    return s["median"] if s else None


def ratio_text(x, ref):
    if x is None or not ref:
        return "–"
    return f"{x / ref:.2f}×"


def failures(recs, prefix=""):
    """(total, {class: n}) over records."""
    total, by = 0, {}
    for r in recs:
        total += int(r.get(f"{prefix}failures", 0) or 0)
        for k in FAIL_KEYS:
            n = int(r.get(f"{prefix}fail_{k}", 0) or 0)
            if n:
                by[k] = by.get(k, 0) + n
    return total, by


def fail_text(total, by):
    """'0' or '✗ 5,975 (425: 5,900, refused: 75)'."""
    if not total:
        return "0"
    parts = ", ".join(f"{k}: {n:,}" for k, n in sorted(by.items(), key=lambda kv: -kv[1]))
    return f"✗ {total:,} ({parts})"


def probes(r, key):
    """A probe's sample count, and the operation still in flight when the
    window ended (the load stopped then: its time is a lower bound)."""
    n = f"{int(r.get(key, 0) or 0):,}"
    cut = r.get("probe_at_end_ms")
    return f"{n}; one in flight at the end: ≥ {fmt(cut)} ms" if cut else n


def tick(met):
    """A goal beside a figure: met, not met."""
    return "✓" if met else "✗"


def marked(text, total):
    """A figure measured with failures is not a result: strike it."""
    return f"~~{text}~~ ✗" if total else text


class Report:
    """The markdown being written, the goals met or not, and the figures
    for summary.json/csv, by scenario."""

    def __init__(self):
        self.md = []
        self.goals = []  # (goal, measured, verdict)
        self.stats = {}  # scenario -> target -> figure -> stat

    def w(self, line=""):
        self.md.append(line)

    def table(self, head, rows):
        self.w("| " + " | ".join(head) + " |")
        self.w("|" + "---|" * len(head))
        for r in rows:
            self.w("| " + " | ".join(str(c) for c in r) + " |")
        self.w()

    def goal(self, goal, measured, met):
        verdict = {True: "met", False: "not met", None: "not measured"}.get(met, met)
        self.goals.append((goal, measured, verdict))

    def keep(self, scenario, target, figure, s):
        if s:
            self.stats.setdefault(scenario, {}).setdefault(target, {})[figure] = s


def targets_in(recs):
    out = []
    for r in recs:
        t = r.get("target")
        if t and t not in out:
            out.append(t)
    return out


def of(recs, **kv):
    return [r for r in recs if all(r.get(k) == v for k, v in kv.items())]
