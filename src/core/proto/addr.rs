//! Data-connection addresses: PORT and EPRT arguments in, PASV and EPSV
//! replies out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

/// Why an EPRT argument was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EprtError {
    Syntax,
    /// A network protocol other than 1 (IPv4) or 2 (IPv6): 522.
    Protocol,
}

/// `addr` with an IPv4-mapped IPv6 address turned into plain IPv4, so that
/// a dual-stack listener's clients are compared and answered as IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `h1,h2,h3,h4,p1,p2` (RFC 959), surrounding spaces allowed.
pub fn parse_port(arg: &[u8]) -> Option<SocketAddrV4> {
    let s = std::str::from_utf8(arg).ok()?.trim();
    let mut n = [0u8; 6];
    let mut parts = s.split(',');
    for slot in n.iter_mut() {
        let p = parts.next()?.trim();
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = p.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
    Some(SocketAddrV4::new(
        ip,
        u16::from(n[4]) << 8 | u16::from(n[5]),
    ))
}

/// `<d>proto<d>addr<d>port<d>` (RFC 2428), any delimiter from `!` to `~`.
pub fn parse_eprt(arg: &[u8]) -> Result<SocketAddr, EprtError> {
    let s = std::str::from_utf8(arg).map_err(|_| EprtError::Syntax)?;
    let d = s.chars().next().ok_or(EprtError::Syntax)?;
    if !('!'..='~').contains(&d) || d.is_ascii_digit() {
        return Err(EprtError::Syntax);
    }
    let fields: Vec<&str> = s.split(d).collect();
    let [empty, proto, addr, port, tail] = fields[..] else {
        return Err(EprtError::Syntax);
    };
    if !empty.is_empty() || !tail.is_empty() {
        return Err(EprtError::Syntax);
    }
    let ip = match proto {
        "1" => IpAddr::V4(addr.parse::<Ipv4Addr>().map_err(|_| EprtError::Syntax)?),
        "2" => IpAddr::V6(addr.parse::<Ipv6Addr>().map_err(|_| EprtError::Syntax)?),
        p if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(EprtError::Protocol);
        }
        _ => return Err(EprtError::Syntax),
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EprtError::Syntax);
    }
    let port: u16 = port.parse().map_err(|_| EprtError::Syntax)?;
    if port == 0 {
        return Err(EprtError::Syntax);
    }
    Ok(SocketAddr::new(ip, port))
}

/// The text of a 227 reply for a listener at `ip:port`.
pub fn pasv_text(ip: Ipv4Addr, port: u16) -> String {
    let [a, b, c, d] = ip.octets();
    format!(
        "Entering Passive Mode ({a},{b},{c},{d},{},{})",
        port >> 8,
        port & 0xff
    )
}

/// The text of a 229 reply for a listener on `port`.
pub fn epsv_text(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_arguments() {
        assert_eq!(
            parse_port(b"127,0,0,1,4,1"),
            Some("127.0.0.1:1025".parse().unwrap())
        );
        assert_eq!(
            parse_port(b" 10,1,2,3,255,255 "),
            Some("10.1.2.3:65535".parse().unwrap())
        );
        for bad in [
            &b"127,0,0,1,4"[..],
            b"127,0,0,1,4,1,9",
            b"256,0,0,1,4,1",
            b"127,0,0,1,4,-1",
            b"127,0,0,1,,1",
            b"a,b,c,d,e,f",
            b"",
            b"127.0.0.1:1025",
        ] {
            assert_eq!(parse_port(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn eprt_arguments() {
        assert_eq!(
            parse_eprt(b"|1|132.235.1.2|6275|"),
            Ok("132.235.1.2:6275".parse().unwrap())
        );
        assert_eq!(
            parse_eprt(b"|2|1080::8:800:200C:417A|5282|"),
            Ok("[1080::8:800:200C:417A]:5282".parse().unwrap())
        );
        assert_eq!(
            parse_eprt(b"!1!127.0.0.1!2000!"),
            Ok("127.0.0.1:2000".parse().unwrap())
        );
        assert_eq!(parse_eprt(b"|3|1.2.3.4|2000|"), Err(EprtError::Protocol));
        for bad in [
            &b"|1|::1|2000|"[..],
            b"|2|1.2.3.4|2000|",
            b"|1|1.2.3.4|70000|",
            b"|1|1.2.3.4|0|",
            b"|1|1.2.3.4|2000",
            b"1|1.2.3.4|2000|",
            b"",
            b"|||",
        ] {
            assert_eq!(
                parse_eprt(bad),
                Err(EprtError::Syntax),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn passive_replies() {
        assert_eq!(
            pasv_text(Ipv4Addr::new(127, 0, 0, 1), 50001),
            "Entering Passive Mode (127,0,0,1,195,81)"
        );
        assert_eq!(
            epsv_text(50001),
            "Entering Extended Passive Mode (|||50001|)"
        );
    }
}
