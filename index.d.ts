/**
 * tiered-cache: a typed two-tier cache for Node.js servers.
 *
 * An in-process L1 (moka, in native memory) sits in front of a shared L2 (Postgres or Redis). Every instance on the
 * same L2 and namespace is kept coherent by an invalidation bus, and `getOrSet` runs a loader once per key across
 * threads and processes (single-flight). When the L2 is down the cache degrades to its L1 and to the loader instead of
 * failing the request.
 *
 * @packageDocumentation
 */

/**
 * Every error this package raises or reports carries one of these stable codes in `err.code`.
 *
 * Raised synchronously (bad input, never half-applied):
 * - `ERR_CACHE_INVALID_OPTION` (`TypeError`): a constructor option is malformed; the message names it.
 * - `ERR_CACHE_INVALID_KEY` (`TypeError`): a key is not a non-empty, well-formed string of at most `maxKeyLength`
 *   UTF-8 bytes without U+0000 (NUL).
 * - `ERR_CACHE_INVALID_VALUE` (`TypeError`): `undefined`, a function, a symbol, a BigInt or a circular value, or a
 *   value holding a string with U+0000 or a lone surrogate (which Postgres cannot store, so no backend does).
 * - `ERR_CACHE_VALUE_TOO_LARGE` (`RangeError`): the JSON text of a value is over `maxValueBytes`.
 * - `ERR_CACHE_INVALID_TTL` (`TypeError`): a per-call TTL that is not an integer from 1 to 2592000 seconds.
 * - `ERR_CACHE_INVALID_TAG` (`TypeError`): tags that are not an array of strings (or, for `invalidateTags`, one
 *   string), more than 128 of them, or a tag that is empty, longer than 256 UTF-8 bytes, not well-formed or holding
 *   U+0000. Thrown synchronously; nothing is written.
 * - `ERR_CACHE_INVALID_PATTERN` (`TypeError`): an `invalidatePattern` pattern that is not a string, is empty, is
 *   not well-formed text, is longer than max(2 × `maxKeyLength` + 2, 1024) bytes or ends in a lone `\`.
 * - `ERR_CACHE_INVALID_LOADER` (`TypeError`): `getOrSet` was given something other than a function.
 * - `ERR_CACHE_CLOSED` (`Error`): the cache was used after `close()`.
 *
 * Reported to {@link CacheOptions.onError} and counted in {@link CacheStats.errors}, never thrown by a cache call
 * (except by `invalidateTags` with `strict`, which rejects with the L2 ones):
 * - `ERR_CACHE_L2_UNAVAILABLE`: the L2 could not be reached (connection refused, reset, or not yet connected).
 * - `ERR_CACHE_L2_TIMEOUT`: an L2 command did not answer within {@link CacheOptions.l2Timeout}.
 * - `ERR_CACHE_L2`: the L2 answered with an error (permissions, a table of another shape...).
 * - `ERR_CACHE_BUS`: the invalidation bus lost its connection; the L1 was dropped and the bus reconnects by itself.
 *
 * Raised to every `getOrSet` that waited for a load run by another caller of the process (in its own thread or in
 * another) when that loader failed; the caller whose loader it was gets the loader's own error instead:
 * - `ERR_CACHE_LOADER_FAILED` (`Error`): the message is the loader error's message, and `cause` the loader's error
 *   (the error itself in the loader's thread, an `Error` with its message in another thread). Reported to
 *   {@link CacheOptions.onError} instead (and not counted in `errors`) when the caller was answered with a stale
 *   value (see {@link SetOptions.grace}) and when an `earlyRefresh` reload fails.
 *
 * Raised to a `getOrSet` that waited for its loader longer than its `hardTimeout` (the load goes on, and stores its
 * value when it comes):
 * - `ERR_CACHE_LOADER_TIMEOUT` (`Error`).
 *
 * Credentials in a URL never appear in any message.
 */
export type CacheErrorCode =
  | 'ERR_CACHE_INVALID_OPTION'
  | 'ERR_CACHE_INVALID_KEY'
  | 'ERR_CACHE_INVALID_VALUE'
  | 'ERR_CACHE_VALUE_TOO_LARGE'
  | 'ERR_CACHE_INVALID_TTL'
  | 'ERR_CACHE_INVALID_PATTERN'
  | 'ERR_CACHE_INVALID_TAG'
  | 'ERR_CACHE_INVALID_LOADER'
  | 'ERR_CACHE_CLOSED'
  | 'ERR_CACHE_L2_UNAVAILABLE'
  | 'ERR_CACHE_L2_TIMEOUT'
  | 'ERR_CACHE_L2'
  | 'ERR_CACHE_BUS'
  | 'ERR_CACHE_LOADER_FAILED'
  | 'ERR_CACHE_LOADER_TIMEOUT'

/** An error raised or reported by the cache: a standard `Error`, `TypeError` or `RangeError` with a stable `code`. */
export interface CacheError extends Error {
  /** The stable code; see {@link CacheErrorCode}. */
  code: CacheErrorCode
}

