//! TTL arithmetic. The public API speaks seconds; everything inside carries milliseconds.

use std::time::Duration;

use crate::error::{CacheError, ErrorKind, Result};
use crate::rules::{NumberRule, TTL};

/// How long a write keeps its value: fresh for `ttl_ms`, then stale for `grace_ms` more, when only a `getOrSet`
/// whose loader fails or is slow may still serve it (see [`crate::rules::GRACE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Milliseconds the value is fresh: a hit for every read.
    pub ttl_ms: u64,
    /// Milliseconds the value is kept stale after `ttl_ms`; 0 keeps nothing past the TTL.
    pub grace_ms: u64,
}

impl Lifetime {
    /// Fresh for `ttl_ms`, no grace.
    #[cfg(test)]
    pub fn fresh(ttl_ms: u64) -> Self {
        Lifetime { ttl_ms, grace_ms: 0 }
    }

    /// The whole time the entry is kept, fresh plus stale, in ms.
    #[cfg(test)]
    pub fn kept_ms(self) -> u64 {
        self.ttl_ms.saturating_add(self.grace_ms)
    }
}

/// Validates a per-call TTL in seconds ([`TTL`]'s range) and returns it in milliseconds; `ERR_CACHE_INVALID_TTL`
/// otherwise.
pub fn per_call_ttl_ms(seconds: f64) -> Result<u64> {
    per_call_ms(&TTL, seconds)
}

/// Validates a per-call duration in seconds against the rule of the constructor option of its name and returns it
/// in milliseconds; `ERR_CACHE_INVALID_TTL` otherwise (per-call options share one code, see
/// [`crate::rules::PER_CALL_OPTIONS`]).
pub fn per_call_ms(rule: &NumberRule, seconds: f64) -> Result<u64> {
    Ok((per_call(rule, seconds)? * 1000.0).round() as u64)
}

/// Validates a per-call option against the rule of the constructor option of its name; `ERR_CACHE_INVALID_TTL`
/// otherwise.
pub fn per_call(rule: &NumberRule, value: f64) -> Result<f64> {
    if rule.accepts(value) {
        return Ok(value);
    }
    let name = if rule.name == TTL.name { "a TTL".to_owned() } else { format!("option `{}`", rule.name) };
    Err(CacheError::new(ErrorKind::InvalidTtl, format!("{name} must be {}; got {value}", rule.expected())))
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
