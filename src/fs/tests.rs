//! The publishing rules at the filesystem layer: what `Root` hands out,
//! and that everything else is `NotFound`, exactly like a missing name.
//! Tests run as root, which the kernel lets read anything: every mode
//! check here must be ours.

use super::test_tree::TempTree;
use super::walk::{HELD, MAX_LINKS};
use super::*;
use std::io::Read;

fn vp(s: &str) -> VPath {
    VPath::resolve(&VPath::root(), s.as_bytes()).unwrap()
}

fn read_all(root: &Root, path: &str) -> Result<Vec<u8>, FsError> {
    let (mut file, meta) = root.open_file(&vp(path))?;
    let mut body = Vec::new();
    file.read_to_end(&mut body).unwrap();
    assert_eq!(meta.size, body.len() as u64);
    Ok(body)
}

/// Panics unless every way of asking for `path` answers `NotFound`.
#[track_caller]
fn unpublished(root: &Root, path: &str) {
    let p = vp(path);
    assert!(
        matches!(root.stat(&p), Err(FsError::NotFound)),
        "stat {path}: {:?}",
        root.stat(&p)
    );
    assert!(
        matches!(root.open_file(&p), Err(FsError::NotFound)),
        "open_file {path}: {:?}",
        root.open_file(&p).map(|(_, m)| m)
    );
    assert!(
        matches!(root.open_dir(&p), Err(FsError::NotFound)),
        "open_dir {path}: {:?}",
        root.open_dir(&p).map(|(_, m)| m)
    );
}

/// A small archive: public and private files and directories, a FIFO,
/// and symlinks that stay inside, dangle, loop or try to leave.
fn archive() -> TempTree {
    let t = TempTree::new("fs");
    t.dir("pub", 0o755);
    t.file("pub/readme", 0o644, b"hello\n");
    t.file("pub/secret", 0o600, b"secret\n");
    t.dir("pub/private", 0o700);
    t.file("pub/private/inner", 0o644, b"inner\n");
    t.fifo("pub/fifo", 0o644);
    t.file("pub/.hidden", 0o644, b"hidden\n");
    t.symlink("pub/link", "readme");
    t.symlink("pub/dirlink", "../pub");
    t.symlink("pub/passwd", "/etc/passwd");
    t.symlink("pub/escape", "../../..");
    t.symlink("pub/dangling", "nothere");
    t.symlink("pub/loop", "loop");
    t.symlink("pub/fifolink", "fifo");
    t
}

/// The tree of issue 18: links from a public directory into a 0711 one,
/// to a dotfile, and to a public directory inside the 0711 one.
fn issue_tree() -> TempTree {
    let t = TempTree::new("issue18");
    t.dir("p711", 0o711);
    t.file("p711/s.txt", 0o644, b"S\n");
    t.dir("p711/sub", 0o755);
    t.file("p711/sub/inner.txt", 0o644, b"inner\n");
    t.file(".hidden", 0o644, b"H\n");
    t.dir("up", 0o755);
    t.symlink("up/a", "../p711/s.txt");
    t.symlink("up/b", "../.hidden");
    t.symlink("up/c", "../p711/sub");
    t.file("up/ok", 0o644, b"ok\n");
    t
}

#[test]
fn open_serves_public_files() {
    let t = archive();
    let root = Root::open(&t.path).unwrap();
    assert_eq!(read_all(&root, "/pub/readme").unwrap(), b"hello\n");
    assert_eq!(read_all(&root, "/pub/link").unwrap(), b"hello\n");
    assert_eq!(read_all(&root, "/pub/dirlink/readme").unwrap(), b"hello\n");
    let meta = root.stat(&vp("/pub/readme")).unwrap();
    assert_eq!(meta.kind, Kind::File);
    assert_eq!(meta.mode, 0o644);
    assert_eq!(meta.size, 6);
    assert_eq!(meta.nlink, 1);
    assert!(meta.is_public());
}