/** Any value `JSON.stringify` accepts and turns into JSON text: objects, arrays, strings, finite numbers, booleans, `null`. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue | undefined }

/** Options of the in-process L1 (moka, in native memory, shared by every thread of the process). */
export interface L1Options {
  /**
   * The most entries the L1 holds; past it the least valuable entries (TinyLFU) are evicted.
   * Integer from 1 to 4294967296. Default: no entry bound, only {@link L1Options.maxBytes}, so that a working set of
   * many small entries that fits in the byte budget is not thrashed by a count.
   */
  maxEntries?: number
  /**
   * The most bytes the L1 holds, counted as the UTF-8 length of each key plus its value's JSON text, plus 700 bytes
   * per entry for the L1's own bookkeeping (measured: BENCHMARKS.md section 6), so that it bounds the L1's native
   * memory, small entries included (64 MiB holds about 70,000 entries of 256 bytes).
   * Integer from 1024 to 9007199254740992. Default `67108864` (64 MiB).
   */
  maxBytes?: number
  /**
   * Caps how long, in seconds, an entry lives in L1, whatever its own TTL. Integer from 1 to 2592000.
   * Default: no cap beyond the entry's TTL. While the invalidation bus is down the cap is at most
   * {@link CacheOptions.busDownL1Ttl}.
   */
  ttl?: number
}

/** Options of the Postgres L2. */
export interface PostgresOptions {
  /**
   * The table holding the entries, in the shape of the Prisma migration `cache_entries` (see the README). It is
   * created, in that shape, when it does not exist. Default `'cache_entries'`. At most 63 bytes.
   */
  table?: string
  /** The schema of the table. Default: the connection's `search_path` (usually `public`). At most 63 bytes. */
  schema?: string
  /** Create the table `UNLOGGED` (faster writes, emptied after a Postgres crash). Only used when the table is created. Default `false`. */
  unlogged?: boolean
  /** The most connections the pool opens. Integer from 1 to 1000. Default `10`. */
  poolSize?: number
  /**
   * Seconds between two sweeps that delete expired rows, in batches of 1000, by one instance at a time (a Postgres
   * advisory lock). Integer from 1 to 86400. Default `60`. Expired rows are never returned, swept or not.
   */
  cleanupInterval?: number
  /**
   * Whether pooled connections use named prepared statements, cached per connection. Default `true`. Set `false`
   * behind a transaction pooler that does not carry them across transactions (PgBouncer before 1.21 in transaction
   * mode): each call then sends an unnamed statement inside a transaction of its own (two more round trips, measured
   * in the README's "Scaling out").
   */
  preparedStatements?: boolean
  /**
   * Where the invalidation bus's `LISTEN` connection and the load locks' session connect: a `postgres://` URL of the
   * database itself or of a session pooler, since both need one server session for as long as they live. Default:
   * `url`. A bus on a transaction pooler hears nothing: that is reported at once to `onError` (`ERR_CACHE_BUS`) and
   * counted in `stats().busUnheard`. Not a `postgres://` URL: `ERR_CACHE_INVALID_OPTION`.
   */
  sessionUrl?: string
}

/** Options of the Redis L2. */
export interface RedisOptions {
  /** The `COUNT` hint of each `SCAN` that `invalidatePattern` and `clear` issue. Integer from 10 to 100000. Default `1000`. */
  scanCount?: number
  /**
   * Whether `url` names the seed nodes of a Redis Cluster: comma-separated `redis://` URLs (or all `rediss://`), such
   * as `redis://10.0.0.1:7000,redis://10.0.0.2:7000`. Any reachable seed lets the client learn the cluster's slots; list
   * several so that the invalidation bus, which subscribes on the first seed that answers, finds another when one is
   * gone. Entries spread over every slot; `invalidatePattern` and `clear` scan every master. Default `false`. A `url`
   * not of that form throws `ERR_CACHE_INVALID_OPTION`.
   */
  cluster?: boolean
}

/**
 * The L2's circuit breaker. Once the L2 is found down `failures` times in a row, every call skips it at once. A
 * refused or reset connection (after one more try on fresh connections) is found down at once. A call that times
 * out starts one check on fresh connections, bounded by `l2Timeout`, and only a failed check counts, so a server
 * that stalled for a moment under load opens nothing. While open: reads answer from the L1 or as misses, `getOrSet` runs its loader, writes keep their L1 copy for at
 * most {@link CacheOptions.busDownL1Ttl} (no other instance saw them). One background probe per cache then retries the
 * L2, first after `retryAfter` seconds and then with jittered, doubling delays of at most 1 second (or `retryAfter`,
 * if longer), and closes the breaker at its first answer. The outage is reported once to
 * {@link CacheOptions.onError}, as `ERR_CACHE_L2_UNAVAILABLE`, when the breaker opens; skipped calls report nothing
 * and count in {@link CacheStats.l2Skipped}. An error the L2 answered with (permissions, a table of another shape)
 * does not count as an outage.
 */
export interface L2BreakerOptions {
  /** Outages (refused or reset calls, failed checks after a timeout) in a row that open the breaker. Integer from 1 to 100. Default `1`. */
  failures?: number
  /** Seconds before the first probe of an open breaker. Number from 0.05 to 60. Default `0.5`. */
  retryAfter?: number
}

/** Options of {@link Cache}. Every option is optional; an invalid one throws a `TypeError` with code `ERR_CACHE_INVALID_OPTION` naming it. */
/** {@link SetOptions} with a fence: the options of a fenced {@link Cache.set}. */
export interface FencedSetOptions extends SetOptions {
  /** A fence from {@link Cache.writeFence} of the same key, taken before the value's data was read. */
  ifUnchangedSince: number
}

