//! The front door of the core: one [`Cache`] handle per `new Cache(...)`, the only type a binding calls.
//!
//! It checks every input synchronously (keys, values, TTLs, patterns), so a bad call fails before anything is
//! written, and hands back a future for the rest. It owns the `getOrSet` leases, by id, so a binding only passes
//! numbers across. Handles whose options differ only in their own settings ([`HandleConfig`]) share one store.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;

use crate::config::HandleConfig;
use crate::error::{CacheError, ErrorKind, Result};
use crate::key::validate_key;
use crate::l1::L1Entry;
use crate::l2::ServerTime;
use crate::pattern::Pattern;
use crate::registry::shared_store;
use crate::rules::{EARLY_REFRESH, GRACE, JS_EXACT_INTEGERS, SOFT_TIMEOUT};
use crate::stats::StatsSnapshot;
use crate::store::{BatchEntry, ErrorSink, Json, LoadLease, LoadStep, Outcome, Store};
use crate::tags::checked_tags;
use crate::ttl::{jittered, per_call, per_call_ms, per_call_ttl_ms, Lifetime};
use crate::value::validate_json;

/// Patterns may be this long at least, whatever `maxKeyLength` says.
const MIN_PATTERN_LIMIT_BYTES: usize = 1024;

/// How a `getOrSet` starts.
#[derive(Debug)]
pub enum LoadStart {
    /// The value: cached, or loaded by another caller.
    Hit(Json),
    /// Run the loader, then [`Cache::complete_load`] or [`Cache::fail_load`] this lease. `stale` is the value to
    /// serve if the loader fails or outlasts the soft timeout (stale-if-error, stale-while-revalidate).
    Lead {
        /// The lease's id.
        lease: u32,
        /// A stale value within its grace, if there is one.
        stale: Option<Json>,
    },
    /// Serve this stale value (counted in `staleHits`): another caller's load failed or outlasted the soft timeout.
    Stale(Json),
    /// The load this call waited for failed (`ERR_CACHE_LOADER_FAILED`, the loader's message).
    Failed(CacheError),
    /// The handle was closed meanwhile: run the loader, nothing will be stored.
    Closed,
}

/// The leases of one handle's loads in progress, by id.
#[derive(Default)]
struct Leases {
    by_id: Mutex<HashMap<u32, LoadLease>>,
    next_id: AtomicU32,
    /// Set by `close`: a load that starts leading after it keeps no lease.
    closed: AtomicBool,
}

impl Leases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u32, LoadLease>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep(&self, lease: LoadLease) -> Option<u32> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        self.map().insert(id, lease);
        Some(id)
    }

    fn take(&self, id: u32) -> Option<LoadLease> {
        self.map().remove(&id)
    }
}

/// One handle on a shared store, with its own settings and leases.
pub struct Cache {
    store: Arc<Store>,
    handle: HandleConfig,
    leases: Arc<Leases>,
    _error_sink: Option<Arc<dyn ErrorSink>>,
}

impl Cache {
    /// Opens a handle from the options object (see [`crate::options::parse`]; `env_url` is `CACHE_URL`), on the
    /// process's store of that configuration. `error_sink` receives failures that belong to no call, for as long as
    /// the handle lives. Fails with `ERR_CACHE_INVALID_OPTION`, or `ERR_CACHE_L2` when a client cannot be built.
    pub fn open(options: &Value, env_url: Option<String>, error_sink: Option<Arc<dyn ErrorSink>>) -> Result<Cache> {
        let config = crate::options::parse(options, env_url)?;
        let store = shared_store(config.store)?;
        if let Some(sink) = &error_sink {
            store.add_error_sink(Arc::downgrade(sink) as Weak<dyn ErrorSink>);
        }
        Ok(Cache { store, handle: config.handle, leases: Default::default(), _error_sink: error_sink })
    }

    /// The store's namespace.
    pub fn namespace(&self) -> &str {
        &self.store.config().namespace
    }

    /// `"postgres"`, `"redis"` or `"memory"`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// How long a `getOrSet` waits for another caller's load, in ms (option `lockTimeout`).
    pub fn lock_timeout_ms(&self) -> u64 {
        self.store.config().lock_timeout_ms
    }

