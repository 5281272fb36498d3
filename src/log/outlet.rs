//! An outlet: the way lines go to one [`Sink`] (standard error, the
//! syslog socket, the xferlog file) without ever making the caller wait.
//!
//! A line is first tried without blocking ([`Sink::try_write`]), straight
//! from the calling thread: the common case costs one system call and no
//! thread. If the sink would block (a log reader that stalls), or cannot
//! write without blocking at all (an old kernel, a file system without
//! `RWF_NOWAIT`), the line goes to a bounded queue that a writer thread
//! empties with ordinary, blocking writes: that thread may wait as long
//! as the reader takes, the callers never do. Once lines are queued,
//! later ones queue behind them, so the order stays. A line that does not
//! fit in the queue is dropped and counted; once the sink takes lines
//! again, the count is reported ([`Notice`]) where the gap is.
//!
//! The writer thread is started on first need (most processes never need
//! it), but not before [`Outlet::allow_writer`]: a program calls that once
//! it is sandboxed, since Landlock (before ABI 8) and ftpd's seccomp
//! filter bind only the threads created after them. Lines that need the
//! writer before then wait in the queue. It starts with every signal
//! blocked, so that no signal meant for the process is ever delivered to
//! it. At exit, [`Outlet::close`] gives it a bounded time to write what
//! is queued (starting it if need be: nothing is served any more).

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where an outlet's lines end up.
pub trait Sink: Send + Sync + 'static {
    /// Writes all of `line` if that can be done without waiting.
    fn try_write(&self, line: &[u8]) -> Attempt;
    /// Writes all of `line`, waiting as long as it takes (the writer
    /// thread only).
    fn write(&self, line: &[u8]) -> io::Result<()>;
}

/// What became of a [`Sink::try_write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// All of it was written.
    Written,
    /// Only the first bytes were (a stream socket, a file): the rest must
    /// follow before anything else.
    Partial(usize),
    /// Nothing was written: it would have blocked.
    WouldBlock,
    /// This sink cannot be written without blocking (e.g. `EOPNOTSUPP`):
    /// from now on every line goes through the writer thread.
    Unsupported,
    /// It failed (a closed pipe, a full disk): the line is lost.
    Failed,
}

/// Turns a count of dropped lines into the line that reports it (placed
/// in the outlet where the gap is), or reports it elsewhere and returns
/// `None`. Called with the outlet's lock held: it must not write to this
/// outlet itself.
pub type Notice = Box<dyn Fn(u64) -> Option<Vec<u8>> + Send + Sync>;

/// A handle on an outlet; clones share it.
#[derive(Clone)]
pub struct Outlet {
    shared: Arc<Shared>,
}

struct Shared {
    sink: Box<dyn Sink>,
    notice: Notice,
    state: Mutex<State>,
    /// The writer waits on it for lines.
    work: Condvar,
    /// Flushers wait on it for the writer to finish a line.
    idle: Condvar,
    /// The writer thread's name.
    name: String,
}

struct State {
    queue: VecDeque<Item>,
    /// Bytes in `queue`.
    queued: usize,
    /// Most bytes `queue` may hold.
    capacity: usize,
    /// Lines lost since the last notice.
    dropped: u64,
    /// The writer is writing a line it took from the queue.
    busy: bool,
    /// Whether [`Sink::try_write`] is worth trying.
    direct: bool,
    /// Whether the sink's last write worked (a notice is written only
    /// then, so a dead sink does not make notices forever).
    last_ok: bool,
    writer: Writer,
    /// Whether the writer may be started ([`Outlet::allow_writer`]).
    allowed: bool,
    /// The writer is to end once the queue is empty.
    closing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    NotStarted,
    Running,
    /// The thread could not be started: queued lines can never be written.
    Failed,
}

/// A queued line, or a notice standing for `reports` dropped lines.
struct Item {
    bytes: Vec<u8>,
    reports: u64,
}

/// The writer thread's stack: it only writes and formats a notice.
const WRITER_STACK: usize = 64 * 1024;

