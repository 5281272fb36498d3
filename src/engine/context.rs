//! What every worker of the supervisor shares.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::pool::Pool;
use super::stop::Stop;
use super::tls::ServerTls;
use crate::core::admission::Limits;
use crate::core::config::SessionConfig;
use crate::core::proxy::ProxyPolicy;
use crate::core::rate::RateLimits;
use crate::fs::Root;
use crate::log::Logger;
use crate::monitor::board::Board;
use crate::monitor::counters::Stats;

/// What every worker shares.
pub struct Context {
    /// How new sessions behave. SIGHUP replaces it (with the messages read
    /// again); a session keeps the one it began with.
    pub config: Latest<SessionConfig>,
    /// ROOT (the sandbox's bound; the trees served are the pool's).
    pub root: Arc<Root>,
    pub limits: Arc<Limits>,
    /// Bandwidth limits: per transfer, per client address, in all.
    pub rates: RateLimits,
    /// The counters for the metrics (`None`: no `--metrics`, nothing
    /// counted).
    pub stats: Option<Stats>,
    /// Where the workers answer the monitor thread.
    pub board: Board,
    pub log: Logger,
    /// The helper threads that wait for the disk.
    pub pool: Pool,
    pub stop: Stop,
    /// How long transfers in flight may run on after a stop request.
    pub shutdown_timeout: Duration,
    /// `--proxy-protocol`: control connections begin with a PROXY header
    /// (see `engine::proxy`).
    pub proxy: Option<ProxyPolicy>,
    /// FTPS: the certificate, when there is one (replaced on SIGHUP).
    pub tls: Option<Arc<ServerTls>>,
}

/// The latest of a value that is replaced now and then while readers
/// take it: each reader keeps the one it took.
pub struct Latest<T>(Mutex<Arc<T>>);

impl<T> Latest<T> {
    pub fn new(value: Arc<T>) -> Latest<T> {
        Latest(Mutex::new(value))
    }

    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn set(&self, value: Arc<T>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }
}
