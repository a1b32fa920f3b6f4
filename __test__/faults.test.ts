// Coherence under faults: a fault-injecting proxy between the cache and the real Redis and Postgres, racing calls,
// and hung or vanished loaders. Two caches of one process on different URLs (one through the proxy, one direct) have
// separate stores and buses, so they behave as two instances. Serial: they cut connections and measure waits.
import test from 'ava'
import pg from 'pg'

import {
  Cache,
  L2S,
  ThrowawayPostgres,
  ThrowawayRedis,
  freePort,
  POSTGRES_URL,
  eventually,
  openCache,
  proxied,
  proxyFor,
  runNode,
  sleep,
  startThread,
  timed,
  uniqueNamespace,
  urlOf,
} from './helpers.js'
import type { Cache as CacheClass, CacheError, CacheErrorCode, TtlArgument } from '../index.js'

/** Waits until a write of `writer` reaches the L1 of `reader` through the bus. */
async function busDelivers(reader: CacheClass, writer: CacheClass, timeoutMs = 10_000): Promise<boolean> {
  return eventually(async () => {
    const value = Date.now()
    await reader.get('bus-warmup')
    await writer.set('bus-warmup', value)
    return eventually(async () => (await reader.get('bus-warmup')) === value, 500)
  }, timeoutMs)
}

for (const backend of L2S) {
  test.serial(`${backend}: a half-open bus is noticed, the L1 dropped, and a hung re-subscription retried`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const namespace = uniqueNamespace('halfopen')
    const errors: CacheError[] = []
    const options = { namespace, ttl: 120, busDownL1Ttl: 2 }
    const a = openCache(t, { ...options, url: proxied(proxy, backend), onError: (e) => errors.push(e) })
    const b = openCache(t, { ...options, url: urlOf(backend) })
    t.true(await busDelivers(a, b), 'the bus works before the cut')
    t.true(await eventually(async () => (await a.stats()).busUp, 10_000), 'and is proven by its probe')

    await b.set('k', 'old')
    t.is(await a.get('k'), 'old')
    // The bus connection alone goes silent: no FIN, no RST; commands still pass.
    proxy.set('blackhole', { scope: 'bus' })
    const cutAt = performance.now()

    // A removal whose own message cannot come back says so.
    await a.delete('other')
    t.true((await a.stats()).busEchoTimeouts >= 1, 'the unconfirmed removal is counted')
    t.true(errors.some((e) => e.code === 'ERR_CACHE_BUS' && /did not come back/.test(e.message)))

    await b.set('k', 'new')
    const seen = await eventually(async () => (await a.get('k')) === 'new', 10_000)
    const staleMs = performance.now() - cutAt
    t.true(seen, 'the other instance’s write is seen although the bus is half-open')
    t.true(staleMs < 120_000 / 2, 'bounded by the bus loss detection, not by the TTL')
    // The report comes on a later turn of the event loop than the L1 drop that let the new value through.
    const reported = await eventually(() => errors.some((e) => e.code === 'ERR_CACHE_BUS'), 5_000)
    t.true(reported, 'the loss of the bus is reported')
    t.log(`${backend}: a write on another instance was seen ${staleMs.toFixed(0)} ms after the bus went half-open`)

    // New bus connections are black-holed too, so a re-subscription hangs; it must be retried, not waited on forever.
    await sleep(4_000)
    const reconnectsBefore = (await a.stats()).busReconnects
    t.false((await a.stats()).busUp, 'a bus that cannot re-subscribe is not up')
    proxy.set('pass')
    t.true(await eventually(async () => (await a.stats()).busReconnects > reconnectsBefore, 15_000), 'the bus is back')
    t.true(await busDelivers(a, b), 'and it delivers again')
    const lost = errors.filter((e) => /stopped answering|lost its connection/.test(e.message)).length
    t.true(lost >= 1 && lost <= 2, `one report per loss, not one per reconnection attempt (${lost})`)
  })
}