impl Outlet {
    /// An outlet to `sink` queueing at most `capacity` bytes; `name`
    /// names the writer thread.
    pub fn new(sink: Box<dyn Sink>, capacity: usize, notice: Notice, name: &str) -> Outlet {
        Outlet {
            shared: Arc::new(Shared {
                sink,
                notice,
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    queued: 0,
                    capacity,
                    dropped: 0,
                    busy: false,
                    direct: true,
                    last_ok: true,
                    writer: Writer::NotStarted,
                    allowed: false,
                    closing: false,
                }),
                work: Condvar::new(),
                idle: Condvar::new(),
                name: name.to_owned(),
            }),
        }
    }

    /// Lets the writer thread start, now if lines wait for it. Call it
    /// once the process is sandboxed, so that the thread is confined too.
    pub fn allow_writer(&self) {
        let _inside = Inside::enter();
        let mut st = self.shared.lock();
        st.allowed = true;
        if !st.queue.is_empty() && !self.shared.start_writer(&mut st) {
            st.dropped += st.queue.iter().map(Item::lost).sum::<u64>();
            st.queue.clear();
            st.queued = 0;
        }
        self.shared.work.notify_one();
    }

    /// Changes the most bytes the queue may hold.
    pub fn set_capacity(&self, capacity: usize) {
        let _inside = Inside::enter();
        self.shared.lock().capacity = capacity;
    }

    /// Sends `line` (whole, ending as the sink wants it) on its way, or
    /// drops and counts it if the queue is full. Never waits for the sink.
    pub fn submit(&self, line: Vec<u8>) {
        let _inside = Inside::enter();
        let sh = &self.shared;
        let mut st = sh.lock();
        let idle = st.queue.is_empty() && !st.busy;
        if !idle && st.queued + line.len() > st.capacity {
            st.dropped += 1;
            return;
        }
        if st.dropped > 0 {
            let n = std::mem::take(&mut st.dropped);
            if let Some(text) = (sh.notice)(n) {
                sh.place(&mut st, Item::notice(text, n));
            }
        }
        sh.place(&mut st, Item::line(line));
    }

    /// For a panic hook: [`Outlet::submit`], or, from a thread inside an
    /// outlet already (a panic in the log itself, whose lock may be held),
    /// one attempt straight at the sink.
    pub fn submit_from_panic(&self, line: Vec<u8>) {
        if Inside::active() {
            let _ = self.shared.sink.try_write(&line);
        } else {
            self.submit(line);
        }
    }

    /// Waits until every queued line is written, at most `within`.
    /// Returns whether nothing is left.
    pub fn flush(&self, within: Duration) -> bool {
        let _inside = Inside::enter();
        let sh = &self.shared;
        let deadline = Instant::now() + within;
        let mut st = sh.lock();
        while !st.queue.is_empty() || st.busy {
            let now = Instant::now();
            if now >= deadline || st.writer != Writer::Running {
                return false;
            }
            st = sh
                .idle
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// At exit: lets the writer write what is queued for at most
    /// `within` (starting it if need be), then end (it may be blocked in
    /// a write: the process's exit ends it then).
    pub fn close(&self, within: Duration) {
        let _inside = Inside::enter();
        self.allow_writer();
        self.flush(within);
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
    }

    /// Lines dropped and not yet reported, and whether the writer thread
    /// was started (for tests).
    #[cfg(test)]
    fn status(&self) -> (u64, bool) {
        let st = self.shared.lock();
        (st.dropped, st.writer == Writer::Running)
    }
}

impl Item {
    fn line(bytes: Vec<u8>) -> Item {
        Item { bytes, reports: 0 }
    }

    fn notice(bytes: Vec<u8>, reports: u64) -> Item {
        Item { bytes, reports }
    }

    /// What a failed write of this item loses.
    fn lost(&self) -> u64 {
        self.reports.max(1)
    }
}

impl Shared {
    // A panic while the lock was held (there is none to expect) must not
    // silence the log: the state stays consistent between statements.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `item` now if the sink takes it without waiting and nothing
    /// is ahead of it, else queues it for the writer (room was checked by
    /// the caller; a notice may go a little over).
    fn place(self: &Arc<Self>, st: &mut State, mut item: Item) {
        if st.queue.is_empty() && !st.busy && st.direct {
            match self.sink.try_write(&item.bytes) {
                Attempt::Written => {
                    st.last_ok = true;
                    return;
                }
                Attempt::Partial(n) => {
                    item.bytes.drain(..n.min(item.bytes.len()));
                }
                Attempt::WouldBlock => {}
                Attempt::Unsupported => st.direct = false,
                Attempt::Failed => {
                    st.last_ok = false;
                    st.dropped += item.lost();
                    return;
                }
            }
        }
        if !self.start_writer(st) {
            st.dropped += item.lost();
            return;
        }
        st.queued += item.bytes.len();
        st.queue.push_back(item);
        self.work.notify_one();
    }

    /// Starts the writer thread if it is not running and may start;
    /// returns whether queued lines will be written (now or once it may).
    fn start_writer(self: &Arc<Self>, st: &mut State) -> bool {
        match st.writer {
            Writer::Running => {
                st.closing = false;
                return true;
            }
            Writer::Failed => return false,
            Writer::NotStarted if !st.allowed => return true,
            Writer::NotStarted => {}
        }
        let shared = Arc::clone(self);
        let spawned = with_signals_blocked(|| {
            std::thread::Builder::new()
                .name(self.name.clone())
                .stack_size(WRITER_STACK)
                .spawn(move || shared.run())
        });
        st.writer = match spawned {
            Ok(_) => Writer::Running,
            Err(_) => Writer::Failed,
        };
        st.closing = false;
        st.writer == Writer::Running
    }

    /// The writer thread: writes queued lines in order, reports drops once
    /// the sink works again, ends when closed with nothing queued.
    fn run(&self) {
        let _inside = Inside::enter();
        let mut st = self.lock();
        loop {
            if let Some(item) = st.queue.pop_front() {
                st.queued -= item.bytes.len();
                st.busy = true;
                drop(st);
                let ok = self.sink.write(&item.bytes).is_ok();
                st = self.lock();
                st.busy = false;
                st.last_ok = ok;
                if !ok {
                    st.dropped += item.lost();
                }
                self.idle.notify_all();
                continue;
            }
            if st.dropped > 0 && st.last_ok {
                let n = std::mem::take(&mut st.dropped);
                if let Some(text) = (self.notice)(n) {
                    st.queued += text.len();
                    st.queue.push_back(Item::notice(text, n));
                }
                continue;
            }
            if st.closing {
                st.writer = Writer::NotStarted;
                return;
            }
            st = self.work.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

thread_local! {
    /// Whether this thread is inside an outlet (holding its lock, or about
    /// to): a panic there must not go through an outlet again.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as inside an outlet until dropped.
struct Inside(bool);

impl Inside {
    fn enter() -> Inside {
        Inside(INSIDE.with(|i| i.replace(true)))
    }

    fn active() -> bool {
        INSIDE.with(Cell::get)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let was = self.0;
        INSIDE.with(|i| i.set(was));
    }
}

/// Runs `f` (which starts a thread) with every signal blocked in the
/// calling thread, so that the new thread starts with them all blocked;
/// then restores the mask.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )
    .is_ok();
    let out = f();
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose reader can be stalled: while `open` is false,
    /// `try_write` would block (or is unsupported, or fails) and `write`
    /// waits (at most 10 s, then fails).
    struct Fake {
        open: Mutex<bool>,
        opened: Condvar,
        out: Mutex<Vec<String>>,
        closed: Attempt,
        /// `try_write` takes only this many bytes (a stream socket).
        partial: Option<usize>,
    }

    impl Fake {
        fn new(open: bool, closed: Attempt) -> Arc<Fake> {
            Arc::new(Fake {
                open: Mutex::new(open),
                opened: Condvar::new(),
                out: Mutex::new(Vec::new()),
                closed,
                partial: None,
            })
        }

        fn set_open(&self, open: bool) {
            *self.open.lock().unwrap() = open;
            self.opened.notify_all();
        }

        fn lines(&self) -> Vec<String> {
            self.out.lock().unwrap().clone()
        }

        fn push(&self, bytes: &[u8]) {
            self.out
                .lock()
                .unwrap()
                .push(String::from_utf8(bytes.to_vec()).unwrap());
        }
    }

    impl Sink for Arc<Fake> {
        fn try_write(&self, line: &[u8]) -> Attempt {
            if !*self.open.lock().unwrap() {
                return self.closed;
            }
            match self.partial {
                Some(n) if n < line.len() => {
                    self.push(&line[..n]);
                    Attempt::Partial(n)
                }
                _ => {
                    self.push(line);
                    Attempt::Written
                }
            }
        }

        fn write(&self, line: &[u8]) -> io::Result<()> {
            let open = self.open.lock().unwrap();
            let (open, _) = self
                .opened
                .wait_timeout_while(open, Duration::from_secs(10), |o| !*o)
                .unwrap();
            if !*open || self.closed == Attempt::Failed {
                return Err(io::Error::other("closed"));
            }
            drop(open);
            self.push(line);
            Ok(())
        }
    }

    fn outlet(sink: &Arc<Fake>, capacity: usize) -> Outlet {
        let notice: Notice = Box::new(|n| Some(format!("dropped {n}").into_bytes()));
        let out = Outlet::new(Box::new(Arc::clone(sink)), capacity, notice, "test-writer");
        out.allow_writer();
        out
    }

    fn line(i: usize) -> Vec<u8> {
        format!("line {i:04}").into_bytes()
    }

    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn lines_go_straight_through_without_a_thread() {
        let sink = Fake::new(true, Attempt::WouldBlock);
        let out = outlet(&sink, 100);
        for i in 0..50 {
            out.submit(line(i));
        }
        assert_eq!(sink.lines().len(), 50);
        assert_eq!(out.status(), (0, false));
        assert!(out.flush(Duration::ZERO));
    }

    /// Checks that `lines` are `line N` in increasing order with a
    /// `dropped K` notice at each gap (K the lines missing there, before
    /// the next line, or at the end), up to `last`; returns the lines
    /// dropped in all.
    fn gaps_are_reported(lines: &[String], last: usize) -> u64 {
        let mut next = 0; // the next line number expected
        let mut pending = 0; // reported, not yet skipped
        let mut total = 0;
        for l in lines {
            if let Some(k) = l.strip_prefix("dropped ") {
                assert_eq!(pending, 0, "two notices for one gap: {lines:?}");
                pending = k.parse::<u64>().unwrap();
                assert!(pending > 0, "{lines:?}");
                total += pending;
            } else {
                let n: usize = l.strip_prefix("line ").unwrap().parse().unwrap();
                assert_eq!(n as u64, next as u64 + pending, "{lines:?}");
                next = n + 1;
                pending = 0;
            }
        }
        assert_eq!((next + pending as usize), last + 1, "{lines:?}");
        total
    }

    /// Waits until the outlet has reported every drop.
    fn all_reported(out: &Outlet) {
        let deadline = Instant::now() + LONG;
        while out.status().0 > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(out.flush(LONG));
    }

    #[test]
    fn a_stalled_sink_queues_drops_counts_and_reports_in_order() {
        let sink = Fake::new(true, Attempt::WouldBlock);
        let out = outlet(&sink, 90); // 10 lines of 9 bytes
        out.submit(line(0));
        sink.set_open(false);
        // None of these waits: about 10 are queued (and one in the
        // writer's hands), the rest dropped.
        for i in 1..101 {
            out.submit(line(i));
        }
        assert!(out.status().1);
        sink.set_open(true);
        all_reported(&out);
        let lines = sink.lines();
        let dropped = gaps_are_reported(&lines, 100);
        assert!(dropped >= 100 - 12, "{lines:?}");
        // The backlog written, lines go straight through again.
        out.submit(line(101));
        assert!(out.flush(LONG));
        assert_eq!(sink.lines().last().unwrap(), "line 0101");
    }

    #[test]
    fn the_notice_goes_where_the_gap_is() {
        let sink = Fake::new(false, Attempt::WouldBlock);
        let out = outlet(&sink, 20); // two lines
        for i in 0..5 {
            out.submit(line(i));
        }
        sink.set_open(true);
        assert!(out.flush(LONG));
        sink.set_open(false);
        out.submit(line(5));
        sink.set_open(true);
        all_reported(&out);
        let lines = sink.lines();
        assert!(gaps_are_reported(&lines, 5) >= 2, "{lines:?}");
        assert_eq!(lines.last().unwrap(), "line 0005");
    }

    #[test]
    fn without_nonblocking_writes_every_line_goes_through_the_writer() {
        let sink = Fake::new(false, Attempt::Unsupported);
        let out = outlet(&sink, 1 << 20);
        for i in 0..200 {
            out.submit(line(i));
        }
        assert!(out.status().1);
        sink.set_open(true);
        assert!(out.flush(LONG));
        let want: Vec<String> = (0..200)
            .map(|i| String::from_utf8(line(i)).unwrap())
            .collect();
        assert_eq!(sink.lines(), want);
    }

    #[test]
    fn no_writer_thread_before_it_is_allowed() {
        let notice: Notice = Box::new(|n| Some(format!("dropped {n}").into_bytes()));
        let sink = Fake::new(false, Attempt::Unsupported);
        let out = Outlet::new(Box::new(Arc::clone(&sink)), 100, notice, "test-writer");
        out.submit(line(1));
        out.submit(line(2));
        assert_eq!(out.status(), (0, false));
        assert!(!out.flush(Duration::ZERO));
        sink.set_open(true);
        out.allow_writer();
        assert!(out.status().1);
        assert!(out.flush(LONG));
        assert_eq!(sink.lines(), ["line 0001", "line 0002"]);
    }

    #[test]
    fn closing_writes_what_waits_even_if_not_allowed_yet() {
        let notice: Notice = Box::new(|n| Some(format!("dropped {n}").into_bytes()));
        let sink = Fake::new(true, Attempt::Unsupported);
        let out = Outlet::new(Box::new(Arc::clone(&sink)), 100, notice, "test-writer");
        out.submit(line(1));
        out.close(LONG);
        assert_eq!(sink.lines(), ["line 0001"]);
    }

    #[test]
    fn a_partial_write_is_finished_before_the_next_line() {
        let mut fake = Fake::new(true, Attempt::WouldBlock);
        Arc::get_mut(&mut fake).unwrap().partial = Some(4);
        let out = outlet(&fake, 100);
        out.submit(line(1));
        out.submit(line(2));
        assert!(out.flush(LONG));
        let lines = fake.lines();
        assert_eq!(lines[..2], ["line", " 0001"]);
        assert_eq!(lines.concat(), "line 0001line 0002");
    }

    #[test]
    fn failed_writes_are_counted_and_reported_once_writes_work() {
        let sink = Fake::new(false, Attempt::Failed);
        let out = outlet(&sink, 100);
        for i in 0..3 {
            out.submit(line(i));
        }
        assert_eq!(out.status(), (3, false));
        sink.set_open(true);
        out.submit(line(3));
        assert_eq!(sink.lines(), ["dropped 3", "line 0003"]);
    }

    #[test]
    fn flush_and_close_are_bounded_when_the_reader_never_comes_back() {
        let sink = Fake::new(false, Attempt::WouldBlock);
        let out = outlet(&sink, 100);
        out.submit(line(1));
        assert!(!out.flush(Duration::from_millis(20)));
        out.close(Duration::from_millis(20));
        // The writer gives up once the fake's own bound passes; the test
        // only checks that nothing above waited for the reader.
    }

    #[test]
    fn drops_can_be_reported_elsewhere() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let notice: Notice = Box::new(move |n| {
            s.lock().unwrap().push(n);
            None
        });
        let sink = Fake::new(false, Attempt::WouldBlock);
        let out = Outlet::new(Box::new(Arc::clone(&sink)), 10, notice, "test-writer");
        out.allow_writer();
        for i in 0..4 {
            out.submit(line(i));
        }
        sink.set_open(true);
        all_reported(&out);
        let seen: u64 = seen.lock().unwrap().iter().sum();
        assert!(seen >= 2, "{seen}");
        assert_eq!(seen as usize + sink.lines().len(), 4);
        assert!(sink.lines().iter().all(|l| l.starts_with("line ")));
    }
}
