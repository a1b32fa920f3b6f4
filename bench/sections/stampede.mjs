// 4. Stampede: many concurrent getOrSet on one cold key with a slow loader. Loader calls are counted in Redis, so
// the count covers every process, not just the one that asks.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisDriver, redisBusDriver } from 'bentocache/drivers/redis'
import { createCache } from 'cache-manager'
import { N, PREFIX, POSTGRES_URL, REDIS_URL, TABLE, tenantValue, alternate, summarize, check, openTiered, sleep } from '../lib/common.mjs'
import { redisClient, pgPool, ensureTable } from '../lib/servers.mjs'

export const TIERED_OPTIONS = {
  redis: { url: REDIS_URL, namespace: `${PREFIX}-stampede`, ttl: 300 },
  postgres: { url: POSTGRES_URL, namespace: `${PREFIX}-stampede`, ttl: 300, postgres: { table: TABLE } },
}

/** The loader every contender gets: count the call where all processes see it, then take 50 ms like a slow query. */
export function makeLoader(redis, counterKey, value) {
  return async () => {
    await redis.incr(counterKey)
    await sleep(N.loaderMs)
    return value
  }
}

async function inProcess(redis) {
  const tieredRedis = await openTiered(TIERED_OPTIONS.redis)
  const tieredPg = await openTiered(TIERED_OPTIONS.postgres)
  const bento = new BentoCache({
    default: 'tiered',
    stores: {
      tiered: bentostore()
        .useL1Layer(memoryDriver({ maxItems: 10_000 }))
        .useL2Layer(redisDriver({ connection: { host: '127.0.0.1', port: 6379 }, prefix: `${PREFIX}-bento-stampede` }))
        .useBus(redisBusDriver({ connection: { host: '127.0.0.1', port: 6379 } })),
    },
  })
  const cm = createCache()
  const contenders = {
    'tiered-cache (Redis)': (key, loader) => tieredRedis.getOrSet(key, loader),
    'tiered-cache (Postgres)': (key, loader) => tieredPg.getOrSet(key, loader),
    'bentocache getOrSet (L1 + Redis)': (key, loader) => bento.getOrSet({ key, factory: loader, ttl: '5m' }),
    'cache-manager 7 wrap': (key, loader) => cm.wrap(key, loader, 300_000),
  }
  const value = tenantValue(1)
  const names = Object.keys(contenders)
  const perRep = await alternate(names, N.reps, async (name, rep) => {
    const key = `cold-${rep}-${names.indexOf(name)}`
    const counter = `${PREFIX}-loader-calls:in:${rep}:${names.indexOf(name)}`
    const loader = makeLoader(redis, counter, value)
    const t0 = performance.now()
    const results = await Promise.all(Array.from({ length: N.stampedeCalls }, () => contenders[name](key, loader)))
    const wallMs = performance.now() - t0
    for (const r of [results[0], results[results.length - 1]]) check(r, value, `${name} getOrSet result`)
    const loaderCalls = Number(await redis.get(counter))
    return { loaderCalls, wallMs }
  })
  await Promise.all([tieredRedis.close(), tieredPg.close(), bento.disconnectAll(), cm.disconnect()])
  return Object.fromEntries(names.map((c) => [c, summarize(perRep[c])]))
}

/** The same stampede split over 4 processes on one L2; only tiered-cache takes part, as the peers have no lock
 * between processes (bentocache's and cache-manager's locks are in-process only). */
async function acrossProcesses(redis) {
  const child = fileURLToPath(new URL('./stampede-child.mjs', import.meta.url))
  const out = {}
  for (const backend of Object.keys(TIERED_OPTIONS)) {
    const procs = Array.from({ length: N.stampedeProcs }, () => fork(child, [backend], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
    try {
      await Promise.all(procs.map((p) => once(p, 'message')))
      const perRep = []
      for (let rep = 0; rep < N.reps; rep++) {
        const key = `cold-x-${rep}`
        const counter = `${PREFIX}-loader-calls:x:${backend}:${rep}`
        const calls = Math.ceil(N.stampedeCalls / N.stampedeProcs)
        const done = procs.map((p) => once(p, 'message'))
        const t0 = performance.now()
        for (const p of procs) p.send({ key, counter, calls })
        const replies = (await Promise.all(done)).map(([m]) => m)
        const wallMs = performance.now() - t0
        for (const r of replies) if (r.error) throw new Error(`stampede child: ${r.error}`)
        perRep.push({ loaderCalls: Number(await redis.get(counter)), wallMs })
      }
      out[`tiered-cache (${backend === 'redis' ? 'Redis' : 'Postgres'}), ${N.stampedeProcs} processes`] = summarize(perRep)
    } finally {
      for (const p of procs) if (p.exitCode === null) p.kill()
    }
  }
  return out
}

export async function run() {
  const pool = pgPool(1)
  await ensureTable(pool)
  await pool.end()
  const redis = redisClient()
  try {
    return { inProcess: await inProcess(redis), acrossProcesses: await acrossProcesses(redis) }
  } finally {
    redis.disconnect()
  }
}
