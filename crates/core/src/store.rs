//! A store: one namespace's L1 in front of its L2, with the bus, single-flight and counters around them.
//!
//! Degradation: an L2 failure never fails a call. Reads become misses, writes still reach the L1, and each failure
//! comes back in the call's [`Outcome`] (and is counted) so the caller can report it before its call settles.
//!
//! Coherence between the tiers rests on one epoch counter. It moves after every write or removal reaches the L2,
//! and on every bus message. An L1 fill from an L2 read is kept only if the epoch did not move during the read;
//! otherwise the read may have raced a write, and the fill is dropped rather than risk serving stale data.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;

use crate::bus::{self, Bus, BusListener, BusMessage, BusOp};
use crate::config::{Backend, StoreConfig};
use crate::error::{CacheError, ErrorKind, Result};
use crate::flight::{self, Flight, Flights, Joined};
use crate::key::namespaced;
use crate::l1::{L1Entry, L1};
use crate::l2::postgres::PostgresL2;
use crate::l2::redis::RedisL2;
use crate::l2::{L2Hit, LoadLock, LockAttempt, L2};
use crate::pattern::Pattern;
use crate::stats::{add, bump, Stats, StatsSnapshot};
use crate::ttl::l1_lifetime;

/// How often idle L1s apply their expirations and evictions.
const L1_HOUSEKEEPING_INTERVAL_MS: u64 = 1_000;
/// How often a `getOrSet` waiting on another process's lock looks for the value, unless the bus wakes it first.
const LOCK_POLL_INTERVAL_MS: u64 = 25;
/// Patterns arriving on the bus were checked by their sender; this only bounds the work one message can cause.
const MAX_BUS_PATTERN_BYTES: usize = 1 << 20;

/// A result that may carry an absorbed L2 failure beside the value the call degraded to.
#[derive(Debug)]
pub struct Outcome<T> {
    /// The answer, or what the call degraded to when the L2 failed (a miss, `false`, 0).
    pub value: T,
    /// The absorbed failure, already counted in `errors`, for the caller to report (the binding: to `onError`).
    pub error: Option<CacheError>,
}

impl<T> Outcome<T> {
    fn ok(value: T) -> Self {
        Outcome { value, error: None }
    }
}

/// JSON text read from either tier.
#[derive(Debug, Clone)]
pub enum Json {
    /// Shared with the L1 entry, so reading it copied nothing.
    L1(Arc<L1Entry>),
    /// Held outside the L1: no L1, a zero L1 lifetime, or the result of another caller's load.
    Text(Arc<str>),
}

impl Json {
    /// The JSON text, wherever it is held.
    pub fn as_str(&self) -> &str {
        match self {
            Json::L1(entry) => &entry.json,
            Json::Text(text) => text,
        }
    }
}

/// Where failures that belong to no call (bus losses, sweeps) are reported.
pub trait ErrorSink: Send + Sync {
    /// Called on a thread of the core runtime: hand the error over, do not block.
    fn report(&self, error: &CacheError);
}

/// The result of starting a `getOrSet`.
pub enum LoadStep {
    /// The value was cached, or another thread or process loaded it.
    Hit(Json),
    /// The caller must run the loader and [`LoadLease::complete`] or [`LoadLease::fail`] the lease.
    Lead(LoadLease),
    /// The loader of another thread failed with this error.
    Failed(CacheError),
}

struct Inner {
    id: u64,
    config: StoreConfig,
    l1: Option<L1>,
    l2: Option<Arc<L2>>,
    bus: Option<Arc<Bus>>,
    stats: Stats,
    epoch: AtomicU64,
    flights: Flights,
    l2_activity: Notify,
    error_sinks: Mutex<Vec<Weak<dyn ErrorSink>>>,
    last_bus_seq: AtomicU64,
    /// Invalidations waiting for their own bus message to come back, by sequence number.
    echo_waiters: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

/// One namespace on one L2, shared by every handle of the process with the same configuration.
pub struct Store {
    inner: Arc<Inner>,
    background: Vec<AbortHandle>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.background.iter().for_each(AbortHandle::abort);
    }
}

