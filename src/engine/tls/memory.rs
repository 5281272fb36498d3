//! What an idle TLS control connection holds, measured: a counting
//! allocator (this thread's live bytes) around a real handshake with a
//! rustls client, a command and its reply, then the connection dropped.
//! Test-only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::ServerTls;
use super::control::ControlTls;
use super::keys::Sessions;
use super::keys::tests::self_signed;
use crate::core::clock::Now;
use crate::core::config::SessionConfig;
use crate::core::session::{Endpoints, Session};
use crate::fs::exec::Real;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counting only reads the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: ptr came from alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        count(new as isize - layout.size() as isize);
        // SAFETY: as GlobalAlloc::realloc requires, passed on.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// Moves bytes both ways until neither side has anything to say.
fn pump(client: &mut ClientConnection, server: &mut ControlTls, session: &mut Session<Real>) {
    for _ in 0..100 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        if !wire.is_empty() {
            server.input(&wire, session, Now::get());
        }
        let mut farewell: &'static [u8] = b"";
        server.seal(session, &mut farewell, false);
        let out = server.pending().to_vec();
        if out.is_empty() && wire.is_empty() {
            return;
        }
        server.wrote(out.len(), session);
        let mut rd = &out[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
        }
    }
    panic!("the handshake never settled");
}

#[test]
fn an_idle_tls_session_is_small() {
    let pem = self_signed();
    let server = ServerTls::new(&pem, None, Sessions::One).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem.cert).unwrap())
        .unwrap();
    let config = Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(config, name).unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let ends = Endpoints {
        local: Some("127.0.0.1:21".parse().unwrap()),
        peer: Some(peer),
    };
    let mut session = Session::<Real>::new(Arc::new(SessionConfig::default()), ends, Now::get());
    while session.poll_action().is_some() {}
    let token = server.token().unwrap();
    let before = live();
    let mut tls = ControlTls::new(&server.config(), server.store(), token).unwrap();
    pump(&mut client, &mut tls, &mut session);
    client.writer().write_all(b"NOOP\r\n").unwrap();
    pump(&mut client, &mut tls, &mut session);
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = client.reader().read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&reply).contains("200 NOOP ok"));
    assert!(tls.pending().is_empty());
    let idle = live();
    drop(tls);
    let held = idle - live();
    eprintln!(
        "an idle TLS control connection holds {held} bytes ({} allocated by both ends meanwhile)",
        idle - before
    );
    // rustls keeps its 4 KiB read buffer, its key schedule and record
    // keys; this module keeps no buffer of its own while idle.
    assert!(held < 16 * 1024, "{held}");
}
