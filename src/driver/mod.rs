//! Drivers: they wait and move bytes for the session core, and decide
//! nothing about FTP.

pub mod epoll;
pub mod net;
pub mod poll;
pub mod pump;
pub mod uring;
pub mod worker;
