//! `getOrSet`: single-flight in the process, the L2's load lock across processes, and the lease that stores a loaded
//! value only if nothing changed the key while the loader ran.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{Inner, Json, Outcome, Store};
use crate::error::{CacheError, ErrorKind};
use crate::flight::{self, Flight, FlightResult, Joined};
use crate::key::namespaced;
use crate::l2::{L2Hit, LoadLock, LockAttempt, ServerTime, Write, WriteCondition, L2};
use crate::stats::bump;
use crate::tags::Tags;
use crate::ttl::Lifetime;

/// How often a `getOrSet` waiting on another process's lock looks for the value, unless the bus wakes it first.
const LOCK_POLL_INTERVAL_MS: u64 = 25;

/// The result of starting a `getOrSet`.
pub enum LoadStep {
    /// The value was cached, or another thread or process loaded it.
    Hit(Json),
    /// The caller must run the loader and [`LoadLease::complete`] or [`LoadLease::fail`] the lease.
    Lead(LoadLease),
    /// The loader of another thread failed with this error.
    Failed(CacheError),
    /// A stale value (within its grace), counted in `staleHits`: another caller's load failed, or outlasted the
    /// soft `timeout` of this one.
    Stale(Json),
}

enum LockStep {
    /// Another process loaded the value; `generation` is the key's generation just before the read that found it.
    Loaded { hit: L2Hit, generation: u64 },
    /// Load it: under the lock when there is one, fenced by the time of the last read that missed.
    Lead { lock: Option<LoadLock>, since: ServerTime, waited: bool },
    /// Another process's load outlasted the soft timeout: serve the stale value.
    Stale,
}

/// A stale value a `getOrSet` may serve, and how long it waits for a load before serving it.
struct Fallback {
    stale: Option<Json>,
    /// The soft `timeout`; it only applies when there is a stale value.
    soft_timeout: Option<Duration>,
}

impl Store {
    /// Starts a `getOrSet`: a hit, the result of another caller's load, a stale value, or a lease to load. With
    /// `wait_for_others` false (a caller whose wait on a load of its own thread ran out, counted here), a load in
    /// progress in the process is not waited for again. `default_ttl_ms` is the L1 lifetime of an L2 entry without
    /// expiry. With a stale value at hand, a wait for another caller's load lasts at most `soft_timeout`.
    pub async fn begin_load(
        &self,
        key: &str,
        wait_for_others: bool,
        default_ttl_ms: u64,
        soft_timeout: Option<Duration>,
    ) -> Outcome<LoadStep> {
        let inner = &self.inner;
        if !wait_for_others {
            bump(&inner.stats.lock_timeouts);
        }
        // Past a wait that ran out: load without the process's single-flight or the L2's lock.
        let lead_alone = |stale: Option<Json>| {
            let mut lease = inner.lease(key, None, None, None, Duration::ZERO, inner.generations.of(key));
            lease.keep_stale(stale);
            LoadStep::Lead(lease)
        };
        loop {
            if let Some(entry) = inner.l1_hit(key) {
                return Outcome::ok(LoadStep::Hit(Json::L1(entry)));
            }
            let fallback = Fallback { stale: inner.l1_stale(key).map(Json::L1), soft_timeout };
            match inner.flights.join(key) {
                Joined::Follower(_) if !wait_for_others => return Outcome::ok(lead_alone(fallback.stale)),
                Joined::Follower(flight) => {
                    bump(&inner.stats.lock_waits);
                    let lock_timeout = inner.config.lock_timeout();
                    // With a soft timeout, look for a stale value when it passes (the leader may have found one
                    // meanwhile); without one to serve, wait out the rest of `lockTimeout`.
                    let first_wait = soft_timeout.map_or(lock_timeout, |soft| soft.min(lock_timeout));
                    let mut result = flight::wait(flight.follow(), first_wait).await;
                    if result.is_none() {
                        let stale = fallback.stale.or_else(|| flight.stale().map(Json::Text));
                        match stale {
                            Some(stale) if soft_timeout.is_some() => return Outcome::ok(inner.serve_stale(stale)),
                            _ if first_wait < lock_timeout => {
                                result = flight::wait(flight.follow(), lock_timeout - first_wait).await
                            }
                            _ => {}
                        }
                    }
                    match result {
                        Some(FlightResult::Loaded(json)) => return Outcome::ok(LoadStep::Hit(Json::Text(json))),
                        Some(FlightResult::Failed(message)) => {
                            return Outcome::ok(LoadStep::Failed(CacheError::new(ErrorKind::LoaderFailed, message)))
                        }
                        Some(FlightResult::Stale(json)) => return Outcome::ok(inner.serve_stale(Json::Text(json))),
                        // The leader went away: join again, and one of the waiters leads.
                        Some(FlightResult::Abandoned) => continue,
                        None => {
                            bump(&inner.stats.lock_timeouts);
                            return Outcome::ok(lead_alone(None));
                        }
                    }
                }
                Joined::Leader(flight) => return inner.lead(key, flight, default_ttl_ms, fallback).await,
            }
        }
    }
}

