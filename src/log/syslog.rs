//! The local syslog: its socket, and messages as glibc's `syslog(3)`
//! sends them (RFC 3164): `<PRI>Mmm dd hh:mm:ss NAME[PID]: MESSAGE`,
//! facility FTP, the time in UTC (a chrooted process has no zone files;
//! syslog daemons usually stamp messages on arrival anyway).
//!
//! The socket is connected once, before the chroot hides it, and then
//! written without blocking ([`super::sink::Socket`]): a syslog daemon
//! that stalls costs lines, never the server's time.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;

use super::format::Severity;

/// Where syslog listens, in the order glibc and the syslog crate try.
const PATHS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

/// LOG_FTP.
const FACILITY: u32 = 11;

/// A connected syslog socket.
pub struct Socket {
    pub fd: OwnedFd,
    /// A stream socket (some syslog-ng set-ups): each message ends with a
    /// NUL, as glibc ends them.
    pub stream: bool,
}

/// Connects to the local syslog: the first of `/dev/log`,
/// `/var/run/syslog` and `/var/run/log` that exists, as a datagram
/// socket, or a stream socket where the daemon listens so.
pub fn connect() -> io::Result<Socket> {
    for path in PATHS {
        match connect_at(Path::new(path)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{path}: {e}"))),
            ok => return ok,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no syslog socket (/dev/log)",
    ))
}

/// Connects to a syslog socket at `path`, a datagram one or a stream one.
pub fn connect_at(path: &Path) -> io::Result<Socket> {
    let dgram = UnixDatagram::unbound()?;
    match dgram.connect(path) {
        Ok(()) => Ok(Socket {
            fd: dgram.into(),
            stream: false,
        }),
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => Ok(Socket {
            fd: UnixStream::connect(path)?.into(),
            stream: true,
        }),
        Err(e) => Err(e),
    }
}

/// The message for `msg`, framed for the socket.
pub fn frame(name: &str, pid: u32, severity: Severity, stream: bool, msg: &str) -> Vec<u8> {
    let code = match severity {
        Severity::Info => 6,
        Severity::Warning => 4,
        Severity::Error => 3,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // "Sat Nov 21 06:00:00 2026": the month, day and time are RFC 3164's.
    let ctime = crate::core::calendar::ctime_utc(now);
    let stamp = ctime.get(4..19).unwrap_or("Jan  1 00:00:00");
    let mut out = format!("<{}>{stamp} {name}[{pid}]: {msg}", FACILITY * 8 + code).into_bytes();
    if stream {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3164_facility_ftp() {
        let m = frame("ftpd", 42, Severity::Info, false, "start peer=-");
        let m = String::from_utf8(m).unwrap();
        assert!(m.starts_with("<94>"), "{m}");
        assert!(m.ends_with(" ftpd[42]: start peer=-"), "{m}");
        // <94>Mmm dd hh:mm:ss
        assert_eq!(&m[7..8], " ");
        assert_eq!(&m[10..11], " ");
        assert_eq!(&m[13..14], ":");
        let w = frame("x", 1, Severity::Warning, true, "w");
        assert!(w.starts_with(b"<92>") && w.ends_with(b" x[1]: w\0"));
        assert!(frame("x", 1, Severity::Error, false, "e").starts_with(b"<91>"));
    }
}
