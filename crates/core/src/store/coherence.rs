//! Coherence: per-key generations inside the process, the bus's messages in and out, and the L1 cap while the bus
//! or the L2 cannot vouch for what the L1 holds.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Inner, Transition};
use crate::bus::{self, BusListener, BusMessage, BusOp};
use crate::error::{CacheError, ErrorKind};
use crate::pattern::Pattern;
use crate::stats::{add, bump};
use crate::ttl::{l1_lifetime, Lifetime};

/// Keys share this many generation counters; two keys in one stripe only cost each other a spurious L1 miss.
const GENERATION_STRIPES: usize = 1024;
/// Patterns arriving on the bus were checked by their sender; this only bounds the work one message can cause.
const MAX_BUS_PATTERN_BYTES: usize = 1 << 20;

/// A counter per key (striped) plus one for the whole namespace, moved by every change this process makes or hears
/// of. A fill or write of the L1 compares the generation of its key before and after its L2 call: if anything else
/// changed the key meanwhile, the L1 drops the key instead of guessing which change the L2 kept.
pub(crate) struct Generations {
    namespace: AtomicU64,
    stripes: Box<[AtomicU64]>,
    hasher: RandomState,
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            namespace: AtomicU64::new(0),
            stripes: (0..GENERATION_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Generations {
    fn stripe(&self, key: &str) -> &AtomicU64 {
        &self.stripes[self.hasher.hash_one(key) as usize % GENERATION_STRIPES]
    }

    /// The generation of `key`; it moves with every change of the key or of the whole namespace.
    pub(crate) fn of(&self, key: &str) -> u64 {
        self.namespace.load(Ordering::SeqCst).wrapping_add(self.stripe(key).load(Ordering::SeqCst))
    }

    /// A change of `key`.
    pub(crate) fn bump(&self, key: &str) {
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
    }

    /// A change of any key.
    pub(crate) fn bump_all(&self) {
        self.namespace.fetch_add(1, Ordering::SeqCst);
    }
}

/// Removals waiting for their own bus message to come back, by sequence number.
#[derive(Default)]
pub(crate) struct EchoWaiters(Mutex<HashMap<u64, oneshot::Sender<()>>>);

/// The bus messages of one removal and the receipts it waits for.
pub(crate) struct Announcement {
    payloads: Vec<(u64, String)>,
    echoes: Vec<(u64, oneshot::Receiver<()>)>,
    /// How many payloads already went out with the L2 call itself.
    sent: usize,
}

impl Announcement {
    /// The first payload, to send in the same round trip as the removal.
    pub(crate) fn first_payload(&mut self) -> Option<String> {
        let first = self.payloads.first().map(|(_, payload)| payload.clone());
        self.sent = first.is_some() as usize;
        first
    }
}

impl Inner {
    /// How long the L1 keeps an entry of this `lifetime`, fresh then stale. Fresh: its TTL cut to the configured
    /// cap, and to `busDownL1Ttl` while the bus cannot deliver messages or when the write at hand did not reach the
    /// L2 (no other instance saw it). Stale: its grace, but none in those two cases, since nothing would tell this
    /// L1 that another instance replaced the value.
    pub(super) fn l1_lifetimes(&self, lifetime: Lifetime, l2_reached: bool) -> (Duration, Duration) {
        let configured = self.config.l1.as_ref().and_then(|c| c.ttl_cap_ms);
        let bus_down = self.bus.as_ref().is_some_and(|bus| !bus.is_up());
        let unshared = self.l2.is_some() && (!l2_reached || bus_down);
        let cap = unshared.then_some(self.config.bus_down_l1_ttl_ms);
        let cap = match (configured, cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let grace = if unshared { 0 } else { lifetime.grace_ms };
        (l1_lifetime(lifetime.ttl_ms, cap), Duration::from_millis(grace))
    }

    pub(super) fn bus_payloads(&self, op: BusOp) -> Vec<(u64, String)> {
        match (&self.bus, &self.l2) {
            (Some(_), Some(l2)) => {
                let next_seq = || self.last_bus_seq.fetch_add(1, Ordering::Relaxed) + 1;
                bus::encode(self.id, &self.config.namespace, op, l2.max_bus_message_bytes(), &next_seq)
            }
            _ => Vec::new(),
        }
    }

    /// The messages of a removal, each registered for its receipt while the bus is up (a bus that is down delivers
    /// none, and its loss already dropped every L1 that could miss them).
    pub(super) fn announce(&self, op: BusOp) -> Announcement {
        let payloads = self.bus_payloads(op);
        let mut echoes = Vec::new();
        if self.bus.as_ref().is_some_and(|bus| bus.is_up()) {
            let mut waiters = self.echo_waiters.0.lock().unwrap_or_else(|e| e.into_inner());
            for (seq, _) in &payloads {
                let (sender, echo) = oneshot::channel();
                waiters.insert(*seq, sender);
                echoes.push((*seq, echo));
            }
        }
        Announcement { payloads, echoes, sent: 0 }
    }

    /// Publishes what the removal's own round trip did not carry, then waits until `deadline` for each message to
    /// come back on this process's subscription: the server has then sent it to every other subscriber too. A
    /// message that does not come back is reported (`ERR_CACHE_BUS`, counted in `busEchoTimeouts`), never ignored;
    /// either failure is counted in `errors`.
    pub(super) async fn confirm(&self, announcement: &mut Announcement, deadline: Instant) -> Option<CacheError> {
        let unconfirmed = self.await_echoes(announcement, deadline).await;
        if unconfirmed.is_some() {
            bump(&self.stats.errors);
        }
        unconfirmed
    }

    /// [`Self::confirm`], uncounted.
    async fn await_echoes(&self, announcement: &mut Announcement, deadline: Instant) -> Option<CacheError> {
        let l2 = self.l2.as_ref()?;
        add(&self.stats.bus_published, announcement.sent as u64);
        for (_, payload) in &announcement.payloads[announcement.sent..] {
            if let Err(error) = self.l2_call(deadline, || l2.publish(payload)).await {
                self.forget_echoes(announcement);
                return Some(error);
            }
            bump(&self.stats.bus_published);
        }
        let all_back = async {
            for (_, echo) in announcement.echoes.iter_mut() {
                let _ = echo.await;
            }
        };
        if tokio::time::timeout_at(deadline, all_back).await.is_ok() {
            return None;
        }
        self.forget_echoes(announcement);
        bump(&self.stats.bus_echo_timeouts);
        Some(CacheError::new(
            ErrorKind::Bus,
            format!(
                "the invalidation was stored in the L2, but its bus message did not come back within {} ms \
                 (l2Timeout): other instances may serve their copy until their bus is found lost",
                self.config.l2_timeout_ms
            ),
        ))
    }

    pub(super) fn forget_echoes(&self, announcement: &Announcement) {
        let mut waiters = self.echo_waiters.0.lock().unwrap_or_else(|e| e.into_inner());
        announcement.echoes.iter().for_each(|(seq, _)| drop(waiters.remove(seq)));
    }

    /// Drops the whole L1 from the hits when the bus is lost: what it may have missed is unknown. Entries within a
    /// grace stay as stale copies, the last this instance knew of, which only a `getOrSet` whose L2 read failed
    /// too and whose loader fails or is slow may serve. This is no change of any key, so the generations stay: a
    /// write racing the loss keeps its L1 copy (with the L2 failing too, the only one), and whatever is filled or
    /// written from now on is capped at `busDownL1Ttl`, the bus being down already.
    fn drop_l1_for_lost_bus(&self) {
        if let Some(l1) = &self.l1 {
            l1.demote_all();
        }
    }
}

impl BusListener for Inner {
    fn on_message(&self, message: &BusMessage) {
        if message.sender == self.id {
            let waiter = self.echo_waiters.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&message.seq);
            if let Some(waiter) = waiter {
                let _ = waiter.send(());
            }
            return;
        }
        if message.namespace != self.config.namespace {
            return;
        }
        bump(&self.stats.bus_received);
        match &message.op {
            BusOp::Keys { keys } => keys.iter().for_each(|key| {
                self.forget_key(key);
            }),
            BusOp::Pattern { pattern } => {
                let pattern = Pattern::parse(pattern, MAX_BUS_PATTERN_BYTES).unwrap_or_else(|_| Pattern::everything());
                self.forget_matching(&pattern);
            }
            BusOp::Clear => {
                self.forget_matching(&Pattern::everything());
            }
            BusOp::Tags { tags, at, soft } => self.learn_invalidation(tags, *at, *soft),
        }
        self.l2_activity.notify_waiters();
    }

    fn on_connection_lost(&self, error: CacheError, half_open: bool) {
        self.drop_l1_for_lost_bus();
        self.report_background(&error);
        self.report_transition(if half_open { Transition::BusHalfOpen } else { Transition::BusLost });
    }

    fn on_unheard(&self, error: CacheError, first: bool) {
        bump(&self.stats.bus_unheard);
        if first {
            self.report_background(&error);
        }
    }

    fn on_connected(&self, reconnected: bool) {
        // Before the first subscription there was no connection to lose messages on; entries filled meanwhile were
        // capped at `busDownL1Ttl`, which bounds what they could have missed.
        if reconnected {
            // Unlike a loss, this moves every generation: a fill that read the L2 while the bus was down, and lands
            // now that it is up again, would otherwise keep what it may have missed for its whole TTL.
            self.forget_matching(&Pattern::everything());
            bump(&self.stats.bus_reconnects);
        }
        self.report_transition(if reconnected { Transition::BusReconnected } else { Transition::BusSubscribed });
    }
}
