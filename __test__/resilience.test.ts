// When the loader is slow or the cache closes under it: hardTimeout, the loader's signal, and jitter of stored TTLs.
import test from 'ava'

import { BACKENDS, Cache, connectionOf, POSTGRES_URL, REDIS_URL, openCache, sleep, uniqueNamespace, withPg, withRedis } from './helpers.js'
import type { CacheError, LoaderContext } from '../index.js'

for (const backend of BACKENDS) {
  const name = backend.name

  test(`${name}: past its hardTimeout a getOrSet rejects with ERR_CACHE_LOADER_TIMEOUT, and the load goes on and is stored`, async (t) => {
    const namespace = uniqueNamespace('hard')
    const cache = openCache(t, { ...connectionOf(backend), namespace })
    let release!: (value: string) => void
    let context!: LoaderContext
    const slow = (ctx: LoaderContext) => {
      context = ctx
      return new Promise<string>((resolve) => (release = resolve))
    }
    const started = performance.now()
    const caller = cache.getOrSet('k', slow, { hardTimeout: 0.2 })
    await sleep(50)
    const waiter = cache.getOrSet('k', async () => 'never runs')
    const error = await t.throwsAsync<CacheError>(caller)
    const waited = performance.now() - started
    t.is(error?.code, 'ERR_CACHE_LOADER_TIMEOUT')
    t.true(waited >= 190 && waited < 3_000, `rejected after ${waited.toFixed(0)} ms with hardTimeout 0.2 s`)
    t.true(context.signal.aborted, 'the loader is told no one waits for it any more')
    t.is((context.signal.reason as CacheError).code, 'ERR_CACHE_LOADER_TIMEOUT')
    release('late value')
    t.is(await waiter, 'late value', 'a caller without a hard timeout still gets the load')
    t.is(await cache.get('k'), 'late value', 'the late value is stored')
    if (backend.url !== undefined) {
      const l2Only = openCache(t, { ...connectionOf(backend), namespace, l1: false })
      t.is(await l2Only.get('k'), 'late value', 'in the L2 too')
    }
  })
}

test('hardTimeout: the constructor sets the default, a call overrides it, and invalid values throw at once', async (t) => {
  const cache = openCache(t, { namespace: uniqueNamespace('hard-default'), hardTimeout: 0.1 })
  const never = () => new Promise<string>(() => {})
  await t.throwsAsync(cache.getOrSet('a', never), { code: 'ERR_CACHE_LOADER_TIMEOUT' })
  t.is(await cache.getOrSet('b', async () => (await sleep(300), 'slow but allowed'), { hardTimeout: 2 }), 'slow but allowed')
  for (const hardTimeout of [0, -1, 3601, Number.NaN, '1' as unknown as number]) {
    const thrown = t.throws<CacheError>(() => cache.getOrSet('c', never, { hardTimeout }))
    t.is(thrown?.code, 'ERR_CACHE_INVALID_TTL', `hardTimeout ${String(hardTimeout)}`)
  }
  const onSet = t.throws<CacheError>(() => cache.set('c', 1, { hardTimeout: 1 } as unknown as { ttl: number }))
  t.is(onSet?.code, 'ERR_CACHE_INVALID_TTL', 'set takes no hardTimeout')
  for (const hardTimeout of [0, 3601, 'x']) {
    const thrown = t.throws<CacheError>(() => new Cache({ hardTimeout: hardTimeout as number }))
    t.is(thrown?.code, 'ERR_CACHE_INVALID_OPTION')
    t.regex(thrown?.message ?? '', /hardTimeout/)
  }
})

test('close() aborts the signal of a loader still running', async (t) => {
  const cache = new Cache({ namespace: uniqueNamespace('close-abort') })
  let context!: LoaderContext
  const loading = cache.getOrSet('k', (ctx) => {
    context = ctx
    return new Promise<string>((resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)))
  })
  // The loader starts once the native side has answered: on a loaded machine, later than any fixed sleep.
  while (context === undefined) await sleep(5)
  await cache.close()
  t.true(context.signal.aborted)
  t.is((context.signal.reason as CacheError).code, 'ERR_CACHE_CLOSED')
  await t.throwsAsync(loading, { code: 'ERR_CACHE_CLOSED' })
})

test('jitter: stored TTLs spread within ±jitter × ttl, in both L2s', async (t) => {
  const keys = Array.from({ length: 100 }, (_, i) => `k${i}`)
  const spread = async (url: string, remainingMs: (namespace: string) => Promise<number[]>) => {
    const namespace = uniqueNamespace('jitter')
    const cache = openCache(t, { url, namespace, ttl: 1000, jitter: 0.5 })
    for (const key of keys) await cache.set(key, 1)
    const remaining = await remainingMs(namespace)
    t.is(remaining.length, keys.length)
    t.true(remaining.every((ms) => ms >= 499_000 && ms <= 1_500_000), 'within ±50%')
    t.true(Math.max(...remaining) - Math.min(...remaining) > 300_000, 'spread, not all at one instant')
  }
  await spread(REDIS_URL, (namespace) =>
    withRedis(REDIS_URL, async (r) => {
      const [seconds, micros] = (await r.time()).map(Number)
      const now = seconds * 1_000_000 + micros
      const expiries = await Promise.all(keys.map((k) => r.hget(`${namespace}:${k}`, 'x')))
      return expiries.map((x) => (Number(x) - now) / 1000)
    }),
  )
  await spread(POSTGRES_URL, (namespace) =>
    withPg(POSTGRES_URL, async (db) => {
      const rows = await db.query(
        `SELECT extract(epoch FROM "expiresAt" - (now() AT TIME ZONE 'UTC')) * 1000 AS ms FROM cache_entries WHERE key LIKE $1`,
        [`${namespace}:%`],
      )
      return rows.rows.map((row: { ms: string }) => Number(row.ms))
    }),
  )
})