    /// The L1's bounds `(maxEntries, maxBytes)`, `None` for no entry bound; `(Some(0), 0)` without an L1.
    pub fn l1_bounds(&self) -> (Option<u64>, u64) {
        self.store.config().l1.as_ref().map_or((Some(0), 0), |l1| (l1.max_entries, l1.max_bytes))
    }

    fn checked_key(&self, key: &str) -> Result<()> {
        validate_key(key, self.handle.max_key_len)
    }

    /// The call's TTL or the default, in ms, before `jitter`; `ERR_CACHE_INVALID_TTL` out of its range.
    fn ttl_ms(&self, ttl_seconds: Option<f64>) -> Result<u64> {
        ttl_seconds.map_or(Ok(self.handle.default_ttl_ms), per_call_ttl_ms)
    }

    /// What a write stores: the call's TTL or the default, spread by `jitter`, and the call's grace or the default.
    /// `ERR_CACHE_INVALID_TTL` for either out of its range.
    fn lifetime(&self, ttl_seconds: Option<f64>, grace_seconds: Option<f64>) -> Result<Lifetime> {
        let ttl_ms = self.ttl_ms(ttl_seconds)?;
        let grace_ms = grace_seconds.map_or(Ok(self.handle.grace_ms), |s| per_call_ms(&GRACE, s))?;
        Ok(Lifetime { ttl_ms: jittered(ttl_ms, self.handle.jitter), grace_ms })
    }

    /// The default `hardTimeout` of `getOrSet`, in ms (option `hardTimeout`); `None` when there is none.
    pub fn hard_timeout_ms(&self) -> Option<u64> {
        self.handle.hard_timeout_ms
    }

    /// The default soft `timeout` of `getOrSet`, in ms (option `timeout`); `None` when there is none.
    pub fn soft_timeout_ms(&self) -> Option<u64> {
        self.handle.soft_timeout_ms
    }

    /// The default `earlyRefresh` of `getOrSet`, a fraction of the TTL (option `earlyRefresh`); `None` when off.
    pub fn early_refresh(&self) -> Option<f64> {
        self.handle.early_refresh
    }

    /// An L1 hit, counted; `None` on an L1 miss, which the caller follows up with [`Self::get_after_l1_miss`].
    pub fn l1_get(&self, key: &str) -> Result<Option<Arc<L1Entry>>> {
        self.checked_key(key)?;
        Ok(self.store.l1_get(key))
    }

    /// An L1 entry without counting a hit: for a caller that already counted this read.
    pub fn l1_peek(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.store.l1_peek(key)
    }

