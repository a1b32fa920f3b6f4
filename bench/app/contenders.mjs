// bench/app's contenders: loaded into each `next start` of the example app with `node --import`, before the app,
// this module sets the read-through factory the app's tenant and menu-item routes take their caches from
// (examples/next-app/lib/read-through.ts). BENCH_APP_CACHE picks the contender; `tiered-cache` sets nothing, so the
// app runs on its own caches. Imports resolve from bench/node_modules.
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis'
import pg from 'pg'

const TTL_S = 300
const contender = process.env.BENCH_APP_CACHE ?? 'tiered-cache'
const prefix = process.env.CACHE_NAMESPACE_PREFIX ?? ''

/** The seeds' per-process Map: a value and its expiry per key, never bounded, never told of another instance's write. */
function mapCache() {
  const entries = new Map()
  return {
    async getOrSet(key, loader) {
      const hit = entries.get(key)
      if (hit !== undefined && hit.expiresAt > Date.now()) return hit.value
      const value = await loader()
      entries.set(key, { value, expiresAt: Date.now() + TTL_S * 1000 })
      return value
    },
  }
}

/** bentocache with its L1, the same Redis as L2 and its Redis bus; an L1 large enough for every entry (its default
 * of 1,000 items would thrash). */
function bentoFactory() {
  const [host, port] = new URL(process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379').host.split(':')
  const connection = { host, port: Number(port ?? 6379) }
  const bento = new BentoCache({
    default: 'app',
    stores: {
      app: bentostore()
        .useL1Layer(memoryDriver({ maxItems: 100_000 }))
        .useL2Layer(redisDriver({ connection, prefix: `${prefix}bento` }))
        .useBus(redisBusDriver({ connection })),
    },
  })
  return (name) => {
    const space = bento.namespace(name)
    return { getOrSet: (key, loader) => space.getOrSet({ key, factory: loader, ttl: `${TTL_S}s` }) }
  }
}

/** The seeds' Postgres DBCache: one `cache_entries`-shaped row per key, read from the database on every call. */
function dbFactory() {
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 })
  // Created by run.mjs before the servers start: two servers creating it at once would race in Postgres's catalog.
  const table = process.env.BENCH_APP_TABLE
  return (name) => ({
    async getOrSet(key, loader) {
      const full = `${name}:${key}`
      const { rows } = await pool.query(`SELECT value FROM ${table} WHERE key = $1 AND expires_at > now()`, [full])
      if (rows.length > 0) return rows[0].value
      const value = await loader()
      await pool.query(
        `INSERT INTO ${table} (key, value, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
        [full, JSON.stringify(value), TTL_S],
      )
      return value
    },
  })
}

const factories = {
  map: () => mapCache,
  bentocache: bentoFactory,
  dbcache: dbFactory,
}

if (contender !== 'tiered-cache') {
  const make = factories[contender]
  if (make === undefined) throw new Error(`BENCH_APP_CACHE: unknown contender ${contender}`)
  const create = make()
  // One cache per name for the whole process, as the app keeps its own.
  const byName = new Map()
  globalThis.__tieredCacheBenchReadThrough = (name) => {
    if (!byName.has(name)) byName.set(name, create(name))
    return byName.get(name)
  }
}
