//! What an operator watches: the supervisor's counters
//! ([`counters`], per worker, summed when read), the sessions open now
//! ([`board`], published by the workers when asked, as [`row::Row`]s),
//! and the thread that serves both ([`server`]): the status on a Unix
//! socket (`--control`, read by `aftpd-status`), the metrics in
//! Prometheus's text format ([`expo`]) over HTTP ([`http`],
//! `--metrics`).

pub mod board;
pub mod counters;
pub mod expo;
pub mod http;
pub mod row;
pub mod server;
pub mod statusfile;
