// 2. L2 hit with the L1 off: every read goes to Redis or Postgres, against the raw client doing the same read.
import { N, PREFIX, POSTGRES_URL, REDIS_URL, TABLE, tenantValue, keyOf, shuffled, alternate, summarize, check, openTiered, sequentialLatency, inflightThroughput, forEachLimit } from '../lib/common.mjs'
import { redisClient, pgPool, ensureTable, TsPostgresCache } from '../lib/servers.mjs'

const TTL = 3600

export async function run() {
  const keys = shuffled(Array.from({ length: N.keys }, (_, i) => keyOf(i)))
  const value = (k) => tenantValue(Number(k.slice(7)))
  const pool = pgPool(10)
  await ensureTable(pool)
  const redis = redisClient()

  const rawPrefix = `${PREFIX}-raw:`
  const ts = new TsPostgresCache(pool, rawPrefix)
  // tiered-cache with its defaults apart from the L1 (off, so every read reaches the L2) and the bench's table.
  const tieredRedis = await openTiered({ url: REDIS_URL, namespace: `${PREFIX}-l2`, ttl: TTL, l1: false })
  const tieredPg = await openTiered({ url: POSTGRES_URL, namespace: `${PREFIX}-l2`, ttl: TTL, l1: false, postgres: { table: TABLE } })

  const contenders = {
    'tiered-cache (Redis)': { get: (k) => tieredRedis.get(k) },
    'ioredis GET + JSON.parse': { get: async (k) => JSON.parse(await redis.get(rawPrefix + k)) },
    'tiered-cache (Postgres)': { get: (k) => tieredPg.get(k) },
    'pg prepared SELECT': { get: (k) => ts.get(k) },
  }

  // Same keys and values for all four; the raw peers under their own prefix so that no contender reads rows
  // written in another's format.
  await forEachLimit(keys, 64, async (k) => {
    const text = JSON.stringify(value(k))
    await Promise.all([
      tieredRedis.set(k, value(k)),
      tieredPg.set(k, value(k)),
      redis.set(rawPrefix + k, text, 'PX', TTL * 1000),
      ts.set(k, value(k), TTL),
    ])
  })
  for (const [name, c] of Object.entries(contenders)) check(await c.get(keys[0]), value(keys[0]), `${name} read`)

  const names = Object.keys(contenders)
  const perRep = await alternate(names, N.reps, async (name) => {
    const { get } = contenders[name]
    const seq = await sequentialLatency(get, keys, N.seqOps)
    const thr = await inflightThroughput(get, keys, N.inflightOps, N.inflight)
    return { ...seq, ...thr }
  })
  for (const [name, c] of Object.entries(contenders)) check(await c.get(keys[keys.length - 1]), value(keys[keys.length - 1]), `${name} read after the run`)

  const stats = { redis: await tieredRedis.stats(), postgres: await tieredPg.stats() }
  if (stats.redis.l2Hits === 0 || stats.postgres.l2Hits === 0) throw new Error('tiered-cache L2 reads did not reach the L2')
  await Promise.all([tieredRedis.close(), tieredPg.close()])
  redis.disconnect()
  await pool.end()
  return Object.fromEntries(names.map((c) => [c, summarize(perRep[c])]))
}
