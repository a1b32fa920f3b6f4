//! Counters of a store, updated without locks and read as one snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Live counters of one store.
        #[derive(Debug, Default)]
        pub struct Stats { $(pub $name: AtomicU64,)* }

        /// A copy of the counters at one moment, plus the hit rate and the L1 gauges; serialized with the
        /// camelCase names of the public `CacheStats`.
        #[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct StatsSnapshot {
            $(pub $name: u64,)*
            pub hit_rate: f64,
            pub l1_entries: u64,
            pub l1_bytes: u64,
        }

        impl Stats {
            pub fn snapshot(&self, l1_entries: u64, l1_bytes: u64) -> StatsSnapshot {
                let mut snapshot = StatsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    hit_rate: 0.0,
                    l1_entries,
                    l1_bytes,
                };
                snapshot.hit_rate = hit_rate(snapshot.hits, snapshot.misses);
                snapshot
            }
        }
    };
}

counters!(
    hits,
    misses,
    l1_hits,
    l2_hits,
    sets,
    deletes,
    loader_calls,
    errors,
    bus_published,
    bus_received,
    bus_reconnects,
    lock_waits,
    lock_timeouts,
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
        assert_eq!(stats.snapshot(0, 0).hit_rate, 0.0);
        bump(&stats.hits);
        add(&stats.hits, 2);
        bump(&stats.misses);
        let snapshot = stats.snapshot(3, 30);
        assert_eq!(snapshot.hit_rate, 0.75);
        assert_eq!((snapshot.l1_entries, snapshot.l1_bytes), (3, 30));
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["l1Entries"], 3);
        assert_eq!(json["hitRate"], 0.75);
    }
}
