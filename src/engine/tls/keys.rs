//! The server's certificate and key, and the rustls configuration every
//! session shares. The files are read before the chroot and privilege
//! drop (the key is often readable by root only); a reload replaces the
//! configuration whole, for new TLS sessions, while sessions in progress
//! keep the one they started with. Tickets and the session cache outlive
//! a reload, so a data connection still resumes its control connection's
//! session across one; which connection may resume which session is
//! [`super::resume`]'s business.

use std::io::{self, Read};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::{CipherSuite, ServerConfig, version};

use super::Token;
use super::resume::Store;
use super::ticketkey::FileTickets;
use crate::setup::options::TlsFiles;

/// The largest certificate chain or key file read: far more than any
/// real chain, and a bound on what a wrong path can cost.
const MAX_PEM: u64 = 1 << 20;

/// TLS 1.2 sessions remembered by id, for clients that resume without
/// tickets (TLS 1.3 and ticket-using clients cost the server nothing):
/// as many as a process serving many sessions needs, or one serving a
/// single session (ftpd: its control connection and its data
/// connections; the table is allocated whole, 400 KiB for 4,096).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    Many,
    One,
}

impl Sessions {
    fn cache(self) -> usize {
        match self {
            Sessions::Many => 4096,
            Sessions::One => 16,
        }
    }
}

/// The contents of the certificate and key files.
#[derive(Clone)]
pub struct Pem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(f, "Pem({} + {} bytes)", self.cert.len(), self.key.len())
    }
}

impl Pem {
    /// Reads both files; the error names the file.
    pub fn read(files: &TlsFiles) -> Result<Pem, String> {
        let read = |p: &std::path::Path| {
            read_bounded(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        Ok(Pem {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
        })
    }
}

fn read_bounded(path: &std::path::Path) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_PEM + 1)
        .read_to_end(&mut data)?;
    if data.len() as u64 > MAX_PEM {
        return Err(io::Error::other("larger than 1 MiB"));
    }
    Ok(data)
}

/// The server's TLS: what every session's TLS starts from.
#[derive(Debug)]
pub struct ServerTls {
    current: RwLock<Arc<ServerConfig>>,
    provider: Arc<CryptoProvider>,
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

impl ServerTls {
    /// The configuration for this certificate and key; the error says
    /// what is wrong with them. Tickets are sealed with `tickets`, keys
    /// read from files, else with keys of this process's own (rotated
    /// every few hours).
    pub fn new(
        pem: &Pem,
        tickets: Option<FileTickets>,
        sessions: Sessions,
    ) -> Result<ServerTls, String> {
        let provider = Arc::new(provider());
        let ticketer: Arc<dyn ProducesTickets> = match tickets {
            Some(t) => Arc::new(t),
            None => rustls::crypto::ring::Ticketer::new()
                .map_err(|e| format!("cannot make TLS tickets: {e}"))?,
        };
        let cache: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(sessions.cache());
        let config = build(pem, &provider, &ticketer, &cache)?;
        Ok(ServerTls {
            current: RwLock::new(Arc::new(config)),
            provider,
            ticketer,
            cache,
        })
    }

    /// The configuration new TLS sessions start with.
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the certificate and key for new TLS sessions; on an error
    /// the old ones stay.
    pub fn reload(&self, pem: &Pem) -> Result<(), String> {
        let config = Arc::new(build(pem, &self.provider, &self.ticketer, &self.cache)?);
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// The server's tickets and session cache, which each connection
    /// sees through its own stamp ([`super::resume`]).
    pub fn store(&self) -> Store {
        Store {
            tickets: Arc::clone(&self.ticketer),
            cache: Arc::clone(&self.cache),
        }
    }

    /// A fresh random token for a control connection; `None` when the
    /// system's generator fails (then it cannot make keys either).
    pub fn token(&self) -> Option<Token> {
        let mut t = Token::default();
        self.provider.secure_random.fill(&mut t).ok()?;
        Some(t)
    }
}

/// The *ring* provider with its suites (AEAD only, ECDHE only: no CBC,
/// no RSA key exchange), AES-128-GCM first. The server's order decides
/// ([`build`]): AES-128-GCM with SHA-256 costs less a handshake than the
/// clients' usual first choice, AES-256-GCM with SHA-384 (SHA-256 has the
/// CPU's instructions, SHA-384 not; ten AES rounds, not fourteen), and
/// both are TLS 1.3's own; ChaCha20 stays for clients without AES.
fn provider() -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    p
}

/// A server configuration: TLS 1.3 and 1.2 with the provider's suites in
/// the server's order, tickets for resumption, no client certificates.
fn build(
    pem: &Pem,
    provider: &Arc<CryptoProvider>,
    ticketer: &Arc<dyn ProducesTickets>,
    cache: &Arc<dyn StoresServerSessions>,
) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("certificate file: no certificate in it".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(&pem.key)
        .map_err(|e| format!("key file: no private key in it ({e})"))?;
    let mut config = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.ticketer = Arc::clone(ticketer);
    config.session_storage = Arc::clone(cache);
    config.ignore_client_order = true;
    Ok(config)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for `localhost`, as PEM.
    pub(crate) fn self_signed() -> Pem {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Pem {
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        }
    }

    #[test]
    fn good_and_bad_files() {
        let pem = self_signed();
        let tls = ServerTls::new(&pem, None, Sessions::Many).unwrap();
        assert_ne!(tls.token().unwrap(), tls.token().unwrap());
        let other = self_signed();
        let mismatched = Pem {
            cert: pem.cert.clone(),
            key: other.key.clone(),
        };
        assert!(ServerTls::new(&mismatched, None, Sessions::Many).is_err());
        assert!(tls.reload(&mismatched).is_err());
        let empty = Pem {
            cert: Vec::new(),
            key: pem.key.clone(),
        };
        assert!(
            ServerTls::new(&empty, None, Sessions::Many)
                .unwrap_err()
                .contains("no certificate")
        );
        let nokey = Pem {
            cert: pem.cert.clone(),
            key: b"junk".to_vec(),
        };
        assert!(
            ServerTls::new(&nokey, None, Sessions::Many)
                .unwrap_err()
                .contains("key file")
        );
        // A reload with another good pair works and leaves tickets alone.
        let before = tls.config();
        tls.reload(&other).unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.config()));
        assert!(format!("{pem:?}").starts_with("Pem("));
    }
}
