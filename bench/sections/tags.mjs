// 10. Tags: invalidateTags of a tag carried by many entries (wall time, and for Redis the longest single command the
// server ran for it) against bentocache's deleteByTag of the same, and invalidatePattern of the same entries (once: it
// deletes them; section 5 has its repetitions over as many keys).
// Then what tags cost a hit: a get of an entry with three tags against one without, from the L1 and from the L2.
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisDriver } from 'bentocache/drivers/redis'
import { N, PREFIX, POSTGRES_URL, REDIS_URL, TABLE, smallValue, alternate, summarize, openTiered, forEachLimit } from '../lib/common.mjs'
import { redisClient } from '../lib/servers.mjs'
import { withSlowlog, longestFor } from './invalidate.mjs'

const TAGS = ['tenant:42', 'services', 'pages']

async function timedHits(get, keys, ms) {
  let ops = 0
  const t0 = performance.now()
  while (performance.now() - t0 < ms) {
    for (let j = 0; j < 64; j++) if ((await get(keys[ops++ % keys.length])) === undefined) throw new Error('a miss')
  }
  return { opsPerSec: ops / ((performance.now() - t0) / 1000) }
}

export async function run() {
  const redis = redisClient()
  const n = N.invalidateKeys
  const ids = Array.from({ length: n }, (_, i) => i)
  const ns = `${PREFIX}-tags`
  const tieredRedis = await openTiered({ url: REDIS_URL, namespace: ns, ttl: 3600, l1: false })
  const tieredPg = await openTiered({ url: POSTGRES_URL, namespace: ns, ttl: 3600, l1: false, postgres: { table: TABLE } })
  const bento = new BentoCache({
    default: 'tiered',
    stores: {
      tiered: bentostore()
        .useL1Layer(memoryDriver({ maxItems: n * 2 }))
        .useL2Layer(redisDriver({ connection: { host: '127.0.0.1', port: 6379 }, prefix: `${PREFIX}-bento-tags` })),
    },
  })
  // Each contender's entries are written once, all carrying the tag; an invalidation by timestamp costs the same
  // whether the entries are live or already invalidated, so every repetition invalidates the same tag again.
  await forEachLimit(ids, 128, (i) => tieredRedis.set(`e-${i}`, smallValue(i), { tags: ['bulk', `i:${i % 7}`] }))
  await forEachLimit(ids, 32, (i) => tieredPg.set(`e-${i}`, smallValue(i), { tags: ['bulk', `i:${i % 7}`] }))
  await forEachLimit(ids, 128, (i) => bento.set({ key: `e-${i}`, value: smallValue(i), ttl: '1h', tags: ['bulk'] }))
  // The same call for a tag that one entry carries: what invalidating should cost whatever the entry count.
  await tieredRedis.set('single', smallValue(0), { tags: ['single'] })
  await tieredPg.set('single', smallValue(0), { tags: ['single'] })
  const invalidate = {
    'tiered-cache invalidateTags (Redis)': () => tieredRedis.invalidateTags(['bulk']),
    'tiered-cache invalidateTags (Redis), 1 entry': () => tieredRedis.invalidateTags(['single']),
    'tiered-cache invalidateTags (Postgres)': () => tieredPg.invalidateTags(['bulk']),
    'tiered-cache invalidateTags (Postgres), 1 entry': () => tieredPg.invalidateTags(['single']),
    'bentocache deleteByTag (Redis)': () => bento.deleteByTag({ tags: ['bulk'] }),
  }
  const readBack = {
    'tiered-cache invalidateTags (Redis)': (k) => tieredRedis.get(k),
    'tiered-cache invalidateTags (Redis), 1 entry': () => tieredRedis.get('single'),
    'tiered-cache invalidateTags (Postgres)': (k) => tieredPg.get(k),
    'tiered-cache invalidateTags (Postgres), 1 entry': () => tieredPg.get('single'),
    'bentocache deleteByTag (Redis)': (k) => bento.get({ key: k }),
  }
  const marker = { 'tiered-cache invalidateTags (Redis)': `${ns}:` }
  const names = Object.keys(invalidate)
  const perRep = await alternate(names, N.reps, async (name) => {
    const timed = async () => {
      const t0 = performance.now()
      await invalidate[name]()
      return { entries: name.endsWith('1 entry') ? 1 : n, wallMs: performance.now() - t0 }
    }
    const measured = marker[name]
      ? await withSlowlog(redis, timed).then(({ result, entries }) => ({ ...result, ...longestFor(entries, marker[name]) }))
      : await timed()
    // Every entry of the tag is gone: a sample of them reads as a miss.
    for (const i of [0, Math.floor(n / 2), n - 1]) {
      if ((await readBack[name](`e-${i}`)) !== undefined) throw new Error(`${name}: e-${i} survived`)
    }
    return measured
  })

  // invalidatePattern of the same entries, once (it deletes them), for the comparison the issue asks for.
  const patternRemovals = {}
  for (const [name, cache] of [['tiered-cache invalidatePattern (Redis)', tieredRedis], ['tiered-cache invalidatePattern (Postgres)', tieredPg]]) {
    const t0 = performance.now()
    const removed = await cache.invalidatePattern('e-*')
    patternRemovals[name] = { entries: removed, wallMs: performance.now() - t0 }
  }

  // What tags cost a hit: the same value with and without tags, from the L1 and from the L2 (Redis).
  const hitKeys = Array.from({ length: 1_000 }, (_, i) => `h-${i}`)
  const withL1 = await openTiered({ url: REDIS_URL, namespace: `${ns}-hits`, ttl: 3600 })
  const l2Only = await openTiered({ url: REDIS_URL, namespace: `${ns}-hits`, ttl: 3600, l1: false })
  await forEachLimit(hitKeys, 64, async (k) => {
    await withL1.set(`u-${k}`, smallValue(1))
    await withL1.set(`t-${k}`, smallValue(1), { tags: TAGS })
  })
  await withL1.invalidateTags(['some-other-tag'])
  const untagged = hitKeys.map((k) => `u-${k}`)
  const tagged = hitKeys.map((k) => `t-${k}`)
  const hits = {
    'L1 hit, untagged': () => timedHits((k) => withL1.get(k), untagged, N.hitMs),
    'L1 hit, 3 tags': () => timedHits((k) => withL1.get(k), tagged, N.hitMs),
    'L2 hit (Redis), untagged': () => timedHits((k) => l2Only.get(k), untagged, N.hitMs),
    'L2 hit (Redis), 3 tags': () => timedHits((k) => l2Only.get(k), tagged, N.hitMs),
  }
  const hitReps = await alternate(Object.keys(hits), N.reps, (name) => hits[name]())

  await Promise.all([tieredRedis.close(), tieredPg.close(), withL1.close(), l2Only.close(), bento.disconnectAll()])
  redis.disconnect()
  return {
    ...Object.fromEntries(names.map((c) => [c, summarize(perRep[c])])),
    ...Object.fromEntries(Object.entries(patternRemovals).map(([c, m]) => [c, summarize([m])])),
    ...Object.fromEntries(Object.keys(hits).map((c) => [c, summarize(hitReps[c])])),
  }
}
