// 3. Writes: `set` per L2 against ioredis SET PX and the old TypeScript cache's Postgres upsert.
import { N, PREFIX, POSTGRES_URL, REDIS_URL, TABLE, tenantValue, keyOf, shuffled, alternate, summarize, check, openTiered, sequentialLatency, inflightThroughput } from '../lib/common.mjs'
import { redisClient, pgPool, ensureTable, TsPostgresCache } from '../lib/servers.mjs'

const TTL = 3600

export async function run() {
  const keys = shuffled(Array.from({ length: N.keys }, (_, i) => keyOf(i)))
  const values = keys.map((k) => tenantValue(Number(k.slice(7))))
  const pool = pgPool(10)
  await ensureTable(pool)
  const redis = redisClient()
  const rawPrefix = `${PREFIX}-rawset:`
  const ts = new TsPostgresCache(pool, rawPrefix)
  // tiered-cache as users get it: L1 on (sized for the keys), bus on, default pool; a set writes the L2, the L1,
  // and publishes an invalidation.
  const l1 = { maxEntries: N.keys * 2, maxBytes: 1 << 30 }
  const tieredRedis = await openTiered({ url: REDIS_URL, namespace: `${PREFIX}-set`, ttl: TTL, l1 })
  const tieredPg = await openTiered({ url: POSTGRES_URL, namespace: `${PREFIX}-set`, ttl: TTL, l1, postgres: { table: TABLE } })

  const v = (i) => values[i % values.length]
  const contenders = {
    'tiered-cache (Redis)': (k, i) => tieredRedis.set(k, v(i)),
    'ioredis SET PX': (k, i) => redis.set(rawPrefix + k, JSON.stringify(v(i)), 'PX', TTL * 1000),
    'tiered-cache (Postgres)': (k, i) => tieredPg.set(k, v(i)),
    'TS upsert (pg)': (k, i) => ts.set(k, v(i), TTL),
  }
  const names = Object.keys(contenders)
  const perRep = await alternate(names, N.reps, async (name) => {
    const set = contenders[name]
    const seq = await sequentialLatency(set, keys, N.seqOps)
    const thr = await inflightThroughput(set, keys, N.inflightOps, N.inflight)
    return { ...seq, ...thr }
  })

  // The writes landed in the L2, not just in an L1.
  const probe = await openTiered({ url: REDIS_URL, namespace: `${PREFIX}-set`, l1: false })
  check(await probe.get(keys[1]), v(1), 'tiered-cache (Redis) set reached the L2')
  await probe.close()
  const probePg = await openTiered({ url: POSTGRES_URL, namespace: `${PREFIX}-set`, l1: false, postgres: { table: TABLE } })
  check(await probePg.get(keys[1]), v(1), 'tiered-cache (Postgres) set reached the L2')
  await probePg.close()
  check(await ts.get(keys[1]), v(1), 'TS upsert')

  await Promise.all([tieredRedis.close(), tieredPg.close()])
  redis.disconnect()
  await pool.end()
  return Object.fromEntries(names.map((c) => [c, summarize(perRep[c])]))
}