impl Store {
    /// Opens a store without waiting for the L2: connections are made by the first calls and the bus subscribes in
    /// the background. `bus_for` supplies the process's shared bus of an L2.
    pub fn open(config: StoreConfig, bus_for: impl FnOnce(&Arc<L2>) -> Arc<Bus>) -> Result<Store> {
        let _runtime = crate::runtime::handle().enter();
        let l2 = match &config.l2 {
            None => None,
            Some((Backend::Postgres, url)) => {
                Some(Arc::new(L2::Postgres(PostgresL2::new(url, &config.postgres, config.l2_timeout())?)))
            }
            Some((Backend::Redis, url)) => {
                Some(Arc::new(L2::Redis(RedisL2::new(url, &config.redis, config.l2_timeout())?)))
            }
        };
        let bus = match (&l2, config.bus) {
            (Some(l2), true) => Some(bus_for(l2)),
            _ => None,
        };
        let l1 = config.l1.as_ref().map(|c| L1::new(c.max_entries, c.max_bytes));
        let inner = Arc::new(Inner {
            id: rand::random(),
            config,
            l1,
            l2,
            bus,
            stats: Stats::default(),
            epoch: AtomicU64::new(0),
            flights: Flights::default(),
            l2_activity: Notify::new(),
            error_sinks: Mutex::new(Vec::new()),
            last_bus_seq: AtomicU64::new(0),
            echo_waiters: Mutex::new(HashMap::new()),
        });
        if let Some(bus) = &inner.bus {
            let listener: Weak<dyn BusListener> = Arc::downgrade(&inner) as Weak<dyn BusListener>;
            bus.add_listener(listener);
        }
        let background = start_background(&inner);
        Ok(Store { inner, background })
    }

    /// The configuration the store was opened with, which is also its key in the registry.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// `"postgres"`, `"redis"` or `"memory"`.
    pub fn backend(&self) -> &'static str {
        self.inner.l2.as_ref().map_or("memory", |l2| l2.backend())
    }

    /// Registers a sink for background failures; it stays registered while the caller holds it.
    pub fn add_error_sink(&self, sink: Weak<dyn ErrorSink>) {
        let mut sinks = self.inner.error_sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.retain(|s| s.strong_count() > 0);
        sinks.push(sink);
    }

    /// An L1 hit, counted; `None` leaves the counting to the call that follows up on the miss.
    pub fn l1_get(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.inner.l1_hit(key)
    }

    /// An L1 entry without counting anything: for a caller that already counted this read.
    pub fn l1_peek(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.inner.l1.as_ref()?.get(key)
    }

    /// Reads a key from the L1, else from the L2 (copying it into the L1).
    pub async fn get(&self, key: &str) -> Outcome<Option<Json>> {
        self.inner.get(key).await
    }

    /// Writes a value with a TTL in milliseconds to both tiers and announces it.
    pub async fn set(&self, key: &str, json: String, ttl_ms: u64) -> Outcome<()> {
        self.inner.set(key, json, ttl_ms).await
    }

    /// Removes keys from both tiers; counts what the L2 held (the L1 when memory only).
    pub async fn delete(&self, keys: Vec<String>) -> Outcome<u64> {
        let inner = &self.inner;
        if keys.is_empty() {
            return Outcome::ok(0);
        }
        let Some(l2) = &inner.l2 else {
            let removed = keys.iter().filter(|key| inner.l1_remove(key)).count() as u64;
            add(&inner.stats.deletes, removed);
            return Outcome::ok(removed);
        };
        let full: Vec<String> = keys.iter().map(|k| namespaced(&inner.config.namespace, k)).collect();
        let result = inner.l2_call(l2.delete(&full)).await;
        inner.after_l2_removal(|l1| keys.iter().for_each(|key| { l1.remove(key); }));
        let publish = inner.publish(BusOp::Keys { keys }).await;
        inner.removal_outcome(result, publish)
    }

    /// Whether a live entry exists in either tier; counts neither a hit nor a miss.
    pub async fn has(&self, key: &str) -> Outcome<bool> {
        let inner = &self.inner;
        if inner.l1.as_ref().is_some_and(|l1| l1.get(key).is_some()) {
            return Outcome::ok(true);
        }
        let Some(l2) = &inner.l2 else { return Outcome::ok(false) };
        let full = namespaced(&inner.config.namespace, key);
        inner.absorb(inner.l2_call(l2.has(&full)).await, false)
    }

    /// Removes the namespace's keys matching `pattern`.
    pub async fn invalidate_pattern(&self, pattern: &Pattern, glob: &str) -> Outcome<u64> {
        self.inner.remove_matching(pattern, BusOp::Pattern { pattern: glob.to_owned() }).await
    }

    /// Removes every key of the namespace.
    pub async fn clear(&self) -> Outcome<u64> {
        self.inner.remove_matching(&Pattern::everything(), BusOp::Clear).await
    }

    /// Starts a `getOrSet`: a hit, the result of another caller's load, or a lease to load.
    pub async fn begin_load(&self, key: &str) -> Outcome<LoadStep> {
        let inner = &self.inner;
        if let Some(entry) = self.l1_get(key) {
            return Outcome::ok(LoadStep::Hit(Json::L1(entry)));
        }
        match inner.flights.join(key) {
            Joined::Follower(follower) => {
                bump(&inner.stats.lock_waits);
                match flight::wait(follower, inner.config.lock_timeout()).await {
                    Some(Ok(json)) => Outcome::ok(LoadStep::Hit(Json::Text(json))),
                    Some(Err(message)) => Outcome::ok(LoadStep::Failed(CacheError::new(ErrorKind::LoaderFailed, message))),
                    None => {
                        bump(&inner.stats.lock_timeouts);
                        Outcome::ok(LoadStep::Lead(self.lease(key, None, None)))
                    }
                }
            }
            Joined::Leader(flight) => {
                let read = inner.get(key).await;
                if let Some(json) = read.value {
                    let text: Arc<str> = Arc::from(json.as_str());
                    inner.flights.finish(key, &flight, Ok(text));
                    return Outcome { value: LoadStep::Hit(json), error: read.error };
                }
                if read.error.is_some() {
                    // The L2 is failing: lead without asking it for a lock.
                    return Outcome { value: LoadStep::Lead(self.lease(key, Some(flight), None)), error: read.error };
                }
                let locked = inner.lock_or_wait(key).await;
                let value = match locked.value {
                    LockStep::Loaded { hit, epoch_before_read } => {
                        let json = inner.fill_l1_from(key, hit, epoch_before_read);
                        inner.flights.finish(key, &flight, Ok(Arc::from(json.as_str())));
                        LoadStep::Hit(json)
                    }
                    LockStep::Lead(lock) => LoadStep::Lead(self.lease(key, Some(flight), lock)),
                };
                Outcome { value, error: locked.error }
            }
        }
    }

    fn lease(&self, key: &str, flight: Option<Arc<Flight>>, lock: Option<LoadLock>) -> LoadLease {
        bump(&self.inner.stats.loader_calls);
        LoadLease { inner: self.inner.clone(), key: key.to_owned(), flight, lock }
    }

    /// A snapshot of the counters and the L1 gauges, taken after applying pending L1 housekeeping.
    pub fn stats(&self) -> StatsSnapshot {
        // moka counts lazily; settling it first makes `l1Entries` agree with what was just written.
        self.run_l1_housekeeping();
        let (entries, bytes) = self.inner.l1.as_ref().map_or((0, 0), |l1| (l1.entry_count(), l1.bytes()));
        self.inner.stats.snapshot(entries, bytes)
    }

    /// Applies pending L1 expirations now (the store also does it every second by itself).
    pub fn run_l1_housekeeping(&self) {
        if let Some(l1) = &self.inner.l1 {
            l1.run_pending_tasks();
        }
    }
}

