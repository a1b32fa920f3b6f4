//! An in-memory L2 for the store's own tests, with faults to inject: it keeps the Redis backend's semantics (write
//! times, tombstones, the namespace marker, expiring locks, pub/sub) on tokio's clock, so tests can pause time and
//! make every race happen on purpose. Selected by a `memory://<server>` URL: stores on one server name share it,
//! as instances share one real L2.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, Semaphore};
use tokio::time::Instant;

use super::{BatchWrite, BusEvent, BusStream, L2Hit, L2Read, LockAttempt, ServerTime, Tagged, Write};
use crate::error::{CacheError, ErrorKind, Result};
use crate::key::{namespace_of, namespaced};
use crate::pattern::Pattern;
use crate::tags::{TagTime, Tags};
use crate::ttl::Lifetime;

static SERVERS: LazyLock<Mutex<HashMap<String, Arc<Server>>>> = LazyLock::new(Default::default);

/// The server behind every `memory://<name>` URL of one name.
pub fn server(name: &str) -> Arc<Server> {
    SERVERS.lock().unwrap().entry(name.to_owned()).or_insert_with(|| Arc::new(Server::new())).clone()
}

struct Entry {
    /// `None`: a tombstone.
    json: Option<String>,
    expires_at_us: u64,
    stale_until_us: u64,
    written_at_us: u64,
    tags: Option<Tags>,
}

impl Entry {
    /// A value written at `now`.
    fn written(json: &str, lifetime: Lifetime, tags: &[Box<str>], now: u64) -> Self {
        Entry {
            json: Some(json.to_owned()),
            expires_at_us: now + lifetime.ttl_ms * 1000,
            stale_until_us: now + lifetime.kept_ms() * 1000,
            written_at_us: now,
            tags: (!tags.is_empty()).then(|| tags.into()),
        }
    }
}

/// What a test can make the server do wrong.
#[derive(Default)]
pub struct Faults {
    /// Every command fails as a refused connection would.
    pub refuse: AtomicBool,
    /// Every command hangs forever, as on a black-holed connection.
    pub hang: AtomicBool,
    /// The next this many commands fail as on a connection the server dropped (it restarted).
    pub drop_next: std::sync::atomic::AtomicU32,
    /// Published messages reach no subscriber, as on a half-open subscription.
    pub drop_messages: AtomicBool,
    /// When set, a `get` that read its answer waits for a permit before returning it.
    pub read_gate: Mutex<Option<Arc<Semaphore>>>,
}

/// One in-memory L2 server.
pub struct Server {
    origin: Instant,
    entries: Mutex<HashMap<String, Entry>>,
    markers: Mutex<HashMap<String, u64>>,
    /// Tag records, by namespace and tag.
    tag_records: Mutex<HashMap<(String, Box<str>), TagTime>>,
    /// Each lock's owner token and end.
    locks: Mutex<HashMap<String, (u64, Instant)>>,
    bus: broadcast::Sender<(String, String)>,
    commands: AtomicU64,
    /// The faults in force.
    pub faults: Faults,
}

impl Server {
    fn new() -> Self {
        Server {
            origin: Instant::now(),
            entries: Default::default(),
            markers: Default::default(),
            tag_records: Default::default(),
            locks: Default::default(),
            bus: broadcast::channel(1024).0,
            commands: AtomicU64::new(0),
            faults: Faults::default(),
        }
    }

    /// Microseconds since the server started, never 0.
    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64 + 1
    }

    /// How many commands reached the server.
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::SeqCst)
    }

    async fn command(&self) -> Result<()> {
        self.commands.fetch_add(1, Ordering::SeqCst);
        if self.faults.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.faults.refuse.load(Ordering::SeqCst) {
            return Err(CacheError::new(ErrorKind::L2Unavailable, "memory L2: connection refused"));
        }
        let dropped = self.faults.drop_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if dropped.is_ok() {
            return Err(CacheError::new(ErrorKind::L2Unavailable, "memory L2: connection dropped"));
        }
        Ok(())
    }

    fn publish_now(&self, channel: &str, message: &str) {
        if !self.faults.drop_messages.load(Ordering::SeqCst) {
            let _ = self.bus.send((channel.to_owned(), message.to_owned()));
        }
    }
}

/// The channel of the shared bus.
const BUS_CHANNEL: &str = "bus";

/// A store's handle on a memory server.
pub struct MemoryL2 {
    server: Arc<Server>,
    fence_window_us: u64,
}

