// Part of bench/next: what one `get` of a cached page costs in each incremental handler, outside Next.js, to say how
// much of a request the handler is. Run by run.mjs with NODE_PATH at the app's node_modules (the peer requires next).
// Prints { tieredCacheUs, fortedigitalUs } as JSON: the median of REPS batches of GETS sequential gets, per get.
const { performance } = require('node:perf_hooks')
const path = require('node:path')

const REPO = path.resolve(__dirname, '../..')
const { Cache } = require(path.join(REPO, 'index.js'))
const { createIncrementalCacheHandler } = require(path.join(REPO, 'next.js'))
const Forte = require('./fortedigital-handler.cjs')

const GETS = Number(process.env.GETS ?? 2000)
const REPS = Number(process.env.REPS ?? 5)
const PREFIX = process.env.CACHE_NAMESPACE_PREFIX ?? 'tcbench-next-get-'

// A page as Next.js stores one: the example app's restaurant page is about this size.
const page = {
  kind: 'APP_PAGE',
  html: '<!DOCTYPE html><html><body>' + 'x'.repeat(6000) + '</body></html>',
  rscData: Buffer.from('0:' + 'y'.repeat(4000)),
  headers: { 'x-next-cache-tags': '_N_T_/layout,_N_T_/[tenant]/layout,_N_T_/[tenant]/page,_N_T_/golden-oak' },
  postponed: undefined,
  status: 200,
  segmentData: undefined,
}
const ctx = { kind: 'APP_PAGE', isFallback: false }
const setCtx = { cacheControl: { revalidate: 300, expire: 3600 } }

async function timePerGet(handler) {
  for (let i = 0; i < 100; i++) await handler.get('/bench-page', ctx) // warm
  const batches = []
  for (let rep = 0; rep < REPS; rep++) {
    const started = performance.now()
    for (let i = 0; i < GETS; i++) if ((await handler.get('/bench-page', ctx)) === null) throw new Error('a miss')
    batches.push(((performance.now() - started) * 1000) / GETS)
  }
  return batches.sort((a, b) => a - b)[Math.floor(REPS / 2)]
}

async function main() {
  const cache = new Cache({ url: process.env.REDIS_URL, namespace: `${PREFIX}next` })
  const Tiered = createIncrementalCacheHandler({ cache })
  const tiered = new Tiered({})
  await tiered.set('/bench-page', page, setCtx)
  const forte = new Forte({})
  await forte.set('/bench-page', page, setCtx)
  const result = { tieredCacheUs: await timePerGet(tiered), fortedigitalUs: await timePerGet(forte) }
  await cache.clear()
  await cache.close()
  process.stdout.write(JSON.stringify(result))
  process.exit(0)
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`)
  process.exit(1)
})
