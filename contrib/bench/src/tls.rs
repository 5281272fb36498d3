//! FTPS for the generator (RFC 4217, explicit): AUTH TLS on the control
//! connection, PBSZ 0, PROT P, and data connections that resume the
//! control connection's TLS session, as servers with vsftpd's
//! require_ssl_reuse (aftpd among them) insist on. rustls with the ring
//! provider, as the server itself uses.
//!
//! The generator checks no certificate and no handshake signature: the
//! servers run on loopback with a self-signed certificate, and what is
//! measured is the server's work, which verifying would not change; it
//! only keeps the client's CPU out of the way.

use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
};

use crate::fail::{Class, tagged};

#[derive(Debug)]
struct NoVerify(Vec<SignatureScheme>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// The generator's client configuration: TLS 1.3 and 1.2, rustls's
/// default suites and groups, no verification.
pub fn base_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| crate::out::die(&format!("TLS: {e}")))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(schemes)))
        .with_no_client_auth();
    Arc::new(cfg)
}

/// A configuration for one session: its own resumption store, so each
/// control connection makes a full handshake and its data connections
/// resume exactly its session (never another session's).
pub fn session_config(base: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut c = (**base).clone();
    c.resumption = Resumption::in_memory_sessions(8);
    Arc::new(c)
}

/// A configuration one client thread keeps for all its sessions: each
/// new control connection offers a ticket (or session id) the previous
/// session left in the store, and each data connection takes the newest
/// one, which its own control connection just received.
pub fn resuming_config(base: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    session_config(base)
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> io::Error {
    tagged(Class::Tls, format!("{what}: {e}"))
}

/// A client connection to `ip`: the server name is the address (no SNI).
pub fn client(cfg: &Arc<ClientConfig>, ip: IpAddr) -> io::Result<ClientConnection> {
    ClientConnection::new(cfg.clone(), ServerName::IpAddress(ip.into()))
        .map_err(|e| tls_err("TLS client", e))
}

/// Drives a handshake to its end on a blocking socket.
pub fn handshake<S: Read + Write>(c: &mut ClientConnection, s: &mut S) -> io::Result<()> {
    while c.is_handshaking() {
        c.complete_io(s).map_err(|e| retag("TLS handshake", e))?;
    }
    // Our Finished (and anything else queued) must go out before we wait
    // for an FTP reply.
    while c.wants_write() {
        c.write_tls(s)?;
    }
    Ok(())
}

/// A TLS error from rustls (InvalidData) is counted as such; a timeout or
/// a reset keeps its class.
fn retag(what: &str, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::InvalidData {
        tls_err(what, e)
    } else {
        e
    }
}

/// "TLSv1_3 TLS13_AES_256_GCM_SHA384": what was negotiated.
pub fn describe(c: &ClientConnection) -> String {
    let v = c
        .protocol_version()
        .map_or("-".into(), |v| format!("{v:?}"));
    let s = c
        .negotiated_cipher_suite()
        .map_or("-".into(), |s| format!("{:?}", s.suite()));
    format!("{v} {s}")
}

/// A socket read through a large buffer (rustls asks for 4 KiB at a
/// time: a bulk download would cost a system call per 4 KiB) and written
/// directly.
pub struct Buffered(pub BufReader<TcpStream>);

impl Read for Buffered {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.read(b)
    }
}

impl Write for Buffered {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.get_mut().write(b)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.get_mut().flush()
    }
}

/// A protected data connection being read.
pub struct Data {
    pub conn: ClientConnection,
    pub sock: Buffered,
}

impl Data {
    /// The client's side of the data connection's handshake, resuming the
    /// control connection's session (same configuration, same name).
    pub fn open(cfg: &Arc<ClientConfig>, sock: TcpStream) -> io::Result<Data> {
        let ip = sock.peer_addr()?.ip();
        let mut d = Data {
            conn: client(cfg, ip)?,
            sock: Buffered(BufReader::with_capacity(256 * 1024, sock)),
        };
        handshake(&mut d.conn, &mut d.sock)?;
        Ok(d)
    }

    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// Reads the data to its end (the bytes are decrypted and dropped).
    /// A server that closes without a close_notify is accepted: the
    /// caller checks the length.
    pub fn drain(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        let mut total = 0u64;
        let mut s = rustls::Stream::new(&mut self.conn, &mut self.sock);
        loop {
            match s.read(buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(total),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(retag("TLS data", e)),
            }
        }
    }

    pub fn into_socket(self) -> TcpStream {
        self.sock.0.into_inner()
    }
}