/** The options of {@link Cache.invalidateTags}. */
export interface InvalidateTagsOptions {
  /**
   * Soft: entries of the tags become stale (served by `getOrSet` within their grace, and by `getEntry` flagged
   * stale) instead of misses. As Next.js's `revalidateTag(tag, 'max')`. Default `false`.
   */
  soft?: boolean
  /**
   * Reject when the L2 did not record the invalidation (with `ERR_CACHE_L2_UNAVAILABLE`, `ERR_CACHE_L2_TIMEOUT` or
   * `ERR_CACHE_L2`, an open circuit breaker included) instead of only reporting it to `onError`: unrecorded, it is
   * lost for every other instance, whose L2 reads judge entries by the L2's records. This process's own entries of
   * the tags are dropped either way. A bus that did not echo the announcement still only goes to `onError`: the
   * record judges every later L2 read, and an instance without its bus serves its L1 for at most `busDownL1Ttl`.
   * Default `false`; the `tiered-cache/next` handlers use `true`, as Next.js expects a lost revalidation to fail.
   */
  strict?: boolean
}

export interface CacheOptions {
  /**
   * Where the L2 lives. `postgres://` or `postgresql://` selects the Postgres L2; `redis://` or `rediss://` (TLS) the
   * Redis L2; `rediss://` verifies the server against the system's trusted certificates (`SSL_CERT_FILE` or
   * `SSL_CERT_DIR` add your own CA). Credentials may be in the URL; they never appear in an error. Default: the environment variable
   * `CACHE_URL`; when that is unset too, the cache is memory only (L1 alone).
   */
  url?: string
  /**
   * Key `k` is stored in the L2 as `namespace:k`, and every operation (`clear` and `invalidatePattern` included)
   * stays inside the namespace. 1 to 64 characters from `A-Z a-z 0-9 _ - .` (no `:`, so two namespaces can never
   * produce the same stored key). Default `'default'`.
   */
  namespace?: string
  /** Default time-to-live of an entry, in seconds. Integer from 1 to 2592000 (30 days). Default `300`. */
  ttl?: number
  /** The in-process L1, or `false` for none (every read goes to the L2). Default: `{ maxBytes: 64 MiB }`, no entry bound. */
  l1?: L1Options | false
  /** Postgres L2 options; used only with a `postgres://` URL. */
  postgres?: PostgresOptions
  /** Redis L2 options; used only with a `redis://` URL. */
  redis?: RedisOptions
  /**
   * The longest, in seconds, any call waits for the L2 (connecting included) before it gives up on it and degrades.
   * Number from 0.01 to 60. Default `1`.
   */
  l2Timeout?: number
  /** The longest key, in UTF-8 bytes. Integer from 1 to 65536. Default `255`. */
  maxKeyLength?: number
  /** The largest value, as the byte length of its JSON text. Integer from 1 to 2147483648. Default `10485760` (10 MiB). */
  maxValueBytes?: number
  /**
   * Keep L1 copies coherent across processes: each `set`, `delete`, `invalidatePattern` and `clear` is announced on
   * the L2's invalidation bus (Redis pub/sub, or Postgres `LISTEN`/`NOTIFY`) and other instances drop their copies.
   * Default `true` when there is an L2 (memory only has no bus).
   */
  bus?: boolean
  /**
   * While the invalidation bus is down (disconnected, or found half-open because its liveness probe did not come
   * back; see the README's coherence section for the detection bound), L1 entries written or refreshed live at most
   * this many seconds, so what a lost message leaves stale stays stale only that long. Writes that did not reach the
   * L2 are kept in the L1 no longer either. Integer from 1 to 3600. Default `5`.
   */
  busDownL1Ttl?: number
  /**
   * The fence window, in seconds: a `getOrSet` value is stored only if its key was not written, deleted or
   * invalidated (on any instance) since the miss that started the load, and the L2 remembers such changes this
   * long. A loader that runs longer still returns its value, but it is not stored (counted in
   * `stats().loadsDiscarded`). Deleted keys leave a tombstone, and expired entries stay in the L2, for this long.
   * Integer from 1 to 3600. Default `10`.
   */
  maxLoadTime?: number
  /**
   * The longest, in seconds, a `getOrSet` waits for its loader by default; see {@link GetOrSetOptions.hardTimeout}.
   * Number from 0.001 to 3600. Default: none (as long as the loader takes).
   */
  hardTimeout?: number
  /**
   * How long, in seconds, every write keeps its value past its TTL, stale, in both tiers; see
   * {@link SetOptions.grace}. Integer from 0 to 2592000. Default `0` (nothing is kept past the TTL; the Postgres
   * table keeps its Prisma shape).
   */
  grace?: number
  /**
   * The soft timeout of `getOrSet`, in seconds; see {@link GetOrSetOptions.timeout}. Number from 0 to 3600.
   * Default: none (a caller with a stale value waits for the load as long as it takes, or until `hardTimeout`).
   */
  timeout?: number
  /**
   * Early refresh of `getOrSet`, a fraction of the TTL; see {@link GetOrSetOptions.earlyRefresh}.
   * Number from 0.01 to 0.99. Default: none (entries are loaded again only once expired).
   */
  earlyRefresh?: number
  /**
   * Spreads expiries: each stored TTL (L2 and L1) is drawn uniformly within ±`jitter` × TTL, so that keys written
   * together do not all expire, and miss, together. A fraction: Number from 0 to 1. Default `0` (every entry lives
   * exactly its TTL).
   */
  jitter?: number
  /**
   * The L2's circuit breaker (see {@link L2BreakerOptions}), or `false` for none: every call then waits for the L2,
   * up to `l2Timeout`, however long it has been down. Default: on, with its defaults, when there is an L2.
   */
  l2Breaker?: L2BreakerOptions | false
  /**
   * Single-flight across processes: when several processes miss the same key in `getOrSet`, one runs the loader and
   * the others wait for its value in the L2 (Redis: a `SET NX PX` lock with an owner token; Postgres: an advisory
   * lock). Default `true` when there is an L2.
   */
  distributedLock?: boolean
  /**
   * The longest, in seconds, a `getOrSet` waits for another thread or process to load a key; past it, it runs its
   * loader itself, so a crashed lock holder never deadlocks anyone. Number from 0.05 to 300. Default `5`.
   */
  lockTimeout?: number
  /**
   * Resolve values deeply frozen (`Object.freeze`), and let the callers of one thread share them until the entry
   * changes: an L1 hit whose entry has not been written since this thread last parsed it returns the same frozen
   * value instead of parsing the JSON text again (about 3x faster for a 1 KB value). No caller can then change what
   * another one sees: assigning to a frozen value throws a `TypeError` in strict mode (ES modules, TypeScript
   * output) and is ignored otherwise. The frozen values a thread keeps are bounded by `l1.maxEntries` and by
   * `l1.maxBytes` of JSON text, per thread; a value whose L1 entry went is dropped at its next read.
   * Default `false`: every call gets its own freshly parsed, mutable copy.
   */
  immutable?: boolean
  /**
   * Called with each L2 or bus failure the cache absorbed instead of throwing (codes `ERR_CACHE_L2_UNAVAILABLE`,
   * `ERR_CACHE_L2_TIMEOUT`, `ERR_CACHE_L2`, `ERR_CACHE_BUS`). Failures on a call's path are reported before that
   * call's Promise settles; background failures (cleanup sweeps, bus reconnects) on a later turn of the event loop.
   * Also called with `ERR_CACHE_LOADER_FAILED` for a loader error that a stale value covered, or that an
   * `earlyRefresh` reload met. An exception thrown by the hook is ignored. Default: none (failures are still counted in `stats().errors`).
   */
  onError?: (err: CacheError) => void
  /**
   * A pino-compatible logger (an object with `child`, `debug`, `info`, `warn` and `error`; pino, or any logger of
   * that shape). The cache logs through `logger.child({ name: 'tiered-cache', namespace, backend })`, with the fields
   * `{ subject, state }`, each transition of its L2 circuit breaker (`warn` when it opens, `info` when it probes
   * and closes) and of its invalidation bus (`info` when subscribed or reconnected, `warn` when lost or found
   * half-open): once per transition and per `Cache`, never per call. It never logs a URL, a credential, a key or a
   * value. Per-call failures stay with `onError`. A logger method that throws is ignored. Anything else throws a
   * `TypeError` with `code: 'ERR_CACHE_INVALID_OPTION'`. Default: none. The same transitions are published on the
   * diagnostics channels `tiered-cache:breaker` and `tiered-cache:bus` (see `tiered-cache/diagnostics`).
   */
  logger?: CacheLogger
}

