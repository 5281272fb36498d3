//! Which TLS sessions a connection may resume. Every ticket and cached
//! session the server issues carries the token of the control connection
//! it was issued on and when it expires. A control connection resumes
//! any of them (a client that reconnects saves the full handshake) and
//! notes whose it was; a data connection resumes only its own control
//! connection's (RFC 4217 §10: so a third party that races the client to
//! a passive port cannot complete a transfer). A download's data
//! connection issues tickets stamped with its control connection's token
//! (clients that use a TLS 1.3 ticket only once need them for the next
//! transfer); it can, because only a handshake that resumed completes
//! there: one that does not is refused as soon as its ClientHello is
//! read, before the tickets that come at its end (`data::DataTls`).

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use rustls::server::{ProducesTickets, StoresServerSessions};

use super::Token;

/// How long a ticket or cached session may be resumed, at most: long
/// enough for a client's reconnections, short enough that a stolen one
/// soon stops working.
pub const LIFETIME: u32 = 2 * 60 * 60;

/// Bytes before rustls's own in a ticket's plaintext or a cached value:
/// the token, then the expiry (seconds since the epoch, big-endian).
const STAMP: usize = 16 + 8;

/// The server's tickets and session cache, which every connection's
/// configuration sees through its own stamp.
#[derive(Clone, Debug)]
pub struct Store {
    pub tickets: Arc<dyn ProducesTickets>,
    pub cache: Arc<dyn StoresServerSessions>,
}

/// The token of the session a control connection resumed, as its
/// ticket or cache entry said.
#[derive(Debug, Default)]
pub struct Seen(Mutex<Option<Token>>);

impl Seen {
    fn note(&self, token: Token) {
        // The last one the server opened is the one it resumes (rustls
        // stops at the first acceptable ticket).
        match self.0.lock() {
            Ok(mut s) => *s = Some(token),
            Err(poisoned) => *poisoned.into_inner() = Some(token),
        }
    }

