//! Uploads into the drop box, driven over the in-memory tree: STOR and
//! STOU, their refusals, every way one can fail (each leaves nothing),
//! the commit before the 226, and the write-only rule.

use super::*;
use crate::core::config::{TlsPolicy, Uploads};
use crate::core::memfs::MemUpload;
use crate::core::meta::FsError;

fn uploads_config() -> SessionConfig {
    SessionConfig {
        data_timeout: Duration::from_secs(5),
        uploads: Some(Uploads {
            incoming: VPath::resolve(&VPath::root(), b"/incoming").unwrap(),
            max_size: 1000,
        }),
        ..SessionConfig::default()
    }
}

/// A logged-in session with uploads into /incoming (mode 0733, as a
/// drop box often is), with a subdirectory the operator made.
fn drop_box() -> T {
    let mut t = session_with(uploads_config(), "127.0.0.1:21", "127.0.0.1:40000");
    t.fs.dir("incoming", 0o733).dir("incoming/sub", 0o700).file(
        "incoming/old",
        0o644,
        b"uploaded before",
    );
    t.fs.incoming("/incoming");
    t.login();
    t
}

impl T {
    /// Starts `cmd` (STOR or STOU) on a passive connection; the upload's
    /// source.
    fn start_upload(&mut self, cmd: &str) -> (bool, u64) {
        self.out();
        self.actions();
        self.pasv();
        assert_eq!(self.send(&format!("{cmd}\r\n")), "", "{cmd}");
        match self.transfer() {
            Some((DataConn::Passive, Source::Upload { ascii, limit, file })) => {
                assert!(file.body.is_empty());
                (ascii, limit)
            }
            _ => panic!("{cmd}: no upload started"),
        }
    }

    fn records(&mut self) -> Vec<TransferRecord> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Log(Record::Transfer(r)) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Nothing of an upload to `path` remains: no file, no staging.
    fn left_nothing(&self, path: &str) {
        assert_eq!(self.fs.contents(path), None, "{path} was stored");
        assert_eq!(self.fs.staged(), 0, "an upload was left staged");
    }
}

/// A server that takes uploads does not call itself read-only, and says
/// at login where uploads go; one without keeps its read-only words.
#[test]
fn greeting_and_login_say_where_uploads_go() {
    let mut t = session_with(uploads_config(), "127.0.0.1:21", "127.0.0.1:40000");
    assert_eq!(t.out(), "220 aftpd: anonymous FTP server ready.\r\n");
    t.send("USER anonymous\r\n");
    assert_eq!(
        t.send("PASS x@y\r\n"),
        "230 Logged in: anonymous access; uploads into /incoming only.\r\n"
    );
    let mut t = session();
    assert_eq!(
        t.out(),
        "220 aftpd: anonymous read-only FTP server ready.\r\n"
    );
    t.send("USER anonymous\r\n");
    assert_eq!(
        t.send("PASS x@y\r\n"),
        "230 Logged in: anonymous read-only access.\r\n"
    );
}

/// `--tls required`: an upload in clear is refused as a download is
/// (521, before anything is created); under PROT P it starts, and its
/// data connection is protected.
#[test]
fn tls_required_refuses_clear_uploads() {
    let config = SessionConfig {
        tls: TlsPolicy::Required,
        ..uploads_config()
    };
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    t.fs.dir("incoming", 0o733);
    t.fs.incoming("/incoming");
    t.s.on_control(b"AUTH TLS\r\n", t.now);
    t.run();
    let n = t.s.output().len();
    t.s.consume_output(n);
    let switched = t.actions();
    assert!(
        switched
            .iter()
            .any(|a| matches!(a, Action::StartTls { .. }))
    );
    t.login();
    assert_eq!(t.code("STOR /incoming/clear\r\n"), 521);
    assert_eq!(t.code("STOU /incoming/clear\r\n"), 521);
    assert!(t.transfer().is_none());
    assert!(t.actions().is_empty(), "something was asked for");
    assert_eq!(t.code("PBSZ 0\r\n"), 200);
    assert_eq!(t.code("PROT P\r\n"), 200);
    t.start_upload("STOR /incoming/private");
    assert!(t.s.data_protected());
}