#[test]
fn private_entries_are_not_found() {
    let t = archive();
    let root = Root::open(&t.path).unwrap();
    unpublished(&root, "/pub/secret");
    unpublished(&root, "/pub/private");
    // A world-readable file inside a private directory is not published
    // either: every directory on the way is checked.
    unpublished(&root, "/pub/private/inner");
    unpublished(&root, "/pub/readme/x");
    unpublished(&root, "/pub/nothing");
}

/// Every kind of unpublished entry, and a symlink to each, answers
/// exactly what a missing name answers.
#[test]
fn every_unpublished_kind_is_not_found() {
    let t = TempTree::new("kinds");
    t.dir("d700", 0o700);
    t.file("d700/f", 0o644, b"f\n");
    t.dir("d711", 0o711);
    t.file("d711/f", 0o644, b"f\n");
    t.dir("d744", 0o744);
    t.file("d744/f", 0o644, b"f\n");
    t.dir("d750", 0o750);
    t.file("f600", 0o600, b"f\n");
    t.file("f640", 0o640, b"f\n");
    t.fifo("fifo", 0o644);
    t.socket("socket", 0o777);
    let device = t.device("device", 0o666);
    if !device {
        eprintln!("note: not root, no device made: devices are not covered");
    }
    let mut names = vec![
        "d700", "d700/f", "d711", "d711/f", "d744", "d744/f", "d750", "f600", "f640", "fifo",
        "socket",
    ];
    if device {
        names.push("device");
    }
    t.dir("links", 0o755);
    for n in &names {
        t.symlink(format!("links/{}", n.replace('/', "-")), format!("../{n}"));
    }
    let root = Root::open(&t.path).unwrap();
    for n in &names {
        unpublished(&root, &format!("/{n}"));
        unpublished(&root, &format!("/links/{}", n.replace('/', "-")));
    }
    unpublished(&root, "/missing");
}

#[test]
fn fifo_is_never_opened_nor_blocks() {
    let t = archive();
    let root = Root::open(&t.path).unwrap();
    unpublished(&root, "/pub/fifo");
    unpublished(&root, "/pub/fifolink");
}

#[test]
fn kinds_are_checked() {
    let t = archive();
    let root = Root::open(&t.path).unwrap();
    assert!(matches!(read_all(&root, "/pub"), Err(FsError::NotFile)));
    assert!(matches!(
        read_all(&root, "/pub/dirlink"),
        Err(FsError::NotFile)
    ));
    assert!(matches!(
        root.open_dir(&vp("/pub/readme")),
        Err(FsError::NotDir)
    ));
    assert!(matches!(
        root.open_dir(&vp("/pub/link")),
        Err(FsError::NotDir)
    ));
    let (_, meta) = root.open_dir(&vp("/pub/dirlink")).unwrap();
    assert_eq!(meta.kind, Kind::Dir);
    let (_, meta) = root.open_dir(&vp("/")).unwrap();
    assert_eq!(meta.mode, 0o755);
}

#[test]
fn broken_links_are_not_found() {
    let t = archive();
    let root = Root::open(&t.path).unwrap();
    for p in ["/pub/dangling", "/pub/loop", "/pub/nothing", "/pub/passwd"] {
        unpublished(&root, p);
    }
}

#[test]
fn absolute_link_resolves_inside_the_root() {
    let t = archive();
    t.dir("etc", 0o755);
    t.file("etc/passwd", 0o644, b"inside\n");
    let root = Root::open(&t.path).unwrap();
    assert_eq!(read_all(&root, "/pub/passwd").unwrap(), b"inside\n");
}

