//! The epoll worker's connections that wait for their PROXY header
//! (`--proxy-protocol`): registered for input, read by
//! `engine::proxy`, then a session, or closed.

use std::net::TcpStream;

use rustix::event::epoll::{self, EventFlags};

use super::{KIND_HEADER, Worker, token};
use crate::core::session::Endpoints;
use crate::engine::proxy::{self, Pending, Step};

impl Worker {
    /// Waits for the PROXY header of `p`.
    pub(super) fn wait_header(&mut self, p: Pending) {
        let slot = self.waiting.insert(p);
        let added = self.waiting.get(slot).map(|p| {
            epoll::add(
                &self.core.ep,
                p.fd(),
                token(slot, KIND_HEADER),
                EventFlags::IN,
            )
        });
        if let Some(Err(e)) = added {
            self.core
                .base
                .ctx
                .log
                .warn(format_args!("closing a connection: epoll_ctl: {e}"));
            drop(self.waiting.take(slot));
            self.waiting.release(slot);
        }
    }

    /// A connection waiting for its header is readable.
    pub(super) fn on_header(&mut self, slot: usize) {
        let Some(mut p) = self.waiting.take(slot) else {
            return; // gone earlier in this batch
        };
        let ctx = &self.core.base.ctx;
        match p.read(&mut self.core.scratch, &ctx.log, || proxy::has_room(ctx)) {
            Step::Wait => self.waiting.put(slot, p),
            Step::Close => self.waiting.release(slot),
            Step::Admit { ends, rest } => {
                self.waiting.release(slot);
                // The session registers it again, as a control connection.
                let _ = epoll::delete(&self.core.ep, p.fd());
                self.admit_client(p.into_stream(), ends, &rest);
            }
        }
    }

    /// A client relayed by a balancer, with the addresses of its header.
    fn admit_client(&mut self, stream: TcpStream, ends: Endpoints, first: &[u8]) {
        let ctx = &self.core.base.ctx;
        let Some(admitted) = self.admission.admit_as(ctx, &stream, ends, first) else {
            return;
        };
        self.start_session(stream, admitted);
    }
}
