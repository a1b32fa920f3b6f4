// Tags: invalidateTags turns every entry of a tag written before it into a miss (or, soft, stale), in both tiers and
// on every instance, at the cost of one record per tag; on every backend.
import test, { type ExecutionContext } from 'ava'

import {
  BACKENDS,
  Cache,
  Peer,
  POSTGRES_URL,
  REDIS_URL,
  eventually,
  openCache,
  isolatedOptions,
  scratchTable,
  secondInstance,
  sleep,
  uniqueNamespace,
  withRedis,
  type Backend,
} from './helpers.js'
import type { Cache as CacheType, CacheError, CacheOptions, LoaderContext } from '../index.js'
import { createRequire } from 'node:module'

const { maxTags } = (createRequire(import.meta.url)('../binding.js') as { rules(): { maxTags: number } }).rules()



for (const backend of BACKENDS) {
  const name = backend.name

  test(`${name}: invalidateTags makes every entry of the tag written before it a miss, in both tiers and on every instance`, async (t) => {
    const options = await isolatedOptions(t, backend, 'tags')
    const a = openCache(t, options)
    const b = secondInstance(t, backend, options, a)
    await a.set('svc:1', 'one', { tags: ['services'] })
    await a.set('svc:2', 'two', { tags: ['services', 'tenant:1'] })
    await a.set('other', 'kept', { tags: ['tenant:2'] })
    await a.set('plain', 'kept')
    t.is(await b.get('svc:1'), 'one', 'b holds it in its L1 now')
    await a.invalidateTags('services')
    for (const cache of [a, b]) {
      t.is(await cache.get('svc:1'), undefined)
      t.is(await cache.get('svc:2'), undefined)
      t.false(await cache.has('svc:1'))
      t.is(await cache.get('other'), 'kept')
      t.is(await cache.get('plain'), 'kept')
    }
    if (backend.url !== undefined) {
      const l2Only = openCache(t, { ...options, l1: false })
      t.is(await l2Only.get('svc:2'), undefined, 'the L2 entry is a miss too')
    }
    await sleep(2)
    await b.set('svc:1', 'one again', { tags: ['services'] })
    t.true(await eventually(async () => (await a.get('svc:1')) === 'one again'), 'written after: live')
    t.is((await a.stats()).tagInvalidations, 1)
  })

  test(`${name}: getOrSet stores its tags, and a loader that started before an invalidation of one stores nothing`, async (t) => {
    const options = await isolatedOptions(t, backend, 'tags')
    const a = openCache(t, options)
    const b = secondInstance(t, backend, options, a)
    for (let round = 0; round < 20; round++) {
      const key = `k${round}`
      let release!: (value: string) => void
      let started!: () => void
      const loaderStarted = new Promise<void>((resolve) => (started = resolve))
      const loading = a.getOrSet(
        key,
        () => {
          started()
          return new Promise<string>((resolve) => (release = resolve))
        },
        { tags: ['tenant:1'] },
      )
      await loaderStarted
      await b.invalidateTags(['tenant:1'])
      release('read before the invalidation')
      t.is(await loading, 'read before the invalidation', 'the caller still gets its value')
      t.is(await a.get(key), undefined, `round ${round}: not stored`)
      t.is(await b.get(key), undefined)
    }
    t.is(await a.getOrSet('fresh', async () => 'loaded', { tags: ['tenant:1'] }), 'loaded')
    t.is(await b.get('fresh'), 'loaded', 'a load after the invalidation is stored')
    await a.invalidateTags(['tenant:1'])
    t.is(await b.get('fresh'), undefined, 'and carries its tags')
  })

  test(`${name}: a set racing an invalidation on another instance never brings the old value back`, async (t) => {
    const options = await isolatedOptions(t, backend, 'tags')
    const a = openCache(t, options)
    const b = secondInstance(t, backend, options, a)
    let setWon = 0
    for (let round = 0; round < 30; round++) {
      const key = `race${round}`
      await a.set(key, 'old', { tags: ['t'] })
      t.is(await b.get(key), 'old', 'b holds the old value in its L1')
      await Promise.all([a.set(key, 'new', { tags: ['t'] }), b.invalidateTags(['t'])])
      for (const cache of [a, b]) {
        const seen = await cache.get(key)
        t.not(seen, 'old', `round ${round}`)
        if (seen === 'new') setWon++
      }
      // Both instances agree once the bus has delivered: the set landed after the invalidation or before it.
      t.true(await eventually(async () => (await a.get(key)) === (await b.get(key))), `round ${round}: the instances agree`)
    }
    t.log(`${name}: the set came after the invalidation in ${setWon / 2} of 30 rounds`)
  })

  test(`${name}: a soft invalidation leaves entries stale within their grace; a hard one leaves nothing`, async (t) => {
    const options = await isolatedOptions(t, backend, 'tags')
    const cache = openCache(t, options)
    const errors: CacheError[] = []
    const reader = openCache(t, { ...options, ...(backend.url ? { l1: false } : {}), onError: (e) => errors.push(e) })
    await cache.set('page', 'v1', { ttl: 60, grace: 60, tags: ['products'] })
    await cache.invalidateTags(['products'], { soft: true })
    t.is(await reader.get('page'), undefined, 'a miss for get')
    let stale: unknown
    const failing = (ctx: LoaderContext): Promise<string> => ((stale = ctx.stale), Promise.reject(new Error('down')))
    t.is(await reader.getOrSet('page', failing), 'v1', 'stale for a failing getOrSet')
    t.is(stale, 'v1')
    t.is(await reader.getOrSet('page', async () => 'v2', { timeout: 0, tags: ['products'] }), 'v1', 'stale-while-revalidate')
    t.true(await eventually(async () => (await reader.get('page')) === 'v2'), 'the revalidation stored its value')
    await cache.set('page', 'v3', { ttl: 60, grace: 60, tags: ['products'] })
    await cache.invalidateTags(['products'])
    await t.throwsAsync(reader.getOrSet('page', failing), { message: 'down' })
  })

  test(`${name}: tags are scoped to the namespace, and getTagExpiration gives the latest invalidation`, async (t) => {
    const options = await isolatedOptions(t, backend, 'tags')
    const cache = openCache(t, options)
    const neighbour = openCache(t, { ...options, namespace: uniqueNamespace('neighbour') })
    await cache.set('k', 1, { tags: ['shared'] })
    await neighbour.set('k', 2, { tags: ['shared'] })
    t.is(await cache.getTagExpiration(['shared']), 0, 'never invalidated')
    const before = Date.now()
    await cache.invalidateTags(['shared'])
    t.is(await cache.get('k'), undefined)
    t.is(await neighbour.get('k'), 2, 'another namespace keeps its entries')
    const expiration = await cache.getTagExpiration(['never', 'shared'])
    // The L2's clock runs on this machine: it agrees with ours within the test's own duration.
    t.true(expiration >= before - 1_000 && expiration <= Date.now() + 1_000, `${expiration} vs ${before}`)
    t.is(await neighbour.getTagExpiration(['shared']), 0)
  })

  test(`${name}: bad tags throw ERR_CACHE_INVALID_TAG at once and nothing is written`, async (t) => {
    const cache = openCache(t, await isolatedOptions(t, backend, 'tags'))
    const bad: unknown[] = [
      'not-an-array',
      [''],
      ['x'.repeat(257)],
      ['a\u0000b'],
      ['\ud800'],
      [1],
      Array.from({ length: maxTags + 1 }, (_, i) => `t${i}`),
    ]
    for (const tags of bad) {
      const label = JSON.stringify(tags).slice(0, 40)
      t.is(t.throws<CacheError>(() => cache.set('k', 1, { tags: tags as string[] }))?.code, 'ERR_CACHE_INVALID_TAG', label)
      const loader = async () => 1
      t.is(t.throws<CacheError>(() => cache.getOrSet('k', loader, { tags: tags as string[] }))?.code, 'ERR_CACHE_INVALID_TAG')
      if (typeof tags !== 'string') {
        t.is(t.throws<CacheError>(() => cache.invalidateTags(tags as string[]))?.code, 'ERR_CACHE_INVALID_TAG', label)
      }
    }
    t.is(t.throws<CacheError>(() => cache.invalidateTags(42 as unknown as string))?.code, 'ERR_CACHE_INVALID_TAG')
    t.is(t.throws<CacheError>(() => cache.getTagExpiration('x' as unknown as string[]))?.code, 'ERR_CACHE_INVALID_TAG')
    const badOptions = { hard: true } as unknown as { soft: boolean }
    t.is(t.throws<CacheError>(() => cache.invalidateTags(['x'], badOptions))?.code, 'ERR_CACHE_INVALID_OPTION')
    t.is(await cache.get('k'), undefined, 'nothing was written')
    await cache.set('k', 1, { tags: ['é'.repeat(128), ...Array.from({ length: maxTags - 1 }, (_, i) => `t${i}`)] })
    t.is(await cache.get('k'), 1, `${maxTags} tags of up to 256 bytes are fine`)
    await cache.getOrSet('hit', async () => 1)
    t.is(t.throws<CacheError>(() => cache.getOrSet('hit', async () => 2, { tags: [''] }))?.code, 'ERR_CACHE_INVALID_TAG', 'even on an L1 hit')
  })
}

