//! Control-connection behaviour: login, navigation, parameters, FEAT and
//! friends, listings, malformed input. RFC 959, 1123 4.1, 2389, 2428,
//! 2640, 3659, 7151.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aftpd::engine::xfer::LINGER;

use common::client::{self, DM, DO, DONT, IAC, IP, WILL, WONT, crlf_lines};
use common::parse::{must_ls, must_mlsx, parse_eplf, show};
use common::tree::{self, FILE_LEN, FILE_MTIME_MDTM, NAME_FF, NAME_LATIN1, UNLISTED_ROOT_NAMES};
use common::*;

server_tests!(
    greeting_is_220,
    no_greeting_first_reply_is_to_user,
    login_any_user_any_password,
    pass_without_user_is_503,
    login_required_530,
    allowed_before_login,
    acct_is_202,
    host_before_and_after_login,
    pwd_and_cwd,
    pwd_doubles_quotes,
    cwd_refusals_550,
    cwd_dotdot_stops_at_root,
    type_stru_mode,
    port_and_eprt_codes,
    pasv_reply_and_address,
    pasv_on_ipv6_is_522,
    epsv_reply,
    epsv_all_locks_out_other_modes,
    feat_format,
    opts_utf8_and_unknown,
    syst_help_noop_allo_abor,
    stat_no_arg_and_path,
    quit_closes,
    unknown_verbs,
    write_verbs_refused,
    long_line_then_continue,
    bare_lf_and_lower_case,
    pipelined_commands_in_order,
    telnet_sequences,
    list_root_ls_format,
    list_options_are_not_paths,
    listings_in_type_a,
    list_file_and_missing,
    nlst_names,
    mlsd_facts,
    mlsd_refusals,
    mlst_format,
    opts_mlst_selects_facts,
    listings_hide_what_is_not_public,
    eplf_format,
    size_and_mdtm,
    utf8_names_pass_through,
    final_reply_waits_for_data_close,
);

fn greeting_is_220(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::connect(s.addr(fam));
        let g = c.reply();
        assert_eq!(g.code, 220, "{}", g.text());
        c.expect("QUIT", 221);
    }
}

fn no_greeting_first_reply_is_to_user(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new().no_greeting());
    let mut c = Client::connect(s.addr(Family::V4));
    let r = c.cmd("USER anonymous");
    assert_eq!(r.code, 331, "first reply with --no-greeting: {}", r.text());
    c.expect("PASS x", 230);
}

fn login_any_user_any_password(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for (u, p) in [
        ("anonymous", "a@b"),
        ("ftp", ""),
        ("root", "secret"),
        ("x y", "z"),
    ] {
        let mut c = Client::open(&s, Family::V4);
        c.expect(&format!("USER {u}"), 331);
        c.expect(&format!("PASS {p}"), 230);
        c.expect("PWD", 257);
    }
}

fn pass_without_user_is_503(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::open(&s, Family::V4);
    c.expect("PASS x", 503);
    c.expect("PWD", 530);
    c.login_only();
}

fn login_required_530(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::open(&s, Family::V4);
    for cmd in [
        "CWD pub",
        "XCWD pub",
        "CDUP",
        "PWD",
        "XPWD",
        "LIST",
        "NLST",
        "MLSD",
        "MLST pub",
        "RETR pub/file",
        "SIZE pub/file",
        "MDTM pub/file",
        "PASV",
        "EPSV",
        "PORT 127,0,0,1,200,10",
        "EPRT |1|127.0.0.1|51210|",
        "REST 10",
        "TYPE I",
        "STAT pub",
    ] {
        c.expect(cmd, 530);
    }
    // After USER but before PASS: still not logged in.
    c.expect("USER anonymous", 331);
    c.expect("CWD pub", 530);
    c.expect("PASS x", 230);
    c.expect("CWD pub", 250);
}

fn allowed_before_login(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::open(&s, Family::V4);
    c.expect("FEAT", 211);
    c.expect("SYST", 215);
    c.expect("HELP", 214);
    c.expect("NOOP", 200);
    c.expect("OPTS UTF8 ON", 200);
    c.expect("STAT", 211);
    c.login_only();
    c.expect("QUIT", 221);
    // QUIT before login too.
    let mut c = Client::open(&s, Family::V6);
    c.expect("QUIT", 221);
}

fn acct_is_202(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("ACCT whatever", 202);
    c.expect("NOOP", 200);
}

fn host_before_and_after_login(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::open(&s, Family::V4);
    // RFC 7151: a malformed host name is 501, and HOST may come again.
    for bad in ["HOST a b", "HOST a..b", "HOST [ftp.example.org]", "HOST"] {
        c.expect(bad, 501);
    }
    c.expect("HOST ftp.example.org", 220);
    c.login_only();
    c.expect("HOST ftp.example.org", 503);
    c.expect("PWD", 257);
}

