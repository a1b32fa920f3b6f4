//! The invalidation bus: small messages that tell other instances on the same L2 which L1 entries to drop.
//!
//! A message names the namespace, the operation and its keys or pattern, and its sender (a store id), never a value.
//! Postgres caps a `NOTIFY` payload under 8000 bytes, so key lists are split into batches, and anything that cannot
//! fit becomes a namespace-wide drop: dropping too much costs hits, dropping too little would serve stale data.
//!
//! One [`Bus`] per L2 per process holds the subscription and fans messages out to every store on that L2. When its
//! connection drops, the bus cannot know what it missed, so its stores drop their whole L1 on the loss and again once
//! reconnected.
//!
//! A connection can also die without a word: a partition, or a NAT that forgot the flow, leaves it half-open, and a
//! subscriber that only waits for messages would wait forever. So the bus proves its subscription: every
//! [`PROBE_INTERVAL_MS`] it publishes a token, through the L2's command connection, on a channel only it listens
//! to, and takes the subscription for lost when the token has not come back within [`PROBE_DEADLINE_MS`]. The bus is
//! up only once a probe has come back on the current subscription, so a subscription that never answers never counts
//! as up, and [`BUS_LOSS_DETECTION_MS`] bounds how long a lost bus goes unnoticed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{CacheError, ErrorKind};
use crate::l2::{BusEvent, L2};

/// What a bus message asks receivers to drop. The one-letter names on the wire leave more of a payload for keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "o")]
pub enum BusOp {
    /// Drop these keys (`set`, `delete`).
    #[serde(rename = "k")]
    Keys {
        /// Keys without their namespace, as the L1 holds them.
        #[serde(rename = "k")]
        keys: Vec<String>,
    },
    /// Drop the keys matching a glob (`invalidatePattern`).
    #[serde(rename = "p")]
    Pattern {
        /// The glob as the caller wrote it; each receiver parses it again.
        #[serde(rename = "p")]
        pattern: String,
    },
    /// Drop the whole namespace: `clear`, or an operation too large for one message.
    #[serde(rename = "c")]
    Clear,
    /// These tags were invalidated at this time (`invalidateTags`): entries carrying one, written before, are gone
    /// (or stale when `soft`).
    #[serde(rename = "t")]
    Tags {
        /// The tags.
        #[serde(rename = "t")]
        tags: Vec<Box<str>>,
        /// When, by the L2's clock, in µs.
        #[serde(rename = "a")]
        at: u64,
        /// Whether the entries become stale rather than gone.
        #[serde(rename = "f", default)]
        soft: bool,
    },
}

/// One invalidation message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusMessage {
    /// The sending store's random id: a store skips its own messages, apart from taking them as delivery receipts.
    #[serde(rename = "s")]
    pub sender: u64,
    /// Stores of other namespaces on the same L2 ignore the message.
    #[serde(rename = "n")]
    pub namespace: String,
    /// Numbered per sender, so a sender can tell when its own message has come back to it.
    #[serde(rename = "q", default)]
    pub seq: u64,
    /// What to drop; flattened into the message, tagged by `o`.
    #[serde(flatten)]
    pub op: BusOp,
}

impl BusMessage {
    /// Parses a payload; `None` for anything else, which receivers ignore: others may publish on the channel too.
    pub fn decode(payload: &str) -> Option<BusMessage> {
        serde_json::from_str(payload).ok()
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).expect("bus messages always serialize")
    }
}

