//! Signals. The main thread blocks SIGTERM, SIGINT and SIGHUP before any
//! worker exists (workers inherit the mask, so no signal ever interrupts a
//! worker), then reads them from a signalfd and turns a stop signal into
//! the workers' stop request (`engine::stop`).

use std::io;
use std::os::fd::AsFd;

use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

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
