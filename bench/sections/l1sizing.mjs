// 13. L1 sizing: a working set of 45,000 menu item rows of about 170 B with their keys (7.3 MiB: 900 tenants x 50
// items), read uniformly at random through a Redis L2, 64 reads in flight. With the old default bound of 10,000
// entries the L1 thrashes while most of its 64 MiB stays unused and most reads pay an L2 round trip; with the
// default now (only `l1.maxBytes` binds) the whole set fits. Then a working set 1.2x what the L1 holds: TinyLFU's
// admission against the 1/1.2 = 83 % that a perfect policy would keep.
import { createRequire } from 'node:module'
import path from 'node:path'
import { N, PREFIX, REDIS_URL, REPO_DIR, forEachLimit, inflightThroughput, alternate, summarize, openTiered } from '../lib/common.mjs'

const ENTRIES = N.l1SizingEntries
const OLD_DEFAULT_MAX_ENTRIES = Math.round(ENTRIES * (10_000 / 45_000))

/** A menu item row: about 160 B of JSON. */
function itemValue(i) {
  return { id: i, tenant: `tenant-${i % 900}`, name: `Menu item ${i}`, priceCents: 1000 + (i % 500), currency: 'GBP', available: i % 7 !== 0, category: ['starters', 'mains', 'desserts', 'drinks'][i % 4], allergens: ['gluten', 'nuts'] }
}
const keyOf = (i) => `item-${i}`

export async function run() {
  // What each entry counts against l1.maxBytes beyond its bytes, from the core's rules.
  const { rules } = createRequire(import.meta.url)(path.join(process.env.TIERED_CACHE_PATH ?? REPO_DIR, 'binding.js'))
  const OVERHEAD_BYTES = rules().l1EntryOverheadBytes
  const keys = Array.from({ length: ENTRIES }, (_, i) => keyOf(i))
  const bytesOf = (i) => keyOf(i).length + JSON.stringify(itemValue(i)).length
  const setBytes = keys.reduce((sum, _, i) => sum + bytesOf(i), 0)
  // An L1 that holds 1/1.2 of the set by bytes (values, keys and bookkeeping).
  const tightBytes = Math.round((setBytes + ENTRIES * OVERHEAD_BYTES) / 1.2)
  const contenders = {
    [`old default: l1.maxEntries ${OLD_DEFAULT_MAX_ENTRIES}`]: { maxEntries: OLD_DEFAULT_MAX_ENTRIES },
    'default now: l1.maxBytes 64 MiB only': {},
    'working set 1.2x the L1 (TinyLFU)': { maxBytes: tightBytes },
  }
  const caches = {}
  for (const [name, l1] of Object.entries(contenders)) {
    const namespace = `${PREFIX}-l1sizing-${Object.keys(caches).length}`
    const cache = await openTiered({ url: REDIS_URL, namespace, ttl: 3600, l1 })
    await forEachLimit(keys, 128, (k, i) => cache.set(k, itemValue(i)))
    caches[name] = cache
  }
  // Uniform random reads: a warm-up of twice the set, then each repetition reads a sequence of its own (the same one
  // for every contender), so no measured read repeats the order the L1 was warmed in.
  const uniform = (seed, count) => {
    let s = seed >>> 0
    return Array.from({ length: count }, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0
      return keys[(s >>> 8) % ENTRIES]
    })
  }
  const read = (cache) => async (k) => {
    if ((await cache.get(k)) === undefined) throw new Error(`${k}: a miss`)
  }
  const warmup = uniform(0x2545f491, ENTRIES * 2)
  for (const cache of Object.values(caches)) await inflightThroughput(read(cache), warmup, warmup.length, N.inflight)
  const perRep = await alternate(Object.keys(caches), N.reps, async (name, rep) => {
    const cache = caches[name]
    const order = uniform(0x9e3779b9 + rep, N.inflightOps)
    const before = await cache.stats()
    const { opsPerSec } = await inflightThroughput(read(cache), order, order.length, N.inflight)
    const after = await cache.stats()
    const l1 = after.l1Hits - before.l1Hits
    const l2 = after.l2Hits - before.l2Hits
    return { opsPerSec, l1HitPercent: (100 * l1) / Math.max(1, l1 + l2), l1Entries: after.l1Entries, l1MiB: after.l1Bytes / 2 ** 20 }
  })
  for (const cache of Object.values(caches)) {
    await cache.clear()
    await cache.close()
  }
  return { entries: ENTRIES, setMiB: setBytes / 2 ** 20, ...Object.fromEntries(Object.keys(caches).map((c) => [c, summarize(perRep[c])])) }
}
