//! Upload data through the ring: the worker receives it from the socket
//! (`engine::recv`), and the ring writes each buffer to the file
//! (IORING_OP_WRITE at an offset), so the worker never waits for the
//! disk. One write per transfer in flight; its buffer and file stay with
//! the mover until the completion is reaped, even when the transfer is
//! dropped meanwhile (`RingMover::finish`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use super::{OP_MOVER, user_data};
use crate::core::session::TransferError;
use crate::engine::mover::{Tag, write_error};

/// A write in flight.
pub struct InFlight {
    file: Arc<File>,
    buf: Vec<u8>,
    /// Where `buf` goes in the file.
    offset: u64,
    /// Bytes of `buf` written so far (a short write is continued).
    done: usize,
    tag: Tag,
}

/// A transfer's write, if one is in flight.
#[derive(Default)]
pub struct Writing {
    pub inflight: Option<InFlight>,
}

impl Writing {
    /// Starts writing `buf` at `offset` of `file`.
    pub fn submit(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        buf: Vec<u8>,
        tag: Tag,
        outbox: &mut Vec<squeue::Entry>,
    ) {
        let w = InFlight {
            file: Arc::clone(file),
            buf,
            offset,
            done: 0,
            tag,
        };
        outbox.push(entry(&w));
        self.inflight = Some(w);
    }

    /// The write completed with `res` (bytes, or `-errno`): the buffer
    /// back once all of it is written; a short write goes on.
    pub fn completed(
        &mut self,
        res: i32,
        outbox: &mut Vec<squeue::Entry>,
    ) -> Result<Option<Vec<u8>>, TransferError> {
        let Some(mut w) = self.inflight.take() else {
            return Err(TransferError::Sink(io::ErrorKind::Other.into()));
        };
        match res {
            n if n > 0 => {
                w.done += n as usize;
                if w.done >= w.buf.len() {
                    return Ok(Some(w.buf));
                }
                outbox.push(entry(&w));
                self.inflight = Some(w);
                Ok(None)
            }
            0 => Err(TransferError::Sink(io::ErrorKind::WriteZero.into())),
            e => Err(write_error(io::Error::from_raw_os_error(-e))),
        }
    }
}

impl InFlight {
    pub fn tag(&self) -> Tag {
        self.tag
    }
}

/// The ring operation that writes the rest of `w`. The buffer it points
/// at lives, unmoved, in `w` until the completion is reaped.
fn entry(w: &InFlight) -> squeue::Entry {
    let rest = w.buf.get(w.done..).unwrap_or_default();
    let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
    opcode::Write::new(types::Fd(w.file.as_raw_fd()), rest.as_ptr(), len)
        .offset(w.offset + w.done as u64)
        .build()
        .user_data(user_data(OP_MOVER, w.tag.slot, w.tag.generation))
}
