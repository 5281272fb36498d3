//! A minimal FTP client: just what the measurements need, with as few
//! syscalls and allocations per session as possible so that the generator
//! is never the bottleneck.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::fail::{Class, tagged};

/// Bound on every wait of the client: a stuck server fails the session
/// instead of hanging the benchmark.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest reply line we accept; past it the server is broken.
const MAX_LINE: usize = 64 * 1024;

pub fn err(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// How a client ends its connections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Close {
    /// A normal close (FIN), as curl, lftp and every real client do: the
    /// side that closes first keeps a TIME_WAIT socket for 60 s, which is
    /// what a server's passive ports must live with.
    Fin,
    /// SO_LINGER 0: a RST, so no TIME_WAIT socket is left on either end.
    /// Not what clients do; kept as an option to separate a server's cost
    /// from the cost of TIME_WAIT.
    Rst,
}

impl Close {
    pub fn parse(s: &str) -> Option<Close> {
        match s {
            "fin" => Some(Close::Fin),
            "rst" => Some(Close::Rst),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Close::Fin => "fin",
            Close::Rst => "rst",
        }
    }
}

pub fn close(s: TcpStream, how: Close) {
    match how {
        Close::Fin => drop(s),
        Close::Rst => abort(s),
    }
}

/// Close with SO_LINGER 0: the connection ends with a RST, so neither end
/// keeps a TIME_WAIT socket. Used where the close is not what is measured
/// (tearing down thousands of idle sessions, a probe's end).
pub fn abort(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a properly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The control connection: a socket, a reply buffer, and TLS once AUTH
/// TLS went through.
pub struct Ctrl {
    pub sock: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    last: (usize, usize),
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Ctrl {
    pub fn connect(addr: SocketAddr) -> io::Result<Ctrl> {
        Ok(Ctrl {
            sock: connect(addr)?,
            buf: vec![0; 1024],
            start: 0,
            end: 0,
            last: (0, 0),
            tls: None,
        })
    }

    pub fn send(&mut self, line: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            None => self.sock.write_all(line),
            Some(t) => rustls::Stream::new(t.as_mut(), &mut self.sock).write_all(line),
        }
    }

    fn read_more(&mut self) -> io::Result<usize> {
        let b = &mut self.buf[self.end..];
        match &mut self.tls {
            None => self.sock.read(b),
            Some(t) => rustls::Stream::new(t.as_mut(), &mut self.sock)
                .read(b)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::InvalidData => tagged(Class::Tls, format!("TLS control: {e}")),
                    _ => e,
                }),
        }
    }

    /// AUTH TLS, the handshake, PBSZ 0, PROT P (RFC 4217): from here on
    /// the control connection is protected and so are data connections,
    /// which must resume this session (`cfg` holds it). Returns what was
    /// negotiated.
    pub fn auth_tls(&mut self, cfg: &std::sync::Arc<rustls::ClientConfig>) -> io::Result<String> {
        self.cmd(b"AUTH TLS\r\n", &[234])?;
        if self.start != self.end {
            return Err(tagged(Class::Reply, "bytes in clear after 234".into()));
        }
        let mut t = crate::tls::client(cfg, self.sock.peer_addr()?.ip())?;
        crate::tls::handshake(&mut t, &mut self.sock)?;
        let what = crate::tls::describe(&t);
        self.tls = Some(Box::new(t));
        self.cmd(b"PBSZ 0\r\n", &[200])?;
        self.cmd(b"PROT P\r\n", &[200])?;
        Ok(what)
    }

    /// Whether the control connection's handshake resumed an earlier
    /// session (`None` without TLS).
    pub fn tls_resumed(&self) -> Option<bool> {
        self.tls
            .as_ref()
            .map(|t| t.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
    }

    /// The last line of the last reply, without its line end.
    pub fn last_line(&self) -> &[u8] {
        let l = &self.buf[self.last.0..self.last.1];
        let l = l.strip_suffix(b"\n").unwrap_or(l);
        l.strip_suffix(b"\r").unwrap_or(l)
    }

    /// Reads one whole reply (multi-line replies included) and returns its
    /// code.
    pub fn reply(&mut self) -> io::Result<u16> {
        let mut multi: Option<[u8; 3]> = None;
        loop {
            if let Some(pos) = self.buf[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let (a, b) = (self.start, self.start + pos + 1);
                self.start = b;
                self.last = (a, b);
                let line = &self.buf[a..b];
                let coded = line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit);
                match multi {
                    None if !coded => {
                        return Err(tagged(
                            Class::Reply,
                            format!("bad reply line {:?}", String::from_utf8_lossy(line)),
                        ));
                    }
                    None if line[3] == b'-' => multi = Some([line[0], line[1], line[2]]),
                    None => return Ok(code(line)),
                    Some(c) if coded && line[..3] == c && line[3] == b' ' => {
                        return Ok(code(line));
                    }
                    Some(_) => {}
                }
                continue;
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                if self.buf.len() >= MAX_LINE {
                    return Err(err("reply line too long".into()));
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.read_more()?;
            if n == 0 {
                return Err(tagged(Class::Reset, "control connection closed".into()));
            }
            self.end += n;
        }
    }

    /// Reads a reply and checks its code against `ok`.
    pub fn expect(&mut self, what: &str, ok: &[u16]) -> io::Result<u16> {
        let c = self.reply()?;
        if ok.contains(&c) {
            return Ok(c);
        }
        let class = match c {
            425 => Class::R425,
            421 => Class::R421,
            _ => Class::Reply,
        };
        Err(tagged(
            class,
            format!(
                "{what}: unexpected reply {:?}",
                String::from_utf8_lossy(self.last_line())
            ),
        ))
    }

    pub fn cmd(&mut self, line: &[u8], ok: &[u16]) -> io::Result<u16> {
        self.send(line)?;
        let what = String::from_utf8_lossy(line.split(|&b| b == b' ').next().unwrap_or(b""));
        self.expect(what.trim_end(), ok)
    }

    /// Greeting, USER anonymous, PASS: a logged-in session.
    pub fn login(addr: SocketAddr) -> io::Result<Ctrl> {
        let mut c = Ctrl::connect(addr)?;
        c.log_in()?;
        Ok(c)
    }

    /// Greeting, USER anonymous, PASS on a connected control connection.
    pub fn log_in(&mut self) -> io::Result<()> {
        self.expect("greeting", &[220])?;
        self.user_pass()
    }

    /// Ends TLS on the control connection (close_notify) after QUIT, as
    /// a polite client does; nothing without TLS.
    pub fn close_tls(&mut self) {
        if let Some(t) = &mut self.tls {
            t.send_close_notify();
            while t.wants_write() {
                if t.write_tls(&mut self.sock).is_err() {
                    break;
                }
            }
        }
    }

    /// USER anonymous, PASS.
    pub fn user_pass(&mut self) -> io::Result<()> {
        if self.cmd(b"USER anonymous\r\n", &[230, 331])? == 331 {
            self.cmd(b"PASS bench@example.org\r\n", &[230])?;
        }
        Ok(())
    }

    /// EPSV, then a data connection to the advertised port on the control
    /// connection's peer address.
    pub fn epsv(&mut self) -> io::Result<TcpStream> {
        self.cmd(b"EPSV\r\n", &[229])?;
        let port = parse_epsv(self.last_line())
            .ok_or_else(|| err(format!("bad EPSV reply {:?}", self.last_line())))?;
        let ip: IpAddr = self.sock.peer_addr()?.ip();
        connect(SocketAddr::new(ip, port)).map_err(|e| {
            tagged(
                Class::DataConnect,
                format!("data connection to port {port}: {e}"),
            )
        })
    }
}

fn code(line: &[u8]) -> u16 {
    (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16
}

/// `229 Entering Extended Passive Mode (|||port|)`; the delimiter is the
/// first character after the parenthesis (RFC 2428).
pub fn parse_epsv(line: &[u8]) -> Option<u16> {
    let open = line.iter().position(|&b| b == b'(')?;
    let rest = &line[open + 1..];
    let d = *rest.first()?;
    if rest.len() < 4 || rest[1] != d || rest[2] != d {
        return None;
    }
    let digits = &rest[3..];
    let end = digits.iter().position(|&b| b == d)?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Reads a data connection to its end, discarding the bytes in the kernel
/// and adding them to `ctr` as they come, so that another thread can read
/// a rate at any moment. Returns the bytes of this connection.
pub fn drain_counted(s: &TcpStream, ctr: &std::sync::atomic::AtomicU64) -> io::Result<u64> {
    let mut total = 0;
    loop {
        // SAFETY: with MSG_TRUNC a TCP socket discards up to len bytes
        // without writing to the buffer; the buffer is valid anyway.
        let mut b = [0u8; 1];
        let r = unsafe {
            libc::recv(
                s.as_raw_fd(),
                b.as_mut_ptr() as *mut libc::c_void,
                1 << 30,
                libc::MSG_TRUNC,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(total);
        }
        total += r as u64;
        ctr.fetch_add(r as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads a data connection to its end. With `discard`, the kernel drops the
/// bytes (recv with MSG_TRUNC) instead of copying them out, so the client's
/// CPU does not weigh on a bulk measurement. Returns (bytes, newlines); the
/// newlines are counted only when copying.
pub fn drain(s: &mut TcpStream, discard: bool, buf: &mut [u8]) -> io::Result<(u64, u64)> {
    let (mut total, mut lines) = (0u64, 0u64);
    loop {
        let n = if discard {
            // SAFETY: with MSG_TRUNC a TCP socket discards up to len bytes
            // without writing to the buffer; the buffer is valid anyway.
            let r = unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    1 << 30,
                    libc::MSG_TRUNC,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            r as usize
        } else {
            let n = s.read(buf)?;
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            n
        };
        if n == 0 {
            return Ok((total, lines));
        }
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsv_replies() {
        assert_eq!(
            parse_epsv(b"229 Entering Extended Passive Mode (|||40123|)"),
            Some(40123)
        );
        assert_eq!(parse_epsv(b"229 ok (!!!2121!)"), Some(2121));
        assert_eq!(parse_epsv(b"229 ok (||2121|)"), None);
        assert_eq!(parse_epsv(b"229 ok"), None);
    }

    #[test]
    fn multi_line_replies() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"220-hello\r\n220-more\r\n 220 not the end\r\n220 end\r\n331 pass\r\n")
                .unwrap();
            let mut b = [0u8; 64];
            let _ = s.read(&mut b);
        });
        let mut c = Ctrl::connect(a).unwrap();
        assert_eq!(c.reply().unwrap(), 220);
        assert_eq!(c.last_line(), b"220 end");
        assert_eq!(c.reply().unwrap(), 331);
        c.send(b"QUIT\r\n").unwrap();
        t.join().unwrap();
    }
}
