//! The helper threads that wait for the disk so that no worker does: a
//! small bounded pool per process, as nginx's `aio threads` (which bought
//! 9x on cold archives). Workers hand it filesystem requests (lookups,
//! opens, directory batches) and disk reads that warm the page cache
//! ahead of a zero-copy send; each finished job goes back to the worker
//! that asked, through that worker's completion queue and eventfd.
//!
//! Two queues: quick jobs (a lookup, an open: what a command waits for)
//! before bulk ones (directory batches, file reads: what transfers are
//! made of), and bulk jobs never take the last thread, so a bystander's
//! `SIZE` never waits behind fifty listings of huge directories.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;

use super::mover::Tag;
use crate::core::session::{FsAnswer, FsRequest, Tree};
use crate::fs::exec::Real;
use crate::fs::trees::Trees;

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
    /// discards them), so that the worker's `sendfile` will not wait.
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
}

/// The result of a job.
pub enum Output {
    Fs(FsAnswer<Real>),
    /// For a transfer's mover.
    Mover(Helped),
}

/// What a helper thread did for a transfer.
pub enum Helped {
    /// Bytes now in the page cache from the offset (fewer than asked: the
    /// file ended).
    Warm(io::Result<u64>),
    /// The buffer written (back, to be reused), or why it could not be.
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

impl Job {
    /// Directory batches, file reads and writes, and commits (an fsync
    /// may take seconds) are bulk; what a command waits for is quick.
    fn is_bulk(&self) -> bool {
        !matches!(
            self.work,
            Work::Fs(
                _,
                FsRequest::Stat(_)
                    | FsRequest::OpenFile(_)
                    | FsRequest::OpenList(_)
                    | FsRequest::Message { .. }
                    | FsRequest::Host(_)
                    | FsRequest::Create { .. }
                    | FsRequest::Space(_)
                    | FsRequest::Discard(_)
            )
        )
    }
}

struct Queues {
    quick: VecDeque<Job>,
    bulk: VecDeque<Job>,
    threads: usize,
    idle: usize,
    bulk_running: usize,
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
        Ok(Pool {
            inner: Arc::new(Inner {
                trees,
                queues: Mutex::new(Queues {
                    quick: VecDeque::new(),
                    bulk: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    bulk_running: 0,
                }),
                work: Condvar::new(),
                max_threads: max_threads.max(2),
                workers,
            }),
        })
    }

    /// Queues `work` for `worker`; its result comes back through
    /// [`Pool::take`].
    pub fn submit(&self, worker: usize, tag: JobTag, work: Work) {
        let job = Job { worker, tag, work };
        let mut q = lock(&self.inner.queues);
        if job.is_bulk() {
            q.bulk.push_back(job);
        } else {
            q.quick.push_back(job);
        }
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
                    if let Some(j) = q.quick.pop_front() {
                        break j;
                    }
                    // Bulk work never takes the last thread.
                    if q.bulk_running + 1 < self.max_threads
                        && let Some(j) = q.bulk.pop_front()
                    {
                        q.bulk_running += 1;
                        break j;
                    }
                    q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
                };
                q.idle -= 1;
                job
            };
            let bulk = job.is_bulk();
            let output = match job.work {
                Work::Fs(tree, request) => Output::Fs(self.trees.execute(tree, request)),
                Work::Warm { file, offset, len } => {
                    Output::Mover(Helped::Warm(warm(&file, offset, len)))
                }
                Work::Write { file, offset, buf } => {
                    let r = write_all_at(&file, offset, &buf);
                    Output::Mover(Helped::Wrote(buf, r))
                }
            };
            self.finished(job.worker, job.tag, output);
            let mut q = lock(&self.queues);
            q.idle += 1;
            if bulk {
                q.bulk_running -= 1;
                // A bulk job may be waiting for the place this one held.
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

/// Writes all of `buf` at `offset` of `file`.
fn write_all_at(file: &File, mut offset: u64, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pwrite(file, buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = buf.get(n..).unwrap_or_default();
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
