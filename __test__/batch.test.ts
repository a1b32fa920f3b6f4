// Batch calls (getMany, setMany, delete of many keys): the contract on every backend, their coherence across
// instances under racing writes, and their bounds with the L2 behind a fault proxy.
import test from 'ava'

import {
  BACKENDS,
  L2S,
  ThrowawayRedis,
  type Backend,
  connectionOf,
  eventually,
  freePort,
  isolatedOptions,
  openCache,
  proxied,
  proxyFor,
  secondInstance,
  sleep,
  timed,
  uniqueNamespace,
  urlOf,
  withRedis,
} from './helpers.js'
import type { Cache as CacheClass, CacheError, CacheErrorCode } from '../index.js'

/** How long another instance may keep its copy after a write: the bus delivers in milliseconds (see coherence). */
const BUS_BOUND_MS = 2_000

const range = (n: number, prefix = 'k') => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

/** A cache on `backend` without an L1: what the L2 holds. */
function l2Of(t: Parameters<typeof openCache>[0], backend: Backend, namespace: string, extra = {}): CacheClass {
  return openCache(t, { ...connectionOf(backend), namespace, l1: false, ...extra })
}

for (const backend of BACKENDS) {
  const name = backend.name
  const hasL2 = backend.url !== undefined

  test(`${name}: getMany answers in order, misses and cached nulls included, each distinct key counted once as a hit or a miss`, async (t) => {
    const options = { ...connectionOf(backend), namespace: uniqueNamespace(`many-${name}`) }
    const cache = openCache(t, options)
    await cache.set('a', { n: 1 })
    await cache.set('nothing', null)
    t.deepEqual(await cache.getMany([]), [])
    const before = await cache.stats()
    t.deepEqual(await cache.getMany(['a', 'missing', 'nothing', 'a']), [{ n: 1 }, undefined, null, { n: 1 }])
    const after = await cache.stats()
    t.is(after.l1Hits - before.l1Hits, 2, 'the L1 answered a (twice) and nothing')
    t.is(after.misses - before.misses, 1)
    const [first, second] = (await cache.getMany(['a', 'a'])) as Array<{ n: number }>
    first.n = 2
    t.is(second.n, 1, 'each position gets its own copy')
    if (hasL2) {
      const reader = l2Of(t, backend, options.namespace, backend.options)
      t.deepEqual(await reader.getMany(['a', 'missing', 'nothing', 'a']), [{ n: 1 }, undefined, null, { n: 1 }])
      const stats = await reader.stats()
      t.deepEqual([stats.l2Hits, stats.misses], [2, 1], 'a key given twice is read and counted once')
    }
  })

  test(`${name}: setMany writes each entry with its own ttl, grace and tags, and the last of a repeated key wins`, async (t) => {
    const options = await isolatedOptions(t, backend, 'setmany')
    const cache = openCache(t, options)
    await cache.setMany<unknown>([
      { key: 'plain', value: 'p0' },
      { key: 'short', value: 's', ttl: 2 },
      { key: 'tagged', value: { v: 't' }, tags: ['menu'], grace: 60 },
      { key: 'plain', value: 'p1' },
    ])
    await cache.setMany([])
    const keys = ['plain', 'short', 'tagged']
    t.deepEqual(await cache.getMany(keys), ['p1', 's', { v: 't' }])
    const other = hasL2 ? l2Of(t, backend, options.namespace!, { ...backend.options, postgres: options.postgres }) : cache
    t.deepEqual(await other.getMany(keys), ['p1', 's', { v: 't' }], 'in the L2, as written')
    t.is((await cache.stats()).sets, 3, 'one set per key written')
    await cache.invalidateTags(['menu'], { soft: true })
    t.deepEqual(await cache.getMany(keys), ['p1', 's', undefined], 'a tag invalidation reaches batch-written entries')
    t.deepEqual(await cache.getOrSet('tagged', () => Promise.reject(new Error('down'))), { v: 't' }, 'within its grace')
    await sleep(2_300)
    t.deepEqual(await other.getMany(keys), ['p1', undefined, undefined], 'the short entry expired at its own TTL')
  })

  test(`${name}: a batch of 600 keys, more than one script and every slot of a cluster, round-trips`, async (t) => {
    const options = { ...connectionOf(backend), namespace: uniqueNamespace(`big-${name}`) }
    const cache = openCache(t, options)
    const keys = range(600, 'tenant:42:item:')
    await cache.setMany(keys.map((key, i) => ({ key, value: { i } })))
    t.deepEqual(await cache.getMany(keys), keys.map((_, i) => ({ i })))
    if (hasL2) {
      const reader = l2Of(t, backend, options.namespace, backend.options)
      t.deepEqual(await reader.getMany(keys), keys.map((_, i) => ({ i })))
      t.is((await reader.stats()).l2Hits, 600)
      t.is(await cache.delete(...keys), 600, 'delete of many keys removes them all')
      t.deepEqual(await reader.getMany(keys), keys.map(() => undefined))
    }
  })

  test(`${name}: bad batch input throws synchronously with a code, naming the entry, and nothing is written`, async (t) => {
    const options = { ...connectionOf(backend), namespace: uniqueNamespace(`badmany-${name}`), maxValueBytes: 1_000 }
    const cache = openCache(t, options)
    const cases: Array<[string, () => unknown, CacheErrorCode, typeof TypeError | typeof RangeError]> = [
      ['getMany of a string', () => cache.getMany('a' as unknown as string[]), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['getMany of a number key', () => cache.getMany(['a', 1 as unknown as string]), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['getMany of a long key', () => cache.getMany(['a', 'x'.repeat(300)]), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['setMany of an object', () => cache.setMany({} as never), 'ERR_CACHE_INVALID_VALUE', TypeError],
      ['an entry that is no object', () => cache.setMany([{ key: 'ok', value: 1 }, 'x' as never]), 'ERR_CACHE_INVALID_VALUE', TypeError],
      ['an undefined value', () => cache.setMany([{ key: 'ok', value: 1 }, { key: 'u', value: undefined }]), 'ERR_CACHE_INVALID_VALUE', TypeError],
      ['a long key', () => cache.setMany([{ key: 'ok', value: 1 }, { key: 'x'.repeat(300), value: 1 }]), 'ERR_CACHE_INVALID_KEY', TypeError],
      ['a bad ttl', () => cache.setMany([{ key: 'ok', value: 1 }, { key: 'b', value: 1, ttl: 0 }]), 'ERR_CACHE_INVALID_TTL', TypeError],
      ['a fence', () => cache.setMany([{ key: 'ok', value: 1 }, { key: 'b', value: 1, ifUnchangedSince: 1 } as never]), 'ERR_CACHE_INVALID_TTL', TypeError],
      ['a bad tag', () => cache.setMany([{ key: 'ok', value: 1 }, { key: 'b', value: 1, tags: [''] }]), 'ERR_CACHE_INVALID_TAG', TypeError],
      ['a value too large', () => cache.setMany<unknown>([{ key: 'ok', value: 1 }, { key: 'b', value: 'x'.repeat(2_000) }]), 'ERR_CACHE_VALUE_TOO_LARGE', RangeError],
    ]
    for (const [label, call, code, ErrorClass] of cases) {
      const error = t.throws(call, { instanceOf: ErrorClass }, label) as CacheError | undefined
      t.is(error?.code, code, label)
      // The cases named for one entry are those of an entry past the first.
      if (label.startsWith('a')) t.regex(error?.message ?? '', /^setMany entry 1: /, label)
    }
    t.is(await cache.get('ok'), undefined, 'the good entry before a bad one was not written')
    t.is((await cache.stats()).sets, 0)
  })

  if (!hasL2) continue

  test(`${name}: another instance's setMany and delete of many keys reach this instance's L1 copies`, async (t) => {
    const options = { ...connectionOf(backend), namespace: uniqueNamespace(`busmany-${name}`), ttl: 300 }
    const a = openCache(t, options)
    const b = secondInstance(t, backend, options, a)
    const keys = range(20)
    await b.setMany(keys.map((key) => ({ key, value: 'old' })))
    t.deepEqual(await a.getMany(keys), keys.map(() => 'old'))
    t.deepEqual(await a.getMany(keys), keys.map(() => 'old'))
    t.true((await a.stats()).l1Hits >= 20, 'now in the L1 of a')
    const started = performance.now()
    await b.setMany(keys.map((key) => ({ key, value: 'new' })))
    const seen = await eventually(async () => (await a.getMany(keys)).every((v) => v === 'new'), BUS_BOUND_MS, 5)
    t.true(seen, 'one bus message dropped every copy')
    t.log(`${name}: a setMany of 20 keys was seen by the other instance ${(performance.now() - started).toFixed(0)} ms later`)
    t.is(await b.delete(...keys), 20)
    t.deepEqual(await a.getMany(keys), keys.map(() => undefined), 'delete resolves once every instance was told')
  })

  test(`${name}: getMany racing setMany and delete, here and on another instance, never keeps a value the L2 replaced (100 rounds)`, async (t) => {
    const options = { ...connectionOf(backend), namespace: uniqueNamespace(`racemany-${name}`), ttl: 300 }
    const a = openCache(t, options)
    const b = secondInstance(t, backend, options, a)
    const truth = l2Of(t, backend, options.namespace, backend.options)
    const keys = range(5)
    let converged = 0
    for (let round = 0; round < 100; round++) {
      const writer = round % 2 === 0 ? a : b
      await b.setMany(keys.map((key) => ({ key, value: `seed${round}` })))
      // Make a's read miss its L1, so that it fills from the L2 while the other call changes the keys.
      await a.delete(...keys)
      const change =
        round % 4 < 2
          ? writer.setMany(keys.map((key) => ({ key, value: `v${round}` })))
          : writer.delete(...keys.slice(0, 3)).then(() => undefined)
      await Promise.all([a.getMany(keys), change])
      const expected = await truth.getMany(keys)
      const agrees = async () => JSON.stringify(await a.getMany(keys)) === JSON.stringify(expected)
      // The writer's own L1 agrees at once; another instance's within the bus delay.
      const ok = writer === a ? await agrees() : await eventually(agrees, BUS_BOUND_MS, 5)
      if (ok) converged++
      else t.fail(`round ${round}: a holds ${JSON.stringify(await a.getMany(keys))}, the L2 ${JSON.stringify(expected)}`)
    }
    t.is(converged, 100)
  })
}

for (const backend of L2S) {
  test.serial(`${backend}: with the L2 black-holed, getMany and setMany wait at most l2Timeout, and the L1 still answers`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const errors: CacheError[] = []
    const namespace = uniqueNamespace('holemany')
    const a = openCache(t, { url: proxied(proxy, backend), namespace, l2Timeout: 1, l2Breaker: false, onError: (e) => errors.push(e) })
    await a.setMany([{ key: 'warm', value: 1 }])
    proxy.set('blackhole')
    const read = await timed(() => a.getMany(['warm', 'cold1', 'cold2']))
    t.deepEqual(read.value, [1, undefined, undefined], 'the L1 hit is served, the misses degrade')
    t.true(read.ms < 1_900, `getMany took ${read.ms.toFixed(0)} ms with l2Timeout 1 s`)
    const write = await timed(() => a.setMany([{ key: 'w1', value: 1 }, { key: 'w2', value: 2 }]))
    t.true(write.ms < 1_900, `setMany took ${write.ms.toFixed(0)} ms with l2Timeout 1 s`)
    t.deepEqual(await a.getMany(['w1', 'w2']), [1, 2], 'the L1 keeps what the L2 did not take')
    const l2Failures = errors.filter((e) => ['ERR_CACHE_L2_TIMEOUT', 'ERR_CACHE_L2_UNAVAILABLE'].includes(e.code))
    t.true(l2Failures.length >= 2, `each call reported its failure: ${errors.map((e) => e.code).join(', ')}`)
    t.log(`${backend}, L2 black-holed, l2Timeout 1 s: getMany ${read.ms.toFixed(0)} ms, setMany ${write.ms.toFixed(0)} ms`)
    proxy.set('pass')
    const direct = openCache(t, { url: urlOf(backend), namespace, l1: false })
    t.true(await eventually(async () => (await a.setMany([{ key: 'after', value: 3 }]), (await direct.get('after')) === 3), 10_000))
  })

  test.serial(`${backend}: a setMany the L2 refused is kept by the L1 for busDownL1Ttl only`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const namespace = uniqueNamespace('refusedmany')
    const a = openCache(t, { url: proxied(proxy, backend), namespace, ttl: 300, busDownL1Ttl: 2, l2Breaker: false, onError: () => {} })
    await a.get('connect')
    proxy.set('refuse')
    await a.setMany([{ key: 'x', value: 1 }, { key: 'y', value: 2 }])
    t.deepEqual(await a.getMany(['x', 'y']), [1, 2], 'served from the L1 meanwhile')
    await sleep(2_500)
    t.deepEqual(await a.getMany(['x', 'y']), [undefined, undefined], 'gone from the L1 after busDownL1Ttl, not after the TTL')
    proxy.set('pass')
  })
}

test.serial('redis: concurrent gets that miss the L1 are read from the L2 together, in one script, each counted', async (t) => {
  const server = new ThrowawayRedis(await freePort())
  await server.start()
  t.teardown(() => server.stop())
  const namespace = uniqueNamespace('coalesce')
  const writer = openCache(t, { url: server.url, namespace, bus: false })
  const keys = range(64)
  await writer.setMany(keys.map((key, i) => ({ key, value: { i } })))
  const reader = openCache(t, { url: server.url, namespace, l1: false, bus: false })
  t.deepEqual(await reader.get('k0'), { i: 0 }, 'the read script is loaded')
  const scripts = () =>
    withRedis(server.url, async (r) => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await r.info('commandstats'))?.[1] ?? 0))
  const before = await scripts()
  // 64 keys, 8 of them asked for twice, all in one turn of the event loop.
  const asked = [...keys, ...keys.slice(0, 8)]
  const values = await Promise.all(asked.map((key) => reader.get(key)))
  t.deepEqual(values, asked.map((key) => ({ i: Number(key.slice(1)) })))
  t.is((await scripts()) - before, 1, 'one script for the 72 gets')
  const stats = await reader.stats()
  t.is(stats.l2Hits, 73, 'every get counted, the repeated keys included')
  t.deepEqual(await Promise.all([reader.get('k1'), reader.get('nope')]), [{ i: 1 }, undefined])
  t.is((await reader.stats()).misses, 1)
})
