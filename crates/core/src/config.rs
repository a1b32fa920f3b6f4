//! What the options say, in the units the core works in (milliseconds, bytes), split into what makes a shared store
//! and what stays with one handle. [`crate::options`] builds it; [`crate::rules`] holds every range and default.

use std::time::Duration;

use crate::l2::postgres::PostgresConfig;
use crate::l2::redis::RedisConfig;
pub use crate::store::BreakerConfig;

/// Which L2 a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `redis://`, or `rediss://` for TLS.
    Redis,
    /// `memory://<server>`: the store tests' in-memory L2.
    #[cfg(test)]
    Memory,
}

/// L1 settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct L1Config {
    /// Bound on the entry count (option `l1.maxEntries`, [`crate::rules::L1_MAX_ENTRIES`]); `None`: only `max_bytes`.
    pub max_entries: Option<u64>,
    /// Bound on the bytes of keys plus JSON text (option `l1.maxBytes`, [`crate::rules::L1_MAX_BYTES`]).
    pub max_bytes: u64,
    /// Cap on an entry's L1 lifetime, in ms (option `l1.ttl`, given in seconds); `None`: the entry's whole TTL.
    pub ttl_cap_ms: Option<u64>,
}

/// What a shared store is made of: two caches with equal `StoreConfig`s in one process share one store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreConfig {
    /// The L2 URL and the backend it selects; `None` for memory only.
    pub l2: Option<(Backend, url::Url)>,
    /// Prefix of every L2 key and scope of every bus message (option `namespace`; default `"default"`).
    pub namespace: String,
    /// `None` when the option `l1` is `false`: every read then goes to the L2.
    pub l1: Option<L1Config>,
    /// Read only with a Postgres URL, but part of the store's identity whatever the backend.
    pub postgres: PostgresConfig,
    /// Read only with a Redis URL, but part of the store's identity whatever the backend.
    pub redis: RedisConfig,
    /// Bound on every L2 call, in ms (option `l2Timeout`, [`crate::rules::L2_TIMEOUT`]); past it the call fails with
    /// `ERR_CACHE_L2_TIMEOUT`, absorbed. Also bounds the wait for an invalidation's own bus echo.
    pub l2_timeout_ms: u64,
    /// Whether invalidations are published and heard (option `bus`, default `true`); always `false` without an L2.
    pub bus: bool,
    /// Cap on L1 lifetimes while the bus is not subscribed, in ms (option `busDownL1Ttl`,
    /// [`crate::rules::BUS_DOWN_L1_TTL`]):
    /// bounds how long a missed invalidation can leave stale data in the L1.
    pub bus_down_l1_ttl_ms: u64,
    /// Whether `getOrSet` takes the L2's load lock so that one process loads a key (option `distributedLock`, default
    /// `true`); always `false` without an L2.
    pub distributed_lock: bool,
    /// How long a `getOrSet` waits for another loader before loading itself, in ms (option `lockTimeout`,
    /// [`crate::rules::LOCK_TIMEOUT`]), up to twice that when the lock changes hands; also the hold of a Redis lock.
    pub lock_timeout_ms: u64,
    /// The fence window, in ms (option `maxLoadTime`, [`crate::rules::MAX_LOAD_TIME`]): a
    /// `getOrSet` load that takes longer returns its value but does not store it, since the L2 no longer remembers
    /// whether the key changed while it ran; deleted keys leave a tombstone, and expired entries stay, this long.
    pub max_load_time_ms: u64,
    /// The L2's circuit breaker (option `l2Breaker`, on by default); `None` when turned off or without an L2.
    pub breaker: Option<BreakerConfig>,
}

impl StoreConfig {
    /// [`Self::l2_timeout_ms`] as a `Duration`.
    pub fn l2_timeout(&self) -> Duration {
        Duration::from_millis(self.l2_timeout_ms)
    }

    /// [`Self::max_load_time_ms`] as a `Duration`.
    pub fn fence_window(&self) -> Duration {
        Duration::from_millis(self.max_load_time_ms)
    }

    /// [`Self::lock_timeout_ms`] as a `Duration`.
    pub fn lock_timeout(&self) -> Duration {
        Duration::from_millis(self.lock_timeout_ms)
    }
}

/// Settings of one `Cache` handle, on top of its store's. Kept apart so that caches differing only in these still
/// share one store.
#[derive(Debug, Clone, PartialEq)]
pub struct HandleConfig {
    /// TTL of a write that gives none, and L1 lifetime of an L2 entry that has no expiry, in ms (option `ttl`,
    /// [`crate::rules::TTL`]).
    pub default_ttl_ms: u64,
    /// Longest key, in UTF-8 bytes (option `maxKeyLength`, [`crate::rules::MAX_KEY_LENGTH`]); a longer key fails
    /// with `ERR_CACHE_INVALID_KEY`.
    pub max_key_len: usize,
    /// Longest JSON text of a value, in bytes (option `maxValueBytes`, [`crate::rules::MAX_VALUE_BYTES`]); a longer
    /// one fails with `ERR_CACHE_VALUE_TOO_LARGE`.
    pub max_value_bytes: usize,
    /// The default `hardTimeout` of `getOrSet`, in ms (option `hardTimeout`, [`crate::rules::HARD_TIMEOUT`]); `None`:
    /// a caller waits for its loader as long as it takes. `index.js` runs the timer.
    pub hard_timeout_ms: Option<u64>,
    /// How long a write keeps its value stale past its TTL, in ms (option `grace`, [`crate::rules::GRACE`]); 0 keeps
    /// nothing past the TTL.
    pub grace_ms: u64,
    /// The default soft `timeout` of `getOrSet`, in ms (option `timeout`, [`crate::rules::SOFT_TIMEOUT`]): with a
    /// stale value at hand, the longest a caller waits for a load. `None`: as long as the load takes.
    pub soft_timeout_ms: Option<u64>,
    /// The default `earlyRefresh` of `getOrSet`, a fraction of the TTL (option `earlyRefresh`,
    /// [`crate::rules::EARLY_REFRESH`]); `None`: entries are reloaded only once expired.
    pub early_refresh: Option<f64>,
    /// The spread of stored TTLs, as a fraction of the TTL (option `jitter`, [`crate::rules::JITTER`]).
    pub jitter: f64,
}

/// Everything the options say.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The part that selects the shared store (see [`crate::registry::shared_store`]).
    pub store: StoreConfig,
    /// The part that stays with this handle.
    pub handle: HandleConfig,
}
