//! The io_uring worker's connections that wait for their PROXY header
//! (`--proxy-protocol`): one poll at a time for input, then a read by
//! `engine::proxy` in the worker, then a session, or closed. A poll's
//! user_data carries the connection's generation, so a late completion
//! (of a poll cancelled at its deadline) is never taken for a later
//! connection's in the same slot; a poll holds no memory of the worker's.

use std::os::fd::AsRawFd;

use io_uring::{opcode, types};

use super::mover::GENERATION_MASK;
use super::{OP_HEADER, Worker, user_data};
use crate::engine::proxy::{self, Pending, Step};

impl Worker {
    /// Waits for the PROXY header of `p`.
    pub(super) fn wait_header(&mut self, p: Pending) {
        let slot = self.waiting.insert(p);
        self.poll_header(slot);
    }

    /// A poll for input on the connection in `slot`.
    fn poll_header(&mut self, slot: usize) {
        let Some(p) = self.waiting.get(slot) else {
            return;
        };
        let e = opcode::PollAdd::new(types::Fd(p.fd().as_raw_fd()), libc::POLLIN as u32).build();
        let ud = user_data(OP_HEADER, slot, p.generation);
        self.core.push(e.user_data(ud));
    }

    /// The poll of the connection in `slot` completed.
    pub(super) fn on_header(&mut self, slot: usize, generation: u32, res: i32) {
        let Some(mut p) = self.waiting.take(slot) else {
            return; // cancelled: it is gone
        };
        if p.generation & GENERATION_MASK != generation {
            // An earlier connection's poll, cancelled.
            return self.waiting.put(slot, p);
        }
        if res < 0 {
            self.waiting.release(slot);
            return p.lost(&self.core.base.ctx.log);
        }
        let ctx = &self.core.base.ctx;
        let mut scratch = [0u8; 4096];
        match p.read(&mut scratch, &ctx.log, || proxy::has_room(ctx)) {
            Step::Wait => {
                self.waiting.put(slot, p);
                self.poll_header(slot);
            }
            Step::Close => self.waiting.release(slot),
            Step::Admit { ends, rest } => {
                self.waiting.release(slot);
                let stream = p.into_stream();
                let ctx = &self.core.base.ctx;
                if let Some(admitted) = self.admission.admit_as(ctx, &stream, ends, &rest) {
                    self.start_session(stream, admitted);
                }
            }
        }
    }

    /// Closes the connections whose header did not come in time.
    pub(super) fn expire_headers(&mut self, now: std::time::Instant) {
        while let Some((slot, p)) = self.waiting.expired(now) {
            self.core.cancel(user_data(OP_HEADER, slot, p.generation));
            p.timed_out(&self.core.base.ctx.log);
        }
    }

    /// Closes every connection still waiting for its header.
    pub(super) fn drop_headers(&mut self) {
        for (slot, p) in self.waiting.drain() {
            self.core.cancel(user_data(OP_HEADER, slot, p.generation));
        }
    }
}
