//! The stop request, shared by the main thread and every worker: an
//! [`AtomicBool`] plus one eventfd per worker, registered in that worker's
//! event loop, so a sleeping worker wakes at once.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{EventfdFlags, eventfd};

/// Wakes one worker's event loop: an eventfd it polls for readability.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Waker { fd })
    }

    /// Makes the eventfd readable. Never blocks: a counter that would
    /// overflow (EAGAIN) is readable already.
    pub fn wake(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Resets the eventfd (the worker calls this when it wakes).
    pub fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The stop request, shared by the main thread and every worker.
#[derive(Debug)]
pub struct Stop {
    stopping: AtomicBool,
    wakers: Vec<Waker>,
}

impl Stop {
    /// One waker per worker.
    pub fn new(workers: usize) -> io::Result<Stop> {
        let wakers = (0..workers)
            .map(|_| Waker::new())
            .collect::<io::Result<_>>()?;
        Ok(Stop {
            stopping: AtomicBool::new(false),
            wakers,
        })
    }

    /// Worker `i`'s waker.
    pub fn waker(&self, i: usize) -> Option<&Waker> {
        self.wakers.get(i)
    }

    /// Asks every worker to stop accepting and drain.
    pub fn trigger(&self) {
        self.stopping.store(true, Ordering::Release);
        for w in &self.wakers {
            w.wake();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}
