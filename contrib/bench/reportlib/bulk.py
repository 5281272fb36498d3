"""Bulk RETR, page cache warm: server CPU per GiB against the floor."""

from common import FLOOR, cell, fail_text, failures, marked, med, of, stat, targets_in

TITLE = "Bulk RETR: server CPU per GiB against the sendfile floor"
OURS = ["supervisor-epoll", "supervisor-uring", "ftpd-tcpserver"]


def section(recs, rep):
    targets = targets_in(recs)
    readers = [x for x in ("own", "curl") if of(recs, reader=x)]
    floor = {}
    for rd in readers:
        floor[rd] = med(stat([r.get("server_cpu_s_per_gib") for r in of(recs, target=FLOOR, reader=rd)
                              if not r.get("failures")]))
    dl = {rd: max([r.get("downloads", 1) for r in of(recs, reader=rd)] or [1]) for rd in readers}
    rep.w(f"## {TITLE}\n")
    rep.w("Page cache warm. Our reader: " + (f"{dl['own']} downloads of the big file in one session, " if "own" in dl else "")
          + "the bytes discarded in the kernel (recv MSG_TRUNC). curl: "
          + (f"{dl['curl']} runs, one session each, " if "curl" in dl else "")
          + "writing to /dev/null. **×floor**: the server's CPU per GiB as a ratio to floor.c's (fork per "
          "connection, one sendfile(2) call for the whole file) in this run; the goal is ≤ 1.05×.\n")
    head = ["target"]
    for rd in readers:
        head += [f"{rd}: MB/s", "server CPU s/GiB", "×floor", "machine CPU s/GiB"]
    head += ["failures"]
    rows = []
    ratios = {}
    for t in targets:
        row = [t]
        rs_all = of(recs, target=t)
        total, by = failures(rs_all)
        for rd in readers:
            rs = [r for r in of(rs_all, reader=rd) if not r.get("failures")]
            srv = stat([r.get("server_cpu_s_per_gib") for r in rs])
            rep.keep("bulk", t, f"{rd}_server_cpu_s_per_gib", srv)
            rep.keep("bulk", t, f"{rd}_mb_s", stat([r.get("mb_s") for r in rs]))
            x = (med(srv) / floor[rd]) if srv and floor.get(rd) else None
            ratios[(t, rd)] = x
            n_fail = sum(1 for r in of(rs_all, reader=rd) if r.get("failures"))
            row += [cell(stat([r.get("mb_s") for r in rs])), marked(cell(srv), n_fail),
                    f"{x:.2f}×" if x else "–", cell(stat([r.get("cpu_s_per_gib") for r in rs]))]
        row.append(fail_text(total, by))
        rows.append(row)
    rep.table(head, rows)
    rep.w("Server CPU: user + system time of the server's processes (and their reaped children) over the "
          "transfers. Machine CPU: busy time of the whole machine (/proc/stat), client and loopback included. "
          "MB/s varies a lot between runs on a virtual machine; the CPU per GiB is the figure to compare.\n")
    for t in OURS:
        xs = [(rd, ratios.get((t, rd))) for rd in readers]
        xs = [(rd, x) for rd, x in xs if x]
        if not xs:
            continue
        rep.goal(f"bulk RETR: {t} server CPU/GiB ≤ 1.05× the floor's",
                 ", ".join(f"{rd} {x:.2f}×" for rd, x in xs), all(x <= 1.05 for _, x in xs))
