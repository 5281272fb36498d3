//! The protocol core: it parses, decides and formats, and does no I/O.
//! Bytes, time and the answers to its filesystem requests come in as
//! events; replies and requests go out. Nothing here may import what
//! touches the operating system (`contrib/test` checks it).

pub mod admission;
pub mod calendar;
pub mod clock;
pub mod config;
pub mod listing;
pub mod memfs;
pub mod message;
pub mod meta;
pub mod net;
pub mod proto;
pub mod proxy;
pub mod rate;
pub mod session;
pub mod tally;
pub mod vpath;
