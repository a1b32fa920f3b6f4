//! The Redis L2: plain string keys holding the JSON text, written with `SET ... PX`.
//!
//! One multiplexed connection (redis-rs `ConnectionManager`, which reconnects by itself) carries every command;
//! the invalidation bus has its own pub/sub connection. Pattern deletes walk `SCAN MATCH` and `UNLINK` batch by
//! batch, so no single command blocks the server for long; `KEYS` is never used.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, RedisError};

use super::{L2Hit, Redactor};
use crate::error::{CacheError, ErrorKind, Result};
use crate::pattern::Pattern;

/// The pub/sub channel of the invalidation bus.
pub const BUS_CHANNEL: &str = "tiered-cache:bus";
/// Lock keys start with `#`, which no namespace may contain, so they never meet a cache key or a `SCAN` of one.
const LOCK_PREFIX: &str = "#lock:";
/// The default `COUNT` hint of `SCAN`.
pub const DEFAULT_SCAN_COUNT: u32 = 1000;

const UNLOCK_IF_OWNER: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Settings of the Redis L2.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisConfig {
    /// `COUNT` hint of each `SCAN` step of a pattern delete (option `redis.scanCount`, 10 to 100 000; default
    /// [`DEFAULT_SCAN_COUNT`]): higher means fewer round trips but longer steps on the server.
    pub scan_count: u32,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { scan_count: DEFAULT_SCAN_COUNT }
    }
}

/// The Redis store.
pub struct RedisL2 {
    client: Client,
    manager: ConnectionManager,
    scan_count: u32,
    redactor: Redactor,
}

