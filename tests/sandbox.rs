//! The sandbox (`aftpd::sandbox`) proved from inside: a child process
//! enters it exactly as the servers do, then tries what it must not be
//! able to do (open a file outside the root, write inside it, make a
//! system call off the allow-list) and what it must still do, and prints
//! one `name=result` line per attempt for the parent to check.
//!
//! No test-only door exists in the servers themselves; tests/security.rs
//! checks from outside that a running ftpd and supervisor are filtered.
//!
//! `harness = false`: the same executable is the parent (it runs every
//! case as a child: a sandbox cannot be left, so each case needs a fresh
//! process) and the child (`AFTPD_SANDBOX_CASE` names its case).

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aftpd::log::Severity;
use aftpd::log::syslog;
use aftpd::sandbox::{self, Filtered, Profile};

const CASE_VAR: &str = "AFTPD_SANDBOX_CASE";
const ROOT_VAR: &str = "AFTPD_SANDBOX_ROOT";
const OUTSIDE_VAR: &str = "AFTPD_SANDBOX_OUTSIDE";
const LOG_VAR: &str = "AFTPD_SANDBOX_LOG";

fn main() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        child(&case);
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: [(&str, fn()); 8] = [
        ("landlock_confines_to_reading_the_root", landlock_test),
        ("landlock_lets_the_log_directory_be_written", writable_test),
        (
            "landlock_lets_each_hosts_drop_box_be_written_and_nothing_else",
            host_boxes_test,
        ),
        ("seccomp_poll_refuses_what_is_off_the_list", || {
            seccomp_test(Profile::Poll)
        }),
        ("seccomp_epoll_refuses_what_is_off_the_list", || {
            seccomp_test(Profile::Epoll)
        }),
        ("seccomp_uring_refuses_what_is_off_the_list", || {
            seccomp_test(Profile::Uring)
        }),
        ("both_together_as_ftpd_enters_them", both_test),
        ("a_worker_thread_is_filtered_too", threads_test),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, f) in tests {
        if !filter.is_empty() && !filter.iter().any(|x| name.contains(x.as_str())) {
            continue;
        }
        match std::panic::catch_unwind(f) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!();
    println!(
        "test result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed > 0 {
        std::process::exit(101);
    }
}

// ---------------------------------------------------------------------
// The parent: a fresh tree, a child per case, assertions on its report.