    /// Reads `key` from the L2 (copying it into the L1) after the caller's own L1 lookup missed, without asking the
    /// L1 again. Fails at once with `ERR_CACHE_INVALID_KEY`; L2 failures come back in the [`Outcome`].
    pub fn get_after_l1_miss(
        &self,
        key: String,
    ) -> Result<impl Future<Output = Outcome<Option<Json>>> + Send + 'static> {
        self.checked_key(&key)?;
        let (store, default_ttl_ms) = (self.store.clone(), self.handle.default_ttl_ms);
        Ok(async move { store.read_l2(&key, default_ttl_ms).await })
    }

    /// Reads `key` from either tier, a stale entry included: its JSON text and whether it is stale (past its TTL
    /// within its grace, or soft-invalidated by a tag), for a caller that serves stale values itself (Next.js's
    /// cache handlers). Fails at once with `ERR_CACHE_INVALID_KEY`; L2 failures come back in the [`Outcome`].
    pub fn get_allowing_stale(
        &self,
        key: String,
    ) -> Result<impl Future<Output = Outcome<Option<(Json, bool)>>> + Send + 'static> {
        self.checked_key(&key)?;
        let (store, default_ttl_ms) = (self.store.clone(), self.handle.default_ttl_ms);
        Ok(async move { store.read_allowing_stale(&key, default_ttl_ms).await })
    }

    /// Reads `keys` from the L2 in one call after the caller's own L1 lookups missed them (see
    /// [`Store::read_l2_many`]): each value, or `None`, in the order of `keys`; a key given twice is read once and
    /// counted (as a hit or a miss) each time, as that many `get`s would be. Fails at once with
    /// `ERR_CACHE_INVALID_KEY` for any one bad key; L2 failures come back in the [`Outcome`].
    pub fn get_many_after_l1_miss(
        &self,
        keys: Vec<String>,
    ) -> Result<impl Future<Output = Outcome<Vec<Option<Json>>>> + Send + 'static> {
        keys.iter().try_for_each(|key| self.checked_key(key))?;
        let (unique, positions) = deduplicated(keys);
        let (store, default_ttl_ms) = (self.store.clone(), self.handle.default_ttl_ms);
        Ok(async move {
            let read = store.read_l2_many(&unique, default_ttl_ms).await;
            // A key asked for twice counts twice, as two gets would: the coalesced reads of `get` rely on it.
            let mut seen = vec![false; unique.len()];
            let (mut hits, mut misses) = (0, 0);
            for &i in &positions {
                if std::mem::replace(&mut seen[i], true) {
                    *if read.value[i].is_some() { &mut hits } else { &mut misses } += 1;
                }
            }
            store.count_repeated_reads(hits, misses);
            let values = positions.into_iter().map(|i| read.value[i].clone()).collect();
            Outcome { value: values, error: read.error }
        })
    }

    /// Writes every entry to both tiers in one L2 call, each as an unfenced [`Self::set`] writes it; a key given twice
    /// keeps its last value. Every entry is checked first, so a bad one fails the call at once, naming its index,
    /// and nothing is written: `ERR_CACHE_INVALID_KEY`, `ERR_CACHE_INVALID_VALUE`, `ERR_CACHE_VALUE_TOO_LARGE`,
    /// `ERR_CACHE_INVALID_TTL` or `ERR_CACHE_INVALID_TAG`.
    pub fn set_many(&self, entries: Vec<SetManyEntry>) -> Result<impl Future<Output = Outcome<()>> + Send + 'static> {
        let mut checked = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let entry = self
                .checked_entry(entry)
                .map_err(|e| CacheError::new(e.kind, format!("setMany entry {index}: {}", e.message)))?;
            checked.push(entry);
        }
        // The last entry of a key wins: keep, from the back, the first of each.
        let mut kept = std::collections::HashSet::with_capacity(checked.len());
        let mut batch: Vec<BatchEntry> =
            checked.into_iter().rev().filter(|entry| kept.insert(entry.key.clone())).collect();
        batch.reverse();
        let store = self.store.clone();
        Ok(async move { store.set_many(batch).await })
    }

    fn checked_entry(&self, entry: SetManyEntry) -> Result<BatchEntry> {
        self.checked_key(&entry.key)?;
        validate_json(&entry.json, self.handle.max_value_bytes)?;
        let lifetime = self.lifetime(entry.ttl_seconds, entry.grace_seconds)?;
        let tags = checked_tags(entry.tags.unwrap_or_default())?;
        Ok(BatchEntry { key: entry.key, json: entry.json, lifetime, tags })
    }

    /// Writes `json` (JSON text as `JSON.stringify` makes it) for `ttl_seconds` (default: the option `ttl`), kept
    /// stale for `grace_seconds` more (default: the option `grace`), carrying `tags`, to both tiers. With
    /// `fence_us` (a [`Self::write_fence`]), only if neither the key nor any of `tags` changed at or after it: a
    /// fenced write. `true` when written (always, unfenced). Fails at once with `ERR_CACHE_INVALID_KEY`,
    /// `ERR_CACHE_INVALID_VALUE`, `ERR_CACHE_VALUE_TOO_LARGE`, `ERR_CACHE_INVALID_TTL` (a fence that is not a
    /// non-negative integer included) or `ERR_CACHE_INVALID_TAG`.
    pub fn set(
        &self,
        key: String,
        json: String,
        ttl_seconds: Option<f64>,
        grace_seconds: Option<f64>,
        tags: Option<Vec<String>>,
        fence_us: Option<f64>,
    ) -> Result<impl Future<Output = Outcome<bool>> + Send + 'static> {
        self.checked_key(&key)?;
        validate_json(&json, self.handle.max_value_bytes)?;
        let lifetime = self.lifetime(ttl_seconds, grace_seconds)?;
        let tags = checked_tags(tags.unwrap_or_default())?;
        let fence = match fence_us {
            Some(us) if us >= 0.0 && us.fract() == 0.0 && us <= JS_EXACT_INTEGERS => Some(ServerTime(us as u64)),
            Some(_) => return Err(CacheError::new(ErrorKind::InvalidTtl, "`ifUnchangedSince` must be a write fence")),
            None => None,
        };
        let store = self.store.clone();
        Ok(async move {
            match fence {
                Some(since) => store.set_fenced(&key, json, lifetime, tags, since).await,
                None => {
                    let written = store.set(&key, json, lifetime, tags).await;
                    Outcome { value: true, error: written.error }
                }
            }
        })
    }

    /// The L2's time now (µs by its clock), read with `key`: the fence of a later [`Self::set_fenced`] of a value
    /// read after it. Fails at once with `ERR_CACHE_INVALID_KEY`; an L2 failure gives `None` and the error.
    pub fn write_fence(&self, key: String) -> Result<impl Future<Output = Outcome<Option<u64>>> + Send + 'static> {
        self.checked_key(&key)?;
        let store = self.store.clone();
        Ok(async move {
            let fence = store.write_fence(&key).await;
            Outcome { value: fence.value.map(|at| at.0), error: fence.error }
        })
    }

    /// Removes keys from both tiers; the count of live entries removed. Fails at once with `ERR_CACHE_INVALID_KEY`
    /// for any one bad key, before removing anything.
    pub fn delete(&self, keys: Vec<String>) -> Result<impl Future<Output = Outcome<u64>> + Send + 'static> {
        keys.iter().try_for_each(|key| self.checked_key(key))?;
        let store = self.store.clone();
        Ok(async move { store.delete(keys).await })
    }

    /// Whether a live entry exists in either tier, counting neither hit nor miss.
    pub fn has(&self, key: String) -> Result<impl Future<Output = Outcome<bool>> + Send + 'static> {
        self.checked_key(&key)?;
        let store = self.store.clone();
        Ok(async move { store.has(&key).await })
    }

    /// Removes every key of the namespace.
    pub fn clear(&self) -> impl Future<Output = Outcome<u64>> + Send + 'static {
        let store = self.store.clone();
        async move { store.clear().await }
    }

    /// The longest pattern accepted, in bytes: room for two keys and the `*`s around them.
    pub fn max_pattern_len(&self) -> usize {
        (self.handle.max_key_len * 2 + 2).max(MIN_PATTERN_LIMIT_BYTES)
    }

    /// Removes the namespace's keys matching a glob (`*`, `?`, `\`). Fails at once with `ERR_CACHE_INVALID_PATTERN`:
    /// empty, a lone trailing `\`, or longer than [`Self::max_pattern_len`].
    pub fn invalidate_pattern(&self, glob: String) -> Result<impl Future<Output = Outcome<u64>> + Send + 'static> {
        let pattern = Pattern::parse(&glob, self.max_pattern_len())?;
        let store = self.store.clone();
        Ok(async move { store.invalidate_pattern(&pattern, &glob).await })
    }

    /// Starts a `getOrSet`. With `wait_for_others` false (the caller already waited `lockTimeout` for a load of its
    /// own thread), a load in progress is not waited for again. With a stale value at hand, a wait for another
    /// caller's load lasts at most `soft_timeout_seconds` (default: the option `timeout`). Fails at once with
    /// `ERR_CACHE_INVALID_KEY` or `ERR_CACHE_INVALID_TTL`.
    pub fn begin_load(
        &self,
        key: String,
        wait_for_others: bool,
        soft_timeout_seconds: Option<f64>,
    ) -> Result<impl Future<Output = Outcome<LoadStart>> + Send + 'static> {
        self.checked_key(&key)?;
        let soft_timeout_ms = match soft_timeout_seconds {
            Some(seconds) => Some(per_call_ms(&SOFT_TIMEOUT, seconds)?),
            None => self.handle.soft_timeout_ms,
        };
        let soft_timeout = soft_timeout_ms.map(Duration::from_millis);
        let (store, leases, default_ttl_ms) = (self.store.clone(), self.leases.clone(), self.handle.default_ttl_ms);
        Ok(async move {
            let started = store.begin_load(&key, wait_for_others, default_ttl_ms, soft_timeout).await;
            let value = match started.value {
                LoadStep::Hit(json) => LoadStart::Hit(json),
                LoadStep::Failed(error) => LoadStart::Failed(error),
                LoadStep::Stale(json) => LoadStart::Stale(json),
                LoadStep::Lead(lease) => {
                    let stale = lease.stale().cloned();
                    // A lease that is not kept is dropped here, and its waiters take the load over.
                    leases.keep(lease).map_or(LoadStart::Closed, |lease| LoadStart::Lead { lease, stale })
                }
            };
            Outcome { value, error: started.error }
        })
    }

    /// Whether a `getOrSet` hit on `key` should start an early refresh: its L1 entry has less than
    /// `1 - early_refresh` of its TTL (`ttl_seconds`, default: the option `ttl`) left, and nobody claimed its
    /// refresh yet (this call claims it). `early_refresh` defaults to the option `earlyRefresh`; `false` without
    /// one. Fails at once with `ERR_CACHE_INVALID_TTL`.
    pub fn claim_refresh(&self, key: &str, ttl_seconds: Option<f64>, early_refresh: Option<f64>) -> Result<bool> {
        let Some(threshold) = self.refresh_threshold(ttl_seconds, early_refresh)? else {
            return Ok(false);
        };
        Ok(self.store.l1_peek(key).is_some_and(|entry| entry.claim_refresh(threshold)))
    }

    /// The freshness left below which a hit starts an early refresh: `(1 - earlyRefresh) × TTL`; `None` without an
    /// `earlyRefresh`.
    fn refresh_threshold(&self, ttl_seconds: Option<f64>, early_refresh: Option<f64>) -> Result<Option<Duration>> {
        let fraction = match early_refresh {
            Some(fraction) => per_call(&EARLY_REFRESH, fraction)?,
            None => match self.handle.early_refresh {
                Some(fraction) => fraction,
                None => return Ok(None),
            },
        };
        let ttl_ms = self.ttl_ms(ttl_seconds)?;
        Ok(Some(Duration::from_millis((ttl_ms as f64 * (1.0 - fraction)) as u64)))
    }

    /// Starts the early refresh that [`Self::claim_refresh`] claimed: a lease id when this caller is to run the
    /// loader, `None` when another caller or instance is already at it. Fails at once as `claim_refresh` does.
    pub fn begin_refresh(
        &self,
        key: String,
        ttl_seconds: Option<f64>,
        early_refresh: Option<f64>,
    ) -> Result<impl Future<Output = Outcome<Option<u32>>> + Send + 'static> {
        self.checked_key(&key)?;
        let threshold = self.refresh_threshold(ttl_seconds, early_refresh)?.unwrap_or(Duration::ZERO);
        let (store, leases, default_ttl_ms) = (self.store.clone(), self.leases.clone(), self.handle.default_ttl_ms);
        Ok(async move {
            let started = store.begin_refresh(&key, threshold, default_ttl_ms).await;
            Outcome { value: started.value.and_then(|lease| leases.keep(lease)), error: started.error }
        })
    }

    /// Stores a loader's value under its lease (unless the key changed while it ran) and hands it to the waiters;
    /// `true` when stored. A lease that `close` ended stores nothing. Fails at once with `ERR_CACHE_INVALID_VALUE`,
    /// `ERR_CACHE_VALUE_TOO_LARGE`, `ERR_CACHE_INVALID_TTL` or `ERR_CACHE_INVALID_TAG`; the waiters then get that
    /// error as the load's failure.
    pub fn complete_load(
        &self,
        lease: u32,
        json: String,
        ttl_seconds: Option<f64>,
        grace_seconds: Option<f64>,
        tags: Option<Vec<String>>,
    ) -> Result<impl Future<Output = Outcome<bool>> + Send + 'static> {
        let checked = validate_json(&json, self.handle.max_value_bytes)
            .and_then(|()| self.lifetime(ttl_seconds, grace_seconds))
            .and_then(|lifetime| Ok((lifetime, checked_tags(tags.unwrap_or_default())?)));
        let lease = self.leases.take(lease);
        match (checked, lease) {
            (Ok((lifetime, tags)), lease) => Ok(async move {
                match lease {
                    Some(lease) => lease.complete(json, lifetime, tags).await,
                    None => Outcome { value: false, error: None },
                }
            }),
            (Err(refused), lease) => {
                if let Some(lease) = lease {
                    let message = refused.message.clone();
                    crate::runtime::spawn(async move { lease.fail(message).await });
                }
                Err(refused)
            }
        }
    }

    /// Invalidates every entry of the namespace carrying one of `tags` written before now, in both tiers and on every
    /// instance: gone, or with `soft` stale (a miss for `get`, still served by `getOrSet` within its grace). Fails at
    /// once with `ERR_CACHE_INVALID_TAG`.
    pub fn invalidate_tags(
        &self,
        tags: Vec<String>,
        soft: bool,
    ) -> Result<impl Future<Output = Outcome<()>> + Send + 'static> {
        let tags = checked_tags(tags)?;
        let store = self.store.clone();
        Ok(async move {
            if tags.is_empty() {
                return Outcome { value: (), error: None };
            }
            store.invalidate_tags(tags, soft).await
        })
    }

    /// The time of the latest invalidation of any of `tags`, in ms since the Unix epoch by the L2's clock; 0 when none
    /// was. Fails at once with `ERR_CACHE_INVALID_TAG`.
    pub fn tag_expiration_ms(&self, tags: Vec<String>) -> Result<impl Future<Output = Outcome<u64>> + Send + 'static> {
        let tags = checked_tags(tags)?;
        let store = self.store.clone();
        Ok(async move { store.tag_expiration_ms(tags).await })
    }

    /// Fails a lease: its waiters get `ERR_CACHE_LOADER_FAILED` with `message`, or the lease's stale value when it
    /// has one (which its caller serves too); nothing is cached.
    pub fn fail_load(&self, lease: u32, message: String) -> impl Future<Output = ()> + Send + 'static {
        let lease = self.leases.take(lease);
        async move {
            if let Some(lease) = lease {
                lease.fail(message).await;
            }
        }
    }

    /// Counts a `getOrSet` that waits for a load of its own thread, which the binding's side runs without the core:
    /// every waiter is counted in `lockWaits` alike, wherever its loader runs.
    pub fn count_lock_wait(&self) {
        self.store.count_lock_wait();
    }

    /// Counts a `getOrSet` that the binding answered with a stale value (its loader failed or outlasted its soft
    /// timeout), in `staleHits`.
    pub fn count_stale_hit(&self) {
        self.store.count_stale_hit();
    }

    /// The counters, the hit rate and the L1 and bus gauges.
    pub fn stats(&self) -> StatsSnapshot {
        self.store.stats()
    }

    /// Ends the handle's leases (their waiters take over) and marks it closed; the store goes with its last handle.
    pub fn close(&self) {
        self.leases.closed.store(true, Ordering::Release);
        self.leases.map().clear();
    }
}

