//! The Node.js binding of tiered-cache: converts values, maps errors to JavaScript classes with stable codes, and
//! turns core futures into Promises. The cache logic, every input check included, lives behind
//! `tiered_cache_core::Cache`; `index.js` wraps this class in the public `Cache`.

#![deny(clippy::all)]
#![warn(missing_docs)]

mod promise;

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use tiered_cache_core::cache::closed_error;
use tiered_cache_core::{Cache, CacheError, ErrorKind, ErrorSink, Json, LoadStart, Outcome, Transition};

use promise::Settler;

/// An error as data, for the JavaScript side to raise or report.
#[napi(object)]
pub struct ErrorInfo {
    /// The stable code, e.g. `ERR_CACHE_L2_TIMEOUT`; `index.js` sets it as the raised error's `code`.
    pub code: String,
    /// Free of credentials, as every [`CacheError`] message.
    pub message: String,
}

impl From<&CacheError> for ErrorInfo {
    fn from(error: &CacheError) -> Self {
        ErrorInfo { code: error.code().to_owned(), message: error.message.clone() }
    }
}

fn error_info(error: Option<CacheError>) -> Option<ErrorInfo> {
    error.as_ref().map(ErrorInfo::from)
}

/// The answer of an L2 read: the JSON text, or nothing on a miss, with the failure it absorbed.
#[napi(object, object_from_js = false)]
pub struct ReadResult {
    /// The value's JSON text; `undefined` on a miss, or when the L2 failed.
    pub json: Option<JsonText>,
    /// The L2 failure the read degraded on, for `onError`.
    pub error: Option<ErrorInfo>,
}

/// The answer of a batch read of the L2: each key's JSON text in the order asked, with the failure it absorbed.
#[napi(object, object_from_js = false)]
pub struct ManyResult {
    /// Each key's JSON text, `undefined` for a miss (every key, when the L2 failed).
    pub values: Vec<Option<JsonText>>,
    /// The L2 failure the read degraded on, for `onError`.
    pub error: Option<ErrorInfo>,
}

/// One entry of `setMany`, its value already JSON text.
#[napi(object)]
pub struct SetManyEntry {
    /// The key.
    pub key: String,
    /// The value's JSON text.
    pub json: String,
    /// Its TTL in seconds; the `ttl` option when absent.
    pub ttl: Option<f64>,
    /// Its grace in seconds; the `grace` option when absent.
    pub grace: Option<f64>,
    /// Its tags.
    pub tags: Option<Vec<String>>,
}

/// The answer of a read that also finds stale entries: the JSON text and whether it is stale.
#[napi(object, object_from_js = false)]
pub struct EntryResult {
    /// The value's JSON text; `undefined` on a miss, or when the L2 failed and the L1 had no stale copy.
    pub json: Option<JsonText>,
    /// Whether the value is stale: past its TTL within its grace, or soft-invalidated by a tag.
    pub stale: bool,
    /// The L2 failure the read degraded on, for `onError`.
    pub error: Option<ErrorInfo>,
}

/// A count (or a boolean as 0/1), with the failure it absorbed.
#[napi(object)]
pub struct CountResult {
    /// Live entries removed, or 1/0 for `has`; a JavaScript number, so exact up to 2^53. 0 when the L2 failed.
    pub count: f64,
    /// The L2 or bus failure the call degraded on, for `onError`.
    pub error: Option<ErrorInfo>,
}

/// The start of a `getOrSet`: the JSON text, or a lease id to load with, or the error of another thread's loader.
#[napi(object, object_from_js = false)]
pub struct LoadResult {
    /// The JSON text: cached, or loaded by another thread or process.
    pub json: Option<JsonText>,
    /// Set when this caller must run the loader, then pass this id to `completeLoad` or `failLoad`.
    pub lease: Option<u32>,
    /// The `ERR_CACHE_LOADER_FAILED` of the load this call waited for, with the loader's message.
    pub failure: Option<ErrorInfo>,
    /// A stale value within its grace. With a `lease`: serve it if the loader fails or outlasts the soft timeout.
    /// Without one: serve it now (another caller's load failed or outlasted the soft timeout; counted).
    pub stale: Option<JsonText>,
    /// An L2 failure absorbed on the way, for `onError`; the call went on without the L2.
    pub error: Option<ErrorInfo>,
}

