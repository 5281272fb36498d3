//! The kernel's TLS (kTLS): with the `tls` upper-layer protocol on a TCP
//! socket and the keys handed over, the kernel encrypts, and sendfile and
//! splice stay zero-copy. Only probed so far: the machines this was
//! written and tested on have no `tls` module, so a kTLS data path could
//! not be tested, and none is shipped. PROBE ONLY: whatever the probe
//! says, TLS is done in user space; the start-up line says what the
//! kernel offers.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ktls {
    /// `setsockopt(TCP_ULP, "tls")` worked on a connected socket.
    Available,
    /// It did not: why.
    Unavailable(String),
}

impl std::fmt::Display for Ktls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ktls::Available => write!(
                f,
                "kTLS: the kernel offers it, not used yet: TLS is done in user space"
            ),
            Ktls::Unavailable(why) => {
                write!(f, "kTLS: unavailable ({why}): TLS is done in user space")
            }
        }
    }
}

/// Tries the `tls` ULP on a loopback connection of our own (it can only
/// be set on an established socket). Call before the sandbox: it binds
/// and connects.
pub fn probe() -> Ktls {
    let pair = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).and_then(|l| {
        let c = TcpStream::connect(l.local_addr()?)?;
        let (s, _) = l.accept()?;
        Ok((c, s))
    });
    let (sock, _peer) = match pair {
        Ok(p) => p,
        Err(e) => return Ktls::Unavailable(format!("no loopback socket to try: {e}")),
    };
    const ULP: &[u8] = b"tls";
    // SAFETY: setsockopt reads ULP.len() bytes of a live static slice; the
    // descriptor is open for the call (owned by `sock`).
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_ULP,
            ULP.as_ptr().cast(),
            ULP.len() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ktls::Available
    } else {
        let e = std::io::Error::last_os_error();
        Ktls::Unavailable(format!("setsockopt TCP_ULP tls: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever this kernel has, the probe answers, and says it in one
    /// line. Where the module is missing (these machines), it is the
    /// fallback.
    #[test]
    fn probe_answers() {
        let k = probe();
        let line = k.to_string();
        assert!(line.starts_with("kTLS: "), "{line}");
        assert_eq!(line.lines().count(), 1);
        let loaded = std::fs::read_to_string("/proc/modules")
            .is_ok_and(|m| m.lines().any(|l| l.starts_with("tls ")));
        if !loaded {
            assert!(matches!(k, Ktls::Unavailable(_)), "{k:?}");
        }
    }
}
