//! The store's hard parts on the in-memory L2 ([`crate::l2::memory`]) with tokio's paused clock: every race is made
//! to happen, every timeout is measured in virtual time, and nothing depends on the machine's speed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{LoadLease, LoadStep, Store, Transition};
use crate::bus::{Bus, BUS_LOSS_DETECTION_MS};
use crate::error::ErrorKind;
use crate::l2::memory::{self, Server};
use crate::ttl::Lifetime;

const TTL_MS: u64 = 60_000;
const L2_TIMEOUT: Duration = Duration::from_secs(1);
const LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// A wait for another instance's lock polls the L2 this often, so it ends up to one poll late.
const LOCK_POLL_SLACK_MS: u64 = 25;

/// A fresh memory server, and a function opening stores ("instances") on it, each with its own bus.
fn server() -> (String, Arc<Server>) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!("s{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let server = memory::server(&name);
    (name, server)
}

fn instance(server: &str, extra: Value) -> Store {
    let mut options =
        json!({ "url": format!("memory://{server}"), "namespace": "t", "l2Timeout": 1, "lockTimeout": 2 });
    options.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let config = crate::options::parse(&options, None).unwrap();
    Store::open(config.store, |l2| Arc::new(Bus::start(l2.clone()))).unwrap()
}

/// Two instances on one server, their buses up.
async fn two_instances(server: &str) -> (Store, Store) {
    let (a, b) = (instance(server, json!({})), instance(server, json!({})));
    bus_up(&[&a, &b]).await;
    (a, b)
}

/// Another handle on the same store, for a task to own.
fn handle(store: &Store) -> Store {
    Store { inner: store.inner.clone(), background: Vec::new() }
}

/// How long the L1 keeps `key` from now.
fn l1_lifetime(store: &Store, key: &str) -> Duration {
    let entry = store.l1_get(key).expect("in the L1");
    entry.expires_at.saturating_duration_since(std::time::Instant::now())
}