/// The right to store the value of a key that nobody has: from this process's single-flight and, across
/// processes, the L2's lock. Dropping it unfinished fails the load for whoever waits on it.
pub struct LoadLease {
    inner: Arc<Inner>,
    key: String,
    flight: Option<Arc<Flight>>,
    lock: Option<LoadLock>,
}

impl LoadLease {
    /// Stores the loader's value, hands it to the waiters, then lets other processes go.
    pub async fn complete(mut self, json: String, ttl_ms: u64) -> Outcome<()> {
        let shared: Arc<str> = Arc::from(json.as_str());
        let written = self.inner.set(&self.key, json, ttl_ms).await;
        if let Some(flight) = self.flight.take() {
            self.inner.flights.finish(&self.key, &flight, Ok(shared));
        }
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
        written
    }

    /// Passes the loader's error to the waiters of this process; caches nothing.
    pub async fn fail(mut self, message: String) {
        if let Some(flight) = self.flight.take() {
            self.inner.flights.finish(&self.key, &flight, Err(message));
        }
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
    }
}

impl Drop for LoadLease {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            self.inner.flights.finish(&self.key, &flight, Err("the loader was abandoned".into()));
        }
    }
}

enum LockStep {
    /// Another process loaded the value; `epoch_before_read` is the store epoch just before the read that found it.
    Loaded { hit: L2Hit, epoch_before_read: u64 },
    Lead(Option<LoadLock>),
}