for (const backend of ['memory', ...L2S] as const) {
  const url = backend === 'memory' ? undefined : urlOf(backend)
  for (const change of ['delete', 'set'] as const) {
    test.serial(`${backend}: a load that started before a ${change} never stores over it (30 rounds)`, async (t) => {
      const namespace = uniqueNamespace('fence')
      const a = openCache(t, { url, namespace, ttl: 60 })
      // Another store of the same namespace: another instance (memory only: the same one).
      const b = backend === 'memory' ? a : openCache(t, { url, namespace, ttl: 60, lockTimeout: 4.5 })
      const direct = backend === 'memory' ? a : openCache(t, { url, namespace, l1: false })
      const expected = change === 'delete' ? undefined : 'new'
      for (let round = 0; round < 30; round++) {
        const key = `k${round}`
        let release!: () => void
        let loaderStarted!: () => void
        const gate = new Promise<void>((resolve) => (release = resolve))
        const started = new Promise<void>((resolve) => (loaderStarted = resolve))
        const loading = a.getOrSet(key, async () => {
          loaderStarted()
          await gate
          return 'old' // what the source held when the loader read it
        })
        await started
        if (change === 'delete') await b.delete(key)
        else await b.set(key, 'new')
        release()
        t.is(await loading, 'old', 'the caller still gets its loaded value')
        t.is(await direct.get(key), expected, `round ${round}: the L2 holds what the ${change} left`)
        t.is(await a.get(key), expected, `round ${round}: the loading instance serves what the ${change} left`)
        t.is(await b.get(key), expected, `round ${round}: the changing instance serves what the ${change} left`)
      }
      t.true((await a.stats()).loadsDiscarded >= 30)
    })
  }
}

for (const backend of L2S) {
  test.serial(`${backend}: set racing delete in one instance leaves the L1 agreeing with the L2 (150 rounds)`, async (t) => {
    const namespace = uniqueNamespace('race')
    const a = openCache(t, { url: urlOf(backend), namespace })
    const direct = openCache(t, { url: urlOf(backend), namespace, l1: false })
    let removed = 0
    for (let round = 0; round < 150; round++) {
      const key = `k${round % 10}`
      await a.set(key, 'seed')
      await Promise.all([a.set(key, `v${round}`), a.delete(key)])
      const [viaL1, inL2] = [await a.get(key), await direct.get(key)]
      if (inL2 === undefined) removed++
      t.is(viaL1, inL2, `round ${round}`)
    }
    t.log(`${backend}: the delete won ${removed} of 150 rounds`)
  })
}

for (const backend of ['memory', ...L2S] as const) {
  const url = backend === 'memory' ? undefined : urlOf(backend)
  test.serial(`${backend}: a loader that never settles holds up its own thread for lockTimeout, no more`, async (t) => {
    const namespace = uniqueNamespace('hung')
    const a = openCache(t, { url, namespace, lockTimeout: 0.5 })
    void a.getOrSet('k', () => new Promise(() => {}))
    await sleep(100)
    const second = await timed(() => a.getOrSet('k', async () => 'second'))
    t.is(second.value, 'second')
    t.true(second.ms >= 300, `it waited for the first loader first (${second.ms.toFixed(0)} ms)`)
    t.log(`${backend}: the second getOrSet of the thread answered after ${second.ms.toFixed(0)} ms (lockTimeout 500)`)
    if (backend === 'memory') return
    // The hung load's L2 lock is let go after lockTimeout: another instance does not wait on it at every miss.
    await sleep(1_000)
    const other = openCache(t, { url, namespace, lockTimeout: 2 })
    t.is(await other.getOrSet('k2', async () => 'x'), 'x')
    const waitsBefore = (await other.stats()).lockWaits
    await other.delete('k')
    t.is(await other.getOrSet('k', async () => 'other'), 'other')
    t.is((await other.stats()).lockWaits, waitsBefore, 'the hung lease no longer holds the lock')
  })
}

