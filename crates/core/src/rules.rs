//! Every numeric option's range, unit and default, written once. The option parser checks against these, the error
//! messages quote them, and the binding hands them to `index.js` (which checks per-call TTLs with them) and to the
//! test that holds `index.d.ts`'s documentation to them.

use serde::Serialize;

use crate::error::{CacheError, ErrorKind};

/// One numeric option.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberRule {
    /// The option's full name, dotted below the top level (`l1.maxEntries`).
    pub name: &'static str,
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
    /// Whether only whole numbers are accepted.
    pub integer: bool,
    /// The value an absent option means; `None` when absence means something else (documented with the option).
    pub default: Option<f64>,
    /// What the number counts, as the documentation says it: `seconds`, `bytes`, `entries`, `connections`.
    pub unit: &'static str,
}

impl NumberRule {
    /// Whether `value` is in range (and whole, when it must be).
    pub fn accepts(&self, value: f64) -> bool {
        value.is_finite() && (self.min..=self.max).contains(&value) && (!self.integer || value.fract() == 0.0)
    }

    /// What an accepted value looks like, for error messages: "an integer number of seconds from 1 to 2592000".
    pub fn expected(&self) -> String {
        let kind = if self.integer { "an integer" } else { "a number" };
        let of = match self.unit {
            "seconds" => " number of seconds",
            _ => "",
        };
        format!("{kind}{of} from {} to {}", self.min, self.max)
    }

    /// `value` checked as this option: `ERR_CACHE_INVALID_OPTION` naming it when out of range.
    pub fn check(&self, value: Option<f64>) -> Result<Option<f64>, CacheError> {
        match value {
            Some(v) if !self.accepts(v) => Err(CacheError::invalid_option(self.name, &self.expected())),
            other => Ok(other),
        }
    }

    /// [`Self::check`], falling back to the default.
    pub fn or_default(&self, value: Option<f64>) -> Result<f64, CacheError> {
        Ok(self.check(value)?.or(self.default).expect("a rule used with or_default has a default"))
    }
}

const fn rule(
    name: &'static str,
    min: f64,
    max: f64,
    integer: bool,
    default: Option<f64>,
    unit: &'static str,
) -> NumberRule {
    NumberRule { name, min, max, integer, default, unit }
}

/// `ttl`: an entry's time to live; per-call TTLs follow the same rule.
pub const TTL: NumberRule = rule("ttl", 1.0, 2_592_000.0, true, Some(300.0), "seconds");
/// `l2Timeout`: the longest any call waits for the L2.
pub const L2_TIMEOUT: NumberRule = rule("l2Timeout", 0.01, 60.0, false, Some(1.0), "seconds");
/// `lockTimeout`: the longest a `getOrSet` waits for another caller's load.
pub const LOCK_TIMEOUT: NumberRule = rule("lockTimeout", 0.05, 300.0, false, Some(5.0), "seconds");
/// `busDownL1Ttl`: the cap on L1 lifetimes while the bus cannot vouch for the L1.
pub const BUS_DOWN_L1_TTL: NumberRule = rule("busDownL1Ttl", 1.0, 3600.0, true, Some(5.0), "seconds");
/// `maxLoadTime`: the fence window of `getOrSet` loads.
pub const MAX_LOAD_TIME: NumberRule = rule("maxLoadTime", 1.0, 3600.0, true, Some(10.0), "seconds");
/// `maxKeyLength`: the longest key, in UTF-8 bytes.
pub const MAX_KEY_LENGTH: NumberRule = rule("maxKeyLength", 1.0, 65_536.0, true, Some(255.0), "bytes");
/// `maxValueBytes`: the longest JSON text of a value (default 10 MiB).
pub const MAX_VALUE_BYTES: NumberRule = rule("maxValueBytes", 1.0, 2_147_483_648.0, true, Some(10_485_760.0), "bytes");
/// `l1.maxEntries`: the L1's bound on entries; none by default, so that `l1.maxBytes` binds whatever the entries'
/// sizes (an entry bound of 10,000 thrashed a 45,000-entry working set of 10 MB while most of 64 MiB stayed unused).
pub const L1_MAX_ENTRIES: NumberRule = rule("l1.maxEntries", 1.0, 4_294_967_296.0, true, None, "entries");
/// What an L1 entry costs beyond its key and value bytes, counted against `l1.maxBytes` so that it bounds the L1's
/// memory, small entries included: moka's bookkeeping, the entry's own fields and the allocator's rounding, as
/// measured (BENCHMARKS.md section 6: 1725 B of RSS per entry of a 1 KB value and a short key).
pub const L1_ENTRY_OVERHEAD_BYTES: u64 = 700;
/// 2^53: every integer up to it is exact in a JavaScript number, so it bounds the integers that cross into Node.
pub const JS_EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// `l1.maxBytes`: the L1's bound on bytes of keys and JSON text plus [`L1_ENTRY_OVERHEAD_BYTES`] per entry (default
/// 64 MiB).
pub const L1_MAX_BYTES: NumberRule = rule("l1.maxBytes", 1024.0, JS_EXACT_INTEGERS, true, Some(67_108_864.0), "bytes");
/// `l1.ttl`: a cap on L1 lifetimes; none by default.
pub const L1_TTL: NumberRule = rule("l1.ttl", 1.0, 2_592_000.0, true, None, "seconds");
/// `postgres.poolSize`: the pool's most connections.
pub const POSTGRES_POOL_SIZE: NumberRule = rule("postgres.poolSize", 1.0, 1000.0, true, Some(10.0), "connections");
/// `postgres.cleanupInterval`: the period of the expiry sweep.
pub const POSTGRES_CLEANUP_INTERVAL: NumberRule =
    rule("postgres.cleanupInterval", 1.0, 86_400.0, true, Some(60.0), "seconds");
