//! Signals and the stop request. The main thread blocks SIGTERM, SIGINT and
//! SIGHUP before any worker exists (workers inherit the mask, so no signal
//! ever interrupts a worker), then reads them from a signalfd. A stop is an
//! [`AtomicBool`] plus one eventfd per worker, registered in that worker's
//! event loop, so a sleeping worker wakes at once. Nothing here depends on
//! the worker's engine.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
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

/// Why the main thread stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// SIGTERM or SIGINT.
    Signalled(Signal),
    /// A worker ended on its own (an error): the server cannot go on.
    WorkerEnded,
}

/// The signals the supervisor handles, as a signalfd.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call it
    /// before spawning workers, which inherit the mask) and opens a
    /// signalfd for them.
    pub fn block() -> io::Result<Signals> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.add(Signal::SIGHUP);
        set.thread_block().map_err(io::Error::from)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(io::Error::from)?;
        Ok(Signals { fd })
    }

    /// Waits for SIGTERM/SIGINT, or for a worker to end. SIGHUP is passed to
    /// `on_hup` and the wait goes on. Checks on the workers a few times a
    /// second, so a failed worker is noticed without a signal.
    pub fn wait(&self, workers: &[JoinHandle<()>], mut on_hup: impl FnMut()) -> Outcome {
        loop {
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            // Errors (EINTR) just mean: look again.
            let _ = poll(&mut fds, PollTimeout::from(250u16));
            while let Ok(Some(info)) = self.fd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGHUP) => on_hup(),
                    Ok(sig) => return Outcome::Signalled(sig),
                    Err(_) => {}
                }
            }
            if workers.iter().any(JoinHandle::is_finished) {
                return Outcome::WorkerEnded;
            }
        }
    }
}

/// Waits for the workers to end, at most `bound`; returns whether all did.
pub fn join_all(workers: Vec<JoinHandle<()>>, bound: Duration) -> bool {
    let start = std::time::Instant::now();
    while !workers.iter().all(JoinHandle::is_finished) {
        if start.elapsed() >= bound {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut ok = true;
    for w in workers {
        ok &= w.join().is_ok();
    }
    ok
}
