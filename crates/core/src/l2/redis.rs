//! The Redis L2: each entry is a small hash `namespace:key` → `{ v: JSON text, x: expiry, w: last write }`, times in
//! microseconds of the Redis server's clock; an entry written with a grace also holds `g`, the end of its grace,
//! and the key lives until then, and a tagged entry holds `t`, its tags as a JSON array. A tag's invalidation record
//! is a hash `#tag:<namespace>:<tag>` → `{ h: hard, s: soft }`, kept [`TAG_RECORD_RETENTION_MS`].
//!
//! The write time `w` is what fences a load that raced a change (see [`super::WriteCondition`]): so that it outlives
//! the value when the TTL is short, the key lives at least the fence window, and the value's own expiry is `x`.
//! A `delete` leaves a hash holding only `w` (a tombstone) for the window; `invalidatePattern` and `clear` stamp one
//! marker key per namespace instead. Writes, removals and their bus messages each go in one script, so one round
//! trip; so does a read, with the records of the entry's tags.
//!
//! One multiplexed connection (redis-rs `ConnectionManager`, which reconnects by itself) carries every command;
//! the invalidation bus has its own pub/sub connection. Pattern deletes walk `SCAN MATCH` batch by batch, so no single
//! command blocks the server for long; `KEYS` is never used.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, RedisError, Script};

use super::{
    BusEvent, BusStream, L2Hit, L2Read, Redactor, ServerTime, Tagged, Write, WriteCondition, TAG_RECORD_RETENTION_MS,
};
use crate::error::{CacheError, ErrorKind, Result};
use crate::pattern::Pattern;
use crate::tags::{TagTime, Tags};

/// The pub/sub channel of the invalidation bus.
pub const BUS_CHANNEL: &str = "tiered-cache:bus";
/// Lock keys start with `#`, which no namespace may contain, so they never meet a cache key or a `SCAN` of one.
const LOCK_PREFIX: &str = "#lock:";
/// The namespace's marker of its latest `invalidatePattern` or `clear`.
const INVALIDATION_PREFIX: &str = "#inval:";
/// A tag's invalidation record, after `<namespace>:`.
const TAG_PREFIX: &str = "#tag:";