impl Inner {
    /// A stale value served, counted.
    fn serve_stale(&self, stale: Json) -> LoadStep {
        bump(&self.stats.stale_hits);
        LoadStep::Stale(stale)
    }

    async fn lead(
        self: &Arc<Self>,
        key: &str,
        flight: Arc<Flight>,
        default_ttl_ms: u64,
        mut fallback: Fallback,
    ) -> Outcome<LoadStep> {
        let generation = self.generations.of(key);
        let Some(l2) = self.l2.clone() else {
            // Memory only: the L1 missed, and there is nothing else to ask. The load's start, by the store's clock,
            // is the write time its value gets: a tag invalidated while the loader runs makes it a miss.
            bump(&self.stats.misses);
            let started = Some(ServerTime(self.local_now_us()));
            let mut lease = self.lease(key, Some(flight), None, started, Duration::ZERO, generation);
            lease.keep_stale(fallback.stale);
            return Outcome::ok(LoadStep::Lead(lease));
        };
        // The read, the lock and the write of one `getOrSet` share one `l2Timeout`; waiting for another loader
        // does not count (it is bounded by `lockTimeout`).
        let deadline = self.deadline();
        let full = namespaced(&self.config.namespace, key);
        let read = match self.l2_get(&l2, &full, deadline).await {
            Ok(read) => read,
            Err(error) => {
                // The L2 is failing: lead without asking it for a lock, and do not wait for it again. The L1's
                // stale copy is all there is to fall back on.
                let mut lease = self.lease(key, Some(flight), None, None, Duration::ZERO, generation);
                lease.keep_stale(fallback.stale);
                return self.absorb(Err(error), LoadStep::Lead(lease));
            }
        };
        if let Some(hit) = read.hit {
            let json = self.l2_hit(key, hit, generation, default_ttl_ms);
            self.flights.finish(key, &flight, FlightResult::Loaded(Arc::from(json.as_str())));
            return Outcome::ok(LoadStep::Hit(json));
        }
        bump(&self.stats.misses);
        // The L2 answered: its stale copy, or none (it may have been deleted), is the one to fall back on. The L1
        // keeps it too, for the callers of this process that come while the load runs.
        fallback.stale = read.stale.map(|stale| self.fill_l1_from(key, stale, generation, default_ttl_ms));
        let stale_after = fallback.stale.as_ref().and(fallback.soft_timeout);
        let locked = self.lock_or_wait(&l2, key, &full, read.at, deadline, stale_after).await;
        let value = match locked.value {
            LockStep::Loaded { hit, generation } => {
                let json = self.fill_l1_from(key, hit, generation, default_ttl_ms);
                self.flights.finish(key, &flight, FlightResult::Loaded(Arc::from(json.as_str())));
                LoadStep::Hit(json)
            }
            LockStep::Lead { lock, since, waited } => {
                let budget = match (&locked.error, waited) {
                    (Some(_), _) => Duration::ZERO,
                    (None, true) => self.config.l2_timeout(),
                    (None, false) => deadline.saturating_duration_since(Instant::now()),
                };
                let mut lease = self.lease(key, Some(flight), lock, Some(since), budget, generation);
                lease.keep_stale(fallback.stale);
                LoadStep::Lead(lease)
            }
            LockStep::Stale => {
                let stale = fallback.stale.expect("a wait ends in the stale value only when there is one");
                self.flights.finish(key, &flight, FlightResult::Stale(Arc::from(stale.as_str())));
                self.serve_stale(stale)
            }
        };
        Outcome { value, error: locked.error }
    }

    pub(super) fn lease(
        self: &Arc<Self>,
        key: &str,
        flight: Option<Arc<Flight>>,
        lock: Option<LoadLock>,
        since: Option<ServerTime>,
        l2_budget: Duration,
        generation: u64,
    ) -> LoadLease {
        bump(&self.stats.loader_calls);
        LoadLease {
            inner: self.clone(),
            key: key.to_owned(),
            flight,
            lock: lock.map(|lock| HeldLock::new(lock, self.config.lock_timeout())),
            since,
            generation,
            l2_budget,
            stale: None,
        }
    }

