//! aftpd: an FTP server for public file archives.
//!
//! The protocol core (`proto`, `vpath`, `session`, `listing`) is sans-IO:
//! it parses, decides and formats, and is driven from outside by a driver
//! (`driver::poll` for the per-connection `ftpd`). Only `fs` touches the
//! filesystem, always beneath the served root.

pub mod args;
pub mod clock;
pub mod config;
pub mod driver;
pub mod fs;
pub mod listing;
pub mod log;
pub mod privs;
pub mod proto;
pub mod sandbox;
pub mod session;
pub mod supervisor;
pub mod vpath;
pub mod xferlog;
