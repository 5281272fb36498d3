//! `aftpd-supervisor --metrics ADDR:PORT`, both engines: scraped with
//! curl, as a monitoring system would, and read with a strict parser of
//! Prometheus's text exposition format (0.0.4), written here: every
//! line a comment of a known kind or a well-formed sample, each family
//! typed once before its samples, its samples together, no series twice,
//! counters named `_total` and never negative. Then the counts: they
//! follow what the test's clients did, and only grow.

#[allow(unused_macros)]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::client::connect_tuned;
use common::port::free_port;
use common::tools::{require, run};
use common::{Client, Family, Kind, Opts, Server, Tree};

/// One family: its type, help, and samples (labels, value).
#[derive(Debug, Default)]
struct Fam {
    kind: String,
    help: Option<String>,
    samples: Vec<(BTreeMap<String, String>, f64)>,
}

type Exposition = BTreeMap<String, Fam>;

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(ok_first)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// A value: a float as Go's ParseFloat reads it, or +Inf, -Inf, NaN.
fn value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.is_empty() || s.contains(|c: char| !"0123456789.eE+-".contains(c)) => {
            Err(format!("bad value {s:?}"))
        }
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `{a="x",b="y"}` at the start of `s`: the labels and the rest.
fn labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut out = BTreeMap::new();
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((out, s));
    };
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = &rest[..eq];
        if !is_name(name, false) || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut v = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => v.push('\\'),
                    '"' => v.push('"'),
                    'n' => v.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("newline in a label value".into()),
                (_, c) => v.push(c),
            }
        };
        if out.insert(name.to_owned(), v).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(r) if !r.starts_with('}') => r,
            Some(_) => return Err("trailing comma".into()),
            None if rest.starts_with('}') => rest,
            None => return Err("labels not separated by ','".into()),
        };
    }
}

/// Parses an exposition strictly; the error names the line.
fn parse(text: &str) -> Result<Exposition, String> {
    let mut fams: Exposition = BTreeMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        // The family a line belongs to must be the current one, or new.
        let mut enter = |name: &str, fams: &mut Exposition| -> Result<(), String> {
            if current.as_deref() != Some(name) {
                if done.contains(name) {
                    return Err(format!("family {name} resumed after another"));
                }
                if let Some(c) = current.take() {
                    done.insert(c);
                }
                current = Some(name.to_owned());
                fams.entry(name.to_owned()).or_default();
            }
            Ok(())
        };
        if line.is_empty() {
            return Err(err("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let (word, rest) = rest
                .split_once(' ')
                .ok_or_else(|| err("bare comment".into()))?;
            let (name, arg) = rest.split_once(' ').ok_or_else(|| err("no text".into()))?;
            if !is_name(name, true) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            enter(name, &mut fams).map_err(err)?;
            let f = fams.get_mut(name).unwrap();
            match word {
                "TYPE" => {
                    if !f.kind.is_empty() {
                        return Err(err("TYPE twice".into()));
                    }
                    if !f.samples.is_empty() {
                        return Err(err("TYPE after samples".into()));
                    }
                    if !["counter", "gauge", "untyped", "summary", "histogram"].contains(&arg) {
                        return Err(err(format!("unknown type {arg}")));
                    }
                    f.kind = arg.to_owned();
                }
                "HELP" => {
                    if f.help.replace(arg.to_owned()).is_some() {
                        return Err(err("HELP twice".into()));
                    }
                }
                _ => return Err(err("comment other than HELP or TYPE".into())),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(err("comment without a space".into()));
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = labels(&line[name_end..]).map_err(err)?;
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before the value".into()))?;
        let mut parts = rest.split(' ');
        let v = value(parts.next().unwrap_or_default()).map_err(err)?;
        if let Some(ts) = parts.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        if parts.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        enter(name, &mut fams).map_err(err)?;
        if !series.insert((name.to_owned(), labels.clone())) {
            return Err(err("series twice".into()));
        }
        let f = fams.get_mut(name).unwrap();
        if f.kind.is_empty() {
            return Err(err("sample before its TYPE".into()));
        }
        if f.kind == "counter" && (!name.ends_with("_total") || v.is_nan() || v < 0.0) {
            return Err(err("a counter not named _total, or negative".into()));
        }
        f.samples.push((labels, v));
    }
    Ok(fams)
}

/// The value of `name` with exactly these labels.
fn get(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    e.get(name)
        .and_then(|f| f.samples.iter().find(|(l, _)| *l == want).map(|(_, v)| *v))
        .unwrap_or_else(|| panic!("no {name}{labels:?} in the metrics"))
}

/// Every counter sample, by series.
fn counters(e: &Exposition) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for (name, f) in e.iter().filter(|(_, f)| f.kind == "counter") {
        for (l, v) in &f.samples {
            out.insert(format!("{name}{l:?}"), *v);
        }
    }
    out
}

fn curl(url: &str) -> (String, String) {
    require("curl", "curl");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        url,
    ]);
    let out = run(cmd, Duration::from_secs(30));
    out.assert_success("curl");
    let text = out.stdout_text();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), code.to_owned())
}

