import test, { type ExecutionContext } from 'ava'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'

import {
  BACKENDS,
  Cache,
  POSTGRES_URL,
  ThrowawayRedis,
  cacheFor,
  eventually,
  freePort,
  runNode,
  scratchTable,
  sleep,
  uniqueNamespace,
} from './helpers.js'
import type { CacheError, CacheErrorCode } from '../index.js'

const tenant = { id: 't_1', slug: 'acme', name: 'Acme Inc.', active: true, settings: { theme: 'dark', locale: 'en-US' } }

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (error) {
    return (error as CacheError).code
  }
  return undefined
}

for (const backend of BACKENDS) {
  const name = backend.name
  const hasL2 = backend.url !== undefined

  test(`${name}: a miss is undefined, a cached null is null`, async (t) => {
    const cache = cacheFor(backend)
    t.is(await cache.get('missing'), undefined)
    await cache.set('tenant:none', null)
    t.is(await cache.get('tenant:none'), null)
    await cache.set('tenant:acme', tenant)
    t.deepEqual(await cache.get('tenant:acme'), tenant)
    t.true(await cache.has('tenant:none'))
    t.false(await cache.has('missing'))
    if (hasL2) {
      const reader = cacheFor(backend, { namespace: cache.namespace, l1: false })
      t.is(await reader.get('tenant:none'), null, 'the L2 keeps null as a value')
      t.is(await reader.get('missing'), undefined)
      const stats = await reader.stats()
      t.is(stats.l2Hits, 1)
      t.is(stats.misses, 1)
      await reader.close()
    }
    await cache.close()
  })

  test(`${name}: entries expire at their TTL in both tiers`, async (t) => {
    const cache = cacheFor(backend)
    const l2Only = cacheFor(backend, { namespace: cache.namespace, l1: false })
    // 2 s rather than 1 s: a loaded machine can stall a test for most of a second between two awaits.
    await cache.set('short', { v: 1 }, 2)
    await cache.set('long', { v: 2 }, { ttl: 60 })
    const { errors, busReconnects, l2State } = await cache.stats()
    t.deepEqual(await cache.get('short'), { v: 1 }, `errors ${errors}, bus reconnects ${busReconnects}, L2 ${l2State}`)
    if (hasL2) t.deepEqual(await l2Only.get('short'), { v: 1 })
    await sleep(2300)
    t.is(await cache.get('short'), undefined, 'gone from the L1 (and the L2 behind it)')
    t.is(await l2Only.get('short'), undefined, 'gone from the L2')
    t.deepEqual(await cache.get('long'), { v: 2 })
    await Promise.all([cache.close(), l2Only.close()])
  })

  test(`${name}: getOrSet on one missing key from 100 callers runs the loader once`, async (t) => {
    const cache = cacheFor(backend)
    let calls = 0
    const loader = async () => {
      calls++
      await sleep(50)
      return tenant
    }
    const results = await Promise.all(Array.from({ length: 100 }, () => cache.getOrSet('tenant:acme', loader)))
    t.is(calls, 1)
    for (const result of results) t.deepEqual(result, tenant)
    results[0].name = 'mutated'
    t.is(results[1].name, tenant.name, 'callers never share one mutable object')
    t.deepEqual(await cache.getOrSet('tenant:acme', loader), tenant)
    t.is(calls, 1)
    t.is((await cache.stats()).loaderCalls, 1)
    await cache.close()
  })

  test(`${name}: getOrSet caches null and never takes it for a miss`, async (t) => {
    const cache = cacheFor(backend)
    let calls = 0
    const notFound = async () => {
      calls++
      return null
    }
    t.is(await cache.getOrSet('tenant:nope', notFound), null)
    t.is(await cache.getOrSet('tenant:nope', notFound), null)
    t.is(calls, 1)
    await cache.close()
  })

  test(`${name}: a loader error reaches every waiter and caches nothing`, async (t) => {
    const cache = cacheFor(backend)
    const boom = new Error('database is down')
    let calls = 0
    const loader = async () => {
      calls++
      await sleep(30)
      throw boom
    }
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => cache.getOrSet('k', loader)))
    t.is(calls, 1)
    const [leader, ...waiters] = results.map((result) => {
      t.is(result.status, 'rejected')
      return (result as PromiseRejectedResult).reason as CacheError
    })
    t.is<Error, Error>(leader, boom, 'the caller whose loader failed gets its own error')
    for (const waiter of waiters) {
      t.is(waiter.code, 'ERR_CACHE_LOADER_FAILED')
      t.is(waiter.message, 'database is down')
      t.is(waiter.cause, boom)
    }
    t.is((await cache.stats()).lockWaits, 9, 'every waiter is counted')
    t.is(await cache.get('k'), undefined)
    t.is(await cache.getOrSet('k', () => 'recovered'), 'recovered')
    await t.throwsAsync(cache.getOrSet('sync-throw', () => {
      throw new TypeError('sync')
    }), { message: 'sync' })
    await cache.close()
  })

  test(`${name}: invalidatePattern treats %, _, * and \\ in keys literally`, async (t) => {
    const cache = cacheFor(backend)
    const keys = ['50%off', '50xoff', 'a_b', 'axb', 'a*b', 'a\\b', 'user:1', 'user:2', 'users:3', 'ué:1']
    for (const key of keys) await cache.set(key, key)
    const expectRemoved = async (pattern: string, removed: string[]) => {
      t.is(await cache.invalidatePattern(pattern), removed.length, pattern)
      for (const key of removed) t.is(await cache.get(key), undefined, `${pattern} removes ${key}`)
    }
    await expectRemoved('50\\%off', ['50%off'])
    t.is(await cache.get('50xoff'), '50xoff', 'a % in the pattern is no SQL wildcard')
    await expectRemoved('a_b', ['a_b'])
    t.is(await cache.get('axb'), 'axb', 'an _ in the pattern is no SQL wildcard')
    await expectRemoved('a\\*b', ['a*b'])
    await expectRemoved('a\\\\b', ['a\\b'])
    t.is(await cache.get('axb'), 'axb')
    await expectRemoved('user:*', ['user:1', 'user:2'])
    t.is(await cache.get('users:3'), 'users:3')
    await expectRemoved('u?:1', ['ué:1'])
    await expectRemoved('nothing*', [])
    if (hasL2) {
      const l2Only = cacheFor(backend, { namespace: cache.namespace, l1: false })
      t.is(await l2Only.get('50xoff'), '50xoff')
      t.is(await l2Only.get('a_b'), undefined)
      await l2Only.close()
    }
    await cache.close()
  })

  test(`${name}: namespaces are isolated, clear included`, async (t) => {
    const a = cacheFor(backend)
    const b = cacheFor(backend)
    await a.set('tenant:acme', { owner: 'a' })
    await b.set('tenant:acme', { owner: 'b' })
    t.deepEqual(await a.get('tenant:acme'), { owner: 'a' })
    t.deepEqual(await b.get('tenant:acme'), { owner: 'b' })
    await a.clear()
    t.is(await a.get('tenant:acme'), undefined)
    t.deepEqual(await b.get('tenant:acme'), { owner: 'b' })
    t.is(await a.invalidatePattern('*'), 0)
    t.deepEqual(await b.get('tenant:acme'), { owner: 'b' })
    if (hasL2) {
      const bFromL2 = cacheFor(backend, { namespace: b.namespace, l1: false })
      t.deepEqual(await bFromL2.get('tenant:acme'), { owner: 'b' })
      await bFromL2.close()
    }
    await Promise.all([a.close(), b.close()])
  })

  test(`${name}: every bad input throws synchronously with a code, and nothing is stored`, async (t) => {
    const cache = cacheFor(backend, { maxKeyLength: 8, maxValueBytes: 64 })
    const circular: Record<string, unknown> = {}
    circular.self = circular
    const cases: [string, () => unknown, CacheErrorCode, ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor][] = [
      ['empty key', () => cache.get(''), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['long key', () => cache.get('123456789'), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['multi-byte key over the byte limit', () => cache.get('éééé€'), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['number key', () => cache.get(1 as unknown as string), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['lone surrogate', () => cache.get('\ud800'), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['undefined value', () => cache.set('k', undefined), 'ERR_CACHE_INVALID_VALUE', TypeError],
      ['function value', () => cache.set('k', () => 1), 'ERR_CACHE_INVALID_VALUE', TypeError],
      ['symbol value', () => cache.set('k', Symbol('s')), 'ERR_CACHE_INVALID_VALUE', TypeError],
      ['BigInt value', () => cache.set('k', 10n), 'ERR_CACHE_INVALID_VALUE', TypeError],
      ['circular value', () => cache.set('k', circular), 'ERR_CACHE_INVALID_VALUE', TypeError],
      ['value too large', () => cache.set('k', 'x'.repeat(100)), 'ERR_CACHE_VALUE_TOO_LARGE', RangeError],
      ['ttl 0', () => cache.set('k', 1, 0), 'ERR_CACHE_INVALID_TTL', TypeError],
      ['fractional ttl', () => cache.set('k', 1, { ttl: 1.5 }), 'ERR_CACHE_INVALID_TTL', TypeError],
      ['ttl over 30 days', () => cache.set('k', 1, 2_592_001), 'ERR_CACHE_INVALID_TTL', TypeError],
      ['string ttl', () => cache.set('k', 1, '60' as unknown as number), 'ERR_CACHE_INVALID_TTL', TypeError],
      ['loader not a function', () => cache.getOrSet('k', 1 as unknown as () => 1), 'ERR_CACHE_INVALID_LOADER', TypeError],
      ['getOrSet ttl', () => cache.getOrSet('k', () => 1, -5), 'ERR_CACHE_INVALID_TTL', TypeError],
      ['bad key in delete', () => cache.delete('ok', ''), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['empty pattern', () => cache.invalidatePattern(''), 'ERR_CACHE_INVALID_PATTERN', TypeError],
      ['pattern ending in \\', () => cache.invalidatePattern('a\\'), 'ERR_CACHE_INVALID_PATTERN', TypeError],
      ['pattern not a string', () => cache.invalidatePattern(5 as unknown as string), 'ERR_CACHE_INVALID_PATTERN', TypeError],
    ]
    for (const [label, call, code, ErrorClass] of cases) {
      const error = t.throws(call, { instanceOf: ErrorClass }, label) as CacheError | undefined
      t.is(error?.code, code, label)
    }
    t.is(await cache.get('k'), undefined, 'no refused write left anything behind')
    t.is(await cache.get('ok'), undefined)
    await cache.close()
    t.is(codeOf(() => cache.get('k')), 'ERR_CACHE_CLOSED')
    await t.notThrowsAsync(cache.close(), 'close is idempotent')
  })

  test(`${name}: an L2 hit refills the L1 after the L1 let the entry go`, async (t) => {
    if (!hasL2) {
      // Memory only: the L1 is the cache, so an entry it evicted is gone.
      const cache = cacheFor(backend, { l1: { maxEntries: 5 } })
      for (let i = 0; i < 200; i++) await cache.set(`k${i}`, i)
      const found = (await Promise.all(Array.from({ length: 200 }, (_, i) => cache.get(`k${i}`)))).filter((v) => v !== undefined)
      t.true(found.length <= 5, `${found.length} entries survived with maxEntries 5`)
      return
    }
    const cache = cacheFor(backend, { l1: { maxEntries: 5 } })
    for (let i = 0; i < 50; i++) await cache.set(`k${i}`, { i })
    // moka applies evictions in batches; stats() settles them, as the store's housekeeping does every second.
    t.true((await cache.stats()).l1Entries <= 5)
    for (let i = 0; i < 50; i++) t.deepEqual(await cache.get(`k${i}`), { i })
    const afterEviction = await cache.stats()
    t.true(afterEviction.l2Hits > 0, 'evicted entries came back from the L2')
    t.true(afterEviction.l1Entries <= 5)
    await cache.close()
    // A cache with room to spare, so that moka's admission policy (TinyLFU) has no say in the refill.
    const capped = cacheFor(backend, { l1: { ttl: 2 } })
    await capped.set('capped', 'v', 60)
    await sleep(2100)
    t.is(await capped.get('capped'), 'v')
    const stats = await capped.stats()
    t.is(stats.l2Hits, 1, 'l1.ttl let the entry go, the L2 still had it')
    t.is(await capped.get('capped'), 'v')
    t.is((await capped.stats()).l1Hits, stats.l1Hits + 1, 'and the L2 hit refilled the L1')
    await capped.close()
  })

  test(`${name}: immutable values are frozen, shared until the entry changes, and never stale`, async (t) => {
    const cache = cacheFor(backend, { immutable: true })
    await cache.set('tenant:acme', tenant)
    const first = await cache.get<typeof tenant>('tenant:acme')
    t.deepEqual(first, tenant)
    t.true(Object.isFrozen(first) && Object.isFrozen(first?.settings), 'deeply frozen')
    t.false(Reflect.set(first as object, 'name', 'mutated'), 'a frozen value refuses writes')
    t.is(first?.name, tenant.name)
    t.is(await cache.get('tenant:acme'), first, 'an unchanged L1 entry hands back the same frozen value')
    await cache.set('tenant:acme', { ...tenant, name: 'Acme 2' })
    const second = await cache.get<typeof tenant>('tenant:acme')
    t.is(second?.name, 'Acme 2', 'a write is seen at once')
    t.not(second, first)
    t.true(Object.isFrozen(await cache.getOrSet('loaded', () => ({ a: [1] }))))
    await cache.delete('tenant:acme')
    t.is(await cache.get('tenant:acme'), undefined)
    t.is((await cache.stats()).l1Hits, 3, 'hits through the frozen values are counted like any L1 hit')
    await cache.close()
  })

  test(`${name}: stats count hits, misses, sets and deletes`, async (t) => {
    const cache = cacheFor(backend)
    await cache.set('a', 1)
    await cache.set('b', 2)
    await cache.get('a')
    await cache.get('zzz')
    t.is(await cache.delete('a', 'b', 'never'), 2)
    const stats = await cache.stats()
    t.like(stats, { hits: 1, misses: 1, l1Hits: 1, sets: 2, deletes: 2, errors: 0, hitRate: 0.5 })
    t.is(stats.l1Entries, 0)
    t.is(await cache.getOrSet('loaded', () => 3), 3)
    t.like(await cache.stats(), { misses: 2, loaderCalls: 1, sets: 3 }, 'a getOrSet that loads is a miss, on every backend')
    await cache.close()
  })
}

test('options: every invalid option is a TypeError naming it', (t) => {
  const cases: [Record<string, unknown>, string][] = [
    [{ ttl: 0 }, 'ttl'],
    [{ ttl: 2_592_001 }, 'ttl'],
    [{ ttl: 1.5 }, 'ttl'],
    [{ namespace: 'a:b' }, 'namespace'],
    [{ namespace: '' }, 'namespace'],
    [{ url: 'mysql://root:hunter2@127.0.0.1/db' }, 'url'],
    [{ url: 42 }, 'url'],
    [{ l1: { maxEntries: 0 } }, 'l1.maxEntries'],
    [{ l1: { maxBytes: 'big' } }, 'l1.maxBytes'],
    [{ l1: 'yes' }, 'l1'],
    [{ postgres: { poolSize: 0 } }, 'postgres.poolSize'],
    [{ postgres: { table: 'x'.repeat(64) } }, 'postgres.table'],
    [{ l2Timeout: 0 }, 'l2Timeout'],
    [{ lockTimeout: -1 }, 'lockTimeout'],
    [{ maxKeyLength: 0 }, 'maxKeyLength'],
    [{ maxValueBytes: 1.5 }, 'maxValueBytes'],
    [{ onError: 'log' }, 'onError'],
    [{ immutable: 'yes' }, 'immutable'],
    [{ tll: 300 }, 'tll'],
  ]
  for (const [options, option] of cases) {
    const error = t.throws(() => new Cache(options as never), { instanceOf: TypeError }) as CacheError
    t.is(error.code, 'ERR_CACHE_INVALID_OPTION', option)
    t.true(error.message.includes(`\`${option}\``), `${option}: ${error.message}`)
    t.false(error.message.includes('hunter2'), 'a password never appears in an error')
  }
  t.is(new Cache().backend, 'memory')
  t.is(new Cache({ url: POSTGRES_URL }).backend, 'postgres')
})

test('caches that differ only in ttl, maxKeyLength or maxValueBytes share one L1 and each keep their own limits', async (t) => {
  const namespace = uniqueNamespace('handles')
  const short = new Cache({ namespace, ttl: 60, maxKeyLength: 8 })
  const long = new Cache({ namespace, ttl: 120, maxValueBytes: 16 })
  t.teardown(() => Promise.all([short.close(), long.close()]))
  await short.set('k', { from: 'short' })
  t.deepEqual(await long.get('k'), { from: 'short' }, 'one store: a write of one is read by the other')
  await long.delete('k')
  t.is(await short.get('k'), undefined, 'and a removal by one is seen by the other')
  t.is(codeOf(() => short.set('123456789', 1)), 'ERR_CACHE_INVALID_KEY', 'maxKeyLength stays with its handle')
  t.is(codeOf(() => long.set('k', 'x'.repeat(20))), 'ERR_CACHE_VALUE_TOO_LARGE', 'maxValueBytes stays with its handle')
  await long.set('123456789', 1)
  t.is(await long.get('123456789'), 1, 'the other handle takes a key of 9 bytes')
})

test('CACHE_URL selects the L2 when url is absent', async (t) => {
  const script = `const { Cache } = require('./index.js'); const c = new Cache(); console.log(c.backend)`
  const result = await runNode(['-e', script], { CACHE_URL: 'redis://127.0.0.1:6379' })
  t.is(result.stdout.trim(), 'redis', result.stderr)
})

test('postgres: a table created by the Prisma migration is read and written as it is', async (t) => {
  const { client, table } = await scratchTable(t, 'prisma_cache')
  await client.query(`CREATE TABLE "${table}" ("id" TEXT NOT NULL, "key" TEXT NOT NULL, "value" JSONB NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL, CONSTRAINT "${table}_pkey" PRIMARY KEY ("id"))`)
  await client.query(`CREATE UNIQUE INDEX "${table}_key_key" ON "${table}"("key")`)
  await client.query(`CREATE INDEX "${table}_expiresAt_idx" ON "${table}"("expiresAt")`)
  // A row as the old TypeScript cache wrote it: id and updatedAt supplied by the client, UTC timestamps.
  await client.query(
    `INSERT INTO "${table}" ("id", "key", "value", "expiresAt", "updatedAt")
     VALUES ('legacy-1', 'tenant:acme', $1, (now() AT TIME ZONE 'UTC') + interval '5 minutes', now() AT TIME ZONE 'UTC')`,
    [JSON.stringify(tenant)],
  )
  const cache = new Cache({ url: POSTGRES_URL, namespace: 'tenant', postgres: { table }, l1: false })
  t.deepEqual(await cache.get('acme'), tenant)
  await cache.set('globex', { name: 'Globex' }, 120)
  const { rows } = await client.query(
    `SELECT "id", "value", EXTRACT(EPOCH FROM ("expiresAt" - (now() AT TIME ZONE 'UTC'))) AS ttl,
            "updatedAt" <= (now() AT TIME ZONE 'UTC') + interval '1 second' AS utc
     FROM "${table}" WHERE "key" = 'tenant:globex'`,
  )
  t.is(rows.length, 1)
  t.truthy(rows[0].id)
  t.deepEqual(rows[0].value, { name: 'Globex' })
  t.true(Number(rows[0].ttl) > 110 && Number(rows[0].ttl) <= 120, `expiresAt is 120 s ahead in UTC: ${rows[0].ttl}`)
  t.true(rows[0].utc)
  await cache.set('globex', { name: 'Globex 2' })
  const after = await client.query(`SELECT count(*)::int AS n, max("value"->>'name') AS name FROM "${table}" WHERE "key" = 'tenant:globex'`)
  t.deepEqual(after.rows[0], { n: 1, name: 'Globex 2' }, 'a write is an upsert')
  await client.query(`UPDATE "${table}" SET "expiresAt" = (now() AT TIME ZONE 'UTC') - interval '1 second' WHERE "key" = 'tenant:acme'`)
  t.is(await cache.get('acme'), undefined, 'an expired row is never returned, swept or not')
  await cache.close()
})

test('postgres: an absent table is created in the Prisma shape, UNLOGGED on request', async (t) => {
  const { client, table } = await scratchTable(t, 'created_cache')
  const cache = new Cache({ url: POSTGRES_URL, postgres: { table, unlogged: true } })
  await cache.set('k', { v: 1 })
  const columns = await client.query(
    `SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
    [table],
  )
  t.deepEqual(
    columns.rows.map((r) => `${r.column_name} ${r.data_type} ${r.is_nullable}`),
    [
      'id text NO',
      'key text NO',
      'value jsonb NO',
      'expiresAt timestamp without time zone NO',
      'createdAt timestamp without time zone NO',
      'updatedAt timestamp without time zone NO',
    ],
  )
  const indexes = await client.query(`SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname`, [table])
  t.deepEqual(indexes.rows.map((r) => r.indexname), [`${table}_expiresAt_idx`, `${table}_key_key`, `${table}_pkey`])
  const persistence = await client.query(`SELECT relpersistence FROM pg_class WHERE relname = $1`, [table])
  t.is(persistence.rows[0].relpersistence, 'u')
  await cache.close()
})

test('postgres: expired rows are swept in the background', async (t) => {
  const { client, table } = await scratchTable(t, 'swept_cache')
  // Rows stay for the fence window (maxLoadTime) past their expiry; 1 s keeps the test short.
  const cache = new Cache({ url: POSTGRES_URL, maxLoadTime: 1, postgres: { table, cleanupInterval: 1 } })
  for (let i = 0; i < 20; i++) await cache.set(`k${i}`, i, 1)
  await cache.set('kept', 'v', 60)
  const swept = await eventually(async () => {
    const { rows } = await client.query(`SELECT count(*)::int AS n FROM "${table}"`)
    return rows[0].n === 1
  }, 6000)
  t.true(swept, 'only the live row is left')
  await cache.close()
})

test('redis: an L2 that stops degrades every call, and the cache recovers when it is back', async (t) => {
  const redis = new ThrowawayRedis(await freePort())
  await redis.start()
  t.teardown(() => redis.stop())
  const errors: CacheError[] = []
  // Without the breaker: every call meets the outage itself (the breaker's own tests are in faults.test.ts).
  const options = { url: redis.url, namespace: uniqueNamespace('down'), l2Timeout: 0.5, l2Breaker: false } as const
  const cache = new Cache({ ...options, onError: (e) => errors.push(e) })
  await cache.set('before', 'v1')
  t.is(errors.length, 0)
  await redis.stop()
  const started = Date.now()
  await t.notThrowsAsync(cache.set('during', 'v2'))
  t.is(await cache.get('during'), 'v2', 'the L1 still answers')
  t.is(await cache.get('absent'), undefined, 'an L2 failure reads as a miss')
  t.is(await cache.getOrSet('loaded', () => 'from loader'), 'from loader', 'getOrSet still returns the loader value')
  t.is(await cache.delete('before'), 0)
  await t.notThrowsAsync(cache.invalidatePattern('x*'))
  await t.notThrowsAsync(cache.clear())
  t.false(await cache.has('absent'))
  t.true(Date.now() - started < 8 * 700, 'no call waited much past the L2 timeout')
  t.true(errors.length >= 5, `errors reported: ${errors.length}`)
  for (const error of errors) t.true(['ERR_CACHE_L2_UNAVAILABLE', 'ERR_CACHE_L2_TIMEOUT', 'ERR_CACHE_L2', 'ERR_CACHE_BUS'].includes(error.code), error.code)
  t.true((await cache.stats()).errors >= errors.length)
  await redis.start()
  const recovered = await eventually(async () => {
    await cache.set('after', 'v3')
    const l2Only = new Cache({ url: redis.url, namespace: cache.namespace, l1: false })
    const value = await l2Only.get('after')
    await l2Only.close()
    return value === 'v3'
  }, 10_000)
  t.true(recovered, 'writes reach the restarted L2')
  await cache.close()
})

test('credentials in a URL never appear in errors', async (t) => {
  const redis = new ThrowawayRedis(await freePort(), ['--requirepass', 'right-secret'])
  await redis.start()
  t.teardown(() => redis.stop())
  const errors: CacheError[] = []
  const wrong = new Cache({ url: `redis://:wrong-s3cret@127.0.0.1:${redis.port}`, namespace: 'creds', onError: (e) => errors.push(e) })
  t.is(await wrong.get('k'), undefined)
  const pgErrors: CacheError[] = []
  const pgDown = new Cache({ url: `postgres://postgres:pg-s3cret@127.0.0.1:${await freePort()}/test`, l2Timeout: 0.5, onError: (e) => pgErrors.push(e) })
  t.is(await pgDown.get('k'), undefined)
  t.true(errors.length > 0 && pgErrors.length > 0)
  for (const error of [...errors, ...pgErrors]) {
    t.false(error.message.includes('s3cret'), error.message)
  }
  const right = new Cache({ url: `redis://:right-secret@127.0.0.1:${redis.port}`, namespace: 'creds' })
  await right.set('k', 'v')
  t.is(await right.get('k'), 'v', 'a password in the URL is used')
  await Promise.all([wrong.close(), pgDown.close(), right.close()])
})

test('redis: rediss:// verifies the server against the trusted certificates', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tc-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=tiered-cache test CA', '-keyout', 'ca.key', '-out', 'ca.pem')
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr')
  writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n')
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'san.ext', '-out', 'server.pem')
  const port = await freePort()
  const redis = new ThrowawayRedis(port, [
    '--port', '0', '--tls-port', String(port), '--tls-auth-clients', 'no', '--requirepass', 'tls-s3cret',
    '--tls-cert-file', path.join(dir, 'server.pem'), '--tls-key-file', path.join(dir, 'server.key'),
    '--tls-ca-cert-file', path.join(dir, 'ca.pem'),
  ])
  await redis.start()
  t.teardown(() => redis.stop())
  const script = `
    const { Cache } = require('./index.js')
    const url = 'rediss://:tls-s3cret@127.0.0.1:${port}'
    const errors = []
    const writer = new Cache({ url, namespace: 'tls', onError: (e) => errors.push(e.message) })
    const reader = new Cache({ url, namespace: 'tls', l1: false, onError: (e) => errors.push(e.message) })
    writer.set('k', { over: 'tls' }).then(() => reader.get('k')).then((v) => {
      console.log(JSON.stringify({ value: v, errors }))
      return Promise.all([writer.close(), reader.close()])
    })`
  const trusted = await runNode(['-e', script], { SSL_CERT_FILE: path.join(dir, 'ca.pem') })
  t.deepEqual(JSON.parse(trusted.stdout), { value: { over: 'tls' }, errors: [] }, trusted.stderr)
  // Without the CA the server cannot be verified: the cache degrades, and the password stays out of the message.
  const untrusted = await runNode(['-e', script], { SSL_CERT_FILE: '/dev/null' })
  const outcome = JSON.parse(untrusted.stdout)
  t.is(outcome.value, undefined)
  t.true(outcome.errors.length > 0)
  t.false(untrusted.stdout.includes('tls-s3cret'))
})

test('a process that never calls close() exits by itself', async (t) => {
  for (const url of [POSTGRES_URL, 'redis://127.0.0.1:6379', '']) {
    const script = `
      const { Cache } = require('./index.js')
      const cache = new Cache({ url: ${JSON.stringify(url)} || undefined, namespace: 'exit', onError() {} })
      cache.getOrSet('k', async () => ({ at: Date.now() })).then(() => cache.get('k')).then((v) => console.log(typeof v))`
    const result = await runNode(['-e', script], {}, 15_000)
    t.is(result.code, 0, `${url || 'memory'}: ${result.stderr}`)
    t.is(result.stdout.trim(), 'object')
    t.true(result.ms < 10_000, `${url || 'memory'} took ${result.ms} ms to exit`)
  }
})

test('the package loads with import and with require', async (t) => {
  const esm = await runNode(['--input-type=module', '-e', `import { Cache } from 'tiered-cache'; console.log(typeof Cache)`])
  t.is(esm.stdout.trim(), 'function', esm.stderr)
  const cjs = await runNode(['-e', `console.log(typeof require('tiered-cache').Cache)`])
  t.is(cjs.stdout.trim(), 'function', cjs.stderr)
})
