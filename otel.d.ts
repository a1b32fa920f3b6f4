/**
 * tiered-cache/otel: spans and metrics through `@opentelemetry/api` (an optional peer dependency), recorded from the
 * diagnostics channel `tiered-cache:operation` and `tiered-cache:loader` (see `tiered-cache/diagnostics`): the one
 * source of events that the Prometheus module also uses.
 *
 * ```js
 * // instrumentation.ts, after the SDK is started
 * import { instrument } from 'tiered-cache/otel'
 * instrument()
 * ```
 *
 * There are no stable OpenTelemetry semantic conventions for caches; these follow the database client conventions
 * where one applies, and a `cache.` namespace for the rest:
 *
 * - a span per public call, kind `INTERNAL` (the call may never leave the process), named `{operation} {namespace}`
 *   as a database span is named `{db.operation.name} {target}`, a child of the span active when the call was made;
 *   and a span `load {namespace}` per loader run (a sibling of its `getOrSet` span: the loader runs in the caller's
 *   context);
 * - attributes `cache.operation` (`get`, `getOrSet`, ...), `cache.namespace`, `cache.hit` (reads), `cache.tier`
 *   (`l1`, `l2`, `loader`), `cache.stale`, `db.system.name` (`redis` or `postgresql`: the L2 behind the cache, absent
 *   when memory only), `error.type` (the error's `code`, e.g. `ERR_CACHE_INVALID_KEY`) with status `ERROR` and the
 *   exception recorded; `cache.key` only with `recordKeys` (keys may carry user data, and the database conventions
 *   leave query parameters out by default);
 * - histograms `cache.operation.duration` and `cache.loader.duration`, in seconds, with the same attributes but the
 *   key.
 *
 * @packageDocumentation
 */

import type { MeterProvider, TracerProvider } from '@opentelemetry/api'

/** The options of {@link instrument}. */
export interface InstrumentOptions {
  /** Default: the global tracer provider (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider
  /** Default: the global meter provider (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider
  /** Record each call's key (or keys, pattern, tags) as `cache.key` on its span. Default `false`. */
  recordKeys?: boolean
}

/**
 * Records every call of every `Cache` of the process from now on, until `close()`. Throws a `TypeError` with
 * `code: 'ERR_CACHE_INVALID_OPTION'` for an unknown or mistyped option.
 */
export declare function instrument(options?: InstrumentOptions): { close(): void }