#[test]
fn without_incoming_every_write_is_refused() {
    let mut t = session();
    t.login();
    t.pasv();
    assert_eq!(t.code("STOR pub/x\r\n"), 553);
    assert_eq!(t.code("STOU\r\n"), 553);
    assert_eq!(t.code("STOR\r\n"), 553);
    assert!(t.actions().is_empty());
}

#[test]
fn stor_receives_commits_then_226() {
    let mut t = drop_box();
    assert_eq!(t.code("CWD /incoming\r\n"), 250);
    assert_eq!(t.code("TYPE I\r\n"), 200);
    assert_eq!(t.start_upload("STOR a.bin"), (false, 1000));
    t.s.on_data_connected(t.now);
    assert_eq!(
        t.out(),
        "150 Opening BINARY mode data connection for /incoming/a.bin.\r\n"
    );
    // The name is taken while it is being uploaded.
    assert!(t.fs.stage("/incoming/a.bin", b"hello "));
    t.s.on_data_progress(6, t.now);
    assert_eq!(
        t.send("STAT\r\n"),
        "213 Transfer in progress: /incoming/a.bin of 6 bytes received.\r\n"
    );
    assert!(t.fs.stage("/incoming/a.bin", b"world"));
    t.s.on_data_progress(11, t.now);
    assert_eq!(
        t.fs.contents("/incoming/a.bin"),
        None,
        "named before the end"
    );
    // Every byte written: the commit is asked for, answered, then 226.
    t.s.on_transfer_done(Ok(11), t.now);
    assert_eq!(t.out(), "226 Transfer complete.\r\n");
    assert_eq!(
        t.fs.contents("/incoming/a.bin"),
        Some((b"hello world".to_vec(), 0o600))
    );
    assert_eq!(t.fs.staged(), 0);
    let r = t.records();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].kind, r[0].result, r[0].bytes),
        (TransferKind::Stor, "ok", 11)
    );
    assert_eq!(r[0].path.as_bytes(), b"/incoming/a.bin");
    // Write-only: not served, not listed, not even its size.
    t.actions();
    t.pasv();
    assert_eq!(t.code("RETR a.bin\r\n"), 550);
    assert_eq!(t.code("SIZE /incoming/a.bin\r\n"), 550);
    assert_eq!(t.code("MLST a.bin\r\n"), 550);
    assert_eq!(t.code("RETR old\r\n"), 550);
    t.send("NLST\r\n");
    t.s.on_data_connected(t.now);
    assert_eq!(t.stream(), "", "the drop box listed something");
    t.s.on_transfer_done(Ok(0), t.now);
    // The same name again: never replaced.
    t.out();
    t.actions();
    t.pasv();
    assert_eq!(t.code("STOR a.bin\r\n"), 553);
    assert_eq!(t.code("STOR old\r\n"), 553);
}