/// The quoted path of a 257 reply, with doubled quotes undone.
fn pwd_path(r: &Reply) -> Vec<u8> {
    assert_eq!(r.code, 257, "{}", r.text());
    let l = &r.lines[0];
    assert!(
        l.starts_with(b"257 \""),
        "257 without a quoted path: {}",
        r.text()
    );
    let mut out = Vec::new();
    let mut i = 5;
    loop {
        assert!(i < l.len(), "unterminated path in {}", r.text());
        if l[i] == b'"' {
            if l.get(i + 1) == Some(&b'"') {
                out.push(b'"');
                i += 2;
                continue;
            }
            // The closing quote is followed by a space or the line end.
            assert!(
                i + 1 == l.len() || l[i + 1] == b' ',
                "garbage after the path in {}",
                r.text()
            );
            return out;
        }
        out.push(l[i]);
        i += 1;
    }
}

fn pwd(c: &mut Client) -> String {
    show(&pwd_path(&c.cmd("PWD")))
}

fn pwd_and_cwd(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        assert_eq!(pwd(&mut c), "/");
        c.expect("CWD pub", 250);
        assert_eq!(pwd(&mut c), "/pub");
        assert_eq!(show(&pwd_path(&c.cmd("XPWD"))), "/pub");
        c.expect("CWD a/b/c", 250);
        assert_eq!(pwd(&mut c), "/pub/a/b/c");
        c.expect("CDUP", 250);
        assert_eq!(pwd(&mut c), "/pub/a/b");
        c.expect("XCUP", 250);
        assert_eq!(pwd(&mut c), "/pub/a");
        c.expect("XCWD /pub/a/b/c/", 250);
        assert_eq!(pwd(&mut c), "/pub/a/b/c");
        c.expect("CWD /", 250);
        assert_eq!(pwd(&mut c), "/");
        c.expect("CWD pub/./a/../a", 250);
        assert_eq!(pwd(&mut c), "/pub/a");
        // A relative path after CWD resolves against the new directory.
        c.expect("SIZE readme.txt", 213);
    }
}

fn pwd_doubles_quotes(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("CWD say\"hi\"", 250);
    let r = c.cmd("PWD");
    assert!(
        r.lines[0].starts_with(b"257 \"/say\"\"hi\"\"\""),
        "embedded quotes must be doubled: {}",
        r.text()
    );
    assert_eq!(pwd_path(&r), b"/say\"hi\"");
}

fn cwd_refusals_550(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    for p in [
        "one-byte",
        "pub/file",
        "missing",
        "pub/missing",
        ".git",
        "pub/.hidden",
        "privdir",
        "fifo",
        "escape",
        "up",
        "link-to-file",
    ] {
        c.expect(&format!("CWD {p}"), 550);
        assert_eq!(pwd(&mut c), "/", "a refused CWD {p} must not move");
    }
    c.expect("CWD pub", 250);
    c.expect("CWD file", 550);
    assert_eq!(pwd(&mut c), "/pub");
}

fn cwd_dotdot_stops_at_root(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("CWD ..", 250);
    assert_eq!(pwd(&mut c), "/");
    c.expect("CDUP", 250);
    assert_eq!(pwd(&mut c), "/");
    c.expect("CWD /pub", 250);
    c.expect("CWD ../../..", 250);
    assert_eq!(pwd(&mut c), "/");
    c.expect("CWD /pub/../../pub/a", 250);
    assert_eq!(pwd(&mut c), "/pub/a");
}

fn type_stru_mode(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    for (cmd, code) in [
        ("TYPE A", 200),
        ("TYPE A N", 200),
        ("TYPE I", 200),
        ("TYPE L 8", 200),
        ("type i", 200),
        ("TYPE E", 504),
        ("TYPE A T", 504),
        ("TYPE L 7", 504),
        ("TYPE", 501),
        ("TYPE Q", 501),
        ("TYPE garbage", 501),
        ("STRU F", 200),
        ("STRU R", 504),
        ("MODE S", 200),
        ("MODE B", 504),
    ] {
        c.expect(cmd, code);
    }
}

fn port_and_eprt_codes(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("PORT 127,0,0,1,4,0", 200); // port 1024: the lowest allowed
    c.expect("PORT 127,0,0,1,200,10", 200);
    c.expect("PORT 127,0,0,1,0,21", 504);
    c.expect("PORT 127,0,0,1,3,255", 504); // 1023
    c.expect("PORT 127,0,0,2,200,10", 504);
    c.expect("PORT 10,1,2,3,200,10", 504);
    for bad in [
        "PORT",
        "PORT 127,0,0,1,200",
        "PORT 127,0,0,1,200,10,1",
        "PORT 127,0,0,1,300,10",
        "PORT 127,0,0,256,200,10",
        "PORT a,b,c,d,e,f",
        "PORT 127.0.0.1:5000",
    ] {
        c.expect(bad, 501);
    }
    c.expect("EPRT |1|127.0.0.1|51210|", 200);
    c.expect("EPRT |1|127.0.0.1|80|", 504);
    c.expect("EPRT |1|127.0.0.2|51210|", 504);
    c.expect("EPRT |3|127.0.0.1|51210|", 522);
    for bad in [
        "EPRT",
        "EPRT |1|127.0.0.1|",
        "EPRT |1|127.0.0.1|70000|",
        "EPRT |1|127.0.0.x|51210|",
        "EPRT 1|127.0.0.1|51210",
        "EPRT garbage",
    ] {
        c.expect(bad, 501);
    }
    let mut c6 = Client::login(&s, Family::V6);
    c6.expect("EPRT |2|::1|51210|", 200);
    c6.expect("EPRT |3|::1|51210|", 522);
    c6.expect("EPRT |2|::1|", 501);
}

