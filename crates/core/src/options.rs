//! The options object as typed structs (serde, unknown fields refused), then one `validate` that turns it into a
//! [`Config`] against the ranges of [`crate::rules`]. Every error names its option and never quotes its value, which
//! may be a URL with a password.

use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Backend, BreakerConfig, Config, HandleConfig, L1Config, StoreConfig};
use crate::error::{CacheError, ErrorKind, Result};
use crate::key::{validate_namespace, DEFAULT_NAMESPACE};
use crate::l2::postgres::PostgresConfig;
use crate::l2::redis::RedisConfig;
use crate::rules::{self, NumberRule};

/// The top level of the options object.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    url: Option<String>,
    namespace: Option<String>,
    ttl: Option<f64>,
    l1: Option<Toggle<L1Options>>,
    postgres: Option<PostgresOptions>,
    redis: Option<RedisOptions>,
    l2_timeout: Option<f64>,
    max_key_length: Option<f64>,
    max_value_bytes: Option<f64>,
    bus: Option<bool>,
    bus_down_l1_ttl: Option<f64>,
    distributed_lock: Option<bool>,
    lock_timeout: Option<f64>,
    max_load_time: Option<f64>,
    l2_breaker: Option<Toggle<BreakerOptions>>,
    hard_timeout: Option<f64>,
    grace: Option<f64>,
    timeout: Option<f64>,
    early_refresh: Option<f64>,
    jitter: Option<f64>,
}

/// An option group that can also be `false` (off) or `true` (on, with its defaults).
#[derive(Debug)]
enum Toggle<T> {
    Off,
    On(T),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BreakerOptions {
    failures: Option<f64>,
    retry_after: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct L1Options {
    max_entries: Option<f64>,
    max_bytes: Option<f64>,
    ttl: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PostgresOptions {
    table: Option<String>,
    schema: Option<String>,
    unlogged: Option<bool>,
    pool_size: Option<f64>,
    cleanup_interval: Option<f64>,
    prepared_statements: Option<bool>,
    session_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RedisOptions {
    scan_count: Option<f64>,
    cluster: Option<bool>,
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ToggleVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for ToggleVisitor<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object or false")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> std::result::Result<Toggle<T>, E> {
                Ok(if on { Toggle::On(T::default()) } else { Toggle::Off })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Toggle<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Toggle::On)
            }
        }
        deserializer.deserialize_any(ToggleVisitor(std::marker::PhantomData))
    }
}

/// What the option at `path` must be, for a value of the wrong type.
fn expected_at(path: &str) -> String {
    if let Some(rule) = rules::NUMBER_RULES.iter().find(|r| r.name == path) {
        return rule.expected();
    }
    match path {
        "" => "an object",
        "l1" | "l2Breaker" => "an object or false",
        "postgres" | "redis" => "an object",
        "bus" | "distributedLock" | "postgres.unlogged" | "postgres.preparedStatements" | "redis.cluster" => {
            "a boolean"
        }
        "postgres.sessionUrl" => POSTGRES_URL_EXPECTED,
        "postgres.table" | "postgres.schema" => "a Postgres identifier of 1 to 63 bytes",
        _ => "a string",
    }
    .to_owned()
}

/// The parse error as an `ERR_CACHE_INVALID_OPTION` naming the option; serde's message is used only for an
/// unknown field, whose name (never a value) it quotes.
fn option_error(error: serde_path_to_error::Error<serde_json::Error>) -> CacheError {
    let path = error.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let message = error.inner().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, known) = rest.split_once('`').unwrap_or((rest, ""));
        let name = match path.rsplit_once('.').map_or(path.as_str(), |(_, last)| last) {
            last if last == field => path.clone(),
            _ if path.is_empty() => field.to_owned(),
            _ => format!("{path}.{field}"),
        };
        let known = known.split(" at line").next().unwrap_or_default().trim_start_matches(", ");
        return CacheError::new(ErrorKind::InvalidOption, format!("option `{name}` is not a known option ({known})"));
    }
    let name = if path.is_empty() { "options".to_owned() } else { path.clone() };
    CacheError::invalid_option(&name, &expected_at(&path))
}

