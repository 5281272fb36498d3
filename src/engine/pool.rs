//! The helper threads that wait for the disk so that no worker does: a
//! small bounded pool per process, as nginx's `aio threads` (which bought
//! 9x on cold archives). Workers hand it filesystem requests (lookups,
//! opens, directory batches) and disk reads that warm the page cache
//! ahead of a zero-copy send; each finished job goes back to the worker
//! that asked, through that worker's completion queue and eventfd.
//!
//! Three queues, taken in this order: quick jobs (a lookup, an open: what
//! a command waits for), directory batches (mostly CPU: at most as many
//! at once as there are CPUs, so that fifty listings of huge directories
//! cannot crowd the workers off the CPUs), and disk reads (mostly waiting:
//! as many as the pool has threads, so that a cold disk is read with many
//! requests in flight). Neither of the last two ever takes the last
//! thread, so a bystander's `SIZE` never waits behind them.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;

use super::intake::intake;
use super::mover::{FileRange, Intake, Moved, Tag, sendfile_until};
use crate::core::session::{FsAnswer, FsRequest, TransferError, Tree};
use crate::fs::exec::Real;
use crate::fs::trees::Trees;

/// How long a helper's send goes on before it lets other jobs have the
/// thread: a hot file moves some 10-40 MiB in that time, a cold one what
/// the disk gave.
const SEND_SLICE: Duration = Duration::from_millis(10);
/// A read of at most this many bytes is a quick job.
const QUICK_READ: u64 = 64 * 1024;
/// Bytes read per `pread` while warming the page cache.
const WARM_READ: usize = 128 * 1024;
/// A helper thread's stack: it resolves paths and reads, no more.
const STACK: usize = 256 * 1024;

/// What a job is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobTag {
    /// Filesystem request `id` of the session in `slot` with serial
    /// number `serial`.
    Fs { slot: usize, serial: u64, id: u32 },
    /// An operation of a transfer's mover.
    Mover(Tag),
}

/// Work for a helper thread.
pub enum Work {
    /// A session's filesystem request, for its tree.
    Fs(Tree<Real>, FsRequest<Real>),
    /// Reads `len` bytes of `file` from `offset` into the page cache (and
    /// discards them), so that the worker's next read will not wait.
    Warm {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
    /// Writes all of `buf` to `file` at `offset` (an upload's data).
    Write {
        file: Arc<File>,
        offset: u64,
        buf: Vec<u8>,
    },
    /// Writes `head` to `file` at `offset`, then moves what the
    /// (non-blocking) socket `sock` holds after it, at most `max` bytes
    /// (an upload's data, spliced: `engine::intake`), for a slice at most.
    /// The socket stays open until the job is done.
    Receive {
        sock: Arc<TcpStream>,
        file: Arc<File>,
        offset: u64,
        head: Vec<u8>,
        max: u64,
    },
    /// Sends up to `len` bytes of `file` from `offset` to the
    /// (non-blocking) socket `sock` with `sendfile(2)`, until the socket is
    /// full: whatever disk reads that takes wait here, not in a worker.
    /// The socket stays open (and its number taken) until the job is done.
    Send {
        file: Arc<File>,
        sock: Arc<TcpStream>,
        offset: u64,
        len: u64,
    },
}

/// The result of a job.
pub enum Output {
    Fs(FsAnswer<Real>),
    Mover(FromPool),
}

/// The result of a mover's job.
#[derive(Debug)]
pub enum FromPool {
    /// Bytes now in the page cache from the offset (fewer than asked: the
    /// file ended).
    Warmed(io::Result<u64>),
    /// What a [`Work::Send`] moved: `Sent`, `Blocked` (the socket is
    /// full) or `Unsupported`, as [`crate::engine::mover::sendfile`] says.
    Sent(Result<Moved, TransferError>),
    /// What a [`Work::Receive`] moved.
    Received(Result<Intake, TransferError>),
    /// The buffer a [`Work::Write`] wrote (back, to be reused), or why it
    /// could not be.
    Wrote(Vec<u8>, io::Result<()>),
}

/// A finished job, for the worker that submitted it.
pub struct Done {
    pub tag: JobTag,
    pub output: Output,
}

struct Job {
    worker: usize,
    tag: JobTag,
    work: Work,
}

/// Which queue a job waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// What a command waits for.
    Quick = 0,
    /// A directory batch: names read, each stat-ed.
    Scan = 1,
    /// A file read: time spent waiting for the disk.
    Io = 2,
}