impl RedisL2 {
    /// Builds a lazy connection: the first command connects. Must run inside a tokio runtime.
    pub fn new(url: &url::Url, config: &RedisConfig, timeout: Duration) -> Result<Self> {
        let redactor = Redactor::for_url(url);
        let client = Client::open(url.as_str())
            .map_err(|e| redactor.error(ErrorKind::InvalidOption, "option `url` is not a valid Redis URL", e))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| redactor.error(ErrorKind::InvalidOption, "Redis L2 configuration", e))?;
        Ok(RedisL2 { client, manager, scan_count: config.scan_count, redactor })
    }

    fn error(&self, context: &str, e: RedisError) -> CacheError {
        let kind = if e.is_timeout() {
            ErrorKind::L2Timeout
        } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_unrecoverable_error()
        {
            ErrorKind::L2Unavailable
        } else {
            ErrorKind::L2
        };
        self.redactor.error(kind, &format!("Redis L2 {context}"), e)
    }

    fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// `GET` and `PTTL` in one pipeline; `remaining_ms` is `None` for a key without expiry.
    pub async fn get(&self, key: &str) -> Result<Option<L2Hit>> {
        let (json, pttl): (Option<String>, i64) = redis::pipe()
            .get(key)
            .pttl(key)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.error("get", e))?;
        Ok(json.map(|json| L2Hit { json, remaining_ms: (pttl >= 0).then_some(pttl as u64) }))
    }

    /// `SET key json PX ttl_ms`, then `PUBLISH` of `bus_message` in the same pipeline: one round trip, not atomic.
    pub async fn set(&self, key: &str, json: &str, ttl_ms: u64, bus_message: Option<&str>) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(key).arg(json).arg("PX").arg(ttl_ms).ignore();
        if let Some(message) = bus_message {
            pipe.publish(BUS_CHANNEL, message).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(|e| self.error("set", e))
    }

    /// `UNLINK`s `keys` (freed by the server in the background); returns how many existed. `keys` must not be empty:
    /// `UNLINK` without a key is an error.
    pub async fn delete(&self, keys: &[String]) -> Result<u64> {
        self.conn().unlink(keys).await.map_err(|e| self.error("delete", e))
    }

    /// `EXISTS`: Redis hides expired keys itself, so a key found is live.
    pub async fn has(&self, key: &str) -> Result<bool> {
        self.conn().exists(key).await.map_err(|e| self.error("has", e))
    }

    /// Walks `SCAN MATCH` over the namespace and `UNLINK`s each step's keys that [`Pattern::matches`]; returns how
    /// many went. Not atomic: a key written during the walk may survive it.
    pub async fn delete_matching(&self, namespace: &str, pattern: &Pattern) -> Result<u64> {
        let prefix = crate::key::namespaced(namespace, "");
        let glob = pattern.to_redis_match(&prefix);
        let mut conn = self.conn();
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&glob)
                .arg("COUNT")
                .arg(self.scan_count)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error("invalidatePattern scan", e))?;
            let matching: Vec<&String> = keys
                .iter()
                .filter(|full| crate::key::strip_namespace(namespace, full).is_some_and(|key| pattern.matches(key)))
                .collect();
            if !matching.is_empty() {
                let n: u64 = conn.unlink(&matching).await.map_err(|e| self.error("invalidatePattern unlink", e))?;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// `PUBLISH` on [`BUS_CHANNEL`], on the command connection.
    pub async fn publish(&self, message: &str) -> Result<()> {
        self.conn().publish(BUS_CHANNEL, message).await.map_err(|e| self.error("bus publish", e))
    }

    /// `SET NX PX` on the lock key of `key` with a random owner token; only the owner's release deletes it. When
    /// another process holds it, says in how many milliseconds its hold runs out.
    pub async fn try_lock(&self, key: &str, hold_for: Duration) -> Result<super::LockAttempt> {
        let lock_key = format!("{LOCK_PREFIX}{key}");
        let token = format!("{:032x}", rand::random::<u128>());
        let (acquired, expires_in_ms): (Option<String>, i64) = redis::pipe()
            .cmd("SET")
            .arg(&lock_key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(hold_for.as_millis().max(1) as u64)
            .pttl(&lock_key)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.error("lock", e))?;
        Ok(match acquired {
            Some(_) => super::LockAttempt::Acquired(super::LoadLock::Redis(TokenLock {
                manager: Some(self.conn()),
                lock_key,
                token,
            })),
            None => super::LockAttempt::Held { expires_in_ms: u64::try_from(expires_in_ms).ok() },
        })
    }

    /// A dedicated pub/sub connection subscribed to the bus channel: a stream of payloads that ends when the
    /// connection is lost.
    pub async fn subscribe(&self) -> Result<std::pin::Pin<Box<dyn futures_util::Stream<Item = String> + Send>>> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(|e| self.error("bus connect", e))?;
        pubsub.subscribe(BUS_CHANNEL).await.map_err(|e| self.error("bus subscribe", e))?;
        Ok(Box::pin(pubsub.into_on_message().filter_map(|msg| async move { msg.get_payload::<String>().ok() })))
    }
}

/// A held Redis lock: the lock key and the token that proves ownership.
pub struct TokenLock {
    manager: Option<ConnectionManager>,
    lock_key: String,
    token: String,
}

impl TokenLock {
    /// Deletes the lock key if it still holds this lock's token, and waits for the answer; a failure leaves the key
    /// to expire.
    pub async fn release(mut self) {
        if let Some(manager) = self.manager.take() {
            unlock(manager, &self.lock_key, &self.token).await;
        }
    }
}

/// Deletes the lock only if it still holds our token: past its expiry another process may own it.
async fn unlock(mut manager: ConnectionManager, lock_key: &str, token: &str) {
    let _: std::result::Result<i64, _> =
        redis::Script::new(UNLOCK_IF_OWNER).key(lock_key).arg(token).invoke_async(&mut manager).await;
}

impl Drop for TokenLock {
    fn drop(&mut self) {
        if let Some(manager) = self.manager.take() {
            let (lock_key, token) = (std::mem::take(&mut self.lock_key), std::mem::take(&mut self.token));
            crate::runtime::spawn(async move { unlock(manager, &lock_key, &token).await });
        }
    }
}