fn pasv_reply_and_address(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let a = c.pasv();
    assert_eq!(
        a.ip(),
        c.peer_addr().ip(),
        "PASV must advertise the control connection's local address"
    );
    assert_ne!(a.port(), 0);
    // It really listens there, and a listing goes through it.
    let names = nlst_names_in(&mut c, "NLST");
    assert_eq!(names, tree::public_names(b""));
}

fn pasv_on_ipv6_is_522(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V6);
    c.expect("PASV", 522);
    c.epsv();
    c.expect("NOOP", 200);
}

fn epsv_reply(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        let a = c.epsv();
        assert_ne!(a.port(), 0);
        let data = c.get_mode(Mode::Epsv, "RETR one-byte");
        assert_eq!(data, b"x");
    }
}

fn epsv_all_locks_out_other_modes(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        c.expect("EPSV ALL", 200);
        if fam == Family::V4 {
            c.expect("PORT 127,0,0,1,200,10", 503);
            c.expect("PASV", 503);
            c.expect("EPRT |1|127.0.0.1|51210|", 503);
        } else {
            c.expect("EPRT |2|::1|51210|", 503);
        }
        let data = c.get_mode(Mode::Epsv, "RETR pub/a/readme.txt");
        assert_eq!(data, b"readme in a\n");
    }
}

fn feat_format(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::open(&s, Family::V4);
    let r = c.expect("FEAT", 211);
    assert!(r.lines[0].starts_with(b"211-"), "FEAT: {}", r.text());
    assert!(r.last_line().starts_with("211 "), "FEAT: {}", r.text());
    let mut feats = BTreeSet::new();
    let mut mlst = None;
    for l in r.inner() {
        assert!(
            l.len() > 1 && l[0] == b' ' && l[1] != b' ',
            "RFC 2389: a feature line starts with exactly one space: {:?}",
            show(l)
        );
        let l = show(&l[1..]);
        let name = l.split(' ').next().unwrap().to_ascii_uppercase();
        if name == "MLST" {
            mlst = Some(l.clone());
        }
        feats.insert(if name == "REST" {
            l.to_ascii_uppercase()
        } else {
            name
        });
    }
    for f in [
        "EPRT",
        "EPSV",
        "MDTM",
        "MLST",
        "PASV",
        "REST STREAM",
        "SIZE",
        "UTF8",
    ] {
        assert!(feats.contains(f), "FEAT lacks {f}: {}", r.text());
    }
    let mlst = mlst.unwrap();
    for fact in [
        "type*;",
        "size*;",
        "modify*;",
        "perm*;",
        "unique*;",
        "unix.mode*;",
    ] {
        assert!(
            mlst.to_ascii_lowercase().contains(fact),
            "MLST feature should list {fact}: {mlst:?}"
        );
    }
}

fn opts_utf8_and_unknown(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("OPTS UTF8 ON", 200);
    c.expect("OPTS NONSENSE", 501);
    c.expect("OPTS", 501);
    c.expect("NOOP", 200);
}

fn syst_help_noop_allo_abor(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let r = c.expect("SYST", 215);
    assert_eq!(r.lines, vec![b"215 UNIX Type: L8".to_vec()]);
    let r = c.expect("HELP", 214);
    assert!(r.last_line().starts_with("214 "));
    c.expect("NOOP", 200);
    c.expect_one_of("ALLO 1000", &[200, 202]);
    c.expect_one_of("ABOR", &[225, 226]);
    c.expect("NOOP", 200);
}

fn stat_no_arg_and_path(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let r = c.expect("STAT", 211);
    assert!(r.is_multiline(), "STAT: {}", r.text());
    assert!(r.lines[0].starts_with(b"211-") && r.last_line().starts_with("211 "));

    for (path, dir) in [("pub", &b"pub"[..]), ("/", b""), ("", b"")] {
        let cmd = if path.is_empty() {
            "STAT .".to_string()
        } else {
            format!("STAT {path}")
        };
        let r = c.expect(&cmd, 213);
        assert!(r.lines[0].starts_with(b"213-"), "{cmd}: {}", r.text());
        assert!(r.last_line().starts_with("213 "), "{cmd}: {}", r.text());
        let names: BTreeSet<Vec<u8>> = r
            .inner()
            .iter()
            .map(|l| must_ls(l.strip_prefix(b" ").unwrap_or(l)).name)
            .collect();
        assert_eq!(names, tree::public_names(dir), "{cmd}");
    }
    let r = c.expect("STAT pub/file", 213);
    assert_eq!(r.inner().len(), 1, "STAT of a file: {}", r.text());
    let l = &r.inner()[0];
    let ls = must_ls(l.strip_prefix(b" ").unwrap_or(l));
    assert_eq!(ls.size, FILE_LEN as u64);
    c.expect("STAT missing", 450);
    c.expect("STAT .git", 450);
    c.expect("NOOP", 200);
}

fn quit_closes(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        c.expect("QUIT", 221);
        let rest = c.expect_eof(Duration::from_secs(5));
        assert!(rest.is_empty(), "bytes after 221: {:?}", show(&rest));
    }
}

