import { parentPort, workerData } from 'node:worker_threads'
import { LRUCache } from 'lru-cache'
import { tenantValue, keyOf, shuffled, check, openTiered } from '../lib/common.mjs'
import { L1_OPTIONS } from './workers.mjs'

const keys = shuffled(Array.from({ length: workerData.keys }, (_, i) => keyOf(i)))
let get
let sync = false
if (workerData.kind === 'tiered') {
  const cache = await openTiered(L1_OPTIONS)
  get = (k) => cache.get(k)
} else {
  sync = true
  const lru = new LRUCache({ max: 20_000 })
  for (let i = 0; i < workerData.keys; i++) lru.set(keyOf(i), tenantValue(i))
  get = (k) => lru.get(k)
}
try {
  // Nothing was written in this thread: a hit proves the L1 is the one the main thread filled.
  check(await get(keys[0]), tenantValue(Number(keys[0].slice(7))), `${workerData.kind} read in a worker`)
  parentPort.postMessage({ ready: true })
} catch (err) {
  parentPort.postMessage({ error: String(err?.stack ?? err) })
}
parentPort.once('message', async ({ ms }) => {
  try {
    let ops = 0
    const t0 = performance.now()
    const deadline = t0 + ms
    // Checking the clock every 256 gets keeps its cost out of the loop.
    while (performance.now() < deadline) {
      for (let j = 0; j < 256; j++) {
        // lru-cache is called as users call it, synchronously.
        const v = sync ? get(keys[ops++ % keys.length]) : await get(keys[ops++ % keys.length])
        if (v === undefined) throw new Error('L1 miss in a worker')
      }
    }
    parentPort.postMessage({ opsPerSec: ops / ((performance.now() - t0) / 1000) })
  } catch (err) {
    parentPort.postMessage({ error: String(err?.stack ?? err) })
  }
})
