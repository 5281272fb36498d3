//! Engines: they wait and move bytes for the session core, and decide
//! nothing about FTP.

pub mod context;
pub mod epoll;
pub mod net;
pub mod poll;
pub mod pump;
pub mod stop;
pub mod uring;
pub mod worker;