/// A root with a public file, a file outside it, and a log directory
/// (outside the root too).
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let base = std::env::temp_dir().join(format!("aftpd-sandbox-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("root/pub")).unwrap();
        fs::create_dir_all(base.join("log")).unwrap();
        fs::write(base.join("root/pub/inside.txt"), b"inside\n").unwrap();
        fs::write(base.join("outside.txt"), b"outside\n").unwrap();
        for (p, m) in [("", 0o755), ("root", 0o755), ("root/pub", 0o755)] {
            fs::set_permissions(base.join(p), fs::Permissions::from_mode(m)).unwrap();
        }
        Tree { base }
    }
    fn root(&self) -> PathBuf {
        self.base.join("root")
    }
    fn outside(&self) -> PathBuf {
        self.base.join("outside.txt")
    }
    fn log(&self) -> PathBuf {
        self.base.join("log")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// Runs `case` in a child process; returns its `name=result` lines.
fn run_case(case: &str, tree: &Tree) -> Vec<(String, String)> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .env(CASE_VAR, case)
        .env(ROOT_VAR, tree.root())
        .env(OUTSIDE_VAR, tree.outside())
        .env(LOG_VAR, tree.log())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("case {case} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = reader.join().unwrap();
    assert!(status.success(), "case {case}: {status}\n{text}");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn get<'a>(r: &'a [(String, String)], k: &str) -> &'a str {
    r.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {k} in {r:?}"))
}

fn expect(r: &[(String, String)], k: &str, want: &str) {
    assert_eq!(get(r, k), want, "{k}; all results: {r:?}");
}

fn landlock_test() {
    let tree = Tree::new("landlock");
    let r = run_case("landlock", &tree);
    if get(&r, "enforced").starts_with("landlock=off") {
        // No Landlock in this kernel: best effort means nothing is
        // enforced, and the server runs all the same.
        eprintln!("landlock unavailable here: {}", get(&r, "enforced"));
        expect(&r, "outside", "ok");
        expect(&r, "no_new_privs", "1");
        return;
    }
    expect(&r, "no_new_privs", "1");
    expect(&r, "inside", "ok");
    expect(&r, "inside_dir", "ok");
    // Landlock says EACCES, whatever the file's mode or the user.
    expect(&r, "outside", "EACCES");
    expect(&r, "outside_openat2", "EACCES");
    expect(&r, "etc_passwd", "EACCES");
    expect(&r, "list_outside", "EACCES");
    expect(&r, "write_inside", "EACCES");
    expect(&r, "create_inside", "EACCES");
    expect(&r, "mkdir_inside", "EACCES");
    // Nothing else was filtered: seccomp is not on in this case.
    expect(&r, "seccomp", "0");
    // The scopes (ABI 6): no signal and no abstract UNIX socket outside
    // the sandbox, not even the process's own listener made before it.
    if is_full(&r) {
        expect(&r, "signal_parent", "EPERM");
        expect(&r, "abstract_unix", "EPERM");
    }
}

/// Whether Landlock enforced all of the policy (ABI 6 or later), not
/// just what an older kernel knows.
fn is_full(r: &[(String, String)]) -> bool {
    get(r, "enforced").starts_with("landlock=abi")
}

fn writable_test() {
    let tree = Tree::new("writable");
    let r = run_case("writable", &tree);
    if get(&r, "enforced").starts_with("landlock=off") {
        // No Landlock in this kernel: nothing is confined, and the log
        // is written all the same.
        eprintln!("landlock unavailable here: {}", get(&r, "enforced"));
        expect(&r, "log_create", "ok");
        expect(&r, "log_append", "ok");
        expect(&r, "outside", "ok");
        return;
    }
    // The log directory: files may be created and written (appended to).
    expect(&r, "log_create", "ok");
    expect(&r, "log_append", "ok");
    // And nothing else there: not read, listed, made a directory in.
    expect(&r, "log_read", "EACCES");
    expect(&r, "log_list", "EACCES");
    expect(&r, "log_mkdir", "EACCES");
    if is_full(&r) {
        // Truncation is handled (from ABI 3 on) and not granted.
        expect(&r, "log_truncate", "EACCES");
    }
    // The root is still read-only, the rest still out of reach.
    expect(&r, "inside", "ok");
    expect(&r, "write_inside", "EACCES");
    expect(&r, "create_inside", "EACCES");
    expect(&r, "outside", "EACCES");
    expect(&r, "etc_passwd", "EACCES");
    let text = fs::read_to_string(tree.log().join("xferlog")).unwrap();
    assert_eq!(text, "one\ntwo\n");
}

/// ROOT for `--vhosts --host-incoming` beneath the tree's root: hosts
/// a.example (box `in`), c.example (box `pub/up`), d.example (no box).
/// Every directory is 0777, so that only Landlock stands between the
/// child (as root, the user the servers drop to) and a write.
fn host_boxes_test() {
    let tree = Tree::new("hostboxes");
    let v = tree.root();
    for d in [
        "0",
        "a.example/in",
        "a.example/pub",
        "c.example/pub/up",
        "d.example/in",
    ] {
        fs::create_dir_all(v.join(d)).unwrap();
    }
    fs::write(v.join("a.example/.incoming"), b"in\n").unwrap();
    fs::write(v.join("c.example/.incoming"), b"/pub/up\n").unwrap();
    fs::set_permissions(&tree.base, fs::Permissions::from_mode(0o777)).unwrap();
    for d in [
        "",
        "0",
        "a.example",
        "a.example/in",
        "a.example/pub",
        "c.example",
        "c.example/pub",
        "c.example/pub/up",
        "d.example",
        "d.example/in",
    ] {
        fs::set_permissions(v.join(d), fs::Permissions::from_mode(0o777)).unwrap();
    }
    let r = run_case("boxes", &tree);
    expect(&r, "boxes", "2");
    if get(&r, "enforced").starts_with("landlock=off") {
        eprintln!("landlock unavailable here: {}", get(&r, "enforced"));
        return;
    }
    // Each host's box: files made, written, removed.
    for k in ["a_box", "c_box"] {
        expect(&r, &format!("{k}_create"), "ok");
        expect(&r, &format!("{k}_remove"), "ok");
        expect(&r, &format!("{k}_mkdir"), "EACCES");
    }
    // Nowhere else: the hosts' trees, the host without a box, ROOT, the
    // default tree, outside.
    for k in [
        "a_tree_create",
        "a_pub_create",
        "c_pub_create",
        "d_box_create",
        "root_create",
        "default_create",
        "outside_create",
    ] {
        expect(&r, k, "EACCES");
    }
    expect(&r, "inside", "ok");
    assert!(!v.join("d.example/in/new").exists());
    assert!(!v.join("a.example/new").exists());
}

fn seccomp_test(profile: Profile) {
    let tree = Tree::new(&format!("seccomp-{profile}"));
    let r = run_case(&format!("seccomp-{profile}"), &tree);
    expect(&r, "enforced", &format!("seccomp={profile}"));
    expect(&r, "seccomp", "2");
    expect(&r, "no_new_privs", "1");
    // Off the list: EPERM.
    for k in [
        "socket_packet",
        "socket_netlink",
        // No socket but TCP over IPv4/IPv6.
        "socket_unix",
        "socket_unix_dgram",
        "socket_udp",
        "socket_raw",
        "socket_sctp",
        "socket_mptcp",
        // No send with an address (TCP Fast Open would connect), no
        // sendmsg.
        "sendto_address",
        "sendmsg",
        "execve",
        "fork",
        "ptrace",
        "mount",
        "openat",
        "mmap_exec",
        "ioctl",
        "kill_init",
        "setuid",
        "chroot",
        "unshare",
    ] {
        expect(&r, k, "EPERM");
    }
    // On the list: what the drivers use.
    for k in [
        "socket_inet",
        "socket_inet6",
        "socket_tcp_as_the_engines_make_it",
        "send_connected",
        // Syslog's socket, connected before the filter, datagram or
        // stream: the line arrives.
        "syslog_dgram",
        "syslog_stream",
        "bind_listen",
        "openat2_inside",
        "read_inside",
        "getdents",
        "mmap_rw",
        "poll",
        "sendfile",
        "cachestat",
        "time",
        "thread",
    ] {
        expect(&r, k, "ok");
    }
    expect(&r, "clone3", "ENOSYS");
    // No profile makes rings once filtered; the uring one enters them
    // (EBADF for a descriptor that is no ring, EPERM when refused).
    expect(&r, "io_uring_setup", "EPERM");
    let enter = get(&r, "io_uring_enter");
    if profile == Profile::Uring {
        assert_ne!(enter, "EPERM", "{r:?}");
    } else {
        assert_eq!(enter, "EPERM", "{r:?}");
    }
    let epoll = get(&r, "epoll");
    if profile != Profile::Epoll {
        assert_eq!(epoll, "EPERM", "{r:?}");
    } else {
        assert_eq!(epoll, "ok", "{r:?}");
    }
}

fn both_test() {
    let tree = Tree::new("both");
    let r = run_case("both", &tree);
    expect(&r, "seccomp", "2");
    expect(&r, "inside", "ok");
    expect(&r, "socket_packet", "EPERM");
    expect(&r, "openat", "EPERM");
    expect(&r, "socket_unix", "EPERM");
    expect(&r, "syslog_dgram", "ok");
    if get(&r, "enforced").contains("landlock=off") {
        expect(&r, "outside_openat2", "ok");
    } else {
        // openat2 is on the allow-list; Landlock still says no.
        expect(&r, "outside_openat2", "EACCES");
    }
}

fn threads_test() {
    let tree = Tree::new("threads");
    let r = run_case("threads", &tree);
    expect(&r, "thread_socket_packet", "EPERM");
    expect(&r, "main_seccomp", "2");
    if !get(&r, "enforced").contains("landlock=off") {
        expect(&r, "thread_outside", "EACCES");
    }
}

// ---------------------------------------------------------------------
// The child: enter the sandbox, try things, report.

fn res(r: io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => match e.raw_os_error() {
            Some(libc::EPERM) => "EPERM".into(),
            Some(libc::EACCES) => "EACCES".into(),
            Some(libc::ENOENT) => "ENOENT".into(),
            Some(libc::EFAULT) => "EFAULT".into(),
            Some(libc::EINVAL) => "EINVAL".into(),
            Some(libc::ENOSYS) => "ENOSYS".into(),
            Some(n) => format!("errno{n}"),
            None => format!("error({e})"),
        },
    }
}