/// The start of an early refresh: a lease when this caller is to run the loader.
#[napi(object)]
pub struct RefreshResult {
    /// Set when this caller must run the loader in the background, then `completeLoad` or `failLoad` this id.
    pub lease: Option<u32>,
    /// An L2 failure that ended the refresh, for `onError`.
    pub error: Option<ErrorInfo>,
}

/// JSON text from either tier, copied once, straight into a JavaScript string: as Latin-1 when it is ASCII (most
/// JSON is), which V8 copies without decoding.
pub struct JsonText(Json);

impl TypeName for JsonText {
    fn type_name() -> &'static str {
        "string"
    }
    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ToNapiValue for JsonText {
    unsafe fn to_napi_value(env: sys::napi_env, value: Self) -> Result<sys::napi_value> {
        let json = value.0.as_str();
        let ascii = match &value.0 {
            Json::L1(entry) => entry.ascii,
            Json::Text(text) => text.is_ascii(),
        };
        if !ascii {
            return unsafe { <&str>::to_napi_value(env, json) };
        }
        let mut string = std::ptr::null_mut();
        let status =
            unsafe { sys::napi_create_string_latin1(env, json.as_ptr().cast(), json.len() as isize, &mut string) };
        if status != sys::Status::napi_ok {
            return Err(Error::new(Status::from(status), "could not create the value's string"));
        }
        Ok(string)
    }
}

/// A transition of the circuit breaker or the bus, as data, for `index.js` to publish and log.
#[napi(object)]
pub struct TransitionInfo {
    /// `"breaker"` or `"bus"`.
    pub subject: String,
    /// The state entered (see the core's [`Transition::state`]).
    pub state: String,
}

type BackgroundErrorFn = ThreadsafeFunction<ErrorInfo, (), ErrorInfo, Status, false, true>;
type TransitionFn = ThreadsafeFunction<TransitionInfo, (), TransitionInfo, Status, false, true>;

/// Passes background failures and transitions to JavaScript on a later turn of its event loop, without keeping the
/// loop alive (both functions are weak). A transition happens once per change, never per call, so handing each
/// over costs calls nothing.
struct JsSink {
    errors: Option<BackgroundErrorFn>,
    transitions: Option<TransitionFn>,
}

