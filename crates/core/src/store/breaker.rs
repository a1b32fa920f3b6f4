//! The L2's circuit breaker: once the L2 is found down (`l2Breaker.failures` outages in a row), every call skips it
//! at once instead of waiting `l2Timeout` for it again, and one background probe per store retries with jittered,
//! growing delays until the L2 answers. The outage is reported once, when the breaker opens.
//!
//! A refused connection (already retried on fresh connections by the call) is an outage at once. A timeout is only a
//! suspicion: a server that stalled for a moment under load times out every call in flight together, exactly like one
//! that went away, and opening on it would skip writes the L2 could have taken (so other instances would keep the
//! old value). A timeout therefore starts one confirmation, a read on fresh connections bounded by `l2Timeout`, and
//! only a failed confirmation counts as an outage.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::{Inner, Transition};
use crate::error::{CacheError, ErrorKind};
use crate::key::namespaced;
use crate::stats::bump;

/// The longest wait between two probes, in ms: a probe is one cheap round trip, so probing at least every second
/// keeps the time to notice the L2's return within about a second, whatever the outage's length.
pub(crate) const MAX_PROBE_DELAY_MS: u64 = 1_000;
/// The key a probe reads: any answer, hit or miss, proves the L2 is back.
const PROBE_KEY: &str = "#breaker-probe";

/// The breaker's settings (option `l2Breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BreakerConfig {
    /// Outages in a row that open it (option `l2Breaker.failures`, [`crate::rules::L2_BREAKER_FAILURES`]).
    pub failures: u32,
    /// The wait before the first probe, in ms (option `l2Breaker.retryAfter`, [`crate::rules::L2_BREAKER_RETRY_AFTER`]);
    /// later ones double, jittered, up to [`MAX_PROBE_DELAY_MS`].
    pub retry_after_ms: u64,
}

/// The breaker's state.
#[derive(Default)]
pub(crate) struct Breaker {
    open: AtomicBool,
    outages_in_row: AtomicU32,
    /// A timeout's confirmation is under way: the timeouts meanwhile wait for its verdict.
    confirming: AtomicBool,
}

impl Breaker {
    /// Whether calls skip the L2 now.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Counts the end of an L2 call, or of a confirmation; true when this outage is the one that opens the breaker.
    fn record(&self, failure: Option<&CacheError>, threshold: u32) -> bool {
        match failure {
            Some(error) if error.is_outage() => {
                let in_row = self.outages_in_row.fetch_add(1, Ordering::AcqRel) + 1;
                in_row >= threshold && !self.open.swap(true, Ordering::AcqRel)
            }
            _ => {
                self.outages_in_row.store(0, Ordering::Release);
                false
            }
        }
    }

    fn close(&self) {
        self.outages_in_row.store(0, Ordering::Release);
        self.open.store(false, Ordering::Release);
    }
}

impl Inner {
    /// Counts how an L2 call ended; an outage that opens the breaker is reported once and starts the probe. Without
    /// a breaker, a timeout drops the L2's connections, which may be stuck for good.
    pub(super) fn record_l2_call(self: &Arc<Self>, failure: Option<&CacheError>) {
        let Some(config) = self.config.breaker else {
            if failure.is_some_and(|e| e.kind == ErrorKind::L2Timeout) {
                self.reconnect_l2();
            }
            return;
        };
        if failure.is_some_and(|e| e.kind == ErrorKind::L2Timeout) {
            if !self.breaker.confirming.swap(true, Ordering::AcqRel) {
                crate::runtime::spawn(confirm(Arc::downgrade(self), config));
            }
            return;
        }
        self.count_outage(failure, config);
    }

