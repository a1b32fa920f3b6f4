import { LRUCache } from 'lru-cache'
import { PREFIX, tenantValue, check, openTiered, sleep } from '../lib/common.mjs'

const [name, countArg] = process.argv.slice(2)
const n = Number(countArg)
const valueText = JSON.stringify(tenantValue(7))

function settle() {
  for (let i = 0; i < 4; i++) global.gc()
  return process.memoryUsage()
}

// Both sides get their store ready before the baseline, so only the entries are counted.
let store
if (name === 'tiered-cache') {
  const cache = await openTiered({ namespace: `${PREFIX}-mem`, ttl: 3600, l1: { maxEntries: n * 2, maxBytes: 2 ** 31 } })
  await cache.set('warm', 1)
  await cache.delete('warm')
  store = {
    // Values come from JSON text, as rows do from a database; each entry is its own object.
    set: (k) => cache.set(k, JSON.parse(valueText)),
    get: (k) => cache.get(k),
    count: async () => (await cache.stats()).l1Entries,
  }
} else {
  const lru = new LRUCache({ max: n * 2 })
  store = { set: (k) => lru.set(k, JSON.parse(valueText)), get: (k) => lru.get(k), count: () => lru.size }
}

const before = settle()
for (let i = 0; i < n; i++) await store.set(`tenant-${i}`)
// moka applies its bookkeeping in the background; let it settle before counting.
for (let i = 0; i < 50 && (await store.count()) < n; i++) await sleep(20)
const after = settle()
const entries = await store.count()
if (entries !== n) throw new Error(`${name}: ${entries} of ${n} entries in the L1`)
check(await store.get(`tenant-${n - 1}`), JSON.parse(valueText), `${name} read`)

const per = (field) => (after[field] - before[field]) / n
process.stdout.write(JSON.stringify({
  rssBytesPerEntry: per('rss'),
  heapBytesPerEntry: per('heapUsed'),
  externalBytesPerEntry: per('external'),
  valueJsonBytes: Buffer.byteLength(valueText),
}))
