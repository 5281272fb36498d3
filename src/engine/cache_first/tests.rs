use super::*;
use std::io::Read as _;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::engine::pool::{Done, Output};
use crate::fs::Root;
use crate::fs::test_tree::TempTree;

fn both(n: u64) -> Allowance {
    Allowance { turn: n, helper: n }
}

fn tag() -> Tag {
    Tag {
        slot: 0,
        serial: 0,
        generation: 0,
    }
}

fn mover(t: &TempTree) -> CacheFirst {
    let root = Arc::new(Root::open(&t.path).unwrap());
    let trees = Arc::new(crate::fs::trees::Trees::single(root));
    CacheFirst::new(Pool::new(trees, 1, 2).unwrap(), 0)
}

fn file_range(path: &std::path::Path) -> FileRange {
    let file = std::fs::File::open(path).unwrap();
    let left = file.metadata().unwrap().len();
    FileRange {
        file: Arc::new(file),
        offset: 0,
        left,
    }
}

/// A connected pair: the server's end (non-blocking, as the engines'
/// data sockets are) and the client's.
fn socket_pair() -> (Arc<TcpStream>, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (server, _) = l.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    (Arc::new(server), client)
}

/// The next finished job of worker 0, waited for (at most 10 s).
fn next_done(m: &CacheFirst) -> FromPool {
    let began = Instant::now();
    let mut out = Vec::<Done>::new();
    loop {
        m.pool.take(0, &mut out);
        if let Some(d) = out.pop() {
            match d.output {
                Output::Mover(r) => return r,
                Output::Fs(_) => panic!("not a mover's job"),
            }
        }
        assert!(began.elapsed() < Duration::from_secs(10), "no job done");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A read-in that comes back short means the file shrank: the
/// transfer ends (451) rather than asking again and again.
#[test]
fn a_short_read_in_is_a_shrunk_file() {
    let t = TempTree::new("cache-first");
    t.file("f", 0o644, &[1u8; 4096]);
    let mut m = mover(&t);
    let mut range = file_range(&t.at("f"));
    range.left = 1 << 20;
    let mut x = Warming::default();
    m.warm(&mut x, &range, tag());
    assert!(x.busy());
    let r = m.completed(&mut x, &mut range, FromPool::Warmed(Ok(4096)));
    assert!(matches!(r, Err(TransferError::Shrunk)), "{r:?}");
    m.warm(&mut x, &range, tag());
    let r = m.completed(&mut x, &mut range, FromPool::Warmed(Ok(1 << 20)));
    assert_eq!(r.unwrap(), 0);
    assert_eq!(x.known_end, 1 << 20);
}

/// Runs `f` on a thread whose file-system user is an unprivileged one
/// (65534), as a server's after it dropped its privileges: `cachestat`
/// then refuses files it does not own. Run as root (as the suites are);
/// otherwise the caller is unprivileged already.
fn as_unprivileged<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            if rustix::process::geteuid().is_root() {
                // SAFETY: setfsuid changes this thread's credentials only
                // (the raw call, not glibc's process-wide wrapper); the
                // thread ends with the scope.
                unsafe { libc::syscall(libc::SYS_setfsuid, 65534) };
            }
            f()
        })
        .join()
        .unwrap()
    })
}

/// As a server serves an archive owned by someone else: `cachestat`
/// refuses the file (EPERM), so a helper thread sends it, zero-copy, and
/// the transfer goes on from where it got; a file `cachestat` may look
/// at (the server's own) is still checked and sent by the worker. EPERM
/// once turned `cachestat` off for the process, and every byte of every
/// file was read by a helper before it was sent.
#[test]
fn a_file_cachestat_may_not_see_is_sent_by_a_helper() {
    let t = TempTree::new("cache-first-blind");
    let body: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    t.file("theirs", 0o644, &body);
    t.file("ours", 0o644, &body);
    let root = rustix::process::geteuid().is_root();
    if root {
        // The unprivileged user's own file.
        rustix::fs::chown(
            t.at("ours"),
            Some(rustix::process::Uid::from_raw(65534)),
            None,
        )
        .unwrap();
    }
    let theirs = if root {
        t.at("theirs")
    } else {
        // Not root: a file someone else owns is needed.
        std::path::PathBuf::from("/etc/passwd")
    };
    let mut m = mover(&t);
    as_unprivileged(|| {
        let (sock, mut client) = socket_pair();
        let mut range = file_range(&theirs);
        let size = range.left;
        // Read into the page cache: still not known to be there.
        std::fs::read(&theirs).unwrap();
        let mut x = Warming::default();
        let mut sent = 0;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..1000 {
            if range.left == 0 {
                break;
            }
            match m
                .send_file(&mut x, &mut range, &sock, both(1 << 20), tag())
                .unwrap()
            {
                Moved::Pending => {
                    assert_eq!(x.sight, Sight::Blind);
                    let n = m.completed(&mut x, &mut range, next_done(&m)).unwrap();
                    sent += n;
                }
                Moved::Blocked(0) => {
                    let n = client.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                Moved::CopyOnce if size <= SMALL => return, // /etc/passwd
                other => panic!("{other:?}: a file cachestat refuses sent by the worker"),
            }
        }
        assert_eq!(sent, size);
        drop(sock);
        m.finish(x, tag());
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, std::fs::read(&theirs).unwrap());
        if !root {
            return;
        }
        // Its own file: cachestat answers, the worker sends it.
        let (sock, _client) = socket_pair();
        let mut range = file_range(&t.at("ours"));
        let mut x = Warming::default();
        let r = m.send_file(&mut x, &mut range, &sock, both(64 * 1024), tag());
        assert_eq!(x.sight, Sight::Clear);
        assert!(matches!(r, Ok(Moved::Sent(65536))), "{r:?}");
    });
}
