//! Percentiles of latencies, written into records the same way everywhere.

use crate::out::Record;

/// Latencies in microseconds, sorted on demand.
#[derive(Default)]
pub struct Lat(pub Vec<u32>);

impl Lat {
    pub fn push(&mut self, d: std::time::Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn extend(&mut self, o: Lat) {
        self.0.extend(o.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The p-th percentile in milliseconds (nearest rank below), NaN when
    /// empty.
    pub fn pct(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 * p / 100.0) as usize).min(self.0.len() - 1);
        self.0[i] as f64 / 1000.0
    }

    /// PREFIXn, PREFIXp50_ms, PREFIXp99_ms, PREFIXmax_ms.
    pub fn record(&mut self, rec: &mut Record, prefix: &str) {
        rec.num(&format!("{prefix}n"), self.len() as f64);
        rec.num(&format!("{prefix}p50_ms"), self.pct(50.0));
        rec.num(&format!("{prefix}p99_ms"), self.pct(99.0));
        rec.num(&format!("{prefix}max_ms"), self.pct(100.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut l = Lat((1..=100).rev().map(|x| x * 1000).collect());
        assert_eq!(l.pct(50.0), 51.0);
        assert_eq!(l.pct(99.0), 100.0);
        assert_eq!(l.pct(100.0), 100.0);
        assert!(Lat::default().pct(50.0).is_nan());
    }
}
