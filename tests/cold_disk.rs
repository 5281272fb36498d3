//! No event loop waits for the disk. The archive is served from a FUSE
//! filesystem of the test's own whose reads of `cold*` files block while a
//! gate file exists, as a disk that has gone away for a while would: a
//! download of such a file is then stuck in the disk, and meanwhile the
//! same session answers STAT (and ftpd ABOR), and other sessions of the
//! same worker log in, list, look files up and download warm ones. (With
//! a worker that read the file itself, all of them would hang.)

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::client::{self, Data};
use common::tools::require;
use common::{Client, Family, Kind, Opts, Server, Tree};

server_tests!(a_download_stuck_in_the_disk_holds_up_no_one);

/// A passthrough filesystem: reads of names starting with "cold" wait
/// while GATE exists (at most two minutes).
const GATEFS: &str = r#"
import errno, os, sys, time
from fusepy import FUSE, FuseOSError, Operations

class Gate(Operations):
    def __init__(self, root, gate):
        self.root, self.gate = root, gate
    def _p(self, path):
        return os.path.join(self.root, path.lstrip("/"))
    def getattr(self, path, fh=None):
        try:
            st = os.lstat(self._p(path))
        except OSError as e:
            raise FuseOSError(e.errno)
        return {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_size",
                "st_uid", "st_gid", "st_atime", "st_mtime", "st_ctime")}
    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._p(path))
    def open(self, path, flags):
        return os.open(self._p(path), os.O_RDONLY)
    def read(self, path, size, offset, fh):
        if os.path.basename(path).startswith("cold"):
            for _ in range(1200):
                if not os.path.exists(self.gate):
                    break
                time.sleep(0.1)
        return os.pread(fh, size, offset)
    def release(self, path, fh):
        os.close(fh)

root, mount, gate = sys.argv[1:4]
FUSE(Gate(root, gate), mount, foreground=True, nothreads=False,
     allow_other=(os.geteuid() == 0), default_permissions=True)
"#;

/// The FUSE filesystem, mounted; unmounted and stopped (by pid) on drop.
struct GateFs {
    child: Child,
    mount: PathBuf,
}

impl GateFs {
    fn mount(backing: &Path, mount: &Path, gate: &Path, script: &Path) -> GateFs {
        require("/usr/bin/python3", "python3");
        fs::write(script, GATEFS).unwrap();
        let have = Command::new("/usr/bin/python3")
            .args(["-c", "import fusepy"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            have,
            "python3 cannot import fusepy: install the Debian package python3-fusepy"
        );
        fs::create_dir_all(mount).unwrap();
        fs::set_permissions(mount, fs::Permissions::from_mode(0o755)).unwrap();
        let child = Command::new("/usr/bin/python3")
            .arg(script)
            .args([backing, mount, gate])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the FUSE filesystem");
        let fs = GateFs {
            child,
            mount: mount.to_owned(),
        };
        let began = Instant::now();
        while !mount.join("warm.txt").exists() {
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "the FUSE filesystem did not come up"
            );
            thread::sleep(Duration::from_millis(50));
        }
        fs
    }
}

impl Drop for GateFs {
    fn drop(&mut self) {
        let m = self.mount.as_os_str();
        let unmounted = Command::new("umount")
            .arg("-l")
            .arg(m)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("fusermount").arg("-uz").arg(m).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn a_download_stuck_in_the_disk_holds_up_no_one(kind: Kind) {
    let t = Tree::new();
    let backing = t.scratch("backing");
    let file = |name: &str, body: &[u8]| {
        let p = backing.join(name);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    };
    file("cold.bin", &vec![7u8; 8 << 20]);
    file("warm.txt", b"warm bytes\n");
    let gate = t.scratch("gate").join("closed");
    fs::write(&gate, b"").unwrap();
    let mount = t.base.join("fuse");
    let _fs = GateFs::mount(
        &backing,
        &mount,
        &gate,
        &t.scratch("script").join("gatefs.py"),
    );
    // Served from the FUSE mount; one worker, so the bystanders share it.
    let mut opts = Opts::new();
    if kind.is_supervisor() {
        opts = opts.arg("--threads").arg("1");
    }
    let s = Server::start_at(kind, &t, &mount, opts);

    let mut a = Client::login(&s, Family::V4);
    let data = a.setup(client::Mode::Pasv, None);
    a.send(b"RETR cold.bin");
    let r = a.reply();
    assert_eq!(r.code, 150, "RETR cold.bin: {}", r.text());
    let Data::Passive(stream) = data else {
        unreachable!()
    };
    // The same session answers STAT while its download waits for the disk.
    let r = a.cmd("STAT");
    assert_eq!(r.code, 213, "STAT during the stuck download: {}", r.text());
    // Others on the same worker go on.
    for _ in 0..3 {
        let mut b = Client::login(&s, Family::V4);
        b.expect("NOOP", 200);
        assert_eq!(b.cmd("SIZE warm.txt").text(), "213 11");
        assert_eq!(b.get("RETR warm.txt"), b"warm bytes\n");
        let names = b.get("NLST");
        assert!(client::find(&names, b"cold.bin").is_some());
        b.expect("QUIT", 221);
    }
    // ABOR is answered while the read still waits.
    a.send(b"ABOR");
    let r = a.reply();
    assert!(matches!(r.code, 426 | 226), "ABOR: {}", r.text());
    if r.code == 426 {
        assert_eq!(a.reply().code, 226);
    }
    fs::remove_file(&gate).unwrap();
    a.expect("NOOP", 200);
    drop(stream);
}