impl Inner {
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn advance_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn l1_remove(&self, key: &str) -> bool {
        self.l1.as_ref().is_some_and(|l1| l1.remove(key))
    }

    /// Bounds an L2 call by the L2 timeout.
    async fn l2_call<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let timeout = self.config.l2_timeout();
        tokio::time::timeout(timeout, call).await.unwrap_or_else(|_| {
            Err(CacheError::new(
                ErrorKind::L2Timeout,
                format!("the L2 did not answer within {} ms", timeout.as_millis()),
            ))
        })
    }

    /// Counts a failure and degrades to `fallback`.
    fn absorb<T>(&self, result: Result<T>, fallback: T) -> Outcome<T> {
        match result {
            Ok(value) => Outcome::ok(value),
            Err(error) => {
                bump(&self.stats.errors);
                Outcome { value: fallback, error: Some(error) }
            }
        }
    }

    fn report_background(&self, error: &CacheError) {
        bump(&self.stats.errors);
        let sinks: Vec<Arc<dyn ErrorSink>> =
            self.error_sinks.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(Weak::upgrade).collect();
        sinks.iter().for_each(|sink| sink.report(error));
    }

    /// The cap on L1 lifetimes now: the configured one, tightened while the bus cannot deliver messages.
    fn l1_cap_ms(&self) -> Option<u64> {
        let configured = self.config.l1.as_ref().and_then(|c| c.ttl_cap_ms);
        let bus_down = self.bus.as_ref().is_some_and(|bus| !bus.is_up()).then_some(self.config.bus_down_l1_ttl_ms);
        match (configured, bus_down) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A live L1 entry, counted as an L1 hit.
    fn l1_hit(&self, key: &str) -> Option<Arc<L1Entry>> {
        let entry = self.l1.as_ref()?.get(key)?;
        bump(&self.stats.hits);
        bump(&self.stats.l1_hits);
        Some(entry)
    }

    async fn get(&self, key: &str) -> Outcome<Option<Json>> {
        if let Some(entry) = self.l1_hit(key) {
            return Outcome::ok(Some(Json::L1(entry)));
        }
        let Some(l2) = &self.l2 else {
            bump(&self.stats.misses);
            return Outcome::ok(None);
        };
        let epoch = self.epoch();
        let full = namespaced(&self.config.namespace, key);
        let read = self.absorb(self.l2_call(l2.get(&full)).await, None);
        match read.value {
            Some(hit) => {
                bump(&self.stats.hits);
                bump(&self.stats.l2_hits);
                Outcome { value: Some(self.fill_l1_from(key, hit, epoch)), error: read.error }
            }
            None => {
                bump(&self.stats.misses);
                Outcome { value: None, error: read.error }
            }
        }
    }

    /// Copies an L2 hit into the L1 for the rest of its TTL, unless a write or invalidation may have raced the read.
    fn fill_l1_from(&self, key: &str, hit: L2Hit, epoch_before_read: u64) -> Json {
        let Some(l1) = &self.l1 else { return Json::Text(Arc::from(hit.json)) };
        let remaining_ms = hit.remaining_ms.unwrap_or(self.config.default_ttl_ms);
        let lifetime = l1_lifetime(remaining_ms, self.l1_cap_ms());
        if lifetime.is_zero() {
            return Json::Text(Arc::from(hit.json));
        }
        let entry = l1.insert(key, hit.json.into_boxed_str(), lifetime).expect("a non-zero lifetime stores the entry");
        if self.epoch() != epoch_before_read {
            l1.remove(key);
        }
        Json::L1(entry)
    }

    async fn set(&self, key: &str, json: String, ttl_ms: u64) -> Outcome<()> {
        bump(&self.stats.sets);
        let written = match &self.l2 {
            Some(l2) => {
                let full = namespaced(&self.config.namespace, key);
                let announce = self.bus_payloads(BusOp::Keys { keys: vec![key.to_owned()] });
                let message = announce.first().map(|(_, payload)| payload.as_str());
                let result = self.l2_call(l2.set(&full, &json, ttl_ms, message)).await;
                if result.is_ok() && !announce.is_empty() {
                    bump(&self.stats.bus_published);
                }
                self.absorb(result, ())
            }
            None => Outcome::ok(()),
        };
        self.advance_epoch();
        if let Some(l1) = &self.l1 {
            l1.insert(key, json.into_boxed_str(), l1_lifetime(ttl_ms, self.l1_cap_ms()));
        }
        written
    }

    /// Runs `remove` on the L1 after the L2 removal took effect.
    fn after_l2_removal(&self, remove: impl FnOnce(&L1) -> ()) {
        self.advance_epoch();
        if let Some(l1) = &self.l1 {
            remove(l1);
        }
        self.l2_activity.notify_waiters();
    }

    fn removal_outcome(&self, removed: Result<u64>, published: Option<CacheError>) -> Outcome<u64> {
        let mut outcome = self.absorb(removed, 0);
        add(&self.stats.deletes, outcome.value);
        if outcome.error.is_none() {
            if let Some(error) = published {
                bump(&self.stats.errors);
                outcome.error = Some(error);
            }
        }
        outcome
    }

    async fn remove_matching(&self, pattern: &Pattern, op: BusOp) -> Outcome<u64> {
        let Some(l2) = &self.l2 else {
            let removed = self.l1.as_ref().map_or(0, |l1| l1.remove_matching(pattern));
            self.advance_epoch();
            add(&self.stats.deletes, removed);
            return Outcome::ok(removed);
        };
        let result = self.l2_call(l2.delete_matching(&self.config.namespace, pattern)).await;
        self.after_l2_removal(|l1| { l1.remove_matching(pattern); });
        let published = self.publish(op).await;
        self.removal_outcome(result, published)
    }

    fn bus_payloads(&self, op: BusOp) -> Vec<(u64, String)> {
        match (&self.bus, &self.l2) {
            (Some(_), Some(l2)) => {
                let next_seq = || self.last_bus_seq.fetch_add(1, Ordering::Relaxed) + 1;
                bus::encode(self.id, &self.config.namespace, op, l2.max_bus_message_bytes(), &next_seq)
            }
            _ => Vec::new(),
        }
    }

    /// Announces an invalidation on the bus and waits (at most the L2 timeout) for each message to come back on this
    /// process's own subscription: the server has then sent it to every other subscriber too, so an instance asked
    /// right after the call returns has, all but certainly, already dropped its copy. Returns the first failure.
    async fn publish(&self, op: BusOp) -> Option<CacheError> {
        let l2 = self.l2.as_ref()?;
        let wait_for_echo = self.bus.as_ref().is_some_and(|bus| bus.is_up());
        let mut echoes = Vec::new();
        for (seq, payload) in self.bus_payloads(op) {
            if wait_for_echo {
                let (sender, echo) = oneshot::channel();
                self.echo_waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(seq, sender);
                echoes.push((seq, echo));
            }
            if let Err(error) = self.l2_call(l2.publish(&payload)).await {
                self.forget_echoes(&echoes);
                return Some(error);
            }
            bump(&self.stats.bus_published);
        }
        let all_back = async {
            for (_, echo) in echoes.iter_mut() {
                let _ = echo.await;
            }
        };
        if tokio::time::timeout(self.config.l2_timeout(), all_back).await.is_err() {
            self.forget_echoes(&echoes);
        }
        None
    }

    fn forget_echoes(&self, echoes: &[(u64, oneshot::Receiver<()>)]) {
        let mut waiters = self.echo_waiters.lock().unwrap_or_else(|e| e.into_inner());
        echoes.iter().for_each(|(seq, _)| drop(waiters.remove(seq)));
    }

    /// After a miss: take the cross-process lock, or wait for its holder's value until `lockTimeout`. When a lock
    /// changes hands (its holder died and its hold ran out), the wait covers the new holder's hold, up to twice
    /// `lockTimeout` in all, so waiters do not all give up and load at the moment the new holder starts.
    async fn lock_or_wait(&self, key: &str) -> Outcome<LockStep> {
        let (Some(l2), true) = (&self.l2, self.config.distributed_lock) else {
            return Outcome::ok(LockStep::Lead(None));
        };
        let full = namespaced(&self.config.namespace, key);
        let lock_timeout = self.config.lock_timeout();
        let started = Instant::now();
        let mut deadline = started + lock_timeout;
        let mut waited = false;
        loop {
            let expires_in_ms = match self.l2_call(l2.try_lock(&full, lock_timeout)).await {
                Err(error) => return self.absorb(Err(error), LockStep::Lead(None)),
                Ok(LockAttempt::Acquired(lock)) => return self.recheck_after_lock(l2, &full, lock).await,
                Ok(LockAttempt::Held { expires_in_ms }) => expires_in_ms,
            };
            if !waited {
                waited = true;
                bump(&self.stats.lock_waits);
            }
            let now = Instant::now();
            if let Some(ms) = expires_in_ms {
                let hold_ends = now + Duration::from_millis(ms + LOCK_POLL_INTERVAL_MS);
                deadline = deadline.max(hold_ends).min(started + lock_timeout * 2);
            }
            if now >= deadline {
                bump(&self.stats.lock_timeouts);
                return Outcome::ok(LockStep::Lead(None));
            }
            let nap = Duration::from_millis(LOCK_POLL_INTERVAL_MS).min(deadline - now);
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = self.l2_activity.notified() => {}
            }
            let epoch_before_read = self.epoch();
            match self.l2_call(l2.get(&full)).await {
                Ok(Some(hit)) => return Outcome::ok(LockStep::Loaded { hit, epoch_before_read }),
                Ok(None) => {}
                Err(error) => return self.absorb(Err(error), LockStep::Lead(None)),
            }
        }
    }

    /// The holder before us may have stored the value and let go between our miss and our lock.
    async fn recheck_after_lock(&self, l2: &L2, full: &str, lock: LoadLock) -> Outcome<LockStep> {
        let epoch_before_read = self.epoch();
        match self.l2_call(l2.get(full)).await {
            Ok(Some(hit)) => {
                lock.release().await;
                Outcome::ok(LockStep::Loaded { hit, epoch_before_read })
            }
            Ok(None) => Outcome::ok(LockStep::Lead(Some(lock))),
            Err(error) => self.absorb(Err(error), LockStep::Lead(Some(lock))),
        }
    }

    /// Drops the whole L1: what the bus may have missed is unknown.
    fn drop_l1_for_lost_messages(&self) {
        self.advance_epoch();
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
    }
}

