//! A helper thread's half of an upload: the bytes waiting on the data
//! socket go straight into the file with `splice(2)`, socket -> pipe ->
//! file, so that a byte is copied once (into the page cache) rather than
//! twice (socket -> buffer -> file), and the worker hands the upload to a
//! helper once per socket drained (or 10 ms slice) instead of once per
//! buffer. Measured on the epoll supervisor: see contrib/bench/BENCHMARKS.md.
//!
//! The pipe is the helper thread's own, made once and reused while it is
//! empty: it is emptied into the file after every splice from the socket,
//! so an `EAGAIN` from the socket side can only mean the socket has
//! nothing. A pipe that may hold bytes (an error between the two splices)
//! is closed, never reused.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};

use super::mover::{Intake, Next, write_error};
use crate::core::session::TransferError;

/// The pipe's capacity asked for: a splice moves at most this much (Linux
/// grants up to `/proc/sys/fs/pipe-max-size`, 1 MiB by default; a smaller
/// pipe still works, in more calls).
const PIPE_SIZE: usize = 1 << 20;
/// Bytes copied at a time when the file cannot take spliced bytes.
const COPY_READ: usize = 64 * 1024;

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

thread_local! {
    static PIPE: RefCell<Option<Pipe>> = const { RefCell::new(None) };
}

/// Writes `head` (bytes the worker received) to `file` at `offset`, then
/// moves what `sock` (non-blocking) holds after it, at most `max` bytes,
/// until the socket has nothing, the client closed, or `until` has passed
/// (after some bytes). Bytes that left the socket are always in the file
/// (or the job failed). The [`Intake`] counts the socket's bytes.
pub fn intake(
    sock: &TcpStream,
    file: &File,
    offset: u64,
    head: &[u8],
    max: u64,
    until: Instant,
) -> Result<Intake, TransferError> {
    file.write_all_at(head, offset).map_err(write_error)?;
    let offset = offset + head.len() as u64;
    PIPE.with_borrow_mut(|slot| {
        let pipe = match slot.take() {
            Some(p) => p,
            None => match new_pipe() {
                Ok(p) => p,
                // No pipe (out of descriptors, say): the upload goes on
                // by copying, as on a filesystem without splice.
                Err(_) => {
                    return Ok(Intake {
                        bytes: 0,
                        next: Next::Copy,
                    });
                }
            },
        };
        let r = run(&pipe, sock, file, offset, max, until);
        if r.is_ok() {
            *slot = Some(pipe);
        }
        r
    })
}

fn new_pipe() -> io::Result<Pipe> {
    let (r, w) = pipe_with(PipeFlags::CLOEXEC)?;
    // Best effort: the default 64 KiB works too.
    let _ = fcntl_setpipe_size(&w, PIPE_SIZE);
    Ok(Pipe { r, w })
}

fn run(
    pipe: &Pipe,
    sock: &TcpStream,
    file: &File,
    offset: u64,
    max: u64,
    until: Instant,
) -> Result<Intake, TransferError> {
    let mut bytes = 0u64;
    loop {
        if bytes >= max || (bytes > 0 && Instant::now() >= until) {
            return took(bytes, Next::More);
        }
        let want = usize::try_from(max - bytes)
            .unwrap_or(usize::MAX)
            .min(PIPE_SIZE);
        let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        let n = match splice(sock, None, &pipe.w, None, want, flags) {
            Ok(0) => return took(bytes, Next::End),
            Ok(n) => n,
            Err(Errno::AGAIN) => return took(bytes, Next::Readable),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(TransferError::Connection(e.into())),
        };
        let spliced = to_file(pipe, file, offset + bytes, n)?;
        bytes += n as u64;
        if !spliced {
            return took(bytes, Next::Copy);
        }
    }
}

fn took(bytes: u64, next: Next) -> Result<Intake, TransferError> {
    Ok(Intake { bytes, next })
}

/// Empties the `n` bytes in `pipe` into `file` at `offset`: spliced
/// (true), or read and written if the file cannot take them so (false).
fn to_file(pipe: &Pipe, file: &File, mut offset: u64, n: usize) -> Result<bool, TransferError> {
    let mut left = n;
    while left > 0 {
        match splice(
            &pipe.r,
            None,
            file,
            Some(&mut offset),
            left,
            SpliceFlags::MOVE,
        ) {
            Ok(0) => return Err(write_error(io::ErrorKind::WriteZero.into())),
            Ok(k) => left -= k,
            Err(Errno::INTR) => {}
            // A filesystem without splice support (or a file opened for
            // appending): what the pipe holds is copied.
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                copy_out(pipe, file, offset, left)?;
                return Ok(false);
            }
            Err(e) => return Err(write_error(e.into())),
        }
    }
    Ok(true)
}

/// Reads `left` bytes from `pipe` and writes them to `file` at `offset`.
fn copy_out(
    pipe: &Pipe,
    file: &File,
    mut offset: u64,
    mut left: usize,
) -> Result<(), TransferError> {
    let mut buf = vec![0u8; COPY_READ.min(left)];
    while left > 0 {
        let want = left.min(buf.len());
        let got = match rustix::io::read(&pipe.r, &mut buf[..want]) {
            Ok(0) => return Err(write_error(io::ErrorKind::UnexpectedEof.into())),
            Ok(k) => k,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(TransferError::Sink(e.into())),
        };
        file.write_all_at(&buf[..got], offset)
            .map_err(write_error)?;
        offset += got as u64;
        left -= got;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
