// When the loader fails or is slow and a stale value is at hand: grace, stale-if-error, the soft timeout
// (stale-while-revalidate at 0), and early refresh; on every backend, the L2 ones through a second store that has no
// L1, so the stale value must come from the L2 itself.
import test, { type ExecutionContext } from 'ava'

import {
  BACKENDS,
  PROXIABLE,
  Cache,
  REDIS_URL,
  eventually,
  openCache,
  proxied,
  proxyFor,
  isolatedOptions,
  scratchTable,
  sleep,
  uniqueNamespace,
  withRedis,
  type Backend,
} from './helpers.js'
import type { Cache as CacheType, CacheError, CacheOptions, LoaderContext } from '../index.js'


/** Where a second instance finds stale values: the L2 (an L1-less store on it), or the L1 when memory only. */
function readerOf(t: ExecutionContext, backend: Backend, options: CacheOptions, writer: CacheType): CacheType {
  return backend.url === undefined ? writer : openCache(t, { ...options, l1: false, onError: options.onError })
}

const failing = (message: string) => (): Promise<string> => Promise.reject(new Error(message))

for (const backend of BACKENDS) {
  const name = backend.name

  test(`${name}: past its TTL an entry with a grace is a miss, but a failing loader's caller gets it (stale-if-error)`, async (t) => {
    const options = await isolatedOptions(t, backend, 'grace')
    const errors: CacheError[] = []
    const onError = (e: CacheError) => errors.push(e)
    const writer = openCache(t, { ...options, onError })
    const reader = readerOf(t, backend, { ...options, onError }, writer)
    await writer.set('tenant', { name: 'Acme' }, { ttl: 1, grace: 60 })
    await sleep(1_100)
    t.is(await reader.get('tenant'), undefined, 'a stale entry is never a hit')
    t.false(await reader.has('tenant'))
    let context!: LoaderContext
    const value = await reader.getOrSet('tenant', (ctx: LoaderContext) => {
      context = ctx
      return Promise.reject(new Error('the database is down'))
    })
    t.deepEqual(value, { name: 'Acme' }, 'the stale value instead of the error')
    t.deepEqual(context.stale, { name: 'Acme' }, 'the loader is shown the stale value')
    const reported = errors.find((e) => e.code === 'ERR_CACHE_LOADER_FAILED')
    t.is((reported?.cause as Error | undefined)?.message, 'the database is down', 'the error goes to onError')
    t.is((await reader.stats()).staleHits, 1)
    t.deepEqual(await reader.getOrSet('tenant', async () => ({ name: 'Acme 2' })), { name: 'Acme 2' })
    t.deepEqual(await reader.get('tenant'), { name: 'Acme 2' }, 'a working loader replaces it')
  })

  test(`${name}: a deleted entry leaves no stale value, and without a grace nothing is kept past the TTL`, async (t) => {
    const options = await isolatedOptions(t, backend, 'grace')
    const cache = openCache(t, options)
    const reader = readerOf(t, backend, options, cache)
    await cache.set('deleted', 1, { ttl: 1, grace: 60 })
    await cache.set('graceless', 1, { ttl: 1 })
    await sleep(1_100)
    await cache.delete('deleted')
    for (const key of ['deleted', 'graceless']) {
      let stale: unknown = 'not called'
      const error = await t.throwsAsync(reader.getOrSet(key, (ctx: LoaderContext) => ((stale = ctx.stale), failing('down')())))
      t.is(error?.message, 'down', key)
      t.is(stale, undefined, `${key}: no stale value for the loader`)
    }
  })

  test(`${name}: past the soft timeout the stale value is served and the load goes on to store its value`, async (t) => {
    const options = await isolatedOptions(t, backend, 'grace')
    const writer = openCache(t, options)
    const reader = readerOf(t, backend, options, writer)
    await writer.set('k', 'old', { ttl: 1, grace: 60 })
    await sleep(1_100)
    let release!: (value: string) => void
    const slowLoader = () => new Promise<string>((resolve) => (release = resolve))
    const started = performance.now()
    t.is(await reader.getOrSet('k', slowLoader, { timeout: 0.1, grace: 60 }), 'old')
    const waited = performance.now() - started
    t.true(waited >= 95, `served at the soft timeout: ${waited.toFixed(0)} ms`)
    t.is(await reader.getOrSet('k', async () => 'second loader', { timeout: 0 }), 'old', 'the load in progress is not doubled')
    release('new')
    t.true(await eventually(async () => (await reader.get('k')) === 'new'), 'the slow load stored its value')
    const stats = await reader.stats()
    t.is(stats.staleHits, 2)
    t.is(stats.loaderCalls, 1, 'one load for both callers')
  })

  test(`${name}: timeout 0 is stale-while-revalidate: the stale value at once for every caller, one reload behind`, async (t) => {
    const options = await isolatedOptions(t, backend, 'grace')
    const writer = openCache(t, options)
    const reader = readerOf(t, backend, options, writer)
    await writer.set('k', 1, { ttl: 1, grace: 60 })
    await sleep(1_100)
    let loads = 0
    const reload = async () => {
      loads++
      await sleep(200)
      return 2
    }
    const answers = await Promise.all(Array.from({ length: 50 }, () => reader.getOrSet('k', reload, { timeout: 0 })))
    t.deepEqual([...new Set(answers)], [1], 'every caller gets the stale value at once')
    t.true(await eventually(async () => (await reader.get('k')) === 2), 'the reload stored its value')
    t.is(loads, 1, 'one reload')
  })

  test(`${name}: with a stale value at hand, hardTimeout serves it instead of rejecting`, async (t) => {
    const options = await isolatedOptions(t, backend, 'grace')
    const writer = openCache(t, options)
    const reader = readerOf(t, backend, options, writer)
    await writer.set('k', 'old', { ttl: 1, grace: 60 })
    await sleep(1_100)
    let context!: LoaderContext
    const never = (ctx: LoaderContext) => ((context = ctx), new Promise<string>(() => {}))
    // A stale value must be at hand when the hard timeout passes: the L2 read that finds it comes first, and on a
    // loaded machine it may take a while, so the bound here is generous.
    t.is(await reader.getOrSet('k', never, { hardTimeout: 1.5 }), 'old')
    t.false(context.signal.aborted, 'the load goes on: its value will be stored')
  })

  test(`${name}: earlyRefresh reloads a hot entry once, in the background, before it expires`, async (t) => {
    const options = await isolatedOptions(t, backend, 'grace')
    // A TTL with room to spare: on a loaded machine the sleep below may overshoot, and the entry must still be fresh.
    const cache = openCache(t, { ...options, ttl: 4, earlyRefresh: 0.5 })
    let loads = 0
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const loader = async () => {
      loads++
      if (loads > 1) await gate
      return `v${loads}`
    }
    t.is(await cache.getOrSet('hot', loader), 'v1')
    t.is(await cache.getOrSet('hot', loader), 'v1', 'young: no refresh')
    t.is(loads, 1)
    await sleep(2_200)
    const hits = await Promise.all(Array.from({ length: 50 }, () => cache.getOrSet('hot', loader)))
    t.deepEqual([...new Set(hits)], ['v1'], 'callers get the entry at once while it is refreshed')
    release()
    t.true(await eventually(async () => (await cache.get('hot')) === 'v2'), 'the refresh stored its value')
    t.is(loads, 2, 'one refresh for fifty hits')
    t.is((await cache.stats()).earlyRefreshes, 1)
  })

  test(`${name}: an early refresh that fails is reported and leaves the entry in place`, async (t) => {
    const options = await isolatedOptions(t, backend, 'grace')
    const errors: CacheError[] = []
    const cache = openCache(t, { ...options, ttl: 4, onError: (e) => errors.push(e) })
    await cache.set('k', 'v1')
    await sleep(2_200)
    t.is(await cache.getOrSet('k', failing('refresh failed'), { earlyRefresh: 0.5 }), 'v1')
    t.true(await eventually(() => errors.some((e) => e.code === 'ERR_CACHE_LOADER_FAILED')))
    t.is(await cache.get('k'), 'v1')
  })
}

