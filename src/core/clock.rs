//! Time as an input to the core: drivers read the clocks, the core only
//! compares and formats.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The current time, as seen by a driver when it hands an event to the core.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For deadlines.
    pub mono: Instant,
    /// For listings and MDTM.
    pub wall: SystemTime,
}

impl Now {
    pub fn get() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// Seconds since the Unix epoch (negative before it).
    pub fn unix(&self) -> i64 {
        match self.wall.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    }
}
