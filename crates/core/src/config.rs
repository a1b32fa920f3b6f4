//! Options: parsed from the JSON object the binding hands over, checked one by one, each error naming its option.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{CacheError, Result};
use crate::key::{validate_namespace, DEFAULT_NAMESPACE};
use crate::l1::{DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES};
use crate::l2::postgres::PostgresConfig;
use crate::l2::redis::RedisConfig;
use crate::ttl::{seconds_option, ttl_seconds_from_f64, DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS};

/// Which L2 a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `redis://`, or `rediss://` for TLS.
    Redis,
}

/// L1 settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct L1Config {
    /// Bound on the entry count (option `l1.maxEntries`, 1 to 2^32; default [`DEFAULT_MAX_ENTRIES`]).
    pub max_entries: u64,
    /// Bound on the bytes of keys plus JSON text (option `l1.maxBytes`, 1024 to 2^53; default [`DEFAULT_MAX_BYTES`]).
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
    /// Bound on every L2 call, in ms (option `l2Timeout`, 0.01 to 60 s; default 1 s); past it the call fails with
    /// `ERR_CACHE_L2_TIMEOUT`, absorbed. Also bounds the wait for an invalidation's own bus echo.
    pub l2_timeout_ms: u64,
    /// Whether invalidations are published and heard (option `bus`, default `true`); always `false` without an L2.
    pub bus: bool,
    /// Cap on L1 lifetimes while the bus is not subscribed, in ms (option `busDownL1Ttl`, 1 to 3600 s; default 5 s):
    /// bounds how long a missed invalidation can leave stale data in the L1.
    pub bus_down_l1_ttl_ms: u64,
    /// Whether `getOrSet` takes the L2's load lock so that one process loads a key (option `distributedLock`, default
    /// `true`); always `false` without an L2.
    pub distributed_lock: bool,
    /// How long a `getOrSet` waits for another loader before loading itself, in ms (option `lockTimeout`, 0.05 to
    /// 300 s; default 5 s), up to twice that when the lock changes hands; also the hold of a Redis lock.
    pub lock_timeout_ms: u64,
    /// The fence window, in ms (option `maxLoadTime`, 1 to 3600 s; default [`DEFAULT_MAX_LOAD_TIME_SECONDS`]): a
    /// `getOrSet` load that takes longer returns its value but does not store it, since the L2 no longer remembers
    /// whether the key changed while it ran; deleted keys leave a tombstone, and expired entries stay, this long.
    pub max_load_time_ms: u64,
    /// The default TTL of entries whose L2 copy has no expiry, in ms: the option `ttl`, as in
    /// [`HandleConfig::default_ttl_ms`].
    pub default_ttl_ms: u64,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleConfig {
    /// TTL of a write that gives none, in ms (option `ttl`, 1 s to 30 days; default [`DEFAULT_TTL_SECONDS`]).
    pub default_ttl_ms: u64,
    /// Longest key, in UTF-8 bytes (option `maxKeyLength`, 1 to 65 536; default [`DEFAULT_MAX_KEY_LENGTH`]); a longer
    /// key fails with `ERR_CACHE_INVALID_KEY`.
    pub max_key_len: usize,
    /// Longest JSON text of a value, in bytes (option `maxValueBytes`, 1 to 2^31; default [`DEFAULT_MAX_VALUE_BYTES`]);
    /// a longer one fails with `ERR_CACHE_VALUE_TOO_LARGE`.
    pub max_value_bytes: usize,
}

/// Everything the options say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The part that selects the shared store (see [`crate::registry::shared_store`]).
    pub store: StoreConfig,
    /// The part that stays with this handle.
    pub handle: HandleConfig,
}

/// Default of the option `l2Timeout`, in seconds.
pub const DEFAULT_L2_TIMEOUT_SECONDS: f64 = 1.0;
/// Default of the option `lockTimeout`, in seconds.
pub const DEFAULT_LOCK_TIMEOUT_SECONDS: f64 = 5.0;
/// Default of the option `busDownL1Ttl`, in seconds.
pub const DEFAULT_BUS_DOWN_L1_TTL_SECONDS: u64 = 5;
/// Default of the option `maxLoadTime`, in seconds.
pub const DEFAULT_MAX_LOAD_TIME_SECONDS: u64 = 10;
/// Default of the option `maxKeyLength`, in UTF-8 bytes.
pub const DEFAULT_MAX_KEY_LENGTH: usize = 255;
/// Default of the option `maxValueBytes`, in bytes of JSON text (10 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 10 * 1024 * 1024;