fn unknown_verbs(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::open(&s, Family::V4);
    // Before login, as clients do.
    c.expect("AUTH TLS", 502);
    c.expect("AUTH SSL", 502);
    c.login_only();
    c.expect("FROB", 500);
    c.expect("XYZZY a b c", 500);
    c.expect("AUTH TLS", 502);
    c.expect("NOOP", 200);
}

fn write_verbs_refused(kind: Kind) {
    let (t, s) = setup(kind, Opts::new());
    let before = t.snapshot();
    let mut c = Client::login(&s, Family::V4);
    for (cmd, code) in [
        ("STOR new.txt", 553),
        ("STOR one-byte", 553),
        ("STOU", 553),
        ("APPE one-byte", 550),
        ("DELE one-byte", 550),
        ("DELE pub/file", 550),
        ("MKD newdir", 550),
        ("XMKD newdir", 550),
        ("RMD pub/a/b/c", 550),
        ("XRMD pub/a/b/c", 550),
        ("RNFR one-byte", 550),
        ("RNTO renamed", 503),
        ("SITE CHMOD 777 one-byte", 500),
        ("SITE EXEC /bin/sh", 500),
        ("SITE", 501),
        ("SMNT /", 502),
        ("REIN", 502),
    ] {
        let r = c.refused(cmd.as_bytes(), code);
        assert!(!r.lines.is_empty());
    }
    // Upload verbs over a passive connection too: no 150, nothing read.
    for (cmd, code) in [("STOR p.txt", 553), ("APPE one-byte", 550), ("STOU", 553)] {
        let t = c.transfer(Mode::Pasv, cmd.as_bytes());
        assert_eq!(t.prelim.code, code, "{cmd}: {}", t.prelim.text());
    }
    c.expect("NOOP", 200);
    c.expect("QUIT", 221);
    drop(c);
    assert_eq!(before, t.snapshot(), "the tree changed");
}

fn long_line_then_continue(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'A', 100 * 1024));
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line);
    let r = c.reply();
    assert_eq!(r.code, 500, "a 100 KiB line: {}", r.text());
    c.expect("NOOP", 200);
    c.expect("PWD", 257);
    // Also a long RETR argument.
    let mut line = b"RETR ".to_vec();
    line.extend(std::iter::repeat_n(b'b', 100 * 1024));
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line);
    let r = c.reply();
    assert_eq!(r.code, 500, "a 100 KiB RETR line: {}", r.text());
    c.expect("NOOP", 200);
    s.assert_no_crash();
}

fn bare_lf_and_lower_case(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::open(&s, Family::V4);
    c.send_raw(b"user anonymous\n");
    assert_eq!(c.reply().code, 331);
    c.send_raw(b"pass x\n");
    assert_eq!(c.reply().code, 230);
    c.send_raw(b"noop\n");
    assert_eq!(c.reply().code, 200);
    c.send_raw(b"cWd pub\n");
    assert_eq!(c.reply().code, 250);
    c.send_raw(b"PwD\r\n");
    assert_eq!(pwd_path(&c.reply()), b"/pub");
    c.send_raw(b"type i\n");
    assert_eq!(c.reply().code, 200);
    c.expect("size file", 213);
}

fn pipelined_commands_in_order(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::open(&s, Family::V4);
    c.send_raw(b"USER a\r\nPASS b\r\nPWD\r\nCWD pub\r\nPWD\r\nTYPE I\r\nSIZE file\r\nNOOP\r\nFROB\r\nSTRU F\r\n");
    let codes: Vec<u16> = (0..10).map(|_| c.reply().code).collect();
    assert_eq!(codes, [331, 230, 257, 250, 257, 200, 213, 200, 500, 200]);
    // And a pipelined data command.
    let a = c.pasv();
    let data_sock = client::connect_tuned(a, None, None).unwrap();
    c.send_raw(b"RETR /one-byte\r\nNOOP\r\n");
    assert_eq!(c.reply().code, 150);
    let mut ds = data_sock;
    let d = client::read_to_eof(&mut ds, client::TIMEOUT).unwrap();
    assert_eq!(d, b"x");
    assert_eq!(c.reply().code, 226);
    assert_eq!(c.reply().code, 200);
}

fn telnet_sequences(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    // IAC IP IAC DM before ABOR, nothing in progress.
    c.send_raw(&[IAC, IP, IAC, DM]);
    c.send_raw(b"ABOR\r\n");
    let r = c.reply();
    assert!(
        matches!(r.code, 225 | 226),
        "ABOR after IP/DM: {}",
        r.text()
    );
    // IAC WILL x -> IAC DONT x; IAC DO x -> IAC WONT x.
    c.send_raw(&[IAC, WILL, 24]);
    c.send_raw(b"NOOP\r\n");
    assert_eq!(c.reply().code, 200);
    c.send_raw(&[IAC, DO, 1]);
    c.send_raw(b"NOOP\r\n");
    assert_eq!(c.reply().code, 200);
    assert!(
        c.telnet.contains(&(DONT, 24)),
        "IAC WILL 24 must be refused with IAC DONT 24; got {:?}",
        c.telnet
    );
    assert!(
        c.telnet.contains(&(WONT, 1)),
        "IAC DO 1 must be refused with IAC WONT 1; got {:?}",
        c.telnet
    );
    // A Telnet command inside a command line is dropped.
    c.send_raw(b"NO");
    c.send_raw(&[IAC, 241]); // IAC NOP
    c.send_raw(b"OP\r\n");
    assert_eq!(c.reply().code, 200);
    // IAC IAC is a literal 0xff byte.
    let mut line = b"SIZE ".to_vec();
    for &b in NAME_FF {
        line.push(b);
        if b == IAC {
            line.push(IAC);
        }
    }
    let r = c.cmd_bytes(&line);
    assert_eq!(r.code, 213, "SIZE with IAC IAC: {}", r.text());
}