#[test]
fn names_and_places_are_checked() {
    let mut t = drop_box();
    t.pasv();
    for bad in [
        "STOR /incoming/.hidden",
        "STOR /incoming/a\x01b",
        "STOR /incoming/a\x7f",
        "STOR pub/x",
        "STOR /x",
        "STOR /incoming/../pub/x",
        "STOR /incoming",
        "STOR /",
    ] {
        assert_eq!(t.code(&format!("{bad}\r\n")), 553, "{bad:?}");
    }
    let long = "n".repeat(256);
    assert_eq!(t.code(&format!("STOR /incoming/{long}\r\n")), 553);
    assert_eq!(t.code("STOR /incoming/a\0b\r\n"), 501);
    assert_eq!(t.code("STOR\r\n"), 501);
    assert!(t.actions().is_empty(), "a refused STOR asked for something");
    // Not resumed, not appended: REST before STOR is refused.
    assert_eq!(t.code("REST 5\r\n"), 350);
    assert_eq!(t.code("STOR /incoming/r\r\n"), 554);
    // The REST was used up.
    assert_eq!(t.code("NOOP\r\n"), 200);
    // A name or place refused whatever the REST says is 553, not 554,
    // and that STOR uses the REST up too.
    for bad in ["STOR /x", "STOR /incoming/.hidden", "STOR pub/x"] {
        assert_eq!(t.code("REST 5\r\n"), 350);
        assert_eq!(t.code(&format!("{bad}\r\n")), 553, "{bad:?}");
    }
    assert_eq!(t.code("REST 5\r\n"), 350);
    assert_eq!(t.code("STOR\r\n"), 501);
    assert!(t.actions().is_empty(), "a refused STOR asked for something");
    // A STOU refused for its place is 553 after a REST.
    assert_eq!(t.code("CWD /pub\r\n"), 250);
    assert_eq!(t.code("REST 5\r\n"), 350);
    assert_eq!(t.code("STOU\r\n"), 553);
    assert_eq!(t.code("CWD /incoming\r\n"), 250);
    assert_eq!(t.code("REST 5\r\n"), 350);
    assert_eq!(t.code("STOU\r\n"), 554);
    // Without a data connection.
    let mut t = drop_box();
    assert_eq!(t.code("STOR /incoming/x\r\n"), 425);
    // The other writes stay refused.
    for (v, code) in [
        ("APPE /incoming/old", 550),
        ("DELE /incoming/old", 550),
        ("MKD /incoming/d", 550),
        ("RMD /incoming/sub", 550),
        ("RNFR /incoming/old", 550),
        ("RNTO /incoming/new", 503),
        ("SITE CHMOD 777 /incoming/old", 500),
    ] {
        assert_eq!(t.code(&format!("{v}\r\n")), code, "{v}");
    }
    // A subdirectory the operator made takes uploads; a longest name does.
    let mut t = drop_box();
    t.start_upload("STOR /incoming/sub/deep");
    t.s.on_transfer_done(Ok(0), t.now);
    assert!(t.out().starts_with("226 "));
    assert_eq!(t.fs.contents("/incoming/sub/deep"), Some((vec![], 0o600)));
    t.start_upload(&format!("STOR /incoming/{}", "n".repeat(255)));
}

#[test]
fn a_name_being_uploaded_is_taken() {
    let mut fs = MemFs::new();
    fs.dir("incoming", 0o755).incoming("/incoming");
    let path = VPath::resolve(&VPath::root(), b"/incoming/x").unwrap();
    let create = |fs: &mut MemFs| match fs.answer(
        &Tree::Default,
        FsRequest::Create {
            name: UploadName::Named(path.clone()),
            peer: None,
        },
    ) {
        FsAnswer::Created(r) => r.map(|c| c.upload),
        _ => panic!("not a Created answer"),
    };
    let first = create(&mut fs).unwrap();
    assert!(matches!(create(&mut fs), Err(FsError::Exists)));
    fs.answer(&Tree::Default, FsRequest::Discard(first));
    let again = create(&mut fs).unwrap();
    assert!(matches!(
        fs.answer(&Tree::Default, FsRequest::Commit(again)),
        FsAnswer::Committed(Ok(()))
    ));
    assert!(matches!(create(&mut fs), Err(FsError::Exists)));
    // A commit to a name that appeared meanwhile is refused.
    let path2 = VPath::resolve(&VPath::root(), b"/incoming/y").unwrap();
    let late = match fs.answer(
        &Tree::Default,
        FsRequest::Create {
            name: UploadName::Named(path2),
            peer: None,
        },
    ) {
        FsAnswer::Created(Ok(c)) => c.upload,
        _ => panic!(),
    };
    fs.file("incoming/y", 0o644, b"the operator's");
    assert!(matches!(
        fs.answer(&Tree::Default, FsRequest::Commit(late)),
        FsAnswer::Committed(Err(FsError::Exists))
    ));
    assert_eq!(fs.contents("/incoming/y").unwrap().0, b"the operator's");
    let _ = MemUpload { id: 0 };
}

