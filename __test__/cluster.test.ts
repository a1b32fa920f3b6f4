// Redis Cluster beyond the parametrized suites: keys spread over every master, two processes stay coherent, and a
// master killed (SIGKILL) mid-load fails over with no rejected read and no stale read once the bus is back.
import test from 'ava'
import Redis from 'ioredis'

import { startRedisCluster } from './servers.mjs'
import { Cache, Peer, REDIS_CLUSTER_URL, eventually, openCache, sleep, uniqueNamespace } from './helpers.js'
import type { CacheError } from '../index.js'

const cluster = { redis: { cluster: true } }

test('cluster: a url not of comma-separated redis:// seeds throws ERR_CACHE_INVALID_OPTION, quoting no password', (t) => {
  for (const url of ['redis://:hunter2@a:7000,b:7001', 'redis://a:1,rediss://b:2', 'postgres://a/db', 'redis://a:1,']) {
    const thrown = t.throws<CacheError>(() => new Cache({ url, ...cluster }))
    t.is(thrown?.code, 'ERR_CACHE_INVALID_OPTION', url)
    t.regex(thrown?.message ?? '', /comma-separated/)
    t.notRegex(thrown?.message ?? '', /hunter2/)
  }
  const thrown = t.throws<CacheError>(() => new Cache({ url: 'redis://a:7000,redis://b:7001' }))
  t.is(thrown?.code, 'ERR_CACHE_INVALID_OPTION', 'seeds without redis.cluster')
})

test.serial('cluster: one namespace spreads over every master, and invalidatePattern and clear reach them all', async (t) => {
  if (!REDIS_CLUSTER_URL) return t.fail('TEST_REDIS_CLUSTER_URL is not set: run the suites through npm run test:node')
  const cache = openCache(t, { url: REDIS_CLUSTER_URL, ...cluster, namespace: uniqueNamespace('spread') })
  for (let i = 0; i < 300; i++) await cache.set(`item:${i}`, i)
  // Each master's own keys, by a plain client on every node (a replica's SCAN would count its master's again).
  const nodes = REDIS_CLUSTER_URL.split(',').map((u) => new URL(u)).map((u) => new Redis(Number(u.port), u.hostname))
  t.teardown(() => nodes.forEach((node) => node.disconnect()))
  const masters = (await Promise.all(nodes.map(async (node) => ((await node.role())[0] === 'master' ? node : undefined)))).filter(
    (node): node is Redis => node !== undefined,
  )
  const keysOf = async (node: Redis) => (await node.scan(0, 'MATCH', `${cache.namespace}:*`, 'COUNT', 100_000))[1]
  const perMaster = await Promise.all(masters.map(async (node) => (await keysOf(node)).length))
  t.is(perMaster.length, 3)
  t.true(perMaster.every((n) => n > 50), `keys per master: ${perMaster.join(', ')}`)
  t.is(await cache.invalidatePattern('item:1*'), 111)
  t.is(await cache.get('item:150'), undefined)
  t.is(await cache.get('item:250'), 250)
  await cache.clear()
  const left = await Promise.all(masters.map(keysOf))
  t.is(left.flat().length, 0, 'clear unlinked the keys on every master')
  for (let i = 0; i < 300; i += 37) t.is(await cache.get(`item:${i}`), undefined)
})

test('cluster: two processes stay coherent: every write of one is seen by the other within the bus bound', async (t) => {
  if (!REDIS_CLUSTER_URL) return t.fail('TEST_REDIS_CLUSTER_URL is not set: run the suites through npm run test:node')
  const options = { url: REDIS_CLUSTER_URL, ...cluster, namespace: uniqueNamespace('coh') }
  const writer = await Peer.start(t, options)
  const reader = await Peer.start(t, options)
  for (let round = 0; round < 20; round++) {
    const key = `k${round % 5}`
    await writer.request('call', { method: 'set', args: [key, `v${round}`] })
    t.true(
      await eventually(async () => (await reader.request('call', { method: 'get', args: [key] })).value === `v${round}`, 5_000),
      `round ${round}: the reader sees the write`,
    )
  }
  await writer.request('call', { method: 'delete', args: ['k0', 'k1', 'k2', 'k3', 'k4'] })
  for (const key of ['k0', 'k1', 'k2', 'k3', 'k4']) {
    t.true(await eventually(async () => (await reader.request('call', { method: 'get', args: [key] })).value === '<absent>', 5_000))
  }
})

test('cluster: a master killed mid-load fails over: no read rejects, and after the bus window no read is stale', async (t) => {
  // A cluster of its own: the shared one must keep all its masters for the other files.
  const own = await startRedisCluster()
  t.teardown(() => own.stop())
  const errors: CacheError[] = []
  const options = { url: own.url, ...cluster, namespace: uniqueNamespace('failover'), l2Timeout: 1 }
  const reader = openCache(t, { ...options, onError: (e) => errors.push(e) })
  const writer = openCache(t, { ...options, l1: { maxEntries: 5_000 } })
  const keys = Array.from({ length: 30 }, (_, i) => `key:${i}`)
  const latest = new Map<string, number | string>()
  for (const key of keys) {
    await writer.set(key, 0)
    latest.set(key, 0)
  }
  t.true(await eventually(async () => (await reader.stats()).busUp && (await writer.stats()).busUp, 10_000))

  let rejected = 0
  let reads = 0
  let stop = false
  const readLoop = async () => {
    while (!stop) {
      for (const key of keys) {
        reads++
        await reader.getOrSet(key, async () => -1).catch(() => rejected++)
      }
      await sleep(5)
    }
  }
  const writeLoop = async () => {
    let version = 0
    while (!stop) {
      version++
      for (const key of keys) {
        await writer.set(key, version)
        latest.set(key, version)
      }
      await sleep(20)
    }
  }
  const loops = [readLoop(), readLoop(), writeLoop()]
  await sleep(500)
  // The first seed, a master after create: the buses subscribe there, so its loss is the bus's failover too.
  const masters = await own.masters()
  const victim = masters.includes(own.ports[0]) ? own.ports[0] : masters[0]
  own.kill(victim)
  t.log(`killed the master on port ${victim}`)
  // The replica is promoted after cluster-node-timeout (1.5 s) and a vote.
  t.true(
    await eventually(async () => {
      const masters = await own.masters()
      return masters.length === 3 && !masters.includes(victim)
    }, 30_000, 200),
    'a replica took over',
  )
  await sleep(2_000)
  stop = true
  await Promise.all(loops)
  t.is(rejected, 0, `${reads} reads, none rejected`)
  t.true(await eventually(async () => (await reader.stats()).busUp, 15_000), 'the bus is up again')
  // A write the L2 could not take while it failed over was reported, not stored: one more round once it is back,
  // and past the bus window every read is that last value, none stale from the reader's L1 or the L2.
  for (const key of keys) {
    await writer.set(key, 'final')
    latest.set(key, 'final')
  }
  const stale = async () => {
    const seen = await Promise.all(keys.map(async (key) => [key, await reader.get(key)] as const))
    return seen.filter(([key, value]) => value !== latest.get(key))
  }
  t.true(await eventually(async () => (await stale()).length === 0, 10_000), 'every key converges to its last write')
  await writer.set('key:0', 'after')
  t.true(await eventually(async () => (await reader.get('key:0')) === 'after', 5_000), 'and new writes still reach the reader')
  t.log(`${reads} reads; bus reconnects: ${(await reader.stats()).busReconnects}`)
  t.log(`errors reported while failing over: ${errors.length} (${[...new Set(errors.map((e) => e.code))].join(', ')})`)
})
