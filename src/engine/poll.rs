//! The `ftpd` driver: one session, one thread, `poll(2)` over the control
//! connection (standard input and output), the passive listener and the
//! data socket. It carries out the session's actions and reports what
//! happened; every FTP decision stays in the session.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::io::Errno;

use super::net;
use super::pump::{Progress, Pump};
use crate::core::clock::Now;
use crate::core::session::{Action, DataConn, Session, Source, TransferError};
use crate::log::Logger;

/// The longest single wait, whatever the deadlines say.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long a closing session may take to write its last replies.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);
/// Bytes read from the control connection at a time.
const READ_SIZE: usize = 4096;

/// Runs `session` over the control connection `input`/`output` (the same
/// socket under tcpserver and inetd, or two pipes) until it ends. Both fds
/// are made non-blocking for the duration. Errors are failures of the
/// driver itself (poll, fcntl), never of the client: a client that goes
/// away just ends the session.
pub fn run(
    session: Session,
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    logger: &mut Logger,
) -> io::Result<()> {
    let saved = [
        save_and_set_nonblocking(input)?,
        save_and_set_nonblocking(output)?,
    ];
    let mut driver = Driver {
        session,
        input,
        output,
        input_open: true,
        output_open: true,
        closing: None,
        listener: None,
        data: Data::Idle,
    };
    let result = driver.run(logger);
    // Leave a shared terminal or pipe as we found it.
    let _ = rustix::fs::fcntl_setfl(input, saved[0]);
    let _ = rustix::fs::fcntl_setfl(output, saved[1]);
    result
}

fn save_and_set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<OFlags> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    Ok(flags)
}

/// The data channel of the current transfer.
enum Data {
    Idle,
    /// Waiting for the client to connect to the passive listener.
    Accepting(Source),
    /// Waiting for an active connect to complete.
    Connecting(TcpStream, Source),
    Sending(TcpStream, Pump),
}

struct Driver<'fd> {
    session: Session,
    input: BorrowedFd<'fd>,
    output: BorrowedFd<'fd>,
    /// False once the control input reached EOF or failed.
    input_open: bool,
    /// False once writing the control output failed: nobody is listening.
    output_open: bool,
    /// Set when the session ends: give up flushing the output then.
    closing: Option<Instant>,
    listener: Option<TcpListener>,
    data: Data,
}

/// What `poll` reported, per watched fd (empty when not watched).
struct Ready {
    input: PollFlags,
    listener: PollFlags,
    data: PollFlags,
}

impl Ready {
    fn nothing() -> Ready {
        Ready {
            input: PollFlags::empty(),
            listener: PollFlags::empty(),
            data: PollFlags::empty(),
        }
    }
}

/// Adds `fd` to the poll set, if there is one; returns its index.
fn watch<'fd>(
    fds: &mut Vec<PollFd<'fd>>,
    fd: Option<BorrowedFd<'fd>>,
    flags: PollFlags,
) -> Option<usize> {
    let fd = fd?;
    fds.push(PollFd::from_borrowed_fd(fd, flags));
    Some(fds.len() - 1)
}