for (const backend of ['memory', ...L2S] as const) {
  const url = backend === 'memory' ? undefined : urlOf(backend)
  test.serial(`${backend}: when the thread leading a load is terminated, its waiters take over`, async (t) => {
    const namespace = uniqueNamespace('worker')
    const options = { url, namespace, lockTimeout: 30 }
    const { worker, call } = startThread(t, options)
    await call('backend')
    // The worker leads a load that never ends (its loader is a never-settling Promise made in the worker).
    worker.postMessage({ id: -1, method: 'getOrSet', args: ['k', { hang: true }] })
    const main = openCache(t, options)
    await sleep(200)
    const following = main.getOrSet('k', async () => 'taken over')
    await sleep(200)
    await worker.terminate()
    const taken = await timed(() => following)
    t.is(taken.value, 'taken over', 'a waiter leads instead of failing with the abandoned load')
    t.true(taken.ms < 20_000, 'long before lockTimeout')
  })
}

for (const backend of ['memory', ...L2S] as const) {
  const url = backend === 'memory' ? undefined : urlOf(backend)
  test.serial(`${backend}: a failed load reaches its waiters alike, in its own thread and in another`, async (t) => {
    const namespace = uniqueNamespace('fail')
    const options = { url, namespace, lockTimeout: 30 }
    const { call } = startThread(t, options)
    await call('backend')
    const main = openCache(t, options)
    const before = (await main.stats()).lockWaits
    // The worker leads; one of its own callers and two of this thread's wait for it.
    const leading = call('getOrSet', 'k', { fail: 'the database is down', afterMs: 300 })
    await sleep(100)
    const sameThread = call('getOrSet', 'k', { fail: 'never runs', afterMs: 0 })
    const otherThread = [main.getOrSet('k', async () => 'never runs'), main.getOrSet('k', async () => 'never runs')]
    const leader = await t.throwsAsync<Error & { code?: string }>(leading)
    t.regex(leader?.message ?? '', /the database is down/)
    t.is(leader?.code, undefined, 'the leader gets its own error')
    for (const waiting of [sameThread, ...otherThread]) {
      const error = await t.throwsAsync<CacheError>(waiting)
      t.is(error?.code, 'ERR_CACHE_LOADER_FAILED')
      t.regex(error?.message ?? '', /the database is down/)
      t.is((error?.cause as Error | undefined)?.message, 'the database is down')
    }
    const stats = await main.stats()
    t.is(stats.lockWaits - before, 3, 'the waiter of the worker and the two of this thread, counted alike')
  })
}

for (const backend of L2S) {
  test.serial(`${backend}: a getOrSet started before close() stores nothing after it`, async (t) => {
    const namespace = uniqueNamespace('close')
    const a = new Cache({ url: urlOf(backend), namespace })
    const direct = openCache(t, { url: urlOf(backend), namespace, l1: false })
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const loading = a.getOrSet('k', async () => (await gate, 'loaded'))
    await sleep(100)
    await a.close()
    release()
    t.is(await loading, 'loaded')
    await sleep(200)
    t.is(await direct.get('k'), undefined)
  })

  test.serial(`${backend}: with the L2 black-holed, no call waits longer than l2Timeout`, async (t) => {
    const proxy = await proxyFor(t, backend)
    // Without the breaker, which would skip every call after the first: this is the bound of each call on its own.
    const options = { url: proxied(proxy, backend), namespace: uniqueNamespace('hole'), l2Timeout: 1, l2Breaker: false } as const
    const a = openCache(t, { ...options, onError: () => {} })
    await a.set('warm', 1)
    proxy.set('blackhole')
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['get', () => a.get('g')],
      ['set', () => a.set('s', 1)],
      ['delete', () => a.delete('d')],
      ['has', () => a.has('h')],
      ['getOrSet', () => a.getOrSet('o', async () => 1)],
      ['invalidatePattern', () => a.invalidatePattern('p*')],
      ['clear', () => a.clear()],
    ]
    const took: string[] = []
    for (const [name, call] of calls) {
      const { ms } = await timed(call)
      took.push(`${name} ${ms.toFixed(0)}`)
      // Each step bounded on its own took 2 s and more; one budget for the call takes 1 s.
      t.true(ms < 1_900, `${name} took ${ms.toFixed(0)} ms with l2Timeout 1 s`)
    }
    t.log(`${backend}, L2 black-holed, l2Timeout 1 s, ms per call: ${took.join(', ')}`)
  })
}