/** The part of a pino logger that {@link CacheOptions.logger} uses; each method takes `(fields, message)`. */
export interface CacheLogger {
  /** Returns a logger that adds `bindings` to every line. */
  child(bindings: Record<string, unknown>): CacheLogger
  debug(fields: Record<string, unknown>, message: string): void
  info(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
}

/**
 * Options of one `set`. A plain object of these options only (`{}` means the defaults); anything else, such as an
 * array or a misspelt option, throws a `TypeError` with `code: 'ERR_CACHE_INVALID_TTL'`, as does a value out of range.
 */
export interface SetOptions {
  /** Time-to-live of the entry, in seconds. Integer from 1 to 2592000. Default: the cache's `ttl`. */
  ttl?: number
  /**
   * How long, in seconds, the entry is kept past its TTL, stale, in both tiers. A stale entry is never a hit (`get`
   * and `has` miss it), but a `getOrSet` whose loader throws, or outlasts its `timeout`, returns it instead
   * (stale-if-error, stale-while-revalidate), counted in `stats().staleHits`. A `delete`, `invalidatePattern` or
   * `clear` removes stale entries too. The L1 keeps a stale copy only of what the L2 and the bus vouched for: an
   * entry written while the L2 or the bus was down gets no grace in the L1. On Postgres the first write with a grace
   * or tags adds the nullable columns `"staleUntil" TIMESTAMP(3)` and `"tags" TEXT[]` to the table (`"expiresAt"`
   * stays the end of freshness, so the Prisma model never reads a stale row as live). Integer from 0 to 2592000.
   * Default: the cache's `grace`.
   */
  grace?: number
  /**
   * Tags of the entry: `invalidateTags` of any of them invalidates it (if written before the invalidation), in both
   * tiers and on every instance. Up to 128 tags of 1 to 256 UTF-8 bytes each, scoped to the namespace like keys;
   * otherwise `ERR_CACHE_INVALID_TAG`. On Postgres the first tagged write adds the nullable columns `"staleUntil"`
   * and `"tags" TEXT[]` and creates the table `<table>_tags` (see the README). Default: none.
   */
  tags?: string[]
}

/** One entry of {@link Cache.setMany}: its key, its value and the options of an unfenced `set` ({@link SetOptions}). */
export interface SetManyEntry<T = unknown> extends SetOptions {
  /** The key, as `set` takes it. */
  key: string
  /** The value, stored as `JSON.stringify` gives it. */
  value: T
}

/** Options of one `getOrSet`: those of {@link SetOptions}, and more. */
export interface GetOrSetOptions extends SetOptions {
  /**
   * The longest this call waits for the loader, in seconds. Past it the call rejects with `ERR_CACHE_LOADER_TIMEOUT`,
   * and the loader's `signal` is aborted. The load is not dropped: other callers waiting on it still get it, and a
   * value that comes is stored. Number from 0.001 to 3600. Default: the cache's `hardTimeout` (none: as long as the
   * loader takes).
   */
  hardTimeout?: number
  /**
   * The soft timeout, in seconds: when a stale value (within its `grace`) is at hand and the load takes longer than
   * this, the call returns the stale value (counted in `stats().staleHits`); the load goes on in the background and
   * its value is stored, still one load per key across threads and processes. `0` is stale-while-revalidate: the
   * stale value at once, a reload behind it. A caller waiting for another caller's load gets the stale value after
   * this long too. With a stale value at hand, `hardTimeout` acts as a soft timeout as well (a stale value is at hand
   * once the L2 read that finds it has answered; before that, `hardTimeout` rejects as usual). Number from 0 to 3600.
   * Default: the cache's `timeout` (none).
   */
  timeout?: number
  /**
   * Early refresh, a fraction of the TTL: a hit on an entry whose age is over this fraction of `ttl` returns the
   * entry and starts one background reload (claimed once per L1 entry; single-flight across threads, and across
   * processes by the load lock), so a hot key is replaced before it expires. The reload's failure goes to `onError`;
   * its value is stored only if the key did not change meanwhile. Works on entries in the L1 (a cache with
   * `l1: false` reloads at expiry only). Number from 0.01 to 0.99. Default: the cache's `earlyRefresh` (none).
   */
  earlyRefresh?: number
}

/** A per-call TTL in seconds, or the call's options object. */
export type TtlArgument = number | SetOptions

/** What a `getOrSet` loader is given. */
export interface LoaderContext {
  /**
   * Aborted, with the `ERR_CACHE_LOADER_TIMEOUT` or `ERR_CACHE_CLOSED` error as its reason, when the caller's
   * `hardTimeout` passes or the cache is closed: hand it to `fetch` or your database client to stop work that no one
   * waits for any more.
   */
  signal: AbortSignal
  /**
   * The stale value (past its TTL, within its `grace`) this load replaces, or `undefined` when there is none: the
   * L2's when it answered, else the L1's.
   */
  stale: unknown
}

/**
 * Counters of a cache's native store, since it was created: shared by every `Cache` of the process that shares the
 * store (see {@link Cache}). `hits` and `misses` count the reads that reached the native store. A `getOrSet` that waits for a load
 * another caller runs, in its own thread, another thread or another process, counts once in `lockWaits` (and not as
 * a hit or a miss). `loaderCalls` against the number of `getOrSet` calls you made is the
 * measure of what single-flight saved.
 */
export interface CacheStats {
  /** Reads answered with a value (L1 or L2), including cached `null`s. */
  hits: number
  /** Reads that found nothing in either tier. */
  misses: number
  /** Hits answered by the L1. */
  l1Hits: number
  /** Hits answered by the L2 (and copied into the L1). */
  l2Hits: number
  /**
   * Writes finished by `set`, `setMany` (one per entry) and `getOrSet` loaders, whether or not the L2 took them: counted once the L2 answered
   * or failed, so a count that moved means the write is in the L2 or never will be.
   */
  sets: number
  /** Entries removed from the L2 (from the L1 when memory only) by `delete`, `invalidatePattern` and `clear`. */
  deletes: number
  /** Loader calls run by this process. */
  loaderCalls: number
  /** L2 and bus failures absorbed, one per L2 call (each also passed to `onError`, by every call the L2 call served). */
  errors: number
  /** `hits / (hits + misses)`, from 0 to 1; `0` before any read. */
  hitRate: number
  /** Entries in the L1 now. */
  l1Entries: number
  /** Bytes in the L1 now (key and JSON text lengths). */
  l1Bytes: number
  /** Invalidation messages this process published. */
  busPublished: number
  /** Invalidation messages from other instances applied to this L1. */
  busReceived: number
  /**
   * Whether the invalidation bus is subscribed and proven now (its latest liveness probe came back on the current
   * subscription). `false` while it is down or not yet proven, memory only, or with `bus: false`.
   */
  busUp: boolean
  /** Times the bus connection was re-established after a loss (each drops the whole L1). */
  busReconnects: number
  /**
   * Bus subscriptions that opened and published their probe but never heard it come back: `LISTEN` through a
   * transaction pooler (PgBouncer in transaction mode), which never delivers notifications. The first is reported to
   * `onError` at once with `ERR_CACHE_BUS`; point `postgres.sessionUrl` at a direct or session-pooled address.
   */
  busUnheard: number
  /** `getOrSet` calls that waited for a load run by another caller: in their own thread, another one or another process. */
  lockWaits: number
  /** Waits that ran out after `lockTimeout` and ran the loader themselves. */
  lockTimeouts: number
  /**
   * `getOrSet` calls answered with a stale value (within its `grace`): the loader failed, or outlasted the call's
   * `timeout`, or the load another caller ran did; and `getEntry` calls answered with a stale value.
   */
  staleHits: number
  /** Background reloads started by `earlyRefresh` (at most one per entry, and one per key at a time). */
  earlyRefreshes: number
  /** `invalidateTags` calls made through this store. */
  tagInvalidations: number
  /**
   * `getOrSet` loads whose value was returned to the caller but not stored, because the key changed on some instance
   * while the loader ran (or it ran past `maxLoadTime`).
   */
  loadsDiscarded: number
  /**
   * `delete`, `invalidatePattern` and `clear` calls whose own bus message did not come back within `l2Timeout`
   * (each also reported to `onError` as `ERR_CACHE_BUS`): other instances may serve their copy until their bus is
   * found lost.
   */
  busEchoTimeouts: number
  /**
   * Whether calls use the L2 now: `'up'`; `'down'` while the circuit breaker is open and calls skip it; `'none'` for a
   * memory-only cache.
   */
  l2State: 'up' | 'down' | 'none'
  /** L2 calls skipped, answered from the L1, as misses or by the loader at once, while the circuit breaker was open. */
  l2Skipped: number
  /** Times a probe found the L2 back and closed the circuit breaker. */
  l2Recoveries: number
}

/**
 * A two-tier cache: an in-process L1 in front of a shared L2, behind one typed API.
 *
 * Creating a cache never waits for the L2: it connects in the background, and until it answers the cache behaves as
 * when the L2 is down. Every `Cache` of a process with the same options, apart from `ttl`, `maxKeyLength`,
 * `maxValueBytes`, `immutable` and `onError` (which stay with each `Cache`), shares one native store (one L1, one
 * connection pool, one bus subscription, one set of counters), worker threads included.
 *
 * @example
 * ```ts
 * import { Cache } from 'tiered-cache'
 * const tenants = new Cache({ url: process.env.DATABASE_URL, namespace: 'tenant', ttl: 300 })
 * const tenant = await tenants.getOrSet(slug, () => db.tenant.findUnique({ where: { slug } }))
 * ```
 */
export declare class Cache {
  /**
   * @param options - see {@link CacheOptions}.
   * @throws `TypeError` with code `ERR_CACHE_INVALID_OPTION`, naming the option, for any invalid option.
   */
  constructor(options?: CacheOptions)