async fn bus_up(stores: &[&Store]) {
    while !stores.iter().all(|s| s.stats().bus_up) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn until(what: impl Fn() -> bool) {
    while !what() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn text(store: &Store, key: &str) -> Option<String> {
    store.get(key, TTL_MS).await.value.map(|json| json.as_str().to_owned())
}

fn lead(step: LoadStep) -> LoadLease {
    match step {
        LoadStep::Lead(lease) => lease,
        LoadStep::Hit(json) => panic!("expected to lead, found {}", json.as_str()),
        LoadStep::Failed(error) => panic!("expected to lead, failed: {error}"),
        LoadStep::Stale(json) => panic!("expected to lead, served stale {}", json.as_str()),
    }
}

fn no_tags() -> crate::tags::Tags {
    Default::default()
}

/// Fresh for a second, then stale for a minute.
const GRACEFUL: Lifetime = Lifetime { ttl_ms: 1_000, grace_ms: 60_000 };

fn stale_text(lease: &LoadLease) -> Option<String> {
    lease.stale().map(|json| json.as_str().to_owned())
}

#[tokio::test(start_paused = true)]
async fn without_the_breaker_an_l2_that_never_answers_costs_each_call_one_l2_timeout_and_the_l1_keeps_writes_briefly() {
    let (name, server) = server();
    let a = instance(&name, json!({ "l2Breaker": false }));
    server.faults.hang.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let read = a.get("k", TTL_MS).await;
    assert!(read.value.is_none());
    assert_eq!(read.error.unwrap().kind, ErrorKind::L2Timeout);
    assert_eq!(started.elapsed(), L2_TIMEOUT, "one l2Timeout, not one per round trip");

    let started = Instant::now();
    assert_eq!(
        a.set("k", "1".into(), Lifetime::fresh(TTL_MS), no_tags()).await.error.unwrap().kind,
        ErrorKind::L2Timeout
    );
    assert_eq!(started.elapsed(), L2_TIMEOUT);
    let lifetime = l1_lifetime(&a, "k");
    assert!(lifetime <= Duration::from_secs(5), "capped at busDownL1Ttl: {lifetime:?}");

    let started = Instant::now();
    let removed = a.delete(vec!["k".into()]).await;
    assert_eq!(removed.error.unwrap().kind, ErrorKind::L2Timeout);
    assert_eq!(started.elapsed(), L2_TIMEOUT);
    assert!(a.l1_get("k").is_none(), "a removal clears the L1 even when the L2 failed");
    assert_eq!(a.stats().errors, 3);
}

#[tokio::test(start_paused = true)]
async fn a_refused_l2_answers_at_once() {
    let (name, server) = server();
    let a = instance(&name, json!({}));
    server.faults.refuse.store(true, Ordering::SeqCst);
    let started = Instant::now();
    assert_eq!(a.get("k", TTL_MS).await.error.unwrap().kind, ErrorKind::L2Unavailable);
    let LoadStep::Lead(lease) = a.begin_load("k", true, TTL_MS, None).await.value else { panic!("leads") };
    assert!(!lease.complete("1".into(), Lifetime::fresh(TTL_MS), no_tags()).await.value, "not stored in the L2");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(text(&a, "k").await.as_deref(), Some("1"), "served from the L1");
}

#[tokio::test(start_paused = true)]
async fn a_read_that_raced_a_local_write_does_not_refill_the_l1_with_the_old_value() {
    let (name, server) = server();
    let a = instance(&name, json!({}));
    a.set("k", "\"old\"".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    a.run_l1_housekeeping();
    a.inner.l1.as_ref().unwrap().clear();
    let gate = Arc::new(Semaphore::new(0));
    *server.faults.read_gate.lock().unwrap() = Some(gate.clone());
    let reader = {
        let store = handle(&a);
        tokio::spawn(async move { text(&store, "k").await })
    };
    until(|| gate.available_permits() == 0 && server.commands() >= 2).await;
    *server.faults.read_gate.lock().unwrap() = None;
    a.set("k", "\"new\"".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    gate.add_permits(1);
    assert_eq!(reader.await.unwrap().as_deref(), Some("\"old\""), "the read answers what it read");
    let cached = a.l1_get("k").map(|e| e.json.to_string());
    assert_ne!(cached.as_deref(), Some("\"old\""), "the fill that raced the write was dropped");
    assert_eq!(text(&a, "k").await.as_deref(), Some("\"new\""));
}

#[tokio::test(start_paused = true)]
async fn a_read_that_raced_a_remote_write_does_not_refill_the_l1_with_the_old_value() {
    let (name, server) = server();
    let (a, b) = two_instances(&name).await;
    b.set("k", "\"old\"".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    let gate = Arc::new(Semaphore::new(0));
    *server.faults.read_gate.lock().unwrap() = Some(gate.clone());
    let commands_before = server.commands();
    let reader = {
        let store = handle(&a);
        tokio::spawn(async move { text(&store, "k").await })
    };
    until(|| server.commands() > commands_before).await;
    *server.faults.read_gate.lock().unwrap() = None;
    b.set("k", "\"new\"".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    until(|| a.stats().bus_received >= 2).await;
    gate.add_permits(1);
    assert_eq!(reader.await.unwrap().as_deref(), Some("\"old\""));
    assert!(a.l1_get("k").is_none(), "the fill that raced the other instance's write was dropped");
    assert_eq!(text(&a, "k").await.as_deref(), Some("\"new\""));
}

#[tokio::test(start_paused = true)]
async fn a_load_that_raced_a_write_on_another_instance_is_returned_but_not_stored() {
    let (name, _server) = server();
    let (a, b) = two_instances(&name).await;
    let lease = lead(a.begin_load("k", true, TTL_MS, None).await.value);
    b.set("k", "\"new\"".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    until(|| a.stats().bus_received >= 1).await;
    assert!(!lease.complete("\"stale\"".into(), Lifetime::fresh(TTL_MS), no_tags()).await.value);
    assert_eq!(a.stats().loads_discarded, 1);
    assert_eq!(text(&a, "k").await.as_deref(), Some("\"new\""));
    assert_eq!(text(&b, "k").await.as_deref(), Some("\"new\""));
}

#[tokio::test(start_paused = true)]
async fn a_load_slower_than_max_load_time_is_not_stored() {
    let (name, _server) = server();
    let a = instance(&name, json!({ "maxLoadTime": 3, "lockTimeout": 10 }));
    let lease = lead(a.begin_load("k", true, TTL_MS, None).await.value);
    tokio::time::sleep(Duration::from_millis(3_001)).await;
    assert!(!lease.complete("\"late\"".into(), Lifetime::fresh(TTL_MS), no_tags()).await.value);
    assert_eq!(a.stats().loads_discarded, 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gets_the_lock_holders_value_as_soon_as_it_is_stored() {
    let (name, _server) = server();
    let (a, b) = two_instances(&name).await;
    let lease = lead(a.begin_load("k", true, TTL_MS, None).await.value);
    let waiter = {
        let store = handle(&b);
        tokio::spawn(async move {
            let started = Instant::now();
            let step = store.begin_load("k", true, TTL_MS, None).await.value;
            (started.elapsed(), matches!(step, LoadStep::Hit(json) if json.as_str() == "42"))
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(lease.complete("42".into(), Lifetime::fresh(TTL_MS), no_tags()).await.value);
    let (waited, hit) = waiter.await.unwrap();
    assert!(hit, "the waiter got the holder's value");
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_millis(600), "{waited:?}");
    assert_eq!((b.stats().lock_waits, b.stats().loader_calls), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_lock_holder_that_never_finishes_holds_others_for_lock_timeout_only() {
    let (name, _server) = server();
    let (a, b) = (instance(&name, json!({})), instance(&name, json!({})));
    let _hung = lead(a.begin_load("k", true, TTL_MS, None).await.value);
    let started = Instant::now();
    let lease = lead(b.begin_load("k", true, TTL_MS, None).await.value);
    let waited = started.elapsed();
    assert!(waited >= LOCK_TIMEOUT && waited <= LOCK_TIMEOUT * 2, "{waited:?}");
    assert_eq!(b.stats().lock_waits, 1);
    assert!(
        lease.complete("1".into(), Lifetime::fresh(TTL_MS), no_tags()).await.value,
        "the waiter's own load is stored"
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_whose_wait_ran_out_loads_at_once_and_is_counted() {
    let (name, _server) = server();
    let a = instance(&name, json!({}));
    let _first = lead(a.begin_load("k", true, TTL_MS, None).await.value);
    let started = Instant::now();
    let _second = lead(a.begin_load("k", false, TTL_MS, None).await.value);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(a.stats().lock_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_removal_whose_bus_message_never_comes_back_is_reported_and_the_loss_found() {
    let (name, server) = server();
    let a = instance(&name, json!({}));
    let reports = reports_of(&a);
    bus_up(&[&a]).await;
    a.set("k", "1".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    server.faults.drop_messages.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    let removed = a.delete(vec!["k".into()]).await;
    assert_eq!(removed.value, 1, "the L2 removed it");
    assert_eq!(removed.error.unwrap().kind, ErrorKind::Bus);
    assert_eq!(cut.elapsed(), L2_TIMEOUT, "the echo is waited for l2Timeout");
    assert_eq!(a.stats().bus_echo_timeouts, 1);
    until(|| !a.stats().bus_up).await;
    assert!(cut.elapsed() <= Duration::from_millis(BUS_LOSS_DETECTION_MS), "{:?}", cut.elapsed());
    a.set("k2", "2".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    let lifetime = l1_lifetime(&a, "k2");
    assert!(lifetime <= Duration::from_secs(5), "capped at busDownL1Ttl while the bus is down: {lifetime:?}");
    server.faults.drop_messages.store(false, Ordering::SeqCst);
    bus_up(&[&a]).await;
    assert_eq!(a.stats().bus_reconnects, 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let transitions = vec![Transition::BusSubscribed, Transition::BusHalfOpen, Transition::BusReconnected];
    assert_eq!(reports.transitions(), transitions, "each once, however many probes went by");
}

#[tokio::test(start_paused = true)]
async fn a_pattern_invalidation_fences_loads_that_started_before_it() {
    let (name, _server) = server();
    let (a, b) = two_instances(&name).await;
    let lease = lead(a.begin_load("user:1", true, TTL_MS, None).await.value);
    b.invalidate_pattern(&crate::pattern::Pattern::parse("user:*", 64).unwrap(), "user:*").await;
    assert!(!lease.complete("\"stale\"".into(), Lifetime::fresh(TTL_MS), no_tags()).await.value);
    assert_eq!(text(&a, "user:1").await, None);
}

/// Collects what a store reports in the background: failures, and transitions.
#[derive(Default)]
struct Reports(std::sync::Mutex<Vec<crate::error::CacheError>>, std::sync::Mutex<Vec<Transition>>);

impl super::ErrorSink for Reports {
    fn report(&self, error: &crate::error::CacheError) {
        self.0.lock().unwrap().push(error.clone());
    }

    fn transition(&self, event: &Transition) {
        self.1.lock().unwrap().push(*event);
    }
}

impl Reports {
    fn transitions(&self) -> Vec<Transition> {
        self.1.lock().unwrap().clone()
    }
}

fn reports_of(store: &Store) -> Arc<Reports> {
    let reports = Arc::new(Reports::default());
    store.add_error_sink(Arc::downgrade(&reports) as std::sync::Weak<dyn super::ErrorSink>);
    reports
}

#[tokio::test(start_paused = true)]
async fn an_l2_that_never_answers_opens_the_breaker_then_calls_skip_it_at_once_until_it_is_back() {
    let (name, server) = server();
    let a = instance(&name, json!({ "bus": false }));
    let reports = reports_of(&a);
    a.set("cached", "1".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    server.faults.hang.store(true, Ordering::SeqCst);
    let started = Instant::now();
    assert_eq!(a.get("k", TTL_MS).await.error.unwrap().kind, ErrorKind::L2Timeout, "the first call finds the outage");
    assert_eq!(started.elapsed(), L2_TIMEOUT);
    until(|| a.stats().l2_state == crate::stats::L2State::Down).await;
    let opened = started.elapsed();
    assert!(
        opened >= L2_TIMEOUT * 2 && opened <= L2_TIMEOUT * 2 + Duration::from_millis(10),
        "{opened:?}: opened once a check on fresh connections timed out too"
    );
    let commands = server.commands();
    let started = Instant::now();
    for i in 0..100 {
        let read = a.get(&format!("missing{i}"), TTL_MS).await;
        assert!(read.value.is_none() && read.error.is_none(), "a skipped call reports nothing: {:?}", read.error);
        assert!(a.set("k", "2".into(), Lifetime::fresh(TTL_MS), no_tags()).await.error.is_none());
        assert!(a.delete(vec!["gone".into()]).await.error.is_none());
        let step = a.begin_load(&format!("load{i}"), true, TTL_MS, None).await.value;
        let LoadStep::Lead(lease) = step else { panic!("leads at once") };
        lease.complete("3".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "no skipped call waits");
    assert_eq!(server.commands(), commands, "the L2 got none of them");
    assert_eq!(text(&a, "cached").await.as_deref(), Some("1"), "the L1 still answers");
    assert!(l1_lifetime(&a, "k") <= Duration::from_secs(5), "what the L2 never saw is kept briefly");
    let stats = a.stats();
    assert_eq!(stats.l2_skipped, 400);
    assert_eq!(stats.errors, 2, "the first call's timeout and the breaker's one report");
    let reported: Vec<ErrorKind> = reports.0.lock().unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(reported, vec![ErrorKind::L2Unavailable], "the outage is reported once");
    assert_eq!(reports.transitions(), vec![Transition::BreakerOpen], "opened once, for 400 skipped calls");

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        reports.transitions(),
        vec![Transition::BreakerOpen, Transition::BreakerHalfOpen],
        "30 s of failed probes: half-open once, at the first"
    );
    server.faults.hang.store(false, Ordering::SeqCst);
    let back = Instant::now();
    until(|| a.stats().l2_state == crate::stats::L2State::Up).await;
    // A probe under way when the L2 came back still waits out its l2Timeout, then the next comes within the cap.
    let bound = Duration::from_millis(super::breaker::MAX_PROBE_DELAY_MS) + L2_TIMEOUT;
    assert!(back.elapsed() <= bound, "{:?}", back.elapsed());
    assert_eq!(a.stats().l2_recoveries, 1);
    let transitions = vec![Transition::BreakerOpen, Transition::BreakerHalfOpen, Transition::BreakerClosed];
    assert_eq!(reports.transitions(), transitions);
    a.set("k", "4".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    assert!(server.commands() > commands, "calls use the L2 again");
}

#[tokio::test(start_paused = true)]
async fn a_refused_l2_opens_the_breaker_after_the_configured_failures_and_an_answer_resets_the_count() {
    let (name, server) = server();
    let a = instance(&name, json!({ "bus": false, "l2Breaker": { "failures": 3 } }));
    server.faults.refuse.store(true, Ordering::SeqCst);
    a.get("k", TTL_MS).await;
    a.get("k", TTL_MS).await;
    server.faults.refuse.store(false, Ordering::SeqCst);
    a.get("k", TTL_MS).await;
    server.faults.refuse.store(true, Ordering::SeqCst);
    a.get("k", TTL_MS).await;
    a.get("k", TTL_MS).await;
    assert_eq!(a.stats().l2_state, crate::stats::L2State::Up, "two in a row since the last answer");
    a.get("k", TTL_MS).await;
    assert_eq!(a.stats().l2_state, crate::stats::L2State::Down);
}

#[tokio::test(start_paused = true)]
async fn with_the_breaker_off_every_call_waits_for_the_l2() {
    let (name, server) = server();
    let a = instance(&name, json!({ "bus": false, "l2Breaker": false }));
    server.faults.hang.store(true, Ordering::SeqCst);
    let started = Instant::now();
    a.get("k", TTL_MS).await;
    a.get("k", TTL_MS).await;
    assert_eq!(started.elapsed(), L2_TIMEOUT * 2);
    assert_eq!(a.stats().l2_state, crate::stats::L2State::Up);
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_connection_was_dropped_is_made_again_and_opens_nothing() {
    let (name, server) = server();
    let a = instance(&name, json!({ "bus": false }));
    a.set("k", "1".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    a.run_l1_housekeeping();
    a.inner.l1.as_ref().unwrap().clear();
    server.faults.drop_next.store(1, Ordering::SeqCst);
    let read = a.get("k", TTL_MS).await;
    assert_eq!(read.value.map(|json| json.as_str().to_owned()).as_deref(), Some("1"), "answered on the second try");
    assert!(read.error.is_none());
    assert_eq!(a.stats().l2_state, crate::stats::L2State::Up);
    server.faults.drop_next.store(2, Ordering::SeqCst);
    assert_eq!(a.get("k2", TTL_MS).await.error.unwrap().kind, ErrorKind::L2Unavailable, "tried twice, no more");
    assert_eq!(a.stats().l2_state, crate::stats::L2State::Down);
}

#[tokio::test(start_paused = true)]
async fn a_refusing_l2_is_used_again_within_a_second_of_its_return_however_long_it_was_gone() {
    let (name, server) = server();
    let a = instance(&name, json!({ "bus": false }));
    server.faults.refuse.store(true, Ordering::SeqCst);
    a.get("k", TTL_MS).await;
    assert_eq!(a.stats().l2_state, crate::stats::L2State::Down);
    tokio::time::sleep(Duration::from_secs(600)).await;
    server.faults.refuse.store(false, Ordering::SeqCst);
    let back = Instant::now();
    until(|| a.stats().l2_state == crate::stats::L2State::Up).await;
    assert!(back.elapsed() <= Duration::from_millis(super::breaker::MAX_PROBE_DELAY_MS), "{:?}", back.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_no_outage_when_the_l2_answers_a_check_right_after() {
    let (name, server) = server();
    let a = instance(&name, json!({ "bus": false }));
    let reports = reports_of(&a);
    server.faults.hang.store(true, Ordering::SeqCst);
    let stalled = {
        let store = handle(&a);
        tokio::spawn(async move { store.get("k", TTL_MS).await.error.map(|e| e.kind) })
    };
    tokio::time::sleep(Duration::from_millis(900)).await;
    server.faults.hang.store(false, Ordering::SeqCst);
    assert_eq!(stalled.await.unwrap(), Some(ErrorKind::L2Timeout), "the stalled call timed out");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(a.stats().l2_state, crate::stats::L2State::Up, "a stall the L2 recovered from opens nothing");
    assert!(reports.0.lock().unwrap().is_empty());
    assert!(
        a.set("k", "1".into(), Lifetime::fresh(TTL_MS), no_tags()).await.error.is_none(),
        "writes still reach the L2"
    );
}

#[tokio::test(start_paused = true)]
async fn past_its_ttl_an_entry_with_a_grace_is_a_miss_but_a_failing_load_and_its_waiters_get_it() {
    let (name, _server) = server();
    let (a, b) = (instance(&name, json!({ "l1": false })), instance(&name, json!({ "l1": false })));
    bus_up(&[&a, &b]).await;
    a.set("k", "\"old\"".into(), GRACEFUL, no_tags()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(text(&b, "k").await, None, "a stale entry is never a hit");
    let lease = lead(b.begin_load("k", true, TTL_MS, None).await.value);
    assert_eq!(stale_text(&lease).as_deref(), Some("\"old\""));
    let waiter = tokio::spawn({
        let b = handle(&b);
        async move { b.begin_load("k", true, TTL_MS, None).await.value }
    });
    until(|| b.stats().lock_waits == 1).await;
    lease.fail("the database is down".into()).await;
    let LoadStep::Stale(json) = waiter.await.unwrap() else { panic!("the waiter gets the stale value") };
    assert_eq!(json.as_str(), "\"old\"");
    assert_eq!(b.stats().stale_hits, 1);

    tokio::time::sleep(Duration::from_secs(60)).await;
    let lease = lead(b.begin_load("k", true, TTL_MS, None).await.value);
    assert_eq!(stale_text(&lease), None, "past its grace nothing is left");
}

#[tokio::test(start_paused = true)]
async fn a_deleted_or_invalidated_entry_leaves_no_stale_value() {
    let (name, _server) = server();
    let a = instance(&name, json!({ "l1": false }));
    for key in ["deleted", "user:1"] {
        a.set(key, "1".into(), GRACEFUL, no_tags()).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.delete(vec!["deleted".into()]).await;
    a.invalidate_pattern(&crate::pattern::Pattern::parse("user:*", 100).unwrap(), "user:*").await;
    for key in ["deleted", "user:1"] {
        let lease = lead(a.begin_load(key, true, TTL_MS, None).await.value);
        assert_eq!(stale_text(&lease), None, "{key}");
    }
}

#[tokio::test(start_paused = true)]
async fn with_a_stale_value_a_wait_for_another_instances_load_ends_at_the_soft_timeout() {
    let (name, _server) = server();
    let (a, b) = (instance(&name, json!({ "l1": false })), instance(&name, json!({ "l1": false })));
    bus_up(&[&a, &b]).await;
    a.set("k", "\"old\"".into(), GRACEFUL, no_tags()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let slow = lead(a.begin_load("k", true, TTL_MS, Some(Duration::from_millis(100))).await.value);
    let started = Instant::now();
    let LoadStep::Stale(json) = b.begin_load("k", true, TTL_MS, Some(Duration::from_millis(100))).await.value else {
        panic!("the stale value at the soft timeout")
    };
    assert_eq!(json.as_str(), "\"old\"");
    assert!(started.elapsed() <= Duration::from_millis(100 + LOCK_POLL_SLACK_MS), "{:?}", started.elapsed());
    let LoadStep::Stale(_) = b.begin_load("k", true, TTL_MS, Some(Duration::ZERO)).await.value else {
        panic!("timeout 0: the stale value at once")
    };
    assert_eq!(b.stats().stale_hits, 2);
    assert!(slow.complete("\"new\"".into(), GRACEFUL, no_tags()).await.value, "the slow load still stores its value");
    assert_eq!(text(&b, "k").await.as_deref(), Some("\"new\""));
}

#[tokio::test(start_paused = true)]
async fn with_the_l2_down_a_load_falls_back_on_the_l1s_stale_copy() {
    let (name, server) = server();
    let a = instance(&name, json!({}));
    bus_up(&[&a]).await;
    a.set("k", "\"old\"".into(), GRACEFUL, no_tags()).await;
    // The L1 keeps time by the real clock.
    std::thread::sleep(Duration::from_millis(1_100));
    server.faults.refuse.store(true, Ordering::SeqCst);
    let lease = lead(a.begin_load("k", true, TTL_MS, None).await.value);
    assert_eq!(stale_text(&lease).as_deref(), Some("\"old\""));
}

#[tokio::test(start_paused = true)]
async fn an_early_refresh_runs_once_across_threads_and_instances_and_stops_when_another_did_it() {
    let (name, _server) = server();
    let (a, b) = (instance(&name, json!({ "l1": false })), instance(&name, json!({ "l1": false })));
    bus_up(&[&a, &b]).await;
    a.set("k", "1".into(), Lifetime::fresh(10_000), no_tags()).await;
    let threshold = Duration::from_secs(5);
    assert!(a.begin_refresh("k", threshold, TTL_MS).await.value.is_none(), "10 s left of 10: another did it");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let lease = a.begin_refresh("k", threshold, TTL_MS).await.value.expect("4 s left: refresh");
    assert!(a.begin_refresh("k", threshold, TTL_MS).await.value.is_none(), "once in the process");
    assert!(b.begin_refresh("k", threshold, TTL_MS).await.value.is_none(), "once across instances");
    assert_eq!(text(&b, "k").await.as_deref(), Some("1"), "the old value is served meanwhile");
    assert!(lease.complete("2".into(), Lifetime::fresh(10_000), no_tags()).await.value);
    assert!(b.begin_refresh("k", threshold, TTL_MS).await.value.is_none(), "refreshed already");
    assert_eq!(text(&b, "k").await.as_deref(), Some("2"));
    assert_eq!(a.stats().early_refreshes + b.stats().early_refreshes, 1);
}

#[tokio::test(start_paused = true)]
async fn an_early_refresh_racing_a_write_on_another_instance_does_not_overwrite_it() {
    let (name, _server) = server();
    let (a, b) = (instance(&name, json!({ "l1": false })), instance(&name, json!({ "l1": false })));
    bus_up(&[&a, &b]).await;
    a.set("k", "1".into(), Lifetime::fresh(10_000), no_tags()).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let lease = a.begin_refresh("k", Duration::from_secs(5), TTL_MS).await.value.expect("refresh");
    b.set("k", "\"written\"".into(), Lifetime::fresh(10_000), no_tags()).await;
    assert!(!lease.complete("\"refreshed\"".into(), Lifetime::fresh(10_000), no_tags()).await.value);
    assert_eq!(text(&a, "k").await.as_deref(), Some("\"written\""));
}

#[tokio::test(start_paused = true)]
async fn without_an_l1_a_waiter_in_the_process_serves_the_stale_value_the_leader_found() {
    let (name, _server) = server();
    let a = instance(&name, json!({ "l1": false }));
    a.set("k", "\"old\"".into(), GRACEFUL, no_tags()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let soft = Some(Duration::from_millis(100));
    let _slow = lead(a.begin_load("k", true, TTL_MS, soft).await.value);
    let started = Instant::now();
    let LoadStep::Stale(json) = a.begin_load("k", true, TTL_MS, soft).await.value else { panic!("stale") };
    assert_eq!((json.as_str(), started.elapsed()), ("\"old\"", Duration::from_millis(100)));
    let LoadStep::Stale(_) = a.begin_load("k", true, TTL_MS, Some(Duration::ZERO)).await.value else { panic!() };
}

fn tags(list: &[&str]) -> crate::tags::Tags {
    crate::tags::checked_tags(list.iter().map(|t| t.to_string()).collect()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn invalidating_a_tag_turns_every_entry_written_before_into_a_miss_on_every_instance() {
    let (name, _server) = server();
    let (a, b) = two_instances(&name).await;
    let other_namespace = instance(&name, json!({ "namespace": "other" }));
    for key in ["svc:1", "svc:2"] {
        a.set(key, "1".into(), Lifetime::fresh(TTL_MS), tags(&["services"])).await;
    }
    a.set("untagged", "1".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    other_namespace.set("svc:1", "1".into(), Lifetime::fresh(TTL_MS), tags(&["services"])).await;
    assert_eq!(text(&b, "svc:1").await.as_deref(), Some("1"), "b holds it in its L1 now");
    let invalidated = a.invalidate_tags(tags(&["services"]), false).await;
    assert!(invalidated.error.is_none(), "{:?}", invalidated.error);
    for store in [&a, &b] {
        assert_eq!(text(store, "svc:1").await, None, "gone from both tiers, on both instances");
        assert_eq!(text(store, "svc:2").await, None);
        assert_eq!(text(store, "untagged").await.as_deref(), Some("1"));
    }
    assert_eq!(text(&other_namespace, "svc:1").await.as_deref(), Some("1"), "tags are per namespace");
    // The paused clock stands still, and a write in the invalidation's own tick counts as written before it.
    tokio::time::sleep(Duration::from_millis(1)).await;
    b.set("svc:1", "2".into(), Lifetime::fresh(TTL_MS), tags(&["services"])).await;
    assert_eq!(text(&a, "svc:1").await.as_deref(), Some("2"), "written after the invalidation: live");
    assert_eq!(a.stats().tag_invalidations, 1);
    let expiration = a.tag_expiration_ms(tags(&["services", "never"])).await.value;
    assert!(expiration > 0);
    assert_eq!(b.tag_expiration_ms(tags(&["never"])).await.value, 0);
}

#[tokio::test(start_paused = true)]
async fn a_load_that_started_before_a_tag_invalidation_is_returned_but_not_stored() {
    let (name, _server) = server();
    let (a, b) = two_instances(&name).await;
    let lease = lead(a.begin_load("k", true, TTL_MS, None).await.value);
    b.invalidate_tags(tags(&["t"]), false).await;
    assert!(!lease.complete("\"read before\"".into(), Lifetime::fresh(TTL_MS), tags(&["t"])).await.value);
    assert_eq!(text(&a, "k").await, None);
    assert_eq!(text(&b, "k").await, None);

    let memory_only = Store::open(crate::options::parse(&json!({}), None).unwrap().store, |_| unreachable!()).unwrap();
    let lease = lead(memory_only.begin_load("k", true, TTL_MS, None).await.value);
    memory_only.invalidate_tags(tags(&["t"]), false).await;
    lease.complete("\"read before\"".into(), Lifetime::fresh(TTL_MS), tags(&["t"])).await;
    assert_eq!(text(&memory_only, "k").await, None, "memory only too");
    memory_only.set("k", "1".into(), Lifetime::fresh(TTL_MS), tags(&["t"])).await;
    assert_eq!(text(&memory_only, "k").await.as_deref(), Some("1"));
}

#[tokio::test(start_paused = true)]
async fn a_soft_invalidation_leaves_the_entry_stale_for_a_failing_load() {
    let (name, _server) = server();
    let (a, b) = two_instances(&name).await;
    a.set("k", "\"old\"".into(), Lifetime { ttl_ms: TTL_MS, grace_ms: 60_000 }, tags(&["t"])).await;
    assert_eq!(text(&b, "k").await.as_deref(), Some("\"old\""));
    a.invalidate_tags(tags(&["t"]), true).await;
    for store in [&a, &b] {
        assert_eq!(text(store, "k").await, None, "a miss for get");
        let lease = lead(store.begin_load("k", true, TTL_MS, None).await.value);
        assert_eq!(stale_text(&lease).as_deref(), Some("\"old\""), "but stale for getOrSet");
        lease.fail("down".into()).await;
    }
    a.invalidate_tags(tags(&["t"]), false).await;
    let lease = lead(b.begin_load("k", true, TTL_MS, None).await.value);
    assert_eq!(stale_text(&lease), None, "a hard invalidation leaves nothing");
}

#[tokio::test(start_paused = true)]
async fn an_invalidation_the_l2_refused_still_drops_the_tags_entries_from_this_l1() {
    let (name, server) = server();
    let a = instance(&name, json!({ "l2Breaker": false }));
    bus_up(&[&a]).await;
    a.set("tagged", "1".into(), Lifetime::fresh(TTL_MS), tags(&["t"])).await;
    a.set("other", "1".into(), Lifetime::fresh(TTL_MS), tags(&["u"])).await;
    server.faults.refuse.store(true, Ordering::SeqCst);
    let invalidated = a.invalidate_tags(tags(&["t"]), false).await;
    assert_eq!(invalidated.error.unwrap().kind, ErrorKind::L2Unavailable, "reported: other instances never heard");
    assert!(a.l1_get("tagged").is_none());
    assert!(a.l1_get("other").is_some());
}

/// Memory only, the L1 is the store: concurrent writes of different keys (which may share a generation stripe) must
/// all be kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_only_concurrent_writes_of_different_keys_are_all_kept() {
    let config = crate::options::parse(&json!({ "l1": { "maxEntries": 100_000 } }), None).unwrap();
    let store = Arc::new(Store::open(config.store, |_| unreachable!()).unwrap());
    let writes: Vec<_> = (0..20_000)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(
                async move { store.set(&format!("k{i}"), "1".into(), Lifetime::fresh(TTL_MS), no_tags()).await },
            )
        })
        .collect();
    for write in writes {
        write.await.unwrap();
    }
    let lost = (0..20_000).filter(|i| store.l1_get(&format!("k{i}")).is_none()).count();
    assert_eq!(lost, 0, "writes lost");
}

#[tokio::test(start_paused = true)]
async fn a_fenced_write_is_dropped_when_the_key_or_a_tag_changed_after_its_fence_on_another_instance() {
    let (name, _server) = server();
    let (a, b) = two_instances(&name).await;
    let fence = a.write_fence("k").await.value.expect("the L2 answered");
    b.invalidate_tags(tags(&["t"]), false).await;
    let stored = a.set_fenced("k", "\"read before\"".into(), Lifetime::fresh(TTL_MS), tags(&["t"]), fence).await;
    assert!(!stored.value);
    assert_eq!(text(&a, "k").await, None, "no L1 copy either");
    assert_eq!(text(&b, "k").await, None);

    // The paused clock stands still: a fence in a change's own tick counts as before it.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let fence = a.write_fence("k").await.value.unwrap();
    b.set("k", "\"theirs\"".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    assert!(!a.set_fenced("k", "\"mine\"".into(), Lifetime::fresh(TTL_MS), tags(&["t"]), fence).await.value);
    assert_eq!(text(&a, "k").await.as_deref(), Some("\"theirs\""), "the newer write stands");

    // The paused clock stands still: a fence in a change's own tick counts as before it.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let fence = a.write_fence("k").await.value.unwrap();
    let stored = a.set_fenced("k", "\"mine\"".into(), Lifetime::fresh(TTL_MS), tags(&["t"]), fence).await;
    assert!(stored.value, "{fence:?} {:?}", stored.error);
    // b drops its own copy when the write's bus message reaches it.
    until(|| b.l1_peek("k").is_none()).await;
    assert_eq!(text(&b, "k").await.as_deref(), Some("\"mine\""), "nothing changed: stored, on both instances");
    assert_eq!(a.stats().loads_discarded, 2);
}

#[tokio::test(start_paused = true)]
async fn a_read_allowing_stale_flags_what_get_misses() {
    let (name, _server) = server();
    let (a, b) = two_instances(&name).await;
    a.set("k", "\"old\"".into(), GRACEFUL, tags(&["t"])).await;
    let read = |store: &Store| {
        let store = handle(store);
        async move {
            store.read_allowing_stale("k", TTL_MS).await.value.map(|(json, stale)| (json.as_str().to_owned(), stale))
        }
    };
    assert_eq!(read(&b).await, Some(("\"old\"".to_owned(), false)));
    a.invalidate_tags(tags(&["t"]), true).await;
    assert_eq!(text(&b, "k").await, None, "get misses a soft-invalidated entry");
    assert_eq!(read(&b).await, Some(("\"old\"".to_owned(), true)));
    a.invalidate_tags(tags(&["t"]), false).await;
    assert_eq!(read(&b).await, None, "a hard invalidation leaves nothing");
    assert!(b.stats().stale_hits >= 1);
}

fn batch_entry(key: &str, json: &str) -> super::BatchEntry {
    super::BatchEntry { key: key.into(), json: json.into(), lifetime: Lifetime::fresh(TTL_MS), tags: no_tags() }
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

async fn texts(store: &Store, names: &[&str]) -> Vec<Option<String>> {
    let read = store.read_l2_many(&keys(names), TTL_MS).await;
    assert!(read.error.is_none(), "{:?}", read.error);
    read.value.into_iter().map(|json| json.map(|json| json.as_str().to_owned())).collect()
}

#[tokio::test(start_paused = true)]
async fn a_batch_read_is_one_l2_command_and_drops_the_fills_that_raced_another_instances_set_or_delete() {
    let (name, server) = server();
    let (a, b) = two_instances(&name).await;
    let written = b.set_many(vec![batch_entry("k1", "1"), batch_entry("k2", "2"), batch_entry("k3", "3")]).await;
    assert!(written.error.is_none());
    let gate = Arc::new(Semaphore::new(0));
    *server.faults.read_gate.lock().unwrap() = Some(gate.clone());
    let commands_before = server.commands();
    let reader = {
        let store = handle(&a);
        tokio::spawn(async move { texts(&store, &["k1", "k2", "k3", "k4"]).await })
    };
    until(|| server.commands() > commands_before).await;
    *server.faults.read_gate.lock().unwrap() = None;
    let received = a.stats().bus_received;
    b.set("k2", "22".into(), Lifetime::fresh(TTL_MS), no_tags()).await;
    b.delete(vec!["k3".into()]).await;
    until(|| a.stats().bus_received >= received + 2).await;
    gate.add_permits(1);
    let read = reader.await.unwrap();
    assert_eq!(read, [Some("1".into()), Some("2".into()), Some("3".into()), None], "the read answers what it read");
    assert_eq!(server.commands(), commands_before + 3, "one command for the batch read, one per write");
    assert!(a.l1_get("k1").is_some(), "an untouched key is filled");
    assert!(a.l1_get("k2").is_none() && a.l1_get("k3").is_none(), "the fills that raced a change were dropped");
    assert_eq!(texts(&a, &["k2", "k3"]).await, [Some("22".into()), None]);
    let stats = a.stats();
    assert_eq!((stats.l2_hits, stats.misses), (4, 2), "each key of a batch counts as a hit or a miss");
}

#[tokio::test(start_paused = true)]
async fn a_batch_write_is_one_l2_command_and_every_other_instance_drops_its_copies() {
    let (name, server) = server();
    let (a, b) = two_instances(&name).await;
    a.set_many(vec![batch_entry("k1", "1"), batch_entry("k2", "2")]).await;
    assert_eq!(texts(&b, &["k1", "k2"]).await, [Some("1".into()), Some("2".into())]);
    assert!(b.l1_get("k1").is_some() && b.l1_get("k2").is_some());
    let (commands_before, received) = (server.commands(), b.stats().bus_received);
    let written = a.set_many(vec![batch_entry("k1", "11"), batch_entry("k2", "22")]).await;
    assert!(written.error.is_none());
    assert_eq!(server.commands(), commands_before + 1, "one command, its bus message in it");
    until(|| b.stats().bus_received > received).await;
    assert!(b.l1_get("k1").is_none() && b.l1_get("k2").is_none(), "one message dropped both copies");
    assert_eq!(texts(&b, &["k1", "k2"]).await, [Some("11".into()), Some("22".into())]);
    assert_eq!(a.l1_get("k1").map(|e| e.json.to_string()).as_deref(), Some("11"), "the writer keeps its own");
    assert_eq!(a.stats().sets, 4);
}

#[tokio::test(start_paused = true)]
async fn a_batch_too_large_for_one_bus_message_is_announced_in_several() {
    let (name, server) = server();
    let (a, b) = two_instances(&name).await;
    let names: Vec<String> = (0..2_000).map(|i| format!("key-{i:05}-{}", "x".repeat(40))).collect();
    let entries = names.iter().map(|key| batch_entry(key, "1")).collect();
    let (commands_before, published) = (server.commands(), a.stats().bus_published);
    assert!(a.set_many(entries).await.error.is_none());
    let messages = a.stats().bus_published - published;
    assert!(messages > 1, "{messages} messages");
    assert_eq!(server.commands() - commands_before, messages, "one write, then the messages that did not fit");
    let read = b.read_l2_many(&names, TTL_MS).await;
    assert!(read.value.iter().all(Option::is_some));
    let changed = names.iter().map(|key| batch_entry(key, "2")).collect();
    let received = b.stats().bus_received;
    a.set_many(changed).await;
    until(|| b.stats().bus_received >= received + messages).await;
    assert!(names.iter().all(|key| b.l1_get(key).is_none()), "every copy dropped, from every message");
}

#[tokio::test(start_paused = true)]
async fn a_batch_the_l2_refuses_degrades_like_its_one_key_forms() {
    let (name, server) = server();
    let a = instance(&name, json!({ "l2Breaker": false }));
    server.faults.refuse.store(true, Ordering::SeqCst);
    let written = a.set_many(vec![batch_entry("k1", "1"), batch_entry("k2", "2")]).await;
    assert_eq!(written.error.unwrap().kind, ErrorKind::L2Unavailable);
    for key in ["k1", "k2"] {
        assert!(l1_lifetime(&a, key) <= Duration::from_secs(5), "capped at busDownL1Ttl");
    }
    let read = a.read_l2_many(&keys(&["k3", "k4"]), TTL_MS).await;
    assert_eq!(read.error.unwrap().kind, ErrorKind::L2Unavailable);
    assert!(read.value.iter().all(Option::is_none));
    let stats = a.stats();
    assert_eq!((stats.misses, stats.errors, stats.sets), (2, 2, 2));
}
