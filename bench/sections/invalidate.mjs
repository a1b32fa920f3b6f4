// 5. invalidatePattern over many keys per L2: wall time, and for Redis the longest single command the server ran
// for it (a long SCAN or UNLINK would block every other client of the Redis).
import { N, PREFIX, POSTGRES_URL, REDIS_URL, TABLE, smallValue, alternate, summarize, openTiered, forEachLimit } from '../lib/common.mjs'
import { redisClient, pgPool, ensureTable } from '../lib/servers.mjs'

const T = `"${TABLE}"`

/** Records every command in SLOWLOG for the duration of `fn`, then puts the server's settings back. */
export async function withSlowlog(redis, fn) {
  const [, slower] = await redis.config('GET', 'slowlog-log-slower-than')
  const [, maxLen] = await redis.config('GET', 'slowlog-max-len')
  await redis.config('SET', 'slowlog-log-slower-than', '0')
  await redis.config('SET', 'slowlog-max-len', '100000')
  try {
    // Entries of other clients stay in the log; only the ones after this id and naming the bench's keys count.
    const [last] = await redis.slowlog('GET', 1)
    const after = last ? Number(last[0]) : -1
    const result = await fn()
    const entries = (await redis.slowlog('GET', -1)).filter(([id]) => Number(id) > after)
    return { result, entries }
  } finally {
    await redis.config('SET', 'slowlog-log-slower-than', slower)
    await redis.config('SET', 'slowlog-max-len', maxLen)
  }
}

export function longestFor(entries, marker) {
  let max = { us: 0, command: '' }
  let count = 0
  for (const [, , us, args] of entries) {
    if (!args.some((a) => String(a).includes(marker))) continue
    count++
    if (us > max.us) max = { us, command: args.slice(0, 4).join(' ').slice(0, 80) }
  }
  return { maxCommandMs: max.us / 1000, longestCommand: max.command, commands: count }
}

export async function run() {
  const redis = redisClient()
  const pool = pgPool(10)
  await ensureTable(pool)
  const n = N.invalidateKeys
  const ids = Array.from({ length: n }, (_, i) => i)
  const ns = `${PREFIX}-inv`
  const tieredRedis = await openTiered({ url: REDIS_URL, namespace: ns, ttl: 3600, l1: false })
  const tieredPg = await openTiered({ url: POSTGRES_URL, namespace: ns, ttl: 3600, l1: false, postgres: { table: TABLE } })
  const rawPrefix = `${PREFIX}-rawinv:`

  // Loading is not measured. tiered-cache writes its own entries (its Redis format is its own); the raw peers load
  // in bulk.
  const load = {
    'tiered-cache (Redis)': () => forEachLimit(ids, 128, (i) => tieredRedis.set(`inv-${i}:${i % 7}`, smallValue(i))),
    'tiered-cache (Postgres)': () => forEachLimit(ids, 32, (i) => tieredPg.set(`inv-${i}:${i % 7}`, smallValue(i))),
    'ioredis SCAN + UNLINK': async () => {
      for (let i = 0; i < n; i += 1000) {
        const pipe = redis.pipeline()
        for (const j of ids.slice(i, i + 1000)) pipe.set(`${rawPrefix}inv-${j}:${j % 7}`, JSON.stringify(smallValue(j)), 'PX', 3_600_000)
        await pipe.exec()
      }
    },
    'pg DELETE ... LIKE': () =>
      pool.query(`INSERT INTO ${T} ("id", "key", "value", "expiresAt", "updatedAt")
        SELECT gen_random_uuid()::text, $1 || 'inv-' || g || ':' || (g % 7), jsonb_build_object('id', g), now() + interval '1 hour', now()
        FROM generate_series(0, $2 - 1) g`, [rawPrefix, n]),
  }
  // Every key matches: the worst case for one call.
  const invalidate = {
    'tiered-cache (Redis)': () => tieredRedis.invalidatePattern('inv-*'),
    'tiered-cache (Postgres)': () => tieredPg.invalidatePattern('inv-*'),
    'ioredis SCAN + UNLINK': () =>
      new Promise((resolve, reject) => {
        let removed = 0
        const pending = []
        const stream = redis.scanStream({ match: `${rawPrefix}inv-*`, count: 1000 })
        stream.on('data', (keys) => keys.length && pending.push(redis.unlink(...keys).then((c) => (removed += c))))
        stream.on('end', () => Promise.all(pending).then(() => resolve(removed), reject))
        stream.on('error', reject)
      }),
    'pg DELETE ... LIKE': async () => (await pool.query(`DELETE FROM ${T} WHERE "key" LIKE $1`, [`${rawPrefix}inv-%`])).rowCount,
  }
  const marker = { 'tiered-cache (Redis)': `${ns}:`, 'ioredis SCAN + UNLINK': rawPrefix }

  const names = Object.keys(invalidate)
  const perRep = await alternate(names, N.reps, async (name) => {
    await load[name]()
    const timed = async () => {
      const t0 = performance.now()
      const removed = await invalidate[name]()
      return { removed, wallMs: performance.now() - t0 }
    }
    if (!marker[name]) {
      const r = await timed()
      if (r.removed !== n) throw new Error(`${name} removed ${r.removed} of ${n} keys`)
      return r
    }
    const { result, entries } = await withSlowlog(redis, timed)
    if (result.removed !== n) throw new Error(`${name} removed ${result.removed} of ${n} keys`)
    return { ...result, ...longestFor(entries, marker[name]) }
  })
  await Promise.all([tieredRedis.close(), tieredPg.close()])
  redis.disconnect()
  await pool.end()
  return Object.fromEntries(names.map((c) => [c, summarize(perRep[c])]))
}
