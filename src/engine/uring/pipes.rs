//! The worker's pool of pipes for splicing file -> pipe -> socket: a pipe
//! per transfer would hit the per-user pipe limit near 1,000 sessions; a
//! transfer holds one only while it holds that transfer's bytes.

use std::os::fd::OwnedFd;

/// Pipes per worker, at most, and the size asked for each. The user the
/// server runs as has an allowance of pipe buffers
/// (fs.pipe-user-pages-soft, 64 MiB by default); past it the kernel
/// refuses to enlarge a pipe and makes new ones a page or two, and a
/// download through such a pipe costs many times the CPU. 64 of 512 KiB
/// for each of two workers is that allowance.
pub const MAX_PIPES: usize = 64;
const PIPE_SIZE: usize = 512 * 1024;

/// A pipe of the pool: read end, write end, capacity.
pub struct Pipe {
    pub r: OwnedFd,
    pub w: OwnedFd,
    pub cap: u32,
}

/// The worker's pipes for splicing: at most [`MAX_PIPES`], made on
/// demand, reused. A pipe that may hold stray bytes (its transfer ended
/// mid-splice) is closed rather than reused.
#[derive(Default)]
pub struct Pipes {
    free: Vec<Pipe>,
    made: usize,
}

impl Pipes {
    pub fn get(&mut self) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.made >= MAX_PIPES {
            return None;
        }
        use rustix::pipe::{PipeFlags, fcntl_getpipe_size, fcntl_setpipe_size, pipe_with};
        let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
        // Past the per-user allowance the kernel keeps the default size.
        let cap = fcntl_setpipe_size(&w, PIPE_SIZE)
            .or_else(|_| fcntl_getpipe_size(&w))
            .ok()?;
        self.made += 1;
        Some(Pipe {
            r,
            w,
            cap: u32::try_from(cap).unwrap_or(u32::MAX),
        })
    }

    /// Made, free among them, and the most there may be.
    pub fn usage(&self) -> crate::monitor::board::PipeUse {
        crate::monitor::board::PipeUse {
            made: self.made as u64,
            free: self.free.len() as u64,
            max: MAX_PIPES as u64,
        }
    }

    /// Takes back a pipe. One the kernel made small (the allowance was
    /// used up) is closed, so that its buffers go back to the allowance
    /// and a later one may be made whole.
    pub fn put(&mut self, p: Pipe, clean: bool) {
        if clean && p.cap as usize >= PIPE_SIZE {
            self.free.push(p);
        } else {
            self.made -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_pool_is_bounded() {
        let mut p = Pipes::default();
        let mut held = Vec::new();
        while let Some(pipe) = p.get() {
            assert!(pipe.cap >= 4096);
            held.push(pipe);
            assert!(held.len() <= MAX_PIPES);
        }
        assert_eq!(held.len(), MAX_PIPES);
        // One back, clean: reused. One back, dirty: closed, room to make one.
        let a = held.pop().unwrap();
        p.put(a, true);
        assert!(p.get().is_some());
        let b = held.pop().unwrap();
        p.put(b, false);
        assert!(p.get().is_some());
        assert!(p.get().is_none());
    }

    #[test]
    fn a_small_pipe_is_not_kept() {
        let mut p = Pipes::default();
        let mut pipe = p.get().unwrap();
        pipe.cap = 8192;
        p.put(pipe, true);
        assert_eq!(p.usage().made, 0);
        assert_eq!(p.usage().free, 0);
    }
}
