//! The Postgres L2: a table in the shape of the Prisma migration `cache_entries`, read and written as it is.
//!
//! ```sql
//! CREATE TABLE "cache_entries" ("id" TEXT NOT NULL, "key" TEXT NOT NULL, "value" JSONB NOT NULL,
//!   "expiresAt" TIMESTAMP(3) NOT NULL, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
//!   "updatedAt" TIMESTAMP(3) NOT NULL, CONSTRAINT "cache_entries_pkey" PRIMARY KEY ("id"));
//! ```
//! That table has no defaults for `id` and `updatedAt`, so every write supplies them. Timestamps are UTC and taken
//! from the database clock, so instances with skewed clocks agree on expiry. The bus is `LISTEN`/`NOTIFY` on
//! [`BUS_CHANNEL`]; a write notifies in the same statement as its upsert.
//!
//! `updatedAt` is what fences a load that raced a change (see [`super::WriteCondition`]). So that the fence still
//! holds after a `delete`, a deleted key keeps its row as a tombstone: `value` `null`, already expired (`expiresAt`
//! = `updatedAt`), which every reader that checks `expiresAt` takes for absent. `invalidatePattern` and `clear`
//! stamp one marker row per namespace, key `#inval:<namespace>`, and take an exclusive advisory lock that a fenced
//! write takes shared, so no load can slip its row in behind the `DELETE`. The expiry sweep keeps rows for the fence
//! window after both their expiry and their last write.
//!
//! Grace and tags: the first write with a grace or tags (or the first `invalidateTags`) extends the table with two
//! nullable columns, `"staleUntil" TIMESTAMP(3)` (the end of the row's grace) and `"tags" TEXT[]`, and creates the
//! tag table `<table>_tags` ("namespace", "tag", "hardAt", "softAt", "expiresAt"; key ("namespace", "tag")), one
//! row per invalidated tag. A table never used so keeps exactly the Prisma shape. `"expiresAt"` stays the end of
//! freshness, so a reader of the Prisma model never sees a stale row as live. Rows are kept until
//! `coalesce("staleUntil", "expiresAt")`. Instances find the extension when they start, and look for it every
//! [`crate::l2::EXTENSION_WATCH_MS`] until they see it (see [`PostgresL2::newly_extended`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Executor, Postgres, Row};

mod lock;
mod sql;

pub use lock::AdvisoryLock;
use lock::LockSession;
use sql::{literal, Statements};

use super::{
    tags_json, BatchWrite, BusEvent, BusStream, L2Hit, L2Read, Redactor, ServerTime, Tagged, Write,
    TAG_RECORD_RETENTION_MS,
};
use crate::error::{CacheError, ErrorKind, Result};
use crate::pattern::Pattern;
use crate::rules;
use crate::tags::TagTime;

/// The `LISTEN`/`NOTIFY` channel of the invalidation bus.
pub const BUS_CHANNEL: &str = "tiered_cache";
/// Rows deleted per statement by the expiry sweep.
pub const CLEANUP_BATCH_ROWS: i64 = 1000;
/// Batches one sweep runs at most, so one sweep never holds the database for long.
const CLEANUP_MAX_BATCHES: usize = 100;
/// The first key of the two-key advisory locks this crate takes, so they never meet an application's own.
const ADVISORY_CLASS_CLEANUP: i32 = 0x7443_0001;
const ADVISORY_CLASS_LOAD: i32 = 0x7443_0002;
const ADVISORY_CLASS_DDL: i32 = 0x7443_0003;
const ADVISORY_CLASS_INVALIDATION: i32 = 0x7443_0004;
const NOW_UTC: &str = "(now() AT TIME ZONE 'UTC')";
const NOW_US: &str = "(extract(epoch FROM now()) * 1000000)::int8";
/// Whether the table ($1, quoted and maybe qualified) exists, and whether it is extended (its `tags` column, added
/// last, exists).
const EXTENSION_LOOKUP: &str = r#"SELECT to_regclass($1) IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute
    WHERE attrelid = to_regclass($1) AND attname = 'tags' AND NOT attisdropped)"#;
