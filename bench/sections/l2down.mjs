// 9. L2 down: what a call costs while the L2 is refused (nothing listens) or black-holed (a server that accepts and
// never answers), against a memory-only cache and the peers in the same failure, each with its defaults.
import { createServer } from 'node:net'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisDriver } from 'bentocache/drivers/redis'
import { createCache } from 'cache-manager'
import { Keyv } from 'keyv'
import KeyvRedis from '@keyv/redis'
import { N, PREFIX, alternate, summarize, loadTiered, sleep } from '../lib/common.mjs'

/** A call the peers may hold for their own connect timeouts (10 s and more) is cut here and counted at the cap. */
const CAP_MS = 1_000

/** A port that refuses: bound, then closed. */
async function refusedPort() {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A server that accepts every connection and never answers, as a black-holed route looks from the client. */
async function blackHole() {
  const sockets = new Set()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: server.address().port,
    close: () => {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}

function capped(call) {
  let timer
  const cap = new Promise((resolve) => (timer = setTimeout(resolve, CAP_MS, 'capped')))
  return Promise.race([Promise.resolve(call()).catch(() => 'rejected'), cap]).finally(() => clearTimeout(timer))
}

function tiered(url, extra = {}) {
  const { Cache } = loadTiered()
  return new Cache({ url, namespace: `${PREFIX}-down`, onError: () => {}, ...extra })
}

function bento(port) {
  const cache = new BentoCache({
    default: 'c',
    stores: {
      c: bentostore()
        .useL1Layer(memoryDriver({ maxItems: 10_000 }))
        .useL2Layer(redisDriver({ connection: { host: '127.0.0.1', port }, prefix: `${PREFIX}-bento-down` })),
    },
  })
  return {
    get: (k) => cache.get({ key: k }),
    getOrSet: (k, loader) => cache.getOrSet({ key: k, factory: loader, ttl: '5m' }),
    close: () => cache.disconnectAll().catch(() => {}),
  }
}

function cacheManager(port) {
  const store = new Keyv({ store: new KeyvRedis(`redis://127.0.0.1:${port}`), throwOnErrors: false })
  store.on('error', () => {})
  const cache = createCache({ stores: [store] })
  return {
    get: (k) => cache.get(k),
    getOrSet: (k, loader) => cache.wrap(k, loader, 300_000),
    close: () => cache.disconnect().catch(() => {}),
  }
}

export async function run() {
  const refused = await refusedPort()
  const hole = await blackHole()
  const urls = {
    'Redis refused': `redis://127.0.0.1:${refused}`,
    'Redis black-holed': `redis://127.0.0.1:${hole.port}`,
    'Postgres refused': `postgres://postgres@127.0.0.1:${refused}/test?sslmode=disable`,
    'Postgres black-holed': `postgres://postgres@127.0.0.1:${hole.port}/test?sslmode=disable`,
  }
  const contenders = { 'tiered-cache, memory only': () => wrap(tiered(undefined)) }
  for (const [failure, url] of Object.entries(urls)) contenders[`tiered-cache, ${failure}`] = () => wrap(tiered(url))
  contenders['bentocache, Redis refused'] = () => bento(refused)
  contenders['bentocache, Redis black-holed'] = () => bento(hole.port)
  contenders['cache-manager 7 + @keyv/redis, Redis refused'] = () => cacheManager(refused)
  contenders['cache-manager 7 + @keyv/redis, Redis black-holed'] = () => cacheManager(hole.port)

  const names = Object.keys(contenders)
  const perRep = await alternate(names, Math.min(N.reps, 3), async (name, rep) => {
    if (process.env.BENCH_DEBUG) process.stderr.write(`l2down: ${name}\n`)
    const cache = contenders[name]()
    try {
      // The first failure opens a breaker: let it, then measure the calls that follow.
      await capped(() => cache.get(`warm-${rep}`))
      await sleep(100)
      const ops = N.l2DownOps
      const times = { get: [], getOrSet: [] }
      let cappedCalls = 0
      // A contender stuck on the L2 shows it in a few calls; waiting the cap on every call would only slow the run.
      for (let i = 0; i < ops && cappedCalls < 6; i++) {
        for (const op of ['get', 'getOrSet']) {
          const t0 = performance.now()
          const result = await capped(() => (op === 'get' ? cache.get(`k-${rep}-${i}`) : cache.getOrSet(`o-${rep}-${i}`, async () => i)))
          times[op].push(performance.now() - t0)
          if (result === 'capped') cappedCalls++
        }
      }
      const p = (xs, q) => xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]
      return {
        getP50Us: p(times.get, 0.5) * 1e3,
        getP99Us: p(times.get, 0.99) * 1e3,
        getOrSetP50Us: p(times.getOrSet, 0.5) * 1e3,
        getOrSetP99Us: p(times.getOrSet, 0.99) * 1e3,
        cappedCalls,
      }
    } finally {
      // A peer may wait for its connection to close as long as for its commands.
      await capped(() => cache.close())
    }
  })
  hole.close()
  return Object.fromEntries(names.map((c) => [c, summarize(perRep[c])]))
}

function wrap(cache) {
  return { get: (k) => cache.get(k), getOrSet: (k, loader) => cache.getOrSet(k, loader), close: () => cache.close() }
}
