//! FTPS in the core: AUTH, PBSZ, PROT, the policies, and what the engine
//! is asked to do. The TLS itself is the engine's (tests/ftps.rs).

use super::*;
use crate::core::config::TlsPolicy;

fn with(tls: TlsPolicy) -> T {
    let config = SessionConfig {
        tls,
        ..SessionConfig::default()
    };
    session_with(config, "127.0.0.1:21", "127.0.0.1:40000")
}

fn starts_tls(acts: &[Action<Mem>]) -> bool {
    acts.iter().any(|a| matches!(a, Action::StartTls { .. }))
}

/// AUTH TLS as a client does it: the 234, then the switch, which the
/// engine makes once the 234 is written.
fn auth(t: &mut T) {
    t.s.on_control(b"AUTH TLS\r\n", t.now);
    t.run();
    assert!(t.s.output().starts_with(b"234 "));
    // Not before the 234 is out: it goes in clear.
    assert!(!starts_tls(&t.actions()));
    let n = t.s.output().len();
    t.s.consume_output(n - 1);
    assert!(!starts_tls(&t.actions()));
    t.s.consume_output(1);
    assert!(starts_tls(&t.actions()));
}

#[test]
fn off_is_as_before() {
    let mut t = session();
    t.out();
    assert_eq!(t.send("AUTH TLS\r\n"), "502 AUTH not implemented.\r\n");
    assert_eq!(t.send("PBSZ 0\r\n"), "502 PBSZ not implemented.\r\n");
    assert_eq!(t.send("PROT P\r\n"), "502 PROT not implemented.\r\n");
    assert_eq!(t.send("AUTH\r\n"), "502 AUTH not implemented.\r\n");
    assert_eq!(t.code("CCC\r\n"), 502);
    let feat = t.send("FEAT\r\n");
    assert!(!feat.contains("AUTH") && !feat.contains("PBSZ"), "{feat}");
    assert_eq!(t.code("HELP AUTH\r\n"), 502);
    assert!(!starts_tls(&t.actions()));
    assert!(!t.s.data_protected());
}

#[test]
fn feat_help_and_stat_list_ftps() {
    let mut t = with(TlsPolicy::Optional);
    t.out();
    let feat = t.send("FEAT\r\n");
    let lines: Vec<&str> = feat.lines().collect();
    assert_eq!(lines[1], " AUTH TLS", "{feat}");
    let pbsz = lines.iter().position(|l| *l == " PBSZ").unwrap();
    assert_eq!(lines[pbsz - 1], " PASV", "{feat}");
    assert_eq!(lines[pbsz + 1], " PROT", "{feat}");
    assert_eq!(lines[pbsz + 2], " REST STREAM", "{feat}");
    assert_eq!(t.code("HELP PROT\r\n"), 214);
    assert!(t.send("HELP\r\n").contains(" AUTH PBSZ PROT"));
    assert!(t.send("STAT\r\n").contains("Control connection: clear"));
    let mut t = with(TlsPolicy::Implicit);
    t.out();
    let feat = t.send("FEAT\r\n");
    assert!(
        !feat.contains("AUTH") && feat.contains(" PBSZ\r\n"),
        "{feat}"
    );
}

#[test]
fn auth_pbsz_prot_in_order() {
    let mut t = with(TlsPolicy::Optional);
    t.out();
    assert_eq!(t.code("PBSZ 0\r\n"), 503);
    assert_eq!(t.code("PROT P\r\n"), 503);
    assert_eq!(t.code("AUTH KERBEROS_V4\r\n"), 504);
    assert_eq!(t.code("AUTH\r\n"), 501);
    auth(&mut t);
    assert!(t.s.control_protected());
    assert_eq!(t.code("AUTH TLS\r\n"), 503);
    assert_eq!(t.code("PROT P\r\n"), 503);
    assert_eq!(t.code("PBSZ x\r\n"), 501);
    assert_eq!(t.send("PBSZ 0\r\n"), "200 PBSZ 0 ok.\r\n");
    assert_eq!(t.send("PBSZ 1024\r\n"), "200 PBSZ=0\r\n");
    assert_eq!(t.code("PROT S\r\n"), 536);
    assert_eq!(t.code("PROT E\r\n"), 536);
    assert_eq!(t.code("PROT Q\r\n"), 504);
    assert_eq!(t.code("PROT\r\n"), 501);
    assert!(!t.s.data_protected());
    assert_eq!(t.code("prot p\r\n"), 200);
    assert!(t.s.data_protected());
    // PROT C goes back to clear where the policy allows it.
    assert_eq!(t.code("PROT C\r\n"), 200);
    assert!(!t.s.data_protected());
    assert_eq!(t.code("PROT P\r\n"), 200);
    t.login();
    assert!(
        t.send("STAT\r\n")
            .contains("data connections: TLS (PROT P)")
    );
}

