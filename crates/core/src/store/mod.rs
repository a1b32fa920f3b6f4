//! A store: one namespace's L1 in front of its L2, with the bus, single-flight and counters around them.
//!
//! Degradation: an L2 failure never fails a call. Reads become misses, writes still reach the L1 (for at most
//! `busDownL1Ttl`, since no other instance saw them), and each failure comes back in the call's [`Outcome`] (and is
//! counted) so the caller can report it before its call settles. A call stops at its first L2 failure, and all the
//! round trips of one call share one `l2Timeout` (see [`Inner::deadline`]).
//!
//! Coherence within the process rests on per-key generations ([`coherence::Generations`]): an L1 fill or write that
//! raced another change of its key is dropped rather than risk serving what the L2 no longer holds. Across
//! processes it rests on the bus (see [`crate::bus`]) and on the L2's write fence (see
//! [`crate::l2::WriteCondition`]).

mod background;
mod batch;
mod breaker;
mod coherence;
mod l2_call;
mod load;
mod refresh;
mod tagging;
#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::bus::{Bus, BusListener, BusOp};
use crate::config::StoreConfig;
use crate::error::{CacheError, Result};
use crate::flight::Flights;
use crate::key::namespaced;
use crate::l1::{L1Entry, L1};
use crate::l2::{L2Hit, L2Read, ServerTime, Tagged, Write, WriteCondition, L2};
use crate::pattern::Pattern;
use crate::stats::{add, bump, Gauges, L2State, Stats, StatsSnapshot};
use crate::tags::{TagTimes, Tags, Verdict};
use crate::ttl::Lifetime;

use breaker::Breaker;
pub use breaker::BreakerConfig;
use coherence::{EchoWaiters, Generations};

pub use batch::BatchEntry;
pub use load::{LoadLease, LoadStep};

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

/// Where what belongs to no call is reported: failures (bus losses, sweeps) and the transitions of the L2's circuit
/// breaker and of the bus.
pub trait ErrorSink: Send + Sync {
    /// Called on a thread of the core runtime: hand the error over, do not block.
    fn report(&self, error: &CacheError);
    /// A transition, once each time it happens (never per call), on a thread of the core runtime: hand it over, do
    /// not block. The default ignores it.
    fn transition(&self, _event: &Transition) {}
}

/// A change of the store's connection state, reported once when it happens (see [`ErrorSink::transition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// The L2 was found down (the outage that opened the circuit breaker): calls skip it from now on.
    BreakerOpen,
    /// The breaker's first probe of this outage is under way; calls still skip the L2 until one answers.
    BreakerHalfOpen,
    /// A probe found the L2 back: the breaker closed and calls use the L2 again.
    BreakerClosed,
    /// The bus subscribed and a probe came back on it, the first time.
    BusSubscribed,
    /// The bus connection was lost; the L1 was dropped.
    BusLost,
    /// The bus connection stopped carrying probes without closing (half-open); the L1 was dropped.
    BusHalfOpen,
    /// The bus is subscribed and proven again after a loss; the L1 was dropped.
    BusReconnected,
}

impl Transition {
    /// What it is a transition of: `"breaker"` or `"bus"`.
    pub fn subject(self) -> &'static str {
        match self {
            Transition::BreakerOpen | Transition::BreakerHalfOpen | Transition::BreakerClosed => "breaker",
            _ => "bus",
        }
    }

    /// The state entered: `"open"`, `"half-open"`, `"closed"`; `"subscribed"`, `"lost"`, `"half-open"`,
    /// `"reconnected"`.
    pub fn state(self) -> &'static str {
        match self {
            Transition::BreakerOpen => "open",
            Transition::BreakerHalfOpen | Transition::BusHalfOpen => "half-open",
            Transition::BreakerClosed => "closed",
            Transition::BusSubscribed => "subscribed",
            Transition::BusLost => "lost",
            Transition::BusReconnected => "reconnected",
        }
    }

    /// Every transition, for the rules the JavaScript side and the typings are held to.
    pub const ALL: [Transition; 7] = [
        Transition::BreakerOpen,
        Transition::BreakerHalfOpen,
        Transition::BreakerClosed,
        Transition::BusSubscribed,
        Transition::BusLost,
        Transition::BusHalfOpen,
        Transition::BusReconnected,
    ];
}

