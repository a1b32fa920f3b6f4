/**
 * tiered-cache/next: Next.js's own caches on tiered-cache, shared and coherent across instances.
 *
 * Next.js 16 has two cache handler interfaces: `cacheHandlers` for the `'use cache'` directive and `cacheHandler`
 * (the incremental cache) for pages, ISR, route handlers, `fetch`, `unstable_cache` and images. By default each
 * instance keeps both in its own memory or disk, so a `revalidateTag` on one instance leaves the others serving old
 * pages. The two factories here put both on one {@link Cache} per process: an L1 in the process, a shared L2
 * (Postgres or Redis), and the invalidation bus, so that an entry rendered on one instance is a hit on the others
 * and an invalidation on one reaches all of them.
 *
 * ```js
 * // cache-handlers/use-cache.mjs            (next.config: cacheHandlers: { default: require.resolve(...) })
 * import { createUseCacheHandler } from 'tiered-cache/next'
 * export default createUseCacheHandler()
 *
 * // cache-handlers/incremental.mjs          (next.config: cacheHandler: require.resolve(...))
 * import { createIncrementalCacheHandler } from 'tiered-cache/next'
 * export default createIncrementalCacheHandler()
 * ```
 *
 * The interfaces are those of Next.js's `dist/server/lib/cache-handlers/types.d.ts` and
 * `dist/server/lib/incremental-cache/index.d.ts`; the semantics follow its default handlers.
 *
 * @packageDocumentation
 */

import type { Cache, CacheOptions } from './index'

/**
 * The options of both factories: a {@link Cache}'s options (the L2 from `url` or `CACHE_URL`, L1 bounds,
 * `l2Timeout`, `onError`...), with `namespace` defaulting to `"next"`; or `{ cache }`, a `Cache` to use as is (with
 * its own `onError`). Factories given equal options (functions aside) share one `Cache` per process, created on first
 * use, so both handlers share one L1, one L2 connection pool and one bus, and a tag invalidation reaches both at the
 * cost of one. `onError` also gets the handlers' own failures (an entry that could not be stored, a stream that
 * failed), none of which reach Next.js.
 */
export type NextCacheOptions = CacheOptions | { cache: Cache; onError?: (error: Error) => void }

/**
 * The caches the handlers of this process use: one per distinct options (opened on first use) and each `Cache`
 * given as `{ cache }` that is still referenced. For an admin page or metrics: each has `namespace`, `backend` and
 * `stats()`. Empty until a handler has been used.
 */
export declare function handlerCaches(): Cache[]

/** The Next.js majors whose cache handler interfaces this module speaks: `[16]`. */
export declare const SUPPORTED_NEXT_MAJORS: readonly number[]

/** `"ERR_CACHE_NEXT_VERSION"`: the `code` of the error a factory throws for a Next.js version it does not speak. */
export declare const ERR_NEXT_VERSION: 'ERR_CACHE_NEXT_VERSION'

/**
 * Throws an `Error` with `code` `ERR_CACHE_NEXT_VERSION` when the `next` package that resolves from `cwd` (default:
 * the working directory, where `next start` or the standalone `server.js` runs) is not one of
 * {@link SUPPORTED_NEXT_MAJORS}. Does nothing when no `next` package resolves (outside a Next.js app). Both factories
 * call it, so an app on another Next.js fails when it loads its handlers, not on its first cached render.
 */
export declare function checkNextVersion(cwd?: string): void

/** An entry of the `'use cache'` handler, as Next.js's `CacheEntry`. */
export interface UseCacheEntry {
  /** The serialized value; every `get` returns a new stream over the stored bytes. */
  value: ReadableStream<Uint8Array>
  /** The entry's own tags (`cacheTag`), soft tags excluded. */
  tags: string[]
  /** For the client: how long it may use the entry without checking, in seconds. */
  stale: number
  /** When the entry was made, in milliseconds since the Unix epoch (the rendering server's clock). */
  timestamp: number
  /** How long the entry may be used at all, in seconds from `timestamp`. */
  expire: number
  /** How long until the entry should be revalidated, in seconds from `timestamp`; `-1` forces a revalidation. */
  revalidate: number
}

