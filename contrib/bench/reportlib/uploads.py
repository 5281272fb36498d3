"""Uploads (STOR) into a drop box: MB/s and server CPU per GiB against vsftpd."""

from common import cell, fail_text, failures, marked, med, of, stat, targets_in

TITLE = "Uploads: MB/s and server CPU per GiB, fsync counted"
OURS = ["supervisor-epoll", "supervisor-uring", "ftpd-tcpserver"]
PEER = "vsftpd"


def section(recs, rep):
    cases = []
    for r in recs:
        c = r.get("case")
        if c and c not in cases:
            cases.append(c)
    targets = targets_in(recs)
    rep.w(f"## {TITLE}\n")
    rep.w("Each upload is a session of its own (STOR of pseudo-random bytes held in memory) into the drop box, "
          "on the disk the data set is on. The time runs to the last 226 and, for vsftpd, which does not fsync, "
          "to the generator's fsync of each file and its directory: every target is timed until the data is "
          "durable. aftpd's fsync is in its own CPU figure; vsftpd's writeback is not in its. "
          "**×vsftpd**: the ratio to vsftpd's median in this run. Goal (issue 15): at least vsftpd's MB/s with "
          "no more server CPU per GiB.\n")
    for case in cases:
        rs_case = of(recs, case=case)
        base = [r for r in of(rs_case, target=PEER) if not r.get("failures")]
        peer_mb = med(stat([r.get("mb_s") for r in base]))
        peer_cpu = med(stat([r.get("server_cpu_s_per_gib") for r in base]))
        rep.w(f"### {case}\n")
        head = ["target", "MB/s", "×vsftpd", "server CPU s/GiB", "×vsftpd", "machine CPU s/GiB", "failures"]
        rows = []
        for t in targets:
            rs_all = of(rs_case, target=t)
            if not rs_all:
                continue
            total, by = failures(rs_all)
            rs = [r for r in rs_all if not r.get("failures")]
            mb = stat([r.get("mb_s") for r in rs])
            cpu = stat([r.get("server_cpu_s_per_gib") for r in rs])
            rep.keep("uploads", t, f"{case}_mb_s", mb)
            rep.keep("uploads", t, f"{case}_server_cpu_s_per_gib", cpu)
            x_mb = med(mb) / peer_mb if mb and peer_mb else None
            x_cpu = med(cpu) / peer_cpu if cpu and peer_cpu else None
            rows.append([t, marked(cell(mb), total), f"{x_mb:.2f}×" if x_mb else "–", cell(cpu),
                         f"{x_cpu:.2f}×" if x_cpu else "–",
                         cell(stat([r.get("cpu_s_per_gib") for r in rs])), fail_text(total, by)])
            if t in OURS and x_mb and x_cpu:
                rep.goal(f"uploads {case}: {t} MB/s ≥ vsftpd's, server CPU/GiB ≤ vsftpd's",
                         f"MB/s {x_mb:.2f}×, CPU {x_cpu:.2f}×", x_mb >= 1.0 and x_cpu <= 1.0)
        rep.table(head, rows)