/// The names of an NLST-style listing.
fn nlst_names_in(c: &mut Client, cmd: &str) -> BTreeSet<Vec<u8>> {
    let data = c.get(cmd);
    crlf_lines(&data).into_iter().collect()
}

fn list_names(c: &mut Client, mode: Mode, cmd: &str) -> Vec<common::parse::LsLine> {
    let data = c.get_mode(mode, cmd);
    crlf_lines(&data).iter().map(|l| must_ls(l)).collect()
}

fn list_root_ls_format(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for &mode in client::modes(fam) {
            let lines = list_names(&mut c, mode, "LIST");
            let names: BTreeSet<Vec<u8>> = lines.iter().map(|l| l.name.clone()).collect();
            assert_eq!(names, tree::public_names(b""), "LIST in {mode:?}");
            for l in &lines {
                assert_eq!((l.owner.as_str(), l.group.as_str()), ("ftp", "ftp"));
                let is_dir = tree::public_dirs().contains(&l.name);
                assert_eq!(
                    l.kind,
                    if is_dir { b'd' } else { b'-' },
                    "{}",
                    show(&l.name)
                );
                // Only world-readable (and, for directories, searchable)
                // entries are listed, and the bits shown say so.
                let other = &l.perms[6..];
                if is_dir {
                    assert_eq!(other, "r-x", "{}", show(&l.name));
                } else {
                    assert!(other.starts_with('r'), "{}", show(&l.name));
                }
                if !is_dir {
                    assert_eq!(l.size, tree::public_files()[&l.name].len() as u64);
                    assert_eq!(
                        (l.month.as_str(), l.day, l.time_or_year.as_str()),
                        ("Nov", 20, "2021"),
                        "date of {}",
                        show(&l.name)
                    );
                }
            }
        }
    }
}

/// In TYPE A a listing is still CRLF lines: converted once, not twice.
fn listings_in_type_a(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("TYPE A", 200);
    for cmd in ["LIST", "NLST", "MLSD"] {
        let d = c.get(cmd);
        assert!(
            client::find(&d, b"\r\r").is_none(),
            "{cmd} in TYPE A: CR CR"
        );
        let lines = crlf_lines(&d);
        assert_eq!(
            lines.len(),
            tree::public_names(b"").len(),
            "{cmd} in TYPE A"
        );
    }
}

fn list_options_are_not_paths(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let root = tree::public_names(b"");
    let pubn = tree::public_names(b"pub");
    for (cmd, want) in [
        ("LIST -la", &root),
        ("LIST -l", &root),
        ("LIST -a", &root),
        ("LIST -a pub", &pubn),
        ("LIST -la pub", &pubn),
        ("LIST pub", &pubn),
        ("LIST /pub/", &pubn),
    ] {
        let names: BTreeSet<Vec<u8>> = list_names(&mut c, Mode::Pasv, cmd)
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(&names, want, "{cmd}");
    }
    let names = nlst_names_in(&mut c, "NLST -a");
    assert_eq!(names, root, "NLST -a");
}

fn list_file_and_missing(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        let mode = c.default_mode();
        let lines = list_names(&mut c, mode, "LIST pub/file");
        assert_eq!(lines.len(), 1, "LIST of a file gives one line");
        assert!(lines[0].name.ends_with(b"file"));
        assert_eq!(lines[0].kind, b'-');
        assert_eq!(lines[0].size, FILE_LEN as u64);
        for p in [
            "missing",
            "pub/missing",
            ".git",
            "privdir",
            "escape",
            "up",
            "fifo",
        ] {
            c.refused(format!("LIST {p}").as_bytes(), 550);
            c.refused(format!("NLST {p}").as_bytes(), 550);
        }
        c.expect("NOOP", 200);
    }
}

fn nlst_names(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for &mode in client::modes(fam) {
            let data = c.get_mode(mode, "NLST");
            let names: BTreeSet<Vec<u8>> = crlf_lines(&data).into_iter().collect();
            assert_eq!(names, tree::public_names(b""), "NLST in {mode:?}");
        }
        c.expect("CWD pub/a", 250);
        let names = nlst_names_in(&mut c, "NLST");
        assert_eq!(names, tree::public_names(b"pub/a"));
    }
}

fn mlsd_lines(c: &mut Client, cmd: &str) -> Vec<common::parse::Mlsx> {
    let data = c.get(cmd);
    crlf_lines(&data).iter().map(|l| must_mlsx(l)).collect()
}