fn report(name: &str, r: io::Result<()>) {
    println!("{name}={}", res(r));
}

/// `rc` of a libc call: negative means errno.
fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The text of a /proc status file opened before the sandbox (it lies
/// outside the root, and opening it needs openat): read now, it shows the
/// state now.
fn read_status(file: Option<fs::File>) -> String {
    let mut s = String::new();
    if let Some(mut f) = file {
        let _ = f.read_to_string(&mut s);
    }
    s
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| "?".into())
}

fn child(case: &str) {
    let root_path = PathBuf::from(std::env::var_os(ROOT_VAR).unwrap());
    let outside = PathBuf::from(std::env::var_os(OUTSIDE_VAR).unwrap());
    let root = aftpd::fs::Root::open(&root_path).unwrap();
    let status = fs::File::open("/proc/self/status").ok();
    match case {
        "landlock" => {
            // An abstract UNIX socket of this process, listening before
            // the sandbox, so outside it.
            let name = format!("aftpd-sandbox-{}", std::process::id());
            let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let _listener = UnixListener::bind_addr(&addr).unwrap();
            let enforced = sandbox::restrict_filesystem(root.fd(), None).unwrap();
            println!("enforced={enforced}");
            landlock_probes(&root_path, &outside);
            let st = read_status(status);
            println!("seccomp={}", field(&st, "Seccomp:"));
            println!("no_new_privs={}", field(&st, "NoNewPrivs:"));
            // SAFETY: signal 0 sends nothing; it checks the permission.
            let rc = unsafe { libc::kill(libc::getppid(), 0) };
            report("signal_parent", check(rc.into()));
            report("abstract_unix", UnixStream::connect_addr(&addr).map(drop));
        }
        "writable" => {
            let log = PathBuf::from(std::env::var_os(LOG_VAR).unwrap());
            // As the supervisor keeps it: O_PATH.
            let dir = rustix::fs::open(
                &log,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            let enforced = sandbox::restrict_filesystem(root.fd(), Some(dir.as_fd())).unwrap();
            println!("enforced={enforced}");
            let file = log.join("xferlog");
            let append = || fs::OpenOptions::new().append(true).create(true).open(&file);
            report(
                "log_create",
                append().and_then(|mut f| f.write_all(b"one\n")),
            );
            report(
                "log_append",
                append().and_then(|mut f| f.write_all(b"two\n")),
            );
            report("log_read", fs::read(&file).map(drop));
            report("log_list", fs::read_dir(&log).map(drop));
            report("log_mkdir", fs::create_dir(log.join("sub")));
            let truncate = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&file);
            report("log_truncate", truncate.map(drop));
            landlock_probes(&root_path, &outside);
        }
        "seccomp-poll" | "seccomp-epoll" | "seccomp-uring" => {
            let profile = match case {
                "seccomp-poll" => Profile::Poll,
                "seccomp-epoll" => Profile::Epoll,
                _ => Profile::Uring,
            };
            let log = PathBuf::from(std::env::var_os(LOG_VAR).unwrap());
            let syslogs = Syslogs::connect(&log);
            match sandbox::restrict_syscalls(profile, false).unwrap() {
                Filtered::Installed(p) => println!("enforced=seccomp={p}"),
                other => println!("enforced={other}"),
            }
            let st = read_status(status);
            println!("seccomp={}", field(&st, "Seccomp:"));
            println!("no_new_privs={}", field(&st, "NoNewPrivs:"));
            seccomp_probes(&root);
            syslogs.probe();
        }
        "both" => {
            let log = PathBuf::from(std::env::var_os(LOG_VAR).unwrap());
            let syslogs = Syslogs::connect(&log);
            let rep = sandbox::enter(Profile::Poll, root.fd(), None).unwrap();
            println!("enforced={rep}");
            println!("seccomp={}", field(&read_status(status), "Seccomp:"));
            report("inside", open2(&root_path.join("pub/inside.txt")));
            report("outside_openat2", open2(&outside));
            report("socket_packet", socket(libc::AF_PACKET));
            report("socket_unix", socket3(libc::AF_UNIX, libc::SOCK_STREAM, 0));
            report("openat", openat(&outside));
            syslogs.probe();
        }
        "threads" => {
            // As the supervisor does: Landlock, then a worker thread, then
            // seccomp on every thread at once, then the worker goes on.
            let landlock = sandbox::restrict_filesystem(root.fd(), None).unwrap();
            println!("enforced={landlock}");
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let (ready, started) = std::sync::mpsc::channel::<()>();
            let (done, result) = std::sync::mpsc::channel::<Vec<String>>();
            let outside2 = outside.clone();
            let t = std::thread::spawn(move || {
                // Started (libc's set-up of a thread needs calls the filter
                // refuses): say so, then wait for the filter.
                let _ = ready.send(());
                if wait.recv().is_err() {
                    return;
                }
                let lines = vec![
                    format!("thread_socket_packet={}", res(socket(libc::AF_PACKET))),
                    format!("thread_outside={}", res(open2(&outside2))),
                ];
                let _ = done.send(lines);
            });
            started.recv().unwrap();
            sandbox::restrict_syscalls(Profile::Epoll, true).unwrap();
            println!("main_seccomp={}", field(&read_status(status), "Seccomp:"));
            go.send(()).unwrap();
            for l in result.recv().unwrap() {
                println!("{l}");
            }
            t.join().unwrap();
        }
        "boxes" => boxes_case(&root_path, &outside),
        other => panic!("unknown case {other}"),
    }
}

