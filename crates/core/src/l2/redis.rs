//! The Redis L2: each entry is a small hash `namespace:key` → `{ v: JSON text, x: expiry, w: last write }`, times in
//! microseconds of the Redis server's clock; an entry written with a grace also holds `g`, the end of its grace,
//! and the key lives until then, and a tagged entry holds `t`, its tags as a JSON array. A tag's invalidation record
//! is a hash `#tag:<namespace>:<tag>` → `{ h: hard, s: soft }`, kept [`TAG_RECORD_RETENTION_MS`].
//!
//! The write time `w` is what fences a load that raced a change (see [`super::WriteCondition`]): so that it outlives
//! the value when the TTL is short, the key lives at least the fence window, and the value's own expiry is `x`.
//! A `delete` leaves a hash holding only `w` (a tombstone) for the window; `invalidatePattern` and `clear` stamp one
//! marker key per namespace instead. Writes, removals and their bus messages each go in one script, so one round
//! trip; so does a read, with the records of the entry's tags, and so does a batch of up to [`BATCH_KEYS`] keys.
//!
//! One multiplexed connection (redis-rs `ConnectionManager`, which reconnects by itself) carries every command;
//! the invalidation bus has its own pub/sub connection. Pattern deletes walk `SCAN MATCH` batch by batch, so no single
//! command blocks the server for long; `KEYS` is never used.
//!
//! On a Redis Cluster (option `redis.cluster`) the commands go through redis-rs's `ClusterConnection`, which routes
//! each by its key's slot and follows failovers, and no script touches keys of two slots:
//! - entries keep their `namespace:key` names, so a namespace spreads over every slot;
//! - the namespace marker is one key per slot (`#inval:{<slot tag>}<namespace>`, the tag a string of that slot),
//!   read by `SET` in the entry's own slot and stamped on every slot by `invalidatePattern`/`clear`, which then walk
//!   `SCAN` on every master;
//! - a namespace's tag records share one slot (`#tag:{<namespace>}:<tag>`), read in a second round trip after the
//!   entry. A fenced write of a tagged entry cannot see them in its script, so it stores its load's start (`j`)
//!   and reads judge its tags against that instead of its write time: a tag invalidated after the load began makes
//!   it a miss however the two round trips interleave; the store also withdraws it at once when it sees one;
//! - a batch (`getMany`, `setMany`, a multi-key `delete`) runs one script per slot, all in flight together, then
//!   publishes its bus message; `getMany` then reads the batch's tag records in one more round trip;
//! - the bus is plain `SUBSCRIBE` on one node (a cluster broadcasts `PUBLISH` to every node), the first seed that
//!   answers; when that node goes, the stream ends and the bus subscribes again on another.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, Client, Cmd, Pipeline, RedisError, RedisFuture, Script, Value};