/// The namespace's marker row of its latest `invalidatePattern` or `clear`; `#` is in no namespace.
const INVALIDATION_PREFIX: &str = "#inval:";

/// A row of a read statement (see `sql::get`) as what it found.
fn read_of(row: &sqlx::postgres::PgRow) -> L2Read {
    let mut read =
        L2Read { at: ServerTime(row.get::<i64, _>(0).max(0) as u64), hit: None, stale: None, tag_times: Vec::new() };
    let Some(json) = row.get::<Option<String>, _>(1) else {
        return read;
    };
    let tagged = match row.get::<Option<Vec<String>>, _>(5) {
        Some(tags) if !tags.is_empty() => {
            let records: Vec<(String, u64, u64)> =
                row.get::<Option<String>, _>(6).and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_default();
            read.tag_times = records
                .into_iter()
                .map(|(tag, hard_us, soft_us)| (tag.into_boxed_str(), TagTime { hard_us, soft_us }))
                .collect();
            let written_us = row.get::<Option<i64>, _>(4).unwrap_or(0).max(0) as u64;
            Some(Tagged { tags: tags.into_iter().map(String::into_boxed_str).collect(), written_us })
        }
        _ => None,
    };
    let remaining_ms: f64 = row.get(2);
    let kept_ms = row.get::<Option<f64>, _>(3).unwrap_or(0.0).max(0.0);
    if remaining_ms > 0.0 {
        let grace_ms = (kept_ms - remaining_ms).max(0.0) as u64;
        read.hit = Some(L2Hit { json, remaining_ms: Some(remaining_ms as u64), grace_ms, tagged });
    } else {
        read.stale = Some(L2Hit { json, remaining_ms: Some(0), grace_ms: kept_ms as u64, tagged });
    }
    read
}

/// Settings of the Postgres L2.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PostgresConfig {
    /// Table name, unquoted (option `postgres.table`, 1 to 63 bytes; default `cache_entries`, the Prisma model's).
    /// Created when absent.
    pub table: String,
    /// Schema of the table (option `postgres.schema`); `None` follows the connection's `search_path`.
    pub schema: Option<String>,
    /// Whether a table this crate creates is `UNLOGGED` (option `postgres.unlogged`, default `false`): faster
    /// writes, but emptied by a crash and not replicated. An existing table is left as it is.
    pub unlogged: bool,
    /// Most pooled connections of the store (option `postgres.poolSize`, [`crate::rules::POSTGRES_POOL_SIZE`]). The
    /// lock session and the bus listener connect outside the pool.
    pub pool_size: u32,
    /// Period of the expiry sweep, in ms (option `postgres.cleanupInterval`,
    /// [`crate::rules::POSTGRES_CLEANUP_INTERVAL`]).
    pub cleanup_interval_ms: u64,
    /// Whether pooled connections keep named prepared statements (option `postgres.preparedStatements`, default
    /// `true`). `false` for a transaction pooler that does not carry them from one transaction to the next (PgBouncer
    /// before 1.21): each call then runs its unnamed statement inside a transaction of its own, which keeps it on one
    /// server connection from parse to result.
    pub prepared_statements: bool,
    /// Where the bus's `LISTEN` connection and the load locks' session connect (option `postgres.sessionUrl`): a
    /// direct or session-pooled address, since both need one server session for as long as they live. `None`: `url`.
    pub session_url: Option<url::Url>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            table: "cache_entries".into(),
            schema: None,
            unlogged: false,
            pool_size: rules::POSTGRES_POOL_SIZE.default.unwrap_or_default() as u32,
            cleanup_interval_ms: rules::POSTGRES_CLEANUP_INTERVAL.default.unwrap_or_default() as u64 * 1000,
            prepared_statements: true,
            session_url: None,
        }
    }
}