/// `l2Breaker.failures`: L2 outages (refused or reset calls, failed checks after a timeout) in a row that open the
/// circuit breaker.
pub const L2_BREAKER_FAILURES: NumberRule = rule("l2Breaker.failures", 1.0, 100.0, true, Some(1.0), "calls");
/// `l2Breaker.retryAfter`: the wait before the breaker's first probe of the L2.
pub const L2_BREAKER_RETRY_AFTER: NumberRule = rule("l2Breaker.retryAfter", 0.05, 60.0, false, Some(0.5), "seconds");
/// `hardTimeout`: the longest a `getOrSet` waits for its loader when there is no stale value; none by default.
pub const HARD_TIMEOUT: NumberRule = rule("hardTimeout", 0.001, 3600.0, false, None, "seconds");
/// `grace`: how long an entry is kept past its TTL, stale: never a hit, but what a `getOrSet` serves when its loader
/// fails or is slower than `timeout`.
pub const GRACE: NumberRule = rule("grace", 0.0, 2_592_000.0, true, Some(0.0), "seconds");
/// `timeout`: with a stale value at hand, how long a `getOrSet` waits for a load before serving the stale value (the
/// load goes on and stores its value); 0 is stale-while-revalidate. None by default.
pub const SOFT_TIMEOUT: NumberRule = rule("timeout", 0.0, 3600.0, false, None, "seconds");
/// `earlyRefresh`: a `getOrSet` hit on an entry older than this fraction of its TTL starts one background refresh.
/// None by default.
pub const EARLY_REFRESH: NumberRule = rule("earlyRefresh", 0.01, 0.99, false, None, "fraction");
/// `jitter`: each stored TTL is drawn uniformly within ±`jitter` × TTL, so keys written together expire apart.
pub const JITTER: NumberRule = rule("jitter", 0.0, 1.0, false, Some(0.0), "fraction");
/// `redis.scanCount`: the `COUNT` hint of each `SCAN` step.
pub const REDIS_SCAN_COUNT: NumberRule = rule("redis.scanCount", 10.0, 100_000.0, true, Some(1000.0), "keys");

/// Every numeric option.
pub const NUMBER_RULES: &[NumberRule] = &[
    TTL,
    L2_TIMEOUT,
    LOCK_TIMEOUT,
    BUS_DOWN_L1_TTL,
    MAX_LOAD_TIME,
    MAX_KEY_LENGTH,
    MAX_VALUE_BYTES,
    L1_MAX_ENTRIES,
    L1_MAX_BYTES,
    L1_TTL,
    POSTGRES_POOL_SIZE,
    POSTGRES_CLEANUP_INTERVAL,
    L2_BREAKER_FAILURES,
    L2_BREAKER_RETRY_AFTER,
    HARD_TIMEOUT,
    GRACE,
    SOFT_TIMEOUT,
    EARLY_REFRESH,
    JITTER,
    REDIS_SCAN_COUNT,
];