  /** The namespace of this cache. */
  readonly namespace: string
  /** Which L2 this cache uses: `'postgres'`, `'redis'`, or `'memory'` when there is none. */
  readonly backend: 'postgres' | 'redis' | 'memory'

  /**
   * Reads a value: from the L1 (an already-settled Promise, answered without leaving the thread), else from the L2
   * (then copied into the L1 for the entry's remaining TTL). The L1 misses of one turn of the event loop are read
   * from the L2 together, as one `getMany` (one native call and one round trip), each counted as its own hit or miss;
   * an L2 failure of the batch is reported to `onError` by each of its calls, and counted once in `stats().errors`.
   * @returns the value, or `undefined` on a miss. A stored `null` comes back as `null`, never as a miss.
   * When the L2 is down or slow this resolves as a miss after at most `l2Timeout` and reports the failure.
   * @throws `TypeError` `ERR_CACHE_INVALID_KEY` synchronously; `Error` `ERR_CACHE_CLOSED` after `close()`.
   */
  get<T = unknown>(key: string): Promise<T | undefined>

  /**
   * Reads many values: each key from the L1 as `get` reads it, and all the L1 misses from the L2 in one round trip
   * (Redis: one script per 256 keys, and on a cluster per hash slot, all in flight together, then one read of the
   * batch's tag records; Postgres: one `= ANY`-style statement over `unnest($1::text[])`). Each L2 hit is copied
   * into the L1 unless its key changed on any instance while the batch was read. A key given twice is read, and counted as
   * a hit or a miss in {@link CacheStats}, once; each position gets its own copy (with `immutable`, the one frozen
   * value).
   * @returns the values in the order of `keys`, `undefined` for each miss. When the L2 is down or slow, every L1 miss
   * resolves as a miss after at most `l2Timeout` and the failure goes to `onError`.
   * @throws `TypeError` `ERR_CACHE_INVALID_KEY` synchronously (not an array, or any one bad key); `Error`
   * `ERR_CACHE_CLOSED`.
   */
  getMany<T = unknown>(keys: readonly string[]): Promise<Array<T | undefined>>

