//! The control connection's TLS, between the session and the socket:
//! ciphertext read goes in through [`ControlTls::input`] and comes out as
//! the session's command bytes; the session's replies are sealed into
//! ciphertext that the engine writes from [`ControlTls::pending`] like
//! any output. Replies count as written (`Session::consume_output`, which
//! opens the 150 gate) only once the ciphertext carrying them is written,
//! as in clear. An idle session keeps no buffer of its own here.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::{HandshakeKind, ServerConfig, ServerConnection};

use super::Token;
use super::resume::{Issue, Seen, Store};
use crate::core::clock::Now;
use crate::core::session::Session;
use crate::fs::exec::Real;

/// Plaintext sealed at a time: one TLS record.
const SEAL: usize = 16 * 1024;

/// What became of the control connection after input.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Ok,
    /// The client closed TLS (close_notify): no more input.
    Closed,
    /// TLS failed: the session ends (the alert, if any, is in the output).
    Failed(String),
}

pub struct ControlTls {
    conn: Box<ServerConnection>,
    config: Arc<ServerConfig>,
    store: Store,
    token: Token,
    /// Whose session the handshake resumed, if it did.
    seen: Arc<Seen>,
    /// Ciphertext to write, from `at`.
    out: Vec<u8>,
    at: usize,
    /// Session output bytes sealed into `out`: reported written once
    /// `out` is.
    sealed: usize,
    /// close_notify queued.
    closed: bool,
}

impl ControlTls {
    /// TLS for a control connection, from the server's `base`
    /// configuration and `store`: it resumes any session of the server's
    /// (a client that reconnects), and `token` stamps the sessions it
    /// issues, which its data connections must resume.
    pub fn new(base: &ServerConfig, store: Store, token: Token) -> Result<ControlTls, String> {
        let (config, seen) = store.control(base, token);
        let conn = ServerConnection::new(Arc::clone(&config)).map_err(|e| e.to_string())?;
        Ok(ControlTls {
            conn: Box::new(conn),
            config,
            store,
            token,
            seen,
            out: Vec::new(),
            at: 0,
            sealed: 0,
            closed: false,
        })
    }

    /// The configuration a data connection of this session starts from:
    /// it resumes only the sessions this control connection issued, or
    /// the one it resumed itself (a client may go on presenting that
    /// one, as TLS 1.2 clients resuming by session id do); what it issues
    /// (`issue`) is stamped as this control connection's.
    pub fn for_data(&self, issue: Issue) -> Arc<ServerConfig> {
        let mut accept = vec![self.token];
        if let Some(resumed) = self.resumed() {
            accept.push(resumed);
        }
        self.store.data(&self.config, self.token, accept, issue)
    }

    /// The token of the session this control connection resumed.
    pub fn resumed(&self) -> Option<Token> {
        match self.conn.handshake_kind() {
            Some(HandshakeKind::Resumed) => self.seen.get(),
            _ => None,
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Ciphertext read from the control connection: the commands in it go
    /// to `session`.
    pub fn input(&mut self, mut bytes: &[u8], session: &mut Session<Real>, now: Now) -> Input {
        let mut result = Input::Ok;
        while !bytes.is_empty() {
            if let Err(e) = self.conn.read_tls(&mut bytes) {
                result = Input::Failed(e.to_string());
                break;
            }
            match self.conn.process_new_packets() {
                Ok(state) => {
                    let mut plain = [0u8; 4096];
                    for _ in 0..64 {
                        match self.conn.reader().read(&mut plain) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => session.on_control(&plain[..n], now),
                        }
                    }
                    if state.peer_has_closed() {
                        result = Input::Closed;
                        break;
                    }
                }
                Err(e) => {
                    result = Input::Failed(e.to_string());
                    break;
                }
            }
        }
        // Handshake messages, an alert: out they go with the next write.
        self.take_tls();
        result
    }

    /// Ciphertext waiting to be written.
    pub fn pending(&self) -> &[u8] {
        self.out.get(self.at..).unwrap_or_default()
    }

    /// `n` bytes of [`ControlTls::pending`] were written; once all are,
    /// the replies they carried count as written.
    pub fn wrote(&mut self, n: usize, session: &mut Session<Real>) {
        self.at = (self.at + n).min(self.out.len());
        if self.at == self.out.len() {
            // An idle session keeps no buffer.
            self.out = Vec::new();
            self.at = 0;
            let sealed = std::mem::take(&mut self.sealed);
            if sealed > 0 {
                session.consume_output(sealed);
            }
        }
    }

    /// Seals the session's output (then `farewell`, then a close_notify
    /// once `closing`) into ciphertext, when what was sealed before is
    /// written and the handshake is done.
    pub fn seal(&mut self, session: &Session<Real>, farewell: &mut &'static [u8], closing: bool) {
        if !self.pending().is_empty() || self.sealed > 0 || self.conn.is_handshaking() {
            self.take_tls();
            return;
        }
        let out = session.output();
        if !out.is_empty() {
            let n = out.len().min(SEAL);
            if let Ok(n) = self.conn.writer().write(&out[..n]) {
                self.sealed = n;
            }
        } else if !farewell.is_empty() {
            if let Ok(n) = self.conn.writer().write(farewell) {
                *farewell = farewell.get(n..).unwrap_or_default();
            }
        } else if closing && !self.closed {
            self.closed = true;
            self.conn.send_close_notify();
        }
        self.take_tls();
    }

    /// Moves what rustls has to send into `out`.
    fn take_tls(&mut self) {
        for _ in 0..64 {
            if !self.conn.wants_write() {
                break;
            }
            if self.conn.write_tls(&mut self.out).is_err() {
                break;
            }
        }
    }
}