#[test]
fn every_failure_leaves_nothing() {
    type Fail = fn(&mut T);
    let cases: [(&str, Fail, &str, &str); 9] = [
        (
            "abor",
            |t| t.s.on_control(b"ABOR\r\n", t.now),
            "426",
            "aborted",
        ),
        (
            "connection",
            |t| {
                let e = TransferError::Connection(std::io::ErrorKind::ConnectionReset.into());
                t.s.on_transfer_done(Err(e), t.now)
            },
            "426",
            "connection-lost",
        ),
        (
            "too large",
            |t| t.s.on_transfer_done(Err(TransferError::TooLarge), t.now),
            "552",
            "too-large",
        ),
        (
            "disk full",
            |t| t.s.on_transfer_done(Err(TransferError::NoSpace), t.now),
            "452",
            "no-space",
        ),
        (
            "write error",
            |t| {
                let e = TransferError::Sink(std::io::Error::other("EIO"));
                t.s.on_transfer_done(Err(e), t.now)
            },
            "451",
            "write-error",
        ),
        (
            // PROT P: the data connection closed without close_notify.
            "tls truncated",
            |t| {
                let e = TransferError::Tls(TlsFailure::Truncated);
                t.s.on_transfer_done(Err(e), t.now)
            },
            "426",
            "tls-truncated",
        ),
        (
            "tls broken",
            |t| {
                let e = TransferError::Tls(TlsFailure::Broken);
                t.s.on_transfer_done(Err(e), t.now)
            },
            "426",
            "tls-error",
        ),
        (
            "stalled",
            |t| {
                let later = t.later(6);
                t.s.on_tick(later)
            },
            "426",
            "timeout",
        ),
        (
            "control closed",
            |t| t.s.on_control_eof(t.now),
            "",
            "control-closed",
        ),
    ];
    for (what, fail, code, result) in cases {
        let mut t = drop_box();
        t.start_upload("STOR /incoming/f");
        t.s.on_data_connected(t.now);
        t.out();
        assert!(t.fs.stage("/incoming/f", b"partial"));
        t.s.on_data_progress(7, t.now);
        fail(&mut t);
        let out = t.out();
        assert!(out.starts_with(code), "{what}: {out:?}");
        let r = t.records();
        assert_eq!(r.len(), 1, "{what}");
        assert_eq!(
            (r[0].kind, r[0].result),
            (TransferKind::Stor, result),
            "{what}"
        );
        t.left_nothing("/incoming/f");
        // A completion that comes after all changes nothing.
        t.s.on_transfer_done(Ok(7), t.now);
        t.run();
        t.left_nothing("/incoming/f");
    }
}

#[test]
fn a_commit_that_never_comes_back_is_given_up() {
    let mut t = drop_box();
    t.start_upload("STOR /incoming/slow");
    t.s.on_data_connected(t.now);
    t.out();
    t.fs.stage("/incoming/slow", b"data");
    t.answer = false;
    t.s.on_transfer_done(Ok(4), t.now);
    assert_eq!(t.out(), "", "226 before the commit");
    assert!(t.s.storing());
    // Commands wait for the outcome.
    assert_eq!(t.send("NOOP\r\n"), "");
    let later = t.later(301);
    t.s.on_tick(later);
    assert!(t.out().starts_with("451 Storing took too long"));
    assert!(!t.s.storing());
    // The commit and then the discard were asked for; the late answer to
    // the commit is ignored, and the discard undoes what it did.
    let held = std::mem::take(&mut t.held);
    assert!(matches!(held[0].2, FsRequest::Commit(_)));
    assert!(matches!(held[1].2, FsRequest::Discard(_)));
    t.answer = true;
    for (id, tree, request) in held {
        let answer = t.fs.answer(&tree, request);
        t.s.on_fs(id, answer, t.now);
    }
    t.run();
    assert_eq!(t.out(), "");
    let r = t.records();
    assert_eq!(r[0].result, "timeout");
}

