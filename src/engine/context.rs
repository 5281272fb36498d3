//! What every worker of the supervisor shares.

use std::sync::Arc;
use std::time::Duration;

use super::pool::Pool;
use super::stop::Stop;
use crate::core::admission::Limits;
use crate::core::config::SessionConfig;
use crate::core::rate::RateLimits;
use crate::fs::Root;
use crate::log::Logger;
use crate::monitor::board::Board;
use crate::monitor::counters::Stats;

/// What every worker shares.
pub struct Context {
    pub config: Arc<SessionConfig>,
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
}