  /**
   * Writes many values, each as an unfenced `set` writes it, to the L2 in one round trip (Redis: one script per 256
   * keys, and on a cluster per hash slot, in flight together; Postgres: one `INSERT ... SELECT FROM unnest(...)
   * ON CONFLICT` statement, so all or none), and to the L1. One bus message announces the whole batch (a batch whose
   * keys overflow one message, 64 KiB on Redis and 7,900 bytes on Postgres, sends the rest right after); other
   * instances drop their copies within the bus delay. A key given twice keeps its last value.
   * Never rejects for an L2 failure: the L1 still gets the values, for at most `busDownL1Ttl`, and the failure goes to
   * `onError`.
   * @throws synchronously, naming the entry's index, with nothing written: `TypeError` `ERR_CACHE_INVALID_KEY`,
   * `ERR_CACHE_INVALID_VALUE` (also for an entry that is not an object), `ERR_CACHE_INVALID_TTL`,
   * `ERR_CACHE_INVALID_TAG`; `RangeError` `ERR_CACHE_VALUE_TOO_LARGE`; `Error` `ERR_CACHE_CLOSED`.
   */
  setMany<T = unknown>(entries: readonly SetManyEntry<T>[]): Promise<void>

  /**
   * Reads a value as `get` does, and also a stale one: `{ value, stale }`, `stale` true for an entry past its TTL
   * within its grace or soft-invalidated by a tag (`invalidateTags(tags, { soft: true })`), which `get` misses. For a
   * caller that serves stale values itself while it refreshes them (stale-while-revalidate), as the Next.js handlers
   * of `tiered-cache/next` do. A stale answer counts in {@link CacheStats.staleHits}, and is not copied into the L1.
   * When the L2 fails, the L1's stale copy (see {@link SetOptions.grace}) stands in and the failure goes to `onError`.
   * @returns `undefined` on a miss.
   * @throws `TypeError` `ERR_CACHE_INVALID_KEY` synchronously; `Error` `ERR_CACHE_CLOSED`.
   */
  getEntry<T = unknown>(key: string): Promise<{ value: T; stale: boolean } | undefined>

