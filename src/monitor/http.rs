//! Just enough HTTP/1.x for a scraper: one `GET` (or `HEAD`) request
//! per connection, its head read within a bound, one answer, then the
//! connection is closed.

/// The longest request head read.
pub const MAX_HEAD: usize = 8192;

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (or `HEAD`: `head` is set).
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method.
    NotAllowed,
    /// Not an HTTP/1 request line.
    Bad,
}

/// Whether `buf` holds a whole head (up to the empty line).
pub fn complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// Reads a request head's first line.
pub fn parse(head: &[u8]) -> Request {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Bad;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Bad;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::NotAllowed,
    };
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/metrics" | "/" => Request::Metrics { head },
        _ => Request::NotFound,
    }
}

/// The whole answer to `req`, given the exposition `body`.
pub fn response(req: Request, body: &str) -> Vec<u8> {
    let (status, kind, text) = match req {
        Request::Metrics { .. } => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body),
        Request::NotFound => ("404 Not Found", "text/plain", "try /metrics\n"),
        Request::NotAllowed => ("405 Method Not Allowed", "text/plain", "GET only\n"),
        Request::Bad => ("400 Bad Request", "text/plain", "bad request\n"),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    if req == Request::NotAllowed {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !matches!(req, Request::Metrics { head: true }) {
        out.push_str(text);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head: false }
        );
        assert_eq!(
            parse(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { head: true }
        );
        assert_eq!(parse(b"GET /other HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::NotAllowed
        );
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Request::Bad);
        assert_eq!(parse(b"\xff\r\n\r\n"), Request::Bad);
        assert!(complete(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(response(Request::Metrics { head: false }, "a 1\n")).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 4\r\n"));
        assert!(r.ends_with("\r\n\r\na 1\n"));
        let r = String::from_utf8(response(Request::Metrics { head: true }, "a 1\n")).unwrap();
        assert!(r.ends_with("Connection: close\r\n\r\n"));
        let r = String::from_utf8(response(Request::NotAllowed, "")).unwrap();
        assert!(r.contains("Allow: GET, HEAD\r\n"));
    }
}