    /// After a miss at `missed_at`: take the cross-process lock, or wait for its holder's value until `lockTimeout`.
    /// When a lock changes hands (its holder died and its hold ran out), the wait covers the new holder's hold, up
    /// to twice `lockTimeout` in all, so waiters do not all give up and load at the moment the new holder starts.
    /// With a stale value to serve, the wait ends at `stale_after` (the soft timeout) with [`LockStep::Stale`].
    async fn lock_or_wait(
        &self,
        l2: &L2,
        key: &str,
        full: &str,
        missed_at: ServerTime,
        deadline: Instant,
        stale_after: Option<Duration>,
    ) -> Outcome<LockStep> {
        let lead_unlocked = |since, waited| LockStep::Lead { lock: None, since, waited };
        if !self.config.distributed_lock {
            return Outcome::ok(lead_unlocked(missed_at, false));
        }
        let lock_timeout = self.config.lock_timeout();
        let started = Instant::now();
        let mut wait_until = started + lock_timeout;
        let mut since = missed_at;
        let mut waited = false;
        loop {
            let attempt_deadline = if waited { self.deadline() } else { deadline };
            let expires_in_ms = match self.l2_call(attempt_deadline, || l2.try_lock(full, lock_timeout)).await {
                Err(error) => return self.absorb(Err(error), lead_unlocked(since, waited)),
                Ok(LockAttempt::Acquired(lock)) => {
                    return self.recheck_after_lock(l2, key, full, lock, attempt_deadline, since, waited).await
                }
                Ok(LockAttempt::Held { expires_in_ms }) => expires_in_ms,
            };
            if !waited {
                waited = true;
                bump(&self.stats.lock_waits);
            }
            let now = Instant::now();
            if let Some(ms) = expires_in_ms {
                let hold_ends = now + Duration::from_millis(ms + LOCK_POLL_INTERVAL_MS);
                wait_until = wait_until.max(hold_ends).min(started + lock_timeout * 2);
            }
            if stale_after.is_some_and(|soft| now >= started + soft) {
                return Outcome::ok(LockStep::Stale);
            }
            if now >= wait_until {
                bump(&self.stats.lock_timeouts);
                return Outcome::ok(lead_unlocked(since, waited));
            }
            let until = stale_after.map_or(wait_until, |soft| wait_until.min(started + soft));
            let nap = Duration::from_millis(LOCK_POLL_INTERVAL_MS).min(until - now);
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = self.l2_activity.notified() => {}
            }
            let generation = self.generations.of(key);
            match self.l2_get(l2, full, self.deadline()).await {
                Ok(read) => match read.hit {
                    Some(hit) => return Outcome::ok(LockStep::Loaded { hit, generation }),
                    None => since = read.at,
                },
                Err(error) => return self.absorb(Err(error), lead_unlocked(since, waited)),
            }
        }
    }

    /// The holder before us may have stored the value and let go between our miss (at `since`) and our lock.
    #[allow(clippy::too_many_arguments)]
    async fn recheck_after_lock(
        &self,
        l2: &L2,
        key: &str,
        full: &str,
        lock: LoadLock,
        deadline: Instant,
        since: ServerTime,
        waited: bool,
    ) -> Outcome<LockStep> {
        let generation = self.generations.of(key);
        match self.l2_get(l2, full, deadline).await {
            Ok(read) => match read.hit {
                Some(hit) => {
                    lock.release().await;
                    Outcome::ok(LockStep::Loaded { hit, generation })
                }
                None => Outcome::ok(LockStep::Lead { lock: Some(lock), since: read.at, waited }),
            },
            // The failure leaves the lease no L2 budget: the value is served, and kept in the L1 only briefly.
            Err(error) => {
                lock.release().await;
                self.absorb(Err(error), LockStep::Lead { lock: None, since, waited })
            }
        }
    }
}

/// A load lock held by a lease, released when the lease ends or, at the latest, after `lockTimeout`: a loader that
/// never settles must not keep other processes waiting on every miss of its key.
struct HeldLock(Arc<Mutex<Option<LoadLock>>>);

impl HeldLock {
    fn new(lock: LoadLock, hold: Duration) -> Self {
        let slot = Arc::new(Mutex::new(Some(lock)));
        let expiring: Weak<Mutex<Option<LoadLock>>> = Arc::downgrade(&slot);
        crate::runtime::spawn(async move {
            tokio::time::sleep(hold).await;
            let lock = expiring.upgrade().and_then(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).take());
            if let Some(lock) = lock {
                lock.release().await;
            }
        });
        HeldLock(slot)
    }

    async fn release(self) {
        let lock = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(lock) = lock {
            lock.release().await;
        }
    }
}

