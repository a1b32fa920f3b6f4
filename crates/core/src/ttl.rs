//! TTL arithmetic. The public API speaks seconds; everything inside carries milliseconds.

use std::time::Duration;

use crate::error::{CacheError, ErrorKind, Result};
use crate::rules::TTL;

/// Validates a per-call TTL in seconds ([`TTL`]'s range) and returns it in milliseconds; `ERR_CACHE_INVALID_TTL`
/// otherwise.
pub fn per_call_ttl_ms(seconds: f64) -> Result<u64> {
    if TTL.accepts(seconds) {
        return Ok(seconds as u64 * 1000);
    }
    Err(CacheError::new(ErrorKind::InvalidTtl, format!("a TTL must be {}; got {seconds}", TTL.expected())))
}

/// `ttl_ms` drawn uniformly within ±`jitter` × `ttl_ms` (never under 1 ms), so that entries written together do
/// not all expire together.
pub fn jittered(ttl_ms: u64, jitter: f64) -> u64 {
    if jitter <= 0.0 {
        return ttl_ms;
    }
    let spread = ttl_ms as f64 * jitter;
    let drawn = ttl_ms as f64 + rand::random_range(-spread..=spread);
    (drawn.round() as u64).max(1)
}

/// How long an entry may live in L1: its remaining TTL, cut to the L1 cap when there is one.
pub fn l1_lifetime(remaining_ms: u64, cap_ms: Option<u64>) -> Duration {
    Duration::from_millis(cap_ms.map_or(remaining_ms, |cap| remaining_ms.min(cap)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_ttls_are_whole_seconds_within_thirty_days_and_become_milliseconds() {
        assert_eq!(per_call_ttl_ms(60.0).unwrap(), 60_000);
        assert_eq!(per_call_ttl_ms(2_592_000.0).unwrap(), 2_592_000_000);
        for bad in [0.0, -1.0, 0.5, 1.5, 2_592_001.0, f64::NAN, f64::INFINITY] {
            assert_eq!(per_call_ttl_ms(bad).unwrap_err().kind, ErrorKind::InvalidTtl, "{bad}");
        }
    }

    #[test]
    fn jitter_spreads_ttls_within_its_fraction() {
        assert_eq!(jittered(60_000, 0.0), 60_000);
        let drawn: Vec<u64> = (0..1000).map(|_| jittered(60_000, 0.1)).collect();
        assert!(drawn.iter().all(|&ms| (54_000..=66_000).contains(&ms)), "within ±10%");
        assert!(drawn.iter().any(|&ms| ms < 57_000) && drawn.iter().any(|&ms| ms > 63_000), "spread over the range");
        assert!((0..100).all(|_| jittered(1_000, 1.0) >= 1), "never 0");
    }

    #[test]
    fn l1_lifetime_is_capped() {
        assert_eq!(l1_lifetime(10_000, None), Duration::from_secs(10));
        assert_eq!(l1_lifetime(10_000, Some(2_000)), Duration::from_secs(2));
        assert_eq!(l1_lifetime(1_000, Some(2_000)), Duration::from_secs(1));
    }
}
