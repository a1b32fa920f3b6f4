//! The shared L2: one interface over the Postgres and the Redis stores.
//!
//! Keys reaching this layer are already namespaced (`namespace:key`). Every call here may fail; the store decides
//! how to degrade. Messages of these errors never hold credentials: see [`Redactor`].

#[cfg(test)]
pub mod memory;
pub mod postgres;
pub mod redis;

use std::pin::Pin;
use std::time::Duration;

use crate::config::{Backend, StoreConfig};
use crate::error::{CacheError, ErrorKind, Result};
use crate::pattern::Pattern;
use crate::tags::{TagTime, Tags};
use crate::ttl::Lifetime;

/// How long a tag's invalidation record is kept, in ms: the longest an entry it can affect may live (the largest
/// TTL plus the largest grace), so no entry written before the invalidation outlives it.
pub const TAG_RECORD_RETENTION_MS: u64 = (crate::rules::TTL.max as u64 + crate::rules::GRACE.max as u64) * 1000;

/// How often a store on a Postgres table without the columns of grace and tags looks whether another instance added
/// them: until it sees them it reads entries without their tags, so this bounds how long it may miss a tag's
/// invalidation right after the table's first tagged write.
pub const EXTENSION_WATCH_MS: u64 = 1_000;

/// A time by the L2 server's clock, in microseconds since the Unix epoch. Every comparison of times that decides
/// coherence uses this one clock, never two app servers' clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerTime(pub u64);

/// A live L2 entry.
#[derive(Debug, Clone, PartialEq)]
pub struct L2Hit {
    /// The stored JSON text. Postgres returns its `jsonb` rendering, so key order and spacing may differ from what was
    /// written.
    pub json: String,
    /// Milliseconds of freshness left (0 for a stale entry); `None` when the entry has no expiry (written by
    /// someone else without one).
    pub remaining_ms: Option<u64>,
    /// Milliseconds the entry is kept stale after `remaining_ms`; 0 without a grace.
    pub grace_ms: u64,
    /// The entry's tags, and when it was written by the L2's clock (µs); `None` for an untagged entry.
    pub tagged: Option<Tagged>,
}

/// The tags of an entry and its write time, which the tags' invalidation times are compared with.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged {
    /// The entry's tags.
    pub tags: Tags,
    /// When the entry was written, by the L2's clock, in µs (Postgres: its `updatedAt`, to the millisecond).
    pub written_us: u64,
}

/// What a read found, and when, by the L2's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct L2Read {
    /// The live entry, or `None`.
    pub hit: Option<L2Hit>,
    /// An entry past its TTL but within its grace (`remaining_ms` 0, `grace_ms` what is left of the grace); `None`
    /// when `hit` is set. Never a tombstone.
    pub stale: Option<L2Hit>,
    /// The server time of the read: a load that follows a miss starts no earlier.
    pub at: ServerTime,
    /// The invalidation records of the tags of the entry read, by tag (only those that have one).
    pub tag_times: Vec<(Box<str>, TagTime)>,
}

/// When a write may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCondition {
    /// Always: `set`, the application's own write.
    Always,
    /// Only if the key was not written or deleted, and its namespace not invalidated by a pattern, at or after this
    /// time, and this time is within the fence window: a `getOrSet` load that began with a miss at this time read
    /// its source before any such change, so its value may be older than the change and must not be stored.
    UnchangedSince(ServerTime),
}

impl WriteCondition {
    /// The time a fenced write must not be older than the last change of.
    pub fn since(self) -> Option<ServerTime> {
        match self {
            WriteCondition::Always => None,
            WriteCondition::UnchangedSince(at) => Some(at),
        }
    }
}

/// How a value is written: for how long, on what condition, and with which bus message.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    /// Fresh for its TTL, then kept stale for its grace.
    pub lifetime: Lifetime,
    /// When the write may go ahead.
    pub condition: WriteCondition,
    /// Published in the same round trip when the write goes ahead.
    pub bus_message: Option<&'a str>,
    /// The entry's tags; empty for none. A fenced write is also refused when one of them was invalidated (hard or
    /// soft) at or after its `since`: its loader read the data before that invalidation.
    pub tags: &'a [Box<str>],
}

/// One entry of a batch write, unconditional as `set`'s own.
#[derive(Debug, Clone, Copy)]
pub struct BatchWrite<'a> {
    /// The namespaced key.
    pub key: &'a str,
    /// The JSON text.
    pub json: &'a str,
    /// Fresh for its TTL, then kept stale for its grace.
    pub lifetime: Lifetime,
    /// The entry's tags; empty for none.
    pub tags: &'a [Box<str>],
}

/// What the bus subscription hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A payload on the shared bus channel.
    Message(String),
    /// A payload on this subscriber's own probe channel.
    Probe(String),
}