pub(crate) struct Inner {
    /// This store, for the tasks it starts (the breaker's probe).
    me: Weak<Inner>,
    id: u64,
    config: StoreConfig,
    l1: Option<L1>,
    l2: Option<Arc<L2>>,
    bus: Option<Arc<Bus>>,
    stats: Stats,
    generations: Generations,
    flights: Flights,
    l2_activity: Notify,
    error_sinks: Mutex<Vec<Weak<dyn ErrorSink>>>,
    last_bus_seq: AtomicU64,
    echo_waiters: EchoWaiters,
    breaker: Breaker,
    last_reconnect: Mutex<Option<Instant>>,
    /// The tags' invalidation times this store knows of.
    tag_times: TagTimes,
    /// The memory-only store's clock of writes and tag invalidations (see [`Inner::local_now_us`]).
    local_clock: AtomicU64,
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
        let _runtime = crate::runtime::enter();
        let l2 = L2::open(&config)?.map(Arc::new);
        let bus = match (&l2, config.bus) {
            (Some(l2), true) => Some(bus_for(l2)),
            _ => None,
        };
        let l1 = config.l1.as_ref().map(|c| L1::new(c.max_entries, c.max_bytes));
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            id: rand::random(),
            config,
            l1,
            l2,
            bus,
            stats: Stats::default(),
            generations: Generations::default(),
            flights: Flights::default(),
            l2_activity: Notify::new(),
            error_sinks: Mutex::new(Vec::new()),
            last_bus_seq: AtomicU64::new(0),
            echo_waiters: EchoWaiters::default(),
            breaker: Breaker::default(),
            last_reconnect: Mutex::new(None),
            tag_times: TagTimes::default(),
            local_clock: AtomicU64::new(0),
        });
        if let Some(bus) = &inner.bus {
            let listener: Weak<dyn BusListener> = Arc::downgrade(&inner) as Weak<dyn BusListener>;
            bus.add_listener(listener);
        }
        let background = background::start(&inner);
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

    /// Reads a key from the L1, else from the L2 (copying it into the L1). `default_ttl_ms` is the L1 lifetime of an
    /// L2 entry that has no expiry (one written by another application). The front door does the L1 part itself.
    #[cfg(test)]
    pub async fn get(&self, key: &str, default_ttl_ms: u64) -> Outcome<Option<Json>> {
        match self.inner.l1_hit(key) {
            Some(entry) => Outcome::ok(Some(Json::L1(entry))),
            None => self.read_l2(key, default_ttl_ms).await,
        }
    }

    /// A read after the caller's own L1 lookup missed: the L2 only, a hit copied into the L1 (for the rest of its
    /// TTL, or `default_ttl_ms` when it has none: one written by another application).
    pub async fn read_l2(&self, key: &str, default_ttl_ms: u64) -> Outcome<Option<Json>> {
        let inner = &self.inner;
        let Some(l2) = &inner.l2 else {
            bump(&inner.stats.misses);
            return Outcome::ok(None);
        };
        let generation = inner.generations.of(key);
        let full = namespaced(&inner.config.namespace, key);
        let read = inner.absorb(inner.l2_get(l2, &full, inner.deadline()).await.map(|r| r.hit), None);
        match read.value {
            Some(hit) => Outcome { value: Some(inner.l2_hit(key, hit, generation, default_ttl_ms)), error: read.error },
            None => {
                bump(&inner.stats.misses);
                Outcome { value: None, error: read.error }
            }
        }
    }

    /// A read that also finds a stale entry: the value, and whether it is stale (past its TTL within its grace, or
    /// soft-invalidated by a tag). A fresh L2 hit is copied into the L1, a stale one is not; when the L2 fails, the
    /// L1's stale copy stands in, as it does for a failing `getOrSet`. Stale answers count as stale hits.
    pub async fn read_allowing_stale(&self, key: &str, default_ttl_ms: u64) -> Outcome<Option<(Json, bool)>> {
        let inner = &self.inner;
        if let Some(entry) = inner.l1_hit(key) {
            return Outcome::ok(Some((Json::L1(entry), false)));
        }
        let stale_in_l1 = || inner.l1_stale(key).map(|entry| (Json::L1(entry), true));
        let Some(l2) = &inner.l2 else {
            return Outcome::ok(inner.counted(stale_in_l1()));
        };
        let generation = inner.generations.of(key);
        let full = namespaced(&inner.config.namespace, key);
        match inner.l2_get(l2, &full, inner.deadline()).await {
            Ok(L2Read { hit: Some(hit), .. }) => {
                Outcome::ok(Some((inner.l2_hit(key, hit, generation, default_ttl_ms), false)))
            }
            Ok(L2Read { stale, .. }) => {
                Outcome::ok(inner.counted(stale.map(|hit| (Json::Text(Arc::from(hit.json)), true))))
            }
            Err(error) => {
                let fallback = stale_in_l1();
                inner.absorb(Err(error), inner.counted(fallback))
            }
        }
    }

    /// Writes a value to both tiers, fresh for the lifetime's TTL then kept stale for its grace, and announces it.
    /// When the L2 does not take it, the L1 keeps it for at most `busDownL1Ttl`, with no grace: no other instance
    /// saw it.
    pub async fn set(&self, key: &str, json: String, lifetime: Lifetime, tags: Tags) -> Outcome<()> {
        let inner = &self.inner;
        let generation = inner.generations.of(key);
        let Some(l2) = &inner.l2 else {
            let written = Some(ServerTime(inner.local_now_us()));
            inner.apply_write(key, json.into_boxed_str(), lifetime, &tags, written, generation);
            bump(&inner.stats.sets);
            return Outcome::ok(());
        };
        let write = Write { lifetime, condition: WriteCondition::Always, bus_message: None, tags: &tags };
        let result = inner.write_to_l2(l2, key, &json, write, inner.deadline()).await;
        let written = result.as_ref().ok().copied().flatten();
        inner.apply_write(key, json.into_boxed_str(), lifetime, &tags, written, generation);
        inner.flights.detach(key);
        bump(&inner.stats.sets);
        inner.absorb(result.map(|_| ()), ())
    }

    /// The L2's time now, in µs by its clock, from a read of `key` (memory only: the store's clock): a
    /// [`Self::set_fenced`] of a value read after it is dropped if the key or one of its tags changed since. `None`
    /// when the L2 failed (the failure in the outcome).
    pub async fn write_fence(&self, key: &str) -> Outcome<Option<ServerTime>> {
        let inner = &self.inner;
        let Some(l2) = &inner.l2 else {
            return Outcome::ok(Some(ServerTime(inner.local_now_us())));
        };
        let full = namespaced(&inner.config.namespace, key);
        let read = inner.l2_get(l2, &full, inner.deadline()).await.map(|read| Some(read.at));
        inner.absorb(read, None)
    }

    /// Writes a value made from data read after `since` (a [`Self::write_fence`]), as `getOrSet` stores a loader's:
    /// only if neither the key nor any of its tags changed at or after `since`, within `maxLoadTime`, since the value
    /// may predate that change. `true` when stored; a dropped write counts as a discarded load and leaves no L1 copy.
    /// When the L2 fails nothing is stored: no one can vouch that the value is not older than a change.
    pub async fn set_fenced(
        &self,
        key: &str,
        json: String,
        lifetime: Lifetime,
        tags: Tags,
        since: ServerTime,
    ) -> Outcome<bool> {
        let inner = &self.inner;
        let generation = inner.generations.of(key);
        let Some(l2) = &inner.l2 else {
            bump(&inner.stats.sets);
            // Memory only: the tags' invalidations are all this process's own, in its table.
            let unchanged = inner.tag_times.verdict(&tags, since.0) == Verdict::Valid;
            if unchanged {
                let written = Some(ServerTime(inner.local_now_us()));
                inner.apply_write(key, json.into_boxed_str(), lifetime, &tags, written, generation);
            } else {
                bump(&inner.stats.loads_discarded);
            }
            return Outcome::ok(unchanged);
        };
        let condition = WriteCondition::UnchangedSince(since);
        let write = Write { lifetime, condition, bus_message: None, tags: &tags };
        let outcome = match inner.write_to_l2(l2, key, &json, write, inner.deadline()).await {
            Ok(Some(at)) => {
                inner.apply_write(key, json.into_boxed_str(), lifetime, &tags, Some(at), generation);
                Outcome::ok(true)
            }
            Ok(None) => {
                bump(&inner.stats.loads_discarded);
                inner.forget_key(key);
                Outcome::ok(false)
            }
            Err(error) => inner.absorb(Err(error), false),
        };
        inner.flights.detach(key);
        bump(&inner.stats.sets);
        outcome
    }

    /// Removes keys from both tiers and waits for the bus to carry the removal; counts what the L2 held (the L1 when
    /// memory only).
    pub async fn delete(&self, keys: Vec<String>) -> Outcome<u64> {
        let inner = &self.inner;
        if keys.is_empty() {
            return Outcome::ok(0);
        }
        let Some(l2) = &inner.l2 else {
            let removed = keys.iter().filter(|key| inner.forget_key(key)).count() as u64;
            add(&inner.stats.deletes, removed);
            return Outcome::ok(removed);
        };
        let deadline = inner.deadline();
        let full: Vec<String> = keys.iter().map(|k| namespaced(&inner.config.namespace, k)).collect();
        let mut announcement = inner.announce(BusOp::Keys { keys: keys.clone() });
        let first = announcement.first_payload();
        let result = inner.l2_call(deadline, || l2.delete(&full, first.as_deref())).await;
        keys.iter().for_each(|key| {
            inner.forget_key(key);
        });
        inner.l2_activity.notify_waiters();
        let confirmed = match &result {
            Ok(_) => inner.confirm(&mut announcement, deadline).await,
            Err(_) => {
                inner.forget_echoes(&announcement);
                None
            }
        };
        inner.removal_outcome(result, confirmed)
    }

    /// Whether a live entry (fresh, and not invalidated by a tag) exists in either tier; counts neither a hit nor a
    /// miss.
    pub async fn has(&self, key: &str) -> Outcome<bool> {
        let inner = &self.inner;
        let fresh = inner.l1.as_ref().and_then(|l1| l1.get(key));
        if fresh.is_some_and(|entry| inner.verdict_of(&entry) == Verdict::Valid) {
            return Outcome::ok(true);
        }
        let Some(l2) = &inner.l2 else {
            return Outcome::ok(false);
        };
        let full = namespaced(&inner.config.namespace, key);
        inner.absorb(inner.l2_get(l2, &full, inner.deadline()).await.map(|read| read.hit.is_some()), false)
    }

    /// Removes the namespace's keys matching `pattern`.
    pub async fn invalidate_pattern(&self, pattern: &Pattern, glob: &str) -> Outcome<u64> {
        self.inner.remove_matching(pattern, BusOp::Pattern { pattern: glob.to_owned() }).await
    }

    /// Removes every key of the namespace.
    pub async fn clear(&self) -> Outcome<u64> {
        self.inner.remove_matching(&Pattern::everything(), BusOp::Clear).await
    }

    /// A snapshot of the counters and the L1 and bus gauges, taken after applying pending L1 housekeeping.
    pub fn stats(&self) -> StatsSnapshot {
        // moka counts lazily; settling it first makes `l1Entries` agree with what was just written.
        self.run_l1_housekeeping();
        let (entries, bytes) = self.inner.l1.as_ref().map_or((0, 0), |l1| (l1.entry_count(), l1.bytes()));
        let inner = &self.inner;
        let gauges = Gauges {
            l1_entries: entries,
            l1_bytes: bytes,
            bus_up: inner.bus.as_ref().is_some_and(|bus| bus.is_up()),
            l2_state: match (&inner.l2, inner.breaker.is_open()) {
                (None, _) => L2State::None,
                (Some(_), false) => L2State::Up,
                (Some(_), true) => L2State::Down,
            },
        };
        inner.stats.snapshot(gauges)
    }

    /// Counts a `getOrSet` that waits for a load run outside the core (by its own thread, in the binding).
    pub fn count_lock_wait(&self) {
        bump(&self.inner.stats.lock_waits);
    }

    /// Counts a `getOrSet` answered with a stale value by the binding (its loader failed or outran its `timeout`).
    pub fn count_stale_hit(&self) {
        bump(&self.inner.stats.stale_hits);
    }

    /// Applies pending L1 expirations now (the store also does it every second by itself).
    pub fn run_l1_housekeeping(&self) {
        if let Some(l1) = &self.inner.l1 {
            l1.run_pending_tasks();
        }
    }
}