/// One scrape, checked strictly.
fn scrape(addr: SocketAddr) -> Exposition {
    let (body, code) = curl(&format!("http://{addr}/metrics"));
    assert_eq!(code, "200", "{body}");
    parse(&body).unwrap_or_else(|e| panic!("{e}\n--- metrics:\n{body}"))
}

fn metrics_follow_what_happens(kind: Kind) {
    let tree = Tree::new();
    let size = 3 << 20;
    tree.big_file("big", size);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST.into())));
    let opts = Opts::new()
        .arg("--metrics")
        .arg(addr.to_string())
        .arg("--max-per-ip")
        .arg("3");
    let mut server = Server::start(kind, &tree, opts);
    server.wait_log_line("naming the metrics address", |l| {
        l.contains(&format!(" metrics={addr} "))
    });

    let before = scrape(addr);
    assert!(
        before.len() >= 15,
        "{:?}",
        before.keys().collect::<Vec<_>>()
    );
    let engine = if kind == Kind::SupervisorUring {
        "uring"
    } else {
        "epoll"
    };
    assert_eq!(get(&before, "aftpd_info", &[("engine", engine)]), 1.0);
    assert_eq!(
        get(&before, "aftpd_workers", &[]),
        2.0,
        "two CPUs, two workers"
    );

    // A download, a listing, a refusal, an unknown command, a session
    // from another address knocking on a passive port.
    let mut c = Client::login(&server, Family::V4);
    assert_eq!(c.get("RETR big").len() as u64, size);
    let listing = c.get("NLST");
    let names = listing
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    c.refused(b"RETR no-such-file", 550);
    c.expect("XYZZY", 500);
    let pasv = c.pasv();
    let foreign = connect_tuned(pasv, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))), None);
    drop(foreign);
    // Over --max-per-ip: the fourth is refused.
    let held: Vec<Client> = (0..2).map(|_| Client::open(&server, Family::V4)).collect();
    let mut fourth = Client::connect(server.addr(Family::V4));
    assert_eq!(fourth.reply().code, 421);
    drop(held);
    // The second scrape sees the session open; wait (bounded) for the
    // foreign connection to be counted, which happens when its listener
    // is next looked at.
    let mut after = scrape(addr);
    for _ in 0..100 {
        if get(
            &after,
            "aftpd_data_connection_failures_total",
            &[("reason", "foreign-peer")],
        ) >= 1.0
        {
            break;
        }
        thread::sleep(Duration::from_millis(50));
        after = scrape(addr);
    }
    let at_least = |name: &str, labels: &[(&str, &str)], n: f64| {
        let v = get(&after, name, labels);
        assert!(v >= n, "{name}{labels:?} = {v}, want at least {n}");
    };
    at_least("aftpd_sessions_total", &[], 4.0);
    at_least("aftpd_sessions", &[], 1.0);
    at_least("aftpd_commands_total", &[("verb", "RETR")], 2.0);
    at_least("aftpd_commands_total", &[("verb", "NLST")], 1.0);
    at_least("aftpd_commands_total", &[("verb", "other")], 1.0);
    at_least(
        "aftpd_transfers_total",
        &[("kind", "retr"), ("result", "ok")],
        1.0,
    );
    at_least(
        "aftpd_transfers_total",
        &[("kind", "nlst"), ("result", "ok")],
        1.0,
    );
    at_least(
        "aftpd_sent_bytes_total",
        &[],
        (size as usize + listing.len()) as f64,
    );
    at_least("aftpd_listed_entries_total", &[], names as f64);
    at_least("aftpd_refused_total", &[("reason", "max-per-ip")], 1.0);
    at_least(
        "aftpd_data_connection_failures_total",
        &[("reason", "foreign-peer")],
        1.0,
    );
    assert_eq!(get(&after, "aftpd_received_bytes_total", &[]), 0.0);
    assert_eq!(get(&after, "aftpd_workers_stale", &[]), 0.0);
    let open: f64 = after["aftpd_worker_sessions"]
        .samples
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert!(open >= 1.0, "the logged-in session is on some worker");
    // Counters only grow.
    let (was, now) = (counters(&before), counters(&after));
    for (series, v) in &was {
        assert!(
            now[series] >= *v,
            "{series} went from {v} to {}",
            now[series]
        );
    }
    c.expect("QUIT", 221);
    drop(fourth);
    server.assert_alive();
}

