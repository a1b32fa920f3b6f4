//! The Node.js binding of tiered-cache: converts values, maps errors to JavaScript classes with stable codes, and
//! turns core futures into Promises. The cache logic lives in `tiered-cache-core`; `index.js` wraps this class in
//! the public `Cache`.

#![deny(clippy::all)]
#![warn(missing_docs)]

mod promise;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use tiered_cache_core::config::{self, HandleConfig};
use tiered_cache_core::key::validate_key;
use tiered_cache_core::l1::L1Entry;
use tiered_cache_core::pattern::Pattern;
use tiered_cache_core::registry::shared_store;
use tiered_cache_core::store::{ErrorSink, LoadLease, LoadStep, Outcome, Store};
use tiered_cache_core::ttl::per_call_ttl_ms;
use tiered_cache_core::value::validate_json;
use tiered_cache_core::{CacheError, ErrorKind};

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
#[napi(object)]
pub struct ReadResult {
    /// The value's JSON text; `undefined` on a miss, or when the L2 failed.
    pub json: Option<String>,
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
#[napi(object)]
pub struct LoadResult {
    /// The JSON text: cached, or loaded by another thread or process.
    pub json: Option<String>,
    /// Set when this caller must run the loader, then pass this id to `completeLoad` or `failLoad`.
    pub lease: Option<u32>,
    /// The `ERR_CACHE_LOADER_FAILED` of another thread's loader: raised to this caller too.
    pub failure: Option<ErrorInfo>,
    /// An L2 failure absorbed on the way, for `onError`; the call went on without the L2.
    pub error: Option<ErrorInfo>,
}

/// JSON text of an L1 entry, copied once, straight into a JavaScript string: as Latin-1 when it is ASCII (most JSON
/// is), which V8 copies without decoding.
pub struct JsonText(Arc<L1Entry>);

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
        let json = &value.0.json;
        if !value.0.ascii {
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

type BackgroundErrorFn = ThreadsafeFunction<ErrorInfo, (), ErrorInfo, Status, false, true>;

/// Passes background failures to JavaScript on a later turn of its event loop, without keeping the loop alive.
struct JsErrorSink(BackgroundErrorFn);

impl ErrorSink for JsErrorSink {
    fn report(&self, error: &CacheError) {
        self.0.call(ErrorInfo::from(error), ThreadsafeFunctionCallMode::NonBlocking);
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

fn closed() -> CacheError {
    CacheError::new(ErrorKind::Closed, "the cache is closed")
}

/// The native half of `Cache`: one handle on a store shared by the process.
#[napi]
pub struct NativeCache {
    store: Option<Arc<Store>>,
    handle: HandleConfig,
    leases: Arc<Mutex<HashMap<u32, LoadLease>>>,
    /// Set by `close`, so that a `beginLoad` settling after it does not keep its lease.
    closed: Arc<AtomicBool>,
    next_lease: AtomicU32,
    settler: Settler,
    _error_sink: Option<Arc<dyn ErrorSink>>,
}

#[napi]
impl NativeCache {
    /// `options` is the options object without `onError`; `on_background_error` receives failures that belong to no
    /// call.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: Env,
        options: serde_json::Value,
        on_background_error: Option<Function<ErrorInfo, ()>>,
    ) -> Result<Self> {
        let config = config::parse(&options, std::env::var("CACHE_URL").ok()).map_err(|e| throw(&env, e))?;
        let store = shared_store(config.store).map_err(|e| throw(&env, e))?;
        let error_sink = match on_background_error {
            Some(callback) => {
                let tsfn: BackgroundErrorFn =
                    callback.build_threadsafe_function().weak::<true>().callee_handled::<false>().build()?;
                let sink: Arc<dyn ErrorSink> = Arc::new(JsErrorSink(tsfn));
                store.add_error_sink(Arc::downgrade(&sink) as Weak<dyn ErrorSink>);
                Some(sink)
            }
            None => None,
        };
        Ok(NativeCache {
            store: Some(store),
            handle: config.handle,
            leases: Default::default(),
            closed: Default::default(),
            next_lease: AtomicU32::new(1),
            settler: Settler::new(&env)?,
            _error_sink: error_sink,
        })
    }

    /// Borrowed, so the synchronous L1 path costs no reference count; async calls clone what they keep.
    fn store(&self, env: &Env) -> Result<&Arc<Store>> {
        self.store.as_ref().ok_or_else(|| throw(env, closed()))
    }

    fn checked_key(&self, env: &Env, key: &str) -> Result<&Arc<Store>> {
        validate_key(key, self.handle.max_key_len).map_err(|e| throw(env, e))?;
        self.store(env)
    }

    fn ttl_ms(&self, env: &Env, ttl_seconds: Option<f64>) -> Result<u64> {
        match ttl_seconds {
            None => Ok(self.handle.default_ttl_ms),
            Some(seconds) => per_call_ttl_ms(seconds).map_err(|e| throw(env, e)),
        }
    }

    fn checked_value(&self, env: &Env, json: &str) -> Result<()> {
        validate_json(json, self.handle.max_value_bytes).map_err(|e| throw(env, e))
    }

    /// How long a `getOrSet` waits for another caller's load, in ms (the option `lockTimeout`); `index.js` bounds the
    /// wait for a load of its own thread by it too.
    #[napi(getter)]
    pub fn lock_timeout_ms(&self) -> f64 {
        self.store.as_ref().map_or(0.0, |s| s.config().lock_timeout_ms as f64)
    }

    /// The L1's bounds `[maxEntries, maxBytes]` (0, 0 without an L1): `index.js` bounds its per-thread frozen values
    /// (`immutable`) by them.
    #[napi(getter)]
    pub fn l1_bounds(&self) -> Vec<f64> {
        let l1 = self.store.as_ref().and_then(|s| s.config().l1.as_ref());
        l1.map_or(vec![0.0, 0.0], |l1| vec![l1.max_entries as f64, l1.max_bytes as f64])
    }

    /// The store's namespace; `""` once closed.
    #[napi(getter)]
    pub fn namespace(&self) -> String {
        self.store.as_ref().map_or_else(String::new, |s| s.config().namespace.clone())
    }

    /// `"postgres"`, `"redis"` or `"memory"`; `"memory"` once closed.
    #[napi(getter)]
    pub fn backend(&self) -> &'static str {
        self.store.as_ref().map_or("memory", |s| s.backend())
    }

    /// The JSON text of an L1 hit, synchronously; `undefined` on an L1 miss.
    #[napi(catch_unwind)]
    pub fn l1_get(&self, env: Env, key: String) -> Result<Option<JsonText>> {
        let store = self.checked_key(&env, &key)?;
        Ok(store.l1_get(&key).map(JsonText))
    }

    /// The version of an L1 hit (it changes with every write of the key), counted as a hit; -1 on an L1 miss. Lets
    /// the JavaScript side reuse what it parsed last time without copying the JSON text again.
    #[napi(catch_unwind)]
    pub fn l1_version(&self, env: Env, key: String) -> Result<f64> {
        let store = self.checked_key(&env, &key)?;
        Ok(store.l1_get(&key).map_or(-1.0, |entry| entry.version as f64))
    }

    /// The JSON text of an L1 entry, without counting a hit: after `l1Version` counted it.
    #[napi(catch_unwind)]
    pub fn l1_peek(&self, env: Env, key: String) -> Result<Option<JsonText>> {
        let store = self.store(&env)?;
        Ok(store.l1_peek(&key).map(JsonText))
    }

    /// Reads a key from the L1, else the L2: a Promise of a [`ReadResult`]. Throws `ERR_CACHE_INVALID_KEY` or
    /// `ERR_CACHE_CLOSED` at once; L2 failures come back in the result.
    #[napi(catch_unwind)]
    pub fn get<'env>(&self, env: &'env Env, key: String) -> Result<Object<'env>> {
        let store = self.checked_key(env, &key)?.clone();
        self.settler.promise(env, async move {
            let read = store.get(&key).await;
            ReadResult { json: read.value.map(|json| json.as_str().to_owned()), error: error_info(read.error) }
        })
    }