impl Inner {
    fn report_background(&self, error: &CacheError) {
        bump(&self.stats.errors);
        self.sinks().iter().for_each(|sink| sink.report(error));
    }

    /// Tells every sink of a transition; the caller makes sure it happens once per change.
    fn report_transition(&self, event: Transition) {
        self.sinks().iter().for_each(|sink| sink.transition(&event));
    }

    fn sinks(&self) -> Vec<Arc<dyn ErrorSink>> {
        self.error_sinks.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(Weak::upgrade).collect()
    }

    /// An L1 entry fresh or within its grace (and not invalidated by a tag), counted as nothing: what a load may
    /// fall back on.
    fn l1_stale(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.l1.as_ref()?.get_stale(key).filter(|entry| self.verdict_of(entry) != Verdict::Gone)
    }

    /// A stale answer counted as a stale hit, none as a miss.
    fn counted(&self, stale: Option<(Json, bool)>) -> Option<(Json, bool)> {
        bump(if stale.is_some() { &self.stats.stale_hits } else { &self.stats.misses });
        stale
    }

    /// A live L1 entry whose tags were not invalidated since it was written, counted as an L1 hit.
    fn l1_hit(&self, key: &str) -> Option<Arc<L1Entry>> {
        let entry = self.l1.as_ref()?.get(key)?;
        if entry.tagged.is_some() && self.verdict_of(&entry) != Verdict::Valid {
            return None;
        }
        bump(&self.stats.hits);
        bump(&self.stats.l1_hits);
        Some(entry)
    }

