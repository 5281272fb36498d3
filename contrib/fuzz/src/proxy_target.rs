//! The `proxy_header` target: the PROXY protocol header reader.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aftpd::core::net::Net;
use aftpd::core::proxy::{HeaderReader, MAX_HEADER, ProxyPolicy, Verdict};
use aftpd::core::session::Endpoints;

/// What a verdict says, without the parser's wording (which depends on
/// how much it saw).
#[derive(Debug, PartialEq, Eq)]
enum Said {
    More,
    Client(Option<SocketAddr>, Vec<u8>),
    Check,
    Refused(&'static str),
}

fn reader() -> HeaderReader {
    let policy = ProxyPolicy {
        from: vec![Net::parse("10.0.0.0/8").unwrap_or_else(|e| panic!("{e}"))],
    };
    let socket = Endpoints {
        local: Some(SocketAddr::from(([10, 0, 0, 1], 21))),
        peer: Some(SocketAddr::from(([10, 0, 0, 2], 40000))),
    };
    HeaderReader::new(&policy, socket, Instant::now(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Feeds `pieces` in turn until a verdict; bytes after the read that
/// brought it are the session's, as an engine hands them on.
fn feed(pieces: &[&[u8]]) -> Said {
    let mut r = reader();
    let mut fed = 0;
    for (i, p) in pieces.iter().enumerate() {
        fed += p.len();
        match r.feed(p) {
            Verdict::More => continue,
            Verdict::Client { ends, rest } => {
                // The header is what came before `rest`, and bounded.
                assert!(rest.len() <= fed, "rest longer than the input");
                assert!(fed - rest.len() <= MAX_HEADER, "a header past the limit");
                let later: Vec<u8> = pieces[i + 1..].concat();
                return Said::Client(ends.peer, [rest, later].concat());
            }
            Verdict::Check => return Said::Check,
            Verdict::Refused(why) => return Said::Refused(why.reason()),
        }
    }
    assert!(fed < MAX_HEADER + 64 * 1024, "undecided after {fed} bytes");
    Said::More
}

/// The first two bytes say where to cut the rest into three reads: any
/// cut gives the verdict one read gives.
pub fn proxy_header(data: &[u8]) {
    let [a, b, input @ ..] = data else {
        return;
    };
    let whole = feed(&[input]);
    let n = input.len();
    let (i, j) = (usize::from(*a) % (n + 1), usize::from(*b) % (n + 1));
    let (i, j) = (i.min(j), i.max(j));
    let cut = feed(&[&input[..i], &input[i..j], &input[j..]]);
    assert_eq!(whole, cut, "cut at {i} and {j}");
}