/// The events of one bus subscription; it ends when the connection is lost.
pub type BusStream = Pin<Box<dyn futures_util::Stream<Item = BusEvent> + Send>>;

/// The L2 backends. Any call may fail with `ERR_CACHE_L2_UNAVAILABLE` (no connection), `ERR_CACHE_L2_TIMEOUT` (Redis
/// reply timeout; the store also bounds every call) or `ERR_CACHE_L2` (any other error from the server).
pub enum L2 {
    /// A Prisma-shaped table; the bus is `LISTEN`/`NOTIFY`. The backends are boxed: they differ in size by hundreds of
    /// bytes.
    Postgres(Box<postgres::PostgresL2>),
    /// One hash per entry; the bus is pub/sub.
    Redis(Box<redis::RedisL2>),
    /// The store tests' in-memory server, with faults to inject.
    #[cfg(test)]
    Memory(memory::MemoryL2),
}

/// A lock that makes one process the loader of a key. Release it explicitly; dropping it releases it in the
/// background.
pub enum LoadLock {
    /// A session-level advisory lock: it ends with its session, so a crashed holder frees it at once.
    Postgres(postgres::AdvisoryLock),
    /// A `SET NX PX` key with an owner token: a crashed holder's lock lasts until it expires.
    Redis(redis::TokenLock),
    /// A lock of the store tests' in-memory server.
    #[cfg(test)]
    Memory(memory::MemoryLock),
}

/// What an attempt to take a load lock found.
pub enum LockAttempt {
    /// This process is the loader until it releases the lock.
    Acquired(LoadLock),
    /// Another process holds it; its hold runs out in this many milliseconds when the backend can tell.
    Held {
        /// `None` on Postgres, whose advisory locks do not expire.
        expires_in_ms: Option<u64>,
    },
}

impl LoadLock {
    /// Releases the lock and waits for the L2's answer, so that a waiter polling next can take it. Failures are
    /// ignored: the lock then ends with its session (Postgres) or its expiry (Redis).
    pub async fn release(self) {
        match self {
            LoadLock::Postgres(lock) => lock.release().await,
            LoadLock::Redis(lock) => lock.release().await,
            #[cfg(test)]
            LoadLock::Memory(lock) => lock.release().await,
        }
    }
}

impl L2 {
    /// The L2 that `config.l2` names, connecting lazily; `None` for memory only. Must run inside a tokio runtime.
    pub fn open(config: &StoreConfig) -> Result<Option<L2>> {
        let Some((backend, url)) = &config.l2 else {
            return Ok(None);
        };
        let (timeout, fence) = (config.l2_timeout(), config.fence_window());
        Ok(Some(match backend {
            Backend::Postgres => {
                L2::Postgres(Box::new(postgres::PostgresL2::new(url, &config.postgres, timeout, fence)?))
            }
            Backend::Redis => L2::Redis(Box::new(redis::RedisL2::new(url, &config.redis, timeout, fence)?)),
            #[cfg(test)]
            Backend::Memory => L2::Memory(memory::MemoryL2::new(url, fence)),
        }))
    }

