//! Networks as operators write them: `10.0.0.0/8`, `fd00::/64`, or one
//! address. IPv4-mapped IPv6 clients count as IPv4 everywhere.

use std::fmt;
use std::net::IpAddr;

/// A network, `NET/PREFIX` (`--proxy-from`, `--pasv-address`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// Parses `NET/PREFIX`, or a single `ADDR`; the error says what was
    /// wanted.
    pub fn parse(s: &str) -> Result<Net, String> {
        let bad = || "want NET/PREFIX (e.g. 10.0.0.0/24 or fd00::/64) or ADDR".to_owned();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Net { addr, prefix })
    }

    /// Every address of `ip`'s family.
    pub fn every(ip: IpAddr) -> Net {
        let addr = match ip.to_canonical() {
            IpAddr::V4(_) => IpAddr::from([0u8; 4]),
            IpAddr::V6(_) => IpAddr::from([0u16; 8]),
        };
        Net { addr, prefix: 0 }
    }

    /// Whether `ip` lies in this network (IPv4-mapped IPv6 addresses as
    /// IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(c)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(c) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(c)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(c) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets() {
        let n = Net::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.255.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let host = Net::parse("192.0.2.1").unwrap();
        assert_eq!(host.to_string(), "192.0.2.1/32");
        assert!(host.contains("192.0.2.1".parse().unwrap()));
        assert!(!host.contains("192.0.2.2".parse().unwrap()));
        let v6 = Net::parse("fd00::/64").unwrap();
        assert!(v6.contains("fd00::5".parse().unwrap()));
        assert!(!v6.contains("fd00:0:0:1::5".parse().unwrap()));
        assert!(
            Net::parse("0.0.0.0/0")
                .unwrap()
                .contains("203.0.113.1".parse().unwrap())
        );
        for bad in [
            "",
            "x",
            "::ffff:10.0.0.0/104",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "::/129",
            "10.0.0.0/8/8",
        ] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
    }
}