#[test]
fn auth_ssl_and_tls_c_are_synonyms() {
    for mech in ["SSL", "TLS-C", "tls"] {
        let mut t = with(TlsPolicy::Optional);
        t.out();
        assert_eq!(t.code(&format!("AUTH {mech}\r\n")), 234, "{mech}");
    }
}

#[test]
fn auth_resets_the_login_and_drops_what_followed_in_clear() {
    let mut t = with(TlsPolicy::Optional);
    t.login();
    // A command pipelined after AUTH in clear could have been injected:
    // it is not run, inside TLS or out.
    t.s.on_control(b"AUTH TLS\r\nDELE x\r\nNOOP\r\n", t.now);
    let out = t.out();
    assert_eq!(out, "234 AUTH TLS ok: start the TLS handshake.\r\n");
    assert!(starts_tls(&t.actions()));
    assert_eq!(t.out(), "");
    // Whatever comes now is what TLS decrypted.
    assert_eq!(t.code("PWD\r\n"), 530);
    t.login();
    assert_eq!(t.code("PWD\r\n"), 257);
}

#[test]
fn required_refuses_clear_logins_and_transfers() {
    let mut t = with(TlsPolicy::Required);
    t.out();
    assert_eq!(t.code("USER anonymous\r\n"), 530);
    assert_eq!(t.code("PASS x\r\n"), 530);
    auth(&mut t);
    t.login();
    t.pasv();
    assert_eq!(t.code("RETR pub/hello.txt\r\n"), 521);
    assert_eq!(t.code("LIST\r\n"), 521);
    assert_eq!(t.code("NLST\r\n"), 521);
    assert_eq!(t.code("MLSD\r\n"), 521);
    assert!(t.transfer().is_none());
    assert_eq!(t.code("PBSZ 0\r\n"), 200);
    assert_eq!(t.code("PROT C\r\n"), 534);
    assert_eq!(t.code("PROT P\r\n"), 200);
    t.send("RETR pub/hello.txt\r\n");
    assert!(t.transfer().is_some());
    assert!(t.s.data_protected());
}

#[test]
fn implicit_starts_tls_before_the_greeting() {
    let mut t = with(TlsPolicy::Implicit);
    let acts = t.actions();
    assert!(starts_tls(&acts), "{}", acts.len());
    assert!(t.s.control_protected());
    assert!(t.s.data_protected());
    assert!(t.out().starts_with("220 "));
    assert_eq!(t.code("AUTH TLS\r\n"), 503);
    assert_eq!(t.code("PBSZ 0\r\n"), 200);
    assert_eq!(t.code("PROT P\r\n"), 200);
    // Implicit is not `required`: PROT C is allowed.
    assert_eq!(t.code("PROT C\r\n"), 200);
}

/// Implicit TLS behind a PROXY header: the start of the ClientHello may
/// come with the header, before the engine has switched; it goes to TLS.
#[test]
fn input_before_the_switch_goes_to_tls() {
    let mut t = with(TlsPolicy::Implicit);
    t.s.on_control(b"\x16\x03\x01USER x\r\n", t.now);
    let early = t.actions().into_iter().find_map(|a| match a {
        Action::StartTls { early } => Some(early),
        _ => None,
    });
    assert_eq!(early.as_deref(), Some(&b"\x16\x03\x01USER x\r\n"[..]));
    assert!(t.out().starts_with("220 "), "no command was run");
}

#[test]
fn data_tls_failures_are_answered() {
    for (failure, code, result) in [
        (TlsFailure::NotResumed, "522 ", "tls-not-resumed"),
        (TlsFailure::Handshake, "425 ", "tls-handshake"),
        (TlsFailure::Broken, "426 ", "tls-error"),
    ] {
        let mut t = with(TlsPolicy::Implicit);
        t.login();
        t.pasv();
        t.send("RETR pub/hello.txt\r\n");
        assert!(t.transfer().is_some());
        t.s.on_data_connected(t.now);
        assert!(t.out().starts_with("150 "));
        t.s.on_transfer_done(Err(TransferError::Tls(failure)), t.now);
        assert!(t.out().starts_with(code), "{failure:?}");
        let logged = t
            .actions()
            .into_iter()
            .any(|a| matches!(a, Action::Log(Record::Transfer(r)) if r.result == result));
        assert!(logged, "{failure:?}");
    }
}

#[test]
fn a_failed_control_handshake_ends_the_session() {
    let mut t = with(TlsPolicy::Implicit);
    t.out();
    t.s.on_control_tls_failed(t.now);
    assert!(t.s.is_closed());
    let acts = t.actions();
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Log(Record::SessionEnd {
            reason: "tls-error",
            ..
        })
    )));
    assert!(acts.iter().any(|a| matches!(a, Action::Close)));
}
