//! The in-process L1: a bounded moka cache of JSON text, with a per-entry expiry.
//!
//! Values stay as the JSON text V8 produced, so a hit costs a lookup and one string copy into JavaScript. Both bounds
//! hold at once through one weigher: an entry weighs its byte size plus its bookkeeping
//! ([`L1_ENTRY_OVERHEAD_BYTES`]), and with an entry bound never less than `max_bytes / max_entries`, so the byte
//! total stays under `max_bytes` and the count under `max_entries`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::sync::Cache as Moka;
use moka::Expiry;

use crate::l2::Tagged;
use crate::pattern::Pattern;
use crate::rules::L1_ENTRY_OVERHEAD_BYTES;

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

/// One L1 entry: the value's JSON text, when it stops being fresh and when it is dropped.
#[derive(Debug)]
pub struct L1Entry {
    /// The value's JSON text, as V8's `JSON.stringify` produced it or as the L2 returned it.
    pub json: Box<str>,
    /// Whether `json` is ASCII, so a binding can hand it over as Latin-1 without decoding UTF-8.
    pub ascii: bool,
    /// When the entry stops being fresh: [`L1::get`] checks it on every read, ahead of moka's lazy reclaiming.
    pub expires_at: Instant,
    /// When the entry is dropped: `expires_at` plus its grace. In between, only [`L1::get_stale`] returns it.
    pub stale_until: Instant,
    /// Unique across the process for every write, so a reader can tell whether the entry changed since it last saw it.
    pub version: u64,
    /// Set by the first caller that starts an early refresh of this entry, so each entry is refreshed once.
    refresh_claimed: AtomicBool,
    /// The entry's tags and write time, which every read checks against the tags' invalidations.
    pub tagged: Option<Tagged>,
}

impl L1Entry {
    /// Whether the entry, fresh now, has less than `threshold` of its freshness left and nobody claimed its early
    /// refresh yet; the first caller to see `true` claims it.
    pub fn claim_refresh(&self, threshold: Duration) -> bool {
        let now = Instant::now();
        self.expires_at > now && self.expires_at - now < threshold && !self.refresh_claimed.swap(true, Ordering::AcqRel)
    }
}

impl L1Entry {
    fn bytes(&self, key: &str) -> u64 {
        (key.len() + self.json.len()) as u64
    }
}

struct PerEntryExpiry;

impl Expiry<String, Arc<L1Entry>> for PerEntryExpiry {
    fn expire_after_create(&self, _: &String, entry: &Arc<L1Entry>, created_at: Instant) -> Option<Duration> {
        Some(entry.stale_until.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Arc<L1Entry>,
        updated_at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.stale_until.saturating_duration_since(updated_at))
    }
}

/// The L1 store.
pub struct L1 {
    moka: Moka<String, Arc<L1Entry>>,
    bytes: Arc<AtomicI64>,
}

impl L1 {
    /// An empty L1 bounded by `max_bytes` bytes of keys plus JSON text plus each entry's bookkeeping, and by
    /// `max_entries` entries when given.
    pub fn new(max_entries: Option<u64>, max_bytes: u64) -> Self {
        let slot_bytes = max_entries.map_or(0, |n| max_bytes / n.max(1));
        let bytes = Arc::new(AtomicI64::new(0));
        let removed_bytes = bytes.clone();
        let moka = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(move |key: &String, entry: &Arc<L1Entry>| {
                (entry.bytes(key) + L1_ENTRY_OVERHEAD_BYTES).max(slot_bytes).min(u32::MAX as u64) as u32
            })
            .expire_after(PerEntryExpiry)
            .eviction_listener(move |key: Arc<String>, entry: Arc<L1Entry>, _: RemovalCause| {
                removed_bytes.fetch_sub(entry.bytes(&key) as i64, Ordering::Relaxed);
            })
            .build();
        L1 { moka, bytes }
    }

    /// A fresh entry, or `None`. Never returns an expired one.
    pub fn get(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.moka.get(key).filter(|entry| entry.expires_at > Instant::now())
    }

    /// An entry fresh or within its grace, or `None`: what a failing load may fall back on.
    pub fn get_stale(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.moka.get(key).filter(|entry| entry.stale_until > Instant::now())
    }

    /// Stores `json`, fresh for `lifetime` then stale for `grace` (a stale-only entry when `lifetime` is zero), and
    /// returns the new entry; with both zero it stores nothing and drops what was there.
    pub fn insert(
        &self,
        key: &str,
        json: Box<str>,
        lifetime: Duration,
        grace: Duration,
        tagged: Option<Tagged>,
    ) -> Option<Arc<L1Entry>> {
        if lifetime.is_zero() && grace.is_zero() {
            self.remove(key);
            return None;
        }
        let expires_at = Instant::now() + lifetime;
        let entry = Arc::new(L1Entry {
            ascii: json.is_ascii(),
            json,
            expires_at,
            stale_until: expires_at + grace,
            version: NEXT_VERSION.fetch_add(1, Ordering::Relaxed),
            refresh_claimed: AtomicBool::new(false),
            tagged,
        });
        self.bytes.fetch_add(entry.bytes(key) as i64, Ordering::Relaxed);
        self.moka.insert(key.to_owned(), entry.clone());
        Some(entry)
    }

