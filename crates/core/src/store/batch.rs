//! Batch calls: `getMany` and `setMany`, each one L2 call for the whole batch (see [`L2::get_many`],
//! [`L2::set_many`]) under the rules of their one-key forms: an L1 fill or write that raced another change of its
//! key is dropped (per-key generations, taken before the L2 call), and a write is announced on the bus in the same
//! round trip.

use std::sync::Arc;

use super::{Inner, Json, Outcome, Store};
use crate::bus::BusOp;
use crate::error::{CacheError, Result};
use crate::key::namespaced;
use crate::l2::{BatchWrite, ServerTime, L2};
use crate::stats::{add, bump};
use crate::tags::Tags;
use crate::ttl::Lifetime;

/// One entry of a `setMany`, checked.
#[derive(Debug)]
pub struct BatchEntry {
    /// The key, without the namespace.
    pub key: String,
    /// JSON text as `JSON.stringify` makes it.
    pub json: String,
    /// Fresh for its TTL, then kept stale for its grace.
    pub lifetime: Lifetime,
    /// Its tags; empty for none.
    pub tags: Tags,
}

impl Store {
    /// Reads `keys` from the L2 in one call after the caller's own L1 lookups missed them, as [`Self::read_l2`] reads
    /// one: each hit copied into the L1 unless its key changed during the read, each counted as a hit or a miss.
    /// `keys` must hold no duplicates. When the L2 fails, every key is a miss and the failure is in the outcome.
    pub async fn read_l2_many(&self, keys: &[String], default_ttl_ms: u64) -> Outcome<Vec<Option<Json>>> {
        let inner = &self.inner;
        let misses = || keys.iter().map(|_| None).collect::<Vec<_>>();
        let Some(l2) = &inner.l2 else {
            add(&inner.stats.misses, keys.len() as u64);
            return Outcome::ok(misses());
        };
        if keys.is_empty() {
            return Outcome::ok(Vec::new());
        }
        let generations: Vec<u64> = keys.iter().map(|key| inner.generations.of(key)).collect();
        let full: Vec<String> = keys.iter().map(|key| namespaced(&inner.config.namespace, key)).collect();
        let reads = inner.l2_call(inner.deadline(), || l2.get_many(&full)).await;
        let reads = reads.map(|reads| reads.into_iter().map(|read| inner.judged(read).hit).collect::<Vec<_>>());
        let read = inner.absorb(reads, keys.iter().map(|_| None).collect());
        let values = read
            .value
            .into_iter()
            .zip(keys.iter().zip(generations))
            .map(|(hit, (key, generation))| match hit {
                Some(hit) => Some(inner.l2_hit(key, hit, generation, default_ttl_ms)),
                None => {
                    bump(&inner.stats.misses);
                    None
                }
            })
            .collect();
        Outcome { value: values, error: read.error }
    }

    /// Counts the reads of a batch that asked again for a key it already read: `hits` L2 hits, `misses` misses.
    pub fn count_repeated_reads(&self, hits: u64, misses: u64) {
        add(&self.inner.stats.hits, hits);
        add(&self.inner.stats.l2_hits, hits);
        add(&self.inner.stats.misses, misses);
    }

    /// Writes every entry to both tiers in one L2 call, as [`Self::set`] writes one, and announces them all on the
    /// bus in that call (a batch whose keys overflow one bus message sends the rest right after). When the L2 does
    /// not take them, the L1 keeps them for at most `busDownL1Ttl`. `entries` must hold no duplicate keys.
    pub async fn set_many(&self, entries: Vec<BatchEntry>) -> Outcome<()> {
        let inner = &self.inner;
        let generations: Vec<u64> = entries.iter().map(|entry| inner.generations.of(&entry.key)).collect();
        let count = entries.len() as u64;
        let Some(l2) = &inner.l2 else {
            for (entry, generation) in entries.into_iter().zip(generations) {
                let written = Some(ServerTime(inner.local_now_us()));
                inner.apply_write(
                    &entry.key,
                    entry.json.into_boxed_str(),
                    entry.lifetime,
                    &entry.tags,
                    written,
                    generation,
                );
            }
            add(&inner.stats.sets, count);
            return Outcome::ok(());
        };
        if entries.is_empty() {
            return Outcome::ok(());
        }
        let (written, unannounced) = inner.write_many_to_l2(l2, &entries).await;
        for (index, (entry, generation)) in entries.into_iter().zip(generations).enumerate() {
            let at = written.as_ref().ok().map(|times| times[index]);
            inner.apply_write(&entry.key, entry.json.into_boxed_str(), entry.lifetime, &entry.tags, at, generation);
            inner.flights.detach(&entry.key);
        }
        add(&inner.stats.sets, count);
        let mut outcome = inner.absorb(written.map(|_| ()), ());
        if let (None, Some(error)) = (&outcome.error, unannounced) {
            outcome = inner.failed(error, ());
        }
        outcome
    }
}

impl Inner {
    /// The batch's L2 write with its first bus message, then the messages that did not fit in it: each write's time,
    /// and the failure of a message that could not follow (the writes landed, but some instances may not hear of
    /// them until their bus is found lost).
    async fn write_many_to_l2(
        &self,
        l2: &Arc<L2>,
        entries: &[BatchEntry],
    ) -> (Result<Vec<ServerTime>>, Option<CacheError>) {
        let deadline = self.deadline();
        let full: Vec<String> = entries.iter().map(|entry| namespaced(&self.config.namespace, &entry.key)).collect();
        let writes: Vec<BatchWrite<'_>> = entries
            .iter()
            .zip(&full)
            .map(|(entry, key)| BatchWrite { key, json: &entry.json, lifetime: entry.lifetime, tags: &entry.tags })
            .collect();
        let payloads = self.bus_payloads(BusOp::Keys { keys: entries.iter().map(|entry| entry.key.clone()).collect() });
        let mut payloads = payloads.iter().map(|(_, payload)| payload.as_str());
        let first = payloads.next();
        let written = self.l2_call(deadline, || l2.set_many(&writes, first)).await;
        if written.is_err() {
            return (written, None);
        }
        if first.is_some() {
            bump(&self.stats.bus_published);
        }
        for payload in payloads {
            if let Err(error) = self.l2_call(deadline, || l2.publish(payload)).await {
                return (written, Some(error));
            }
            bump(&self.stats.bus_published);
        }
        (written, None)
    }
}