/// Runs `$call` (a query's `fetch_*`/`execute` on the executor `$ex`) on a pooled connection: as it is with prepared
/// statements, otherwise inside a transaction, so that a transaction pooler keeps the unnamed statement's parse,
/// bind and execute on one server connection.
macro_rules! pooled {
    ($store:expr, $ex:ident => $call:expr) => {
        async {
            if $store.prepared {
                let pool = $store.pool();
                let $ex = &pool;
                $call.await
            } else {
                let mut tx = $store.pool().begin().await?;
                let out = {
                    let $ex = &mut *tx;
                    $call.await
                }?;
                tx.commit().await?;
                Ok(out)
            }
        }
    };
}

/// The Postgres store.
pub struct PostgresL2 {
    /// Replaced by [`Self::reconnect`]: after a restart of the server every idle connection is dead, and each would
    /// fail one call before the pool let it go.
    pool: std::sync::RwLock<PgPool>,
    pool_options: PgPoolOptions,
    /// `l2Timeout`: the bound of `invalidatePattern`'s one transaction, which the store gives a longer budget for
    /// the many round trips a Redis removal takes.
    round_trip_timeout: Duration,
    connect_options: PgConnectOptions,
    sql: Statements,
    table_ready: AtomicBool,
    /// Whether the table has the columns of grace and tags, and its tag table exists.
    extended: AtomicBool,
    table_check: tokio::sync::Mutex<()>,
    locks: Arc<LockSession>,
    fence_window_ms: u64,
    /// [`PostgresConfig::prepared_statements`].
    prepared: bool,
    /// Options of the session connections (bus, locks): [`PostgresConfig::session_url`] or `url`.
    session_options: PgConnectOptions,
    redactor: Redactor,
}

impl PostgresL2 {
    /// Builds the pool without connecting: the first call connects, so a server that is down at start-up only
    /// degrades the calls made until it is up. Must run inside a tokio runtime.
    pub fn new(url: &url::Url, config: &PostgresConfig, timeout: Duration, fence_window: Duration) -> Result<Self> {
        let session_url = config.session_url.as_ref().unwrap_or(url);
        let redactor = Redactor::for_urls(&[url.clone(), session_url.clone()]);
        let parse = |url: &url::Url, name: &str| -> Result<PgConnectOptions> {
            let options: PgConnectOptions = url.as_str().parse().map_err(|e| {
                redactor.error(ErrorKind::InvalidOption, &format!("option `{name}` is not a valid Postgres URL"), e)
            })?;
            // The pid lets an operator (or a test) tell the connections of each instance apart in pg_stat_activity.
            Ok(options.application_name(&format!("tiered-cache pid {}", std::process::id())))
        };
        let connect_options = parse(url, "url")?;
        // Without prepared statements no statement is cached either: a cached one is a named one.
        let connect_options =
            if config.prepared_statements { connect_options } else { connect_options.statement_cache_capacity(0) };
        let session_options = parse(session_url, "postgres.sessionUrl")?;
        let pool_options = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .min_connections(0)
            .acquire_timeout(timeout)
            // A ping before every acquire would double the round trips of the hot path; a dead connection
            // fails its query instead, and the pool is replaced (see `reconnect`).
            .test_before_acquire(false)
            .idle_timeout(Some(Duration::from_secs(300)));
        Ok(PostgresL2 {
            pool: std::sync::RwLock::new(pool_options.clone().connect_lazy_with(connect_options.clone())),
            pool_options,
            round_trip_timeout: timeout,
            locks: Arc::new(LockSession::new(session_options.clone())),
            connect_options,
            sql: Statements::new(config),
            table_ready: AtomicBool::new(false),
            extended: AtomicBool::new(false),
            table_check: Default::default(),
            fence_window_ms: fence_window.as_millis().max(1) as u64,
            prepared: config.prepared_statements,
            session_options,
            redactor,
        })
    }

