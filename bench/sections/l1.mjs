// 1. L1 hit: `await cache.get(k)` answered from process memory, against the in-process caches users pick instead.
import { measure, do_not_optimize } from 'mitata'
import { LRUCache } from 'lru-cache'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { createCache } from 'cache-manager'
import { N, PREFIX, VALUES, keyOf, shuffled, alternate, summarize, check, openTiered } from '../lib/common.mjs'

const CONTENDERS = ['tiered-cache', 'tiered-cache (immutable)', 'lru-cache (objects)', 'lru-cache (JSON text)', 'bentocache (serialize: true)', 'bentocache (serialize: false)', 'cache-manager 7']

async function setup(name, keys, make) {
  // Every contender is sized to hold every key, so each get is a hit (bentocache's default maxItems of 1000 would
  // turn most of them into misses).
  const max = keys.length * 2
  switch (name) {
    case 'tiered-cache':
    case 'tiered-cache (immutable)': {
      // immutable: frozen values shared until their entry changes, the way to skip JSON.parse on a hit without
      // handing two callers one mutable object.
      const immutable = name.includes('immutable')
      const namespace = `${PREFIX}-l1${immutable ? '-frozen' : ''}`
      const cache = await openTiered({ namespace, ttl: 3600, immutable, l1: { maxEntries: max, maxBytes: 1 << 30 } })
      for (const k of keys) await cache.set(k, make(k))
      return { get: (k) => cache.get(k), close: () => cache.close() }
    }
    case 'lru-cache (objects)': {
      const lru = new LRUCache({ max })
      for (const k of keys) lru.set(k, make(k))
      return { get: (k) => lru.get(k), sync: true }
    }
    case 'lru-cache (JSON text)': {
      const lru = new LRUCache({ max })
      for (const k of keys) lru.set(k, JSON.stringify(make(k)))
      return { get: (k) => JSON.parse(lru.get(k)), sync: true }
    }
    case 'bentocache (serialize: true)':
    case 'bentocache (serialize: false)': {
      const serialize = name.includes('true')
      const bento = new BentoCache({
        default: 'memory',
        stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: max, serialize })) },
      })
      for (const k of keys) await bento.set({ key: k, value: make(k), ttl: '1h' })
      return { get: (k) => bento.get({ key: k }), close: () => bento.disconnectAll() }
    }
    case 'cache-manager 7': {
      const cm = createCache({ ttl: 3_600_000 })
      for (const k of keys) await cm.set(k, make(k))
      return { get: (k) => cm.get(k), close: () => cm.disconnect() }
    }
  }
  throw new Error(`unknown contender ${name}`)
}

export async function run() {
  const keys = shuffled(Array.from({ length: N.keys }, (_, i) => keyOf(i)))
  const out = {}
  for (const [size, value] of Object.entries(VALUES)) {
    const make = (k) => value(Number(k.slice(7)))
    const stores = {}
    for (const name of CONTENDERS) {
      stores[name] = await setup(name, keys, make)
      check(await stores[name].get(keys[0]), make(keys[0]), `${name} L1 read`)
    }
    const perRep = await alternate(CONTENDERS, N.reps, async (name) => {
      const { get, sync } = stores[name]
      let i = 0
      // lru-cache is called as users call it, synchronously; the async caches are awaited, as users must.
      const body = sync
        ? () => do_not_optimize(get(keys[i++ % keys.length]))
        : async () => do_not_optimize(await get(keys[i++ % keys.length]))
      const stats = await measure(body, { min_cpu_time: N.l1CpuTimeNs })
      return { nsPerOp: stats.avg, opsPerSec: 1e9 / stats.avg, p50Ns: stats.p50 }
    })
    for (const name of CONTENDERS) {
      const last = await stores[name].get(keys[keys.length - 1])
      check(last, make(keys[keys.length - 1]), `${name} L1 read after the run`)
      await stores[name].close?.()
    }
    out[size] = Object.fromEntries(CONTENDERS.map((c) => [c, summarize(perRep[c])]))
  }
  return out
}