/// The payloads announcing `op`, each at most `max_bytes` and numbered by `next_seq`: key lists split into batches,
/// and an operation that cannot fit widened to a namespace-wide drop.
pub fn encode(
    sender: u64,
    namespace: &str,
    op: BusOp,
    max_bytes: usize,
    next_seq: &dyn Fn() -> u64,
) -> Vec<(u64, String)> {
    let message = |op| {
        let seq = next_seq();
        (seq, BusMessage { sender, namespace: namespace.to_owned(), seq, op }.encode())
    };
    // Sizes are measured with the largest sequence number a message could carry.
    let sized = |op| BusMessage { sender, namespace: namespace.to_owned(), seq: u64::MAX, op }.encode().len();
    let clear = || vec![message(BusOp::Clear)];
    match op {
        BusOp::Keys { keys } => {
            let empty_len = sized(BusOp::Keys { keys: vec![] });
            let mut payloads = Vec::new();
            let mut batch: Vec<String> = Vec::new();
            let mut batch_len = empty_len;
            for key in keys {
                // The JSON string of the key plus a comma.
                let key_len = serde_json::to_string(&key).map(|s| s.len()).unwrap_or(usize::MAX) + 1;
                if empty_len.saturating_add(key_len) > max_bytes {
                    return clear();
                }
                if batch_len + key_len > max_bytes {
                    payloads.push(message(BusOp::Keys { keys: std::mem::take(&mut batch) }));
                    batch_len = empty_len;
                }
                batch_len += key_len;
                batch.push(key);
            }
            if !batch.is_empty() {
                payloads.push(message(BusOp::Keys { keys: batch }));
            }
            payloads
        }
        op if sized(op.clone()) > max_bytes => clear(),
        op => vec![message(op)],
    }
}

/// What a store hears from the bus.
pub trait BusListener: Send + Sync {
    /// A message from any sender (the listener skips its own).
    fn on_message(&self, message: &BusMessage);
    /// The bus connection was lost, or stopped answering probes (`half_open`): messages may be missed from now on.
    fn on_connection_lost(&self, error: CacheError, half_open: bool);
    /// The bus is subscribed and proven by a probe; `reconnected` is false the first time.
    fn on_connected(&self, reconnected: bool);
    /// A subscription was opened and its probe published, but the probe never came back: the subscription cannot
    /// hear anything (a transaction pooler). Called for each such subscription; `first` is true once per bus.
    fn on_unheard(&self, error: CacheError, first: bool);
}

struct Shared {
    listeners: Mutex<Vec<Weak<dyn BusListener>>>,
    up: AtomicBool,
}

impl Shared {
    fn each_listener(&self, mut f: impl FnMut(&dyn BusListener)) {
        let live: Vec<Arc<dyn BusListener>> = {
            let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            listeners.retain(|l| l.strong_count() > 0);
            listeners.iter().filter_map(Weak::upgrade).collect()
        };
        live.iter().for_each(|l| f(l.as_ref()));
    }
}

/// A subscription to the invalidation bus of one L2, shared by every store of the process on that L2.
pub struct Bus {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

/// How often the bus proves its subscription with a probe, in ms.
pub const PROBE_INTERVAL_MS: u64 = 1_000;
/// How long a probe may take to come back before the subscription is taken for lost, in ms.
pub const PROBE_DEADLINE_MS: u64 = 1_500;
/// How often the bus looks at its probe, in ms.
const PROBE_CHECK_MS: u64 = 250;
/// The longest a lost or half-open subscription goes unnoticed, in ms: a probe is sent at most an interval (plus a
/// check) after the previous one came back, and found missing at most a deadline (plus a check) after it left.
pub const BUS_LOSS_DETECTION_MS: u64 = PROBE_INTERVAL_MS + PROBE_DEADLINE_MS + 2 * PROBE_CHECK_MS;
/// Bound on opening a subscription (connect, authenticate, subscribe), in ms: a server that accepts and never
/// answers must not hold the bus down for good.
const SUBSCRIBE_TIMEOUT_MS: u64 = 3_000;
/// Delays between reconnection attempts: jittered, doubling from the first to the last.
const RECONNECT_FIRST_DELAY_MS: u64 = 100;
const RECONNECT_MAX_DELAY_MS: u64 = 2_000;

impl Bus {
    /// Subscribes in the background; until subscribed and proven, [`Bus::is_up`] is false.
    pub fn start(l2: Arc<L2>) -> Bus {
        let shared = Arc::new(Shared { listeners: Mutex::new(Vec::new()), up: AtomicBool::new(false) });
        let task = crate::runtime::spawn(run(l2, Arc::downgrade(&shared))).abort_handle();
        Bus { shared, task }
    }