fn mlsd_facts(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    for fam in FAMILIES {
        let mut c = Client::login(&s, fam);
        for (cmd, dir) in [
            ("MLSD", &b""[..]),
            ("MLSD pub", b"pub"),
            ("MLSD /pub/a", b"pub/a"),
        ] {
            let lines = mlsd_lines(&mut c, cmd);
            let names: BTreeSet<Vec<u8>> = lines.iter().map(|l| l.name.clone()).collect();
            assert_eq!(names, tree::public_names(dir), "{cmd}");
            for l in &lines {
                let f = &l.facts;
                let t = f.get("type").map(String::as_str);
                assert!(
                    t != Some("cdir") && t != Some("pdir"),
                    "{cmd}: no cdir/pdir entries"
                );
                let mut path = dir.to_vec();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(&l.name);
                let is_dir = tree::public_dirs().contains(&path);
                if is_dir {
                    assert_eq!(t, Some("dir"), "{}", show(&path));
                    assert_eq!(f.get("perm").map(String::as_str), Some("el"));
                    assert_eq!(f.get("unix.mode").map(String::as_str), Some("0755"));
                } else {
                    assert_eq!(t, Some("file"), "{}", show(&path));
                    assert_eq!(f.get("perm").map(String::as_str), Some("r"));
                    assert_eq!(f.get("unix.mode").map(String::as_str), Some("0644"));
                    assert_eq!(
                        f.get("size"),
                        Some(&tree::public_files()[&path].len().to_string()),
                        "{}",
                        show(&path)
                    );
                    assert_eq!(
                        f.get("modify").map(String::as_str),
                        Some(FILE_MTIME_MDTM),
                        "{}",
                        show(&path)
                    );
                }
                assert!(
                    f.get("unique").is_some_and(|u| !u.is_empty()),
                    "unique fact on {}",
                    show(&path)
                );
            }
        }
        // unique differs between different files.
        let root = mlsd_lines(&mut c, "MLSD");
        let uniq = |n: &[u8]| root.iter().find(|l| l.name == n).unwrap().facts["unique"].clone();
        assert_ne!(uniq(b"one-byte"), uniq(b"empty"));
    }
}

fn mlsd_refusals(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.refused(b"MLSD pub/file", 501);
    c.refused(b"MLSD one-byte", 501);
    c.refused(b"MLSD missing", 550);
    c.refused(b"MLSD .git", 550);
    c.refused(b"MLSD privdir", 550);
    c.refused(b"MLSD up", 550);
    c.expect("NOOP", 200);
}

/// MLST: `250-...`, one line with a single leading space holding facts
/// and the path, `250 ...`.
fn mlst(c: &mut Client, arg: &str) -> common::parse::Mlsx {
    let r = c.expect(&format!("MLST {arg}"), 250);
    assert_eq!(r.lines.len(), 3, "MLST {arg}: {}", r.text());
    assert!(r.lines[0].starts_with(b"250-"), "{}", r.text());
    assert!(r.lines[2].starts_with(b"250 "), "{}", r.text());
    let l = &r.lines[1];
    assert!(
        l.len() > 1 && l[0] == b' ' && l[1] != b' ',
        "MLST fact line starts with exactly one space: {:?}",
        show(l)
    );
    must_mlsx(&l[1..])
}

fn mlst_format(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let m = mlst(&mut c, "pub/file");
    assert!(m.name.ends_with(b"pub/file"), "{}", show(&m.name));
    assert_eq!(m.facts["type"], "file");
    assert_eq!(m.facts["size"], FILE_LEN.to_string());
    assert_eq!(m.facts["modify"], FILE_MTIME_MDTM);
    assert_eq!(m.facts["perm"], "r");
    let m = mlst(&mut c, "pub");
    assert_eq!(m.facts["type"], "dir");
    assert_eq!(m.facts["perm"], "el");
    let m = mlst(&mut c, "link-to-file");
    assert_eq!(m.facts["type"], "file");
    assert_eq!(m.facts["size"], FILE_LEN.to_string());
    c.expect("CWD pub", 250);
    let m = mlst(&mut c, "file");
    assert_eq!(m.facts["size"], FILE_LEN.to_string());
    for p in [
        "missing",
        ".secret",
        "/.git/config",
        "/private.txt",
        "/privdir",
        "/escape",
        "/fifo",
    ] {
        c.expect(&format!("MLST {p}"), 550);
    }
}

fn opts_mlst_selects_facts(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("OPTS MLST type;size;", 200);
    let m = mlst(&mut c, "pub/file");
    assert_eq!(
        m.facts.keys().map(String::as_str).collect::<Vec<_>>(),
        ["size", "type"],
        "after OPTS MLST type;size;"
    );
    for l in mlsd_lines(&mut c, "MLSD pub") {
        let keys: Vec<&str> = l.facts.keys().map(String::as_str).collect();
        assert!(
            keys == ["size", "type"] || keys == ["type"],
            "MLSD facts after OPTS MLST: {keys:?}"
        );
    }
    // RFC 3659 7.9: FEAT shows the selection.
    let r = c.expect("FEAT", 211);
    let line = r
        .inner()
        .iter()
        .map(|l| show(l).to_ascii_lowercase())
        .find(|l| l.starts_with(" mlst "))
        .expect("MLST in FEAT");
    assert!(line.contains("type*;") && line.contains("size*;"), "{line}");
    assert!(
        line.contains("modify;") && !line.contains("modify*"),
        "{line}"
    );
    // An empty selection: facts are then absent. RFC 3659 §7.9: the reply
    // names the facts after one space, and none when there are none.
    let r = c.expect("OPTS MLST", 200);
    assert_eq!(r.lines[0], b"200 MLST OPTS", "{}", r.text());
    let r = c.expect("MLST pub/file", 250);
    let l = &r.lines[1];
    assert!(l.starts_with(b" "), "{}", r.text());
}