for (const backend of BACKENDS.filter((b) => b.url !== undefined)) {
  test(`${backend.name}: an invalidation in one process makes the other's L1 miss within the bus delay`, async (t) => {
    const options = { ...(await isolatedOptions(t, backend, 'tags')) } as CacheOptions
    const writer = await Peer.start(t, options)
    const reader = await Peer.start(t, options)
    await writer.request('call', { method: 'set', args: ['tenant', 'acme', { tags: ['tenant:42'] }] })
    await reader.request('prime', { key: 'tenant', value: JSON.stringify('acme'), received: 0, timeoutMs: 10_000 })
    await reader.request('watch', { key: 'tenant', old: JSON.stringify('acme'), next: '<absent>', windowMs: 300, timeoutMs: 10_000 })
    const invalidated = process.hrtime.bigint()
    await writer.request('call', { method: 'invalidateTags', args: [['tenant:42']] })
    const seen = await reader.request('watchResult', { key: 'tenant' })
    t.truthy(seen.seenAt, 'the reader saw the invalidation')
    t.false(seen.sawOldAgain, 'and never the old value again')
    t.deepEqual(seen.unexpected, [])
    t.log(`${backend.name}: seen ${(Number(BigInt(seen.seenAt!) - invalidated) / 1e6).toFixed(1)} ms after invalidateTags was called`)
  })
}