for (const backend of PROXIABLE) {
  const l2 = backend.name

  test(`${l2}: with the L2 refused, a failing loader falls back on the L1's stale copy, kept across the bus's loss`, async (t) => {
    const proxy = await proxyFor(t, l2)
    const options = await isolatedOptions(t, backend, 'grace')
    const cache = openCache(t, { ...options, url: proxied(proxy, l2), l2Timeout: 0.5 })
    t.true(await eventually(async () => (await cache.stats()).busUp), 'the bus vouches for the L1')
    await cache.set('k', 'old', { ttl: 1, grace: 60 })
    await cache.set('fresh', 'kept', { ttl: 60, grace: 60 })
    proxy.set('refuse')
    await sleep(1_100)
    t.is(await cache.getOrSet('k', failing('the database is down too')), 'old')
    t.is(await cache.get('k'), undefined, 'still never a hit')
    // Once the bus is found lost, the L1 may have missed changes: its entries are no hits any more, but those with
    // a grace stay as the fallback of a failing load.
    t.true(await eventually(async () => !(await cache.stats()).busUp, 10_000), 'the bus loss is found')
    t.is(await cache.get('fresh'), undefined, 'no hit from an L1 the bus no longer vouches for')
    t.is(await cache.getOrSet('fresh', failing('down')), 'kept')
    t.is((await cache.stats()).staleHits, 2)
  })
}

