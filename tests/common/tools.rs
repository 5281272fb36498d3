//! External programs: presence checks and bounded runs.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Whether `cmd` is on PATH (or is an existing path).
pub fn have(cmd: &str) -> bool {
    if cmd.contains('/') {
        return Path::new(cmd).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| {
        let p = d.join(cmd);
        p.is_file()
            && std::fs::metadata(&p)
                .map(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
                .unwrap_or(false)
    })
}

/// Fails the test, naming the Debian package, when `cmd` is missing.
/// Missing tools are failures, never skips.
pub fn require(cmd: &str, package: &str) {
    assert!(
        have(cmd),
        "`{cmd}` is not installed: install the Debian package `{package}` \
         (apt-get install {package}; contrib/test does this when run as root)"
    );
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// Panics with both outputs unless the program exited 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what} failed: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status,
            self.stdout_text(),
            self.stderr_text()
        );
    }
}

/// Runs `cmd` with stdin from /dev/null, collecting its output, and kills
/// it (by its pid) if it has not exited within `limit`.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            // Grandchildren may hold the pipes; do not wait for them.
            panic!("{desc} did not finish within {limit:?}; killed");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = t1.join().unwrap();
    let stderr = t2.join().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}