    /// An L2 hit, counted, copied into the L1 (see [`Self::fill_l1_from`]).
    fn l2_hit(&self, key: &str, hit: L2Hit, generation: u64, default_ttl_ms: u64) -> Json {
        bump(&self.stats.hits);
        bump(&self.stats.l2_hits);
        self.fill_l1_from(key, hit, generation, default_ttl_ms)
    }

    /// Copies an L2 entry into the L1 for the rest of its TTL and grace (a stale one for the rest of its grace, so
    /// that this process's other callers find it), unless the key changed since `generation`, taken before the
    /// read: the read may then have raced a write, and the fill is dropped rather than risk serving stale data.
    fn fill_l1_from(&self, key: &str, hit: L2Hit, generation: u64, default_ttl_ms: u64) -> Json {
        let Some(l1) = &self.l1 else {
            return Json::Text(Arc::from(hit.json));
        };
        let remaining = Lifetime { ttl_ms: hit.remaining_ms.unwrap_or(default_ttl_ms), grace_ms: hit.grace_ms };
        let (fresh, grace) = self.l1_lifetimes(remaining, true);
        if fresh.is_zero() && grace.is_zero() {
            return Json::Text(Arc::from(hit.json));
        }
        let entry =
            l1.insert(key, hit.json.into_boxed_str(), fresh, grace, hit.tagged).expect("a non-zero lifetime stores it");
        // Inserted first, checked after: a change that lands in between is seen by the check, or removes the entry.
        if self.generations.of(key) != generation {
            l1.remove(key);
        }
        Json::L1(entry)
    }