/// An upload (`--incoming`) is counted as received bytes, never as sent
/// ones, and as a transfer of kind `stor`; STOR as a command.
fn uploads_are_counted(kind: Kind) {
    use std::os::unix::fs::PermissionsExt;
    let tree = Tree::new();
    let drop_box = tree.root.join("incoming");
    std::fs::create_dir(&drop_box).unwrap();
    if common::is_root() {
        let id = Some(common::server::DROP_UID);
        std::os::unix::fs::chown(&drop_box, id, Some(common::server::DROP_GID)).unwrap();
    }
    std::fs::set_permissions(&drop_box, std::fs::Permissions::from_mode(0o733)).unwrap();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST.into())));
    let opts = Opts::new()
        .arg("--metrics")
        .arg(addr.to_string())
        .arg("--incoming")
        .arg("incoming")
        .arg("--min-free")
        .arg("0");
    let mut server = Server::start(kind, &tree, opts);
    server.wait_log_line("naming the metrics address", |l| {
        l.contains(&format!(" metrics={addr} "))
    });
    let size: usize = 3 << 20;
    let mut c = Client::login(&server, Family::V4);
    c.expect("TYPE I", 200);
    let pasv = c.pasv();
    let mut data = connect_tuned(pasv, None, None).unwrap();
    c.send(b"STOR incoming/counted");
    assert_eq!(c.reply().code, 150);
    data.write_all(&vec![7u8; size]).unwrap();
    data.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = data.read_to_end(&mut rest);
    assert_eq!(c.reply().code, 226);
    let after = scrape(addr);
    assert_eq!(
        get(&after, "aftpd_received_bytes_total", &[]),
        size as f64,
        "received"
    );
    assert_eq!(get(&after, "aftpd_sent_bytes_total", &[]), 0.0, "sent");
    assert_eq!(
        get(
            &after,
            "aftpd_transfers_total",
            &[("kind", "stor"), ("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        get(&after, "aftpd_commands_total", &[("verb", "STOR")]),
        1.0
    );
    assert_eq!(std::fs::read(drop_box.join("counted")).unwrap().len(), size);
    c.expect("QUIT", 221);
    server.assert_alive();
}

/// Anything but GET /metrics is answered with an error; a scraper that
/// connects and says nothing, or too much, holds up the others only for
/// a bounded time, and the sessions not at all.
fn the_listener_is_bounded(kind: Kind) {
    let tree = Tree::new();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST.into())));
    let mut server = Server::start(
        kind,
        &tree,
        Opts::new().arg("--metrics").arg(addr.to_string()),
    );
    server.wait_log_line("naming the metrics address", |l| l.contains(" metrics="));
    assert_eq!(curl(&format!("http://{addr}/other")).1, "404");
    let mut c = Client::login(&server, Family::V4);
    // Says nothing: the FTP session is served meanwhile.
    let silent = TcpStream::connect(addr).unwrap();
    c.expect("NOOP", 200);
    // Says far too much.
    let mut chatty = TcpStream::connect(addr).unwrap();
    chatty
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = chatty.write_all(&vec![b'x'; 64 * 1024]);
    let mut answer = Vec::new();
    chatty
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = chatty.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains(" 200 "),
        "a bad request was served"
    );
    let e = scrape(addr);
    assert!(get(&e, "aftpd_sessions", &[]) >= 1.0);
    c.expect("NOOP", 200);
    drop(silent);
    server.assert_alive();
}