    fn pool(&self) -> PgPool {
        self.pool.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts over on a new pool, which connects on demand; the old one closes its connections as its calls end.
    pub fn reconnect(&self) {
        let fresh = self.pool_options.clone().connect_lazy_with(self.connect_options.clone());
        *self.pool.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    fn error(&self, context: &str, e: sqlx::Error) -> CacheError {
        let kind = match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                ErrorKind::L2Unavailable
            }
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) => {
                ErrorKind::L2Unavailable
            }
            _ => ErrorKind::L2,
        };
        self.redactor.error(kind, &format!("Postgres L2 {context}"), e)
    }

    /// Creates the table in the Prisma shape when it is absent, once per process; retried after a failure.
    async fn ensure_table(&self) -> Result<()> {
        if self.table_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one_at_a_time = self.table_check.lock().await;
        if !self.table_ready.load(Ordering::Acquire) {
            // Boxed as `Send` explicitly: rustc cannot prove it through sqlx's higher-ranked executor bounds.
            let create: BoxFuture<'_, Result<()>> = Box::pin(self.create_table_if_absent());
            create.await?;
            self.table_ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    async fn create_table_if_absent(&self) -> Result<()> {
        let (exists, extended): (bool, bool) = pooled!(self, ex => sqlx::query_as(EXTENSION_LOOKUP)
            .bind(&self.sql.table_name)
            .persistent(self.prepared)
            .fetch_one(ex))
        .await
        .map_err(|e| self.error("table lookup", e))?;
        self.extended.store(extended, Ordering::Release);
        if exists {
            return Ok(());
        }
        let conn = self.pool().acquire().await.map_err(|e| self.error("connect", e))?;
        self.run_ddl(conn, &self.sql.create, "table creation").await
    }

    /// Runs `statements` in one transaction under the table's DDL advisory lock: instances starting together would
    /// race on `... IF NOT EXISTS`; one runs it, the others wait for its commit, then find it done.
    async fn run_ddl(&self, mut conn: PoolConnection<Postgres>, statements: &[String], context: &str) -> Result<()> {
        let script = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({ADVISORY_CLASS_DDL}, hashtext({})); {}; COMMIT;",
            literal(&self.sql.table_name),
            statements.join("; ")
        );
        if let Err(e) = conn.execute(script.as_str()).await {
            // Leave no half-open transaction on a connection that goes back to the pool.
            let _ = conn.close().await;
            return Err(self.error(context, e));
        }
        Ok(())
    }

    /// Whether this store knows the table extended for grace and tags.
    pub fn is_extended(&self) -> bool {
        self.extended.load(Ordering::Acquire)
    }

    /// Whether another instance extended the table since this one last looked; `false` once this one knows.
    pub async fn newly_extended(&self) -> Result<bool> {
        if self.extended.load(Ordering::Acquire) {
            return Ok(false);
        }
        let (_, extended): (bool, bool) = pooled!(self, ex => sqlx::query_as(EXTENSION_LOOKUP)
            .bind(&self.sql.table_name)
            .persistent(self.prepared)
            .fetch_one(ex))
        .await
        .map_err(|e| self.error("table lookup", e))?;
        Ok(extended && !self.extended.swap(true, Ordering::AcqRel))
    }

    /// Extends the table for grace and tags, once per process, before the first write or call that needs it.
    async fn ensure_extended(&self) -> Result<()> {
        self.ensure_table().await?;
        if self.extended.load(Ordering::Acquire) {
            return Ok(());
        }
        let conn = self.pool().acquire().await.map_err(|e| self.error("connect", e))?;
        self.run_ddl(conn, &self.sql.extend, "extending the table for grace and tags").await?;
        self.extended.store(true, Ordering::Release);
        Ok(())
    }

    /// The row of `key` if live (or stale, within its grace), its remaining life, its tags and their records, and the
    /// time of the read by the database clock; creates the table first if needed.
    pub async fn get(&self, key: &str) -> Result<L2Read> {
        self.ensure_table().await?;
        let extended = self.extended.load(Ordering::Acquire);
        let mut query = sqlx::query(&self.sql.get[0][extended as usize]).bind(key).persistent(self.prepared);
        if extended {
            query = query.bind(crate::key::namespace_of(key));
        }
        let row = pooled!(self, ex => query.fetch_one(ex)).await.map_err(|e| self.error("get", e))?;
        Ok(read_of(&row))
    }

    /// The rows of `keys` (of one namespace) as [`Self::get`] reads them, in their order, in one statement.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<L2Read>> {
        let Some(first) = keys.first() else { return Ok(Vec::new()) };
        self.ensure_table().await?;
        let extended = self.extended.load(Ordering::Acquire);
        let mut query = sqlx::query(&self.sql.get[1][extended as usize]).bind(keys).persistent(self.prepared);
        if extended {
            query = query.bind(crate::key::namespace_of(first));
        }
        let rows = pooled!(self, ex => query.fetch_all(ex)).await.map_err(|e| self.error("getMany", e))?;
        Ok(rows.iter().map(read_of).collect())
    }

    /// Upserts every row of `entries` unconditionally, as [`Self::set`] does, and notifies `bus_message`, in one
    /// statement; returns the writes' time (one statement, one time), for each entry.
    pub async fn set_many(&self, entries: &[BatchWrite<'_>], bus_message: Option<&str>) -> Result<Vec<ServerTime>> {
        self.ensure_table().await?;
        if entries.iter().any(|entry| entry.lifetime.grace_ms > 0 || !entry.tags.is_empty()) {
            self.ensure_extended().await?;
        }
        let extended = self.extended.load(Ordering::Acquire);
        let column = |value: fn(&BatchWrite<'_>) -> i64| entries.iter().map(value).collect::<Vec<i64>>();
        let mut query = sqlx::query(&self.sql.set_many[extended as usize][bus_message.is_some() as usize])
            .bind(entries.iter().map(|entry| entry.key).collect::<Vec<_>>())
            .bind(entries.iter().map(|entry| entry.json).collect::<Vec<_>>())
            .bind(column(|entry| entry.lifetime.ttl_ms as i64))
            .persistent(self.prepared);
        if extended {
            let tags = entries.iter().map(|entry| (!entry.tags.is_empty()).then(|| tags_json(entry.tags)));
            query = query.bind(column(|entry| entry.lifetime.grace_ms as i64)).bind(tags.collect::<Vec<_>>());
        }
        if let Some(message) = bus_message {
            query = query.bind(BUS_CHANNEL).bind(message);
        }
        let row = pooled!(self, ex => query.fetch_one(ex)).await.map_err(|e| self.error("setMany", e))?;
        let at = ServerTime(row.get::<Option<i64>, _>(0).unwrap_or(0).max(0) as u64);
        Ok(vec![at; entries.len()])
    }

    /// Upserts the row of `key`, fresh for the TTL and kept for the grace, with its tags, unless the write's condition
    /// refuses it; its bus message is notified in the same statement, so it goes out exactly when the write commits.
    /// A fenced write runs in a transaction that first takes the namespace's invalidation lock shared. Returns the
    /// write's time (its `updatedAt`).
    pub async fn set(&self, key: &str, namespace: &str, json: &str, write: Write<'_>) -> Result<Option<ServerTime>> {
        self.ensure_table().await?;
        if write.lifetime.grace_ms > 0 || !write.tags.is_empty() {
            self.ensure_extended().await?;
        }
        let extended = self.extended.load(Ordering::Acquire);
        let statements = &self.sql.set[extended as usize];
        let bus_message = write.bus_message;
        let fail = |e| self.error("set", e);
        let statement = &statements[write.condition.since().is_some() as usize][bus_message.is_some() as usize];
        let mut query =
            sqlx::query(statement).bind(key).bind(json).bind(write.lifetime.ttl_ms as i64).persistent(self.prepared);
        if extended {
            let tags: Option<Vec<&str>> = (!write.tags.is_empty()).then(|| write.tags.iter().map(|t| &**t).collect());
            query = query.bind(write.lifetime.grace_ms as i64).bind(tags);
        }
        let written_at =
            |rows: Vec<sqlx::postgres::PgRow>| rows.first().map(|row| ServerTime(row.get::<i64, _>(0).max(0) as u64));
        let Some(since) = write.condition.since() else {
            if let Some(message) = bus_message {
                query = query.bind(BUS_CHANNEL).bind(message);
            }
            return Ok(written_at(pooled!(self, ex => query.fetch_all(ex)).await.map_err(fail)?));
        };
        let mut tx = self.invalidation_locked(namespace, Lock::Shared).await.map_err(fail)?;
        let mut query = query
            .bind(since.0 as i64)
            .bind((self.fence_window_ms * 1000) as i64)
            .bind(format!("{INVALIDATION_PREFIX}{namespace}"))
            .bind((since.0 / 1000) as i64);
        if extended {
            query = query.bind(namespace);
        }
        if let Some(message) = bus_message {
            query = query.bind(BUS_CHANNEL).bind(message);
        }
        let written = written_at(query.fetch_all(&mut *tx).await.map_err(fail)?);
        tx.commit().await.map_err(fail)?;
        Ok(written)
    }

    /// Records an invalidation of `tags` now, in one statement; returns its time, to the millisecond as stored.
    pub async fn invalidate_tags(&self, namespace: &str, tags: &[Box<str>], soft: bool) -> Result<ServerTime> {
        self.ensure_extended().await?;
        let tags: Vec<&str> = tags.iter().map(|t| &**t).collect();
        let query = sqlx::query_as(&self.sql.invalidate_tags[soft as usize])
            .bind(namespace)
            .bind(tags)
            .bind(TAG_RECORD_RETENTION_MS as i64)
            .persistent(self.prepared);
        let (at, _): (i64, i64) =
            pooled!(self, ex => query.fetch_one(ex)).await.map_err(|e| self.error("invalidateTags", e))?;
        Ok(ServerTime(at.max(0) as u64))
    }

    /// The invalidation records of `tags`, in their order.
    pub async fn tag_times(&self, namespace: &str, tags: &[Box<str>]) -> Result<Vec<TagTime>> {
        self.ensure_extended().await?;
        let names: Vec<&str> = tags.iter().map(|t| &**t).collect();
        let query = sqlx::query_as(&self.sql.tag_times).bind(namespace).bind(names).persistent(self.prepared);
        let rows: Vec<(i64, i64)> =
            pooled!(self, ex => query.fetch_all(ex)).await.map_err(|e| self.error("getTagExpiration", e))?;
        Ok(rows
            .into_iter()
            .map(|(hard, soft)| TagTime { hard_us: hard.max(0) as u64, soft_us: soft.max(0) as u64 })
            .collect())
    }

    /// Turns the rows of `keys` into tombstones (and notifies `bus_message`) in one statement; returns how many were
    /// live.
    pub async fn delete(&self, keys: &[String], bus_message: Option<&str>) -> Result<u64> {
        self.ensure_table().await?;
        // One statement may not upsert a row twice.
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let statements = &self.sql.delete[self.extended.load(Ordering::Acquire) as usize];
        let mut query = sqlx::query(&statements[bus_message.is_some() as usize]).bind(keys).persistent(self.prepared);
        if let Some(message) = bus_message {
            query = query.bind(BUS_CHANNEL).bind(message);
        }
        let row = pooled!(self, ex => query.fetch_one(ex)).await.map_err(|e| self.error("delete", e))?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    /// Stamps the namespace's marker row and deletes its rows whose key is `LIKE` the pattern, in one transaction
    /// under the namespace's invalidation lock; returns how many were live.
    pub async fn delete_matching(&self, namespace: &str, pattern: &Pattern) -> Result<u64> {
        let removal = async {
            self.ensure_table().await?;
            let fail = |e| self.error("invalidatePattern", e);
            let like = pattern.to_like(&crate::key::namespaced(namespace, ""));
            let mut tx = self.invalidation_locked(namespace, Lock::Exclusive).await.map_err(fail)?;
            let removed: i64 = sqlx::query_scalar(&self.sql.mark_and_delete_like)
                .bind(like)
                .bind(format!("{INVALIDATION_PREFIX}{namespace}"))
                .persistent(self.prepared)
                .fetch_one(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            Ok(removed as u64)
        };
        let timeout_ms = self.round_trip_timeout.as_millis() as u64;
        tokio::time::timeout(self.round_trip_timeout, removal)
            .await
            .unwrap_or_else(|_| Err(CacheError::l2_timeout(timeout_ms)))
    }

    /// A transaction holding the namespace's invalidation lock until it ends: shared by fenced writes, exclusive for
    /// `invalidatePattern`, so that no fenced write commits between a pattern's marker and its `DELETE`.
    async fn invalidation_locked(
        &self,
        namespace: &str,
        lock: Lock,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        let mut tx = self.pool().begin().await?;
        let take = match lock {
            Lock::Shared => "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
            Lock::Exclusive => "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        };
        sqlx::query(take)
            .bind(ADVISORY_CLASS_INVALIDATION)
            .bind(namespace)
            .persistent(self.prepared)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// `pg_notify` on `channel`, on a pooled connection.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        let query = sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(message).persistent(self.prepared);
        pooled!(self, ex => query.execute(ex)).await.map_err(|e| self.error("bus publish", e))?;
        Ok(())
    }

    /// The channel on which only the bus of `bus_id` listens, for its liveness probes.
    pub fn probe_channel(bus_id: u64) -> String {
        format!("{BUS_CHANNEL}_probe_{bus_id:016x}")
    }

    /// Deletes rows past both their expiry and their last write by more than the fence window, in batches, unless
    /// another instance is sweeping; returns how many went.
    pub async fn sweep_expired(&self) -> Result<u64> {
        self.ensure_table().await?;
        let extended = self.extended.load(Ordering::Acquire);
        if extended {
            let query = sqlx::query(&self.sql.cleanup_tags).persistent(self.prepared);
            pooled!(self, ex => query.execute(ex)).await.map_err(|e| self.error("expiry sweep of tags", e))?;
        }
        let cleanup = &self.sql.cleanup[extended as usize];
        let mut total = 0;
        for _ in 0..CLEANUP_MAX_BATCHES {
            let query = sqlx::query_as(cleanup)
                .bind(&self.sql.table_name)
                .bind(CLEANUP_BATCH_ROWS)
                .bind(self.fence_window_ms as i64)
                .persistent(self.prepared);
            let (locked, deleted): (bool, i64) =
                pooled!(self, ex => query.fetch_one(ex)).await.map_err(|e| self.error("expiry sweep", e))?;
            total += deleted as u64;
            if !locked || deleted < CLEANUP_BATCH_ROWS {
                break;
            }
        }
        Ok(total)
    }

    /// Takes the session-level advisory lock of `key` on the store's lock session; `None` when another session
    /// holds it.
    pub async fn try_lock(&self, key: &str) -> Result<Option<AdvisoryLock>> {
        let locked = self.locks.try_lock(key).await.map_err(|e| self.error("lock", e))?;
        Ok(locked.then(|| AdvisoryLock { session: Some(self.locks.clone()), key: key.to_owned() }))
    }

    /// A dedicated `LISTEN` connection on the bus channel and `probe_channel`: a stream that ends when the
    /// connection is lost. It may also never answer (a half-open connection): the bus bounds every wait on it.
    pub async fn listen(&self, probe_channel: &str) -> Result<BusStream> {
        let options =
            self.session_options.clone().application_name(&format!("tiered-cache bus pid {}", std::process::id()));
        let pool = PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await.map_err(|e| self.error("bus connect", e))?;
        // Reconnection is ours to do: a lost connection means lost messages, which the store must hear about.
        listener.eager_reconnect(false);
        listener.listen_all([BUS_CHANNEL, probe_channel]).await.map_err(|e| self.error("bus listen", e))?;
        let probe_channel = probe_channel.to_owned();
        Ok(Box::pin(futures_util::stream::unfold(listener, move |mut listener| {
            let probe_channel = probe_channel.clone();
            async move {
                let notification = listener.try_recv().await.ok()??;
                let payload = notification.payload().to_owned();
                let event = if notification.channel() == probe_channel {
                    BusEvent::Probe(payload)
                } else {
                    BusEvent::Message(payload)
                };
                Some((event, listener))
            }
        })))
    }
}

/// How an advisory lock is held.
enum Lock {
    Shared,
    Exclusive,
}