#[test]
fn a_commit_refused_is_553_and_leaves_the_other_file() {
    let mut t = drop_box();
    t.start_upload("STOR /incoming/race");
    t.fs.stage("/incoming/race", b"mine");
    t.answer = false;
    t.s.on_transfer_done(Ok(4), t.now);
    // Another session's upload of that name got there first.
    t.fs.file("incoming/race", 0o600, b"theirs");
    t.answer = true;
    for (id, tree, request) in std::mem::take(&mut t.held) {
        let answer = t.fs.answer(&tree, request);
        t.s.on_fs(id, answer, t.now);
    }
    assert!(t.out().starts_with("553 "));
    assert_eq!(t.fs.contents("/incoming/race").unwrap().0, b"theirs");
    assert_eq!(t.fs.staged(), 0);
    assert_eq!(t.records()[0].result, "exists");
}

#[test]
fn closing_while_committing_keeps_nothing() {
    let mut t = drop_box();
    t.start_upload("STOR /incoming/c");
    t.answer = false;
    t.s.on_transfer_done(Ok(0), t.now);
    t.s.on_control_eof(t.now);
    t.run();
    let held = std::mem::take(&mut t.held);
    assert!(matches!(
        held.last().map(|h| &h.2),
        Some(FsRequest::Discard(_))
    ));
    for (_, tree, request) in held {
        t.fs.answer(&tree, request);
    }
    t.left_nothing("/incoming/c");
}

#[test]
fn stou_names_the_file_it_makes() {
    let mut t = drop_box();
    assert_eq!(t.code("CWD incoming\r\n"), 250);
    t.start_upload("STOU");
    t.s.on_data_connected(t.now);
    // RFC 1123 §4.1.2.9: the 150 names the file.
    assert_eq!(t.out(), "150 FILE: upload\r\n");
    t.s.on_transfer_done(Ok(0), t.now);
    assert!(t.out().starts_with("226 "));
    t.start_upload("STOU");
    t.s.on_data_connected(t.now);
    assert_eq!(t.out(), "150 FILE: upload.1\r\n");
    t.s.on_transfer_done(Ok(0), t.now);
    t.out();
    t.start_upload("STOU report.txt");
    t.s.on_data_connected(t.now);
    assert_eq!(t.out(), "150 FILE: report.txt\r\n");
    t.s.on_transfer_done(Ok(0), t.now);
    t.out();
    assert!(t.fs.contents("/incoming/report.txt").is_some());
    // Outside the drop box, or with a bad name, no.
    assert_eq!(t.code("CWD /pub\r\n"), 250);
    t.actions();
    t.pasv();
    assert_eq!(t.code("STOU\r\n"), 553);
    assert_eq!(t.code("STOU /incoming/.x\r\n"), 553);
}

#[test]
fn type_a_is_the_data_paths_to_convert() {
    let mut t = drop_box();
    assert_eq!(t.code("TYPE A\r\n"), 200);
    assert_eq!(t.start_upload("STOR /incoming/t.txt"), (true, 1000));
    t.s.on_data_connected(t.now);
    assert!(t.out().starts_with("150 Opening ASCII mode"));
}

#[test]
fn free_space_is_checked_at_the_start_and_on_the_way() {
    let mut t = drop_box();
    t.fs.min_free = 100;
    t.fs.free = 50;
    t.pasv();
    assert_eq!(t.code("STOR /incoming/full\r\n"), 452);
    t.left_nothing("/incoming/full");
    t.fs.free = 1 << 30;
    let mut config = uploads_config();
    if let Some(u) = config.uploads.as_mut() {
        u.max_size = 1 << 40;
    }
    let mut t = session_with(config, "127.0.0.1:21", "127.0.0.1:40000");
    t.fs.dir("incoming", 0o733).incoming("/incoming");
    t.fs.min_free = 100;
    t.login();
    t.start_upload("STOR /incoming/big");
    t.s.on_data_connected(t.now);
    t.out();
    // Every few MiB the free space is looked at.
    t.s.on_data_progress(1 << 20, t.now);
    assert_eq!(t.out(), "");
    t.fs.free = 10;
    t.s.on_data_progress(9 << 20, t.now);
    assert!(t.out().starts_with("452 "));
    assert_eq!(t.records()[0].result, "no-space");
    t.left_nothing("/incoming/big");
}
