//! Tags in a store: invalidating them, and judging entries by them (see [`crate::tags`]).

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Inner, Outcome, Store};
use crate::bus::BusOp;
use crate::l1::L1Entry;
use crate::l2::{L2Hit, L2Read, ServerTime};
use crate::stats::bump;
use crate::tags::{TagTime, Tags, Verdict};

impl Store {
    /// Invalidates every entry of the namespace that carries one of `tags` and was written before now: gone, or with
    /// `soft` stale. Records the invalidation in the L2 (one record per tag, whatever the number of entries) and
    /// announces it on the bus, waiting for its echo as `delete` does; memory only, in this process.
    pub async fn invalidate_tags(&self, tags: Tags, soft: bool) -> Outcome<()> {
        let inner = &self.inner;
        bump(&inner.stats.tag_invalidations);
        let Some(l2) = &inner.l2 else {
            inner.learn_invalidation(&tags, inner.local_now_us(), soft);
            return Outcome::ok(());
        };
        let deadline = inner.deadline();
        let recorded = inner.l2_call(deadline, || l2.invalidate_tags(&inner.config.namespace, &tags, soft)).await;
        let at = match recorded {
            Ok(ServerTime(at)) => at,
            Err(error) => {
                // No time to record it by: this process at least drops what it holds of those tags. Other instances
                // never hear of it; the failure says so.
                if let Some(l1) = &inner.l1 {
                    l1.remove_tagged(&tags);
                }
                inner.flights.detach_all();
                // Reported even when the open breaker skipped the call (which `absorb` keeps quiet elsewhere): an
                // invalidation lost for the other instances is news, and a strict caller rejects on it.
                return inner.failed(error, ());
            }
        };
        inner.learn_invalidation(&tags, at, soft);
        inner.l2_activity.notify_waiters();
        let mut announcement = inner.announce(BusOp::Tags { tags: tags.to_vec(), at, soft });
        Outcome { value: (), error: inner.confirm(&mut announcement, inner.deadline()).await }
    }

    /// The time of the latest invalidation (hard or soft) of any of `tags`, in ms since the Unix epoch by the L2's
    /// clock; 0 when none was ever invalidated. What this instance knows when the L2 fails.
    pub async fn tag_expiration_ms(&self, tags: Tags) -> Outcome<u64> {
        let inner = &self.inner;
        let known = || tags.iter().map(|tag| inner.tag_times.of(tag).latest_us()).max().unwrap_or(0) / 1000;
        let Some(l2) = &inner.l2 else {
            return Outcome::ok(known());
        };
        let read = inner.l2_call(inner.deadline(), || l2.tag_times(&inner.config.namespace, &tags)).await;
        match read {
            Ok(times) => {
                tags.iter().zip(&times).for_each(|(tag, time)| inner.tag_times.learn(tag, *time));
                Outcome::ok(known())
            }
            Err(error) => inner.absorb(Err(error), known()),
        }
    }
}

impl Inner {
    /// Takes in an invalidation of `tags` at `at_us`, from this process or the bus. Loads in progress may carry one
    /// of the tags and read their data before it: callers from now on start their own.
    pub(super) fn learn_invalidation(&self, tags: &[Box<str>], at_us: u64, soft: bool) {
        let time = if soft { TagTime { hard_us: 0, soft_us: at_us } } else { TagTime { hard_us: at_us, soft_us: 0 } };
        tags.iter().for_each(|tag| self.tag_times.learn(tag, time));
        self.flights.detach_all();
    }

    /// What the tags of an L1 entry say of it now.
    pub(super) fn verdict_of(&self, entry: &L1Entry) -> Verdict {
        entry.tagged.as_ref().map_or(Verdict::Valid, |tagged| self.tag_times.verdict(&tagged.tags, tagged.written_us))
    }

    /// Takes in the tag records an L2 read returned, then judges its entry: a hit whose tag was invalidated after
    /// it was written becomes stale (soft) or a miss (hard); a stale entry so invalidated hard becomes a miss.
    pub(super) fn judged(&self, mut read: L2Read) -> L2Read {
        for (tag, time) in &read.tag_times {
            self.tag_times.learn(tag, *time);
        }
        let verdict =
            |hit: &L2Hit| hit.tagged.as_ref().map_or(Verdict::Valid, |t| self.tag_times.verdict(&t.tags, t.written_us));
        if let Some(hit) = read.hit.take() {
            match verdict(&hit) {
                Verdict::Valid => read.hit = Some(hit),
                // Stale until the end of its grace, as if its TTL had run out now.
                Verdict::Stale => {
                    let grace_ms = hit.remaining_ms.unwrap_or(0) + hit.grace_ms;
                    read.stale = Some(L2Hit { remaining_ms: Some(0), grace_ms, ..hit });
                }
                Verdict::Gone => {}
            }
        } else if read.stale.as_ref().is_some_and(|stale| verdict(stale) == Verdict::Gone) {
            read.stale = None;
        }
        read
    }

    /// The memory-only store's clock, in µs since the Unix epoch, strictly increasing.
    pub(super) fn local_now_us(&self) -> u64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        let previous = self.local_clock.fetch_max(wall, Ordering::AcqRel);
        if previous < wall {
            wall
        } else {
            self.local_clock.fetch_add(1, Ordering::AcqRel) + 1
        }
    }
}