impl BusListener for Inner {
    fn on_message(&self, message: &BusMessage) {
        if message.sender == self.id {
            let waiter = self.echo_waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&message.seq);
            if let Some(waiter) = waiter {
                let _ = waiter.send(());
            }
            return;
        }
        if message.namespace != self.config.namespace {
            return;
        }
        bump(&self.stats.bus_received);
        self.advance_epoch();
        if let Some(l1) = &self.l1 {
            match &message.op {
                BusOp::Keys { keys } => keys.iter().for_each(|key| { l1.remove(key); }),
                BusOp::Pattern { pattern } => match Pattern::parse(pattern, MAX_BUS_PATTERN_BYTES) {
                    Ok(pattern) => { l1.remove_matching(&pattern); }
                    Err(_) => { l1.clear(); }
                },
                BusOp::Clear => { l1.clear(); }
            }
        }
        self.l2_activity.notify_waiters();
    }

    fn on_connection_lost(&self, error: CacheError) {
        self.drop_l1_for_lost_messages();
        self.report_background(&error);
    }

    fn on_connected(&self, reconnected: bool) {
        // Before the first subscription there was no connection to lose messages on; entries filled meanwhile were
        // capped at `busDownL1Ttl`, which bounds what they could have missed.
        if reconnected {
            self.drop_l1_for_lost_messages();
            bump(&self.stats.bus_reconnects);
        }
    }
}

