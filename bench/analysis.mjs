// What profiling found for each missed target, by target id. Kept by hand; report.mjs prints an entry only when the
// run at hand misses that target. Measured on this 2-core machine with the component loops described in each entry.
const HOP =
  'Every L2 call crosses threads twice: JS hands the call to the core tokio runtime (a worker wake-up) and the ' +
  'result comes back through a threadsafe function (a libuv wake-up). A memory-only native call that does no I/O at ' +
  'all measures 31-40 µs sequential round trip here, which is the whole gap to the raw clients, who do their I/O on the ' +
  'JS thread. One threadsafe function per cache instead of napi-rs\'s one per call already cut it from ~40 µs and raised ' +
  'throughput at 64 in flight from 0.6x to 0.8x.'

export const ANALYSIS = {
  'l1-bento': {
    reason:
      'Per 1 KB hit (10,000 keys): the native lookup costs ~1.1 µs (napi call with a string key ~0.3 µs, moka lookup ' +
      'and read recording ~0.4 µs, copying the JSON text into a new V8 string, plus cache misses over the working set); ' +
      'JSON.parse of 1 KB ~2.3 µs, more on a freshly allocated string (every hit allocates 1 KB in the young ' +
      'generation). bentocache pays the same parse, so the margin is its own overhead: 1.5x, not 2x. With ' +
      '`immutable: true` the hit skips the parse and is 6-7x faster than bentocache.',
    toClose:
      'Hand the L1 bytes to V8 without a copy (external Latin-1 strings, Node-API 10, once Node 20 is not supported), ' +
      'or make `immutable` the default in a major version.',
  },
  'l1-cm': {
    reason:
      'cache-manager hands back the stored reference (~0.8 µs, keyv\'s async get). With `immutable: true` tiered-cache ' +
      'also returns a stored (frozen) object, but first asks the native L1 whether the entry changed: one napi call ' +
      'with a string key, ~0.5-1 µs over a 10,000-key working set. That check is what keeps a write or an invalidation ' +
      'from another instance visible at once.',
    toClose:
      'Check freshness without a native call: a shared array of per-bucket write counters (an external ArrayBuffer ' +
      'over native memory) that JS reads with Atomics, native code bumps on every write and bus message; a hit would ' +
      'then be a hash, a Map lookup and one typed-array read.',
  },
  'l2-p50-redis': {
    reason:
      HOP +
      ' Since tags, a Redis read is one Lua script (the entry and the records of its tags in one round trip) instead of a pipeline of HMGET and TIME: a paired A/B of 20,000 sequential L2 hits against the build before tags measured a wall ratio of 1.17 with the script (medians 153 vs 132 µs per hit) and 1.07 with a pipeline in its place, so the script costs ~10-20 µs of the gap.',
    toClose:
      'Do the L2 I/O on the JS thread (libuv sockets) instead of a tokio runtime, giving up the shared per-process store that worker threads use; or accept it: the L1 answers the hot reads. For the script: read with the HMGET+TIME pipeline while this instance holds every tag record of its namespace (loaded when its bus connects, kept by the bus), and with the script only otherwise.',
  },
  'l2-p50-postgres': { reason: HOP + ' sqlx adds its own per-query cost over node-postgres.', toClose: 'As for Redis; a lighter Postgres client (tokio-postgres) would take part of it.' },
  'l2-thr-redis': {
    reason:
      'The L1 misses of `get` in one turn of the event loop are now read together (one native call, one script, one ' +
      'completion: `getMany`), which took this from 0.60x to about 0.81x, and Postgres from 0.62x to 2.1x. What is ' +
      'left on Redis is the read itself: each entry is a hash (value, expiry, grace, write time, tags) read by a ' +
      'script with one `HMGET` a key and 8 fields a key back, against `GET`\'s one string; measured from ioredis, ' +
      'the script over 100 keys takes 701 µs where `MGET` takes 224 µs (section 12).',
    toClose:
      'An entry layout whose value and metadata sit in one string (a header before the JSON), read with `MGET` or ' +
      '`GET`, with the tag records read only for entries that carry tags.',
  },
  'l2-thr-postgres': { reason: HOP + ' Both sides use 10 connections.', toClose: 'As for Redis.' },
  'set-pg': {
    reason:
      'Component loop, sequential, 1 KB: tiered-cache set 411-430 µs, the same with `bus: false` 351-357 µs, the ' +
      'TypeScript upsert 285-339 µs, a memory-only set 43-57 µs. So ~65 µs is the NOTIFY that carries the ' +
      'invalidation in the same statement (commit-time notify queue work the TypeScript cache does not do, because ' +
      'it keeps no instance coherent) and ~45 µs the thread hop.',
    toClose:
      'Publish invalidations for sets on a dedicated channel only when another instance listens (LISTEN count via ' +
      'pg_stat_activity), or move the bus for Postgres users to Redis when both are present.',
  },
  memory: {
    reason:
      'Per 1 KB entry: the JSON text (~1,005 B, kept as bytes) plus moka\'s bookkeeping for a bounded, per-entry-TTL ' +
      'cache (entry info, access-order and write-order deque nodes, timer-wheel node, hash-table slot: ~400 B) plus ' +
      'malloc rounding. RSS per entry is on par with lru-cache\'s RSS (see "RSS vs RSS"), but above its heap bytes.',
    toClose: 'A leaner L1 index than moka (no per-entry timer node when every entry of a namespace shares one TTL), or compressing values above a size.',
  },
  closing:
    'Reading the table: `immutable: true` is the mode to use for hot read paths (tenant resolution); the default ' +
    'mode parses on every hit so that callers may mutate what they get. L2 figures include the cross-thread hop ' +
    'described above; every figure is the median of the repetitions of one run, peers and tiered-cache alternating.' +
    ' Losses without a target: Postgres `set` at 64 in flight (0.39x the TypeScript upsert) is the bus NOTIFY, which Postgres serializes at commit (a global notify-queue lock): a 64-in-flight loop of 1 KB sets measured 3.1-3.9 k ops/s with the bus and 6.8-7.1 k ops/s with `bus: false`, the rest being the thread hop. The event-loop p99 under mixed writes (1.38x bentocache while doing 2.3x its operations) and Postgres `invalidatePattern` over 100,000 keys (2.05x a bare `DELETE ... LIKE`; ours also counts live rows, drops matching L1 entries and waits for its bus echo) are not profiled yet: an equal-rate comparison and an `EXPLAIN ANALYZE` would tell.',
}