/// The right to store the value of a key that nobody has: from this process's single-flight and, across
/// processes, the L2's lock. The value is stored only if the key did not change, on any instance, since the miss
/// that started the load. Dropping the lease unfinished hands the load over to whoever waits on it.
pub struct LoadLease {
    inner: Arc<Inner>,
    key: String,
    flight: Option<Arc<Flight>>,
    lock: Option<HeldLock>,
    /// The L2 time of the miss; `None` when memory only or when the L2 failed on the way in.
    since: Option<ServerTime>,
    /// The key's generation in this process when the load began.
    generation: u64,
    /// What is left of the call's `l2Timeout` for the write.
    l2_budget: Duration,
    /// The stale value (within its grace) the caller may serve if the loader fails or is slow.
    stale: Option<Json>,
}

impl LoadLease {
    /// Keeps the stale value to fall back on, and shares it with the callers waiting on this load.
    fn keep_stale(&mut self, stale: Option<Json>) {
        if let (Some(flight), Some(stale)) = (&self.flight, &stale) {
            flight.offer_stale(stale.as_str());
        }
        self.stale = stale;
    }

    /// The stale value (within its grace) to serve if the loader fails or outlasts the soft timeout: from the L2
    /// when it answered, else from the L1.
    pub fn stale(&self) -> Option<&Json> {
        self.stale.as_ref()
    }

    /// Stores the loader's value unless the key changed while it ran, hands it to the waiters, then lets other
    /// processes go. The value is `true` when it was stored in the L2 (or, memory only, in the L1).
    pub async fn complete(mut self, json: String, lifetime: Lifetime, tags: Tags) -> Outcome<bool> {
        let inner = self.inner.clone();
        let shared: Arc<str> = Arc::from(json.as_str());
        let unchanged_here = inner.generations.of(&self.key) == self.generation;
        let outcome = match (&inner.l2, self.since) {
            // Memory only: the L1 is the only copy, so a change made while the loader ran must stay.
            (None, started) => {
                if unchanged_here {
                    inner.apply_write(&self.key, json.into_boxed_str(), lifetime, &tags, started, self.generation);
                } else {
                    bump(&inner.stats.loads_discarded);
                }
                Outcome::ok(unchanged_here)
            }
            (Some(l2), Some(since)) if !self.l2_budget.is_zero() => {
                let generation = inner.generations.of(&self.key);
                let condition = WriteCondition::UnchangedSince(since);
                let deadline = Instant::now() + self.l2_budget;
                let write = Write { lifetime, condition, bus_message: None, tags: &tags };
                match inner.write_to_l2(l2, &self.key, &json, write, deadline).await {
                    Ok(Some(at)) => {
                        self.store_in_l1(json, lifetime, &tags, Some(at), unchanged_here, generation);
                        Outcome::ok(true)
                    }
                    Ok(None) => {
                        bump(&inner.stats.loads_discarded);
                        Outcome::ok(false)
                    }
                    Err(error) => {
                        self.store_in_l1(json, lifetime, &tags, None, unchanged_here, generation);
                        inner.absorb(Err(error), false)
                    }
                }
            }
            // The L2 failed on the way in: no time left for it.
            (Some(_), _) => {
                let generation = inner.generations.of(&self.key);
                self.store_in_l1(json, lifetime, &tags, None, unchanged_here, generation);
                Outcome::ok(false)
            }
        };
        bump(&inner.stats.sets);
        if let Some(flight) = self.flight.take() {
            inner.flights.finish(&self.key, &flight, FlightResult::Loaded(shared));
        }
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
        outcome
    }

    fn store_in_l1(
        &self,
        json: String,
        lifetime: Lifetime,
        tags: &Tags,
        written: Option<ServerTime>,
        unchanged_here: bool,
        generation: u64,
    ) {
        if unchanged_here {
            self.inner.apply_write(&self.key, json.into_boxed_str(), lifetime, tags, written, generation);
        } else {
            self.inner.forget_key(&self.key);
        }
    }

    /// Passes the loader's error to the waiters of this process; caches nothing. With a stale value, which the caller
    /// serves instead (stale-if-error), the waiters get that value.
    pub async fn fail(mut self, message: String) {
        if let Some(flight) = self.flight.take() {
            let result = match &self.stale {
                Some(stale) => FlightResult::Stale(Arc::from(stale.as_str())),
                None => FlightResult::Failed(message),
            };
            self.inner.flights.finish(&self.key, &flight, result);
        }
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
    }
}

impl Drop for LoadLease {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            self.inner.flights.finish(&self.key, &flight, FlightResult::Abandoned);
        }
    }
}
