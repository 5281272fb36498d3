//! The open-files limit, and how many sessions it holds. A busy session
//! holds up to [`PER_SESSION`] descriptors; the process needs some of its
//! own besides (listeners, each worker's epoll or ring, eventfds, the
//! log). Without `--max-sessions`, the
//! session limit is what the descriptors hold, so a default start never
//! promises more than the host allows (and never warns that it might).

/// Descriptors a busy session holds: its control connection, a passive
/// listener or data connection, and the file being sent.
pub const PER_SESSION: u64 = 3;

/// The default limit where the descriptors allow more: enough for a busy
/// mirror, and a bound on memory.
pub const MAX_DEFAULT_SESSIONS: usize = 10_000;

/// Descriptors the process keeps for itself: a fixed part, and a part per
/// worker (its listeners, epoll or ring, eventfds, and room to spare).
fn reserve(workers: usize) -> u64 {
    64 + 160 * workers as u64
}

/// Raises the soft open-files limit to the hard one: each session needs
/// descriptors, and the default soft limit (1024) is far below what a
/// busy server holds. Returns the limit now in force (`None`: none).
pub fn raise() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum
        && lim.current.is_some_and(|cur| cur < max)
    {
        lim.current = Some(max);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current
}

/// The session limit when `--max-sessions` is not given: what `limit`
/// descriptors hold beside the process's own, at least 1, at most
/// [`MAX_DEFAULT_SESSIONS`].
pub fn default_max_sessions(limit: Option<u64>, workers: usize) -> usize {
    let Some(limit) = limit else {
        return MAX_DEFAULT_SESSIONS;
    };
    let fit = limit.saturating_sub(reserve(workers)) / PER_SESSION;
    usize::try_from(fit).map_or(MAX_DEFAULT_SESSIONS, |n| n.clamp(1, MAX_DEFAULT_SESSIONS))
}

/// Whether `limit` descriptors hold `sessions` busy sessions and the
/// process's own.
pub fn holds(limit: Option<u64>, sessions: usize, workers: usize) -> bool {
    limit.is_none_or(|n| {
        (sessions as u64)
            .saturating_mul(PER_SESSION)
            .saturating_add(reserve(workers))
            <= n
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_fits_the_limit() {
        for (limit, workers) in [(20_000, 2), (1024, 1), (4096, 16), (1 << 20, 64), (64, 1)] {
            let n = default_max_sessions(Some(limit), workers);
            assert!(n >= 1);
            assert!(n <= MAX_DEFAULT_SESSIONS);
            assert!(
                n == 1 || holds(Some(limit), n, workers),
                "{limit} {workers}: {n}"
            );
        }
        // A host whose hard limit is 20,000: thousands, with no warning.
        assert_eq!(default_max_sessions(Some(20_000), 2), 6_538);
        assert_eq!(default_max_sessions(Some(1 << 20), 2), MAX_DEFAULT_SESSIONS);
        assert_eq!(default_max_sessions(None, 2), MAX_DEFAULT_SESSIONS);
    }

    #[test]
    fn an_explicit_limit_may_not_fit() {
        assert!(!holds(Some(20_000), 10_000, 2));
        assert!(holds(Some(40_000), 10_000, 2));
        assert!(holds(None, usize::MAX, 1));
        assert!(!holds(Some(64), 1, 1));
    }
}