impl ErrorSink for JsSink {
    fn report(&self, error: &CacheError) {
        if let Some(errors) = &self.errors {
            errors.call(ErrorInfo::from(error), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    fn transition(&self, event: &Transition) {
        if let Some(transitions) = &self.transitions {
            let info = TransitionInfo { subject: event.subject().to_owned(), state: event.state().to_owned() };
            transitions.call(info, ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// Throws `error` as the JavaScript class its kind calls for, with its code.
fn throw(env: &Env, error: CacheError) -> Error {
    let thrown = match error.kind {
        ErrorKind::ValueTooLarge => env.throw_range_error(&error.message, Some(error.code())),
        kind if kind.is_input_error() => env.throw_type_error(&error.message, Some(error.code())),
        _ => env.throw_error(&error.message, Some(error.code())),
    };
    match thrown {
        Ok(()) => Error::new(Status::PendingException, error.message),
        Err(e) => e,
    }
}

/// The native half of `Cache`: one core handle, its Promises and its background-error callback.
#[napi]
pub struct NativeCache {
    cache: Option<Cache>,
    settler: Settler,
}

/// Every numeric option's range and default, the per-call options and every error code, from the core's one source
/// (`crates/core/src/rules.rs`): `index.js` checks with these and the typings test holds `index.d.ts` to them.
#[napi(catch_unwind)]
pub fn rules() -> Result<serde_json::Value> {
    serde_json::to_value(tiered_cache_core::rules::rules()).map_err(|e| Error::from_reason(e.to_string()))
}

/// Checks tags as `set`, `getOrSet` and `invalidateTags` take them, by the core's rules: throws
/// `ERR_CACHE_INVALID_TAG`. `index.js` calls it where a call may not reach the core (a `getOrSet` answered from the L1).
#[napi(catch_unwind)]
pub fn check_tags(env: Env, tags: Vec<String>) -> Result<()> {
    tiered_cache_core::tags::checked_tags(tags).map(|_| ()).map_err(|e| throw(&env, e))
}

#[napi]
impl NativeCache {
    /// `options` is the options object without the JavaScript-only ones (`onError`, `immutable`, `logger`);
    /// `on_background_error` receives failures that belong to no call, `on_transition` each transition of the
    /// circuit breaker and the bus.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: Env,
        options: serde_json::Value,
        on_background_error: Option<Function<ErrorInfo, ()>>,
        on_transition: Option<Function<TransitionInfo, ()>>,
    ) -> Result<Self> {
        let errors = match on_background_error {
            Some(callback) => {
                Some(callback.build_threadsafe_function().weak::<true>().callee_handled::<false>().build()?)
            }
            None => None,
        };
        let transitions = match on_transition {
            Some(callback) => {
                Some(callback.build_threadsafe_function().weak::<true>().callee_handled::<false>().build()?)
            }
            None => None,
        };
        let error_sink = (errors.is_some() || transitions.is_some())
            .then(|| Arc::new(JsSink { errors, transitions }) as Arc<dyn ErrorSink>);
        let cache = Cache::open(&options, std::env::var("CACHE_URL").ok(), error_sink).map_err(|e| throw(&env, e))?;
        Ok(NativeCache { cache: Some(cache), settler: Settler::new(&env)? })
    }

    fn cache(&self, env: &Env) -> Result<&Cache> {
        self.cache.as_ref().ok_or_else(|| throw(env, closed_error()))
    }

    /// Turns a core call into a Promise: its input error thrown at once, its future settled later.
    fn promise<'env, F, T>(
        &self,
        env: &'env Env,
        call: std::result::Result<F, CacheError>,
        convert: fn(F::Output) -> T,
    ) -> Result<Object<'env>>
    where
        F: std::future::Future + Send + 'static,
        T: ToNapiValue + Send + 'static,
    {
        let future = call.map_err(|e| throw(env, e))?;
        self.settler.promise(env, async move { convert(future.await) })
    }

    /// How long a `getOrSet` waits for another caller's load, in ms (the option `lockTimeout`); `index.js` bounds the
    /// wait for a load of its own thread by it too. 0 once closed.
    #[napi(getter)]
    pub fn lock_timeout_ms(&self) -> f64 {
        self.cache.as_ref().map_or(0.0, |c| c.lock_timeout_ms() as f64)
    }

    /// The default `hardTimeout` of `getOrSet`, in ms; `undefined` when there is none.
    #[napi(getter)]
    pub fn hard_timeout_ms(&self) -> Option<f64> {
        self.cache.as_ref().and_then(|c| c.hard_timeout_ms()).map(|ms| ms as f64)
    }

    /// The default soft `timeout` of `getOrSet`, in ms; `undefined` when there is none.
    #[napi(getter)]
    pub fn soft_timeout_ms(&self) -> Option<f64> {
        self.cache.as_ref().and_then(|c| c.soft_timeout_ms()).map(|ms| ms as f64)
    }

    /// The default `earlyRefresh` of `getOrSet`, a fraction of the TTL; `undefined` when off.
    #[napi(getter)]
    pub fn early_refresh(&self) -> Option<f64> {
        self.cache.as_ref().and_then(|c| c.early_refresh())
    }

    /// The L1's bounds `[maxEntries, maxBytes]` (`Infinity` for no entry bound; 0, 0 without an L1): `index.js`
    /// bounds its per-thread frozen values (`immutable`) by them.
    #[napi(getter)]
    pub fn l1_bounds(&self) -> Vec<f64> {
        let (entries, bytes) = self.cache.as_ref().map_or((Some(0), 0), |c| c.l1_bounds());
        vec![entries.map_or(f64::INFINITY, |n| n as f64), bytes as f64]
    }

    /// The store's namespace; `""` once closed.
    #[napi(getter)]
    pub fn namespace(&self) -> String {
        self.cache.as_ref().map_or_else(String::new, |c| c.namespace().to_owned())
    }

    /// `"postgres"`, `"redis"` or `"memory"`; `"memory"` once closed.
    #[napi(getter)]
    pub fn backend(&self) -> &'static str {
        self.cache.as_ref().map_or("memory", |c| c.backend())
    }

    /// The JSON text of an L1 hit, synchronously; `undefined` on an L1 miss.
    #[napi(catch_unwind)]
    pub fn l1_get(&self, env: Env, key: String) -> Result<Option<JsonText>> {
        let hit = self.cache(&env)?.l1_get(&key).map_err(|e| throw(&env, e))?;
        Ok(hit.map(|entry| JsonText(Json::L1(entry))))
    }

    /// The version of an L1 hit (it changes with every write of the key), counted as a hit; -1 on an L1 miss. Lets
    /// the JavaScript side reuse what it parsed last time without copying the JSON text again.
    #[napi(catch_unwind)]
    pub fn l1_version(&self, env: Env, key: String) -> Result<f64> {
        let hit = self.cache(&env)?.l1_get(&key).map_err(|e| throw(&env, e))?;
        Ok(hit.map_or(-1.0, |entry| entry.version as f64))
    }

    /// The JSON text of an L1 entry, without counting a hit: after `l1Version` counted it.
    #[napi(catch_unwind)]
    pub fn l1_peek(&self, env: Env, key: String) -> Result<Option<JsonText>> {
        Ok(self.cache(&env)?.l1_peek(&key).map(|entry| JsonText(Json::L1(entry))))
    }

    /// Reads a key from the L2 after an L1 miss of `l1Get`: a Promise of a [`ReadResult`]. Throws
    /// `ERR_CACHE_INVALID_KEY` or `ERR_CACHE_CLOSED` at once; L2 failures come back in the result.
    #[napi(catch_unwind)]
    pub fn get<'env>(&self, env: &'env Env, key: String) -> Result<Object<'env>> {
        self.promise(env, self.cache(env)?.get_after_l1_miss(key), |read| ReadResult {
            json: read.value.map(JsonText),
            error: error_info(read.error),
        })
    }

    /// Reads keys from the L2 in one call after L1 misses of `l1Get`: a Promise of a [`ManyResult`]. Throws
    /// `ERR_CACHE_INVALID_KEY` (for any one bad key, before reading anything) or `ERR_CACHE_CLOSED` at once; L2
    /// failures come back in the result.
    #[napi(catch_unwind)]
    pub fn get_many<'env>(&self, env: &'env Env, keys: Vec<String>) -> Result<Object<'env>> {
        self.promise(env, self.cache(env)?.get_many_after_l1_miss(keys), |read| ManyResult {
            values: read.value.into_iter().map(|json| json.map(JsonText)).collect(),
            error: error_info(read.error),
        })
    }