/// Parses the options object. `env_url` is the value of `CACHE_URL`, used when `url` is absent; no URL at all means
/// memory only. Fails with `ERR_CACHE_INVALID_OPTION` naming the first bad or unknown option (never quoting a URL).
pub fn parse(options: &Value, env_url: Option<String>) -> Result<Config> {
    let options: Options = match options {
        Value::Null => Options::default(),
        value => serde_path_to_error::deserialize(value).map_err(option_error)?,
    };
    validate(options, env_url)
}

fn validate(o: Options, env_url: Option<String>) -> Result<Config> {
    let from_env = o.url.is_none();
    let url_option = if from_env { "CACHE_URL" } else { "url" };
    let redis = o.redis.unwrap_or_default();
    let mut cluster_seeds = Vec::new();
    let l2 = match o.url.or(env_url).filter(|u| !u.is_empty()) {
        None => None,
        Some(url) if redis.cluster == Some(true) => {
            cluster_seeds = parse_cluster_seeds(&url, url_option)?;
            Some((Backend::Redis, cluster_seeds[0].clone()))
        }
        Some(url) => Some(parse_url(&url, url_option)?),
    };
    let has_l2 = l2.is_some();
    let namespace = o.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    validate_namespace(&namespace)?;
    let store = StoreConfig {
        l2,
        namespace,
        l1: match o.l1.unwrap_or(Toggle::On(L1Options::default())) {
            Toggle::Off => None,
            Toggle::On(l1) => Some(l1_config(l1)?),
        },
        postgres: postgres_config(o.postgres.unwrap_or_default())?,
        redis: RedisConfig { scan_count: rules::REDIS_SCAN_COUNT.or_default(redis.scan_count)? as u32, cluster_seeds },
        l2_timeout_ms: millis(&rules::L2_TIMEOUT, o.l2_timeout)?,
        bus: o.bus.unwrap_or(true) && has_l2,
        bus_down_l1_ttl_ms: millis(&rules::BUS_DOWN_L1_TTL, o.bus_down_l1_ttl)?,
        distributed_lock: o.distributed_lock.unwrap_or(true) && has_l2,
        lock_timeout_ms: millis(&rules::LOCK_TIMEOUT, o.lock_timeout)?,
        max_load_time_ms: millis(&rules::MAX_LOAD_TIME, o.max_load_time)?,
        breaker: match o.l2_breaker.unwrap_or(Toggle::On(BreakerOptions::default())) {
            Toggle::Off => None,
            Toggle::On(b) => Some(BreakerConfig {
                failures: rules::L2_BREAKER_FAILURES.or_default(b.failures)? as u32,
                retry_after_ms: millis(&rules::L2_BREAKER_RETRY_AFTER, b.retry_after)?,
            })
            .filter(|_| has_l2),
        },
    };
    let handle = HandleConfig {
        default_ttl_ms: millis(&rules::TTL, o.ttl)?,
        max_key_len: rules::MAX_KEY_LENGTH.or_default(o.max_key_length)? as usize,
        max_value_bytes: rules::MAX_VALUE_BYTES.or_default(o.max_value_bytes)? as usize,
        hard_timeout_ms: optional_millis(&rules::HARD_TIMEOUT, o.hard_timeout)?,
        grace_ms: millis(&rules::GRACE, o.grace)?,
        soft_timeout_ms: optional_millis(&rules::SOFT_TIMEOUT, o.timeout)?,
        early_refresh: rules::EARLY_REFRESH.check(o.early_refresh)?,
        jitter: rules::JITTER.or_default(o.jitter)?,
    };
    Ok(Config { store, handle })
}

/// A duration option in seconds without a default, checked by its rule, in milliseconds.
fn optional_millis(rule: &NumberRule, seconds: Option<f64>) -> Result<Option<u64>> {
    Ok(rule.check(seconds)?.map(|s| (s * 1000.0).round() as u64))
}

/// A duration option in seconds, checked and defaulted by its rule, in milliseconds.
fn millis(rule: &NumberRule, seconds: Option<f64>) -> Result<u64> {
    Ok(Duration::from_secs_f64(rule.or_default(seconds)?).as_millis() as u64)
}

fn l1_config(l1: L1Options) -> Result<L1Config> {
    Ok(L1Config {
        max_entries: rules::L1_MAX_ENTRIES.check(l1.max_entries)?.map(|n| n as u64),
        max_bytes: rules::L1_MAX_BYTES.or_default(l1.max_bytes)? as u64,
        ttl_cap_ms: rules::L1_TTL.check(l1.ttl)?.map(|s| s as u64 * 1000),
    })
}

