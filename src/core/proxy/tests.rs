use super::*;
use proptest::prelude::*;

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn policy() -> ProxyPolicy {
    ProxyPolicy {
        from: vec![
            Net::parse("10.0.0.0/8").unwrap(),
            Net::parse("::1").unwrap(),
        ],
    }
}

fn socket() -> Endpoints {
    Endpoints {
        local: Some("10.1.1.1:21".parse().unwrap()),
        peer: Some("10.9.9.9:40000".parse().unwrap()),
    }
}

fn reader() -> HeaderReader {
    HeaderReader::new(&policy(), socket(), Instant::now(), HEADER_TIMEOUT).unwrap()
}

/// A v2 header: command (0 LOCAL, 1 PROXY), family and protocol byte,
/// then the payload (addresses and TLVs).
fn v2(command: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.push(0x20 | command);
    h.push(fam);
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// The IPv4 payload for 192.0.2.7:5000 -> 198.51.100.1:21.
fn v4_payload() -> Vec<u8> {
    let mut p = vec![192, 0, 2, 7, 198, 51, 100, 1];
    p.extend_from_slice(&5000u16.to_be_bytes());
    p.extend_from_slice(&21u16.to_be_bytes());
    p
}

fn client(v: &Verdict) -> (SocketAddr, &[u8]) {
    match v {
        Verdict::Client { ends, rest } => {
            assert_eq!(
                ends.local,
                socket().local,
                "the local end stays the socket's"
            );
            (ends.peer.unwrap(), rest)
        }
        other => panic!("not a client: {other:?}"),
    }
}

fn refused(v: Verdict) -> Refusal {
    match v {
        Verdict::Refused(r) => r,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn untrusted_sources_are_refused_before_reading() {
    let p = policy();
    let now = Instant::now();
    let stranger = Endpoints {
        peer: Some("192.0.2.1:1234".parse().unwrap()),
        ..socket()
    };
    let e = HeaderReader::new(&p, stranger, now, HEADER_TIMEOUT).unwrap_err();
    assert_eq!(e, Refusal::Untrusted);
    let unknown = Endpoints {
        peer: None,
        ..socket()
    };
    assert_eq!(
        HeaderReader::new(&p, unknown, now, HEADER_TIMEOUT).unwrap_err(),
        Refusal::Untrusted
    );
    let mapped = Endpoints {
        peer: Some("[::ffff:10.2.3.4]:1".parse().unwrap()),
        ..socket()
    };
    assert!(HeaderReader::new(&p, mapped, now, HEADER_TIMEOUT).is_ok());
}

#[test]
fn v1_in_one_read_keeps_what_follows() {
    let mut r = reader();
    let v = r.feed(b"PROXY TCP4 192.0.2.7 198.51.100.1 5000 21\r\nUSER ftp\r\nPASS x\r\n");
    let (peer, rest) = client(&v);
    assert_eq!(peer, "192.0.2.7:5000".parse().unwrap());
    assert_eq!(rest, b"USER ftp\r\nPASS x\r\n");
}

#[test]
fn v1_tcp6_and_unknown() {
    let v = reader().feed(b"PROXY TCP6 2001:db8::7 2001:db8::1 5000 21\r\n");
    assert_eq!(client(&v).0, "[2001:db8::7]:5000".parse().unwrap());
    // A mapped address is the IPv4 client it stands for.
    let v = reader().feed(b"PROXY TCP6 ::ffff:192.0.2.7 ::ffff:198.51.100.1 5000 21\r\n");
    assert_eq!(client(&v).0, "192.0.2.7:5000".parse().unwrap());
    assert_eq!(reader().feed(b"PROXY UNKNOWN\r\n"), Verdict::Check);
}

#[test]
fn v1_byte_by_byte() {
    let input = b"PROXY TCP4 192.0.2.7 198.51.100.1 5000 21\r\nNOOP\r\n";
    let mut r = reader();
    let header_len = input.len() - 6;
    for (i, b) in input.iter().enumerate().take(header_len - 1) {
        assert_eq!(r.feed(&[*b]), Verdict::More, "after byte {i}");
    }
    let v = r.feed(&input[header_len - 1..]);
    let (peer, rest) = client(&v);
    assert_eq!(peer.port(), 5000);
    assert_eq!(rest, b"NOOP\r\n");
}

#[test]
fn v1_needs_crlf_within_107_bytes() {
    let mut r = reader();
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(106, b'x');
    assert_eq!(r.feed(&line), Verdict::More);
    let why = refused(r.feed(b"x"));
    assert_eq!(why.reason(), "malformed");
    // A bare LF is not the end of a v1 line.
    let why = refused(reader().feed(b"PROXY TCP4 192.0.2.7 198.51.100.1 5000 21\n"));
    assert_eq!(why.reason(), "malformed");
}

#[test]
fn v2_ipv4_with_tlvs_and_pipelined_input() {
    let mut payload = v4_payload();
    // TLVs: an authority, a unique id, a NOOP: all ignored.
    payload.extend_from_slice(&[0x02, 0, 11]);
    payload.extend_from_slice(b"example.org");
    payload.extend_from_slice(&[0x05, 0, 4, 1, 2, 3, 4]);
    payload.extend_from_slice(&[0x04, 0, 0]);
    let mut input = v2(1, 0x11, &payload);
    let header_len = input.len();
    input.extend_from_slice(b"USER ftp\r\n");
    let v = reader().feed(&input);
    let (peer, rest) = client(&v);
    assert_eq!(peer, "192.0.2.7:5000".parse().unwrap());
    assert_eq!(rest, b"USER ftp\r\n");
    // Split anywhere, in two reads: the same.
    for cut in 1..input.len() {
        let mut r = reader();
        let first = r.feed(&input[..cut]);
        // Once the header is complete, later bytes go to the session.
        let (v, later) = if cut >= header_len {
            (first, &input[cut..])
        } else {
            assert_eq!(first, Verdict::More, "cut at {cut}");
            (r.feed(&input[cut..]), &[][..])
        };
        let (p, rest) = client(&v);
        assert_eq!(p, peer, "cut at {cut}");
        assert_eq!([rest, later].concat(), &input[header_len..], "cut at {cut}");
    }
}

#[test]
fn v2_ipv6() {
    let mut p = "2001:db8::7"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    p.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p.extend_from_slice(&[0x13, 0x88, 0, 21]);
    let v = reader().feed(&v2(1, 0x21, &p));
    assert_eq!(client(&v).0, "[2001:db8::7]:5000".parse().unwrap());
}

#[test]
fn v2_local_is_a_check_whatever_it_carries() {
    // What HAProxy sends with its health checks.
    assert_eq!(reader().feed(&v2(0, 0x00, &[])), Verdict::Check);
    assert_eq!(reader().feed(&v2(0, 0x11, &v4_payload())), Verdict::Check);
}

#[test]
fn v2_without_a_tcp_client_is_refused() {
    for (fam, payload) in [
        (0x12, v4_payload()),   // UDP
        (0x10, v4_payload()),   // IPv4, protocol unspecified
        (0x00, Vec::new()),     // PROXY, family unspecified
        (0x31, vec![0u8; 216]), // a Unix socket
    ] {
        let why = refused(reader().feed(&v2(1, fam, &payload)));
        assert_eq!(why.reason(), "no-client", "family {fam:#x}");
    }
}

#[test]
fn v2_length_past_what_arrives_waits() {
    let mut h = v2(1, 0x11, &v4_payload());
    // Claims 200 bytes of payload; 12 come.
    h[14..16].copy_from_slice(&200u16.to_be_bytes());
    let mut r = reader();
    assert_eq!(r.feed(&h), Verdict::More);
    assert!(!r.expired(Instant::now()));
    assert!(r.expired(r.deadline()));
}

#[test]
fn v2_too_long_is_refused_at_once() {
    let mut h = v2(1, 0x11, &v4_payload());
    h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let why = refused(reader().feed(&h));
    assert_eq!(why, Refusal::TooLong(16 + 65535));
    assert!(why.to_string().starts_with("too-long ("), "{why}");
}

#[test]
fn garbage_and_bad_versions_are_malformed() {
    for input in [
        &b"USER anonymous\r\n"[..],
        b"GET / HTTP/1.0\r\n",
        b"\r\n\r\n\r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        b"\xff\xfe",
    ] {
        let why = refused(reader().feed(input));
        assert_eq!(why.reason(), "malformed", "{input:?}");
        assert!(why.to_string().len() > "malformed".len(), "{why}");
    }
    // Refused as soon as it cannot be a header, not at the deadline.
    for input in [&b"P P"[..], b"PROXY TCP4\r\n", b"PROXY\r\n", b"\r\n\r\nX"] {
        let why = refused(reader().feed(input));
        assert_eq!(why.reason(), "malformed", "{input:?}");
    }
    // Version 1 in the binary form.
    let mut h = v2(1, 0x11, &v4_payload());
    h[12] = 0x11;
    assert_eq!(refused(reader().feed(&h)).reason(), "malformed");
}

#[test]
fn policy_timeout_is_the_shorter() {
    let p = policy();
    assert_eq!(p.timeout(Duration::from_secs(60)), HEADER_TIMEOUT);
    assert_eq!(p.timeout(Duration::from_secs(2)), Duration::from_secs(2));
}

proptest! {
    /// Whatever arrives, in whatever pieces: no panic, the buffer stays
    /// bounded, and once the reader has decided it is never asked again.
    #[test]
    fn any_input_is_decided_or_bounded(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)
    ) {
        let mut r = reader();
        for p in &pieces {
            match r.feed(p) {
                Verdict::More => prop_assert!(r.buf.len() <= MAX_HEADER),
                _ => break,
            }
        }
    }

    /// A valid header followed by anything, split in two anywhere: the
    /// same client and the same following bytes as in one read.
    #[test]
    fn splits_change_nothing(
        v1_form in any::<bool>(),
        port in 1u16..,
        tail in proptest::collection::vec(any::<u8>(), 0..200),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut input = if v1_form {
            format!("PROXY TCP4 192.0.2.7 198.51.100.1 {port} 21\r\n").into_bytes()
        } else {
            let mut p = v4_payload();
            p[8..10].copy_from_slice(&port.to_be_bytes());
            v2(1, 0x11, &p)
        };
        let header_len = input.len();
        input.extend_from_slice(&tail);
        let cut = cut.index(input.len());
        let mut r = reader();
        // Bytes after the read that completed the header go to the
        // session as they come.
        let (v, later) = match r.feed(&input[..cut]) {
            Verdict::More => (r.feed(&input[cut..]), &[][..]),
            v => (v, &input[cut..]),
        };
        let (peer, rest) = client(&v);
        prop_assert_eq!(peer, SocketAddr::from(([192, 0, 2, 7], port)));
        prop_assert_eq!([rest, later].concat(), &input[header_len..]);
    }
}