test('postgres: the table keeps its Prisma shape until a write with a grace adds "staleUntil", which no Prisma read sees', async (t) => {
  const { client, table } = await scratchTable(t, 'grace_shape')
  const columns = async () =>
    (await client.query(`SELECT column_name FROM information_schema.columns WHERE table_name = $1`, [table])).rows.map(
      (r: { column_name: string }) => r.column_name,
    )
  const cache = openCache(t, { url: BACKENDS[1].url, namespace: uniqueNamespace('shape'), postgres: { table } })
  await cache.set('plain', 1, { ttl: 60 })
  t.false((await columns()).includes('staleUntil'), 'no grace, no new column')
  await cache.set('graceful', 1, { ttl: 1, grace: 60 })
  t.true((await columns()).includes('staleUntil'))
  await sleep(1_100)
  const live = await client.query(
    `SELECT count(*)::int AS n FROM "${table}" WHERE "key" LIKE '%graceful' AND "expiresAt" > now() AT TIME ZONE 'UTC'`,
  )
  t.is(live.rows[0].n, 0, '"expiresAt" is the end of freshness: a stale row is not live to a Prisma reader')
  const kept = await client.query(
    `SELECT extract(epoch FROM "staleUntil" - "expiresAt")::int AS grace FROM "${table}" WHERE "key" LIKE '%graceful'`,
  )
  t.is(kept.rows[0].grace, 60)
})

test('redis: an entry with a grace lives in Redis for its TTL plus its grace', async (t) => {
  const namespace = uniqueNamespace('grace-pttl')
  const cache = openCache(t, { url: REDIS_URL, namespace })
  await cache.set('k', 1, { ttl: 10, grace: 50 })
  const pttl = await withRedis(REDIS_URL, (r) => r.pttl(`${namespace}:k`))
  t.true(pttl > 59_000 && pttl <= 60_000, `PTTL ${pttl}`)
})

test('grace, timeout and earlyRefresh: invalid values throw at once, per call and in the constructor', (t) => {
  const cache = openCache(t, { namespace: uniqueNamespace('grace-invalid') })
  const loader = async () => 1
  for (const options of [{ grace: -1 }, { grace: 1.5 }, { timeout: -1 }, { earlyRefresh: 0 }, { earlyRefresh: 1 }]) {
    const thrown = t.throws<CacheError>(() => cache.getOrSet('k', loader, options))
    t.is(thrown?.code, 'ERR_CACHE_INVALID_TTL', JSON.stringify(options))
  }
  t.is(t.throws<CacheError>(() => cache.set('k', 1, { grace: -1 }))?.code, 'ERR_CACHE_INVALID_TTL')
  const onSet = t.throws<CacheError>(() => cache.set('k', 1, { timeout: 1 } as unknown as { ttl: number }))
  t.is(onSet?.code, 'ERR_CACHE_INVALID_TTL', 'set takes no timeout')
  for (const options of [{ grace: -1 }, { timeout: 3601 }, { earlyRefresh: 1.5 }]) {
    const thrown = t.throws<CacheError>(() => new Cache(options))
    t.is(thrown?.code, 'ERR_CACHE_INVALID_OPTION', JSON.stringify(options))
    t.regex(thrown?.message ?? '', new RegExp(Object.keys(options)[0]))
  }
})