/// As the servers do: the hosts' boxes found and opened (before the drop
/// of privileges), the user dropped to as root, then Landlock with a
/// rule a box.
fn boxes_case(root_path: &Path, outside: &Path) {
    use aftpd::setup::options::{DropBoxes, UploadArgs};
    let root = std::sync::Arc::new(aftpd::fs::Root::open(root_path).unwrap());
    let args = UploadArgs {
        boxes: DropBoxes::PerHost,
        max_size: 1 << 20,
        min_free: 0,
        mode: 0o600,
        hook: None,
        hook_max: 1,
    };
    let trees =
        aftpd::setup::vhosts::trees(root.clone(), true, root_path, Some((&args, None))).unwrap();
    let boxes = aftpd::setup::uploads::box_fds(&trees);
    println!("boxes={}", boxes.len());
    // SAFETY: plain system calls on this single-threaded child.
    unsafe {
        if libc::geteuid() == 0 {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
            assert_eq!(libc::setresgid(65534, 65534, 65534), 0);
            assert_eq!(libc::setresuid(65534, 65534, 65534), 0);
        }
    }
    let enforced = sandbox::restrict_filesystem_uploads(root.fd(), None, &boxes).unwrap();
    println!("enforced={enforced}");
    let make = |p: PathBuf| {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .and_then(|mut f| f.write_all(b"x"))
    };
    for (k, dir) in [("a_box", "a.example/in"), ("c_box", "c.example/pub/up")] {
        let d = root_path.join(dir);
        report(&format!("{k}_create"), make(d.join("new")));
        report(&format!("{k}_remove"), fs::remove_file(d.join("new")));
        report(&format!("{k}_mkdir"), fs::create_dir(d.join("sub")));
    }
    for (k, dir) in [
        ("a_tree", "a.example"),
        ("a_pub", "a.example/pub"),
        ("c_pub", "c.example/pub"),
        ("d_box", "d.example/in"),
        ("root", ""),
        ("default", "0"),
    ] {
        report(
            &format!("{k}_create"),
            make(root_path.join(dir).join("new")),
        );
    }
    let parent = outside.parent().unwrap_or(Path::new("/"));
    report("outside_create", make(parent.join("new")));
    report(
        "inside",
        fs::read_dir(root_path.join("a.example")).map(drop),
    );
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// openat2 (the one open the filter allows) of an absolute path.
fn open2(p: &Path) -> io::Result<()> {
    let fd = rustix::fs::openat2(
        rustix::fs::CWD,
        p,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
        rustix::fs::ResolveFlags::empty(),
    )?;
    drop(fd);
    Ok(())
}

/// Plain openat, through libc.
fn openat(p: &Path) -> io::Result<()> {
    let c = cstr(p);
    // SAFETY: a valid C string; the descriptor is closed at once.
    let fd = unsafe { libc::openat(libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    check(fd.into())?;
    // SAFETY: fd was just opened here.
    unsafe { libc::close(fd) };
    Ok(())
}

fn socket(family: libc::c_int) -> io::Result<()> {
    let ty = if family == libc::AF_PACKET || family == libc::AF_NETLINK {
        libc::SOCK_RAW
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: plain socket(2); closed at once.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, 0) };
    check(fd.into())?;
    // SAFETY: fd was just opened here.
    unsafe { libc::close(fd) };
    Ok(())
}

/// socket(2) with all three arguments; closed at once.
fn socket3(family: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<()> {
    // SAFETY: plain socket(2); closed at once.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, protocol) };
    check(fd.into())?;
    // SAFETY: fd was just opened here.
    unsafe { libc::close(fd) };
    Ok(())
}

/// The local syslog as the servers reach it (connected before the
/// sandbox, written with a non-blocking `send` after), here at sockets of
/// the test's own, one of each kind syslog daemons offer: the server's
/// end connected, the daemon's end kept to read what arrives.
struct Syslogs {
    dgram: (syslog::Socket, UnixDatagram),
    stream: (syslog::Socket, UnixListener),
}

impl Syslogs {
    fn connect(dir: &Path) -> Syslogs {
        let dgram_path = dir.join("log-dgram");
        let daemon = UnixDatagram::bind(&dgram_path).unwrap();
        // Now: once filtered, ioctl(FIONBIO) is refused.
        daemon.set_nonblocking(true).unwrap();
        let logger = syslog::connect_at(&dgram_path).unwrap();
        assert!(!logger.stream);
        let stream_path = dir.join("log-stream");
        let listener = UnixListener::bind(&stream_path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stream_logger = syslog::connect_at(&stream_path).unwrap();
        assert!(stream_logger.stream);
        Syslogs {
            dgram: (logger, daemon),
            stream: (stream_logger, listener),
        }
    }

    /// Logs a line through each, inside the sandbox, and reads it back.
    fn probe(self) {
        let (logger, daemon) = self.dgram;
        let got = send_line(&logger, "through the datagram socket").and_then(|()| {
            let mut buf = [0u8; 512];
            let n = daemon.recv(&mut buf)?;
            arrived(&buf[..n], "through the datagram socket")
        });
        report("syslog_dgram", got);
        let (logger, listener) = self.stream;
        let got = send_line(&logger, "through the stream socket").and_then(|()| {
            let (mut conn, _) = listener.accept()?;
            let mut buf = [0u8; 512];
            let n = conn.read(&mut buf)?;
            arrived(&buf[..n], "through the stream socket")
        });
        report("syslog_stream", got);
    }
}

/// One line, framed and sent as the logger sends it (`send(2)`, never
/// waiting).
fn send_line(s: &syslog::Socket, text: &str) -> io::Result<()> {
    let msg = syslog::frame(
        "sandbox-test",
        std::process::id(),
        Severity::Info,
        s.stream,
        text,
    );
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    rustix::net::send(&s.fd, &msg, flags)?;
    Ok(())
}

fn arrived(got: &[u8], text: &str) -> io::Result<()> {
    let got = String::from_utf8_lossy(got);
    if got.contains(text) && got.contains("sandbox-test[") {
        Ok(())
    } else {
        Err(io::Error::other(format!("syslog got {got:?}")))
    }
}

fn landlock_probes(root: &Path, outside: &Path) {
    report("inside", fs::read(root.join("pub/inside.txt")).map(drop));
    report("inside_dir", fs::read_dir(root.join("pub")).map(drop));
    report("outside", fs::read(outside).map(drop));
    report("outside_openat2", open2(outside));
    report("etc_passwd", fs::read("/etc/passwd").map(drop));
    let parent = outside.parent().unwrap_or(Path::new("/"));
    report("list_outside", fs::read_dir(parent).map(drop));
    let append = fs::OpenOptions::new()
        .append(true)
        .open(root.join("pub/inside.txt"));
    report("write_inside", append.map(drop));
    report(
        "create_inside",
        fs::File::create(root.join("pub/new.txt")).map(drop),
    );
    report("mkdir_inside", fs::create_dir(root.join("pub/newdir")));
}

/// sendto(2) with a destination, MSG_FASTOPEN on a fresh TCP socket: where
/// allowed, this connects to the listener (and sends the byte with the
/// SYN).
fn sendto_address() -> io::Result<()> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(fd.into())?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a live one-byte buffer and a sockaddr_in of the size given.
    let rc = unsafe {
        libc::sendto(
            fd,
            b"x".as_ptr().cast(),
            1,
            libc::MSG_FASTOPEN,
            std::ptr::from_ref(&addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let r = check(rc as libc::c_long);
    // SAFETY: fd was opened above.
    unsafe { libc::close(fd) };
    r
}

/// sendmsg(2) of one byte on a connected TCP socket.
fn sendmsg() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let c = std::net::TcpStream::connect(l.local_addr()?)?;
    let mut byte = [b'x'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: an all-zero msghdr is a valid "no name, no control" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: msg points at one live iovec of one live byte.
    let rc = unsafe { libc::sendmsg(c.as_raw_fd(), &msg, 0) };
    check(rc as libc::c_long)
}

fn map_result(p: *mut libc::c_void) -> io::Result<()> {
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: p is a 4096-byte mapping made by the caller.
    unsafe { libc::munmap(p, 4096) };
    Ok(())
}

fn anon_map(prot: libc::c_int) -> io::Result<()> {
    // SAFETY: an anonymous private mapping, unmapped at once if made.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    map_result(p)
}

fn fs_err(e: aftpd::fs::FsError) -> io::Error {
    io::Error::other(format!("{e:?}"))
}

fn seccomp_probes(root: &aftpd::fs::Root) {
    // Off the list (or off its conditions).
    report("socket_packet", socket(libc::AF_PACKET));
    report("socket_netlink", socket(libc::AF_NETLINK));
    let prog = CString::new("/bin/true").unwrap();
    let argv = [prog.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: valid NULL-terminated arrays; were it allowed, this process
    // would become /bin/true and print nothing more (the test then fails).
    let rc = unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    report("execve", check(rc.into()));
    // SAFETY: fork through the raw clone call; a child, if one were made,
    // leaves at once without touching anything.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
    if pid == 0 {
        // SAFETY: leaving the forked child at once.
        unsafe { libc::_exit(0) };
    }
    report("fork", check(pid));
    // SAFETY: PTRACE_TRACEME takes no pointers.
    let rc = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    report("ptrace", check(rc));
    let none = CString::new("none").unwrap();
    let tmp = CString::new("/tmp").unwrap();
    let tmpfs = CString::new("tmpfs").unwrap();
    // SAFETY: valid C strings and a NULL data pointer.
    let rc = unsafe {
        libc::mount(
            none.as_ptr(),
            tmp.as_ptr(),
            tmpfs.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    report("mount", check(rc.into()));
    report("openat", openat(Path::new("/etc/passwd")));
    report("mmap_exec", anon_map(libc::PROT_READ | libc::PROT_EXEC));
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(0, libc::FIONREAD, &mut n) };
    report("ioctl", check(rc.into()));
    // SAFETY: signal 0 sends nothing.
    let rc = unsafe { libc::kill(1, 0) };
    report("kill_init", check(rc.into()));
    // SAFETY: no pointers.
    let rc = unsafe { libc::setuid(0) };
    report("setuid", check(rc.into()));
    let slash = CString::new("/").unwrap();
    // SAFETY: a valid C string.
    let rc = unsafe { libc::chroot(slash.as_ptr()) };
    report("chroot", check(rc.into()));
    // SAFETY: no pointers.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    report("unshare", check(rc.into()));
    // SAFETY: a NULL params pointer: EFAULT where the call is allowed.
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, std::ptr::null_mut::<u8>()) };
    report("io_uring_setup", check(rc));
    // SAFETY: no ring behind descriptor -1: EBADF where the call is allowed.
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_enter, -1, 0, 0, 0, 0, 0) };
    report("io_uring_enter", check(rc));
    let ep = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC);
    report("epoll", ep.map(drop).map_err(io::Error::from));

    report("socket_unix", socket3(libc::AF_UNIX, libc::SOCK_STREAM, 0));
    report(
        "socket_unix_dgram",
        socket3(libc::AF_UNIX, libc::SOCK_DGRAM, 0),
    );
    report("socket_udp", socket3(libc::AF_INET, libc::SOCK_DGRAM, 0));
    report(
        "socket_raw",
        socket3(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
    );
    report(
        "socket_sctp",
        socket3(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP),
    );
    report(
        "socket_mptcp",
        socket3(libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_MPTCP),
    );
    report("sendto_address", sendto_address());
    report("sendmsg", sendmsg());

    // On the list: what the session and drivers do.
    report("socket_inet", socket(libc::AF_INET));
    report("socket_inet6", socket(libc::AF_INET6));
    report(
        "socket_tcp_as_the_engines_make_it",
        socket3(
            libc::AF_INET6,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
            libc::IPPROTO_TCP,
        ),
    );
    let sent = (|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut c = std::net::TcpStream::connect(l.local_addr()?)?;
        let (mut s, _) = l.accept()?;
        // std's TcpStream::write is send(2): sendto without an address.
        c.write_all(b"x")?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
    })();
    report("send_connected", sent);
    report(
        "bind_listen",
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr().map(drop)),
    );
    report("mmap_rw", anon_map(libc::PROT_READ | libc::PROT_WRITE));
    let p =
        aftpd::core::vpath::VPath::resolve(&aftpd::core::vpath::VPath::root(), b"/pub/inside.txt")
            .unwrap_or_else(|_| aftpd::core::vpath::VPath::root());
    report(
        "openat2_inside",
        root.open_file(&p).map(drop).map_err(fs_err),
    );
    let read = root.open_file(&p).map_err(fs_err).and_then(|(mut f, _)| {
        let mut s = String::new();
        f.read_to_string(&mut s).map(drop)
    });
    report("read_inside", read);
    let listed = root
        .open_dir(&aftpd::core::vpath::VPath::root())
        .map_err(fs_err)
        .and_then(|(fd, _)| {
            let mut d = rustix::fs::Dir::new(fd)?;
            while let Some(e) = d.read() {
                e?;
            }
            Ok(())
        });
    report("getdents", listed);
    let polled = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| {
        let mut fds = [rustix::event::PollFd::new(&l, rustix::event::PollFlags::IN)];
        let t = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        rustix::event::poll(&mut fds, Some(&t))?;
        Ok(())
    });
    report("poll", polled);
    let sent = (|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let c = std::net::TcpStream::connect(l.local_addr()?)?;
        let (s, _) = l.accept()?;
        let (f, _) = root.open_file(&p).map_err(fs_err)?;
        rustix::fs::sendfile(&s, &f, None, 7)?;
        drop(c);
        Ok(())
    })();
    report("sendfile", sent);
    // What the epoll and poll movers ask of a file they own (or could
    // write) before sending it: allowed by every profile.
    let asked = root.open_file(&p).map_err(fs_err).and_then(|(f, _)| {
        let range = [0u64, 4096];
        let mut stat = [0u64; 5];
        // SAFETY: cachestat(fd, &range, &stat, 0): reads the two words of
        // `range` and writes the five of `stat`, both live for the call.
        let rc = unsafe {
            libc::syscall(
                451,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                range.as_ptr(),
                stat.as_mut_ptr(),
                0,
            )
        };
        check(rc)
    });
    report("cachestat", asked);
    // A thread (a large listing makes one): glibc tries clone3, is told
    // ENOSYS, and makes it with clone and the thread flags.
    let thread = std::thread::Builder::new()
        .spawn(std::process::id)
        .map(|h| h.join().map(|pid| pid == std::process::id()));
    report(
        "thread",
        match thread {
            Ok(Ok(true)) => Ok(()),
            Ok(_) => Err(io::Error::other("the thread failed")),
            Err(e) => Err(e),
        },
    );
    // SAFETY: clone3 with a NULL argument and size 0: refused by the
    // filter before the kernel would read anything (EFAULT/EINVAL if not).
    let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    report("clone3", check(rc));
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(1));
    let slept = t.elapsed() >= Duration::from_millis(1);
    report(
        "time",
        if slept {
            Ok(())
        } else {
            Err(io::Error::other("no sleep"))
        },
    );
}
