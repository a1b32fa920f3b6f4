// 11. What the diagnostics channel costs an L1 hit: `await cache.get(k)` with nobody subscribed to
// tiered-cache:operation (every call only checks `hasSubscribers`), with one no-op subscriber (what an APM, the
// Prometheus or the OpenTelemetry module costs before doing any work of its own), and the floor: the binding's
// synchronous L1 read that `get` wraps, parsed and resolved the same way, without the public method around it.
// `TIERED_CACHE_PATH` pointed at a build without the channel gives the "before" figure of the first row.
import dc from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import path from 'node:path'
import { measure, do_not_optimize } from 'mitata'
import { N, PREFIX, REPO_DIR, VALUES, keyOf, shuffled, alternate, summarize, check, openTiered } from '../lib/common.mjs'

const CONTENDERS = ['get, no subscriber', 'get, one no-op subscriber', 'binding l1Get + JSON.parse (floor)']

export async function run() {
  const keys = shuffled(Array.from({ length: N.keys }, (_, i) => keyOf(i)))
  const max = keys.length * 2
  const require = createRequire(import.meta.url)
  const { NativeCache } = require(path.join(process.env.TIERED_CACHE_PATH ?? REPO_DIR, 'binding.js'))
  const operation = dc.tracingChannel('tiered-cache:operation')
  const noop = { asyncEnd() {} }
  const out = {}
  for (const [size, value] of Object.entries(VALUES)) {
    const make = (k) => value(Number(k.slice(7)))
    const l1 = { maxEntries: max, maxBytes: 1 << 30 }
    const cache = await openTiered({ namespace: `${PREFIX}-dc-${size}`, ttl: 3600, l1 })
    for (const k of keys) await cache.set(k, make(k))
    // Its own store (another namespace), filled the same way.
    const native = new NativeCache({ namespace: `${PREFIX}-dc-native-${size}`, ttl: 3600, l1 })
    for (const k of keys) await native.set(k, JSON.stringify(make(k)))
    const floor = (k) => Promise.resolve(JSON.parse(native.l1Get(k)))
    check(await floor(keys[0]), make(keys[0]), 'binding L1 read')
    check(await cache.get(keys[0]), make(keys[0]), 'tiered-cache L1 read')
    const perRep = await alternate(CONTENDERS, N.reps, async (name) => {
      const subscribed = name.includes('one no-op')
      if (subscribed) operation.subscribe(noop)
      const get = name.startsWith('binding') ? floor : (k) => cache.get(k)
      let i = 0
      try {
        const stats = await measure(async () => do_not_optimize(await get(keys[i++ % keys.length])), {
          min_cpu_time: N.l1CpuTimeNs,
        })
        return { nsPerOp: stats.avg, opsPerSec: 1e9 / stats.avg, p50Ns: stats.p50 }
      } finally {
        if (subscribed) operation.unsubscribe(noop)
      }
    })
    await cache.close()
    native.close()
    out[size] = Object.fromEntries(CONTENDERS.map((c) => [c, summarize(perRep[c])]))
  }
  return out
}