const TOP_LEVEL: &[&str] = &[
    "url",
    "namespace",
    "ttl",
    "l1",
    "postgres",
    "redis",
    "l2Timeout",
    "maxKeyLength",
    "maxValueBytes",
    "bus",
    "busDownL1Ttl",
    "distributedLock",
    "lockTimeout",
    "maxLoadTime",
];

/// One level of the options object, read field by field with the option's full name in every error.
struct Fields<'a> {
    prefix: &'a str,
    map: Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(prefix: &'a str, value: &Value, known: &[&str]) -> Result<Self> {
        let name = if prefix.is_empty() { "options" } else { prefix.trim_end_matches('.') };
        let map = match value {
            Value::Null => Map::new(),
            Value::Object(map) => map.clone(),
            _ => return Err(CacheError::invalid_option(name, "an object")),
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(CacheError::invalid_option(
                &format!("{prefix}{unknown}"),
                &format!("one of the known options ({}); it is not one", known.join(", ")),
            ));
        }
        Ok(Fields { prefix, map })
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn string(&self, field: &str) -> Result<Option<String>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(CacheError::invalid_option(&self.name(field), "a string")),
        }
    }

    fn bool(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(CacheError::invalid_option(&self.name(field), "a boolean")),
        }
    }

    fn number(&self, field: &str, expected: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(CacheError::invalid_option(&self.name(field), expected)),
        }
    }

    fn integer(&self, field: &str, min: u64, max: u64) -> Result<Option<u64>> {
        let expected = format!("an integer from {min} to {max}");
        match self.number(field, &expected)? {
            None => Ok(None),
            Some(n) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => Ok(Some(n as u64)),
            Some(_) => Err(CacheError::invalid_option(&self.name(field), &expected)),
        }
    }

    fn ttl_seconds(&self, field: &str) -> Result<Option<u64>> {
        let expected = format!("an integer number of seconds from 1 to {MAX_TTL_SECONDS}");
        match self.number(field, &expected)? {
            None => Ok(None),
            Some(n) => ttl_seconds_from_f64(n)
                .map(Some)
                .ok_or_else(|| CacheError::invalid_option(&self.name(field), &expected)),
        }
    }

    fn seconds(&self, field: &str, min: f64, max: f64) -> Result<Option<Duration>> {
        let expected = format!("a number of seconds from {min} to {max}");
        match self.number(field, &expected)? {
            None => Ok(None),
            Some(n) => seconds_option(&self.name(field), n, min, max).map(Some),
        }
    }

    fn identifier(&self, field: &str) -> Result<Option<String>> {
        match self.string(field)? {
            Some(s) if s.is_empty() || s.len() > 63 || s.contains('\0') => {
                Err(CacheError::invalid_option(&self.name(field), "a Postgres identifier of 1 to 63 bytes"))
            }
            other => Ok(other),
        }
    }
}