impl MemoryL2 {
    /// The server `url` names (its host).
    pub fn new(url: &url::Url, fence_window: Duration) -> Self {
        MemoryL2 {
            server: server(url.host_str().unwrap_or("default")),
            fence_window_us: fence_window.as_micros() as u64,
        }
    }

    pub(super) async fn get(&self, key: &str) -> Result<L2Read> {
        let mut reads = self.get_many(std::slice::from_ref(&key.to_owned())).await?;
        Ok(reads.pop().expect("one read per key"))
    }

    /// Every key in one command, as Redis reads a batch in one script.
    pub(super) async fn get_many(&self, keys: &[String]) -> Result<Vec<L2Read>> {
        let s = &self.server;
        s.command().await?;
        let now = s.now_us();
        let reads = keys.iter().map(|key| self.read(key, now)).collect();
        let gate = s.faults.read_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.expect("the gate stays open").forget();
        }
        Ok(reads)
    }

    fn read(&self, key: &str, now: u64) -> L2Read {
        let mut read = L2Read { hit: None, stale: None, at: ServerTime(now), tag_times: Vec::new() };
        if let Some(Entry { json: Some(json), expires_at_us, stale_until_us, written_at_us, tags }) =
            self.server.entries.lock().unwrap().get(key)
        {
            let tagged = tags.clone().map(|tags| Tagged { tags, written_us: *written_at_us });
            if let Some(tagged) = &tagged {
                read.tag_times = self
                    .times_of(namespace_of(key), &tagged.tags)
                    .into_iter()
                    .filter(|(_, t)| t.latest_us() > 0)
                    .collect();
            }
            if *expires_at_us > now {
                let remaining_ms = Some((expires_at_us - now) / 1000);
                let grace_ms = (stale_until_us - expires_at_us) / 1000;
                read.hit = Some(L2Hit { json: json.clone(), remaining_ms, grace_ms, tagged });
            } else if *stale_until_us > now {
                let grace_ms = (stale_until_us - now) / 1000;
                read.stale = Some(L2Hit { json: json.clone(), remaining_ms: Some(0), grace_ms, tagged });
            }
        }
        read
    }

    /// Every entry in one command, then the message, as Redis writes a batch in one script.
    pub(super) async fn set_many(
        &self,
        batch: &[BatchWrite<'_>],
        bus_message: Option<&str>,
    ) -> Result<Vec<ServerTime>> {
        let s = &self.server;
        s.command().await?;
        let now = s.now_us();
        let mut entries = s.entries.lock().unwrap();
        for write in batch {
            entries.insert(write.key.to_owned(), Entry::written(write.json, write.lifetime, write.tags, now));
        }
        drop(entries);
        if let Some(message) = bus_message {
            s.publish_now(BUS_CHANNEL, message);
        }
        Ok(vec![ServerTime(now); batch.len()])
    }

    pub(super) async fn set(
        &self,
        key: &str,
        namespace: &str,
        json: &str,
        write: Write<'_>,
    ) -> Result<Option<ServerTime>> {
        let Write { lifetime, condition, bus_message, tags } = write;
        let s = &self.server;
        s.command().await?;
        let now = s.now_us();
        let mut entries = s.entries.lock().unwrap();
        if let Some(ServerTime(since)) = condition.since() {
            let marker = s.markers.lock().unwrap().get(namespace).copied().unwrap_or(0);
            let written = entries.get(key).map_or(0, |e| e.written_at_us);
            let tag_invalidated = self.times_of(namespace, tags).iter().any(|(_, t)| t.latest_us() >= since);
            if now - since > self.fence_window_us || written >= since || marker >= since || tag_invalidated {
                return Ok(None);
            }
        }
        entries.insert(key.to_owned(), Entry::written(json, lifetime, tags, now));
        drop(entries);
        if let Some(message) = bus_message {
            s.publish_now(BUS_CHANNEL, message);
        }
        Ok(Some(ServerTime(now)))
    }

    fn times_of(&self, namespace: &str, tags: &[Box<str>]) -> Vec<(Box<str>, TagTime)> {
        let records = self.server.tag_records.lock().unwrap();
        let time_of = |tag: &str| records.get(&(namespace.to_owned(), tag.into())).copied().unwrap_or_default();
        tags.iter().map(|tag| (tag.clone(), time_of(tag))).collect()
    }

    pub(super) async fn invalidate_tags(&self, namespace: &str, tags: &[Box<str>], soft: bool) -> Result<ServerTime> {
        let s = &self.server;
        s.command().await?;
        let now = s.now_us();
        let mut records = s.tag_records.lock().unwrap();
        for tag in tags {
            let record = records.entry((namespace.to_owned(), tag.clone())).or_default();
            if soft {
                record.soft_us = now;
            } else {
                record.hard_us = now;
            }
        }
        Ok(ServerTime(now))
    }

    pub(super) async fn tag_times(&self, namespace: &str, tags: &[Box<str>]) -> Result<Vec<TagTime>> {
        self.server.command().await?;
        Ok(self.times_of(namespace, tags).into_iter().map(|(_, time)| time).collect())
    }

    pub(super) async fn delete(&self, keys: &[String], bus_message: Option<&str>) -> Result<u64> {
        let s = &self.server;
        s.command().await?;
        let now = s.now_us();
        let mut entries = s.entries.lock().unwrap();
        let mut removed = 0;
        for key in keys {
            let tombstone =
                Entry { json: None, expires_at_us: now, stale_until_us: now, written_at_us: now, tags: None };
            if entries.insert(key.clone(), tombstone).is_some_and(|e| e.json.is_some() && e.expires_at_us > now) {
                removed += 1;
            }
        }
        drop(entries);
        if let Some(message) = bus_message {
            s.publish_now(BUS_CHANNEL, message);
        }
        Ok(removed)
    }

    pub(super) async fn delete_matching(&self, namespace: &str, pattern: &Pattern) -> Result<u64> {
        let s = &self.server;
        s.command().await?;
        let now = s.now_us();
        s.markers.lock().unwrap().insert(namespace.to_owned(), now);
        let prefix = namespaced(namespace, "");
        let mut removed = 0;
        s.entries.lock().unwrap().retain(|full, e| {
            let matching = full.strip_prefix(&prefix).is_some_and(|key| pattern.matches(key));
            removed += (matching && e.json.is_some() && e.expires_at_us > now) as u64;
            !matching
        });
        Ok(removed)
    }

    pub(super) async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        self.server.command().await?;
        self.server.publish_now(channel, message);
        Ok(())
    }

    pub(super) fn bus_channel() -> &'static str {
        BUS_CHANNEL
    }

    pub(super) fn probe_channel(bus_id: u64) -> String {
        format!("probe:{bus_id:016x}")
    }

    pub(super) async fn subscribe(&self, probe_channel: &str) -> Result<BusStream> {
        self.server.command().await?;
        let probe_channel = probe_channel.to_owned();
        let received = tokio_stream_of(self.server.bus.subscribe());
        Ok(Box::pin(received.filter_map(move |(channel, payload)| {
            let event = match channel.as_str() {
                BUS_CHANNEL => Some(BusEvent::Message(payload)),
                c if c == probe_channel => Some(BusEvent::Probe(payload)),
                _ => None,
            };
            std::future::ready(event)
        })))
    }

    pub(super) async fn try_lock(&self, key: &str, hold_for: Duration) -> Result<LockAttempt> {
        let s = &self.server;
        s.command().await?;
        let now = Instant::now();
        let mut locks = s.locks.lock().unwrap();
        match locks.get(key) {
            Some(&(_, until)) if until > now => {
                Ok(LockAttempt::Held { expires_in_ms: Some((until - now).as_millis() as u64) })
            }
            _ => {
                let token = s.commands();
                locks.insert(key.to_owned(), (token, now + hold_for));
                Ok(LockAttempt::Acquired(super::LoadLock::Memory(MemoryLock {
                    server: s.clone(),
                    key: key.to_owned(),
                    token,
                })))
            }
        }
    }
}

/// A broadcast receiver as a stream that ends when the server goes, skipping what it lagged behind on.
fn tokio_stream_of(
    receiver: broadcast::Receiver<(String, String)>,
) -> impl futures_util::Stream<Item = (String, String)> + Send {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(item) => return Some((item, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// A held lock of the memory server.
pub struct MemoryLock {
    server: Arc<Server>,
    key: String,
    token: u64,
}

impl MemoryLock {
    pub(super) async fn release(self) {
        let mut locks = self.server.locks.lock().unwrap();
        if locks.get(&self.key).is_some_and(|&(owner, _)| owner == self.token) {
            locks.remove(&self.key);
        }
    }
}