fn start_background(inner: &Arc<Inner>) -> Vec<AbortHandle> {
    let mut tasks = Vec::new();
    if inner.l1.is_some() {
        tasks.push(crate::runtime::spawn(l1_housekeeping(Arc::downgrade(inner))).abort_handle());
    }
    if let Some(L2::Postgres(_)) = inner.l2.as_deref() {
        tasks.push(crate::runtime::spawn(expiry_sweeps(Arc::downgrade(inner))).abort_handle());
    }
    tasks
}

/// A ticker that skips what it missed rather than bursting to catch up.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// moka applies expirations only when the cache is used; this makes an idle L1 shrink too.
async fn l1_housekeeping(inner: Weak<Inner>) {
    let mut ticks = ticker(Duration::from_millis(L1_HOUSEKEEPING_INTERVAL_MS));
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Some(l1) = &inner.l1 {
            l1.run_pending_tasks();
        }
    }
}

async fn expiry_sweeps(inner: Weak<Inner>) {
    let Some(period_ms) = inner.upgrade().map(|i| i.config.postgres.cleanup_interval_ms) else { return };
    let mut ticks = ticker(Duration::from_millis(period_ms));
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let Some(L2::Postgres(pg)) = inner.l2.as_deref() else { return };
        // The sweep deletes in bounded batches; it gets more time than a call, being off every call's path.
        let swept = tokio::time::timeout(Duration::from_millis(period_ms.max(10_000)), pg.sweep_expired()).await;
        if let Ok(Err(error)) = swept {
            inner.report_background(&error);
        }
    }
}
