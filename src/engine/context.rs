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

/// What every worker shares.
pub struct Context {
    pub config: Arc<SessionConfig>,
    pub root: Arc<Root>,
    pub limits: Arc<Limits>,
    /// Bandwidth limits: per transfer, per client address, in all.
    pub rates: RateLimits,
    pub log: Logger,
    /// The helper threads that wait for the disk.
    pub pool: Pool,
    pub stop: Stop,
    /// How long transfers in flight may run on after a stop request.
    pub shutdown_timeout: Duration,
}