impl Driver<'_> {
    fn run(&mut self, logger: &mut Logger) -> io::Result<()> {
        loop {
            self.do_actions(logger);
            self.write_output();
            if self.finished() {
                // Records queued by the last events (the session's end).
                self.do_actions(logger);
                return Ok(());
            }
            let ready = self.wait()?;
            self.handle(ready);
            let now = Now::get();
            if self.session.wants_data_acked(now)
                && let Data::Sending(sock, _) = &self.data
                && let Some(acked) = net::bytes_acked(sock.as_fd())
            {
                self.session.on_data_acked(acked, now);
            }
            self.session.on_tick(now);
        }
    }

    /// Carries out every action the session has queued, in order.
    fn do_actions(&mut self, logger: &mut Logger) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Listen { ip, ports } => {
                    self.drop_data();
                    let result = net::passive_listener(ip, ports).map(|(listener, addr)| {
                        self.listener = Some(listener);
                        addr
                    });
                    self.session.on_listening(result, Now::get());
                }
                Action::Transfer { conn, source } => self.start_transfer(conn, source),
                Action::AbortData => self.drop_data(),
                Action::Close => self.start_closing(),
                Action::Log(record) => logger.record(&record),
            }
        }
        if self.session.is_closed() {
            self.start_closing();
        }
    }

    fn start_transfer(&mut self, conn: DataConn, source: Source) {
        self.data = Data::Idle;
        match conn {
            DataConn::Passive if self.listener.is_some() => self.data = Data::Accepting(source),
            DataConn::Passive => {
                let e = io::Error::new(io::ErrorKind::NotConnected, "no passive listener");
                self.session
                    .on_transfer_done(Err(TransferError::Connect(e)), Now::get());
            }
            DataConn::Active { to, from } => {
                // The data connection comes from elsewhere: free the port.
                self.listener = None;
                match net::connect_active(to, from) {
                    Ok(sock) => self.data = Data::Connecting(sock, source),
                    Err(e) => self
                        .session
                        .on_transfer_done(Err(TransferError::Connect(e)), Now::get()),
                }
            }
        }
    }

    fn drop_data(&mut self) {
        self.listener = None;
        self.data = Data::Idle;
    }

    fn start_closing(&mut self) {
        self.drop_data();
        if self.closing.is_none() {
            self.closing = Some(Instant::now() + CLOSE_FLUSH);
        }
    }

    /// Writes as much of the session's output as the connection takes.
    fn write_output(&mut self) {
        while self.output_open && !self.session.output().is_empty() {
            match rustix::io::write(self.output, self.session.output()) {
                Ok(n) => self.session.consume_output(n),
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => {}
                Err(_) => {
                    self.output_open = false;
                    self.control_gone();
                }
            }
        }
    }

    /// The control connection failed or reached EOF: tell the session once.
    fn control_gone(&mut self) {
        if self.input_open {
            self.input_open = false;
            self.session.on_control_eof(Now::get());
        }
    }

    /// Whether the driver is done: the session closed and its output is
    /// written (or can never be), or the client can no longer be reached.
    fn finished(&self) -> bool {
        if !self.output_open {
            return true;
        }
        match self.closing {
            Some(deadline) => self.session.output().is_empty() || Instant::now() >= deadline,
            None => false,
        }
    }

    /// Waits for the next event or deadline.
    fn wait(&self) -> io::Result<Ready> {
        let want_input =
            self.input_open && self.closing.is_none() && self.session.wants_control_input();
        let want_output = !self.session.output().is_empty();
        let listener = match (&self.data, &self.listener) {
            (Data::Accepting(_), Some(l)) => Some(l.as_fd()),
            _ => None,
        };
        let data = match &self.data {
            Data::Connecting(sock, _) => Some(sock.as_fd()),
            // Not before the 150 is written ([`Session::data_may_flow`]).
            Data::Sending(sock, _) if self.session.data_may_flow() => Some(sock.as_fd()),
            _ => None,
        };

        let mut fds = Vec::with_capacity(4);
        let input = watch(&mut fds, want_input.then_some(self.input), PollFlags::IN);
        watch(&mut fds, want_output.then_some(self.output), PollFlags::OUT);
        let listener = watch(&mut fds, listener, PollFlags::IN);
        let data = watch(&mut fds, data, PollFlags::OUT);

        let timeout = Timespec::try_from(self.timeout()).unwrap_or(Timespec {
            tv_sec: MAX_WAIT.as_secs() as _,
            tv_nsec: 0,
        });
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(Ready::nothing()),
            Err(e) => return Err(e.into()),
        }
        let revents = |i: Option<usize>| i.map_or(PollFlags::empty(), |i| fds[i].revents());
        Ok(Ready {
            input: revents(input),
            listener: revents(listener),
            data: revents(data),
        })
    }

    /// Until the session's next deadline (or the closing one), at most
    /// [`MAX_WAIT`]. Never zero, so a deadline the session does not clear
    /// cannot spin the CPU.
    fn timeout(&self) -> Duration {
        let now = Instant::now();
        let deadline = match (self.session.next_deadline(), self.closing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        deadline
            .map_or(MAX_WAIT, |d| d.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), MAX_WAIT)
    }

    /// Acts on what `poll` reported. The data channel goes first, so that
    /// its events are reported before control input can abort it.
    fn handle(&mut self, ready: Ready) {
        if !ready.listener.is_empty() {
            self.accept();
        }
        if !ready.data.is_empty() {
            match self.data {
                Data::Connecting(..) => self.finish_connect(),
                Data::Sending(..) => self.pump(),
                _ => {}
            }
        }
        if !ready.input.is_empty() {
            self.read_input();
        }
    }

    /// Accepts the client's data connection; others are closed unseen.
    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let accepted = loop {
            match net::accept(listener) {
                Ok(Some((sock, peer))) if self.session.data_peer_allowed(&peer) => {
                    break Ok(Some(sock));
                }
                Ok(Some(_refused)) => {}
                Ok(None) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        match accepted {
            Ok(None) => {}
            Ok(Some(sock)) => {
                if let Data::Accepting(source) = std::mem::replace(&mut self.data, Data::Idle) {
                    self.connected(sock, source);
                }
            }
            Err(e) => self.fail(TransferError::Connect(e)),
        }
    }

    fn finish_connect(&mut self) {
        match std::mem::replace(&mut self.data, Data::Idle) {
            Data::Connecting(sock, source) => match net::connect_result(&sock) {
                Ok(()) => self.connected(sock, source),
                Err(e) => self.fail(TransferError::Connect(e)),
            },
            other => self.data = other,
        }
    }

    /// The data connection is up: announce it (150), then send, at once
    /// if the announcement went out whole.
    fn connected(&mut self, sock: TcpStream, source: Source) {
        // One data connection per listener: the port is free again.
        self.listener = None;
        self.session.on_data_connected(Now::get());
        self.data = Data::Sending(sock, Pump::new(source));
        self.write_output();
        self.pump();
    }

    fn pump(&mut self) {
        if !self.session.data_may_flow() {
            return;
        }
        let Data::Sending(sock, pump) = &mut self.data else {
            return;
        };
        let before = pump.sent();
        match pump.run(sock.as_fd()) {
            Ok(Progress::Blocked) => {
                if pump.sent() > before {
                    self.session.on_data_progress(pump.sent(), Now::get());
                }
            }
            Ok(Progress::Done) => {
                let sent = pump.sent();
                // A FIN after the last byte tells the client the file is
                // complete; close() then releases the socket.
                let _ = sock.shutdown(Shutdown::Write);
                self.data = Data::Idle;
                self.session.on_transfer_done(Ok(sent), Now::get());
            }
            Err(e) => self.fail(e),
        }
    }

    /// Ends the current transfer with `e`.
    fn fail(&mut self, e: TransferError) {
        self.listener = None;
        self.data = Data::Idle;
        self.session.on_transfer_done(Err(e), Now::get());
    }

    fn read_input(&mut self) {
        let mut buf = [0u8; READ_SIZE];
        loop {
            match rustix::io::read(self.input, &mut buf) {
                Ok(0) => return self.control_gone(),
                Ok(n) => return self.session.on_control(&buf[..n], Now::get()),
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => {}
                Err(_) => return self.control_gone(),
            }
        }
    }
}