/// One entry of [`Cache::set_many`], as the binding passes it.
#[derive(Debug, Clone)]
pub struct SetManyEntry {
    /// The key.
    pub key: String,
    /// JSON text as `JSON.stringify` makes it.
    pub json: String,
    /// Its TTL in seconds; the option `ttl` when `None`.
    pub ttl_seconds: Option<f64>,
    /// Its grace in seconds; the option `grace` when `None`.
    pub grace_seconds: Option<f64>,
    /// Its tags.
    pub tags: Option<Vec<String>>,
}

/// `keys` without repeats, in the order each first appears, and for each of `keys` its index among them.
fn deduplicated(keys: Vec<String>) -> (Vec<String>, Vec<usize>) {
    let mut index_of: HashMap<String, usize> = HashMap::with_capacity(keys.len());
    let mut unique = Vec::with_capacity(keys.len());
    let positions = keys
        .into_iter()
        .map(|key| {
            let next = unique.len();
            *index_of.entry(key).or_insert_with_key(|key| {
                unique.push(key.clone());
                next
            })
        })
        .collect();
    (unique, positions)
}

/// `ERR_CACHE_CLOSED`, for a binding whose handle was closed.
pub fn closed_error() -> CacheError {
    CacheError::new(ErrorKind::Closed, "the cache is closed")
}