    /// Writes `json` for `ttl_seconds` (whole seconds, 1 to 30 days; default the `ttl` option) to both tiers: a
    /// Promise of the absorbed failure, or of nothing. Throws `ERR_CACHE_INVALID_KEY`, `ERR_CACHE_VALUE_TOO_LARGE`
    /// (a `RangeError`), `ERR_CACHE_INVALID_TTL` or `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    pub fn set<'env>(
        &self,
        env: &'env Env,
        key: String,
        json: String,
        ttl_seconds: Option<f64>,
    ) -> Result<Object<'env>> {
        let store = self.checked_key(env, &key)?.clone();
        self.checked_value(env, &json)?;
        let ttl_ms = self.ttl_ms(env, ttl_seconds)?;
        self.settler.promise(env, async move { error_info(store.set(&key, json, ttl_ms).await.error) })
    }

    /// Removes keys from both tiers: a Promise of a [`CountResult`] of the live entries removed. Throws
    /// `ERR_CACHE_CLOSED` or, for any one bad key and before removing anything, `ERR_CACHE_INVALID_KEY`.
    #[napi(catch_unwind)]
    pub fn delete<'env>(&self, env: &'env Env, keys: Vec<String>) -> Result<Object<'env>> {
        let store = self.store(env)?.clone();
        for key in &keys {
            validate_key(key, self.handle.max_key_len).map_err(|e| throw(env, e))?;
        }
        self.settler.promise(env, async move { count_result(store.delete(keys).await) })
    }

    /// Whether a live entry exists in either tier, counting neither hit nor miss: a Promise of a [`CountResult`] of
    /// 1 or 0. Throws `ERR_CACHE_INVALID_KEY` or `ERR_CACHE_CLOSED` at once.
    #[napi(catch_unwind)]
    pub fn has<'env>(&self, env: &'env Env, key: String) -> Result<Object<'env>> {
        let store = self.checked_key(env, &key)?.clone();
        self.settler.promise(env, async move {
            let found = store.has(&key).await;
            CountResult { count: if found.value { 1.0 } else { 0.0 }, error: error_info(found.error) }
        })
    }

    /// Removes every key of the namespace: a Promise of a [`CountResult`]. Throws `ERR_CACHE_CLOSED`.
    #[napi(catch_unwind)]
    pub fn clear<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let store = self.store(env)?.clone();
        self.settler.promise(env, async move { count_result(store.clear().await) })
    }

    /// Removes the namespace's keys matching a glob (`*`, `?`, `\`): a Promise of a [`CountResult`]. Throws
    /// `ERR_CACHE_INVALID_PATTERN` (empty, a lone trailing `\`, or longer than max(2 × `maxKeyLength` + 2, 1024)
    /// bytes) or `ERR_CACHE_CLOSED`.
    #[napi(catch_unwind)]
    pub fn invalidate_pattern<'env>(&self, env: &'env Env, glob: String) -> Result<Object<'env>> {
        let max_len = (self.handle.max_key_len * 2 + 2).max(1024);
        let pattern = Pattern::parse(&glob, max_len).map_err(|e| throw(env, e))?;
        let store = self.store(env)?.clone();
        self.settler.promise(env, async move { count_result(store.invalidate_pattern(&pattern, &glob).await) })
    }

    /// Starts a `getOrSet`; a `lease` in the result means: run the loader, then `completeLoad` or `failLoad`. With
    /// `waitForOthers` false (the caller already waited `lockTimeout` for a load of its own thread), a load in
    /// progress in the process is not waited for again. A result with neither JSON, lease nor failure means the cache
    /// was closed meanwhile: run the loader, store nothing.
    #[napi(catch_unwind)]
    pub fn begin_load<'env>(&self, env: &'env Env, key: String, wait_for_others: Option<bool>) -> Result<Object<'env>> {
        let store = self.checked_key(env, &key)?.clone();
        let (leases, closed) = (self.leases.clone(), self.closed.clone());
        let lease_id = self.next_lease.fetch_add(1, Ordering::Relaxed);
        self.settler.promise(env, async move {
            let started = store.begin_load(&key, wait_for_others.unwrap_or(true)).await;
            let mut result = LoadResult { json: None, lease: None, failure: None, error: error_info(started.error) };
            match started.value {
                LoadStep::Hit(json) => result.json = Some(json.as_str().to_owned()),
                LoadStep::Failed(error) => result.failure = Some(ErrorInfo::from(&error)),
                // Dropped, so its waiters take over: a closed cache stores nothing.
                LoadStep::Lead(lease) if closed.load(Ordering::Acquire) => drop(lease),
                LoadStep::Lead(lease) => {
                    leases.lock().unwrap_or_else(|e| e.into_inner()).insert(lease_id, lease);
                    result.lease = Some(lease_id);
                }
            }
            result
        })
    }

    fn take_lease(&self, lease: u32) -> Option<LoadLease> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner()).remove(&lease)
    }

    /// Stores a loader's value under its lease (unless the key changed while it ran) and hands it to the waiters. A
    /// lease that `close` ended stores nothing and resolves at once.
    #[napi(catch_unwind)]
    pub fn complete_load<'env>(
        &self,
        env: &'env Env,
        lease: u32,
        json: String,
        ttl_seconds: Option<f64>,
    ) -> Result<Object<'env>> {
        let checked = self.checked_value(env, &json).and_then(|()| self.ttl_ms(env, ttl_seconds));
        match (checked, self.take_lease(lease)) {
            (Ok(ttl_ms), Some(lease)) => {
                self.settler.promise(env, async move { error_info(lease.complete(json, ttl_ms).await.error) })
            }
            (Ok(_), None) => self.settler.promise(env, async { None::<ErrorInfo> }),
            (Err(refused), lease) => {
                // Waiters in other threads get the caller's refusal as their loader error.
                if let Some(lease) = lease {
                    let reason = refused.reason.clone();
                    tiered_cache_core::runtime::spawn(async move { lease.fail(reason).await });
                }
                Err(refused)
            }
        }
    }

    /// Fails a lease: its waiters in this process get the loader's error, nothing is cached.
    #[napi(catch_unwind)]
    pub fn fail_load<'env>(&self, env: &'env Env, lease: u32, message: String) -> Result<Object<'env>> {
        let taken = self.take_lease(lease);
        self.settler.promise(env, async move {
            if let Some(lease) = taken {
                lease.fail(message).await;
            }
        })
    }

    /// The counters, with the names of the public `CacheStats`.
    #[napi(catch_unwind)]
    pub fn stats(&self, env: Env) -> Result<serde_json::Value> {
        let snapshot = self.store(&env)?.stats();
        serde_json::to_value(snapshot).map_err(|e| Error::from_reason(e.to_string()))
    }

    /// Lets go of the store; unfinished leases fail their waiters. Idempotent.
    #[napi]
    pub fn close(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.leases.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.store = None;
        self._error_sink = None;
    }
}

fn count_result(outcome: Outcome<u64>) -> CountResult {
    CountResult { count: outcome.value as f64, error: error_info(outcome.error) }
}
