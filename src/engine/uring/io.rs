//! The io_uring half of a session: control input by a multishot recv into
//! the worker's buffer ring, control output by one send at a time from a
//! copy that stays untouched until its completion, and a poll for the data
//! path's descriptor whenever it waits for one. Every operation is counted
//! until its last completion: the session's slot is freed only then, so no
//! completion can ever be taken for a later session's.

use std::net::TcpStream;
use std::os::fd::AsRawFd;

use io_uring::{cqueue, opcode, types};

use super::bufring::BGID;
use super::mover::{GENERATION_MASK, RingMover};
use super::{Core, OP_POLL, OP_RECV, OP_SEND, user_data};
use crate::core::admission::Permit;
use crate::core::clock::Now;
use crate::engine::conn::{self, Life};
use crate::engine::datapath::Wait;

/// Control output per send.
const SEND_MAX: usize = 16 * 1024;

pub struct UringIo {
    /// The session's place in the limits, given back on drop, before the
    /// control connection closes.
    _permit: Permit,
    pub ctrl: TcpStream,
    /// The multishot recv is armed (its last completion has not come).
    recv: bool,
    /// ... and a cancellation of it was submitted.
    recv_cancel: bool,
    /// A send of `out` is in flight.
    pub send: bool,
    /// ... of the farewell (not of the session's output).
    send_farewell: bool,
    /// The control output in flight: untouched until its completion.
    out: Vec<u8>,
    /// The poll in flight for the data path: (generation bits, what).
    poll: Option<(u32, Wait)>,
    poll_cancel: bool,
    /// Operations submitted whose last completion has not come (not
    /// counting cancellations).
    pub inflight: usize,
    /// The session is over: what is in flight was cancelled, and the slot
    /// is freed once it has all come back.
    pub gone: bool,
}

impl UringIo {
    pub fn new(permit: Permit, ctrl: TcpStream) -> UringIo {
        UringIo {
            _permit: permit,
            ctrl,
            recv: false,
            recv_cancel: false,
            send: false,
            send_farewell: false,
            out: Vec::new(),
            poll: None,
            poll_cancel: false,
            inflight: 0,
            gone: false,
        }
    }

    /// Nothing in flight: the slot can go.
    pub fn quiet(&self) -> bool {
        self.inflight == 0
    }

    /// Arms or cancels the multishot recv as the session wants input.
    pub fn update_recv(&mut self, core: &mut Core, slot: usize, life: &Life<RingMover>) {
        let want =
            !self.gone && !life.dead() && life.wants_input(core.base.stop_deadline.is_some());
        if want && !self.recv {
            let e = opcode::RecvMulti::new(types::Fd(self.ctrl.as_raw_fd()), BGID).build();
            core.push(e.user_data(user_data(OP_RECV, slot, 0)));
            self.inflight += 1;
            self.recv = true;
            self.recv_cancel = false;
        } else if !want && self.recv && !self.recv_cancel {
            core.cancel(user_data(OP_RECV, slot, 0));
            self.recv_cancel = true;
        }
    }

    /// Polls the data path's descriptor while it waits for one; cancels a
    /// poll that no longer matches what it waits for (it is armed again
    /// once that has come back).
    pub fn update_poll(&mut self, core: &mut Core, slot: usize, life: &Life<RingMover>) {
        let generation = life.data.tag().generation & GENERATION_MASK;
        let want = match (life.data.wait(), life.data.fd()) {
            (w @ (Wait::Readable | Wait::Writable), Some(fd)) if !self.gone => Some((w, fd)),
            _ => None,
        };
        match (self.poll, want) {
            (Some(armed), Some((w, _))) if armed == (generation, w) => {}
            (Some((g, _)), _) => {
                if !self.poll_cancel {
                    core.cancel(user_data(OP_POLL, slot, g));
                    self.poll_cancel = true;
                }
            }
            (None, Some((w, fd))) => {
                let events = if w == Wait::Readable {
                    libc::POLLIN
                } else {
                    libc::POLLOUT
                };
                let e = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), events as u32).build();
                core.push(e.user_data(user_data(OP_POLL, slot, generation)));
                self.inflight += 1;
                self.poll = Some((generation, w));
                self.poll_cancel = false;
            }
            (None, None) => {}
        }
    }

    /// The data poll completed: whether it was for what the data path
    /// waits for now.
    pub fn polled(&mut self, life: &Life<RingMover>, generation: u32, res: i32) -> bool {
        self.inflight = self.inflight.saturating_sub(1);
        let armed = self.poll.take();
        self.poll_cancel = false;
        let current = life.data.tag().generation & GENERATION_MASK;
        res >= 0 && !self.gone && generation == current && armed.is_some_and(|(g, _)| g == current)
    }

    /// The session is over: cancels what is in flight.
    pub fn teardown(&mut self, core: &mut Core, slot: usize, life: &mut Life<RingMover>) {
        self.gone = true;
        life.data.abort(&mut core.base.mover);
        if self.recv && !self.recv_cancel {
            core.cancel(user_data(OP_RECV, slot, 0));
            self.recv_cancel = true;
        }
        if self.send {
            core.cancel(user_data(OP_SEND, slot, 0));
        }
        if let Some((g, _)) = self.poll
            && !self.poll_cancel
        {
            core.cancel(user_data(OP_POLL, slot, g));
            self.poll_cancel = true;
        }
    }

    pub fn on_recv(&mut self, core: &Core, life: &mut Life<RingMover>, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.recv = false;
            self.recv_cancel = false;
            self.inflight = self.inflight.saturating_sub(1);
        }
        if self.gone || life.closing() {
            return; // too late: the input is dropped
        }
        let now = Now::get();
        match res {
            n if n > 0 => {
                if let Some(bid) = cqueue::buffer_select(flags) {
                    let input = core.bufs.get(bid, n as usize);
                    life.on_input(input, now);
                }
            }
            0 => life.control_gone(now, false),
            // Out of buffers: re-armed once they are back. Cancelled: we
            // asked for it.
            e if e == -libc::ENOBUFS || e == -libc::ECANCELED => {}
            _ => life.control_gone(now, true),
        }
    }

    pub fn on_sent(&mut self, life: &mut Life<RingMover>, res: i32) {
        self.send = false;
        self.inflight = self.inflight.saturating_sub(1);
        if self.gone {
            return;
        }
        match res {
            n if n > 0 && self.send_farewell => life.wrote_farewell(n as usize),
            n if n > 0 => life.wrote(n as usize),
            0 => life.flags |= conn::DEAD,
            _ => life.write_failed(),
        }
    }
}

impl conn::Io<Core> for UringIo {
    /// Starts a send of what the session has to say (then the farewell),
    /// unless one is in flight.
    fn flush(&mut self, core: &mut Core, slot: usize, life: &mut Life<RingMover>) {
        if self.gone || self.send {
            return;
        }
        if life.dead() {
            return life.discard_output();
        }
        let out = life.unwritten();
        if out.is_empty() {
            if self.out.capacity() > 256 {
                self.out = Vec::new(); // an idle session keeps no buffer
            }
            return;
        }
        let n = out.len().min(SEND_MAX);
        self.send_farewell = life.writes_farewell();
        self.out.clear();
        self.out.extend_from_slice(&out[..n]);
        let e = opcode::Send::new(
            types::Fd(self.ctrl.as_raw_fd()),
            self.out.as_ptr(),
            n as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build();
        core.push(e.user_data(user_data(OP_SEND, slot, 0)));
        self.inflight += 1;
        self.send = true;
    }

    fn sending(&self) -> bool {
        self.send
    }
}