for (const backend of L2S) {
  for (const fault of ['refuse', 'blackhole', 'reset'] as const) {
    test.serial(`${backend}, L2 ${fault}: the breaker opens at the first outage, later calls skip the L2 at once, it closes soon after the L2 is back`, async (t) => {
      const proxy = await proxyFor(t, backend)
      const errors: CacheError[] = []
      const namespace = uniqueNamespace(`brk-${fault}`)
      const a = openCache(t, { url: proxied(proxy, backend), namespace, l2Timeout: 1, bus: false, onError: (e) => errors.push(e) })
      const direct = openCache(t, { url: urlOf(backend), namespace, l1: false })
      await a.set('cached', 'v1')
      // 'reset' cuts the connections of the moment; 'refuse' and 'blackhole' also every later one.
      proxy.set(fault)
      const first = await timed(() => a.get('first'))
      t.true(first.ms < 1_900, `the first call is bounded by l2Timeout (${first.ms.toFixed(0)} ms)`)
      if (fault === 'reset') proxy.set('refuse')
      await eventually(async () => (await a.getOrSet(`probe-${Date.now()}`, async () => 1), (await a.stats()).l2State === 'down'), 5_000)
      t.is((await a.stats()).l2State, 'down')
      const slowest = { ms: 0, call: '' }
      const calls: Array<[string, (i: number) => Promise<unknown>]> = [
        ['get', (i) => a.get(`g${i}`)],
        ['set', (i) => a.set(`s${i}`, i)],
        ['getOrSet', (i) => a.getOrSet(`o${i}`, async () => i)],
        ['delete', (i) => a.delete(`d${i}`)],
        ['has', (i) => a.has(`h${i}`)],
      ]
      for (let i = 0; i < 20; i++) {
        for (const [name, call] of calls) {
          const { ms } = await timed(() => call(i))
          if (ms > slowest.ms) Object.assign(slowest, { ms, call: name })
        }
      }
      const burst = await timed(() => Promise.all(Array.from({ length: 200 }, (_, i) => a.getOrSet(`burst${i}`, async () => i))))
      t.deepEqual(burst.value, Array.from({ length: 200 }, (_, i) => i), 'every loader value is returned')
      t.true(slowest.ms < 50, `with the breaker open no call waits for the L2 (slowest: ${slowest.call} ${slowest.ms.toFixed(1)} ms)`)
      t.true(burst.ms < 500, `200 concurrent getOrSet took ${burst.ms.toFixed(0)} ms`)
      t.is(await a.get('cached'), 'v1', 'the L1 still answers')
      const opened = errors.filter((e) => e.code === 'ERR_CACHE_L2_UNAVAILABLE' && /skip/.test(e.message))
      t.is(opened.length, 1, `the outage is reported once: ${errors.map((e) => e.code).join(', ')}`)
      t.true((await a.stats()).l2Skipped >= 120)
      t.log(`${backend}, ${fault}: first call ${first.ms.toFixed(0)} ms, then the slowest of 100 calls ${slowest.ms.toFixed(2)} ms, 200 concurrent getOrSet ${burst.ms.toFixed(1)} ms`)

      proxy.set('pass')
      const back = performance.now()
      t.true(await eventually(async () => (await a.stats()).l2State === 'up', 5_000, 10), 'the breaker closes')
      const recoveredMs = performance.now() - back
      t.true(recoveredMs < 2_000, `closed ${recoveredMs.toFixed(0)} ms after the L2's return`)
      t.log(`${backend}, ${fault}: the breaker closed ${recoveredMs.toFixed(0)} ms after the L2 came back`)
      await a.set('after', 'v2')
      t.is(await direct.get('after'), 'v2', 'writes reach the L2 again')
      t.is((await a.stats()).l2Recoveries, 1)
    })
  }
}