fn postgres_config(pg: PostgresOptions) -> Result<PostgresConfig> {
    let identifier = |name: &str, value: Option<String>| match value {
        Some(s) if s.is_empty() || s.len() > 63 || s.contains('\0') => {
            Err(CacheError::invalid_option(name, &expected_at(name)))
        }
        other => Ok(other),
    };
    let defaults = PostgresConfig::default();
    Ok(PostgresConfig {
        table: identifier("postgres.table", pg.table)?.unwrap_or(defaults.table),
        schema: identifier("postgres.schema", pg.schema)?,
        unlogged: pg.unlogged.unwrap_or(defaults.unlogged),
        pool_size: rules::POSTGRES_POOL_SIZE.or_default(pg.pool_size)? as u32,
        cleanup_interval_ms: millis(&rules::POSTGRES_CLEANUP_INTERVAL, pg.cleanup_interval)?,
        prepared_statements: pg.prepared_statements.unwrap_or(defaults.prepared_statements),
        session_url: match pg.session_url {
            None => None,
            Some(raw) => match parse_url(&raw, "postgres.sessionUrl") {
                Ok((Backend::Postgres, url)) => Some(url),
                _ => return Err(CacheError::invalid_option("postgres.sessionUrl", POSTGRES_URL_EXPECTED)),
            },
        },
    })
}

/// What `postgres.sessionUrl` must be.
const POSTGRES_URL_EXPECTED: &str = "a postgres:// or postgresql:// URL";

/// What `url` must be with `redis: { cluster: true }`.
pub const CLUSTER_URL_EXPECTED: &str =
    "comma-separated redis:// (or all rediss://) URLs of the cluster's seed nodes, e.g. redis://a:7000,redis://b:7001";

/// The seed nodes of a Redis Cluster: full `redis://` or `rediss://` URLs separated by commas, all of one scheme.
fn parse_cluster_seeds(raw: &str, name: &str) -> Result<Vec<url::Url>> {
    let invalid = || CacheError::invalid_option(name, CLUSTER_URL_EXPECTED);
    let seeds =
        raw.split(',').map(|seed| url::Url::parse(seed.trim()).map_err(|_| invalid())).collect::<Result<Vec<_>>>()?;
    let scheme = seeds[0].scheme();
    let well_formed = matches!(scheme, "redis" | "rediss")
        && seeds.iter().all(|seed| seed.scheme() == scheme && seed.host_str().is_some_and(|h| !h.is_empty()));
    if well_formed {
        Ok(seeds)
    } else {
        Err(invalid())
    }
}

