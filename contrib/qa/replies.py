#!/usr/bin/env python3
"""Differential reply codes of FTPS (RFC 2228, 4217) and anonymous uploads
(RFC 959, 1123, 3659) of aftpd, vsftpd, pure-ftpd and proftpd, as
started by contrib/qa/peers-up. Prints each case's codes per server:
`python3 contrib/qa/replies.py [CASE|opt|req]...` (none: all). Every
wait is bounded by a 5 s socket timeout; TLS 1.2 so that data
connections resume the control connection's session by id."""
import re, socket, ssl, sys, time

OPT = {"aftpd": 2201, "vsftpd": 2202, "pure": 2203, "proftpd": 2204}
REQ = {"aftpd": 2211, "vsftpd": 2212, "pure": 2213, "proftpd": 2214}
RUN = "%x" % (int(time.time()) % 0xFFFFF)
T = 5.0

CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE
CTX.maximum_version = ssl.TLSVersion.TLSv1_2


class C:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=T)
        self.buf = b""
        self.log = []
        self.prot = False
        self.greet = self.reply()

    def line(self):
        for _ in range(1000):
            i = self.buf.find(b"\n")
            if i >= 0:
                l, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return l.decode("utf-8", "replace").rstrip("\r\n")
            try:
                d = self.sock.recv(4096)
            except (socket.timeout, TimeoutError):
                return None
            except (ssl.SSLError, OSError) as e:
                return "EOF(%s)" % type(e).__name__
            if not d:
                return "EOF"
            self.buf += d
        return None

    def reply(self, rec=False):
        first = self.line()
        if first is None:
            r = ("TMO", "")
        elif first.startswith("EOF"):
            r = (first, "")
        else:
            text = first
            if re.match(r"^\d{3}-", first):
                for _ in range(500):
                    l = self.line()
                    if l is None or l.startswith("EOF"):
                        break
                    text += "\n" + l
                    if re.match(r"^%s " % first[:3], l):
                        break
            r = (first[:3], text)
        if rec:
            self.log.append(r[0])
        return r

    def send(self, s):
        try:
            self.sock.sendall(s.encode() + b"\r\n")
        except OSError as e:
            self.log.append("SENDERR")

    def cmd(self, s, rec=True):
        self.send(s)
        return self.reply(rec)

    def auth(self, arg="TLS"):
        code, _ = self.cmd("AUTH " + arg)
        if code == "234":
            self.starttls()
        return code

    def starttls(self):
        try:
            self.sock = CTX.wrap_socket(self.sock)
            self.tls = True
        except (ssl.SSLError, OSError) as e:
            self.log.append("HS-FAIL")

    def login(self, rec=True):
        code, _ = self.cmd("USER anonymous", False)
        if code == "331":
            code, _ = self.cmd("PASS a@b.c", False)
        if rec:
            self.log.append("login:" + code)
        return code

    def pasv(self):
        code, text = self.cmd("PASV", False)
        m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)
        if code != "227" or not m:
            self.log.append("PASV:" + code)
            return None
        p = int(m.group(5)) * 256 + int(m.group(6))
        return socket.create_connection(("127.0.0.1", p), timeout=T)

    def wrapdata(self, d):
        return CTX.wrap_socket(d, session=self.sock.session)

    def xfer(self, cmd, data=None, tls=None, partial=None, close_notify=True):
        """STOR-like (data is bytes) or RETR-like (data None); records codes."""
        if tls is None:
            tls = self.prot
        d = self.pasv()
        if d is None:
            return None
        code, text = self.cmd(cmd)
        if code not in ("150", "125"):
            d.close()
            return text
        got = b""
        try:
            if tls:
                d = self.wrapdata(d)
            if data is not None:
                d.sendall(data)
                if partial:
                    partial(self)
            else:
                for _ in range(10000):
                    b = d.recv(65536)
                    if not b:
                        break
                    got += b
            if tls and close_notify:
                d = d.unwrap()
        except (ssl.SSLError, OSError) as e:
            self.log.append("DATAERR")
        d.close()
        self.reply(True)
        self.got = got
        return text

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def name(s):
    return RUN + s


# ---- cases: each returns the client's log --------------------------------
CASES = []


