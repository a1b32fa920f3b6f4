'use strict'

// `tiered-cache/prometheus`: collectors on a prom-client registry the application passes. Counters and gauges are
// read from `stats()` when the registry is scraped; the two histograms are observed from the diagnostics channels
// (`tiered-cache:operation`, `tiered-cache:loader`), which this module subscribes to like any other consumer.

const { performance } = require('node:perf_hooks')
const promClient = require('prom-client')
const { Cache } = require('./index.js')
const channels = require('./diagnostics.js')

const INVALID_OPTION = 'ERR_CACHE_INVALID_OPTION'

/** The defaults of `registerMetrics`' options, written once here and in prometheus.d.ts. */
const DEFAULTS = Object.freeze({
  prefix: 'tiered_cache_',
  // An L2 round trip on a LAN takes a fraction of a millisecond; `l2Timeout` is 1 s by default.
  l2Buckets: Object.freeze([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]),
  // A loader is the application's database call or HTTP request.
  loaderBuckets: Object.freeze([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
})

/**
 * The calls whose time is the L2's: they go to the L2 unless the L1 answered (`tier: 'l1'`, not observed). Not
 * `getOrSet` (its time includes loaders and waits for other callers' loads), `getEntry` (its trace does not say
 * whether the L1 answered), `has` (likewise), nor the removals by pattern or tag (many round trips and a bus echo).
 */
const L2_OPERATIONS = new Set(['get', 'getMany', 'set', 'setMany', 'delete', 'writeFence', 'getTagExpiration'])

/** The counters: metric name (without the prefix), help, and the `stats()` field per `tier` label (or none). */
const COUNTERS = [
  ['hits_total', 'Reads answered from the cache, by tier.', { l1: 'l1Hits', l2: 'l2Hits' }],
  ['misses_total', 'Reads that found nothing in either tier.', 'misses'],
  ['stale_hits_total', 'getOrSet calls answered with a stale value within its grace.', 'staleHits'],
  ['sets_total', 'Writes attempted (set, each entry of setMany, and getOrSet storing a loaded value).', 'sets'],
  ['deletes_total', 'Live entries removed by delete, invalidatePattern and clear.', 'deletes'],
  ['loader_calls_total', 'Times a caller of this process was told to run its loader.', 'loaderCalls'],
  ['errors_total', 'Failures absorbed: L2 calls, bus publishes, bus losses, background sweeps.', 'errors'],
  ['bus_messages_published_total', 'Invalidation bus messages published.', 'busPublished'],
  ['bus_messages_received_total', 'Invalidation bus messages received from other instances.', 'busReceived'],
  ['l2_skipped_total', 'L2 calls skipped while the circuit breaker was open.', 'l2Skipped'],
]

/** The gauges: metric name, help, and how to read it from `stats()` (`undefined`: no sample). */
const GAUGES = [
  ['l1_entries', 'Entries in the L1.', (stats) => stats.l1Entries],
  ['l1_bytes', 'Bytes of keys plus JSON text in the L1.', (stats) => stats.l1Bytes],
  ['l2_up', '1 while calls use the L2, 0 while the circuit breaker skips it; absent without an L2.', (stats) =>
    stats.l2State === 'none' ? undefined : Number(stats.l2State === 'up')],
  ['bus_up', '1 while the invalidation bus is subscribed and proven, else 0; absent without an L2.', (stats, backend) =>
    backend === 'memory' ? undefined : Number(stats.busUp)],
]

function invalid(message) {
  const error = new TypeError(message)
  error.code = INVALID_OPTION
  return error
}

function checkBuckets(name, buckets) {
  if (!Array.isArray(buckets) || buckets.length === 0 || !buckets.every((b) => Number.isFinite(b) && b > 0)) {
    throw invalid(`option \`${name}\` must be a non-empty array of positive numbers of seconds`)
  }
  return [...buckets]
}

/**
 * Registers tiered-cache's metrics on `registry` for `caches`, and returns a handle to add caches to it or remove
 * them all. See prometheus.d.ts.
 */
function registerMetrics(registry, target = {}) {
  if (!(registry instanceof promClient.Registry)) {
    throw invalid('registerMetrics needs a prom-client Registry (the one this process loads) as its first argument')
  }
  const options = target instanceof Cache || Array.isArray(target) ? { caches: target } : target
  if (options === null || typeof options !== 'object') {
    throw invalid('registerMetrics takes a Cache, an array of them, or { caches, prefix, l2Buckets, loaderBuckets }')
  }
  for (const name of Object.keys(options)) {
    if (!['caches', 'prefix', 'l2Buckets', 'loaderBuckets'].includes(name)) {
      throw invalid(`unknown registerMetrics option \`${name}\``)
    }
  }
  const prefix = options.prefix ?? DEFAULTS.prefix
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) {
    throw invalid('option `prefix` must be a valid start of a Prometheus metric name, such as "tiered_cache_"')
  }
  const l2Buckets = checkBuckets('l2Buckets', options.l2Buckets ?? DEFAULTS.l2Buckets)
  const loaderBuckets = checkBuckets('loaderBuckets', options.loaderBuckets ?? DEFAULTS.loaderBuckets)

  const names = [...COUNTERS, ...GAUGES].map(([name]) => prefix + name)
  names.push(`${prefix}l2_duration_seconds`, `${prefix}loader_duration_seconds`)
  const taken = names.find((name) => registry.getSingleMetric(name) !== undefined)
  if (taken !== undefined) {
    throw invalid(`registerMetrics: the registry has a metric \`${taken}\` already (call it once per registry, or pass another prefix)`)
  }

  /** The registered caches by namespace: the cache, its backend, and whether its breaker is open. */
  const byNamespace = new Map()
  let snapshot
  let uses = 0
  /**
   * One `stats()` per cache per scrape, shared by the collectors of that scrape: dropped once each collector read it
   * (or at the next turn, for a scrape of single metrics), so that the next scrape reads anew.
   */
  function snapshots() {
    if (snapshot === undefined) {
      uses = 0
      snapshot = []
      for (const [namespace, entry] of byNamespace) {
        try {
          entry.stats = entry.cache.stats()
          snapshot.push([namespace, entry])
        } catch {
          // Closed: it leaves the scrape, and the registry.
          byNamespace.delete(namespace)
        }
      }
      const taken = snapshot
      setImmediate(() => {
        if (snapshot === taken) snapshot = undefined
      })
    }
    const current = snapshot
    if (++uses === COUNTERS.length + GAUGES.length) snapshot = undefined
    return Promise.all(current.map(async ([namespace, entry]) => [namespace, entry.backend, await entry.stats]))
  }

  const metrics = []
  for (const [name, help, field] of COUNTERS) {
    const byTier = typeof field === 'object'
    metrics.push(
      new promClient.Counter({
        name: prefix + name,
        help,
        labelNames: byTier ? ['namespace', 'tier'] : ['namespace'],
        registers: [registry],
        async collect() {
          const all = await snapshots()
          this.reset()
          for (const [namespace, , stats] of all) {
            if (byTier) for (const [tier, of] of Object.entries(field)) this.inc({ namespace, tier }, stats[of])
            else this.inc({ namespace }, stats[field])
          }
        },
      }),
    )
  }
  for (const [name, help, read] of GAUGES) {
    metrics.push(
      new promClient.Gauge({
        name: prefix + name,
        help,
        labelNames: ['namespace'],
        registers: [registry],
        async collect() {
          const all = await snapshots()
          this.reset()
          for (const [namespace, backend, stats] of all) {
            const value = read(stats, backend)
            if (value !== undefined) this.set({ namespace }, value)
          }
        },
      }),
    )
  }
  const l2Seconds = new promClient.Histogram({
    name: `${prefix}l2_duration_seconds`,
    help:
      'Time of get, getMany, set, setMany, delete, writeFence and getTagExpiration calls that went to the L2 (not L1 hits, not calls ' +
      'the open circuit breaker skipped), from the call to its settling, in seconds.',
    labelNames: ['namespace'],
    buckets: l2Buckets,
    registers: [registry],
  })
  const loaderSeconds = new promClient.Histogram({
    name: `${prefix}loader_duration_seconds`,
    help: 'Time of each getOrSet loader run (early refreshes included), until it settled, in seconds.',
    labelNames: ['namespace'],
    buckets: loaderBuckets,
    registers: [registry],
  })
  metrics.push(l2Seconds, loaderSeconds)

  const started = new WeakMap()
  const operationHandlers = {
    start(context) {
      const entry = byNamespace.get(context.namespace)
      if (entry === undefined || entry.backend === 'memory' || !L2_OPERATIONS.has(context.operation)) return
      // A call that starts while the breaker is open skips the L2: its time is not the L2's. The flag follows the
      // breaker's transitions, which reach JavaScript on a later turn: a call at the very edge may be misfiled.
      if (!entry.l2Down) started.set(context, performance.now())
    },
    asyncEnd(context) {
      const at = started.get(context)
      if (at === undefined || context.tier === 'l1') return
      l2Seconds.observe({ namespace: context.namespace }, (performance.now() - at) / 1000)
    },
  }
  const loaderHandlers = {
    start(context) {
      if (byNamespace.has(context.namespace)) started.set(context, performance.now())
    },
    asyncEnd(context) {
      const at = started.get(context)
      if (at !== undefined) loaderSeconds.observe({ namespace: context.namespace }, (performance.now() - at) / 1000)
    },
  }
  const onBreaker = ({ namespace, state }) => {
    const entry = byNamespace.get(namespace)
    if (entry !== undefined) entry.l2Down = state !== 'closed'
  }
  channels.operation.subscribe(operationHandlers)
  channels.loader.subscribe(loaderHandlers)
  channels.breaker.subscribe(onBreaker)

  const handle = {
    /** Adds a cache; its namespace must differ from every registered one's (it is the metrics' label). */
    add(cache) {
      if (!(cache instanceof Cache)) throw invalid('registerMetrics: caches must be tiered-cache Cache instances')
      const namespace = cache.namespace
      if (byNamespace.has(namespace)) {
        throw invalid(`registerMetrics: a cache of namespace "${namespace}" is registered already`)
      }
      let stats
      try {
        stats = cache.stats()
      } catch {
        throw invalid('registerMetrics: the cache is closed')
      }
      const entry = { cache, backend: cache.backend, l2Down: false, stats }
      stats.then((s) => (entry.l2Down = s.l2State === 'down'))
      byNamespace.set(namespace, entry)
      return handle
    },
    /** Removes every metric from the registry and stops observing. */
    close() {
      channels.operation.unsubscribe(operationHandlers)
      channels.loader.unsubscribe(loaderHandlers)
      channels.breaker.unsubscribe(onBreaker)
      for (const metric of metrics) registry.removeSingleMetric(metric.name)
      byNamespace.clear()
    },
  }
  const caches = options.caches === undefined ? [] : [options.caches].flat()
  try {
    caches.forEach((cache) => handle.add(cache))
  } catch (error) {
    handle.close()
    throw error
  }
  return handle
}

module.exports = { registerMetrics, DEFAULTS }