/// Parses the options object. `env_url` is the value of `CACHE_URL`, used when `url` is absent; no URL at all means
/// memory only. Fails with `ERR_CACHE_INVALID_OPTION` naming the first bad or unknown option (never quoting a URL).
pub fn parse(options: &Value, env_url: Option<String>) -> Result<Config> {
    let top = Fields::new("", options, TOP_LEVEL)?;
    let url_option = top.string("url")?;
    let from_env = url_option.is_none();
    let l2 = match url_option.or(env_url).filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => Some(parse_url(&url, if from_env { "CACHE_URL" } else { "url" })?),
    };
    let namespace = top.string("namespace")?.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    validate_namespace(&namespace)?;
    let default_ttl_ms = top.ttl_seconds("ttl")?.unwrap_or(DEFAULT_TTL_SECONDS) * 1000;
    let l1 = parse_l1(top.get("l1"))?;
    let postgres = parse_postgres(top.get("postgres").unwrap_or(&Value::Null))?;
    let redis = parse_redis(top.get("redis").unwrap_or(&Value::Null))?;
    let has_l2 = l2.is_some();
    let store = StoreConfig {
        l2,
        namespace,
        l1,
        postgres,
        redis,
        l2_timeout_ms: millis(top.seconds("l2Timeout", 0.01, 60.0)?, DEFAULT_L2_TIMEOUT_SECONDS),
        bus: top.bool("bus")?.unwrap_or(true) && has_l2,
        bus_down_l1_ttl_ms: top.integer("busDownL1Ttl", 1, 3600)?.unwrap_or(DEFAULT_BUS_DOWN_L1_TTL_SECONDS) * 1000,
        distributed_lock: top.bool("distributedLock")?.unwrap_or(true) && has_l2,
        lock_timeout_ms: millis(top.seconds("lockTimeout", 0.05, 300.0)?, DEFAULT_LOCK_TIMEOUT_SECONDS),
        max_load_time_ms: top.integer("maxLoadTime", 1, 3600)?.unwrap_or(DEFAULT_MAX_LOAD_TIME_SECONDS) * 1000,
        default_ttl_ms,
    };
    let handle = HandleConfig {
        default_ttl_ms,
        max_key_len: top.integer("maxKeyLength", 1, 65_536)?.unwrap_or(DEFAULT_MAX_KEY_LENGTH as u64) as usize,
        max_value_bytes: top.integer("maxValueBytes", 1, 1 << 31)?.unwrap_or(DEFAULT_MAX_VALUE_BYTES as u64) as usize,
    };
    Ok(Config { store, handle })
}

fn millis(value: Option<Duration>, default_seconds: f64) -> u64 {
    value.unwrap_or_else(|| Duration::from_secs_f64(default_seconds)).as_millis() as u64
}

fn parse_url(raw: &str, name: &str) -> Result<(Backend, url::Url)> {
    let expected = "a postgres://, postgresql://, redis:// or rediss:// URL";
    // The URL itself may hold a password: never quote it back.
    let url = url::Url::parse(raw).map_err(|_| CacheError::invalid_option(name, expected))?;
    let backend = match url.scheme() {
        "postgres" | "postgresql" => Backend::Postgres,
        "redis" | "rediss" => Backend::Redis,
        _ => return Err(CacheError::invalid_option(name, expected)),
    };
    Ok((backend, url))
}

fn parse_l1(value: Option<&Value>) -> Result<Option<L1Config>> {
    let value = match value {
        Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Bool(true)) | None => &Value::Null,
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(CacheError::invalid_option("l1", "an object or false")),
    };
    let l1 = Fields::new("l1.", value, &["maxEntries", "maxBytes", "ttl"])?;
    Ok(Some(L1Config {
        max_entries: l1.integer("maxEntries", 1, u32::MAX as u64 + 1)?.unwrap_or(DEFAULT_MAX_ENTRIES),
        max_bytes: l1.integer("maxBytes", 1024, 1 << 53)?.unwrap_or(DEFAULT_MAX_BYTES),
        ttl_cap_ms: l1.ttl_seconds("ttl")?.map(|s| s * 1000),
    }))
}

fn parse_postgres(value: &Value) -> Result<PostgresConfig> {
    let pg = Fields::new("postgres.", value, &["table", "schema", "unlogged", "poolSize", "cleanupInterval"])?;
    let defaults = PostgresConfig::default();
    Ok(PostgresConfig {
        table: pg.identifier("table")?.unwrap_or(defaults.table),
        schema: pg.identifier("schema")?,
        unlogged: pg.bool("unlogged")?.unwrap_or(defaults.unlogged),
        pool_size: pg.integer("poolSize", 1, 1000)?.map_or(defaults.pool_size, |n| n as u32),
        cleanup_interval_ms: pg
            .integer("cleanupInterval", 1, 86_400)?
            .map_or(defaults.cleanup_interval_ms, |s| s * 1000),
    })
}

