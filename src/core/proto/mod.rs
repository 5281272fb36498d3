//! The wire: reading command lines (Telnet-aware), parsing commands,
//! formatting replies and data-connection addresses. No I/O.

pub mod addr;
pub mod command;
pub mod reply;
pub mod telnet;
