//! aftpd: an FTP server for public file archives.
//!
//! Dependencies run one way: the two programs (`ftpd`, `supervisor`) set
//! up the process, with what they share in `setup` (command line,
//! privileges, exit codes), and run an engine (`engine`: poll, epoll,
//! io_uring), which carries out what the protocol core (`core`: sans-IO) asks, with
//! the filesystem layer (`fs`) for everything beneath the served root.
//! `monitor` is what an operator watches (counters, the sessions open, the
//! supervisor's thread serving them); `status` is the `aftpd-status`
//! program that shows the sessions.

pub mod core;
pub mod engine;
pub mod fs;
pub mod ftpd;
pub mod hook;
pub mod log;
pub mod monitor;
pub mod sandbox;
pub mod setup;
pub mod status;
pub mod supervisor;
