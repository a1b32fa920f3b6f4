// 12. Batch calls: 100 keys of the 1 KB tenant row with the L1 off, so every key goes to the L2. getMany against 100
// concurrent gets and against the raw client's batch read (ioredis MGET + JSON.parse; pg SELECT ... = ANY($1));
// setMany against 100 concurrent sets and the raw batch write (an ioredis pipeline of SET PX; one pg upsert over
// unnest). One batch at a time: the time of a batch, as a page that needs 100 keys waits for it.
import { randomUUID } from 'node:crypto'

import { N, PREFIX, POSTGRES_URL, REDIS_URL, TABLE, tenantValue, alternate, summarize, check, openTiered, sequentialLatency } from '../lib/common.mjs'
import { redisClient, pgPool, ensureTable } from '../lib/servers.mjs'

const TTL = 3600
const BATCH = 100
const T = `"${TABLE}"`

export async function run() {
  const batches = Array.from({ length: 20 }, (_, b) => Array.from({ length: BATCH }, (_, i) => `batch-${b}-${i}`))
  const value = (k) => tenantValue(Number(k.split('-')[2]))
  const pool = pgPool(10)
  await ensureTable(pool)
  const redis = redisClient()
  const raw = `${PREFIX}-rawbatch:`
  const tiered = {
    Redis: await openTiered({ url: REDIS_URL, namespace: `${PREFIX}-batch`, ttl: TTL, l1: false }),
    Postgres: await openTiered({ url: POSTGRES_URL, namespace: `${PREFIX}-batch`, ttl: TTL, l1: false, postgres: { table: TABLE } }),
  }
  const pgMany = async (keys) => {
    const { rows } = await pool.query({
      name: 'tcbench-get-many',
      text: `SELECT "key", "value" FROM ${T} WHERE "key" = ANY($1) AND "expiresAt" > now() AT TIME ZONE 'UTC'`,
      values: [keys.map((k) => raw + k)],
    })
    const byKey = new Map(rows.map((row) => [row.key, row.value]))
    return keys.map((k) => byKey.get(raw + k))
  }
  const pgSetMany = (keys) =>
    pool.query({
      name: 'tcbench-set-many',
      text: `INSERT INTO ${T} ("id", "key", "value", "expiresAt", "updatedAt")
             SELECT id, k, v::jsonb, (now() AT TIME ZONE 'UTC') + $4::int8 * interval '1 second', now() AT TIME ZONE 'UTC'
             FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, k, v)
             ON CONFLICT ("key") DO UPDATE SET "value" = EXCLUDED."value", "expiresAt" = EXCLUDED."expiresAt", "updatedAt" = EXCLUDED."updatedAt"`,
      values: [keys.map(() => randomUUID()), keys.map((k) => raw + k), keys.map((k) => JSON.stringify(value(k))), TTL],
    })
  const redisSetMany = (keys) => {
    const pipeline = redis.pipeline()
    for (const k of keys) pipeline.set(raw + k, JSON.stringify(value(k)), 'PX', TTL * 1000)
    return pipeline.exec()
  }

  const entries = (keys) => keys.map((key) => ({ key, value: value(key) }))
  const reads = {
    'tiered-cache getMany (Redis)': (keys) => tiered.Redis.getMany(keys),
    'tiered-cache 100 gets (Redis)': (keys) => Promise.all(keys.map((k) => tiered.Redis.get(k))),
    'ioredis MGET + JSON.parse': async (keys) => (await redis.mget(keys.map((k) => raw + k))).map((v) => JSON.parse(v)),
    'tiered-cache getMany (Postgres)': (keys) => tiered.Postgres.getMany(keys),
    'tiered-cache 100 gets (Postgres)': (keys) => Promise.all(keys.map((k) => tiered.Postgres.get(k))),
    'pg SELECT = ANY($1)': pgMany,
  }
  const writes = {
    'tiered-cache setMany (Redis)': (keys) => tiered.Redis.setMany(entries(keys)),
    'tiered-cache 100 sets (Redis)': (keys) => Promise.all(keys.map((k) => tiered.Redis.set(k, value(k)))),
    'ioredis pipeline of 100 SET PX': redisSetMany,
    'tiered-cache setMany (Postgres)': (keys) => tiered.Postgres.setMany(entries(keys)),
    'tiered-cache 100 sets (Postgres)': (keys) => Promise.all(keys.map((k) => tiered.Postgres.set(k, value(k)))),
    'pg upsert over unnest': pgSetMany,
  }

  // Every contender's data in place, in its own format, before any read is timed.
  for (const keys of batches) {
    await Promise.all([tiered.Redis.setMany(entries(keys)), tiered.Postgres.setMany(entries(keys)), redisSetMany(keys), pgSetMany(keys)])
  }
  const expected = batches[0].map(value)
  for (const [name, read] of Object.entries(reads)) check(await read(batches[0]), expected, `${name} read`)

  const ops = Math.max(5, Math.round(N.seqOps / 10))
  const time = (contenders) =>
    alternate(Object.keys(contenders), N.reps, (name) => sequentialLatency((keys) => contenders[name](keys), batches, ops))
  const readReps = await time(reads)
  const writeReps = await time(writes)
  for (const [name, read] of Object.entries(reads)) check(await read(batches[1]), batches[1].map(value), `${name} read after the run`)

  const stats = { redis: await tiered.Redis.stats(), postgres: await tiered.Postgres.stats() }
  if (stats.redis.l2Hits === 0 || stats.postgres.l2Hits === 0) throw new Error('tiered-cache batch reads did not reach the L2')
  for (const cache of Object.values(tiered)) {
    await cache.clear()
    await cache.close()
  }
  redis.disconnect()
  await pool.end()
  const summarized = (perRep) => Object.fromEntries(Object.keys(perRep).map((c) => [c, summarize(perRep[c])]))
  return { batch: BATCH, reads: summarized(readReps), writes: summarized(writeReps) }
}