for (const backend of L2S) {
  test.serial(`${backend}, L2 slow: latency under l2Timeout is waited for and opens nothing; latency past it opens the breaker`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const namespace = uniqueNamespace('slow')
    const a = openCache(t, { url: proxied(proxy, backend), namespace, l2Timeout: 1, bus: false, onError: () => {} })
    const direct = openCache(t, { url: urlOf(backend), namespace, l1: false })
    await a.set('warm', 1)
    proxy.set('delay', { delayMs: 150 })
    const slow = await timed(() => a.set('k', 'v'))
    t.true(slow.ms >= 150 && slow.ms < 1_900, `a write through 150 ms of delay took ${slow.ms.toFixed(0)} ms`)
    t.is(await direct.get('k'), 'v', 'it reached the L2')
    t.is((await a.stats()).l2State, 'up', 'slowness under l2Timeout is no outage')
    proxy.set('delay', { delayMs: 1_500 })
    const late = await timed(() => a.get('missing'))
    t.true(late.ms < 1_900, `bounded by l2Timeout: ${late.ms.toFixed(0)} ms`)
    // A timeout is confirmed by one check on fresh connections, itself bounded by l2Timeout, before the breaker opens.
    t.true(await eventually(async () => (await a.stats()).l2State === 'down', 3_000, 10), 'an L2 that stays slower than l2Timeout is an outage')
    const skipped = await timed(() => a.get('missing-too'))
    t.true(skipped.ms < 50, `the next call skips the L2 (${skipped.ms.toFixed(1)} ms)`)
    proxy.set('pass')
    t.true(await eventually(async () => (await a.stats()).l2State === 'up', 5_000, 10), 'and closes once the L2 answers in time')
  })
}

/** A server of the test's own that it can kill and start again. */
interface Killable {
  url: string
  start(): Promise<void>
  kill(): Promise<void>
}

for (const backend of L2S) {
  test.serial(`${backend}: killed while 200 calls run, no call rejects or waits past l2Timeout, and the cache is back within 2 s of the restart`, async (t) => {
    let server: Killable
    if (backend === 'redis') {
      const redis = new ThrowawayRedis(await freePort())
      server = { url: redis.url, start: () => redis.start(), kill: () => redis.stop() }
      t.teardown(() => redis.stop())
    } else {
      const pg = new ThrowawayPostgres(await freePort())
      await pg.init()
      server = { url: `${pg.url}?sslmode=disable`, start: () => pg.start(), kill: () => pg.kill() }
      t.teardown(() => pg.destroy())
    }
    await server.start()
    const errors: CacheError[] = []
    const cache = openCache(t, { url: server.url, namespace: uniqueNamespace('kill'), l2Timeout: 0.5, onError: (e) => errors.push(e) })
    const direct = openCache(t, { url: server.url, namespace: cache.namespace, l1: false })
    await cache.set('warm', 0)
    t.is(await direct.get('warm'), 0)
    let running = true
    let slowest = 0
    let calls = 0
    const caller = async (n: number) => {
      for (let i = 0; running; i++) {
        const key = `k${n}-${i % 20}`
        const started = performance.now()
        await (i % 3 === 0 ? cache.set(key, i) : i % 3 === 1 ? cache.get(key) : cache.getOrSet(key, async () => i))
        slowest = Math.max(slowest, performance.now() - started)
        calls++
        if (i % 50 === 0) await sleep(1)
      }
    }
    const callers = Array.from({ length: 200 }, (_, n) => caller(n))
    await sleep(300)
    await server.kill()
    await sleep(1_500)
    t.is((await cache.stats()).l2State, 'down')
    await server.start()
    const back = performance.now()
    t.true(await eventually(async () => (await cache.stats()).l2State === 'up', 5_000, 10), 'the breaker closes')
    const recoveredMs = performance.now() - back
    await sleep(300)
    running = false
    await t.notThrowsAsync(Promise.all(callers), 'no call rejected')
    t.true(slowest < 1_500, `the slowest call took ${slowest.toFixed(0)} ms with l2Timeout 0.5 s`)
    t.true(recoveredMs < 2_000, `used the L2 again ${recoveredMs.toFixed(0)} ms after the restart`)
    const codes = errors.map((e) => e.code)
    t.true(codes.every((code) => ['ERR_CACHE_L2_UNAVAILABLE', 'ERR_CACHE_L2_TIMEOUT', 'ERR_CACHE_BUS'].includes(code)), codes.join())
    await cache.set('after', 'v')
    t.is(await direct.get('after'), 'v', 'writes reach the restarted server')
    t.log(`${backend} killed under 200 concurrent callers (${calls} calls): slowest ${slowest.toFixed(0)} ms, back ${recoveredMs.toFixed(0)} ms after the restart, ${errors.length} reports`)
  })
}