    /// Puts a write of this process into the L1, unless another change of the key raced it (`generation`, taken
    /// before the write reached the L2, then moved by more than this write): the L1 then drops the key, which is
    /// only ever a miss, whichever write the L2 kept. `written` is when the write reached the L2, by its clock (the
    /// store's clock when memory only), `None` when it did not: the L1 then keeps it briefly, and its tags judge it
    /// as written at the beginning of time, so any invalidation of them ever seen makes it a miss.
    fn apply_write(
        &self,
        key: &str,
        json: Box<str>,
        lifetime: Lifetime,
        tags: &Tags,
        written: Option<ServerTime>,
        generation: u64,
    ) {
        self.generations.bump(key);
        let Some(l1) = &self.l1 else { return };
        let (fresh, grace) = self.l1_lifetimes(lifetime, written.is_some());
        let tagged =
            (!tags.is_empty()).then(|| Tagged { tags: tags.clone(), written_us: written.map_or(0, |at| at.0) });
        // Memory only, the L1 is the store itself: there is no L2 to disagree with, the last insert is the value, and
        // dropping it on a moved generation (which a write of another key in the same stripe also moves) would lose
        // the write.
        if l1.insert(key, json, fresh, grace, tagged).is_some()
            && self.l2.is_some()
            && self.generations.of(key) != generation.wrapping_add(1)
        {
            l1.remove(key);
        }
    }

