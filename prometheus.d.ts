/**
 * tiered-cache/prometheus: the caches' metrics on a prom-client registry that the application passes (prom-client is
 * an optional peer dependency: install it, version 15).
 *
 * ```js
 * import { Registry } from 'prom-client'
 * import { registerMetrics } from 'tiered-cache/prometheus'
 * const registry = new Registry()
 * registerMetrics(registry, [tenants, sessions])
 * // GET /metrics: res.end(await registry.metrics())
 * ```
 *
 * Counters and gauges are read from each cache's `stats()` when the registry is scraped (one `stats()` per cache
 * per scrape). The histograms are observed from the diagnostics channels (`tiered-cache/diagnostics`); with them
 * subscribed, every public call is traced, whose cost on an L1 hit BENCHMARKS.md section 11 measures. Labels:
 * `namespace`, and `tier` (`l1`, `l2`) on the hits.
 *
 * | metric | type | from |
 * | --- | --- | --- |
 * | `tiered_cache_hits_total{namespace,tier}` | counter | `l1Hits`, `l2Hits` |
 * | `tiered_cache_misses_total` | counter | `misses` |
 * | `tiered_cache_stale_hits_total` | counter | `staleHits` |
 * | `tiered_cache_sets_total` | counter | `sets` |
 * | `tiered_cache_deletes_total` | counter | `deletes` |
 * | `tiered_cache_loader_calls_total` | counter | `loaderCalls` |
 * | `tiered_cache_errors_total` | counter | `errors` |
 * | `tiered_cache_bus_messages_published_total`, `..._received_total` | counter | `busPublished`, `busReceived` |
 * | `tiered_cache_l2_skipped_total` | counter | `l2Skipped` |
 * | `tiered_cache_l1_entries`, `tiered_cache_l1_bytes` | gauge | `l1Entries`, `l1Bytes` |
 * | `tiered_cache_l2_up` | gauge | 1 when `l2State` is `'up'`, 0 when `'down'`; no sample when memory only |
 * | `tiered_cache_bus_up` | gauge | `busUp`; no sample when memory only |
 * | `tiered_cache_l2_duration_seconds` | histogram | see below |
 * | `tiered_cache_loader_duration_seconds` | histogram | each loader run, from its call to its settling |
 *
 * `tiered_cache_l2_duration_seconds` is measured in JavaScript, from the public call to its promise settling, for
 * `get` and `getMany` (unless the L1 answered every key), `set`, `setMany`, `delete` (which waits for its bus echo),
 * `writeFence` and `getTagExpiration` on a
 * cache with an L2, and only when the call started with the circuit breaker closed (a skipped call's time is not the
 * L2's). It therefore includes the binding's hop and the core's work around the round trip. `getOrSet` (its time
 * includes loaders and waits for other callers), `getEntry` and `has` (their trace does not say whether the L1
 * answered), `invalidatePattern`, `invalidateTags` and `clear` are not observed.
 *
 * @packageDocumentation
 */

import type { Registry } from 'prom-client'
import type { Cache } from './index'

/** The options of {@link registerMetrics}. */
export interface MetricsOptions {
  /** The caches to observe, each of its own namespace (the `namespace` label). Default: none (add them later). */
  caches?: Cache | Cache[]
  /** The start of every metric name. Default `'tiered_cache_'`. */
  prefix?: string
  /**
   * The buckets of `tiered_cache_l2_duration_seconds`, in seconds. Default
   * `[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]`.
   */
  l2Buckets?: number[]
  /**
   * The buckets of `tiered_cache_loader_duration_seconds`, in seconds. Default
   * `[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]`.
   */
  loaderBuckets?: number[]
}

/** What {@link registerMetrics} returns. */
export interface MetricsHandle {
  /**
   * Observes one more cache. Throws a `TypeError` with `code: 'ERR_CACHE_INVALID_OPTION'` for anything but an open
   * `Cache`, or a cache whose namespace is registered already (two handles on one store would count it twice).
   */
  add(cache: Cache): MetricsHandle
  /** Removes every metric of this call from the registry and stops observing. */
  close(): void
}

/**
 * Registers tiered-cache's collectors on `registry` for `caches` (a `Cache`, an array of them, or the options). A
 * closed cache leaves the metrics at the next scrape. Throws a `TypeError` with `code: 'ERR_CACHE_INVALID_OPTION'`
 * for a registry that is not a prom-client `Registry`, an unknown option, a bad prefix or buckets, or a registry that
 * holds one of the metrics' names already (a second call on it without another `prefix`).
 */
export declare function registerMetrics(registry: Registry, caches?: Cache | Cache[] | MetricsOptions): MetricsHandle

/** The defaults of {@link MetricsOptions}. */
export declare const DEFAULTS: Readonly<{
  prefix: string
  l2Buckets: readonly number[]
  loaderBuckets: readonly number[]
}>