test.serial('postgres: invalidatePattern, clear and table creation work with standard_conforming_strings off', async (t) => {
  const table = `scs_${uniqueNamespace('t').replace(/[^a-z0-9]/gi, '_')}\\x`
  const url = `${POSTGRES_URL}?options=${encodeURIComponent('-c standard_conforming_strings=off')}`
  const cache = openCache(t, { url, namespace: uniqueNamespace('scs'), postgres: { table } })
  await cache.set('a%1', 1)
  await cache.set('b', 2)
  t.is(await cache.invalidatePattern('a%*'), 1)
  t.is(await cache.clear(), undefined)
  t.is(await cache.get('b'), undefined)
  const db = new pg.Client({ connectionString: POSTGRES_URL })
  await db.connect()
  t.teardown(() => db.end())
  await db.query(`DROP TABLE IF EXISTS "${table}"`)
})

test('bad input the red team found is refused synchronously with a code, and nothing is written', async (t) => {
  const cache = openCache(t, { namespace: uniqueNamespace('input') })
  const throwsCode = (call: () => unknown, code: CacheErrorCode, what: string) =>
    t.is(t.throws<CacheError>(call, undefined, what)?.code, code, what)
  throwsCode(() => cache.invalidatePattern('a\uD800*'), 'ERR_CACHE_INVALID_PATTERN', 'a pattern with a lone surrogate')
  throwsCode(() => cache.get('a\u0000b'), 'ERR_CACHE_INVALID_KEY', 'a key with NUL')
  throwsCode(() => cache.set('k', 'a\uD800'), 'ERR_CACHE_INVALID_VALUE', 'a value with a lone surrogate')
  throwsCode(() => cache.set('k', { s: 'a\u0000' }), 'ERR_CACHE_INVALID_VALUE', 'a value with NUL')
  // Deliberately outside TtlArgument: what a caller without types could pass.
  for (const options of [[], { ttll: 60 }, new Map()] as unknown as TtlArgument[]) {
    throwsCode(() => cache.set('k', 1, options), 'ERR_CACHE_INVALID_TTL', `per-call options ${JSON.stringify(options)}`)
  }
  t.is(await cache.has('k'), false, 'nothing was written')
  for (const [options, name] of [
    [{ ttl: Number.NaN }, '`ttl`'],
    [{ l2Timeout: Number.POSITIVE_INFINITY }, '`l2Timeout`'],
    [{ l1: { maxBytes: Number.NaN } }, '`l1.maxBytes`'],
  ] as const) {
    const error = t.throws<CacheError>(() => new Cache(options))
    t.is(error?.code, 'ERR_CACHE_INVALID_OPTION')
    t.true(error?.message.includes(name), error?.message)
  }
  t.is(await cache.set('k', 1, {}), undefined, 'an empty options object means the defaults')
})

test('immutable: the frozen values of a thread are bounded by l1.maxBytes', async (t) => {
  const script = `
    const { Cache } = require('./index.js')
    const cache = new Cache({ immutable: true, l1: { maxBytes: 1048576, maxEntries: 100000 } })
    const filler = 'x'.repeat(5000)
    ;(async () => {
      globalThis.gc()
      const before = process.memoryUsage().heapUsed
      for (let i = 0; i < 40000; i++) {
        await cache.set('k' + i, { i, filler })
        await cache.get('k' + i)
      }
      globalThis.gc()
      console.log(JSON.stringify({ grown: process.memoryUsage().heapUsed - before }))
      await cache.close()
    })()`
  const run = await runNode(['--expose-gc', '-e', script], {}, 120_000)
  t.is(run.code, 0, run.stderr)
  const { grown } = JSON.parse(run.stdout.trim().split('\n').pop()!)
  t.log(`heap grew ${(grown / 1e6).toFixed(1)} MB over 40,000 distinct 5 KB values with l1.maxBytes 1 MiB`)
  t.true(grown < 40e6, `heap grew ${grown} bytes; 200 MB when bounded by entries only`)
})