impl Job {
    fn class(&self) -> Class {
        match self.work {
            Work::Fs(_, FsRequest::ReadDir(..)) => Class::Scan,
            // An upload's commit (an fsync may take seconds) waits for the
            // disk like a read.
            Work::Fs(_, FsRequest::Commit(_)) => Class::Io,
            Work::Fs(..) => Class::Quick,
            // A small file's bytes (a README, a checksum): one read, what
            // its RETR waits for, as an open is.
            Work::Warm { len, .. } if len <= QUICK_READ => Class::Quick,
            Work::Warm { .. } | Work::Write { .. } | Work::Send { .. } | Work::Receive { .. } => {
                Class::Io
            }
        }
    }
}

struct Queues {
    /// By [`Class`].
    waiting: [VecDeque<Job>; 3],
    running: [usize; 3],
    threads: usize,
    idle: usize,
}

impl Queues {
    /// The next job a free thread may take: quick ones first; the others
    /// only up to their limits, and never on the last thread.
    fn next(&mut self, limits: &[usize; 3], max_threads: usize) -> Option<Job> {
        for class in [Class::Quick, Class::Scan, Class::Io] {
            let c = class as usize;
            let background = self.running[Class::Scan as usize] + self.running[Class::Io as usize];
            let room = class == Class::Quick || background + 1 < max_threads;
            if room
                && self.running[c] < limits[c]
                && let Some(job) = self.waiting[c].pop_front()
            {
                self.running[c] += 1;
                return Some(job);
            }
        }
        None
    }
}

/// One worker's finished jobs, and the eventfd its loop waits on.
struct Completions {
    done: Mutex<Vec<Done>>,
    wake: OwnedFd,
}

struct Inner {
    trees: Arc<Trees>,
    queues: Mutex<Queues>,
    work: Condvar,
    max_threads: usize,
    /// How many jobs of each class may run at once.
    limits: [usize; 3],
    workers: Vec<Completions>,
}

