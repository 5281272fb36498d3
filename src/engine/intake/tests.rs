use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::*;
use crate::fs::test_tree::TempTree;

/// A connected loopback pair: (the client's end, the server's end, which
/// is non-blocking as a data connection is).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    (c, s)
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Takes until `n` bytes came (they are on their way on loopback: a
/// bounded number of tries, each waiting for the socket).
fn take(s: &TcpStream, file: &File, offset: u64, n: u64) -> u64 {
    let mut got = 0;
    for _ in 0..1000 {
        let r = intake(s, file, offset + got, &[], u64::MAX, later()).unwrap();
        got += r.bytes;
        assert_ne!(r.next, Next::Copy);
        if got >= n {
            return got;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn bytes_land_at_the_offset_then_the_end() {
    let t = TempTree::new("intake");
    let path = t.at("f");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let (mut c, s) = pair();
    // Nothing sent yet: the socket is empty.
    let r = intake(&s, &file, 0, &[], u64::MAX, later()).unwrap();
    assert_eq!(
        r,
        Intake {
            bytes: 0,
            next: Next::Readable
        }
    );
    let data = body(3 << 20);
    let writer = std::thread::spawn(move || {
        c.write_all(&data).unwrap();
        data
    });
    let got = take(&s, &file, 100, 3 << 20);
    let data = writer.join().unwrap();
    assert_eq!(got, 3 << 20);
    // The client closes: the end, nothing more.
    let r = intake(&s, &file, 100 + got, &[], u64::MAX, later()).unwrap();
    assert_eq!(
        r,
        Intake {
            bytes: 0,
            next: Next::End
        }
    );
    let stored = fs::read(&path).unwrap();
    assert_eq!(stored.len(), 100 + data.len());
    assert!(stored[..100].iter().all(|&b| b == 0));
    assert!(stored[100..] == data[..]);
}

/// What the worker received first (a slow client's buffer) goes before
/// what the socket holds; the intake counts the socket's bytes.
#[test]
fn the_head_goes_first() {
    let t = TempTree::new("intake");
    let file = File::create(t.at("f")).unwrap();
    let (mut c, s) = pair();
    c.write_all(b" and the rest").unwrap();
    drop(c);
    let mut got = 0;
    let mut at = 0;
    let mut head: &[u8] = b"the head";
    for _ in 0..1000 {
        let r = intake(&s, &file, at, head, u64::MAX, later()).unwrap();
        at += (head.len() as u64) + r.bytes;
        got += r.bytes;
        head = b"";
        if r.next == Next::End {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(got, 13);
    assert_eq!(fs::read(t.at("f")).unwrap(), b"the head and the rest");
}

#[test]
fn no_more_than_allowed() {
    let t = TempTree::new("intake");
    let file = File::create(t.at("f")).unwrap();
    let (mut c, s) = pair();
    c.write_all(&body(4096)).unwrap();
    let mut r = Intake {
        bytes: 0,
        next: Next::Readable,
    };
    for _ in 0..1000 {
        r = intake(&s, &file, 0, &[], 1000, later()).unwrap();
        if r.bytes > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        r,
        Intake {
            bytes: 1000,
            next: Next::More
        }
    );
    assert_eq!(fs::metadata(t.at("f")).unwrap().len(), 1000);
}

/// A file that cannot take spliced bytes (opened for appending: splice
/// refuses it as a filesystem without support would): what the pipe holds
/// is copied, and the upload goes on by copying.
#[test]
fn a_file_that_refuses_splice_is_copied() {
    let t = TempTree::new("intake");
    let path = t.at("f");
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .unwrap();
    let (mut c, s) = pair();
    let data = body(200_000);
    c.write_all(&data).unwrap();
    drop(c);
    let mut got = 0;
    let mut copied = false;
    for _ in 0..1000 {
        let r = intake(&s, &file, got, &[], u64::MAX, later()).unwrap();
        got += r.bytes;
        if r.next == Next::Copy {
            copied = true;
            break;
        }
        assert_ne!(r.next, Next::End, "the file took spliced bytes");
    }
    assert!(copied);
    assert!(got > 0);
    assert!(fs::read(&path).unwrap() == data[..got as usize]);
}

/// A write that fails (here: a file open for reading only) fails the job
/// as the file's error; the thread's pipe, which may hold bytes, is not
/// reused, so the next job's bytes are its own.
#[test]
fn a_failed_write_is_the_files_error_and_drops_the_pipe() {
    let t = TempTree::new("intake");
    t.file("ro", 0o644, b"");
    let ro = File::open(t.at("ro")).unwrap();
    let (mut c, s) = pair();
    c.write_all(&body(100_000)).unwrap();
    let mut failed = None;
    for _ in 0..1000 {
        match intake(&s, &ro, 0, &[], u64::MAX, later()) {
            Ok(r) => assert_eq!(r.bytes, 0),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(matches!(failed, Some(TransferError::Sink(_))), "{failed:?}");
    let file = File::create(t.at("f")).unwrap();
    let (mut c, s) = pair();
    c.write_all(b"fresh").unwrap();
    drop(c);
    let got = take(&s, &file, 0, 5);
    assert_eq!(got, 5);
    assert_eq!(fs::read(t.at("f")).unwrap(), b"fresh");
}
