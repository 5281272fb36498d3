"""FTPS against vsftpd and pure-ftpd (issue 14): bulk RETR over PROT P,
whole TLS sessions at c=32 (full handshakes, then resumed) and memory per
idle TLS session (ftps_idle)."""

import ftps_idle
from common import TLS_PEERS, cell, fail_text, failures, fmt, marked, med, of, stat, targets_in

TITLE = "FTPS: bulk RETR over PROT P and TLS sessions, against vsftpd and pure-ftpd"
OURS = ["supervisor-epoll-tls", "supervisor-uring-tls", "ftpd-tcpserver-tls", "ftpd-tcpserver-keyed-tls"]


def section(recs, rep):
    targets = targets_in(recs)
    rep.w(f"## {TITLE}\n")
    figs = {}
    for t in targets:
        rs = of(recs, target=t)
        f = {}
        for rd in ("own", "curl"):
            b = [r for r in of(rs, kind="bulk", reader=rd) if not r.get("failures")]
            f[rd] = {"mb_s": stat([r.get("mb_s") for r in b]),
                     "cpu": stat([r.get("server_cpu_s_per_gib") for r in b]),
                     "n_fail": len(of(rs, kind="bulk", reader=rd)) - len(b)}
            rep.keep("ftps", t, f"{rd}_server_cpu_s_per_gib", f[rd]["cpu"])
            rep.keep("ftps", t, f"{rd}_mb_s", f[rd]["mb_s"])
        full = [r for r in of(rs, kind="sessions") if not r.get("resume")]
        s = [r for r in full if r.get("ok")]
        f["rate"] = stat([r["rate"] for r in s])
        f["p50"] = stat([r.get("p50_ms") for r in s])
        f["p99"] = stat([r.get("p99_ms") for r in s])
        f["cpu_ms"] = stat([r["server_cores"] / r["rate"] * 1000 for r in s if r.get("server_cores") and r["rate"]])
        f["gen"] = stat([r.get("gen_cores") for r in s])
        f["resumed"] = (sum(int(r.get("tls_data_resumed", 0)) for r in s),
                        sum(int(r.get("tls_data_not_resumed", 0)) for r in s))
        f["tls"] = next((r["tls"] for r in rs if r.get("tls") and r["tls"] != "-"), "–")
        f["sfail"] = failures(full)
        f["fail"] = failures(full + of(rs, kind="bulk"))
        rep.keep("ftps", t, "c32_rate", f["rate"])
        figs[t] = f

    def best_peer(key, pick):
        vals = [med(v) for p in TLS_PEERS if p in figs for v in [key(figs[p])] if v]
        return pick(vals) if vals else None

    best = {rd: best_peer(lambda f, rd=rd: f[rd]["cpu"], min) for rd in ("own", "curl")}
    best_rate = best_peer(lambda f: f["rate"] if not f["sfail"][0] else None, max)
    rows = []
    for t in targets:
        f = figs[t]
        row = [t, f["tls"].replace("_", " ")]
        for rd in ("own", "curl"):
            c = f[rd]["cpu"]
            row += [cell(f[rd]["mb_s"]), marked(cell(c), f[rd]["n_fail"]),
                    f"{med(c) / best[rd]:.2f}×" if c and best[rd] else "–"]
        st = f["sfail"][0]
        row += [marked(cell(f["rate"]), st),
                f"{med(f['rate']) / best_rate:.2f}×" if f["rate"] and best_rate and not st else "–",
                f"{fmt(med(f['p50']))} / {fmt(med(f['p99']))}", cell(f["cpu_ms"]),
                f"{f['resumed'][0]:,} / {f['resumed'][0] + f['resumed'][1]:,}", fmt(med(f["gen"])),
                fail_text(*f["fail"])]
        rows.append(row)
    rep.table(["target", "negotiated", "own reader: MB/s", "server CPU s/GiB", "×best peer", "curl: MB/s",
               "server CPU s/GiB", "×best peer", "TLS sessions/s c=32", "×best peer", "p50 / p99 ms",
               "server CPU ms/session", "data handshakes resumed", "generator cores", "failures"], rows)
    rep.w("One self-signed ECDSA P-256 certificate (openssl) for every server. Bulk: the big file over PROT P, page "
          "cache warm; our reader (rustls, the ring provider, as the server) decrypts and drops the bytes, curl "
          "(`--ssl-reqd`, OpenSSL) writes them to /dev/null; downloads over TLS are copied and encrypted in user "
          "space by every server here (no kTLS), so MB/s is bounded by the two ends' AES-GCM on two shared cores "
          "and the server's CPU per GiB is the figure to compare. Sessions: connect, 220, AUTH TLS, a full "
          "handshake, PBSZ 0, PROT P, USER, PASS, TYPE I, EPSV, RETR of 4 KiB over a data connection whose "
          "handshake resumes the control connection's session (vsftpd's require_ssl_reuse=YES and aftpd insist "
          "on it; a server that does not resume makes a full handshake there, counted under *data handshakes "
          "resumed*), QUIT, close_notify. The generator checks neither certificate nor signatures (loopback, a "
          "self-signed certificate; verifying would only add client CPU). **×best peer**: against the better of "
          "vsftpd and pure-ftpd (lower CPU, higher rate).\n")
    goals(figs, best, best_rate, rep)
    resumed(recs, targets, rep)
    ftps_idle.section(recs, targets, rep)