    /// Adds a listener, held weakly so that a dropped store stops hearing without unregistering.
    pub fn add_listener(&self, listener: Weak<dyn BusListener>) {
        self.shared.listeners.lock().unwrap_or_else(|e| e.into_inner()).push(listener);
    }

    /// Whether the subscription is live and proven, so that no message can be missed for longer than
    /// [`BUS_LOSS_DETECTION_MS`].
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reconnect_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(RECONNECT_FIRST_DELAY_MS))
        .with_max_delay(Duration::from_millis(RECONNECT_MAX_DELAY_MS))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// How one subscription ended.
enum Ended {
    /// The bus was dropped: stop.
    Dropped,
    /// Lost; `was_up` tells whether it had been proven (and so whether listeners heard it was up), `half_open`
    /// whether the connection stayed open but stopped carrying probes.
    Lost { was_up: bool, why: &'static str, half_open: bool },
    /// Subscribed, and a probe was published, but none ever came back.
    Unheard,
}

/// What the bus says when its subscription hears none of its published probes.
fn unheard_error(backend: &str) -> CacheError {
    let hint = if backend == "postgres" {
        "LISTEN does not work on this connection: a transaction pooler (PgBouncer in transaction mode) never delivers its notifications; point `postgres.sessionUrl` at the database or at a session pooler"
    } else {
        "the subscription hears nothing that is published"
    };
    CacheError::new(
        ErrorKind::Bus,
        format!(
            "the invalidation bus subscribed, but none of its probes came back within {PROBE_DEADLINE_MS} ms: {hint}; without a bus, L1 entries live at most `busDownL1Ttl`"
        ),
    )
}

async fn run(l2: Arc<L2>, shared: Weak<Shared>) {
    let probe_channel = l2.probe_channel(rand::random());
    let mut ever_up = false;
    let mut ever_unheard = false;
    let mut delays = reconnect_delays();
    loop {
        match subscription(&l2, &shared, &probe_channel, ever_up).await {
            Ended::Dropped => return,
            Ended::Unheard => {
                let Some(bus) = shared.upgrade() else { return };
                let error = unheard_error(l2.backend());
                let first = !std::mem::replace(&mut ever_unheard, true);
                bus.each_listener(|l| l.on_unheard(error.clone(), first));
            }
            Ended::Lost { was_up, why, half_open } => {
                let Some(bus) = shared.upgrade() else { return };
                if was_up {
                    ever_up = true;
                    delays = reconnect_delays();
                    bus.up.store(false, Ordering::Release);
                    let lost = CacheError::new(
                        ErrorKind::Bus,
                        format!("the invalidation bus {why}; the L1 was dropped and the bus is reconnecting"),
                    );
                    bus.each_listener(|l| l.on_connection_lost(lost.clone(), half_open));
                }
            }
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_millis(RECONNECT_MAX_DELAY_MS))).await;
    }
}

/// Opens one subscription and serves it, probing it, until it is lost or the bus is dropped.
async fn subscription(l2: &Arc<L2>, shared: &Weak<Shared>, probe_channel: &str, reconnected: bool) -> Ended {
    let opened = tokio::time::timeout(Duration::from_millis(SUBSCRIBE_TIMEOUT_MS), l2.subscribe(probe_channel)).await;
    let Ok(Ok(mut stream)) = opened else {
        return Ended::Lost { was_up: false, why: "could not subscribe", half_open: false };
    };
    let mut up = false;
    // Set once a probe of this subscription was published: one that left and never came back on a subscription never
    // proven means the subscription hears nothing.
    let published = Arc::new(AtomicBool::new(false));
    // The probe on its way (its token and when it left), and when the last one came back.
    let mut outstanding: Option<(String, Instant)> = None;
    let mut last_echo: Option<Instant> = None;
    let mut checks = tokio::time::interval(Duration::from_millis(PROBE_CHECK_MS));
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = stream.next() => {
                let Some(bus) = shared.upgrade() else { return Ended::Dropped };
                match event {
                    None => return Ended::Lost { was_up: up, why: "lost its connection", half_open: false },
                    Some(BusEvent::Message(payload)) => {
                        if let Some(message) = BusMessage::decode(&payload) {
                            bus.each_listener(|l| l.on_message(&message));
                        }
                    }
                    Some(BusEvent::Probe(token)) => {
                        if outstanding.as_ref().is_some_and(|(sent, _)| *sent == token) {
                            outstanding = None;
                            last_echo = Some(Instant::now());
                            if !up {
                                up = true;
                                bus.up.store(true, Ordering::Release);
                                bus.each_listener(|l| l.on_connected(reconnected));
                            }
                        }
                    }
                }
            }
            _ = checks.tick() => {
                if shared.strong_count() == 0 {
                    return Ended::Dropped;
                }
                match &outstanding {
                    Some((_, sent_at)) if sent_at.elapsed() >= Duration::from_millis(PROBE_DEADLINE_MS) => {
                        if !up && published.load(Ordering::Acquire) {
                            return Ended::Unheard;
                        }
                        return Ended::Lost {
                            was_up: up,
                            why: "stopped answering (no probe came back)",
                            half_open: true,
                        };
                    }
                    Some(_) => {}
                    None if last_echo.is_some_and(|at| at.elapsed() < Duration::from_millis(PROBE_INTERVAL_MS)) => {}
                    None => {
                        let token = format!("{:016x}", rand::random::<u64>());
                        outstanding = Some((token.clone(), Instant::now()));
                        // Sent apart from this loop, so that a command connection that hangs cannot stop the
                        // subscription from being read; a probe that never leaves is just a probe that never comes
                        // back.
                        let (l2, channel, published) = (l2.clone(), probe_channel.to_owned(), published.clone());
                        crate::runtime::spawn(async move {
                            let deadline = Duration::from_millis(PROBE_DEADLINE_MS);
                            // A probe the server answered, even with an error, reached the L2: behind a
                            // transaction pooler the probe's NOTIFY may land on the very server connection that
                            // LISTENs, and fail with the notification it did not expect. Only a probe that could not
                            // reach the server (no connection, no answer) says nothing about the subscription.
                            let answered = match tokio::time::timeout(deadline, l2.publish_probe(&channel, &token)).await
                            {
                                Ok(Ok(())) => true,
                                Ok(Err(error)) => error.kind == ErrorKind::L2,
                                Err(_) => false,
                            };
                            if answered {
                                published.store(true, Ordering::Release);
                            }
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for op in [
            BusOp::Keys { keys: vec!["a".into(), "b\"c".into()] },
            BusOp::Pattern { pattern: "user:*".into() },
            BusOp::Clear,
        ] {
            let payloads = encode(7, "tenant", op.clone(), 8000, &|| 42);
            assert_eq!(payloads.len(), 1);
            let decoded = BusMessage::decode(&payloads[0].1).unwrap();
            assert_eq!(decoded, BusMessage { sender: 7, namespace: "tenant".into(), seq: 42, op });
            assert_eq!(payloads[0].0, 42);
        }
    }

    #[test]
    fn key_lists_are_split_under_the_size_limit() {
        let keys: Vec<String> = (0..2000).map(|i| format!("tenant-{i:05}")).collect();
        let seq = std::sync::atomic::AtomicU64::new(0);
        let next = || seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let payloads = encode(1, "ns", BusOp::Keys { keys: keys.clone() }, 7900, &next);
        assert!(payloads.len() > 1);
        let seqs: Vec<u64> = payloads.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=payloads.len() as u64).collect::<Vec<_>>());
        let mut seen = Vec::new();
        for (_, payload) in &payloads {
            assert!(payload.len() <= 7900, "{}", payload.len());
            match BusMessage::decode(payload).unwrap().op {
                BusOp::Keys { keys } => seen.extend(keys),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, keys);
    }

    #[test]
    fn what_cannot_fit_becomes_a_namespace_drop() {
        let huge = "x".repeat(9000);
        for op in [BusOp::Keys { keys: vec!["a".into(), huge.clone()] }, BusOp::Pattern { pattern: huge }] {
            let payloads = encode(1, "ns", op, 7900, &|| 1);
            assert_eq!(payloads.len(), 1);
            assert_eq!(BusMessage::decode(&payloads[0].1).unwrap().op, BusOp::Clear);
        }
    }
}
