/**
 * tiered-cache/diagnostics: the cache's `node:diagnostics_channel` channels, for APMs, tracers and metrics. They are
 * process-wide by name, so `dc.tracingChannel('tiered-cache:operation')` is the same channel as {@link operation}.
 *
 * Zero cost when nobody subscribes: every public call checks `operation.hasSubscribers` first, and without a
 * subscriber an L1 hit allocates nothing more than before (BENCHMARKS.md, section 11).
 *
 * ```js
 * import { tracingChannel, subscribe } from 'node:diagnostics_channel'
 * tracingChannel('tiered-cache:operation').subscribe({
 *   asyncEnd: ({ operation, namespace, hit, tier }) => console.log(operation, namespace, hit, tier),
 * })
 * subscribe('tiered-cache:breaker', ({ namespace, state }) => console.log('breaker', namespace, state))
 * ```
 *
 * @packageDocumentation
 */

import type { TracingChannel, Channel } from 'node:diagnostics_channel'

/** Where a value came from: the in-process L1, the shared L2, or a `getOrSet` loader. */
export type Tier = 'l1' | 'l2' | 'loader'

/** The public calls that `tiered-cache:operation` traces. */
export type OperationName =
  | 'get'
  | 'getMany'
  | 'getEntry'
  | 'set'
  | 'setMany'
  | 'writeFence'
  | 'getOrSet'
  | 'delete'
  | 'has'
  | 'clear'
  | 'invalidatePattern'
  | 'invalidateTags'
  | 'getTagExpiration'

/**
 * The context of one traced call: one object per call, the same in its start, end, asyncStart, asyncEnd and error
 * events. `hit`, `tier` and `stale` are filled in before asyncStart; `error` (with `error`) or `result` (with
 * asyncStart/asyncEnd) are set by the `TracingChannel` itself, as for any `tracePromise`.
 */
export interface OperationContext {
  operation: OperationName
  /** The cache's namespace. */
  namespace: string
  /** `'postgres'`, `'redis'` or `'memory'`. */
  backend: 'postgres' | 'redis' | 'memory'
  /**
   * The key (`get`, `getEntry`, `set`, `writeFence`, `getOrSet`, `has`, a `delete` of one key), the keys (`delete`
   * of several, `getMany`, `setMany`), the pattern (`invalidatePattern`), the tags (`invalidateTags`, `getTagExpiration`); `undefined` for
   * `clear`. Keys may carry user data: a subscriber that exports them decides so (the OpenTelemetry module does not
   * by default).
   */
  key: unknown
  /**
   * Reads only (`get`, `getMany`, `getEntry`, `getOrSet`): whether a fresh cached value answered (`getMany`: every
   * key's). `false` for a miss, a value
   * from the loader, or a stale value. `undefined` for the other calls.
   */
  hit: boolean | undefined
  /**
   * `get`: `'l1'` or `'l2'` on a hit. `getMany`: `'l1'` when the L1 answered every key, `'l2'` when the L2 answered
   * the rest. `getOrSet`: `'l1'`, `'l2'` (the L2 had it, or another process's load put it
   * there), or `'loader'` (this call's loader ran, or it waited for this thread's load of the key). `undefined` on a
   * miss, for a stale answer, for `getEntry` (its native read does not say which tier answered) and for other calls.
   */
  tier: Tier | undefined
  /** Reads only: whether the value served was stale (within its grace). */
  stale: boolean | undefined
  /** Set by the channel when the call threw (synchronously, bad input) or its promise rejected. */
  error?: unknown
  /** Set by the channel to what the call resolved to. */
  result?: unknown
}

/** The context of one loader run: a `getOrSet`'s, or an early refresh's in the background. */
export interface LoaderRunContext {
  operation: 'getOrSet' | 'earlyRefresh'
  namespace: string
  key: string
  error?: unknown
  result?: unknown
}

/** The circuit breaker's states, as the core names them (`rules().transitions.breaker`). */
export type BreakerState = 'open' | 'half-open' | 'closed'
/** The invalidation bus's states, as the core names them (`rules().transitions.bus`). */
export type BusState = 'subscribed' | 'lost' | 'half-open' | 'reconnected'

/**
 * A transition, published once when it happens (never per call), per `Cache` handle: two handles on one store (the
 * same options) each publish it.
 */
export interface TransitionMessage<State extends string> {
  namespace: string
  backend: 'postgres' | 'redis' | 'memory'
  state: State
}

/** `tiered-cache:operation`: every public call of every `Cache` (start, end, asyncStart, asyncEnd, error). */
export declare const operation: TracingChannel<unknown, OperationContext>
/** `tiered-cache:loader`: every loader run (start, end, asyncStart, asyncEnd, error). */
export declare const loader: TracingChannel<unknown, LoaderRunContext>
/**
 * `tiered-cache:breaker`: `open` (the L2 was found down: calls skip it), `half-open` (the first probe of the outage
 * is under way; calls still skip the L2), `closed` (a probe found the L2 back). Only with the breaker on (the default
 * with an L2); with `l2Breaker: false` there is no state to change.
 */
export declare const breaker: Channel<unknown, TransitionMessage<BreakerState>>
/**
 * `tiered-cache:bus`: `subscribed` (the first subscription was proven by a probe), `lost` (its connection closed),
 * `half-open` (its connection stayed open but stopped carrying probes), `reconnected` (proven again after a loss).
 * Losses are found within `rules().busLossDetectionMs` (3 s).
 */
export declare const bus: Channel<unknown, TransitionMessage<BusState>>