use super::{
    tags_json, BatchWrite, BusEvent, BusStream, L2Hit, L2Read, Redactor, ServerTime, Tagged, Write,
    TAG_RECORD_RETENTION_MS,
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

/// KEYS: entries. ARGV: the tag records' prefix, or '' not to read them (a cluster keeps them in another slot).
/// Returns the server time's seconds and microseconds, then for each entry v, x, g, t, w, j (false when absent), the
/// count of tag records that follow, and each tag's h and s. No prelude: a read needs the time only as `TIME` gives it.
const GET: &str = r"
local t = redis.call('TIME')
local out = {t[1], t[2]}
for _, key in ipairs(KEYS) do
  local r = redis.call('HMGET', key, 'v', 'x', 'g', 't', 'w', 'j')
  for i = 1, 6 do out[#out + 1] = r[i] or false end
  local count = #out + 1
  out[count] = '0'
  if ARGV[1] ~= '' and r[1] and r[4] then
    local n = 0
    for _, tag in ipairs(cjson.decode(r[4])) do
      local h = redis.call('HMGET', ARGV[1] .. tag, 'h', 's')
      out[#out + 1] = h[1] or '0'
      out[#out + 1] = h[2] or '0'
      n = n + 1
    end
    out[count] = tostring(n)
  end
end
return out
";

/// KEYS: the tag records. ARGV: `h` (hard) or `s` (soft), the records' retention in ms. Returns the server time in µs.
const INVALIDATE_TAGS: &str = r"
for _, key in ipairs(KEYS) do
  redis.call('HSET', key, ARGV[1], nowstr)
  redis.call('PEXPIRE', key, ARGV[2])
end
return nowstr
";

/// KEYS: the tag records. Returns each tag's h and s.
const TAG_TIMES: &str = r"
local out = {}
for _, key in ipairs(KEYS) do
  local h = redis.call('HMGET', key, 'h', 's')
  out[#out + 1] = h[1] or '0'
  out[#out + 1] = h[2] or '0'
end
return out
";

/// KEYS: entry. ARGV: the write time a fenced write returned, the fence window ms. Turns that write, if still the
/// entry's last, into a tombstone: the cluster's check after the write found a tag invalidated since its load began.
const WITHDRAW: &str = r"
if redis.call('HGET', KEYS[1], 'w') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'w', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
";

const UNLOCK_IF_OWNER: &str =
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Every script starts with this: `now` and `nowstr` in microseconds of the server clock, `live(key)`, whether an
/// entry holds a value not yet expired (an entry of another type, such as a 0.1 string, is not live), and
/// `write(...)`, an entry's unconditional write, which lives at least the fence window `window` (ms).
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nowstr = string.format('%.0f', now)
local function live(key)
  local r = redis.pcall('HMGET', key, 'v', 'x')
  return type(r) == 'table' and not r.err and r[1] and tonumber(r[2]) > now
end
local function write(key, json, ttl, grace, tags, window)
  redis.call('DEL', key)
  redis.call('HSET', key, 'v', json, 'x', string.format('%.0f', now + ttl * 1000), 'w', nowstr)
  if grace > 0 then redis.call('HSET', key, 'g', string.format('%.0f', now + (ttl + grace) * 1000)) end
  if tags ~= '' then redis.call('HSET', key, 't', tags) end
  redis.call('PEXPIRE', key, math.max(ttl + grace, window))
end
";

/// KEYS: entry, namespace marker (of the entry's slot on a cluster). ARGV: json, ttl ms, fence window ms, since µs or
/// '' (unconditional), bus channel, bus message or '', grace ms, tags as a JSON array or '', the tag records' prefix
/// or '' when they live in another slot (a fenced tagged write then stores `j`, its load's start, which reads judge
/// its tags by). Returns the write's time in µs, or '' when the fence refused it.
const SET: &str = r"
local since = tonumber(ARGV[4])
local tags = ARGV[8] ~= '' and cjson.decode(ARGV[8]) or {}
if since then
  if now - since > tonumber(ARGV[3]) * 1000 then return '' end
  local w = redis.pcall('HGET', KEYS[1], 'w')
  if type(w) == 'string' and tonumber(w) >= since then return '' end
  local m = redis.call('GET', KEYS[2])
  if m and tonumber(m) >= since then return '' end
  if ARGV[9] == '' then tags = {} end
  for _, tag in ipairs(tags) do
    local h = redis.call('HMGET', ARGV[9] .. tag, 'h', 's')
    if tonumber(h[1] or '0') >= since or tonumber(h[2] or '0') >= since then return '' end
  end
end
write(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[3]))
if since and ARGV[8] ~= '' and ARGV[9] == '' then redis.call('HSET', KEYS[1], 'j', ARGV[4]) end
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return nowstr
";

/// KEYS: entries. ARGV: fence window ms, bus channel, bus message or '', then for each entry its json, ttl ms, grace
/// ms and tags as a JSON array or ''. Writes them all unconditionally, as `set` does, then publishes the message;
/// returns the writes' time in µs.
const SET_MANY: &str = r"
for i, key in ipairs(KEYS) do
  local at = 3 + (i - 1) * 4
  write(key, ARGV[at + 1], tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), ARGV[at + 4], tonumber(ARGV[1]))
end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
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

/// Slots of a Redis Cluster.
const CLUSTER_SLOTS: usize = 16_384;

/// The slot of `key`, as Redis Cluster computes it: CRC16 of its hash tag (the first non-empty `{...}`), or of the
/// whole key.
fn slot_of(key: &[u8]) -> usize {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) as usize % CLUSTER_SLOTS
}

/// For each slot, a short string that hashes to it: `{tag}` in a key pins the key to that slot.
fn slot_tags() -> &'static [String] {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); CLUSTER_SLOTS];
        let mut missing = CLUSTER_SLOTS;
        // About 170,000 candidates cover every slot (the coupon collector's bound), a few milliseconds once.
        for n in 0u64.. {
            let candidate = format!("{n:x}");
            let slot = slot_of(candidate.as_bytes());
            if tags[slot].is_empty() {
                tags[slot] = candidate;
                missing -= 1;
                if missing == 0 {
                    break;
                }
            }
        }
        tags
    })
}