    /// Writes every entry to both tiers in one L2 call, each as an unfenced `set` writes it: a Promise of the absorbed
    /// failure, or of nothing. Throws the first bad entry's error at once, naming its index, before anything is
    /// written (`ERR_CACHE_INVALID_KEY`, `ERR_CACHE_INVALID_VALUE`, `ERR_CACHE_VALUE_TOO_LARGE` as a `RangeError`,
    /// `ERR_CACHE_INVALID_TTL`, `ERR_CACHE_INVALID_TAG`), or `ERR_CACHE_CLOSED`.
    #[napi(catch_unwind)]
    pub fn set_many<'env>(&self, env: &'env Env, entries: Vec<SetManyEntry>) -> Result<Object<'env>> {
        let entries = entries
            .into_iter()
            .map(|e| tiered_cache_core::SetManyEntry {
                key: e.key,
                json: e.json,
                ttl_seconds: e.ttl,
                grace_seconds: e.grace,
                tags: e.tags,
            })
            .collect();
        self.promise(env, self.cache(env)?.set_many(entries), |written| error_info(written.error))
    }

    /// Reads a key from either tier, a stale entry included: a Promise of an [`EntryResult`]. Throws
    /// `ERR_CACHE_INVALID_KEY` or `ERR_CACHE_CLOSED` at once; L2 failures come back in the result.
    #[napi(catch_unwind)]
    pub fn get_entry<'env>(&self, env: &'env Env, key: String) -> Result<Object<'env>> {
        self.promise(env, self.cache(env)?.get_allowing_stale(key), |read| {
            let (json, stale) = read.value.map_or((None, false), |(json, stale)| (Some(JsonText(json)), stale));
            EntryResult { json, stale, error: error_info(read.error) }
        })
    }

    /// Writes `json` for `ttl_seconds` (default: the `ttl` option), kept stale for `grace_seconds` more (default:
    /// the `grace` option), carrying `tags`, to both tiers; with `fence_us` (a `writeFence`) only if neither the key
    /// nor any of `tags` changed since. A Promise of a [`CountResult`]: 1 when written, 0 when a fenced write was
    /// dropped, with the absorbed failure. Throws `ERR_CACHE_INVALID_KEY`, `ERR_CACHE_INVALID_VALUE`,
    /// `ERR_CACHE_VALUE_TOO_LARGE` (a `RangeError`), `ERR_CACHE_INVALID_TTL`, `ERR_CACHE_INVALID_TAG` or
    /// `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn set<'env>(
        &self,
        env: &'env Env,
        key: String,
        json: String,
        ttl_seconds: Option<f64>,
        grace_seconds: Option<f64>,
        tags: Option<Vec<String>>,
        fence_us: Option<f64>,
    ) -> Result<Object<'env>> {
        let written = self.cache(env)?.set(key, json, ttl_seconds, grace_seconds, tags, fence_us);
        self.promise(env, written, |written| CountResult {
            count: written.value as u8 as f64,
            error: error_info(written.error),
        })
    }

    /// The L2's time now (µs by its clock), read with `key`, as a fence for `setFenced`: a Promise of a
    /// [`CountResult`] whose count is the fence, or -1 when the L2 failed. Throws `ERR_CACHE_INVALID_KEY` or
    /// `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    pub fn write_fence<'env>(&self, env: &'env Env, key: String) -> Result<Object<'env>> {
        self.promise(env, self.cache(env)?.write_fence(key), |fence| CountResult {
            count: fence.value.map_or(-1.0, |at| at as f64),
            error: error_info(fence.error),
        })
    }

    /// Removes keys from both tiers: a Promise of a [`CountResult`] of the live entries removed. Throws
    /// `ERR_CACHE_CLOSED` or, for any one bad key and before removing anything, `ERR_CACHE_INVALID_KEY`.
    #[napi(catch_unwind)]
    pub fn delete<'env>(&self, env: &'env Env, keys: Vec<String>) -> Result<Object<'env>> {
        self.promise(env, self.cache(env)?.delete(keys), count_result)
    }

    /// Whether a live entry exists in either tier, counting neither hit nor miss: a Promise of a [`CountResult`] of
    /// 1 or 0. Throws `ERR_CACHE_INVALID_KEY` or `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    pub fn has<'env>(&self, env: &'env Env, key: String) -> Result<Object<'env>> {
        self.promise(env, self.cache(env)?.has(key), |found| CountResult {
            count: if found.value { 1.0 } else { 0.0 },
            error: error_info(found.error),
        })
    }

    /// Removes every key of the namespace: a Promise of a [`CountResult`]. Throws `ERR_CACHE_CLOSED`.
    #[napi(catch_unwind)]
    pub fn clear<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        self.promise(env, Ok(self.cache(env)?.clear()), count_result)
    }

    /// Removes the namespace's keys matching a glob (`*`, `?`, `\`): a Promise of a [`CountResult`]. Throws
    /// `ERR_CACHE_INVALID_PATTERN` or `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    pub fn invalidate_pattern<'env>(&self, env: &'env Env, glob: String) -> Result<Object<'env>> {
        self.promise(env, self.cache(env)?.invalidate_pattern(glob), count_result)
    }

    /// Starts a `getOrSet`; a `lease` in the result means: run the loader, then `completeLoad` or `failLoad`. With
    /// `waitForOthers` false (the caller's wait for a load of its own thread ran out), a load in progress is not
    /// waited for again; with a stale value, a wait for another caller's load lasts at most `timeoutSeconds`
    /// (default: the `timeout` option). A result with neither JSON, lease, stale value nor failure means the cache
    /// was closed meanwhile: run the loader, store nothing. Throws `ERR_CACHE_INVALID_KEY`, `ERR_CACHE_INVALID_TTL`
    /// or `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    pub fn begin_load<'env>(
        &self,
        env: &'env Env,
        key: String,
        wait_for_others: Option<bool>,
        timeout_seconds: Option<f64>,
    ) -> Result<Object<'env>> {
        let started = self.cache(env)?.begin_load(key, wait_for_others.unwrap_or(true), timeout_seconds);
        self.promise(env, started, |started| {
            let mut result =
                LoadResult { json: None, lease: None, failure: None, stale: None, error: error_info(started.error) };
            match started.value {
                LoadStart::Hit(json) => result.json = Some(JsonText(json)),
                LoadStart::Lead { lease, stale } => {
                    result.lease = Some(lease);
                    result.stale = stale.map(JsonText);
                }
                LoadStart::Stale(json) => result.stale = Some(JsonText(json)),
                LoadStart::Failed(error) => result.failure = Some(ErrorInfo::from(&error)),
                LoadStart::Closed => {}
            }
            result
        })
    }

    /// Whether a `getOrSet` hit on `key` starts an early refresh (and claims it): its L1 entry has less than
    /// `1 - earlyRefresh` of its TTL left. `ttlSeconds` and `earlyRefresh` default to the options. Throws
    /// `ERR_CACHE_INVALID_TTL` or `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    pub fn claim_refresh(
        &self,
        env: Env,
        key: String,
        ttl_seconds: Option<f64>,
        early_refresh: Option<f64>,
    ) -> Result<bool> {
        self.cache(&env)?.claim_refresh(&key, ttl_seconds, early_refresh).map_err(|e| throw(&env, e))
    }

    /// Starts a claimed early refresh: a Promise of a [`RefreshResult`], whose `lease` means: run the loader, then
    /// `completeLoad` or `failLoad`. Throws as `claimRefresh` does.
    #[napi(catch_unwind)]
    pub fn begin_refresh<'env>(
        &self,
        env: &'env Env,
        key: String,
        ttl_seconds: Option<f64>,
        early_refresh: Option<f64>,
    ) -> Result<Object<'env>> {
        let started = self.cache(env)?.begin_refresh(key, ttl_seconds, early_refresh);
        self.promise(env, started, |started| RefreshResult { lease: started.value, error: error_info(started.error) })
    }

    /// Stores a loader's value under its lease (unless the key changed while it ran), fresh for `ttlSeconds` and
    /// stale for `graceSeconds` (defaults: the options), carrying `tags`, and hands it to the waiters: a Promise of the absorbed
    /// failure, or of nothing. Throws the value's, the TTL's or the grace's error at once (the waiters get it as the
    /// load's failure). Once closed, it stores nothing and resolves at once.
    #[napi(catch_unwind)]
    pub fn complete_load<'env>(
        &self,
        env: &'env Env,
        lease: u32,
        json: String,
        ttl_seconds: Option<f64>,
        grace_seconds: Option<f64>,
        tags: Option<Vec<String>>,
    ) -> Result<Object<'env>> {
        // `close` ended every lease: the value is the caller's alone.
        let Some(cache) = &self.cache else { return self.settler.promise(env, async { None::<ErrorInfo> }) };
        let stored = cache.complete_load(lease, json, ttl_seconds, grace_seconds, tags);
        self.promise(env, stored, |stored| error_info(stored.error))
    }

    /// Fails a lease: its waiters get `ERR_CACHE_LOADER_FAILED` with `message`, or the lease's stale value when it
    /// has one; nothing is cached. Once closed, it resolves at once, as `completeLoad` does.
    #[napi(catch_unwind)]
    pub fn fail_load<'env>(&self, env: &'env Env, lease: u32, message: String) -> Result<Object<'env>> {
        let Some(cache) = &self.cache else { return self.settler.promise(env, async {}) };
        self.promise(env, Ok(cache.fail_load(lease, message)), |()| ())
    }

    /// Counts a `getOrSet` waiting for a load of its own thread in `lockWaits`, as the core counts the others.
    #[napi(catch_unwind)]
    pub fn count_lock_wait(&self, env: Env) -> Result<()> {
        self.cache(&env)?.count_lock_wait();
        Ok(())
    }

    /// Invalidates every entry of the namespace carrying one of `tags`, written before now (gone, or stale with
    /// `soft`), in both tiers and on every instance: a Promise of the absorbed failure, or of nothing. Throws
    /// `ERR_CACHE_INVALID_TAG` or `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    pub fn invalidate_tags<'env>(&self, env: &'env Env, tags: Vec<String>, soft: bool) -> Result<Object<'env>> {
        self.promise(env, self.cache(env)?.invalidate_tags(tags, soft), |done| error_info(done.error))
    }

    /// The latest invalidation of any of `tags`, in ms since the Unix epoch (0 for never): a Promise of a
    /// [`CountResult`]. Throws `ERR_CACHE_INVALID_TAG` or `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    pub fn tag_expiration<'env>(&self, env: &'env Env, tags: Vec<String>) -> Result<Object<'env>> {
        self.promise(env, self.cache(env)?.tag_expiration_ms(tags), count_result)
    }

    /// Counts a `getOrSet` that `index.js` answered with a stale value, in `staleHits`. Called from timers that may
    /// fire after `close`, so a closed cache counts nothing rather than throw where no caller could catch it.
    #[napi]
    pub fn count_stale_hit(&self) {
        if let Some(cache) = &self.cache {
            cache.count_stale_hit();
        }
    }

    /// The counters, with the names of the public `CacheStats`.
    #[napi(catch_unwind)]
    pub fn stats(&self, env: Env) -> Result<serde_json::Value> {
        serde_json::to_value(self.cache(&env)?.stats()).map_err(|e| Error::from_reason(e.to_string()))
    }

    /// Lets go of the store; unfinished leases fail their waiters over to them. Idempotent.
    #[napi]
    pub fn close(&mut self) {
        if let Some(cache) = self.cache.take() {
            cache.close();
        }
    }
}

fn count_result(outcome: Outcome<u64>) -> CountResult {
    CountResult { count: outcome.value as f64, error: error_info(outcome.error) }
}
