// 8. Worker threads: L1 hit throughput when 1 and 2 worker_threads read one native L1 filled by the main thread.
// lru-cache is the reference: each worker must hold and fill its own copy, as a JS Map cannot be shared.
import { Worker } from 'node:worker_threads'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { N, PREFIX, tenantValue, keyOf, alternate, summarize, openTiered, forEachLimit } from '../lib/common.mjs'

const workerFile = fileURLToPath(new URL('./workers-thread.mjs', import.meta.url))
export const L1_OPTIONS = { namespace: `${PREFIX}-wt`, ttl: 3600, l1: { maxEntries: 20_000, maxBytes: 1 << 30 } }

async function measure(kind, threads) {
  const workers = Array.from({ length: threads }, () => new Worker(workerFile, { workerData: { kind, keys: N.keys } }))
  try {
    await Promise.all(workers.map((w) => once(w, 'message')))
    const done = workers.map((w) => once(w, 'message'))
    for (const w of workers) w.postMessage({ ms: N.workerMs })
    const replies = (await Promise.all(done)).map(([m]) => m)
    for (const r of replies) if (r.error) throw new Error(`worker: ${r.error}`)
    return { opsPerSec: replies.reduce((a, r) => a + r.opsPerSec, 0) }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
}

export async function run() {
  // The main thread fills the shared L1 once; the workers only read it.
  const cache = await openTiered(L1_OPTIONS)
  await forEachLimit(Array.from({ length: N.keys }, (_, i) => i), 64, (i) => cache.set(keyOf(i), tenantValue(i)))
  const names = ['tiered-cache, 1 worker', 'tiered-cache, 2 workers', 'lru-cache (objects), 1 worker', 'lru-cache (objects), 2 workers']
  const perRep = await alternate(names, N.reps, (name) => measure(name.startsWith('tiered') ? 'tiered' : 'lru', name.includes('2 workers') ? 2 : 1))
  await cache.close()
  return Object.fromEntries(names.map((c) => [c, summarize(perRep[c])]))
}