  /**
   * Writes a value to the L2 (one upsert or `SET ... PX`, carrying the bus announcement in the same round trip) and the
   * L1. Other instances drop their copy within the bus delay (milliseconds); to have the next read on every instance
   * see a change, `delete` the key instead, which waits for its announcement to come back.
   * @param options - the TTL in seconds, or {@link SetOptions}; default the cache's `ttl`.
   * Never rejects for an L2 failure: the L1 still gets the value, and the failure goes to `onError`.
   * @throws synchronously, with nothing written: `TypeError` `ERR_CACHE_INVALID_KEY`, `ERR_CACHE_INVALID_VALUE`,
   * `ERR_CACHE_INVALID_TTL`; `RangeError` `ERR_CACHE_VALUE_TOO_LARGE`; `Error` `ERR_CACHE_CLOSED`.
   */
  set<T = unknown>(key: string, value: T, options?: number | SetOptions): Promise<void>

  /**
   * A fenced write: `set`, only if neither `key` nor any of the entry's tags changed (a write, `delete`,
   * `invalidatePattern`, `clear` or `invalidateTags`, on any instance) at or after the fence, which `writeFence` took
   * before the value's data was read, and the fence is younger than `maxLoadTime`. This is how `getOrSet` stores a
   * loader's value, for a caller that reads its data itself (the Next.js handlers: a render that started before a
   * `revalidateTag` must not store its result). The L2 checks it in the write's own round trip (Redis: one script;
   * Postgres: one statement). Memory only, where this process is the only writer, it goes by the tags alone.
   * @returns `true` when stored; `false` when dropped (counted in {@link CacheStats.loadsDiscarded}), when the L2
   * failed (to `onError`): nobody can vouch the value is newer than a change.
   * @throws as `set`; `TypeError` `ERR_CACHE_INVALID_TTL` for a fence that is not a non-negative integer.
   */
  set<T = unknown>(key: string, value: T, options: FencedSetOptions): Promise<boolean>

  /**
   * The fence of a later fenced `set` of `key` ({@link FencedSetOptions}): the L2's time now, in microseconds by its
   * clock (memory only: this process's clock), taken by a read of `key`. Take it before reading the data the value
   * is made from.
   * @returns `undefined` when the L2 failed (to `onError`); a fenced write then has nothing to go by, so skip it.
   * @throws `TypeError` `ERR_CACHE_INVALID_KEY` synchronously; `Error` `ERR_CACHE_CLOSED`.
   */
  writeFence(key: string): Promise<number | undefined>