def case(group):
    def deco(f):
        CASES.append((group, f))
        return f
    return deco


@case("opt")
def auth_twice(c):
    c.auth()
    c.cmd("AUTH TLS")
    c.cmd("NOOP")


@case("opt")
def auth_junk(c):
    c.cmd("AUTH FOO")
    c.cmd("AUTH")
    c.cmd("NOOP")


@case("opt")
def auth_lowercase_arg(c):
    c.auth("tls")


@case("opt")
def auth_ssl(c):
    c.auth("SSL")


@case("opt")
def auth_after_login(c):
    c.login()
    c.auth()
    c.cmd("PWD")


@case("opt")
def pbsz_prot_before_auth_loggedin(c):
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.cmd("PROT C")


@case("opt")
def prot_before_pbsz(c):
    c.auth()
    c.login()
    c.cmd("PROT P")


@case("opt")
def pbsz_prot_before_login(c):
    c.auth()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.login()


@case("opt")
def pbsz_values(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 1024")
    c.cmd("PBSZ junk")
    c.cmd("PBSZ -1")
    c.cmd("PBSZ")
    c.cmd("PBSZ 4294967296")


@case("opt")
def prot_values(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    for a in ("C", "S", "E", "X", "", "p", "PP"):
        c.cmd(("PROT " + a).strip())


@case("opt")
def pbsz_text(c):
    c.auth()
    c.login()
    _, t = c.cmd("PBSZ 1024")
    c.log.append(t.replace(" ", "_")[:30])


@case("opt")
def ccc(c):
    c.cmd("CCC")
    c.auth()
    c.login()
    c.cmd("CCC")
    c.cmd("NOOP")


@case("opt")
def pipelined_before_handshake(c):
    c.sock.sendall(b"AUTH TLS\r\nUSER anonymous\r\n")
    code, _ = c.reply(True)
    extra = c.buf
    if code == "234":
        c.buf = b""
        c.starttls()
        c.log.append("leftover:%d" % len(extra))
        c.cmd("NOOP")
        c.cmd("PWD")


@case("opt")
def prot_p_clear_retr(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    d = c.pasv()
    c.cmd("RETR hello.txt")
    if d:
        time.sleep(0.5)
        d.close()
    c.reply(True)
    c.cmd("NOOP")


@case("opt")
def prot_p_clear_stor(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.cmd("CWD incoming")
    c.xfer("STOR " + name("pc"), b"plain data\r\n" * 10, tls=False)
    c.cmd("NOOP")


@case("opt")
def prot_p_stor_ok(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.prot = True
    c.cmd("CWD incoming")
    c.xfer("STOR " + name("tls"), b"x" * 1000)
    c.cmd("SIZE " + name("tls"))


@case("opt")
def prot_p_stor_truncated(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.prot = True
    c.cmd("CWD incoming")
    c.xfer("STOR " + name("trunc"), b"x" * 1000, close_notify=False)
    c.cmd("STOR " + name("trunc"))  # exists? (no data conn: 425 expected)


@case("opt")
def prot_c_after_p_retr(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.cmd("PROT C")
    c.xfer("RETR hello.txt", tls=False)


@case("req")
def req_user_before_auth(c):
    c.cmd("USER anonymous")
    c.cmd("PASS a@b.c")
    c.cmd("PWD")


@case("req")
def req_retr_prot_c(c):
    c.auth()
    c.login()
    c.xfer("RETR hello.txt", tls=False)


@case("req")
def req_pbsz_prot_c(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT C")


@case("req")
def req_stor_prot_c(c):
    c.auth()
    c.login()
    c.cmd("CWD incoming")
    c.xfer("STOR " + name("rq"), b"abc", tls=False)


@case("req")
def req_syst_feat_before_auth(c):
    c.cmd("SYST")
    c.cmd("FEAT")
    c.cmd("HELP")


@case("req")
def req_ccc(c):
    c.auth()
    c.login()
    c.cmd("CCC")


# ---- uploads (clear) ----
def up(c):
    c.login()
    c.cmd("CWD incoming")


@case("opt")
def stor_then_queries(c):
    up(c)
    n = name("q.txt")
    c.xfer("STOR " + n, b"hello world\n")
    for q in ("SIZE", "MDTM", "MLST", "STAT"):
        c.cmd(q + " " + n)
    c.xfer("RETR " + n)
    c.xfer("STOR " + n, b"again\n")


@case("opt")
def rest_stor(c):
    up(c)
    c.cmd("REST 10")
    c.xfer("STOR " + name("r10"), b"abc")
    c.cmd("NOOP")


@case("opt")
def rest0_stor(c):
    up(c)
    c.cmd("REST 0")
    c.xfer("STOR " + name("r0"), b"abc")


@case("opt")
def stou_plain(c):
    up(c)
    t = c.xfer("STOU", b"abc")
    c.log.append((t or "").replace(" ", "_")[:40])


@case("opt")
def stou_arg(c):
    up(c)
    t = c.xfer("STOU " + name("su"), b"abc")
    c.log.append((t or "").replace(" ", "_")[:40])


@case("opt")
def appe(c):
    up(c)
    c.xfer("APPE " + name("ap"), b"abc")
    c.xfer("APPE " + name("ap"), b"def")


@case("opt")
def names(c):
    up(c)
    for n in (" sp ace", "ü.txt", "-dash", ".dot", "a" * 300):
        c.xfer("STOR " + name(n) if not n.startswith((".", "-", " ")) else "STOR " + n + RUN, b"x")


@case("opt")
def stor_paths(c):
    up(c)
    for p in ("nosuch/x" + RUN, "sub/s" + RUN, "/rootf" + RUN, "../up" + RUN,
              "/pub/p" + RUN, "/incoming/abs" + RUN, "sub"):
        c.xfer("STOR " + p, b"x")


@case("opt")
def stor_noarg(c):
    up(c)
    c.cmd("STOR")
    c.cmd("APPE")
    c.cmd("STOU", True)


@case("opt")
def stor_outside_cwd_root(c):
    c.login()
    c.xfer("STOR r" + RUN, b"x")
    c.xfer("STOU", b"x")


@case("opt")
def abor_during_stor(c):
    up(c)
    def mid(c):
        c.send("ABOR")
        time.sleep(0.3)
        c.reply(True)
        c.reply(True)
    d = c.pasv()
    c.cmd("STOR " + name("ab"))
    d.sendall(b"x" * 5000)
    time.sleep(0.2)
    mid(c)
    d.close()
    c.reply(True)  # anything left?
    c.cmd("SIZE " + name("ab"))
    c.cmd("NOOP")


@case("opt")
def quit_during_stor(c):
    up(c)
    d = c.pasv()
    c.cmd("STOR " + name("qt"))
    d.sendall(b"x" * 5000)
    time.sleep(0.2)
    c.send("QUIT")
    time.sleep(0.3)
    d.sendall(b"y" * 100)
    d.close()
    for _ in range(3):
        r = c.reply(True)
        if r[0] in ("TMO",) or r[0].startswith("EOF"):
            break
    c2 = C(c.sock.getpeername()[1])
    up(c2)
    c2.cmd("SIZE " + name("qt"))
    c2.xfer("STOR " + name("qt"), b"z")  # 553/550 => it was stored
    c.log.append("|" + ",".join(c2.log))
    c2.close()


@case("opt")
def noop_stat_during_stor(c):
    up(c)
    d = c.pasv()
    c.cmd("STOR " + name("ns"))
    d.sendall(b"x" * 5000)
    time.sleep(0.2)
    c.send("NOOP")
    c.reply(True)
    c.send("STAT")
    c.reply(True)
    d.close()
    c.reply(True)
    c.reply(True)


@case("opt")
def dele_rnfr_mkd(c):
    up(c)
    n = name("dl")
    c.xfer("STOR " + n, b"abc")
    c.cmd("DELE " + n)
    c.cmd("RNFR " + n)
    c.cmd("RNTO " + n + "x")
    c.cmd("MKD " + name("dir"))
    c.cmd("RMD sub")
    c.cmd("SITE CHMOD 644 " + n)


@case("opt")
def allo(c):
    up(c)
    for a in ("ALLO 100", "ALLO", "ALLO 100 R 10", "ALLO junk", "ALLO 99999999999999999999"):
        c.cmd(a)


@case("opt")
def mode_stru(c):
    up(c)
    for a in ("MODE B", "MODE C", "MODE Z", "MODE X", "MODE S", "STRU R", "STRU P", "STRU X", "STRU F"):
        c.cmd(a)
    c.xfer("STOR " + name("ms"), b"abc")


@case("opt")
def mode_b_then_stor(c):
    up(c)
    c.cmd("MODE B")
    c.xfer("STOR " + name("mb"), b"abc")
    c.cmd("STRU R")
    c.xfer("STOR " + name("sr"), b"abc")


@case("opt")
def type_a_upload(c):
    up(c)
    c.cmd("TYPE A")
    n = name("ta")
    c.xfer("STOR " + n, b"a\r\nb\r\nc\n\rd")
    c.cmd("TYPE I")
    _, t = c.cmd("SIZE " + n)
    c.log.append(t.replace(" ", "_")[:20])


@case("opt")
def empty_upload(c):
    up(c)
    n = name("e0")
    c.xfer("STOR " + n, b"")
    c.cmd("SIZE " + n)
    c.xfer("STOR " + n, b"")


@case("opt")
def stor_on_existing_public(c):
    c.login()
    c.xfer("STOR hello.txt", b"x")
    c.xfer("APPE hello.txt", b"x")


@case("opt")
def stor_dir_name(c):
    c.login()
    c.xfer("STOR incoming", b"x")
    up(c)
    c.xfer("STOR .", b"x")


@case("opt")
def type_e_l_variants(c):
    up(c)
    for a in ("TYPE E", "TYPE L 7", "TYPE A T", "TYPE A C", "TYPE L 8", "TYPE I"):
        c.cmd(a)


@case("opt")
def size_mdtm_incoming_dir(c):
    c.login()
    c.cmd("SIZE incoming")
    c.cmd("MDTM incoming")
    c.cmd("MLST incoming")
    c.cmd("CWD incoming")
    c.cmd("SIZE nosuch")


def run(groups):
    rows = []
    for g, f in CASES:
        if groups and f.__name__ not in groups and g not in groups:
            continue
        ports = OPT if g == "opt" else REQ
        row = {}
        for srv, port in ports.items():
            try:
                c = C(port)
                try:
                    f(c)
                except Exception as e:
                    c.log.append("EXC:%s" % type(e).__name__)
                c.close()
                row[srv] = " ".join(c.log)
            except Exception as e:
                row[srv] = "CONNFAIL:%s" % e
        rows.append((g, f.__name__, row))
        print("== %s [%s]" % (f.__name__, g))
        for srv in ports:
            print("   %-8s %s" % (srv, row[srv]))
        sys.stdout.flush()






@case("opt")
def stor_no_pasv(c):
    up(c)
    c.cmd("STOR " + name("np"))
    c.cmd("CWD /")
    c.cmd("STOR np" + RUN)
    c.cmd("APPE np" + RUN)


@case("opt")
def abor_idle(c):
    c.login()
    c.cmd("ABOR")
    c.cmd("PASV")
    c.cmd("ABOR")
    c.cmd("NOOP")


@case("opt")
def not_logged_in(c):
    for a in ("STOR x", "STOU", "APPE x", "PBSZ 0", "PROT P", "ALLO 10", "REST 5", "MODE S", "STRU F", "TYPE I"):
        c.cmd(a)


@case("opt")
def rest_appe_stou(c):
    up(c)
    c.cmd("REST 5")
    c.xfer("APPE " + name("ra"), b"x")
    c.cmd("REST 5")
    c.xfer("STOU", b"x")
    c.cmd("REST junk")
    c.cmd("REST -1")
    c.xfer("STOR " + name("rj"), b"x")


@case("opt")
def stou_existing(c):
    up(c)
    n = name("se")
    c.xfer("STOR " + n, b"x")
    t = c.xfer("STOU " + n, b"y")
    c.log.append((t or "").replace(" ", "_")[:40])


@case("opt")
def refusal_then_pasv_reuse(c):
    c.login()
    d = c.pasv()
    c.cmd("STOR r2" + RUN)
    c.cmd("CWD incoming")
    c.cmd("STOR " + name("after"))  # no new PASV: is the old one still good?
    if d:
        try:
            d.sendall(b"abc")
            d.close()
        except OSError:
            c.log.append("DATAERR")
    c.reply(True)


@case("opt")
def dele_missing_and_listing(c):
    up(c)
    c.cmd("DELE nosuch" + RUN)
    c.cmd("RNFR nosuch" + RUN)
    c.xfer("NLST")
    c.xfer("MLSD")
    c.cmd("STAT")
    c.cmd("STAT .")


@case("opt")
def tls_data_no_reuse(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.cmd("CWD incoming")
    d = c.pasv()
    c.cmd("STOR " + name("nr"))
    try:
        d = CTX.wrap_socket(d)
        d.sendall(b"abc")
        d.unwrap()
        c.log.append("hs-ok")
    except (ssl.SSLError, OSError) as e:
        c.log.append("hs-fail")
    d.close()
    c.reply(True)
    c.cmd("NOOP")


@case("opt")
def auth_then_prot_before_login_list(c):
    c.auth()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.cmd("PASV")
    c.cmd("LIST")
    c.cmd("FEAT")


@case("opt")
def feat_lines(c):
    _, t = c.cmd("FEAT")
    c.log.append("|".join(sorted(l.strip().split(" ")[0] + ("=" + l.strip().split(" ", 1)[1] if " " in l.strip() else "") for l in t.split("\n")[1:-1] if l.strip().split(" ")[0] in ("AUTH", "PBSZ", "PROT", "CCC", "REST", "SIZE", "MDTM", "UTF8", "TVFS"))))


@case("opt")
def stor_abs_and_slash(c):
    c.login()
    c.xfer("STOR incoming/" + name("rel"), b"x")
    c.xfer("STOR incoming/", b"x")
    c.xfer("STOR /incoming/sub/" + name("deep"), b"x")
    c.xfer("STOR incoming/sub/../" + name("dd"), b"x")


@case("opt")
def tls_quit_during_stor(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.cmd("CWD incoming")
    d = c.pasv()
    c.cmd("STOR " + name("tq"))
    d = c.wrapdata(d)
    d.sendall(b"x" * 3000)
    c.send("QUIT")
    time.sleep(0.3)
    d.sendall(b"y" * 10)
    d = d.unwrap()
    d.close()
    c.reply(True)
    c.reply(True)


@case("req")
def req_auth_user_pbsz_prot_p_stor(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.prot = True
    c.cmd("CWD incoming")
    c.xfer("STOR " + name("rok"), b"abc")
    c.cmd("PROT C")
    c.xfer("STOU", b"abc", tls=False)
    c.xfer("APPE x" + RUN, b"abc", tls=False)


@case("req")
def req_plain_pasv_list(c):
    c.cmd("PASV")
    c.cmd("LIST")
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.cmd("QUIT")





@case("opt")
def rest_cleared_after_refusal(c):
    up(c)
    c.cmd("REST 10")
    c.xfer("STOR " + name("rc1"), b"x")
    c.xfer("STOR " + name("rc2"), b"x")
    c.cmd("REST 10")
    c.cmd("CWD /")
    c.xfer("STOR " + name("rc3"), b"x")
    c.cmd("CWD incoming")
    c.xfer("STOR " + name("rc4"), b"x")


@case("opt")
def rest_then_list_then_stor(c):
    up(c)
    c.cmd("REST 10")
    c.xfer("NLST")
    c.xfer("STOR " + name("rl"), b"x")


@case("opt")
def stor_tls_pbsz_after_prot(c):
    c.auth()
    c.login()
    c.cmd("PBSZ 0")
    c.cmd("PROT P")
    c.cmd("PBSZ 0")
    c.cmd("PROT C")
    c.cmd("CWD incoming")
    c.xfer("STOR " + name("pc2"), b"abc", tls=False)


@case("opt")
def utf8_opts_stor(c):
    c.cmd("OPTS UTF8 ON")
    up(c)
    c.xfer("STOR " + name("Ωμέγα.txt"), b"x")
    c.xfer("STOR " + name("tab\tx"), b"x")


if __name__ == "__main__":
    run(set(sys.argv[1:]))