fn listings_hide_what_is_not_public(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    let list = c.get("LIST");
    let nlst = c.get("NLST");
    let mlsd = c.get("MLSD");
    let stat = c.expect("STAT /", 213);
    let mut stat_bytes = Vec::new();
    for l in stat.inner() {
        stat_bytes.extend_from_slice(l);
        stat_bytes.extend_from_slice(b"\r\n");
    }
    for (what, data, names) in [
        (
            "LIST",
            &list,
            crlf_lines(&list)
                .iter()
                .map(|l| must_ls(l).name)
                .collect::<Vec<_>>(),
        ),
        ("NLST", &nlst, crlf_lines(&nlst)),
        (
            "MLSD",
            &mlsd,
            crlf_lines(&mlsd)
                .iter()
                .map(|l| must_mlsx(l).name)
                .collect(),
        ),
        (
            "STAT",
            &stat_bytes,
            stat.inner()
                .iter()
                .map(|l| must_ls(l.strip_prefix(b" ").unwrap_or(l)).name)
                .collect(),
        ),
    ] {
        let set: BTreeSet<Vec<u8>> = names.iter().cloned().collect();
        assert_eq!(set.len(), names.len(), "{what}: duplicate names");
        for bad in UNLISTED_ROOT_NAMES {
            assert!(!set.contains(*bad), "{what} lists {:?}", show(bad));
        }
        assert!(set.contains(&b"link-to-file"[..]), "{what}: link-to-file");
        assert!(
            set.contains(NAME_FF),
            "{what}: the 0xff name, byte for byte"
        );
        assert!(set.contains(NAME_LATIN1), "{what}: the latin-1 name");
        assert!(set.contains("café.txt".as_bytes()), "{what}: café.txt");
        assert!(set.contains("日本.txt".as_bytes()), "{what}: 日本.txt");
        assert!(
            set.contains(&b"with space.txt"[..]),
            "{what}: with space.txt"
        );
        // The symlink's target is never revealed.
        assert!(
            client::find(data, b"->").is_none(),
            "{what} shows a link target"
        );
        assert!(
            client::find(data, b"pub/file").is_none(),
            "{what} shows a link target"
        );
        assert!(client::find(data, b"/etc").is_none(), "{what} shows /etc");
    }
    // link-to-file is a regular file with the target's size.
    let l = crlf_lines(&list)
        .iter()
        .map(|l| must_ls(l))
        .find(|l| l.name == b"link-to-file")
        .unwrap();
    assert_eq!((l.kind, l.size), (b'-', FILE_LEN as u64));
    let m = crlf_lines(&mlsd)
        .iter()
        .map(|l| must_mlsx(l))
        .find(|l| l.name == b"link-to-file")
        .unwrap();
    assert_eq!(m.facts["type"], "file");
    assert_eq!(m.facts["size"], FILE_LEN.to_string());
    // pub/.hidden is not listed in pub.
    for cmd in ["NLST pub", "LIST pub", "MLSD pub"] {
        let d = c.get(cmd);
        assert!(
            client::find(&d, b".hidden").is_none(),
            "{cmd} lists .hidden"
        );
    }
    c.assert_nothing_leaked();
}

fn eplf_format(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new().arg("--list-format").arg("eplf"));
    let mut c = Client::login(&s, Family::V4);
    let data = c.get("LIST");
    let mut names = BTreeSet::new();
    for l in crlf_lines(&data) {
        let e = parse_eplf(&l).unwrap_or_else(|| panic!("not EPLF: {:?}", show(&l)));
        let is_dir = tree::public_dirs().contains(&e.name);
        if is_dir {
            assert!(e.facts.iter().any(|f| f == "/"), "{:?}", e);
        } else {
            assert!(e.facts.iter().any(|f| f == "r"), "{:?}", e);
            let size = tree::public_files()[&e.name].len();
            assert!(e.facts.contains(&format!("s{size}")), "{:?}", e);
        }
        names.insert(e.name);
    }
    assert_eq!(names, tree::public_names(b""));
    // NLST and MLSD are unaffected.
    assert_eq!(nlst_names_in(&mut c, "NLST"), tree::public_names(b""));
}