#[test]
fn escaping_links_stay_inside() {
    let t = archive();
    let outside = TempTree::new("outside");
    outside.file("secret", 0o644, b"outside\n");
    // Absolute, and relative with more `..` than the depth of the root.
    t.symlink("pub/abs_out", outside.at("secret"));
    let up = "../".repeat(t.path.components().count() + 2);
    let rel = format!("{up}{}", outside.at("secret").display());
    t.symlink("pub/rel_out", &rel);
    let root = Root::open(&t.path).unwrap();
    for p in ["/pub/abs_out", "/pub/rel_out"] {
        unpublished(&root, p);
    }
    // `../../..` from /pub is the root itself.
    let (_, meta) = root.open_dir(&vp("/pub/escape")).unwrap();
    let top = root.stat(&VPath::root()).unwrap();
    assert_eq!((meta.dev, meta.ino), (top.dev, top.ino));
    // The same absolute path recreated inside the root is what is served.
    let inside = outside.path.strip_prefix("/").unwrap();
    std::fs::create_dir_all(t.path.join(inside)).unwrap();
    t.file(
        inside.join("secret").as_os_str().as_encoded_bytes(),
        0o644,
        b"in\n",
    );
    assert_eq!(read_all(&root, "/pub/abs_out").unwrap(), b"in\n");
    assert_eq!(read_all(&root, "/pub/rel_out").unwrap(), b"in\n");
}

#[test]
fn dotdot_cannot_leave() {
    let t = archive();
    let root = Root::open(&t.path).unwrap();
    let p = VPath::resolve(&vp("/pub"), b"../../../../pub/readme").unwrap();
    assert_eq!(read_all(&root, &p.to_string()).unwrap(), b"hello\n");
}

#[test]
fn odd_names_are_bytes() {
    let t = archive();
    t.file(b"pub/caf\xe9", 0o644, b"x");
    t.file("pub/new\nline", 0o644, b"y");
    let root = Root::open(&t.path).unwrap();
    let p = VPath::resolve(&VPath::root(), b"/pub/caf\xe9").unwrap();
    assert!(root.open_file(&p).is_ok());
    let p = VPath::resolve(&VPath::root(), b"/pub/new\nline").unwrap();
    assert!(root.open_file(&p).is_ok());
}

#[test]
fn root_must_be_a_directory() {
    let t = archive();
    assert!(Root::open(&t.at("pub/readme")).is_err());
    assert!(Root::open(&t.at("missing")).is_err());
}

/// The root is on the way to everything: when it is not published,
/// nothing is.
#[test]
fn an_unpublished_root_publishes_nothing() {
    let t = archive();
    t.chmod("", 0o711);
    let root = Root::open(&t.path).unwrap();
    unpublished(&root, "/");
    unpublished(&root, "/pub/readme");
    t.chmod("", 0o755);
    assert_eq!(read_all(&root, "/pub/readme").unwrap(), b"hello\n");
}

/// Issue 18: the rules apply to where a symlink leads, not to the name.
#[test]
fn links_do_not_publish_what_the_rules_hide() {
    let t = issue_tree();
    let root = Root::open(&t.path).unwrap();
    unpublished(&root, "/p711/s.txt");
    unpublished(&root, "/p711/sub/inner.txt");
    for p in ["/up/a", "/up/b", "/up/c", "/up/c/inner.txt"] {
        unpublished(&root, p);
    }
    assert_eq!(read_all(&root, "/up/ok").unwrap(), b"ok\n");
}

/// A dot name anywhere in a target hides what it leads to; `.` and `..`
/// are not names.
#[test]
fn dot_names_inside_targets_are_hidden() {
    let t = archive();
    t.dir(".git", 0o755);
    t.file(".git/config", 0o644, b"config\n");
    t.symlink("pub/to-git", "../.git/config");
    t.symlink("pub/to-gitdir", "/.git");
    t.symlink("pub/to-hidden", ".hidden");
    t.symlink("pub/to-dotdot-name", "...");
    t.symlink("pub/dots", "./././readme");
    t.symlink("pub/updown", "../pub/../pub/readme");
    let root = Root::open(&t.path).unwrap();
    for p in [
        "/pub/to-git",
        "/pub/to-gitdir",
        "/pub/to-hidden",
        "/pub/to-dotdot-name",
    ] {
        unpublished(&root, p);
    }
    assert_eq!(read_all(&root, "/pub/dots").unwrap(), b"hello\n");
    assert_eq!(read_all(&root, "/pub/updown").unwrap(), b"hello\n");
}