  /**
   * Returns the cached value, or on a miss in both tiers calls `loader` once, stores its result in the L2 and L1 and
   * returns it. Concurrent calls for one missing key share one loader call: within a thread, across the threads of
   * the process, and (with `distributedLock`) across processes on the same L2. A loader that throws or rejects
   * rejects its own call with that error and every call of the process that waited for it with
   * `ERR_CACHE_LOADER_FAILED` (its `cause` that error), and caches nothing; a waiter in another process loads itself. A loader result of `null` is cached (negative caching);
   * `undefined` is an `ERR_CACHE_INVALID_VALUE` rejection.
   * The loader gets a {@link LoaderContext}. With a `hardTimeout` (per call or the cache's), the call rejects with
   * `ERR_CACHE_LOADER_TIMEOUT` past it while the load goes on and stores its value. With a stale value at hand (see
   * {@link SetOptions.grace}), a loader that fails, or outlasts `timeout` (or `hardTimeout`), gives the call the
   * stale value instead, its error going to `onError` as `ERR_CACHE_LOADER_FAILED` (the error as `cause`); waiters
   * get the stale value too.
   * @param options - the TTL in seconds, or {@link GetOrSetOptions}.
   * @throws synchronously: `TypeError` `ERR_CACHE_INVALID_KEY`, `ERR_CACHE_INVALID_LOADER`, `ERR_CACHE_INVALID_TTL`
   * (any invalid per-call option); `Error` `ERR_CACHE_CLOSED`.
   */
  getOrSet<T = unknown>(
    key: string,
    loader: (context: LoaderContext) => T | Promise<T>,
    options?: number | GetOrSetOptions,
  ): Promise<T>

  /**
   * Removes keys from both tiers and announces it on the bus. Resolves once the announcement has come back on this
   * process's own bus subscription (at most `l2Timeout` later), so other instances have been sent it as well: a read
   * on another instance right after this resolves sees the removal.
   * @returns how many of them existed in the L2 (in the L1 when memory only); `0` when the L2 is down.
   * @throws `TypeError` `ERR_CACHE_INVALID_KEY` synchronously, nothing removed; `Error` `ERR_CACHE_CLOSED`.
   */
  delete(...keys: string[]): Promise<number>

  /**
   * Whether a live entry exists for the key, in the L1 or the L2. Counts neither a hit nor a miss.
   * @throws `TypeError` `ERR_CACHE_INVALID_KEY` synchronously; `Error` `ERR_CACHE_CLOSED`.
   */
  has(key: string): Promise<boolean>

  /**
   * Removes every entry of this namespace, and only of it, from both tiers (Redis: `SCAN` + `UNLINK` in batches;
   * Postgres: one `DELETE` on the key prefix), and announces it on the bus; resolves once the announcement has come
   * back, as for `delete`.
   * @throws `Error` `ERR_CACHE_CLOSED`.
   */
  clear(): Promise<void>

  /**
   * Removes the keys of this namespace matching a glob: `*` any run of characters, `?` exactly one character, `\`
   * makes the next character literal. Every other character, `%` and `_` included, matches only itself. Redis uses
   * `SCAN MATCH` + `UNLINK` in batches (never `KEYS`); Postgres a `LIKE` with its wildcards escaped. Announced on the
   * bus and resolved once the announcement has come back, as for `delete`.
   * @returns the number of entries removed from the L2 (from the L1 when memory only).
   * @throws `TypeError` `ERR_CACHE_INVALID_PATTERN` synchronously; `Error` `ERR_CACHE_CLOSED`.
   */
  invalidatePattern(pattern: string): Promise<number>

  /**
   * Invalidates every entry of this namespace that carries one of `tags` and was written before this call, in both
   * tiers and on every instance. Hard (the default): such entries become misses. Soft (`{ soft: true }`, as Next.js's
   * `revalidateTag(tag, 'max')` asks): they become stale instead, a miss for `get` but still served by `getOrSet`
   * within their grace (stale-if-error, `timeout`, stale-while-revalidate). The cost does not depend on how many
   * entries carry a tag: one record per tag is written in the L2 (Redis: a hash `#tag:<namespace>:<tag>`; Postgres:
   * a row of `<table>_tags`), kept 60 days (the longest TTL plus the longest grace), and every read compares an
   * entry's write time with its tags' records, by the L2's clock. An entry written after the invalidation is live; a
   * `getOrSet` whose loader started before it returns its value but does not store it. Announced on the bus and
   * resolved once the announcement has come back, as for `delete`.
   * @throws `TypeError` `ERR_CACHE_INVALID_TAG` synchronously, nothing invalidated; `TypeError`
   * `ERR_CACHE_INVALID_OPTION` for options other than {@link InvalidateTagsOptions}; `Error` `ERR_CACHE_CLOSED`.
   * With `strict`, rejects with `ERR_CACHE_L2_UNAVAILABLE`, `ERR_CACHE_L2_TIMEOUT` or `ERR_CACHE_L2` when the L2 did
   * not record the invalidation.
   */
  invalidateTags(tags: string | string[], options?: InvalidateTagsOptions): Promise<void>

  /**
   * The time of the latest invalidation (hard or soft) of any of `tags`, in milliseconds since the Unix epoch by the
   * L2's clock; `0` when none was ever invalidated. As Next.js's cache handlers' `getExpiration(tags)` wants it. When
   * the L2 fails, what this instance knows (the failure goes to `onError`).
   * @throws `TypeError` `ERR_CACHE_INVALID_TAG` synchronously; `Error` `ERR_CACHE_CLOSED`.
   */
  getTagExpiration(tags: string[]): Promise<number>

  /** The counters of this cache's store. See {@link CacheStats}. */
  stats(): Promise<CacheStats>

  /**
   * Releases this cache. The shared store (connections, bus subscription, background sweeps) is released when its
   * last `Cache` in the process is closed or garbage-collected. Idempotent. A process that never calls it still exits
   * by itself: the cache holds nothing that keeps the event loop alive.
   */
  close(): Promise<void>
}