/// KEYS: entry. ARGV: the tag records' prefix. Returns v, x, g, t, w (false when absent), the server time's seconds
/// and microseconds, then each tag's h and s. No prelude: a read needs the time only as `TIME` gives it.
const GET: &str = r"
local r = redis.call('HMGET', KEYS[1], 'v', 'x', 'g', 't', 'w')
local t = redis.call('TIME')
local out = {r[1] or false, r[2] or false, r[3] or false, r[4] or false, r[5] or false, t[1], t[2]}
if r[1] and r[4] then
  for _, tag in ipairs(cjson.decode(r[4])) do
    local h = redis.call('HMGET', ARGV[1] .. tag, 'h', 's')
    out[#out + 1] = h[1] or '0'
    out[#out + 1] = h[2] or '0'
  end
end
return out
";

/// ARGV: the tag records' prefix, `h` (hard) or `s` (soft), the records' retention in ms, then the tags. Returns the
/// server time in µs.
const INVALIDATE_TAGS: &str = r"
for i = 4, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  redis.call('HSET', key, ARGV[2], nowstr)
  redis.call('PEXPIRE', key, ARGV[3])
end
return nowstr
";

/// ARGV: the tag records' prefix, then the tags. Returns each tag's h and s.
const TAG_TIMES: &str = r"
local out = {}
for i = 2, #ARGV do
  local h = redis.call('HMGET', ARGV[1] .. ARGV[i], 'h', 's')
  out[#out + 1] = h[1] or '0'
  out[#out + 1] = h[2] or '0'
end
return out
";

const UNLOCK_IF_OWNER: &str =
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Every script starts with this: `now` and `nowstr` in microseconds of the server clock, and `live(key)`, whether an
/// entry holds a value not yet expired (an entry of another type, such as a 0.1 string, is not live).
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nowstr = string.format('%.0f', now)
local function live(key)
  local r = redis.pcall('HMGET', key, 'v', 'x')
  return type(r) == 'table' and not r.err and r[1] and tonumber(r[2]) > now
end
";

/// KEYS: entry, namespace marker. ARGV: json, ttl ms, fence window ms, since µs or '' (unconditional), bus channel,
/// bus message or '', grace ms, tags as a JSON array or '', the tag records' prefix. Returns the write's time in µs,
/// or '' when the fence refused it.
const SET: &str = r"
local since = tonumber(ARGV[4])
local tags = ARGV[8] ~= '' and cjson.decode(ARGV[8]) or {}
if since then
  if now - since > tonumber(ARGV[3]) * 1000 then return '' end
  local w = redis.pcall('HGET', KEYS[1], 'w')
  if type(w) == 'string' and tonumber(w) >= since then return '' end
  local m = redis.call('GET', KEYS[2])
  if m and tonumber(m) >= since then return '' end
  for _, tag in ipairs(tags) do
    local h = redis.call('HMGET', ARGV[9] .. tag, 'h', 's')
    if tonumber(h[1] or '0') >= since or tonumber(h[2] or '0') >= since then return '' end
  end
end
local ttl = tonumber(ARGV[2])
local grace = tonumber(ARGV[7])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'x', string.format('%.0f', now + ttl * 1000), 'w', nowstr)
if grace > 0 then redis.call('HSET', KEYS[1], 'g', string.format('%.0f', now + (ttl + grace) * 1000)) end
if #tags > 0 then redis.call('HSET', KEYS[1], 't', ARGV[8]) end
redis.call('PEXPIRE', KEYS[1], math.max(ttl + grace, tonumber(ARGV[3])))
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return nowstr
";

/// KEYS: entries. ARGV: fence window ms, bus channel, bus message or ''. Leaves a tombstone of each key; returns how
/// many were live.
const DELETE: &str = r"
local removed = 0
for _, key in ipairs(KEYS) do
  if live(key) then removed = removed + 1 end
  redis.call('DEL', key)
  redis.call('HSET', key, 'w', nowstr)
  redis.call('PEXPIRE', key, ARGV[1])
end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed
";

/// KEYS: entries found by a `SCAN` step. Unlinks them; returns how many were live.
const UNLINK_COUNTING_LIVE: &str = r"
local removed = 0
for _, key in ipairs(KEYS) do
  if live(key) then removed = removed + 1 end
  redis.call('UNLINK', key)
end
return removed
";

/// KEYS: the namespace marker. ARGV: fence window ms.
const MARK_INVALIDATION: &str = r"
redis.call('SET', KEYS[1], nowstr, 'PX', ARGV[1])
return 1
";

/// The prefix of the tag records of `namespace`.
fn tag_prefix(namespace: &str) -> String {
    format!("{TAG_PREFIX}{namespace}:")
}

/// The tag records a script returned as `h`, `s` pairs from `first` on, one per tag; absent fields are 0.
fn tag_times(reply: &[Option<String>], first: usize, count: usize) -> Vec<TagTime> {
    let number = |i: usize| reply.get(i).cloned().flatten().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (0..count).map(|i| TagTime { hard_us: number(first + 2 * i), soft_us: number(first + 2 * i + 1) }).collect()
}

/// Tags as the JSON array an entry's `t` field holds.
fn tags_json(tags: &[Box<str>]) -> String {
    serde_json::to_string(tags).expect("strings always serialize")
}

/// Settings of the Redis L2.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisConfig {
    /// `COUNT` hint of each `SCAN` step of a pattern delete (option `redis.scanCount`,
    /// [`crate::rules::REDIS_SCAN_COUNT`]): higher means fewer round trips but longer steps on the server.
    pub scan_count: u32,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { scan_count: crate::rules::REDIS_SCAN_COUNT.default.unwrap_or_default() as u32 }
    }
}

struct Scripts {
    get: Script,
    set: Script,
    invalidate_tags: Script,
    tag_times: Script,
    delete: Script,
    unlink_counting_live: Script,
    mark_invalidation: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_now = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            get: Script::new(GET),
            set: with_now(SET),
            invalidate_tags: with_now(INVALIDATE_TAGS),
            tag_times: Script::new(TAG_TIMES),
            delete: with_now(DELETE),
            unlink_counting_live: with_now(UNLINK_COUNTING_LIVE),
            mark_invalidation: with_now(MARK_INVALIDATION),
        }
    }
}

/// The Redis store.
pub struct RedisL2 {
    client: Client,
    /// Replaced by [`Self::reconnect`]: redis-rs keeps a connection that stopped answering (black-holed, half-open)
    /// for good, since a response timeout does not make it reconnect.
    manager: std::sync::RwLock<ConnectionManager>,
    manager_config: ConnectionManagerConfig,
    /// `l2Timeout`, for each round trip of a pattern removal, which the store gives a longer budget as a whole.
    round_trip_timeout: Duration,
    scan_count: u32,
    fence_window_ms: u64,
    scripts: Scripts,
    redactor: Redactor,
}