fn size_and_mdtm(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("TYPE I", 200);
    let r = c.expect("SIZE pub/file", 213);
    assert_eq!(r.first_line(), format!("213 {FILE_LEN}"));
    assert_eq!(c.expect("SIZE empty", 213).first_line(), "213 0");
    assert_eq!(
        c.expect("SIZE link-to-file", 213).first_line(),
        format!("213 {FILE_LEN}")
    );
    c.expect("SIZE pub", 550);
    c.expect("SIZE missing", 550);
    c.expect("SIZE .secret", 550);
    c.expect("SIZE private.txt", 550);
    c.expect("SIZE fifo", 550);
    c.expect("TYPE A", 200);
    c.expect("SIZE text.txt", 550);
    c.expect("TYPE I", 200);
    let r = c.expect("MDTM pub/file", 213);
    assert_eq!(r.first_line(), format!("213 {FILE_MTIME_MDTM}"));
    c.expect("MDTM missing", 550);
    c.expect("MDTM .secret", 550);
    c.expect("MDTM private.txt", 550);
}

fn utf8_names_pass_through(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    c.expect("OPTS UTF8 ON", 200);
    let d = c.get("RETR café.txt");
    assert_eq!(d, "café content\n".as_bytes());
    let d = c.get("RETR 日本.txt");
    assert_eq!(d, "日本 content\n".as_bytes());
    let d = c.get_bytes(b"RETR caf\xe9-latin1.txt");
    assert_eq!(d, b"latin-1 name\n");
    let d = c.get("RETR with space.txt");
    assert_eq!(d, b"spaces in the name\n");
    let r = c.cmd("SIZE 日本.txt");
    assert_eq!(r.first_line(), format!("213 {}", "日本 content\n".len()));
}

/// When fd 0 is not a socket, ftpd takes the endpoints from tcpserver's
/// environment (TCPLOCALIP/TCPLOCALPORT/TCPREMOTEIP/TCPREMOTEPORT).
#[test]
fn ftpd_on_pipes_uses_tcpserver_env() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let tree = Tree::new();
    let log = std::fs::File::create(tree.log_path()).unwrap();
    let mut cmd = common::server::ftpd_command(Kind::Ftpd, &Opts::new(), &tree.root);
    cmd.env("TCPLOCALIP", "127.0.0.1")
        .env("TCPLOCALPORT", "2121")
        .env("TCPREMOTEIP", "127.0.0.9")
        .env("TCPREMOTEPORT", "5555")
        .env("PROTO", "TCP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    let mut child: std::process::Child = cmd.spawn().unwrap();
    drop(cmd);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        let _ = tx.send(out);
    });
    stdin
        .write_all(b"USER anonymous\r\nPASS x\r\nTYPE I\r\nSIZE pub/file\r\nPWD\r\nQUIT\r\n")
        .unwrap();
    let out = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(o) => o,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ftpd on pipes did not finish after QUIT within 10 s");
        }
    };
    drop(stdin);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ftpd did not exit after QUIT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let replies = client::parse_replies(&out);
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [220, 331, 230, 200, 213, 257, 221],
        "{:?}",
        show(&out)
    );
    assert_eq!(replies[4].first_line(), format!("213 {FILE_LEN}"));
    assert!(st.success(), "ftpd exit status after QUIT: {st}");
    let log = std::fs::read_to_string(tree.log_path()).unwrap();
    assert!(
        log.lines()
            .map(common::server::log_record)
            .any(|l| l.starts_with("start ") && l.contains("peer=127.0.0.9:5555")),
        "start line with the TCPREMOTEIP/PORT peer; log:\n{log}"
    );
    let _ = Command::new("true");
}

/// After the last byte the server waits for the client to close its end
/// of the data connection before the 226: a client that read the data has
/// read the 150 before it, so the two cannot arrive in one read (aria2
/// then waits in vain for a 226 it already holds). The wait is bounded
/// (LINGER): a client that keeps the connection open until the 226 still
/// gets it. Only lower bounds on time are checked (a slow machine cannot
/// fail them): the time since the command was sent, which comes before
/// the server's last byte.
fn final_reply_waits_for_data_close(kind: Kind) {
    let (_t, s) = setup(kind, Opts::new());
    let mut c = Client::login(&s, Family::V4);
    for mode in client::ALL_MODES_V4 {
        for cmd in ["RETR empty", "RETR pub/file", "NLST pub"] {
            for hold in [false, true] {
                let what = format!("{cmd} in {mode:?} (holding: {hold})");
                let data = c.setup(mode, None);
                let sent = Instant::now();
                c.send(cmd.as_bytes());
                assert_eq!(c.reply().code, 150, "{what}");
                let mut stream = match data {
                    Data::Passive(s) => s,
                    Data::Active(l) => client::accept_bounded(&l, client::TIMEOUT).unwrap().0,
                };
                let bytes = client::read_to_eof(&mut stream, client::TIMEOUT).unwrap();
                assert_eq!(bytes.is_empty(), cmd == "RETR empty", "{what}");
                let early = if hold {
                    // The wait runs out: the 226 comes with the
                    // connection still open.
                    Some(c.reply())
                } else {
                    c.reply_within(Duration::from_millis(50))
                };
                if let Some(r) = &early {
                    assert_eq!(r.code, 226, "{what}: {}", r.text());
                    assert!(
                        sent.elapsed() >= LINGER,
                        "{what}: 226 before the client closed the data connection"
                    );
                }
                drop(stream);
                if early.is_none() {
                    assert_eq!(c.reply().code, 226, "{what}");
                }
            }
        }
    }
}