    /// Removes a key; true when a live entry was there.
    pub fn remove(&self, key: &str) -> bool {
        self.moka.remove(key).is_some_and(|entry| entry.expires_at > Instant::now())
    }

    /// Removes the keys matching `pattern`; returns how many live entries went.
    pub fn remove_matching(&self, pattern: &Pattern) -> u64 {
        self.remove_where(|key, _| pattern.matches(key))
    }

    /// Removes the entries carrying any of `tags`; returns how many were live.
    pub fn remove_tagged(&self, tags: &[Box<str>]) -> u64 {
        self.remove_where(|_, entry| entry.tagged.as_ref().is_some_and(|t| t.tags.iter().any(|tag| tags.contains(tag))))
    }

    /// Removes the entries `removed` picks; returns how many were live.
    fn remove_where(&self, removed: impl Fn(&str, &L1Entry) -> bool) -> u64 {
        let keys: Vec<Arc<String>> =
            self.moka.iter().filter(|(key, entry)| removed(key, entry)).map(|(key, _)| key).collect();
        keys.iter().filter(|key| self.remove(key)).count() as u64
    }

    /// Makes every entry stale now: none is a hit any more, and those within their grace stay as the stale copies a
    /// failing load may fall back on. An entry written meanwhile (another version) is left as it is.
    pub fn demote_all(&self) {
        let now = Instant::now();
        let keys: Vec<Arc<String>> = self.moka.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.moka.entry_by_ref(key.as_str()).and_compute_with(|current| {
                use moka::ops::compute::Op;
                let Some(current) = current else { return Op::Nop };
                let entry = current.into_value();
                if entry.stale_until <= now || entry.stale_until == entry.expires_at {
                    return Op::Remove;
                }
                if entry.expires_at <= now {
                    return Op::Nop;
                }
                let demoted = Arc::new(L1Entry {
                    json: entry.json.clone(),
                    ascii: entry.ascii,
                    expires_at: now,
                    stale_until: entry.stale_until,
                    version: NEXT_VERSION.fetch_add(1, Ordering::Relaxed),
                    refresh_claimed: AtomicBool::new(true),
                    tagged: entry.tagged.clone(),
                });
                // The listener takes the replaced entry's bytes off, as for any insert.
                self.bytes.fetch_add(demoted.bytes(&key) as i64, Ordering::Relaxed);
                Op::Put(demoted)
            });
        }
    }

    /// Drops every entry; returns how many were live.
    #[cfg(test)]
    pub fn clear(&self) -> u64 {
        let live = self.moka.iter().filter(|(_, entry)| entry.expires_at > Instant::now()).count() as u64;
        self.moka.invalidate_all();
        live
    }

    /// Applies pending evictions and expirations; the store calls it periodically so an idle cache shrinks too.
    pub fn run_pending_tasks(&self) {
        self.moka.run_pending_tasks();
    }

    /// Entries held, as moka counts them: it lags behind writes, and counts expired entries, until
    /// [`L1::run_pending_tasks`].
    pub fn entry_count(&self) -> u64 {
        self.moka.entry_count()
    }

    /// Bytes of keys plus JSON text held, counted apart from moka's weights (which round small entries up); expired
    /// entries count until reclaimed.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Box<str> {
        s.into()
    }

    #[test]
    fn entries_expire_at_their_own_ttl() {
        let l1 = L1::new(Some(100), 1 << 20);
        l1.insert("short", json("1"), Duration::from_millis(30), Duration::ZERO, None);
        l1.insert("long", json("2"), Duration::from_secs(60), Duration::ZERO, None);
        assert_eq!(&*l1.get("short").unwrap().json, "1");
        std::thread::sleep(Duration::from_millis(50));
        assert!(l1.get("short").is_none());
        assert_eq!(&*l1.get("long").unwrap().json, "2");
    }

    #[test]
    fn idle_expired_entries_are_reclaimed_by_pending_tasks() {
        let l1 = L1::new(Some(100), 1 << 20);
        l1.insert("a", json("\"x\""), Duration::from_millis(20), Duration::ZERO, None);
        l1.run_pending_tasks();
        assert_eq!(l1.entry_count(), 1);
        // moka's expiry timer wheel turns about once a second: reads see expiry at once, reclaiming takes a tick.
        std::thread::sleep(Duration::from_millis(2_200));
        l1.run_pending_tasks();
        assert_eq!(l1.entry_count(), 0);
        assert_eq!(l1.bytes(), 0);
    }

    #[test]
    fn max_entries_bounds_the_count() {
        let l1 = L1::new(Some(10), 1 << 20);
        for i in 0..100 {
            l1.insert(&format!("k{i}"), json("1"), Duration::from_secs(60), Duration::ZERO, None);
        }
        l1.run_pending_tasks();
        assert!(l1.entry_count() <= 10, "{}", l1.entry_count());
    }

    #[test]
    fn max_bytes_bounds_the_size() {
        let l1 = L1::new(Some(10_000), 10_000);
        let big = "x".repeat(1000);
        for i in 0..100 {
            l1.insert(&format!("k{i}"), json(&big), Duration::from_secs(60), Duration::ZERO, None);
        }
        l1.run_pending_tasks();
        assert!(l1.bytes() <= 10_000, "{}", l1.bytes());
        assert!(l1.entry_count() >= 1);
    }

    #[test]
    fn without_an_entry_bound_max_bytes_binds_small_entries_included() {
        // The shape of a tenant cache: 45,000 entries of about 220 B fit in the default 64 MiB...
        let l1 = L1::new(None, 64 << 20);
        let tenant = format!("{{\"name\":\"{}\"}}", "t".repeat(200));
        for i in 0..45_000 {
            l1.insert(&format!("tenant:{i}"), json(&tenant), Duration::from_secs(60), Duration::ZERO, None);
        }
        l1.run_pending_tasks();
        assert_eq!(l1.entry_count(), 45_000);
        // ...while the bookkeeping each entry costs keeps a flood of tiny ones within the byte budget.
        let tiny = L1::new(None, 100 * (L1_ENTRY_OVERHEAD_BYTES + 10));
        for i in 0..10_000 {
            tiny.insert(&format!("k{i:05}"), json("1"), Duration::from_secs(60), Duration::ZERO, None);
        }
        tiny.run_pending_tasks();
        assert!(tiny.entry_count() <= 100, "{}", tiny.entry_count());
    }

    #[test]
    fn stale_entries_are_kept_for_their_grace_but_never_fresh() {
        let l1 = L1::new(Some(100), 1 << 20);
        l1.insert("k", json("1"), Duration::from_millis(30), Duration::from_millis(200), None);
        std::thread::sleep(Duration::from_millis(50));
        assert!(l1.get("k").is_none(), "past its TTL it is a miss");
        assert_eq!(&*l1.get_stale("k").unwrap().json, "1");
        std::thread::sleep(Duration::from_millis(200));
        assert!(l1.get_stale("k").is_none(), "past its grace it is gone");
    }

    #[test]
    fn an_early_refresh_is_claimed_once_per_entry_and_only_near_expiry() {
        let l1 = L1::new(Some(100), 1 << 20);
        let entry = l1.insert("k", json("1"), Duration::from_secs(10), Duration::ZERO, None).unwrap();
        assert!(!entry.claim_refresh(Duration::from_secs(5)), "10 s left of 10: not due");
        assert!(entry.claim_refresh(Duration::from_secs(11)), "due");
        assert!(!entry.claim_refresh(Duration::from_secs(11)), "claimed once");
        let rewritten = l1.insert("k", json("2"), Duration::from_secs(10), Duration::ZERO, None).unwrap();
        assert!(rewritten.claim_refresh(Duration::from_secs(11)), "a new write can be refreshed again");
    }

    #[test]
    fn demoted_entries_are_never_hits_and_only_those_with_a_grace_stay_stale() {
        let l1 = L1::new(Some(100), 1 << 20);
        l1.insert("graceful", json("1"), Duration::from_secs(60), Duration::from_secs(60), None);
        l1.insert("graceless", json("2"), Duration::from_secs(60), Duration::ZERO, None);
        l1.demote_all();
        assert!(l1.get("graceful").is_none() && l1.get("graceless").is_none());
        assert_eq!(&*l1.get_stale("graceful").unwrap().json, "1");
        assert!(l1.get_stale("graceless").is_none());
        l1.run_pending_tasks();
        assert_eq!(l1.bytes(), ("graceful".len() + 1) as u64, "bytes follow the demotion");
    }

    #[test]
    fn versions_change_on_every_write() {
        let l1 = L1::new(Some(10), 1 << 20);
        l1.insert("k", json("1"), Duration::from_secs(60), Duration::ZERO, None);
        let first = l1.get("k").unwrap().version;
        l1.insert("k", json("1"), Duration::from_secs(60), Duration::ZERO, None);
        assert_ne!(first, l1.get("k").unwrap().version);
    }

    #[test]
    fn remove_matching_and_clear_count_live_entries() {
        let l1 = L1::new(Some(100), 1 << 20);
        for key in ["user:1", "user:2", "users:3", "50%_off"] {
            l1.insert(key, json("1"), Duration::from_secs(60), Duration::ZERO, None);
        }
        assert_eq!(l1.remove_matching(&Pattern::parse("user:*", 100).unwrap()), 2);
        assert_eq!(l1.remove_matching(&Pattern::parse("50%?off", 100).unwrap()), 1);
        assert!(l1.get("users:3").is_some());
        assert_eq!(l1.clear(), 1);
        assert!(l1.get("users:3").is_none());
    }
}