/// The pool, shared by every worker of the process.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool for `workers` workers with at most `max_threads` threads (at
    /// least 2), made as they are needed.
    pub fn new(trees: Arc<Trees>, workers: usize, max_threads: usize) -> io::Result<Pool> {
        let workers = (0..workers)
            .map(|_| {
                Ok(Completions {
                    done: Mutex::new(Vec::new()),
                    wake: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let max_threads = max_threads.max(2);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let limits = [max_threads, cpus.min(max_threads - 1), max_threads - 1];
        Ok(Pool {
            inner: Arc::new(Inner {
                trees,
                queues: Mutex::new(Queues {
                    waiting: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
                    running: [0; 3],
                    threads: 0,
                    idle: 0,
                }),
                work: Condvar::new(),
                max_threads,
                limits,
                workers,
            }),
        })
    }

    /// Queues `work` for `worker`; its result comes back through
    /// [`Pool::take`].
    pub fn submit(&self, worker: usize, tag: JobTag, work: Work) {
        let job = Job { worker, tag, work };
        let mut q = lock(&self.inner.queues);
        q.waiting[job.class() as usize].push_back(job);
        if q.idle == 0 && q.threads < self.inner.max_threads {
            let inner = Arc::clone(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("disk".into())
                .stack_size(STACK)
                .spawn(move || inner.serve());
            // Without a new thread the queued job waits for a busy one.
            if spawned.is_ok() {
                q.threads += 1;
                q.idle += 1;
            }
        }
        drop(q);
        self.inner.work.notify_one();
    }

    /// The eventfd that becomes readable when `worker` has finished jobs.
    pub fn waker(&self, worker: usize) -> Option<BorrowedFd<'_>> {
        self.inner.workers.get(worker).map(|c| c.wake.as_fd())
    }

    /// Moves `worker`'s finished jobs into `out`, and resets its eventfd.
    pub fn take(&self, worker: usize, out: &mut Vec<Done>) {
        let Some(c) = self.inner.workers.get(worker) else {
            return;
        };
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&c.wake, &mut buf);
        out.append(&mut lock(&c.done));
    }
}

impl Inner {
    /// A helper thread: takes jobs until the process ends.
    fn serve(&self) {
        loop {
            let job = {
                let mut q = lock(&self.queues);
                let job = loop {
                    if let Some(j) = q.next(&self.limits, self.max_threads) {
                        break j;
                    }
                    q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
                };
                q.idle -= 1;
                job
            };
            let class = job.class();
            let output = match job.work {
                Work::Fs(tree, request) => Output::Fs(self.trees.execute(tree, request)),
                Work::Warm { file, offset, len } => {
                    Output::Mover(FromPool::Warmed(warm(&file, offset, len)))
                }
                Work::Write { file, offset, buf } => {
                    let r = file.write_all_at(&buf, offset);
                    Output::Mover(FromPool::Wrote(buf, r))
                }
                Work::Receive {
                    sock,
                    file,
                    offset,
                    head,
                    max,
                } => {
                    // As a send: a slice at a time.
                    let until = Instant::now() + SEND_SLICE;
                    let r = intake(&sock, &file, offset, &head, max, until);
                    Output::Mover(FromPool::Received(r))
                }
                Work::Send {
                    file,
                    sock,
                    offset,
                    len,
                } => {
                    let mut range = FileRange {
                        file,
                        offset,
                        left: len,
                    };
                    // A long job is a cold file: a slice at a time, so
                    // that other transfers get the thread in turn.
                    let until = Instant::now() + SEND_SLICE;
                    let sent = sendfile_until(&mut range, sock.as_fd(), len, Some(until));
                    Output::Mover(FromPool::Sent(sent))
                }
            };
            self.finished(job.worker, job.tag, output);
            let mut q = lock(&self.queues);
            q.idle += 1;
            q.running[class as usize] -= 1;
            if class != Class::Quick {
                // A job of this class may be waiting for the place this
                // one held.
                drop(q);
                self.work.notify_one();
            }
        }
    }

    fn finished(&self, worker: usize, tag: JobTag, output: Output) {
        let Some(c) = self.workers.get(worker) else {
            return;
        };
        let was_empty = {
            let mut done = lock(&c.done);
            let empty = done.is_empty();
            done.push(Done { tag, output });
            empty
        };
        if was_empty {
            let _ = rustix::io::write(&c.wake, &1u64.to_ne_bytes());
        }
    }
}

/// Reads `len` bytes of `file` from `offset`, so that they are in the page
/// cache; returns how many there were.
fn warm(file: &File, offset: u64, len: u64) -> io::Result<u64> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.resize(WARM_READ, 0);
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(WARM_READ as u64) as usize;
            match rustix::io::pread(file, &mut buf[..want], offset + done) {
                Ok(0) => break,
                Ok(n) => done += n as u64,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::session::Tree;
    use crate::core::vpath::VPath;

    fn job(work: Work) -> Job {
        Job {
            worker: 0,
            tag: JobTag::Fs {
                slot: 0,
                serial: 0,
                id: 0,
            },
            work,
        }
    }

    /// Quick jobs go first; directory batches run at most `limits[Scan]` at
    /// once; background jobs never take the last thread.
    #[test]
    fn quick_first_and_the_last_thread_kept() {
        let stat = || job(Work::Fs(Tree::Default, FsRequest::Stat(VPath::root())));
        let t = crate::fs::test_tree::TempTree::new("pool");
        let file = Arc::new(File::open(t.path.clone()).unwrap());
        let warm = |len| {
            job(Work::Warm {
                file: file.clone(),
                offset: 0,
                len,
            })
        };
        // A small file's read is what a command waits for; a large one's
        // is background work.
        assert_eq!(warm(4096).class(), Class::Quick);
        assert_eq!(warm(1 << 20).class(), Class::Io);
        let mut q = Queues {
            waiting: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            running: [0; 3],
            threads: 4,
            idle: 4,
        };
        let limits = [4, 1, 3];
        for _ in 0..5 {
            q.waiting[Class::Io as usize].push_back(warm(1 << 20));
        }
        q.waiting[Class::Quick as usize].push_back(stat());
        assert_eq!(q.next(&limits, 4).map(|j| j.class()), Some(Class::Quick));
        // Three background jobs at most of four threads.
        for _ in 0..3 {
            assert_eq!(q.next(&limits, 4).map(|j| j.class()), Some(Class::Io));
        }
        assert!(q.next(&limits, 4).is_none());
        // A quick job still gets the last thread.
        q.waiting[Class::Quick as usize].push_back(stat());
        assert_eq!(q.next(&limits, 4).map(|j| j.class()), Some(Class::Quick));
    }
}