test('postgres: tags extend the table with nullable columns and create <table>_tags; untagged rows read as before', async (t) => {
  const { client, table } = await scratchTable(t, 'tags_shape')
  t.teardown(() => client.query(`DROP TABLE IF EXISTS "${table}_tags"`))
  const cache = openCache(t, { url: POSTGRES_URL, namespace: uniqueNamespace('shape'), postgres: { table } })
  await cache.set('plain', { v: 1 })
  await cache.set('tagged', { v: 2 }, { tags: ['a', 'b'] })
  const columns = await client.query(
    `SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = $1 AND column_name IN ('staleUntil', 'tags')`,
    [table],
  )
  t.deepEqual(
    columns.rows.map((r) => `${r.column_name} ${r.data_type} ${r.is_nullable}`).sort(),
    ['staleUntil timestamp without time zone YES', 'tags ARRAY YES'],
  )
  const rows = await client.query(`SELECT "key", "value", "tags" FROM "${table}" ORDER BY "key"`)
  t.deepEqual(
    rows.rows.map((r) => [r.key.split(':')[1], r.value, r.tags]),
    [
      ['plain', { v: 1 }, null],
      ['tagged', { v: 2 }, ['a', 'b']],
    ],
  )
  await cache.invalidateTags(['a'])
  const records = await client.query(
    `SELECT "tag", "hardAt" IS NOT NULL AS hard, "softAt" IS NULL AS no_soft,
            extract(epoch FROM "expiresAt" - "hardAt") / 86400 AS days FROM "${table}_tags"`,
  )
  t.deepEqual(records.rows.map((r) => [r.tag, r.hard, r.no_soft, Math.round(Number(r.days))]), [['a', true, true, 60]])
})