/// `..` in a target is the parent of where the walk physically is: after
/// a symlink to a directory, the parent of that directory, as the kernel
/// has it. And a directory passed through on the way must be published
/// even when only `..` leaves it again.
#[test]
fn dotdot_is_physical() {
    let t = TempTree::new("physical");
    t.dir("pub", 0o755);
    t.file("pub/f", 0o644, b"pub\n");
    t.dir("p", 0o755);
    t.dir("p/deep", 0o755);
    t.file("p/f", 0o644, b"p\n");
    t.dir("p711", 0o711);
    t.symlink("pub/s", "../p/deep");
    t.symlink("pub/t", "s/../f");
    t.symlink("pub/through-private", "../p711/../pub/f");
    t.symlink("pub/file-then-up", "f/../f");
    let root = Root::open(&t.path).unwrap();
    assert_eq!(read_all(&root, "/pub/t").unwrap(), b"p\n");
    unpublished(&root, "/pub/through-private");
    unpublished(&root, "/pub/file-then-up");
    // A file followed by anything, even a slash, is not the file.
    t.symlink("pub/slash", "f/");
    unpublished(&root, "/pub/slash");
}

#[test]
fn at_most_forty_links() {
    let t = archive();
    t.dir("chain", 0o755);
    // chain/l0 -> l1 -> ... -> l{n-1} -> ../pub/readme: n links.
    let n = MAX_LINKS as usize + 1;
    for i in 0..n {
        let target = if i + 1 == n {
            "../pub/readme".to_string()
        } else {
            format!("l{}", i + 1)
        };
        t.symlink(format!("chain/l{i}"), target);
    }
    let root = Root::open(&t.path).unwrap();
    // From l1, 40 links: served. From l0, 41: as the kernel, not found.
    assert_eq!(read_all(&root, "/chain/l1").unwrap(), b"hello\n");
    unpublished(&root, "/chain/l0");
    // Loops of two and of three.
    t.symlink("chain/x", "y");
    t.symlink("chain/y", "x");
    t.symlink("chain/p", "q/r");
    t.symlink("chain/q", ".");
    t.symlink("chain/r", "p");
    unpublished(&root, "/chain/x");
    unpublished(&root, "/chain/p");
}

/// Deeper than the directories a walk holds: a `..` above them walks
/// down again from the root, and still gets the physical parent.
#[test]
fn climbing_above_the_held_directories() {
    let t = TempTree::new("deep");
    let depth = HELD * 2 + 5;
    let mut path = String::from("d");
    t.dir(&path, 0o755);
    for _ in 1..depth {
        path.push_str("/d");
        t.dir(&path, 0o755);
    }
    t.file("d/top", 0o644, b"top\n");
    t.file("d/d/d/d/d/mid", 0o644, b"mid\n");
    // From the bottom: all the way up, and up to the fifth level.
    t.symlink(
        format!("{path}/up"),
        format!("{}top", "../".repeat(depth - 1)),
    );
    t.symlink(
        format!("{path}/mid"),
        format!("{}mid", "../".repeat(depth - 5)),
    );
    // Through a link first: `..` is then from where it led.
    t.dir("side", 0o755);
    t.symlink("side/deep", format!("/{path}"));
    t.symlink("side/climb", format!("deep/{}top", "../".repeat(depth - 1)));
    let root = Root::open(&t.path).unwrap();
    assert_eq!(read_all(&root, &format!("/{path}/up")).unwrap(), b"top\n");
    assert_eq!(read_all(&root, &format!("/{path}/mid")).unwrap(), b"mid\n");
    assert_eq!(read_all(&root, "/side/climb").unwrap(), b"top\n");
    // A private directory halfway: the walk down again checks it.
    t.chmod("d/d/d", 0o711);
    unpublished(&root, &format!("/{path}/up"));
    unpublished(&root, "/side/climb");
}