/// The metrics may be served on IPv6 too.
fn metrics_on_ipv6(kind: Kind) {
    let tree = Tree::new();
    let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, free_port(Ipv6Addr::LOCALHOST.into())));
    let server = Server::start(
        kind,
        &tree,
        Opts::new().arg("--metrics").arg(addr.to_string()),
    );
    server.wait_log_line("naming the metrics address", |l| {
        l.contains(" metrics=[::1]:")
    });
    let e = scrape(addr);
    assert!(get(&e, "aftpd_sessions_max", &[]) >= 1.0);
}

mod supervisor {
    #[test]
    fn metrics_follow_what_happens() {
        super::metrics_follow_what_happens(crate::common::Kind::Supervisor)
    }
    #[test]
    fn the_listener_is_bounded() {
        super::the_listener_is_bounded(crate::common::Kind::Supervisor)
    }
    #[test]
    fn metrics_on_ipv6() {
        super::metrics_on_ipv6(crate::common::Kind::Supervisor)
    }
    #[test]
    fn uploads_are_counted() {
        super::uploads_are_counted(crate::common::Kind::Supervisor)
    }
}

mod supervisor_uring {
    #[test]
    fn metrics_follow_what_happens() {
        super::metrics_follow_what_happens(crate::common::Kind::SupervisorUring)
    }
    #[test]
    fn the_listener_is_bounded() {
        super::the_listener_is_bounded(crate::common::Kind::SupervisorUring)
    }
    #[test]
    fn metrics_on_ipv6() {
        super::metrics_on_ipv6(crate::common::Kind::SupervisorUring)
    }
    #[test]
    fn uploads_are_counted() {
        super::uploads_are_counted(crate::common::Kind::SupervisorUring)
    }
}

/// The parser itself refuses what the format forbids.
#[test]
fn the_parser_is_strict() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\na_total 4 1700000000\n# TYPE g gauge\ng -1.5e3\n";
    let e = parse(ok).unwrap();
    assert_eq!(get(&e, "a_total", &[("x", "1"), ("y", "q\"\\\n")]), 3.0);
    assert_eq!(get(&e, "g", &[]), -1500.0);
    for bad in [
        "g 1",                                             // no newline at the end
        "g 1\n",                                           // no TYPE
        "# TYPE g gauge\n# TYPE g gauge\ng 1\n",           // TYPE twice
        "# TYPE g gauge\ng 1\n# TYPE g gauge\n",           // TYPE after samples
        "# TYPE g gauge\ng 1\n# TYPE h gauge\nh 1\ng 2\n", // resumed
        "# TYPE g gauge\ng 1\ng 1\n",                      // series twice
        "# TYPE g gauge\ng{a=\"1\",} 1\n",                 // trailing comma
        "# TYPE g gauge\ng{a=1} 1\n",                      // unquoted
        "# TYPE g gauge\ng{a=\"\\t\"} 1\n",                // bad escape
        "# TYPE g gauge\ng one\n",                         // bad value
        "# TYPE g gauge\ng 1 2 3\n",                       // trailing field
        "# TYPE c counter\nc 1\n",                         // counter not _total
        "# TYPE c_total counter\nc_total -1\n",            // negative counter
        "# TYPE g gauge\n\ng 1\n",                         // empty line
        "# TYPE 1g gauge\n",                               // bad name
        "# TYPE g weird\n",                                // unknown type
        "#TYPE g gauge\n",                                 // comment without space
        "# TYPE g gauge\ng{__x=\"1\"} 1\n",                // reserved label
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