test('postgres: expired tag records are swept', async (t) => {
  const { client, table } = await scratchTable(t, 'tags_sweep')
  t.teardown(() => client.query(`DROP TABLE IF EXISTS "${table}_tags"`))
  const namespace = uniqueNamespace('tags-sweep')
  const cache = openCache(t, { url: POSTGRES_URL, namespace, postgres: { table, cleanupInterval: 1 } })
  await cache.invalidateTags(['kept', 'expired'])
  await client.query(`UPDATE "${table}_tags" SET "expiresAt" = now() AT TIME ZONE 'UTC' - interval '1 second' WHERE "tag" = 'expired'`)
  const left = async () => (await client.query(`SELECT "tag" FROM "${table}_tags"`)).rows.map((r) => r.tag)
  t.true(await eventually(async () => (await left()).length === 1, 10_000), 'the sweep came')
  t.deepEqual(await left(), ['kept'])
})

test('redis: a tag record is one hash per tag, kept for the longest TTL plus the longest grace', async (t) => {
  const namespace = uniqueNamespace('tag-record')
  const cache = openCache(t, { url: REDIS_URL, namespace })
  await cache.set('k', 1, { tags: ['t'] })
  t.deepEqual(await withRedis(REDIS_URL, (r) => r.hget(`${namespace}:k`, 't')), '["t"]')
  await cache.invalidateTags(['t'], { soft: true })
  const [fields, pttl] = await withRedis(REDIS_URL, async (r) => [await r.hgetall(`#tag:${namespace}:t`), await r.pttl(`#tag:${namespace}:t`)])
  t.deepEqual(Object.keys(fields as object), ['s'])
  const sixtyDays = 60 * 86_400_000
  t.true((pttl as number) > sixtyDays - 60_000 && (pttl as number) <= sixtyDays, `PTTL ${pttl}`)
})

test('memory: tags work without an L2', async (t) => {
  const cache = new Cache({ namespace: uniqueNamespace('tags-memory') })
  t.teardown(() => cache.close())
  await cache.set('k', 1, { tags: ['t'] })
  await cache.invalidateTags('t')
  t.is(await cache.get('k'), undefined)
  t.true((await cache.getTagExpiration(['t'])) > 0)
})

test('postgres: an instance that read the table before another started tagging drops what it read, within a second', async (t) => {
  const { table } = await scratchTable(t, 'tags_late')
  const namespace = uniqueNamespace('tags-late')
  const early = openCache(t, { url: POSTGRES_URL, namespace, postgres: { table } })
  await early.set('k', 'v1')
  t.is(await early.get('k'), 'v1')
  // Another instance (a store of its own) tags the key, then invalidates the tag.
  const late = openCache(t, { url: POSTGRES_URL, namespace, postgres: { table }, l1: { maxEntries: 5_000 } })
  await late.set('k', 'v2', { tags: ['t'] })
  t.true(await eventually(async () => (await early.get('k')) === 'v2'), 'the write reached the early instance')
  await late.invalidateTags(['t'])
  // Until it sees the table extended (it looks every second), the early instance may hold 'v2' untagged.
  const since = Date.now()
  t.true(await eventually(async () => (await early.get('k')) === undefined, 10_000), 'then the invalidation holds there too')
  t.log(`the early instance dropped it ${Date.now() - since} ms after the invalidation`)
  for (let i = 0; i < 20; i++) {
    t.is(await early.get('k'), undefined)
    await sleep(10)
  }
})