/// A listing holds a few directories open, however deep it is.
#[test]
fn an_open_directory_holds_few_descriptors() {
    let t = TempTree::new("held");
    let mut path = String::from("d");
    t.dir(&path, 0o755);
    for _ in 1..HELD * 2 {
        path.push_str("/d");
        t.dir(&path, 0o755);
    }
    let root = Root::open(&t.path).unwrap();
    let (dir, _) = root.open_dir(&vp(&path)).unwrap();
    assert_eq!(dir.chain.len(), HELD * 2);
    // The deepest few, less the listed one (the reader's fd is that).
    assert_eq!(dir.chain.held(), LISTING_HELD - 1);
}

/// `/proc` has magic links (`root`, `cwd`, `fd/N`): their text is a path
/// like any other, resolved inside the root; the kernel never jumps.
#[test]
fn magic_links_are_never_followed() {
    let root = Root::open(std::path::Path::new("/proc/self")).unwrap();
    let top = root.stat(&VPath::root()).unwrap();
    // `root` reads "/": the root of the served tree, not the real one.
    let meta = root.stat(&vp("/root")).unwrap();
    assert_eq!((meta.dev, meta.ino), (top.dev, top.ino));
    for p in ["/cwd", "/exe", "/cwd/Cargo.toml"] {
        unpublished(&root, p);
    }
}

/// Issue 18: a symlink swapped between a public decoy and the private
/// file or directory while it is being opened never serves the private
/// one (the check and the use were two lookups).
#[test]
fn swapping_links_never_leaks() {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use std::sync::atomic::{AtomicBool, Ordering};
    let t = issue_tree();
    t.dir("decoy", 0o755);
    t.file("decoy/s.txt", 0o644, b"decoy\n");
    t.dir("race", 0o755);
    t.symlink("race/f", "../decoy/s.txt");
    t.symlink("race/g", "../p711/s.txt");
    t.symlink("race/d", "../decoy");
    t.symlink("race/e", "../p711");
    let root = Root::open(&t.path).unwrap();
    let stop = AtomicBool::new(false);
    let (mut served, mut missing) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..2_000_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for (a, b) in [("race/f", "race/g"), ("race/d", "race/e")] {
                    renameat_with(CWD, t.at(a), CWD, t.at(b), RenameFlags::EXCHANGE).unwrap();
                }
            }
        });
        for _ in 0..5_000 {
            for p in ["/race/f", "/race/d/s.txt"] {
                match read_all(&root, p) {
                    Ok(body) => {
                        assert_eq!(body, b"decoy\n", "{p} served the private file");
                        served += 1;
                    }
                    Err(FsError::NotFound) => missing += 1,
                    Err(e) => panic!("{p}: {e:?}"),
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!("served {served}, not found {missing}");
    assert!(served > 0, "the decoy was never served");
}

/// Not a test: times a lookup 1,000 directories deep (prints, asserts
/// nothing about time). Run with `cargo test --release --lib
/// bench_deep_lookup -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_deep_lookup() {
    let t = TempTree::new("deep-bench");
    let mut path = String::from("d");
    t.dir(&path, 0o755);
    for _ in 1..1000 {
        path.push_str("/d");
        t.dir(&path, 0o755);
    }
    t.file(format!("{path}/f"), 0o644, b"x");
    let root = Root::open(&t.path).unwrap();
    let p = vp(&format!("/{path}/f"));
    let mut times = Vec::new();
    for _ in 0..50 {
        let start = std::time::Instant::now();
        root.stat(&p).unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "bench_deep_lookup: 1000 levels: min {:?} median {:?}",
        times[0],
        times[times.len() / 2]
    );
}
