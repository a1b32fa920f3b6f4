// postgres.preparedStatements: false, measured against the prepared default (README "Scaling out"): L2 get and set
// latency (sequential p50) and L2 reads with 64 in flight, directly on Postgres and through a throw-away PgBouncer in
// transaction pooling. The L1 is off, so every call is an L2 round trip.
//
//   node bench/scale/pgbouncer.mjs [--ops 2000]
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'

import { startPgBouncer } from '../../__test__/servers.mjs'

const { Cache } = createRequire(import.meta.url)('../../index.js')
const POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const { values: args } = parseArgs({ options: { ops: { type: 'string', default: '2000' } } })
const ops = Number(args.ops)

const p50 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function measure(label, options) {
  const cache = new Cache({ ...options, namespace: `pgb-bench-${process.pid}`, l1: false })
  await cache.set('warm', 1)
  const get = []
  const set = []
  for (let i = 0; i < ops; i++) {
    let t = performance.now()
    await cache.set(`k${i % 100}`, { i })
    set.push(performance.now() - t)
    t = performance.now()
    await cache.get(`k${i % 100}`)
    get.push(performance.now() - t)
  }
  const started = performance.now()
  let done = 0
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (done < ops * 2) {
      done++
      await cache.get(`k${done % 100}`)
    }
  }))
  const readsPerSecond = Math.round((ops * 2) / ((performance.now() - started) / 1000))
  const errors = (await cache.stats()).errors
  await cache.clear()
  await cache.close()
  return { label, getP50Ms: +p50(get).toFixed(3), setP50Ms: +p50(set).toFixed(3), readsPerSecond64InFlight: readsPerSecond, errors }
}

const bouncer = await startPgBouncer()
try {
  const rows = [
    await measure('direct, prepared (default)', { url: POSTGRES_URL }),
    await measure('direct, preparedStatements: false', { url: POSTGRES_URL, postgres: { preparedStatements: false } }),
    // What the option is for: the prepared default through a transaction pooler (its errors are absorbed, counted).
    await measure('PgBouncer transaction mode, prepared (default)', { url: bouncer.url, postgres: { sessionUrl: POSTGRES_URL } }),
    await measure('PgBouncer transaction mode, preparedStatements: false', {
      url: bouncer.url,
      postgres: { preparedStatements: false, sessionUrl: POSTGRES_URL },
    }),
  ]
  console.table(rows)
  console.log(JSON.stringify(rows))
} finally {
  bouncer.stop()
}