impl RedisL2 {
    /// Builds a lazy connection: the first command connects. Must run inside a tokio runtime.
    pub fn new(url: &url::Url, config: &RedisConfig, timeout: Duration, fence_window: Duration) -> Result<Self> {
        let redactor = Redactor::for_url(url);
        let client = Client::open(url.as_str())
            .map_err(|e| redactor.error(ErrorKind::InvalidOption, "option `url` is not a valid Redis URL", e))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
            .map_err(|e| redactor.error(ErrorKind::InvalidOption, "Redis L2 configuration", e))?;
        Ok(RedisL2 {
            client,
            manager: std::sync::RwLock::new(manager),
            manager_config,
            round_trip_timeout: timeout,
            scan_count: config.scan_count,
            fence_window_ms: fence_window.as_millis().max(1) as u64,
            scripts: Scripts::new(),
            redactor,
        })
    }

    fn error(&self, context: &str, e: RedisError) -> CacheError {
        let kind = if e.is_timeout() {
            ErrorKind::L2Timeout
        } else if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
        {
            ErrorKind::L2Unavailable
        } else {
            ErrorKind::L2
        };
        self.redactor.error(kind, &format!("Redis L2 {context}"), e)
    }

    fn conn(&self) -> ConnectionManager {
        self.manager.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts over on a new connection, made by the next command; calls in flight on the old one end with it.
    pub fn reconnect(&self) {
        if let Ok(fresh) = ConnectionManager::new_lazy_with_config(self.client.clone(), self.manager_config.clone()) {
            *self.manager.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
    }

    /// One script: the entry if live (or stale, within its grace), the records of its tags, and the server time of
    /// the read.
    pub async fn get(&self, key: &str) -> Result<L2Read> {
        let mut invocation = self.scripts.get.key(key);
        invocation.arg(tag_prefix(crate::key::namespace_of(key)));
        let reply: Vec<Option<String>> =
            invocation.invoke_async(&mut self.conn()).await.map_err(|e| self.error("get", e))?;
        let field = |i: usize| reply.get(i).cloned().flatten();
        let number = |i: usize| field(i).and_then(|s| s.parse::<u64>().ok());
        let now_us = number(5).unwrap_or(0) * 1_000_000 + number(6).unwrap_or(0);
        let mut read = L2Read { hit: None, stale: None, at: ServerTime(now_us), tag_times: Vec::new() };
        let (Some(json), Some(x)) = (field(0), number(1)) else {
            return Ok(read);
        };
        let tagged = match field(3) {
            Some(tags) => {
                let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
                let tags: Tags = tags.into_iter().map(String::into_boxed_str).collect();
                read.tag_times = tags
                    .iter()
                    .cloned()
                    .zip(tag_times(&reply, 7, tags.len()))
                    .filter(|(_, time)| time.latest_us() > 0)
                    .collect();
                Some(Tagged { tags, written_us: number(4).unwrap_or(0) })
            }
            None => None,
        };
        let stale_until_us = number(2);
        if x > now_us {
            let grace_ms = stale_until_us.map_or(0, |g| g.saturating_sub(x) / 1000);
            read.hit = Some(L2Hit { json, remaining_ms: Some((x - now_us) / 1000), grace_ms, tagged });
        } else if let Some(g) = stale_until_us.filter(|&g| g > now_us) {
            read.stale = Some(L2Hit { json, remaining_ms: Some(0), grace_ms: (g - now_us) / 1000, tagged });
        }
        Ok(read)
    }

    /// Records an invalidation of `tags` now, in one script; returns its time.
    pub async fn invalidate_tags(&self, namespace: &str, tags: &[Box<str>], soft: bool) -> Result<ServerTime> {
        let mut invocation = self.scripts.invalidate_tags.prepare_invoke();
        invocation.arg(tag_prefix(namespace)).arg(if soft { "s" } else { "h" }).arg(TAG_RECORD_RETENTION_MS);
        for tag in tags {
            invocation.arg(&**tag);
        }
        let at: String =
            invocation.invoke_async(&mut self.conn()).await.map_err(|e| self.error("invalidateTags", e))?;
        Ok(ServerTime(at.parse().unwrap_or(0)))
    }

    /// The invalidation records of `tags`, in one script.
    pub async fn tag_times(&self, namespace: &str, tags: &[Box<str>]) -> Result<Vec<TagTime>> {
        let mut invocation = self.scripts.tag_times.prepare_invoke();
        invocation.arg(tag_prefix(namespace));
        for tag in tags {
            invocation.arg(&**tag);
        }
        let reply: Vec<Option<String>> =
            invocation.invoke_async(&mut self.conn()).await.map_err(|e| self.error("getTagExpiration", e))?;
        Ok(tag_times(&reply, 0, tags.len()))
    }

    /// Writes the entry (and publishes its bus message) in one script, unless its condition refuses it; returns the
    /// write's time.
    pub async fn set(&self, key: &str, namespace: &str, json: &str, write: Write<'_>) -> Result<Option<ServerTime>> {
        let since = match write.condition {
            WriteCondition::Always => String::new(),
            WriteCondition::UnchangedSince(ServerTime(us)) => us.to_string(),
        };
        let written: String = self
            .scripts
            .set
            .key(key)
            .key(format!("{INVALIDATION_PREFIX}{namespace}"))
            .arg(json)
            .arg(write.lifetime.ttl_ms)
            .arg(self.fence_window_ms)
            .arg(since)
            .arg(BUS_CHANNEL)
            .arg(write.bus_message.unwrap_or(""))
            .arg(write.lifetime.grace_ms)
            .arg(if write.tags.is_empty() { String::new() } else { tags_json(write.tags) })
            .arg(tag_prefix(namespace))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.error("set", e))?;
        Ok(written.parse().ok().map(ServerTime))
    }

    /// Leaves a tombstone of each key (and publishes `bus_message`) in one script; returns how many were live.
    /// `keys` must not be empty.
    pub async fn delete(&self, keys: &[String], bus_message: Option<&str>) -> Result<u64> {
        let mut invocation = self.scripts.delete.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation.arg(self.fence_window_ms).arg(BUS_CHANNEL).arg(bus_message.unwrap_or(""));
        invocation.invoke_async(&mut self.conn()).await.map_err(|e| self.error("delete", e))
    }

    /// Whether a live entry exists: the read of [`RedisL2::get`], since liveness needs the value's expiry and the
    /// Stamps the namespace's invalidation marker, then walks `SCAN MATCH` over the namespace and unlinks each step's
    /// keys that [`Pattern::matches`]; returns how many live ones went. Not atomic: a key written during the walk
    /// may survive it, but no load that started before the call can store its value after it.
    pub async fn delete_matching(&self, namespace: &str, pattern: &Pattern) -> Result<u64> {
        let mut conn = self.conn();
        let mut mark = self.scripts.mark_invalidation.prepare_invoke();
        mark.key(format!("{INVALIDATION_PREFIX}{namespace}")).arg(self.fence_window_ms);
        let _: i64 = self.round_trip("invalidatePattern", mark.invoke_async(&mut conn)).await?;
        let prefix = crate::key::namespaced(namespace, "");
        let glob = pattern.to_redis_match(&prefix);
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let scan = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&glob).arg("COUNT").arg(self.scan_count).clone();
            let (next, keys): (u64, Vec<String>) =
                self.round_trip("invalidatePattern scan", scan.query_async(&mut conn)).await?;
            let matching: Vec<&String> = keys
                .iter()
                .filter(|full| crate::key::strip_namespace(namespace, full).is_some_and(|key| pattern.matches(key)))
                .collect();
            if !matching.is_empty() {
                let mut invocation = self.scripts.unlink_counting_live.prepare_invoke();
                for key in matching {
                    invocation.key(key);
                }
                let live: u64 = self.round_trip("invalidatePattern unlink", invocation.invoke_async(&mut conn)).await?;
                removed += live;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// One round trip of a multi-step call, bounded by `l2Timeout` (connecting included: redis-rs would otherwise try
    /// to connect twice).
    async fn round_trip<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.round_trip_timeout, call).await {
            Ok(result) => result.map_err(|e| self.error(what, e)),
            Err(_) => Err(CacheError::l2_timeout(self.round_trip_timeout.as_millis() as u64)),
        }
    }

    /// `PUBLISH` on `channel`, on the command connection.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        self.conn().publish(channel, message).await.map_err(|e| self.error("bus publish", e))
    }

    /// The channel on which only the bus of `bus_id` listens, for its liveness probes.
    pub fn probe_channel(bus_id: u64) -> String {
        format!("{BUS_CHANNEL}:probe:{bus_id:016x}")
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

    /// A dedicated pub/sub connection subscribed to the bus channel and to `probe_channel`: a stream that ends when
    /// the connection is lost. It may also never answer (a half-open connection): the bus bounds every wait on it.
    pub async fn subscribe(&self, probe_channel: &str) -> Result<BusStream> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(|e| self.error("bus connect", e))?;
        pubsub.subscribe(&[BUS_CHANNEL, probe_channel]).await.map_err(|e| self.error("bus subscribe", e))?;
        let probe_channel = probe_channel.to_owned();
        Ok(Box::pin(pubsub.into_on_message().filter_map(move |msg| {
            let probe = msg.get_channel_name() == probe_channel;
            async move {
                let payload = msg.get_payload::<String>().ok()?;
                Some(if probe { BusEvent::Probe(payload) } else { BusEvent::Message(payload) })
            }
        })))
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