def goals(figs, best, best_rate, rep):
    for t in OURS:
        f = figs.get(t)
        if not f:
            continue
        xs = [(rd, med(f[rd]["cpu"]) / best[rd]) for rd in ("own", "curl") if f[rd]["cpu"] and best[rd]]
        if xs:
            rep.goal(f"issue 14: FTPS bulk RETR: {t} server CPU/GiB ≤ 0.8× the best TLS peer's",
                     ", ".join(f"{rd} {x:.2f}×" for rd, x in xs), all(x <= 0.8 for _, x in xs))
        if f["rate"] and best_rate:
            x = med(f["rate"]) / best_rate
            rep.goal(f"issue 14: TLS sessions/s at c=32: {t} ≥ 3× the best TLS peer",
                     f"{x:.2f}× ({fmt(med(f['rate']))} against {fmt(best_rate)})", x >= 3 and not f["sfail"][0])


def resumed(recs, targets, rep):
    """Sessions whose control connection resumes the client thread's
    previous session (--resume)."""
    figs = {}
    for t in targets:
        rs = [r for r in of(recs, target=t, kind="sessions") if r.get("resume")]
        if not rs:
            continue
        ok = [r for r in rs if r.get("ok")]
        figs[t] = {
            "rate": stat([r["rate"] for r in ok]),
            "p50": stat([r.get("p50_ms") for r in ok]),
            "p99": stat([r.get("p99_ms") for r in ok]),
            "cpu_ms": stat([r["server_cores"] / r["rate"] * 1000 for r in ok
                            if r.get("server_cores") and r["rate"]]),
            "ctrl": (sum(int(r.get("tls_ctrl_resumed", 0)) for r in ok),
                     sum(int(r.get("tls_ctrl_resumed", 0)) + int(r.get("tls_ctrl_full", 0)) for r in ok)),
            "data": (sum(int(r.get("tls_data_resumed", 0)) for r in ok),
                     sum(int(r.get("tls_data_resumed", 0)) + int(r.get("tls_data_not_resumed", 0)) for r in ok)),
            "gen": stat([r.get("gen_cores") for r in ok]),
            "fail": failures(rs),
        }
        rep.keep("ftps", t, "c32_resume_rate", figs[t]["rate"])
    if not figs:
        return
    peers = [med(figs[p]["rate"]) for p in TLS_PEERS if p in figs and figs[p]["rate"] and not figs[p]["fail"][0]]
    best = max(peers) if peers else None
    rep.w("### TLS sessions at c=32 with resumption\n")
    rows = []
    for t, f in figs.items():
        st = f["fail"][0]
        rows.append([t, marked(cell(f["rate"]), st),
                     f"{med(f['rate']) / best:.2f}×" if f["rate"] and best and not st else "–",
                     f"{fmt(med(f['p50']))} / {fmt(med(f['p99']))}", cell(f["cpu_ms"]),
                     f"{f['ctrl'][0]:,} / {f['ctrl'][1]:,}", f"{f['data'][0]:,} / {f['data'][1]:,}",
                     fmt(med(f["gen"])), fail_text(*f["fail"])])
    rep.table(["target", "TLS sessions/s c=32, resuming", "×best peer", "p50 / p99 ms", "server CPU ms/session",
               "control handshakes resumed", "data handshakes resumed", "generator cores", "failures"], rows)
    rep.w("The same session, but each of the 32 client threads keeps one rustls client configuration, and so one "
          "resumption store (`Resumption::in_memory_sessions`), for all its sessions: each new control connection "
          "offers the newest ticket (or session id) the thread's previous session left, and its data connection "
          "takes the newest one, which its own control connection just received. The warm-up leaves each thread "
          "a session to resume. *control handshakes resumed*: how many the server accepted; a server that "
          "refuses makes a full handshake, so its figure is the full-handshake one again.\n")
    for t in OURS:
        f = figs.get(t)
        if f and f["rate"] and best:
            x = med(f["rate"]) / best
            rep.goal(f"issue 14: resumed TLS sessions/s at c=32: {t} ≥ 3× the best TLS peer",
                     f"{x:.2f}× ({fmt(med(f['rate']))} against {fmt(best)}; control resumed "
                     f"{f['ctrl'][0]:,} / {f['ctrl'][1]:,})", x >= 3 and not f["fail"][0])