    /// Drops a key from the L1 and from the loads in progress; true when a live L1 entry was there.
    fn forget_key(&self, key: &str) -> bool {
        self.generations.bump(key);
        self.flights.detach(key);
        self.l1.as_ref().is_some_and(|l1| l1.remove(key))
    }

    /// Drops every key matching `pattern` from the L1 and every load in progress; returns how many live L1 entries
    /// went.
    fn forget_matching(&self, pattern: &Pattern) -> u64 {
        self.generations.bump_all();
        self.flights.detach_all();
        self.l1.as_ref().map_or(0, |l1| l1.remove_matching(pattern))
    }

    fn removal_outcome(&self, removed: Result<u64>, unconfirmed: Option<CacheError>) -> Outcome<u64> {
        let mut outcome = self.absorb(removed, 0);
        add(&self.stats.deletes, outcome.value);
        if outcome.error.is_none() {
            outcome.error = unconfirmed;
        }
        outcome
    }

    /// `invalidatePattern` and `clear`. The removal is bounded by the fence window (`maxLoadTime`, at least
    /// `l2Timeout`), its announcement by `l2Timeout`; when the removal fails, the call stops there.
    async fn remove_matching(&self, pattern: &Pattern, op: BusOp) -> Outcome<u64> {
        let Some(l2) = &self.l2 else {
            let removed = self.forget_matching(pattern);
            add(&self.stats.deletes, removed);
            return Outcome::ok(removed);
        };
        // Many keys take many round trips (each bounded by `l2Timeout` on Redis): the removal as a whole gets the
        // fence window, which is how long its namespace marker keeps loads that started before it from storing.
        let budget = self.config.l2_timeout().max(self.config.fence_window());
        let deadline = tokio::time::Instant::now() + budget;
        let result = self.l2_call(deadline, || l2.delete_matching(&self.config.namespace, pattern)).await;
        self.forget_matching(pattern);
        self.l2_activity.notify_waiters();
        let confirmed = match &result {
            Ok(_) => {
                let mut announcement = self.announce(op);
                self.confirm(&mut announcement, self.deadline()).await
            }
            Err(_) => None,
        };
        self.removal_outcome(result, confirmed)
    }
}