    fn count_outage(self: &Arc<Self>, failure: Option<&CacheError>, config: BreakerConfig) {
        if self.breaker.record(failure, config.failures) {
            self.report_background(&CacheError::new(
                ErrorKind::L2Unavailable,
                format!(
                    "the L2 is unreachable ({}); calls skip it, answering from the L1 and the loaders, until a probe \
                     finds it back",
                    failure.map_or("", |e| e.message.as_str())
                ),
            ));
            self.report_transition(Transition::BreakerOpen);
            crate::runtime::spawn(probe(Arc::downgrade(self), config));
        }
    }

    /// One read of the L2 on fresh connections, bounded by `l2Timeout`: `None` when it answered.
    async fn check_l2(&self) -> Option<CacheError> {
        let l2 = self.l2.clone()?;
        // A connection that stopped answering may never answer again, even once the L2 is back.
        l2.reconnect();
        let key = namespaced(&self.config.namespace, PROBE_KEY);
        match tokio::time::timeout(self.config.l2_timeout(), l2.get(&key)).await {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => Some(CacheError::l2_timeout(self.config.l2_timeout_ms)),
        }
    }
}

/// Decides whether a timeout was an outage: a read on fresh connections that fails too is one.
async fn confirm(inner: Weak<Inner>, config: BreakerConfig) {
    let Some(strong) = inner.upgrade() else { return };
    let failure = strong.check_l2().await;
    strong.breaker.confirming.store(false, Ordering::Release);
    strong.count_outage(failure.as_ref(), config);
}

fn probe_delays(config: BreakerConfig) -> impl Iterator<Item = Duration> {
    let first = Duration::from_millis(config.retry_after_ms);
    let cap = first.max(Duration::from_millis(MAX_PROBE_DELAY_MS));
    let delays = ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(cap)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build();
    // backon's jitter adds up to one more delay: the cap holds after it.
    delays.map(move |delay| delay.min(cap))
}

/// Retries the L2 until it answers, then closes the breaker. Ends with the store. The first probe of an outage is its
/// half-open transition; later failed ones change nothing, so they report nothing.
async fn probe(inner: Weak<Inner>, config: BreakerConfig) {
    let mut first = true;
    for delay in probe_delays(config) {
        tokio::time::sleep(delay).await;
        let Some(inner) = inner.upgrade() else { return };
        if std::mem::take(&mut first) {
            inner.report_transition(Transition::BreakerHalfOpen);
        }
        if inner.check_l2().await.is_none() {
            inner.breaker.close();
            bump(&inner.stats.l2_recoveries);
            inner.report_transition(Transition::BreakerClosed);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> CacheError {
        CacheError::new(ErrorKind::L2Timeout, "slow")
    }

    #[test]
    fn outages_in_a_row_open_it_once_and_anything_else_resets_the_count() {
        let breaker = Breaker::default();
        assert!(!breaker.record(Some(&timeout()), 3));
        assert!(!breaker.record(None, 3));
        assert!(!breaker.record(Some(&timeout()), 3));
        assert!(!breaker.record(Some(&CacheError::new(ErrorKind::L2, "permission denied")), 3), "an answer resets");
        assert!(!breaker.record(Some(&timeout()), 3));
        assert!(!breaker.record(Some(&timeout()), 3));
        assert!(breaker.record(Some(&timeout()), 3), "the third in a row opens it");
        assert!(breaker.is_open());
        assert!(!breaker.record(Some(&timeout()), 3), "it opens once");
        breaker.close();
        assert!(!breaker.is_open());
    }

    #[test]
    fn probes_start_at_retry_after_and_never_wait_past_the_cap() {
        let delays: Vec<Duration> = probe_delays(BreakerConfig { failures: 1, retry_after_ms: 500 }).take(20).collect();
        assert!(delays[0] >= Duration::from_millis(500));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(MAX_PROBE_DELAY_MS)), "{delays:?}");
        let long = probe_delays(BreakerConfig { failures: 1, retry_after_ms: 3_000 }).next().unwrap();
        assert!(long >= Duration::from_secs(3) && long <= Duration::from_secs(3), "{long:?}");
    }
}
