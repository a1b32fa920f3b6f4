//! Counters of a store, updated without locks and read as one snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// Whether the store uses its L2 now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum L2State {
    /// Calls go to the L2.
    #[default]
    Up,
    /// The circuit breaker is open: calls skip the L2 until a probe finds it back.
    Down,
    /// Memory only: there is no L2.
    None,
}

/// What a snapshot measures now rather than counts.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Entries in the L1.
    pub l1_entries: u64,
    /// Bytes of keys plus JSON text in the L1.
    pub l1_bytes: u64,
    /// Whether the bus is subscribed and proven.
    pub bus_up: bool,
    /// Whether calls use the L2.
    pub l2_state: L2State,
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Live counters of one store, shared by every handle on it.
        #[derive(Debug, Default)]
        pub struct Stats { $($(#[doc = $doc])* pub $name: AtomicU64,)* }

        /// A copy of the counters at one moment, plus the hit rate and the L1 gauges; serialized with the
        /// camelCase names of the public `CacheStats`.
        #[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct StatsSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
            /// `hits / (hits + misses)`, from 0 to 1; 0 before any read.
            pub hit_rate: f64,
            /// Entries in the L1 (see [`crate::l1::L1::entry_count`]); 0 without an L1.
            pub l1_entries: u64,
            /// Bytes of keys plus JSON text in the L1 (see [`crate::l1::L1::bytes`]); 0 without an L1.
            pub l1_bytes: u64,
            /// Whether the invalidation bus is subscribed and proven by a probe now; `false` without a bus.
            pub bus_up: bool,
            /// Whether calls use the L2 now, or skip it while the circuit breaker is open.
            pub l2_state: L2State,
        }

        impl Stats {
            /// Reads every counter; the gauges come from the caller, which owns what they measure. The counters are
            /// read one by one, so a snapshot taken under load may be off by the calls in flight.
            pub fn snapshot(&self, gauges: Gauges) -> StatsSnapshot {
                let Gauges { l1_entries, l1_bytes, bus_up, l2_state } = gauges;
                let mut snapshot = StatsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    hit_rate: 0.0,
                    l1_entries,
                    l1_bytes,
                    bus_up,
                    l2_state,
                };
                snapshot.hit_rate = hit_rate(snapshot.hits, snapshot.misses);
                snapshot
            }
        }
    };
}

counters!(
    /// Reads answered from either tier (`get`, and `getOrSet` finding the value cached); `has` counts nothing.
    hits,
    /// Reads that found nothing in either tier, or nothing in the L1 while the L2 failed.
    misses,
    /// Hits answered by the L1.
    l1_hits,
    /// Hits answered by the L2 (and copied into the L1).
    l2_hits,
    /// Writes finished (`set`, and `getOrSet` storing a loaded value), whether or not the L2 took them: counted once
    /// the L2 answered or failed, so a count that moved means the write is in the L2 or never will be.
    sets,
    /// Live entries removed by `delete`, `invalidatePattern` and `clear`: the L2's count, the L1's when memory only.
    deletes,
    /// Times a caller of this process was told to run its loader.
    loader_calls,
    /// Failures absorbed: L2 calls, bus publishes, bus losses and background sweeps.
    errors,
    /// Bus messages published by this store.
    bus_published,
    /// Bus messages from other stores of this namespace, each applied to the L1.
    bus_received,
    /// Times the bus subscription came back after a loss (each dropped the whole L1).
    bus_reconnects,
    /// Bus subscriptions that were opened and probed (the probe published) but never heard one: `LISTEN` through a
    /// transaction pooler, whose notifications never reach the listening client. Reported once, at the first.
    bus_unheard,
    /// `getOrSet` calls that waited for another loader, in this process or another; once per call.
    lock_waits,
    /// Waits that ran out (`lockTimeout`), after which the caller loaded the value itself.
    lock_timeouts,
    /// `getOrSet` calls answered with a stale value (within its grace): the loader failed or outran `timeout`.
    stale_hits,
    /// Background refreshes that `earlyRefresh` started (at most one per entry and key at a time).
    early_refreshes,
    /// `invalidateTags` calls.
    tag_invalidations,
    /// `getOrSet` loads whose value was returned but not stored: the key changed (on any instance) while the loader
    /// ran, or the loader ran past `maxLoadTime`.
    loads_discarded,
    /// Removals announced on the bus whose own message did not come back within `l2Timeout`: other instances may
    /// keep their copy until the bus is found lost (and their L1 dropped).
    bus_echo_timeouts,
    /// L2 calls skipped, answered from the L1 or the loader at once, while the circuit breaker was open.
    l2_skipped,
    /// Times a probe found the L2 back and closed the circuit breaker.
    l2_recoveries,
);

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Hits over reads, from 0 to 1; 0 before any read.
fn hit_rate(hits: u64, misses: u64) -> f64 {
    let reads = hits + misses;
    if reads == 0 {
        0.0
    } else {
        hits as f64 / reads as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_rate_is_hits_over_reads() {
        let stats = Stats::default();
        let gauges = |l1_entries, l1_bytes, bus_up| Gauges { l1_entries, l1_bytes, bus_up, l2_state: L2State::Up };
        assert_eq!(stats.snapshot(gauges(0, 0, false)).hit_rate, 0.0);
        bump(&stats.hits);
        add(&stats.hits, 2);
        bump(&stats.misses);
        let snapshot = stats.snapshot(gauges(3, 30, true));
        assert_eq!(snapshot.hit_rate, 0.75);
        assert_eq!((snapshot.l1_entries, snapshot.l1_bytes), (3, 30));
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["l1Entries"], 3);
        assert_eq!(json["hitRate"], 0.75);
        assert_eq!(json["busUp"], true);
        assert_eq!(json["l2State"], "up");
    }
}