    /// `"postgres"` or `"redis"`.
    pub fn backend(&self) -> &'static str {
        match self {
            L2::Postgres(_) => "postgres",
            L2::Redis(_) => "redis",
            #[cfg(test)]
            L2::Memory(_) => "memory",
        }
    }

    /// The live entry of a namespaced key, never an expired one, with the server time of the read.
    pub async fn get(&self, key: &str) -> Result<L2Read> {
        match self {
            L2::Postgres(pg) => pg.get(key).await,
            L2::Redis(redis) => redis.get(key).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.get(key).await,
        }
    }

    /// The entries of namespaced keys of one namespace, in their order, each as [`Self::get`] reads it, in one round
    /// trip where the backend allows: one script (a cluster: one per slot, in flight together, then the tags'
    /// records), one Postgres statement. `keys` must hold no duplicates.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<L2Read>> {
        match self {
            L2::Postgres(pg) => pg.get_many(keys).await,
            L2::Redis(redis) => redis.get_many(keys).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.get_many(keys).await,
        }
    }

    /// Writes entries of one namespace unconditionally, as [`Self::set`] does, and publishes `bus_message` once they
    /// are all written, in one round trip where the backend allows; returns each write's time, in their order.
    /// `entries` must hold no duplicate keys.
    pub async fn set_many(&self, entries: &[BatchWrite<'_>], bus_message: Option<&str>) -> Result<Vec<ServerTime>> {
        match self {
            L2::Postgres(pg) => pg.set_many(entries, bus_message).await,
            L2::Redis(redis) => redis.set_many(entries, bus_message).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.set_many(entries, bus_message).await,
        }
    }

    /// Writes an entry of `namespace`, fresh for the lifetime's TTL and kept stale for its grace, unless `condition`
    /// refuses it and, in the same round trip, publishes `bus_message` when there is one and the write went ahead.
    /// Returns the write's time by the L2's clock, or `None` when the condition refused it.
    pub async fn set(&self, key: &str, namespace: &str, json: &str, write: Write<'_>) -> Result<Option<ServerTime>> {
        match self {
            L2::Postgres(pg) => pg.set(key, namespace, json, write).await,
            L2::Redis(redis) => redis.set(key, namespace, json, write).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.set(key, namespace, json, write).await,
        }
    }

    /// Removes keys, leaving a tombstone of each for the fence window, and publishes `bus_message` in the same round
    /// trip; returns how many live entries were removed. `keys` must not be empty.
    pub async fn delete(&self, keys: &[String], bus_message: Option<&str>) -> Result<u64> {
        match self {
            L2::Postgres(pg) => pg.delete(keys, bus_message).await,
            L2::Redis(redis) => redis.delete(keys, bus_message).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.delete(keys, bus_message).await,
        }
    }

    /// Marks the namespace invalidated now (fencing every load that started before), then removes its keys matching
    /// `pattern`; returns how many live entries were removed.
    pub async fn delete_matching(&self, namespace: &str, pattern: &Pattern) -> Result<u64> {
        match self {
            L2::Postgres(pg) => pg.delete_matching(namespace, pattern).await,
            L2::Redis(redis) => redis.delete_matching(namespace, pattern).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.delete_matching(namespace, pattern).await,
        }
    }

    /// Records an invalidation of `tags` in `namespace` now (hard, or soft), kept [`TAG_RECORD_RETENTION_MS`];
    /// returns its time by the L2's clock, in the L2's precision.
    pub async fn invalidate_tags(&self, namespace: &str, tags: &[Box<str>], soft: bool) -> Result<ServerTime> {
        match self {
            L2::Postgres(pg) => pg.invalidate_tags(namespace, tags, soft).await,
            L2::Redis(redis) => redis.invalidate_tags(namespace, tags, soft).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.invalidate_tags(namespace, tags, soft).await,
        }
    }

    /// The invalidation records of `tags` in `namespace`, in their order (0s for a tag never invalidated).
    pub async fn tag_times(&self, namespace: &str, tags: &[Box<str>]) -> Result<Vec<TagTime>> {
        match self {
            L2::Postgres(pg) => pg.tag_times(namespace, tags).await,
            L2::Redis(redis) => redis.tag_times(namespace, tags).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.tag_times(namespace, tags).await,
        }
    }

    /// Publishes one invalidation-bus message.
    pub async fn publish(&self, message: &str) -> Result<()> {
        match self {
            L2::Postgres(pg) => pg.publish(postgres::BUS_CHANNEL, message).await,
            L2::Redis(redis) => redis.publish(redis::BUS_CHANNEL, message).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.publish(memory::MemoryL2::bus_channel(), message).await,
        }
    }

    /// The channel only the bus `bus_id` listens on.
    pub fn probe_channel(&self, bus_id: u64) -> String {
        match self {
            L2::Postgres(_) => postgres::PostgresL2::probe_channel(bus_id),
            L2::Redis(_) => redis::RedisL2::probe_channel(bus_id),
            #[cfg(test)]
            L2::Memory(_) => memory::MemoryL2::probe_channel(bus_id),
        }
    }

    /// Publishes a liveness probe on a bus's own channel, through the command connection, so that its echo proves
    /// the whole path from a publisher to that subscriber.
    pub async fn publish_probe(&self, probe_channel: &str, token: &str) -> Result<()> {
        match self {
            L2::Postgres(pg) => pg.publish(probe_channel, token).await,
            L2::Redis(redis) => redis.publish(probe_channel, token).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.publish(probe_channel, token).await,
        }
    }

    /// Opens a bus subscription on the shared channel and on `probe_channel`.
    pub async fn subscribe(&self, probe_channel: &str) -> Result<BusStream> {
        match self {
            L2::Postgres(pg) => pg.listen(probe_channel).await,
            L2::Redis(redis) => redis.subscribe(probe_channel).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.subscribe(probe_channel).await,
        }
    }

    /// How often expired entries must be swept, for a backend that does not expire them itself.
    pub fn sweep_interval(&self, config: &StoreConfig) -> Option<Duration> {
        match self {
            L2::Postgres(_) => Some(Duration::from_millis(config.postgres.cleanup_interval_ms)),
            L2::Redis(_) => None,
            #[cfg(test)]
            L2::Memory(_) => None,
        }
    }

    /// Whether the L2 started keeping entries' tags since this store last looked (Postgres: another instance extended
    /// the table), so that what the store read before, without tags, must go. Always `false` for Redis.
    pub async fn newly_extended(&self) -> Result<bool> {
        match self {
            L2::Postgres(pg) => pg.newly_extended().await,
            L2::Redis(_) => Ok(false),
            #[cfg(test)]
            L2::Memory(_) => Ok(false),
        }
    }

    /// Whether the L2 keeps entries' tags now (Postgres: once this store knows the table extended).
    pub fn keeps_tags(&self) -> bool {
        match self {
            L2::Postgres(pg) => pg.is_extended(),
            L2::Redis(_) => true,
            #[cfg(test)]
            L2::Memory(_) => true,
        }
    }

    /// Whether [`Self::newly_extended`] can ever say `true`.
    pub fn may_extend(&self) -> bool {
        matches!(self, L2::Postgres(_))
    }

    /// Deletes entries past their expiry and the fence window; returns how many.
    pub async fn sweep_expired(&self) -> Result<u64> {
        match self {
            L2::Postgres(pg) => pg.sweep_expired().await,
            L2::Redis(_) => Ok(0),
            #[cfg(test)]
            L2::Memory(_) => Ok(0),
        }
    }

    /// Tries to become the one process loading `key`. A lock outlives a crashed holder by at most `hold_for`
    /// (Redis expiry; a Postgres lock goes with its session at once, or with its lease's `lockTimeout`).
    pub async fn try_lock(&self, key: &str, hold_for: Duration) -> Result<LockAttempt> {
        match self {
            L2::Postgres(pg) => Ok(match pg.try_lock(key).await? {
                Some(lock) => LockAttempt::Acquired(LoadLock::Postgres(lock)),
                None => LockAttempt::Held { expires_in_ms: None },
            }),
            L2::Redis(redis) => redis.try_lock(key, hold_for).await,
            #[cfg(test)]
            L2::Memory(memory) => memory.try_lock(key, hold_for).await,
        }
    }

    /// Drops the command connections, which may be dead (the server restarted) or stuck (black-holed, half-open), so
    /// that the next call connects afresh: redis-rs keeps a connection that stopped answering, and a pool would hand
    /// out each dead idle connection once before letting it go.
    pub fn reconnect(&self) {
        match self {
            L2::Postgres(pg) => pg.reconnect(),
            L2::Redis(redis) => redis.reconnect(),
            #[cfg(test)]
            L2::Memory(_) => {}
        }
    }

    /// The largest bus message this backend carries, in bytes.
    pub fn max_bus_message_bytes(&self) -> usize {
        match self {
            // A NOTIFY payload must be shorter than 8000 bytes.
            L2::Postgres(_) => 7_900,
            L2::Redis(_) => 64 * 1024,
            #[cfg(test)]
            L2::Memory(_) => 64 * 1024,
        }
    }
}