fn parse_url(raw: &str, name: &str) -> Result<(Backend, url::Url)> {
    let expected = "a postgres://, postgresql://, redis:// or rediss:// URL";
    // The URL itself may hold a password: never quote it back.
    let url = url::Url::parse(raw).map_err(|_| CacheError::invalid_option(name, expected))?;
    let backend = match url.scheme() {
        "postgres" | "postgresql" => Backend::Postgres,
        "redis" | "rediss" => Backend::Redis,
        #[cfg(test)]
        "memory" => Backend::Memory,
        _ => return Err(CacheError::invalid_option(name, expected)),
    };
    Ok((backend, url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message_of(options: Value) -> String {
        let err = parse(&options, None).expect_err(&options.to_string());
        assert_eq!(err.kind, ErrorKind::InvalidOption);
        err.message
    }

    #[test]
    fn a_cluster_takes_its_seed_nodes_from_url() {
        let options = json!({ "url": "redis://:pw@a:7000, redis://:pw@b:7001", "redis": { "cluster": true } });
        let config = parse(&options, None).unwrap();
        let seeds: Vec<_> = config.store.redis.cluster_seeds.iter().map(|u| u.port().unwrap()).collect();
        assert_eq!(seeds, [7000, 7001]);
        assert_eq!(config.store.l2.unwrap(), (Backend::Redis, url::Url::parse("redis://:pw@a:7000").unwrap()));
        let message = message_of(json!({ "url": "redis://:hunter2@a:1,b:2", "redis": { "cluster": true } }));
        assert!(message.contains("comma-separated") && !message.contains("hunter2"), "{message}");
    }

    #[test]
    fn defaults_are_memory_only() {
        let config = parse(&Value::Null, None).unwrap();
        assert_eq!(config.store.l2, None);
        assert_eq!(config.store.namespace, "default");
        assert_eq!(config.handle.default_ttl_ms, 300_000);
        assert_eq!(config.store.l1.as_ref().unwrap().max_entries, None);
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
        for misplaced in [json!({ "redis": "redis://:hunter2@h" }), json!({ "namespace": ["redis://:hunter2@h"] })] {
            let message = message_of(misplaced);
            assert!(!message.contains("hunter2"), "{message}");
        }
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
            (json!({ "redis": { "cluster": 1 } }), "`redis.cluster`"),
            (json!({ "postgres": { "preparedStatements": "no" } }), "`postgres.preparedStatements`"),
            (json!({ "postgres": { "sessionUrl": "redis://h" } }), "`postgres.sessionUrl`"),
            (json!({ "postgres": { "sessionUrl": 5 } }), "`postgres.sessionUrl`"),
            (json!({ "url": "redis://a:7000,b:7001", "redis": { "cluster": true } }), "`url`"),
            (json!({ "url": "redis://a:7000,rediss://b:7001", "redis": { "cluster": true } }), "`url`"),
            (json!({ "url": "postgres://a/db", "redis": { "cluster": true } }), "`url`"),
            (json!({ "url": "redis://a:7000,redis://b:7001" }), "`url`"),
            (json!({ "l2Timeout": 0 }), "`l2Timeout`"),
            (json!({ "lockTimeout": "5" }), "`lockTimeout`"),
            (json!({ "maxKeyLength": 0 }), "`maxKeyLength`"),
            (json!({ "maxValueBytes": -1 }), "`maxValueBytes`"),
            (json!({ "bus": 1 }), "`bus`"),
            (json!({ "tll": 300 }), "`tll`"),
            (json!({ "l1": { "maxEntry": 1 } }), "`l1.maxEntry`"),
            (json!({ "l2Breaker": { "failures": 0 } }), "`l2Breaker.failures`"),
            (json!({ "l2Breaker": { "retryAfter": 0 } }), "`l2Breaker.retryAfter`"),
            (json!({ "l2Breaker": 1 }), "`l2Breaker`"),
            (json!({ "jitter": 1.5 }), "`jitter`"),
            (json!({ "hardTimeout": 0 }), "`hardTimeout`"),
            (json!({ "postgres": { "tabel": "x" } }), "`postgres.tabel`"),
            (json!(5), "`options`"),
        ] {
            let message = message_of(options.clone());
            assert!(message.contains(name), "{options}: {message}");
        }
    }

    #[test]
    fn an_unknown_option_lists_the_known_ones() {
        let message = message_of(json!({ "tll": 300 }));
        assert!(message.contains("`ttl`") && message.contains("`maxLoadTime`"), "{message}");
    }

    #[test]
    fn the_breaker_is_on_with_an_l2_and_can_be_turned_off() {
        let url = "redis://h";
        let on = parse(&json!({ "url": url }), None).unwrap().store.breaker;
        assert_eq!(on, Some(BreakerConfig { failures: 1, retry_after_ms: 500 }));
        assert_eq!(parse(&json!({ "url": url, "l2Breaker": false }), None).unwrap().store.breaker, None);
        let tuned = parse(&json!({ "url": url, "l2Breaker": { "failures": 3, "retryAfter": 2 } }), None).unwrap();
        assert_eq!(tuned.store.breaker, Some(BreakerConfig { failures: 3, retry_after_ms: 2000 }));
        assert_eq!(parse(&Value::Null, None).unwrap().store.breaker, None, "memory only has no L2 to break");
    }

    #[test]
    fn l1_can_be_turned_off_and_capped() {
        assert_eq!(parse(&json!({ "l1": false }), None).unwrap().store.l1, None);
        let capped = parse(&json!({ "l1": { "ttl": 10, "maxBytes": 2048 } }), None).unwrap();
        assert_eq!(capped.store.l1, Some(L1Config { max_entries: None, max_bytes: 2048, ttl_cap_ms: Some(10_000) }));
    }

    #[test]
    fn handles_that_differ_only_in_their_own_settings_share_a_store() {
        let a = parse(&json!({ "ttl": 60, "maxKeyLength": 10 }), None).unwrap();
        let b = parse(&json!({ "ttl": 120 }), None).unwrap();
        assert_eq!(a.store, b.store);
        assert_ne!(a.handle, b.handle);
    }
}