/// The tag records a script returned as `h`, `s` pairs from `first` on, one per tag; absent fields are 0.
fn tag_times(reply: &[Option<String>], first: usize, count: usize) -> Vec<TagTime> {
    let number = |i: usize| reply.get(i).cloned().flatten().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (0..count).map(|i| TagTime { hard_us: number(first + 2 * i), soft_us: number(first + 2 * i + 1) }).collect()
}

/// How many keys one script of a batch reads or writes at most: a script blocks the server while it runs, so a
/// large batch goes as several, in flight together.
const BATCH_KEYS: usize = 256;

/// What the read script returned for one entry: its fields v, x, g, t, w, j, the records of its tags, and the
/// server time of the read.
struct Found {
    now_us: u64,
    entry: [Option<String>; 6],
    times: Vec<TagTime>,
}

impl Found {
    /// The entry's tags, when it holds a value.
    fn tags(&self) -> impl Iterator<Item = Box<str>> + '_ {
        let tags = match (&self.entry[0], &self.entry[3]) {
            (Some(_), Some(tags)) => serde_json::from_str::<Vec<String>>(tags).unwrap_or_default(),
            _ => Vec::new(),
        };
        tags.into_iter().map(String::into_boxed_str)
    }

    fn into_read(self) -> L2Read {
        let number = |i: usize| self.entry[i].as_deref().and_then(|s| s.parse::<u64>().ok());
        let now_us = self.now_us;
        let mut read = L2Read { hit: None, stale: None, at: ServerTime(now_us), tag_times: Vec::new() };
        let Some(x) = number(1).filter(|_| self.entry[0].is_some()) else {
            return read;
        };
        let tagged = self.entry[3].is_some().then(|| {
            let tags: Tags = self.tags().collect();
            read.tag_times =
                tags.iter().cloned().zip(self.times.iter().copied()).filter(|(_, time)| time.latest_us() > 0).collect();
            // A fenced write on a cluster is judged from its load's start (`j`), not from when it landed.
            Tagged { tags, written_us: number(5).or(number(4)).unwrap_or(0) }
        });
        let stale_until_us = number(2);
        let [json, ..] = self.entry;
        let json = json.expect("checked above");
        if x > now_us {
            let grace_ms = stale_until_us.map_or(0, |g| g.saturating_sub(x) / 1000);
            read.hit = Some(L2Hit { json, remaining_ms: Some((x - now_us) / 1000), grace_ms, tagged });
        } else if let Some(g) = stale_until_us.filter(|&g| g > now_us) {
            read.stale = Some(L2Hit { json, remaining_ms: Some(0), grace_ms: (g - now_us) / 1000, tagged });
        }
        read
    }
}

/// Settings of the Redis L2.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisConfig {
    /// `COUNT` hint of each `SCAN` step of a pattern delete (option `redis.scanCount`,
    /// [`crate::rules::REDIS_SCAN_COUNT`]): higher means fewer round trips but longer steps on the server.
    pub scan_count: u32,
    /// The seed nodes of a Redis Cluster (option `redis.cluster` with comma-separated URLs in `url`); empty for one
    /// server.
    pub cluster_seeds: Vec<url::Url>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            scan_count: crate::rules::REDIS_SCAN_COUNT.default.unwrap_or_default() as u32,
            cluster_seeds: vec![],
        }
    }
}

struct Scripts {
    get: Script,
    set: Script,
    set_many: Script,
    invalidate_tags: Script,
    tag_times: Script,
    withdraw: Script,
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
            set_many: with_now(SET_MANY),
            invalidate_tags: with_now(INVALIDATE_TAGS),
            tag_times: Script::new(TAG_TIMES),
            withdraw: Script::new(WITHDRAW),
            delete: with_now(DELETE),
            unlink_counting_live: with_now(UNLINK_COUNTING_LIVE),
            mark_invalidation: with_now(MARK_INVALIDATION),
        }
    }
}

/// The command connection: to one server, or to a cluster, whose connection routes each command by its key's slot.
#[derive(Clone)]
enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How the store reaches Redis, and how it opens a fresh command connection.
enum Topology {
    Server {
        client: Client,
        config: ConnectionManagerConfig,
    },
    /// `seeds` open the bus's pub/sub connection, to the first node that answers.
    Cluster {
        client: ClusterClient,
        seeds: Vec<Client>,
    },
}