    pub fn get(&self) -> Option<Token> {
        match self.0.lock() {
            Ok(s) => *s,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// Whether a connection issues resumable sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// Tickets and cached sessions, stamped with its control connection's
    /// token.
    Stamped,
    /// None: an upload's data connection (see `data::for_transfer`).
    Nothing,
}

/// What one connection's configuration accepts.
#[derive(Debug, Clone)]
enum Accept {
    /// A control connection: anything of ours that has not expired.
    Any(Arc<Seen>),
    /// A data connection: only sessions stamped with these tokens (its
    /// control connection's own, and the one that connection resumed).
    Only(Vec<Token>),
}

impl Accept {
    fn take(&self, token: Token) -> bool {
        match self {
            Accept::Any(seen) => {
                seen.note(token);
                true
            }
            Accept::Only(tokens) => tokens.contains(&token),
        }
    }
}

impl Store {
    /// A control connection's configuration: `base` with tickets and
    /// cached sessions stamped with `token`, resuming any of ours. The
    /// [`Seen`] says whose session it resumed.
    pub fn control(&self, base: &ServerConfig, token: Token) -> (Arc<ServerConfig>, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let config = self.stamped(base, token, Accept::Any(Arc::clone(&seen)), Issue::Stamped);
        (Arc::new(config), seen)
    }

    /// A data connection's configuration: resumes only sessions stamped
    /// with one of `accept`; issues tickets stamped with `token` if
    /// `issue`, else none (no TLS 1.3 tickets, an empty TLS 1.2 ticket,
    /// nothing cached).
    pub fn data(
        &self,
        base: &ServerConfig,
        token: Token,
        accept: Vec<Token>,
        issue: Issue,
    ) -> Arc<ServerConfig> {
        let mut config = self.stamped(base, token, Accept::Only(accept), issue);
        if issue == Issue::Nothing {
            config.send_tls13_tickets = 0;
        }
        Arc::new(config)
    }

    fn stamped(
        &self,
        base: &ServerConfig,
        token: Token,
        accept: Accept,
        issue: Issue,
    ) -> ServerConfig {
        let mut config = base.clone();
        config.ticketer = Arc::new(Tickets {
            inner: Arc::clone(&self.tickets),
            token,
            accept: accept.clone(),
            issue,
        });
        config.session_storage = Arc::new(Cache {
            inner: Arc::clone(&self.cache),
            token,
            accept,
            issue,
        });
        config
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `plain` after `token` and its expiry, `lifetime` seconds from now.
fn stamp(token: &Token, lifetime: u32, plain: &[u8]) -> Vec<u8> {
    let expires = now().saturating_add(u64::from(lifetime));
    let mut v = Vec::with_capacity(STAMP + plain.len());
    v.extend_from_slice(token);
    v.extend_from_slice(&expires.to_be_bytes());
    v.extend_from_slice(plain);
    v
}

/// What follows the stamp, when it has not expired and `accept` takes
/// its token.
fn unstamp(stamped: &[u8], accept: &Accept) -> Option<Vec<u8>> {
    let (head, plain) = stamped.split_at_checked(STAMP)?;
    let (token, expires) = head.split_at(16);
    let expires = u64::from_be_bytes(expires.try_into().ok()?);
    let token: Token = token.try_into().ok()?;
    if now() >= expires || !accept.take(token) {
        return None;
    }
    Some(plain.to_vec())
}

/// The server's tickets, stamped.
#[derive(Debug)]
struct Tickets {
    inner: Arc<dyn ProducesTickets>,
    token: Token,
    accept: Accept,
    issue: Issue,
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime().min(LIFETIME)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        if self.issue == Issue::Nothing {
            return None;
        }
        self.inner
            .encrypt(&stamp(&self.token, self.lifetime(), plain))
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        unstamp(&self.inner.decrypt(cipher)?, &self.accept)
    }
}

/// The server's TLS 1.2 session cache, entries stamped.
#[derive(Debug)]
struct Cache {
    inner: Arc<dyn StoresServerSessions>,
    token: Token,
    accept: Accept,
    issue: Issue,
}

impl StoresServerSessions for Cache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.issue == Issue::Stamped && self.inner.put(key, stamp(&self.token, LIFETIME, &value))
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        unstamp(&self.inner.get(key)?, &self.accept)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        // Only for single-use TLS 1.3 sessions without tickets (we always
        // have tickets): an entry another connection may not use stays.
        let value = self.inner.get(key)?;
        let plain = unstamp(&value, &self.accept)?;
        self.inner.take(key).map(|_| plain)
    }

    fn can_cache(&self) -> bool {
        self.issue == Issue::Stamped && self.inner.can_cache()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tls::keys::tests::self_signed;
    use crate::engine::tls::keys::{ServerTls, Sessions};

    #[test]
    fn control_resumes_any_data_only_its_own() {
        let tls = ServerTls::new(&self_signed(), None, Sessions::Many).unwrap();
        let store = tls.store();
        let base = tls.config();
        let (ta, tb) = (tls.token().unwrap(), tls.token().unwrap());
        let (a, seen_a) = store.control(&base, ta);
        let (b, seen_b) = store.control(&base, tb);
        // A ticket of control connection a opens on control connection b
        // too, which notes whose it was.
        let ticket = a.ticketer.encrypt(b"state").unwrap();
        assert_eq!(b.ticketer.decrypt(&ticket).unwrap(), b"state");
        assert_eq!(seen_b.get(), Some(ta));
        assert_eq!(seen_a.get(), None);
        // A session a cached (TLS 1.2 id) resumes on b too.
        assert!(a.session_storage.put(b"id".to_vec(), b"v".to_vec()));
        assert_eq!(b.session_storage.get(b"id").unwrap(), b"v");
        // A data connection of b takes a's session only if b resumed it.
        let only_b = store.data(&base, tb, vec![tb], Issue::Nothing);
        assert_eq!(only_b.ticketer.decrypt(&ticket), None);
        assert_eq!(only_b.session_storage.get(b"id"), None);
        assert_eq!(only_b.session_storage.take(b"id"), None);
        let lineage = store.data(&base, tb, vec![tb, ta], Issue::Stamped);
        assert_eq!(lineage.ticketer.decrypt(&ticket).unwrap(), b"state");
        // b's own tickets open on its data connections.
        let own = b.ticketer.encrypt(b"mine").unwrap();
        assert_eq!(only_b.ticketer.decrypt(&own).unwrap(), b"mine");
        // A download's data connection issues tickets stamped with its
        // control connection's token: they open where b's own do.
        let from_data = lineage.ticketer.encrypt(b"next").unwrap();
        assert_eq!(only_b.ticketer.decrypt(&from_data).unwrap(), b"next");
        assert_eq!(
            store
                .data(&base, ta, vec![ta], Issue::Stamped)
                .ticketer
                .decrypt(&from_data),
            None
        );
        // An upload's issues nothing: no ticket, no cache entry.
        assert_eq!(only_b.ticketer.encrypt(b"x"), None);
        assert!(!only_b.session_storage.put(b"id2".to_vec(), b"v".to_vec()));
        assert!(!only_b.session_storage.can_cache());
        assert_eq!(only_b.send_tls13_tickets, 0);
        assert_eq!(a.session_storage.get(b"id2"), None);
        // Something the server did not issue opens nowhere.
        assert_eq!(b.ticketer.decrypt(b"not a ticket of ours"), None);
        let stranger = ServerTls::new(&self_signed(), None, Sessions::Many).unwrap();
        let (s, _) = stranger.store().control(&stranger.config(), ta);
        assert_eq!(b.ticketer.decrypt(&s.ticketer.encrypt(b"x").unwrap()), None);
    }

    #[test]
    fn stamps_expire() {
        let t: Token = [7; 16];
        let any = Accept::Any(Arc::default());
        assert_eq!(unstamp(&stamp(&t, 60, b"p"), &any).unwrap(), b"p");
        // Expired (a lifetime of 0 ends now), too short, wrong token.
        assert_eq!(unstamp(&stamp(&t, 0, b"p"), &any), None);
        assert_eq!(unstamp(&stamp(&t, 60, b"p")[..STAMP - 1], &any), None);
        assert_eq!(
            unstamp(&stamp(&t, 60, b"p"), &Accept::Only(vec![[8; 16]])),
            None
        );
        assert_eq!(
            unstamp(&stamp(&t, 60, b"p"), &Accept::Only(vec![t])).unwrap(),
            b"p"
        );
    }
}
