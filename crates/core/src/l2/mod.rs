//! The shared L2: one interface over the Postgres and the Redis stores.
//!
//! Keys reaching this layer are already namespaced (`namespace:key`). Every call here may fail; the store decides
//! how to degrade. Messages of these errors never hold credentials: see [`Redactor`].

pub mod postgres;
pub mod redis;

use std::time::Duration;

use crate::error::{CacheError, ErrorKind, Result};
use crate::pattern::Pattern;

/// A live L2 entry.
#[derive(Debug, Clone, PartialEq)]
pub struct L2Hit {
    /// The stored JSON text. Postgres returns its `jsonb` rendering, so key order and spacing may differ from what was
    /// written.
    pub json: String,
    /// Milliseconds of life left; `None` when the entry has no expiry (written by someone else without one).
    pub remaining_ms: Option<u64>,
}

/// The L2 backends. Any call may fail with `ERR_CACHE_L2_UNAVAILABLE` (no connection), `ERR_CACHE_L2_TIMEOUT` (Redis
/// reply timeout; the store also bounds every call) or `ERR_CACHE_L2` (any other error from the server).
pub enum L2 {
    /// A Prisma-shaped table; the bus is `LISTEN`/`NOTIFY`.
    Postgres(postgres::PostgresL2),
    /// String keys with a `PX` expiry; the bus is pub/sub.
    Redis(redis::RedisL2),
}

/// A lock that makes one process the loader of a key. Release it explicitly; dropping it releases it in the
/// background.
pub enum LoadLock {
    /// A session-level advisory lock: it ends with its session, so a crashed holder frees it at once.
    Postgres(postgres::AdvisoryLock),
    /// A `SET NX PX` key with an owner token: a crashed holder's lock lasts until it expires.
    Redis(redis::TokenLock),
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
        }
    }
}

impl L2 {
    /// `"postgres"` or `"redis"`.
    pub fn backend(&self) -> &'static str {
        match self {
            L2::Postgres(_) => "postgres",
            L2::Redis(_) => "redis",
        }
    }

    /// The live entry of a namespaced key, or `None`; never an expired one.
    pub async fn get(&self, key: &str) -> Result<Option<L2Hit>> {
        match self {
            L2::Postgres(pg) => pg.get(key).await,
            L2::Redis(redis) => redis.get(key).await,
        }
    }

    /// Writes an entry and, in the same round trip, publishes `bus_message` when there is one.
    pub async fn set(&self, key: &str, json: &str, ttl_ms: u64, bus_message: Option<&str>) -> Result<()> {
        match self {
            L2::Postgres(pg) => pg.set(key, json, ttl_ms, bus_message).await,
            L2::Redis(redis) => redis.set(key, json, ttl_ms, bus_message).await,
        }
    }

    /// Removes keys; returns how many live entries were removed.
    pub async fn delete(&self, keys: &[String]) -> Result<u64> {
        match self {
            L2::Postgres(pg) => pg.delete(keys).await,
            L2::Redis(redis) => redis.delete(keys).await,
        }
    }

    /// Whether a live entry exists, without fetching its value.
    pub async fn has(&self, key: &str) -> Result<bool> {
        match self {
            L2::Postgres(pg) => pg.has(key).await,
            L2::Redis(redis) => redis.has(key).await,
        }
    }

    /// Removes the keys of `namespace` matching `pattern`; returns how many live entries were removed.
    pub async fn delete_matching(&self, namespace: &str, pattern: &Pattern) -> Result<u64> {
        match self {
            L2::Postgres(pg) => pg.delete_matching(namespace, pattern).await,
            L2::Redis(redis) => redis.delete_matching(namespace, pattern).await,
        }
    }

    /// Publishes one invalidation-bus message.
    pub async fn publish(&self, message: &str) -> Result<()> {
        match self {
            L2::Postgres(pg) => pg.publish(message).await,
            L2::Redis(redis) => redis.publish(message).await,
        }
    }

    /// Tries to become the one process loading `key`. A lock outlives a crashed holder by at most `hold_for`
    /// (Redis expiry; a Postgres lock goes with its session at once).
    pub async fn try_lock(&self, key: &str, hold_for: Duration) -> Result<LockAttempt> {
        match self {
            L2::Postgres(pg) => Ok(match pg.try_lock(key).await? {
                Some(lock) => LockAttempt::Acquired(LoadLock::Postgres(lock)),
                None => LockAttempt::Held { expires_in_ms: None },
            }),
            L2::Redis(redis) => redis.try_lock(key, hold_for).await,
        }
    }

    /// The largest bus message this backend carries, in bytes.
    pub fn max_bus_message_bytes(&self) -> usize {
        match self {
            // A NOTIFY payload must be shorter than 8000 bytes.
            L2::Postgres(_) => 7_900,
            L2::Redis(_) => 64 * 1024,
        }
    }
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
