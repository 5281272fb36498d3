//! Passive ports never run out: more sessions than the ephemeral range
//! holds ports, each closing normally (so the server's end of every data
//! connection waits out TIME_WAIT on its passive port), all succeed. Run
//! in a network namespace of the test's own, whose ephemeral range is 50
//! ports (the range is per namespace), for each program.

#[allow(unused_macros)]
mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::server::{ftpd_path, supervisor_path};
use common::tools::{require, run};
use common::{Tree, is_root};

/// The namespace's ephemeral ports, and how many sessions go through.
const PORTS: (u16, u16) = (50_000, 50_049);
const SESSIONS: usize = 150;

/// One session after another: login, EPSV, RETR of a small file, QUIT;
/// every connection closed the normal way (FIN). The client's own ports
/// come from below the namespace's ephemeral range (a real client is
/// another host: its ports are not the server's).
const CLIENT: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def connect(src, dst):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, src))
    s.settimeout(10)
    s.connect(dst)
    return s

def reply(f):
    line = f.readline()
    code = line[:3]
    while line[3:4] == b"-":
        line = f.readline()
        while line[:3] != code:
            line = f.readline()
    return int(code), line

def expect(f, s, cmd, want):
    if cmd:
        s.sendall(cmd + b"\r\n")
    code, line = reply(f)
    if code != want:
        raise Exception("%r: %r" % (cmd, line))
    return line

failed = []
for i in range(n):
    try:
        c = connect(20000 + 2 * i, (host, port))
        f = c.makefile("rb")
        expect(f, c, None, 220)
        expect(f, c, b"USER anonymous", 331)
        expect(f, c, b"PASS x@y", 230)
        expect(f, c, b"TYPE I", 200)
        line = expect(f, c, b"EPSV", 229)
        p = int(line.split(b"|||")[1].split(b"|")[0])
        d = connect(20001 + 2 * i, (host, p))
        expect(f, c, b"RETR small", 150)
        got = b""
        while True:
            b = d.recv(65536)
            if not b:
                break
            got += b
        d.close()
        expect(f, c, None, 226)
        if got != b"x" * 4096:
            raise Exception("wrong bytes")
        expect(f, c, b"QUIT", 221)
        c.close()
    except Exception as e:
        failed.append("%d: %r" % (i, e))
print("%d of %d sessions failed" % (len(failed), n))
for line in failed[:10]:
    print(line)
sys.exit(1 if failed else 0)
"#;

fn run_in_namespace(server: &str, tree: &Tree) {
    require("unshare", "util-linux");
    require("ip", "iproute2");
    require("python3", "python3");
    let client = tree.scratch("client").join("client.py");
    fs::write(&client, CLIENT).unwrap();
    let script = format!(
        r#"
set -u
ip link set lo up || exit 2
echo "{lo} {hi}" > /proc/sys/net/ipv4/ip_local_port_range || exit 2
{server} &
pid=$!
i=0
while ! python3 -c 'import socket; socket.create_connection(("127.0.0.1", 2121), 1)' 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 50 ] && {{ kill $pid; echo "server did not start"; exit 2; }}
    sleep 0.1
done
python3 {client} 127.0.0.1 2121 {n}
rc=$?
kill $pid
wait $pid 2>/dev/null
exit $rc
"#,
        lo = PORTS.0,
        hi = PORTS.1,
        client = client.display(),
        n = SESSIONS,
    );
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args(["--net", "sh", "-c", &script]);
    let out = run(cmd, Duration::from_secs(120));
    out.assert_success("sessions through a namespace of 50 ephemeral ports");
}

fn small_tree() -> Tree {
    let t = Tree::new();
    let p = t.root.join("small");
    fs::write(&p, vec![b'x'; 4096]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    t
}

#[test]
fn ftpd_under_tcpserver() {
    require("tcpserver", "ucspi-tcp-ipv6");
    let t = small_tree();
    let ids = if is_root() {
        "UID=65534 GID=65534 "
    } else {
        ""
    };
    let server = format!(
        "env {ids}tcpserver -RHl0 127.0.0.1 2121 {} {} 2>/dev/null",
        ftpd_path(),
        t.root.display()
    );
    run_in_namespace(&server, &t);
}

fn supervisor(engine: &str) {
    let t = small_tree();
    let user = if is_root() { "--user nobody" } else { "" };
    let server = format!(
        "{} --engine {engine} {user} --listen 127.0.0.1:2121 {} 2>/dev/null",
        supervisor_path().expect("aftpd-supervisor built"),
        t.root.display()
    );
    run_in_namespace(&server, &t);
}

#[test]
fn supervisor_epoll() {
    supervisor("epoll");
}

#[test]
fn supervisor_uring() {
    supervisor("uring");
}
