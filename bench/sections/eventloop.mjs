// 7. Event-loop delay while a write-heavy mixed load runs: what the cache costs the other requests of the server.
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisDriver, redisBusDriver } from 'bentocache/drivers/redis'
import { N, PREFIX, REDIS_URL, tenantValue, keyOf, shuffled, alternate, summarize, check, openTiered } from '../lib/common.mjs'

const WRITE_SHARE = 0.7

export async function run() {
  const keys = shuffled(Array.from({ length: N.keys }, (_, i) => keyOf(i)))
  const values = keys.map((k) => tenantValue(Number(k.slice(7))))
  const l1Size = N.keys * 2
  const tiered = await openTiered({ url: REDIS_URL, namespace: `${PREFIX}-loop`, ttl: 3600, l1: { maxEntries: l1Size, maxBytes: 1 << 30 } })
  const bento = new BentoCache({
    default: 'tiered',
    stores: {
      tiered: bentostore()
        .useL1Layer(memoryDriver({ maxItems: l1Size }))
        .useL2Layer(redisDriver({ connection: { host: '127.0.0.1', port: 6379 }, prefix: `${PREFIX}-bento-loop` }))
        .useBus(redisBusDriver({ connection: { host: '127.0.0.1', port: 6379 } })),
    },
  })
  const contenders = {
    'tiered-cache (L1 + Redis)': { set: (k, v) => tiered.set(k, v), get: (k) => tiered.get(k) },
    'bentocache (L1 + Redis + bus)': { set: (k, v) => bento.set({ key: k, value: v, ttl: '1h' }), get: (k) => bento.get({ key: k }) },
  }
  for (const [name, c] of Object.entries(contenders)) {
    await c.set(keys[0], values[0])
    check(await c.get(keys[0]), values[0], `${name} read`)
  }

  const names = Object.keys(contenders)
  const perRep = await alternate(names, N.reps, async (name) => {
    const { set, get } = contenders[name]
    let ops = 0
    let i = 0
    const deadline = performance.now() + N.eventLoopMs
    const lane = async () => {
      while (performance.now() < deadline) {
        const j = i++ % keys.length
        // A fixed interleaving (7 writes in 10) rather than Math.random, so both contenders see the same sequence.
        if ((j * 7) % 10 < WRITE_SHARE * 10) await set(keys[j], values[j])
        else await get(keys[j])
        ops++
      }
    }
    const h = monitorEventLoopDelay({ resolution: 1 })
    h.enable()
    const t0 = performance.now()
    await Promise.all(Array.from({ length: N.inflight }, lane))
    const s = (performance.now() - t0) / 1000
    h.disable()
    return { p99DelayMs: h.percentile(99) / 1e6, maxDelayMs: h.max / 1e6, opsPerSec: ops / s }
  })
  await Promise.all([tiered.close(), bento.disconnectAll()])
  return Object.fromEntries(names.map((c) => [c, summarize(perRep[c])]))
}
