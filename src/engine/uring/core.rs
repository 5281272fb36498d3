//! What every session of a worker is worked on with: the ring (and the
//! submissions that did not fit in it yet), the buffer ring, and what
//! both supervisor engines keep (`worker::Base`: the timers, the mover,
//! the helper threads).

use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};

use super::bufring::BufRing;
use super::mover::RingMover;
use super::{OP_CANCEL, user_data};
use crate::engine::worker::{Base, HasBase};

/// The worker's ring and what every session is worked on with.
pub struct Core {
    pub base: Base<RingMover>,
    pub ring: IoUring,
    /// After `ring` (dropped after it).
    pub bufs: BufRing,
    /// Entries that did not fit in the submission queue, in order.
    pub backlog: Vec<squeue::Entry>,
}

impl HasBase for Core {
    type Mover = RingMover;

    fn base(&self) -> &Base<RingMover> {
        &self.base
    }

    fn base_mut(&mut self) -> &mut Base<RingMover> {
        &mut self.base
    }
}

impl Core {
    /// Queues `e` for submission (in order: a cancellation never overtakes
    /// what it cancels).
    pub fn push(&mut self, e: squeue::Entry) {
        if self.backlog.is_empty() {
            if self.ring.submission().is_full() {
                let _ = self.ring.submit();
            }
            // SAFETY: what the entry points at (a connection's output
            // buffer, the buffer ring) and the descriptors it names live,
            // unmoved, until its last completion is reaped: see the module
            // notes.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
        }
        self.backlog.push(e);
    }

    pub fn cancel(&mut self, target: u64) {
        let e = opcode::AsyncCancel::new(target).build();
        self.push(e.user_data(user_data(OP_CANCEL, 0, 0)));
    }

    /// Moves the backlog into the submission queue, as far as it fits.
    fn flush_backlog(&mut self) {
        let mut done = 0;
        for e in &self.backlog {
            if self.ring.submission().is_full() {
                let _ = self.ring.submit();
            }
            // SAFETY: as in `push`.
            if unsafe { self.ring.submission().push(e) }.is_err() {
                break;
            }
            done += 1;
        }
        self.backlog.drain(..done);
    }

    /// Submits, and waits for a completion or until `timeout`.
    pub fn wait(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.flush_backlog();
        let r = match timeout {
            Some(d) => {
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(std::io::Error::new(
                e.kind(),
                format!("io_uring_enter: {e}"),
            )),
        }
    }
}
