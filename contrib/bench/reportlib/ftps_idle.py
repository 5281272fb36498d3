"""Memory per idle TLS-protected logged-in session (issue 14): AUTH TLS,
PBSZ 0, PROT P, USER, PASS, then idle, at K=1,000 and 10,000, measured as
the idle scenario measures clear-text sessions; ratios to the best TLS
peer."""

import idle
from common import TLS_PEERS, cell, fmt, of

OURS = ["supervisor-epoll-tls", "supervisor-uring-tls", "ftpd-tcpserver-tls", "ftpd-tcpserver-keyed-tls"]


def section(recs, targets, rep):
    rs = of(recs, kind="idle")
    ks = sorted({r["k"] for r in rs if "k" in r})
    if not ks:
        return
    figs = {(t, k): idle.figures(of(rs, target=t, k=k)) for t in targets for k in ks}
    for (t, k), f in figs.items():
        for name in ("user_kib", "kernel_kib", "total_kib"):
            rep.keep("ftps", t, f"idle{k}_{name}", f[name])

    def best(k, key):
        vs = [figs[(p, k)][key]["median"] for p in TLS_PEERS if (p, k) in figs and figs[(p, k)][key]]
        return min(vs) if vs else None

    def x(t, k, key):
        if (t, k) not in figs:  # a target left out of --targets
            return None
        f, b = figs[(t, k)][key], best(k, key)
        return f["median"] / b if f and b else None

    rep.w("### Memory per idle TLS session (KiB)\n")
    head = ["target"]
    for k in ks:
        head += [f"K={k:,} user", "×best peer", "kernel", "×best peer", "total", "×best peer", "sessions"]
    rows = []
    for t in targets:
        if not any(figs[(t, k)]["user_kib"] for k in ks):
            continue
        row = [t]
        for k in ks:
            f = figs[(t, k)]
            ok = [r for r in of(rs, target=t, k=k)]
            n = ", ".join(f"{int(r.get('ok', 0)):,}" for r in ok) or "–"
            for key in ("user_kib", "kernel_kib", "total_kib"):
                r = x(t, k, key)
                row += [cell(f[key]), f"{r:.2f}×" if r is not None else "–"]
            row.append(n)
        rows.append(row)
    rep.table(head, rows)
    rep.w("Each session: connect, 220, AUTH TLS, a full handshake (TLS 1.3), PBSZ 0, PROT P, USER, PASS, then "
          "nothing for 2 s; *user* and *kernel* as in the idle scenario (Pss over the server's processes less the "
          "same at rest; the server's memory cgroup's kernel memory plus one tcp_sock), per session. **×best "
          "peer**: against the lower of vsftpd-tls and pure-ftpd-tls at that K; *sessions*: how many logged in.\n")
    for t in OURS:
        for k in ks:
            r = x(t, k, "total_kib")
            if r is None:
                continue
            parts = [f"{name} {x(t, k, key):.3f}×" for name, key in (("user", "user_kib"), ("kernel", "kernel_kib"))
                     if x(t, k, key) is not None]
            rep.goal(f"issue 14: idle TLS session at K={k:,}: {t} ≤ 0.1× the best TLS peer's memory",
                     f"{r:.3f}× ({fmt(figs[(t, k)]['total_kib']['median'])} KiB; {', '.join(parts)})", r <= 0.1)