/** The handler of the `'use cache'` directive: Next.js's `CacheHandler` (cache-handlers/types.d.ts). */
export interface UseCacheHandler {
  /**
   * The entry for `cacheKey`, or `undefined`. Waits for a `set` of the same key in progress in this process. The
   * entry's own tags are judged in the L2's round trip (an L1 hit by the tag times the bus keeps current): one
   * invalidated by `updateTag` (hard) after the entry was made is a miss; one invalidated by `revalidateTag(tag,
   * 'max')` (soft) is returned with `revalidate: -1`, so that Next.js serves it once more and renders a fresh one.
   * Soft tags (the page's implicit tags, `revalidatePath`) are checked by Next.js against
   * {@link UseCacheHandler.getExpiration}. An L2 that fails makes this a miss (or the L1's copy), never an error: the
   * failure goes to `onError`.
   */
  get(cacheKey: string, softTags: string[]): Promise<UseCacheEntry | undefined>
  /**
   * Buffers the entry's stream and stores its bytes with its tags, for the time Next.js may use it (`expire`, at
   * most 30 days, the longest TTL), not only until `revalidate`: Next.js serves a stale entry while it renders a
   * fresh one. An entry with `expire` 0 (dynamic) is not stored. Never rejects: a stream that fails or an entry the
   * cache refuses (over `maxValueBytes`, a tag over 256 bytes) is not stored, and the failure goes to `onError`.
   * Fenced (`Cache.writeFence` when `set` is called, as the render starts): when the key or one of the entry's tags
   * changes on any instance while Next.js renders (an `updateTag` or `revalidateTag` during the render), or the render
   * outlasts `maxLoadTime`, the entry is not stored, since it may hold data read before the change. Nothing is
   * stored while the L2 is down.
   */
  set(cacheKey: string, pendingEntry: Promise<UseCacheEntry>): Promise<void>
  /** Nothing to do: the bus keeps this instance's tag times current. */
  refreshTags(): Promise<void>
  /**
   * The latest invalidation (hard or soft) of any of `tags`, in milliseconds since the Unix epoch by the L2's clock,
   * read from the L2 (`Cache.getTagExpiration`); 0 when none was ever invalidated. Next.js discards an entry made at
   * or before it.
   */
  getExpiration(tags: string[]): Promise<number>
  /**
   * Invalidates `tags` on every instance: without `durations` (`updateTag`, `revalidatePath`), or with an `expire`
   * of 0, entries made before become misses; with them (`revalidateTag(tag, profile)`) they become stale, served once more while Next.js
   * renders a fresh one, until their own `expire` (the profile's `expire` is not applied on top). Rejects with the
   * failure's code (`ERR_CACHE_L2_UNAVAILABLE`, `ERR_CACHE_L2_TIMEOUT`, `ERR_CACHE_L2`) when the L2 did not record
   * the invalidation, so that it is never silently lost; see `Cache.invalidateTags`'s `strict`. `onError` also gets
   * it, as an `Error` with the same `code`, a `tags` property (the tags not invalidated) and the failure as `cause`:
   * Next.js runs a route handler's revalidations after its response, where their failure may not reach anyone.
   */
  updateTags(tags: string[], durations?: { expire?: number }): Promise<void>
}

/**
 * Creates the `'use cache'` handler: the object a `cacheHandlers` module default-exports.
 * @throws `Error` `ERR_CACHE_NEXT_VERSION` for a Next.js it does not speak; `TypeError` `ERR_CACHE_INVALID_OPTION`
 * for options that are not an object. A `Cache` option Next.js would not take throws on first use, as `new Cache`
 * does, with its code.
 */
export declare function createUseCacheHandler(options?: NextCacheOptions): UseCacheHandler

/** The value Next.js's incremental cache stores; its shape depends on `kind`. */
export type IncrementalCacheValue = { kind: string; [field: string]: unknown }

/** What the incremental handler's `get` returns: Next.js's `CacheHandlerValue`. */
export interface IncrementalCacheHandlerValue {
  /** When the entry was stored, in milliseconds (shifted into the past for a soft-invalidated entry; see `get`). */
  lastModified: number
  value: IncrementalCacheValue | null
  /** The entry's lifetime as `set` got it in `ctx.cacheControl`, so that any instance serves it with its own. */
  cacheControl?: { revalidate: number | false; expire: number | undefined }
}

/** The incremental cache handler: an instance of the class Next.js's `cacheHandler` module default-exports. */
export interface IncrementalCacheHandler {
  /**
   * The entry for `key`, or `null`. Every kind comes back as it was stored: `Buffer`s (`rscData`, a route's `body`,
   * an image's `buffer`), `segmentData` as a `Map` of `Buffer`s, headers, status, `cacheControl`. A page or route
   * is judged by its `x-next-cache-tags` (implicit tags included, so `revalidatePath` works), a fetch by its tags,
   * in the L2's round trip; a fetch is also checked against the request's other tags and soft tags (one more L2
   * read, by the L2's clock against the entry's `lastModified` by the server's clock: keep the clocks synchronised).
   * A soft-invalidated entry comes back with `lastModified` just past its revalidate time, so that Next.js serves it
   * stale and renders a fresh one (a miss when it has no revalidate time). An L2 that fails makes this a miss (or the
   * L1's copy), never an error.
   */
  get(key: string, ctx: { kind: string; tags?: string[]; softTags?: string[] }): Promise<IncrementalCacheHandlerValue | null>
  /**
   * Stores `data` (`null` included) with its tags, until its `cacheControl.expire` (at most 30 days, the longest
   * TTL; 30 days without one). Never rejects: what the cache refuses goes to `onError` and is not stored. Fenced like
   * the `'use cache'` handler's `set`, but Next.js calls it once the value is made, so the fence covers only the
   * write: a revalidation between a fetch's response and this call is not seen (Next.js's own handlers have the same
   * window).
   */
  set(
    key: string,
    data: IncrementalCacheValue | null,
    ctx: { tags?: string[]; cacheControl?: { revalidate: number | false; expire: number | undefined } },
  ): Promise<void>
  /** As {@link UseCacheHandler.updateTags}, and deduplicated with it when both run for the same tags. */
  revalidateTag(tags: string | string[], durations?: { expire?: number }): Promise<void>
  /** Nothing to reset: nothing is held per request. */
  resetRequestCache(): void
}

/**
 * Creates the incremental cache handler: the class a `cacheHandler` module default-exports (Next.js constructs it
 * with its context).
 * @throws as {@link createUseCacheHandler}.
 */
export declare function createIncrementalCacheHandler(
  options?: NextCacheOptions,
): new (context?: unknown) => IncrementalCacheHandler
