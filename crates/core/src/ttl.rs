//! TTL arithmetic. The public API speaks seconds; everything inside carries milliseconds.

use std::time::Duration;

use crate::error::{CacheError, ErrorKind, Result};

/// The longest TTL, in seconds (30 days).
pub const MAX_TTL_SECONDS: u64 = 2_592_000;
/// The default TTL, in seconds.
pub const DEFAULT_TTL_SECONDS: u64 = 300;

/// Validates a TTL in seconds (an integer from 1 to 30 days) given as a JavaScript number.
pub fn ttl_seconds_from_f64(seconds: f64) -> Option<u64> {
    let in_range = seconds.fract() == 0.0 && (1.0..=MAX_TTL_SECONDS as f64).contains(&seconds);
    in_range.then_some(seconds as u64)
}

/// Validates a per-call TTL in seconds and returns it in milliseconds.
pub fn per_call_ttl_ms(seconds: f64) -> Result<u64> {
    ttl_seconds_from_f64(seconds).map(|s| s * 1000).ok_or_else(|| {
        CacheError::new(
            ErrorKind::InvalidTtl,
            format!("a TTL must be an integer number of seconds from 1 to {MAX_TTL_SECONDS}; got {seconds}"),
        )
    })
}

/// How long an entry may live in L1: its remaining TTL, cut to the L1 cap when there is one.
pub fn l1_lifetime(remaining_ms: u64, cap_ms: Option<u64>) -> Duration {
    Duration::from_millis(cap_ms.map_or(remaining_ms, |cap| remaining_ms.min(cap)))
}

/// A duration option given in seconds (possibly fractional) as a JavaScript number, checked against a range.
pub fn seconds_option(name: &str, seconds: f64, min: f64, max: f64) -> Result<Duration> {
    if seconds.is_finite() && (min..=max).contains(&seconds) {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(CacheError::invalid_option(name, &format!("a number of seconds from {min} to {max}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_seconds_within_thirty_days() {
        assert_eq!(ttl_seconds_from_f64(1.0), Some(1));
        assert_eq!(ttl_seconds_from_f64(2_592_000.0), Some(2_592_000));
        for bad in [0.0, -1.0, 1.5, 2_592_001.0, f64::NAN, f64::INFINITY] {
            assert_eq!(ttl_seconds_from_f64(bad), None, "{bad}");
        }
    }

    #[test]
    fn per_call_ttls_become_milliseconds() {
        assert_eq!(per_call_ttl_ms(60.0).unwrap(), 60_000);
        assert_eq!(per_call_ttl_ms(0.5).unwrap_err().kind, ErrorKind::InvalidTtl);
    }

    #[test]
    fn l1_lifetime_is_capped() {
        assert_eq!(l1_lifetime(10_000, None), Duration::from_secs(10));
        assert_eq!(l1_lifetime(10_000, Some(2_000)), Duration::from_secs(2));
        assert_eq!(l1_lifetime(1_000, Some(2_000)), Duration::from_secs(1));
    }

    #[test]
    fn second_options_accept_fractions_in_range() {
        assert_eq!(seconds_option("l2Timeout", 0.25, 0.01, 60.0).unwrap(), Duration::from_millis(250));
        assert!(seconds_option("l2Timeout", 0.0, 0.01, 60.0).is_err());
        assert!(seconds_option("l2Timeout", f64::NAN, 0.01, 60.0).is_err());
    }
}
