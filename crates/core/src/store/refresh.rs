//! Early refresh: a hit on an entry near the end of its TTL reloads it in the background, once, so a hot key is
//! replaced before it expires instead of every caller missing at once.

use std::time::Duration;

use tokio::time::Instant;

use super::{LoadLease, Outcome, Store};
use crate::flight::{FlightResult, Joined};
use crate::key::namespaced;
use crate::l2::{LockAttempt, ServerTime};
use crate::stats::bump;

impl Store {
    /// Starts the early refresh of `key`, whose fresh entry has less than `threshold` of its TTL left: a lease when
    /// this caller is to reload it (counted in `earlyRefreshes`), `None` when another thread or process is loading
    /// it or another instance already refreshed it (its newer entry is then copied into the L1). The lease's write
    /// is fenced like any load's: a change of the key while the loader runs wins. An L2 failure ends it, reported.
    pub async fn begin_refresh(
        &self,
        key: &str,
        threshold: Duration,
        default_ttl_ms: u64,
    ) -> Outcome<Option<LoadLease>> {
        let inner = &self.inner;
        let Joined::Leader(flight) = inner.flights.join(key) else {
            return Outcome::ok(None);
        };
        let generation = inner.generations.of(key);
        let Some(l2) = inner.l2.clone() else {
            bump(&inner.stats.early_refreshes);
            let started = Some(ServerTime(inner.local_now_us()));
            return Outcome::ok(Some(inner.lease(key, Some(flight), None, started, Duration::ZERO, generation)));
        };
        let deadline = inner.deadline();
        let full = namespaced(&inner.config.namespace, key);
        let read = match inner.l2_get(&l2, &full, deadline).await {
            Ok(read) => read,
            Err(error) => {
                inner.flights.finish(key, &flight, FlightResult::Abandoned);
                return inner.absorb(Err(error), None);
            }
        };
        let threshold_ms = threshold.as_millis() as u64;
        if let Some(hit) = read.hit.filter(|hit| hit.remaining_ms.is_none_or(|ms| ms >= threshold_ms)) {
            let json = inner.fill_l1_from(key, hit, generation, default_ttl_ms);
            inner.flights.finish(key, &flight, FlightResult::Loaded(json.as_str().into()));
            return Outcome::ok(None);
        }
        let lock = if inner.config.distributed_lock {
            match inner.l2_call(deadline, || l2.try_lock(&full, inner.config.lock_timeout())).await {
                Ok(LockAttempt::Acquired(lock)) => Some(lock),
                Ok(LockAttempt::Held { .. }) => {
                    inner.flights.finish(key, &flight, FlightResult::Abandoned);
                    return Outcome::ok(None);
                }
                Err(error) => {
                    inner.flights.finish(key, &flight, FlightResult::Abandoned);
                    return inner.absorb(Err(error), None);
                }
            }
        } else {
            None
        };
        bump(&inner.stats.early_refreshes);
        let budget = deadline.saturating_duration_since(Instant::now());
        Outcome::ok(Some(inner.lease(key, Some(flight), lock, Some(read.at), budget, generation)))
    }
}