/// The options each call takes, by method; each number follows the rule of the constructor option of its name, and
/// an invalid one is an `ERR_CACHE_INVALID_TTL`; `tags` is a list of tags (`ERR_CACHE_INVALID_TAG`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PerCallOptions {
    /// `set(key, value, { ... })`, and the options of each `setMany` entry, `{ key, value, ... }`.
    pub set: &'static [&'static str],
    /// `getOrSet(key, loader, { ... })`.
    pub get_or_set: &'static [&'static str],
    /// What `set` also takes to become a fenced write: `ifUnchangedSince`, a `writeFence`.
    pub fenced_set: &'static [&'static str],
}

/// The options each call takes.
pub const PER_CALL_OPTIONS: PerCallOptions = PerCallOptions {
    set: &["ttl", "grace", "tags"],
    fenced_set: &["ifUnchangedSince"],
    get_or_set: &["ttl", "grace", "tags", "timeout", "hardTimeout", "earlyRefresh"],
};

/// What the binding hands to JavaScript: every rule and every error code.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rules {
    /// [`NUMBER_RULES`].
    pub options: &'static [NumberRule],
    /// [`PER_CALL_OPTIONS`].
    pub per_call_options: PerCallOptions,
    /// Each error kind's code, by kind name (`InvalidKey` → `ERR_CACHE_INVALID_KEY`).
    pub error_codes: std::collections::BTreeMap<String, &'static str>,
    /// The longest a lost or half-open bus goes unnoticed, in ms ([`crate::bus::BUS_LOSS_DETECTION_MS`]).
    pub bus_loss_detection_ms: u64,
    /// The longest tag, in UTF-8 bytes ([`crate::tags::MAX_TAG_BYTES`]).
    pub max_tag_bytes: usize,
    /// The most tags per entry or call ([`crate::tags::MAX_TAGS`]).
    pub max_tags: usize,
    /// What each L1 entry counts against `l1.maxBytes` beyond its bytes ([`L1_ENTRY_OVERHEAD_BYTES`]).
    pub l1_entry_overhead_bytes: u64,
    /// The states each subject of a transition event enters (`breaker`, `bus`), in the order they are listed in
    /// [`crate::Transition::ALL`].
    pub transitions: std::collections::BTreeMap<&'static str, Vec<&'static str>>,
}

/// The rules, for the binding to expose.
pub fn rules() -> Rules {
    Rules {
        options: NUMBER_RULES,
        per_call_options: PER_CALL_OPTIONS,
        error_codes: ErrorKind::ALL.iter().map(|kind| (format!("{kind:?}"), kind.code())).collect(),
        bus_loss_detection_ms: crate::bus::BUS_LOSS_DETECTION_MS,
        max_tag_bytes: crate::tags::MAX_TAG_BYTES,
        max_tags: crate::tags::MAX_TAGS,
        l1_entry_overhead_bytes: L1_ENTRY_OVERHEAD_BYTES,
        transitions: crate::Transition::ALL.iter().fold(Default::default(), |mut by_subject, event| {
            by_subject.entry(event.subject()).or_insert_with(Vec::new).push(event.state());
            by_subject
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_check_range_and_wholeness() {
        assert!(TTL.accepts(1.0) && TTL.accepts(2_592_000.0));
        for bad in [0.0, 1.5, 2_592_001.0, f64::NAN, f64::INFINITY] {
            assert!(!TTL.accepts(bad), "{bad}");
        }
        assert!(L2_TIMEOUT.accepts(0.25) && !L2_TIMEOUT.accepts(0.001));
        assert_eq!(TTL.expected(), "an integer number of seconds from 1 to 2592000");
        assert_eq!(L2_TIMEOUT.or_default(None).unwrap(), 1.0);
        assert_eq!(MAX_KEY_LENGTH.check(Some(0.0)).unwrap_err().kind, ErrorKind::InvalidOption);
    }

    #[test]
    fn every_default_is_in_range_and_names_are_unique() {
        for rule in NUMBER_RULES {
            assert!(rule.default.is_none_or(|d| rule.accepts(d)), "{}", rule.name);
            assert_eq!(NUMBER_RULES.iter().filter(|r| r.name == rule.name).count(), 1, "{}", rule.name);
        }
    }
}
