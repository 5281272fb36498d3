//! Engines: they wait and move bytes for the session core, and decide
//! nothing about FTP. `conn` carries out a session's actions and
//! `datapath` runs its data connection, the same for every engine; `poll`
//! (ftpd), `epoll` and `uring` (the supervisor's workers) only wait.

pub mod cache_first;
pub mod conn;
pub mod context;
pub mod datapath;
pub mod epoll;
pub mod intake;
pub mod mover;
pub mod net;
pub mod poll;
pub mod pool;
pub mod proxy;
pub mod recv;
pub mod slow;
pub mod stop;
pub mod tls;
pub mod uring;
pub mod worker;
pub mod xfer;