/// Tags as one JSON array: a Redis entry's `t` field, a Postgres batch write's parameter.
pub(crate) fn tags_json(tags: &[Box<str>]) -> String {
    serde_json::to_string(tags).expect("strings always serialize")
}

/// Removes credentials from messages that may quote a connection URL or a server's reply.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Collects the password of `url`, as written and percent-decoded.
    pub fn for_url(url: &url::Url) -> Self {
        let mut secrets = Vec::new();
        if let Some(password) = url.password().filter(|p| !p.is_empty()) {
            secrets.push(password.to_owned());
            if let Ok(decoded) = percent_decode(password) {
                if decoded != password {
                    secrets.push(decoded);
                }
            }
        }
        Redactor { secrets }
    }

    /// Collects the passwords of every URL in `urls` (a cluster's seed nodes).
    pub fn for_urls(urls: &[url::Url]) -> Self {
        Redactor { secrets: urls.iter().flat_map(|url| Redactor::for_url(url).secrets).collect() }
    }

    /// `message` with every collected secret replaced by `***`.
    pub fn redact(&self, message: impl Into<String>) -> String {
        let mut message = message.into();
        for secret in &self.secrets {
            message = message.replace(secret.as_str(), "***");
        }
        message
    }

    /// A `kind` error reading `context: cause`, redacted, since `cause` may quote the URL or the server's reply.
    pub fn error(&self, kind: ErrorKind, context: &str, cause: impl std::fmt::Display) -> CacheError {
        CacheError::new(kind, self.redact(format!("{context}: {cause}")))
    }
}

fn percent_decode(s: &str) -> std::result::Result<String, std::string::FromUtf8Error> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    String::from_utf8(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        let url = url::Url::parse("redis://user:s%40cret@127.0.0.1:6379").unwrap();
        let redactor = Redactor::for_url(&url);
        let message = redactor.redact("failed for s%40cret and s@cret");
        assert_eq!(message, "failed for *** and ***");
    }
}