impl Topology {
    fn connect_lazily(&self) -> std::result::Result<Conn, RedisError> {
        Ok(match self {
            Topology::Server { client, config } => {
                Conn::Server(ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?)
            }
            // The cluster connection connects in the background and answers its first command once it knows the
            // slots; it reconnects to nodes and follows `MOVED` by itself.
            Topology::Cluster { client, .. } => {
                Conn::Cluster(client.get_pending_async_connection_with_config(ClusterConfig::new()))
            }
        })
    }
}

/// A master of a cluster and the slot ranges it serves.
struct Master {
    host: String,
    port: u16,
    slots: Vec<(usize, usize)>,
}

impl Master {
    fn route(&self) -> RoutingInfo {
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: self.host.clone(), port: self.port })
    }
}

/// The Redis store.
pub struct RedisL2 {
    topology: Topology,
    /// Replaced by [`Self::reconnect`]: redis-rs keeps a connection that stopped answering (black-holed, half-open)
    /// for good, since a response timeout does not make it reconnect.
    manager: std::sync::RwLock<Conn>,
    /// `l2Timeout`, for each round trip of a pattern removal, which the store gives a longer budget as a whole.
    round_trip_timeout: Duration,
    scan_count: u32,
    fence_window_ms: u64,
    scripts: Scripts,
    redactor: Redactor,
}

impl RedisL2 {
    /// Builds a lazy connection: the first command connects. Must run inside a tokio runtime. With
    /// `config.cluster_seeds`, a cluster client on those seeds (`url` is the first of them).
    pub fn new(url: &url::Url, config: &RedisConfig, timeout: Duration, fence_window: Duration) -> Result<Self> {
        let urls = if config.cluster_seeds.is_empty() { std::slice::from_ref(url) } else { &config.cluster_seeds[..] };
        let redactor = Redactor::for_urls(urls);
        let invalid =
            |e: RedisError| redactor.error(ErrorKind::InvalidOption, "option `url` is not a valid Redis URL", e);
        let topology = if config.cluster_seeds.is_empty() {
            let client = Client::open(url.as_str()).map_err(invalid)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            Topology::Server { client, config }
        } else {
            let seeds = urls.iter().map(|u| Client::open(u.as_str())).collect::<std::result::Result<Vec<_>, _>>();
            let seeds = seeds.map_err(invalid)?;
            // Retries ride out a failover (a replica's promotion takes a few seconds); the store bounds each call by
            // `l2Timeout` whatever they do.
            let client = ClusterClient::builder(urls.iter().map(|u| u.as_str()))
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(6)
                .max_retry_wait(500)
                .build()
                .map_err(invalid)?;
            Topology::Cluster { client, seeds }
        };
        let manager = topology
            .connect_lazily()
            .map_err(|e| redactor.error(ErrorKind::InvalidOption, "Redis L2 configuration", e))?;
        Ok(RedisL2 {
            topology,
            manager: std::sync::RwLock::new(manager),
            round_trip_timeout: timeout,
            scan_count: config.scan_count,
            fence_window_ms: fence_window.as_millis().max(1) as u64,
            scripts: Scripts::new(),
            redactor,
        })
    }

    fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster { .. })
    }

    fn error(&self, context: &str, e: RedisError) -> CacheError {
        let kind = if e.is_timeout() {
            ErrorKind::L2Timeout
        } else if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
            || e.is_cluster_error()
        {
            ErrorKind::L2Unavailable
        } else {
            ErrorKind::L2
        };
        self.redactor.error(kind, &format!("Redis L2 {context}"), e)
    }

    fn conn(&self) -> Conn {
        self.manager.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts over on a new connection, made by the next command; calls in flight on the old one end with it.
    pub fn reconnect(&self) {
        if let Ok(fresh) = self.topology.connect_lazily() {
            *self.manager.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
    }

    /// The prefix of the tag records of `namespace`: on a cluster they share the namespace's slot.
    fn tag_prefix(&self, namespace: &str) -> String {
        if self.is_cluster() {
            format!("{TAG_PREFIX}{{{namespace}}}:")
        } else {
            format!("{TAG_PREFIX}{namespace}:")
        }
    }

    /// The namespace marker that fences writes of `entry`: one per namespace, or on a cluster one per slot, in the
    /// entry's.
    fn marker_of(&self, namespace: &str, entry: &str) -> String {
        if self.is_cluster() {
            marker_in_slot(namespace, slot_of(entry.as_bytes()))
        } else {
            format!("{INVALIDATION_PREFIX}{namespace}")
        }
    }

    /// One script: the entry if live (or stale, within its grace), the records of its tags (on a cluster in a second
    /// round trip, in their slot), and the server time of the read.
    pub async fn get(&self, key: &str) -> Result<L2Read> {
        let mut reads = self.get_many(std::slice::from_ref(&key.to_owned())).await?;
        Ok(reads.pop().expect("one read per key"))
    }

    /// The entries of `keys` (of one namespace), in their order: one script per [`BATCH_KEYS`] keys, on a cluster
    /// per slot too, all in flight at once on the one multiplexed connection, so a batch costs about one round trip;
    /// on a cluster, the records of the batch's tags follow in one more.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<L2Read>> {
        let Some(first) = keys.first() else { return Ok(Vec::new()) };
        let namespace = crate::key::namespace_of(first);
        let prefix = if self.is_cluster() { String::new() } else { self.tag_prefix(namespace) };
        let groups = self.in_batches(keys.iter().map(String::as_str));
        let scripts = groups.iter().map(|group| {
            let mut invocation = self.scripts.get.prepare_invoke();
            for (_, key) in group {
                invocation.key(*key);
            }
            invocation.arg(&prefix);
            let mut conn = self.conn();
            async move { invocation.invoke_async::<Vec<Option<String>>>(&mut conn).await }
        });
        let replies = futures_util::future::try_join_all(scripts).await.map_err(|e| self.error("get", e))?;
        let mut found: Vec<Option<Found>> = (0..keys.len()).map(|_| None).collect();
        for (group, reply) in groups.iter().zip(replies) {
            let mut fields = reply.into_iter();
            let number = |fields: &mut std::vec::IntoIter<Option<String>>| {
                fields.next().flatten().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
            };
            let now_us = number(&mut fields) * 1_000_000 + number(&mut fields);
            for (index, _) in group {
                let entry: [Option<String>; 6] = std::array::from_fn(|_| fields.next().flatten());
                let records = number(&mut fields) as usize;
                let times = (0..records)
                    .map(|_| TagTime { hard_us: number(&mut fields), soft_us: number(&mut fields) })
                    .collect();
                found[*index] = Some(Found { now_us, entry, times });
            }
        }
        let mut found: Vec<Found> = found.into_iter().map(|f| f.expect("every key was read")).collect();
        if self.is_cluster() {
            self.read_tag_records(namespace, &mut found).await?;
        }
        Ok(found.into_iter().map(Found::into_read).collect())
    }

    /// On a cluster, the records of the tags of every tagged entry read, in one round trip to their slot.
    async fn read_tag_records(&self, namespace: &str, found: &mut [Found]) -> Result<()> {
        let mut tags: Vec<Box<str>> = found.iter().flat_map(Found::tags).collect();
        tags.sort_unstable();
        tags.dedup();
        if tags.is_empty() {
            return Ok(());
        }
        let times = self.tag_times(namespace, &tags).await?;
        for entry in found.iter_mut() {
            entry.times = entry
                .tags()
                .map(|tag| tags.binary_search(&tag).map_or_else(|_| TagTime::default(), |i| times[i]))
                .collect();
        }
        Ok(())
    }

    /// `keys`, with their positions, in groups of one slot (a cluster) and at most [`BATCH_KEYS`] keys each.
    fn in_batches<'a>(&self, keys: impl Iterator<Item = &'a str>) -> Vec<Vec<(usize, &'a str)>> {
        let mut by_slot: std::collections::BTreeMap<usize, Vec<(usize, &'a str)>> = Default::default();
        for (index, key) in keys.enumerate() {
            let slot = if self.is_cluster() { slot_of(key.as_bytes()) } else { 0 };
            by_slot.entry(slot).or_default().push((index, key));
        }
        by_slot
            .into_values()
            .flat_map(|group| group.chunks(BATCH_KEYS).map(<[_]>::to_vec).collect::<Vec<_>>())
            .collect()
    }

    /// Records an invalidation of `tags` now, in one script; returns its time.
    pub async fn invalidate_tags(&self, namespace: &str, tags: &[Box<str>], soft: bool) -> Result<ServerTime> {
        let prefix = self.tag_prefix(namespace);
        let mut invocation = self.scripts.invalidate_tags.prepare_invoke();
        for tag in tags {
            invocation.key(format!("{prefix}{tag}"));
        }
        invocation.arg(if soft { "s" } else { "h" }).arg(TAG_RECORD_RETENTION_MS);
        let at: String =
            invocation.invoke_async(&mut self.conn()).await.map_err(|e| self.error("invalidateTags", e))?;
        Ok(ServerTime(at.parse().unwrap_or(0)))
    }

    /// The invalidation records of `tags`, in one script.
    pub async fn tag_times(&self, namespace: &str, tags: &[Box<str>]) -> Result<Vec<TagTime>> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = self.tag_prefix(namespace);
        let mut invocation = self.scripts.tag_times.prepare_invoke();
        for tag in tags {
            invocation.key(format!("{prefix}{tag}"));
        }
        let reply: Vec<Option<String>> =
            invocation.invoke_async(&mut self.conn()).await.map_err(|e| self.error("getTagExpiration", e))?;
        Ok(tag_times(&reply, 0, tags.len()))
    }

    /// Writes the entry (and publishes its bus message) in one script, unless its condition refuses it; returns the
    /// write's time. On a cluster a fenced tagged write then reads its tags' records (another slot) and withdraws
    /// itself when one was invalidated since its load began; it returns its load's start as its time, since that
    /// is what its tags are judged by.
    pub async fn set(&self, key: &str, namespace: &str, json: &str, write: Write<'_>) -> Result<Option<ServerTime>> {
        let since = write.condition.since();
        let tags_elsewhere = self.is_cluster();
        let written: String = self
            .scripts
            .set
            .key(key)
            .key(self.marker_of(namespace, key))
            .arg(json)
            .arg(write.lifetime.ttl_ms)
            .arg(self.fence_window_ms)
            .arg(since.map_or(String::new(), |at| at.0.to_string()))
            .arg(BUS_CHANNEL)
            .arg(write.bus_message.unwrap_or(""))
            .arg(write.lifetime.grace_ms)
            .arg(if write.tags.is_empty() { String::new() } else { tags_json(write.tags) })
            .arg(if tags_elsewhere { String::new() } else { self.tag_prefix(namespace) })
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.error("set", e))?;
        let Some(written) = written.parse().ok().map(ServerTime) else {
            return Ok(None);
        };
        match since {
            Some(since) if tags_elsewhere && !write.tags.is_empty() => {
                // Should this check fail, the entry stays, judged by its `j`: never served past such an invalidation.
                let times = self.tag_times(namespace, write.tags).await?;
                if times.iter().any(|time| time.latest_us() >= since.0) {
                    let mut withdraw = self.scripts.withdraw.key(key);
                    withdraw.arg(written.0.to_string()).arg(self.fence_window_ms);
                    let _: i64 = withdraw.invoke_async(&mut self.conn()).await.map_err(|e| self.error("set", e))?;
                    return Ok(None);
                }
                Ok(Some(since))
            }
            _ => Ok(Some(written)),
        }
    }

    /// Leaves a tombstone of each key (and publishes `bus_message`) in one script, or in several when the keys span
    /// slots of a cluster or more than [`BATCH_KEYS`] keys, in flight together, the message after them; returns how
    /// many were live. `keys` must not be empty.
    pub async fn delete(&self, keys: &[String], bus_message: Option<&str>) -> Result<u64> {
        let groups = self.in_batches(keys.iter().map(String::as_str));
        if groups.len() <= 1 {
            return self.delete_in_slot(keys.iter().map(String::as_str), bus_message).await;
        }
        let removals = groups.iter().map(|group| self.delete_in_slot(group.iter().map(|(_, key)| *key), None));
        let removed: u64 = futures_util::future::try_join_all(removals).await?.into_iter().sum();
        if let Some(message) = bus_message {
            self.publish(BUS_CHANNEL, message).await?;
        }
        Ok(removed)
    }

    async fn delete_in_slot<'a>(&self, keys: impl Iterator<Item = &'a str>, bus_message: Option<&str>) -> Result<u64> {
        let mut invocation = self.scripts.delete.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation.arg(self.fence_window_ms).arg(BUS_CHANNEL).arg(bus_message.unwrap_or(""));
        invocation.invoke_async(&mut self.conn()).await.map_err(|e| self.error("delete", e))
    }

    /// Writes every entry unconditionally, as [`Self::set`] does, in one script, or in several when they span slots of
    /// a cluster or more than [`BATCH_KEYS`] keys, in flight together, then publishes `bus_message` (with the one
    /// script, in it); returns each write's time, in the entries' order.
    pub async fn set_many(&self, entries: &[BatchWrite<'_>], bus_message: Option<&str>) -> Result<Vec<ServerTime>> {
        let groups = self.in_batches(entries.iter().map(|entry| entry.key));
        let single = groups.len() <= 1;
        let scripts = groups.iter().map(|group| {
            let mut invocation = self.scripts.set_many.prepare_invoke();
            invocation.arg(self.fence_window_ms).arg(BUS_CHANNEL).arg(if single {
                bus_message.unwrap_or("")
            } else {
                ""
            });
            for (index, key) in group {
                let entry = &entries[*index];
                invocation.key(*key).arg(entry.json).arg(entry.lifetime.ttl_ms).arg(entry.lifetime.grace_ms);
                invocation.arg(if entry.tags.is_empty() { String::new() } else { tags_json(entry.tags) });
            }
            let mut conn = self.conn();
            async move { invocation.invoke_async::<String>(&mut conn).await }
        });
        let times = futures_util::future::try_join_all(scripts).await.map_err(|e| self.error("setMany", e))?;
        if let (false, Some(message)) = (single, bus_message) {
            self.publish(BUS_CHANNEL, message).await?;
        }
        let mut written = vec![ServerTime(0); entries.len()];
        for (group, time) in groups.iter().zip(times) {
            let time = ServerTime(time.parse().unwrap_or(0));
            group.iter().for_each(|(index, _)| written[*index] = time);
        }
        Ok(written)
    }

    /// Stamps the namespace's invalidation marker (on a cluster, every slot's), then walks `SCAN MATCH` over the
    /// namespace (on every master) and unlinks each step's keys that [`Pattern::matches`]; returns how many live ones
    /// went. Not atomic: a key written during the walk may survive it, but no load that started before the call can
    /// store its value after it.
    pub async fn delete_matching(&self, namespace: &str, pattern: &Pattern) -> Result<u64> {
        let prefix = crate::key::namespaced(namespace, "");
        let glob = pattern.to_redis_match(&prefix);
        if !self.is_cluster() {
            let mut mark = self.scripts.mark_invalidation.prepare_invoke();
            mark.key(format!("{INVALIDATION_PREFIX}{namespace}")).arg(self.fence_window_ms);
            let _: i64 = self.round_trip("invalidatePattern", mark.invoke_async(&mut self.conn())).await?;
            return self.scan_and_unlink(namespace, pattern, &glob, None).await;
        }
        let masters = self.masters().await?;
        // Every slot's marker before any key goes: a load that began before this call is fenced wherever its key is.
        futures_util::future::try_join_all(masters.iter().map(|master| self.mark_slots(namespace, master))).await?;
        let walks = masters.iter().map(|master| self.scan_and_unlink(namespace, pattern, &glob, Some(master)));
        Ok(futures_util::future::try_join_all(walks).await?.into_iter().sum())
    }

    /// The cluster's masters and their slots, from `CLUSTER SLOTS`.
    async fn masters(&self) -> Result<Vec<Master>> {
        let reply: Vec<Value> = self
            .round_trip("invalidatePattern slots", redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut self.conn()))
            .await?;
        let mut masters: Vec<Master> = Vec::new();
        for range in reply {
            // [start, end, [host, port, id], replicas...]
            let Value::Array(fields) = range else { continue };
            let number = |i: usize| fields.get(i).and_then(|v| redis::from_redis_value::<usize>(v.clone()).ok());
            let (Some(start), Some(end), Some(Value::Array(node))) = (number(0), number(1), fields.get(2)) else {
                continue;
            };
            let (Some(host), Some(port)) = (
                node.first().and_then(|v| redis::from_redis_value::<String>(v.clone()).ok()),
                node.get(1).and_then(|v| redis::from_redis_value::<u16>(v.clone()).ok()),
            ) else {
                continue;
            };
            match masters.iter_mut().find(|m| m.host == host && m.port == port) {
                Some(master) => master.slots.push((start, end)),
                None => masters.push(Master { host, port, slots: vec![(start, end)] }),
            }
        }
        let covered: usize = masters.iter().flat_map(|m| &m.slots).map(|(start, end)| end + 1 - start).sum();
        if covered != CLUSTER_SLOTS {
            return Err(CacheError::new(
                ErrorKind::L2Unavailable,
                format!("Redis L2 invalidatePattern: the cluster serves {covered} of {CLUSTER_SLOTS} slots"),
            ));
        }
        Ok(masters)
    }

    /// Stamps the marker of every slot `master` serves with its clock's time now, in one pipeline. The time is read
    /// first: a load that began after it read its source after the change this call announces, so it may store.
    async fn mark_slots(&self, namespace: &str, master: &Master) -> Result<()> {
        let mut conn = match self.conn() {
            Conn::Cluster(c) => c,
            Conn::Server(_) => unreachable!("only a cluster has masters"),
        };
        let time = self.round_trip("invalidatePattern", conn.route_command(redis::cmd("TIME"), master.route())).await?;
        let (seconds, micros): (u64, u64) =
            redis::from_redis_value(time).map_err(|e| self.error("invalidatePattern", e.into()))?;
        let now = (seconds * 1_000_000 + micros).to_string();
        let mut pipe = redis::pipe();
        for (start, end) in &master.slots {
            for slot in *start..=*end {
                pipe.cmd("SET").arg(marker_in_slot(namespace, slot)).arg(&now).arg("PX").arg(self.fence_window_ms);
            }
        }
        let count = master.slots.iter().map(|(start, end)| end + 1 - start).sum();
        let route = SingleNodeRoutingInfo::ByAddress { host: master.host.clone(), port: master.port };
        let replies = self.round_trip("invalidatePattern", conn.route_pipeline(pipe, 0, count, route)).await?;
        if let Some(Value::ServerError(e)) = replies.iter().find(|v| matches!(v, Value::ServerError(_))) {
            return Err(self.error("invalidatePattern", RedisError::from(e.clone())));
        }
        Ok(())
    }

    /// Walks `SCAN MATCH glob` on one server (`master`, or the only one) and unlinks what `pattern` matches.
    async fn scan_and_unlink(
        &self,
        namespace: &str,
        pattern: &Pattern,
        glob: &str,
        master: Option<&Master>,
    ) -> Result<u64> {
        let mut conn = self.conn();
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let scan = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(glob).arg("COUNT").arg(self.scan_count).clone();
            let (next, keys): (u64, Vec<String>) = match (master, &mut conn) {
                (Some(master), Conn::Cluster(cluster)) => {
                    let reply =
                        self.round_trip("invalidatePattern scan", cluster.route_command(scan, master.route())).await?;
                    redis::from_redis_value(reply).map_err(|e| self.error("invalidatePattern scan", e.into()))?
                }
                _ => self.round_trip("invalidatePattern scan", scan.query_async(&mut conn)).await?,
            };
            let matching: Vec<&String> = keys
                .iter()
                .filter(|full| crate::key::strip_namespace(namespace, full).is_some_and(|key| pattern.matches(key)))
                .collect();
            let unlinks =
                self.in_batches(matching.into_iter().map(String::as_str)).into_iter().map(|group| {
                    let mut invocation = self.scripts.unlink_counting_live.prepare_invoke();
                    for (_, key) in group {
                        invocation.key(key);
                    }
                    let mut conn = self.conn();
                    async move {
                        self.round_trip("invalidatePattern unlink", invocation.invoke_async::<u64>(&mut conn)).await
                    }
                });
            removed += futures_util::future::try_join_all(unlinks).await?.into_iter().sum::<u64>();
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

    /// `PUBLISH` on `channel`, on the command connection (a cluster forwards it to every node).
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
    /// On a cluster it goes to the first seed node that answers, replica or master: each node hears every `PUBLISH`.
    pub async fn subscribe(&self, probe_channel: &str) -> Result<BusStream> {
        let mut pubsub = match &self.topology {
            Topology::Server { client, .. } => {
                client.get_async_pubsub().await.map_err(|e| self.error("bus connect", e))?
            }
            Topology::Cluster { seeds, .. } => {
                let mut last = None;
                let mut found = None;
                for seed in seeds {
                    match self.round_trip("bus connect", seed.get_async_pubsub()).await {
                        Ok(pubsub) => {
                            found = Some(pubsub);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                match found {
                    Some(pubsub) => pubsub,
                    None => return Err(last.unwrap_or_else(|| CacheError::new(ErrorKind::L2Unavailable, "no seed"))),
                }
            }
        };
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

/// The namespace marker of `slot` on a cluster.
fn marker_in_slot(namespace: &str, slot: usize) -> String {
    format!("{INVALIDATION_PREFIX}{{{}}}{namespace}", slot_tags()[slot])
}

/// A held Redis lock: the lock key and the token that proves ownership.
pub struct TokenLock {
    manager: Option<Conn>,
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
async fn unlock(mut manager: Conn, lock_key: &str, token: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_cluster() {
        // Values from the Redis Cluster specification's examples and `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}".as_slice()));
        let tags = slot_tags();
        assert!((0..CLUSTER_SLOTS).all(|slot| slot_of(format!("x{{{}}}y", tags[slot]).as_bytes()) == slot));
    }
}