fn parse_redis(value: &Value) -> Result<RedisConfig> {
    let redis = Fields::new("redis.", value, &["scanCount"])?;
    Ok(RedisConfig {
        scan_count: redis.integer("scanCount", 10, 100_000)?.map_or(RedisConfig::default().scan_count, |n| n as u32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn message_of(options: Value) -> String {
        let err = parse(&options, None).expect_err(&options.to_string());
        assert_eq!(err.kind, ErrorKind::InvalidOption);
        err.message
    }

    #[test]
    fn defaults_are_memory_only() {
        let config = parse(&Value::Null, None).unwrap();
        assert_eq!(config.store.l2, None);
        assert_eq!(config.store.namespace, "default");
        assert_eq!(config.handle.default_ttl_ms, 300_000);
        assert_eq!(config.store.l1.as_ref().unwrap().max_entries, 10_000);
        assert!(!config.store.bus && !config.store.distributed_lock);
        assert_eq!(config.store.l2_timeout_ms, 1000);
        assert_eq!(config.handle.max_key_len, 255);
        assert_eq!(config.handle.max_value_bytes, 10 << 20);
    }

    #[test]
    fn the_url_selects_the_backend_and_falls_back_to_the_environment() {
        let pg = parse(&json!({ "url": "postgresql://u@h/db" }), None).unwrap();
        assert_eq!(pg.store.l2.unwrap().0, Backend::Postgres);
        let redis = parse(&json!({}), Some("rediss://:pw@h:6380".into())).unwrap();
        assert_eq!(redis.store.l2.as_ref().unwrap().0, Backend::Redis);
        assert!(redis.store.bus && redis.store.distributed_lock);
    }

    #[test]
    fn bad_urls_name_the_option_but_never_the_password() {
        let message = message_of(json!({ "url": "mysql://root:hunter2@h/db" }));
        assert!(message.contains("`url`") && !message.contains("hunter2"), "{message}");
        let err = parse(&json!({}), Some("http://x:hunter2@h".into())).unwrap_err();
        assert!(err.message.contains("CACHE_URL") && !err.message.contains("hunter2"));
    }

    #[test]
    fn every_invalid_option_is_named() {
        for (options, name) in [
            (json!({ "ttl": 0 }), "`ttl`"),
            (json!({ "ttl": 1.5 }), "`ttl`"),
            (json!({ "ttl": 2_592_001 }), "`ttl`"),
            (json!({ "ttl": "300" }), "`ttl`"),
            (json!({ "namespace": "a:b" }), "`namespace`"),
            (json!({ "l1": { "maxEntries": 0 } }), "`l1.maxEntries`"),
            (json!({ "l1": { "ttl": -1 } }), "`l1.ttl`"),
            (json!({ "l1": 3 }), "`l1`"),
            (json!({ "postgres": { "table": "" } }), "`postgres.table`"),
            (json!({ "postgres": { "poolSize": 0 } }), "`postgres.poolSize`"),
            (json!({ "redis": { "scanCount": 1 } }), "`redis.scanCount`"),
            (json!({ "l2Timeout": 0 }), "`l2Timeout`"),
            (json!({ "lockTimeout": "5" }), "`lockTimeout`"),
            (json!({ "maxKeyLength": 0 }), "`maxKeyLength`"),
            (json!({ "maxValueBytes": -1 }), "`maxValueBytes`"),
            (json!({ "bus": 1 }), "`bus`"),
            (json!({ "tll": 300 }), "`tll`"),
            (json!({ "l1": { "maxEntry": 1 } }), "`l1.maxEntry`"),
            (json!(5), "`options`"),
        ] {
            let message = message_of(options.clone());
            assert!(message.contains(name), "{options}: {message}");
        }
    }

    #[test]
    fn l1_can_be_turned_off_and_capped() {
        assert_eq!(parse(&json!({ "l1": false }), None).unwrap().store.l1, None);
        let capped = parse(&json!({ "l1": { "ttl": 10, "maxBytes": 2048 } }), None).unwrap();
        assert_eq!(capped.store.l1, Some(L1Config { max_entries: 10_000, max_bytes: 2048, ttl_cap_ms: Some(10_000) }));
    }
}
