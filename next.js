'use strict'

// tiered-cache/next: Next.js's two cache handler interfaces on one tiered-cache `Cache`, so that every instance of an
// app shares `'use cache'` entries, ISR pages, route handlers and the fetch cache, and a `revalidateTag`,
// `updateTag` or `revalidatePath` on one instance is seen by all of them. The interfaces are Next.js 16's, read
// from its `dist/server/lib/cache-handlers/types.d.ts` and `dist/server/lib/incremental-cache/index.d.ts`, and
// their semantics from its default handlers (`cache-handlers/default.js`, `incremental-cache/file-system-cache.js`).

const { createHash } = require('node:crypto')
const { createRequire } = require('node:module')
const path = require('node:path')

const { Cache } = require('./index.js')
const { rules } = require('./binding.js')

const RULES = rules()
const RULE_OF = Object.fromEntries(RULES.options.map((rule) => [rule.name, rule]))

/** The Next.js majors whose handler interfaces this module speaks. */
const SUPPORTED_NEXT_MAJORS = [16]
/** Raised at start-up (when a factory runs) for a Next.js version whose interfaces this module does not speak. */
const ERR_NEXT_VERSION = 'ERR_CACHE_NEXT_VERSION'
/** The namespace both handlers share by default: one tag record serves `'use cache'` entries and fetches alike. */
const DEFAULT_NAMESPACE = 'next'
/** The `x-next-cache-tags` header of a page or route entry: its tags, comma-separated (Next.js's own constant). */
const NEXT_CACHE_TAGS_HEADER = 'x-next-cache-tags'
/** An entry without an `expire` of its own is kept this long: the longest TTL a `Cache` takes (seconds). */
const LONGEST_TTL_S = RULE_OF.ttl.max

function invalidOption(message) {
  return Object.assign(new TypeError(message), { code: RULES.errorCodes.InvalidOption })
}

function nextError(message) {
  const error = new Error(message)
  error.code = ERR_NEXT_VERSION
  return error
}

/**
 * Throws `ERR_CACHE_NEXT_VERSION` when the `next` package that resolves from the working directory (where `next
 * start` and the standalone `server.js` run) is a version whose handler interfaces this module does not speak. Outside
 * a Next.js app (no `next` to resolve) there is nothing to check.
 */
function checkNextVersion(cwd = process.cwd()) {
  let version
  try {
    const manifest = createRequire(path.join(cwd, 'package.json')).resolve('next/package.json')
    version = require(manifest).version
  } catch {
    return
  }
  const major = Number.parseInt(String(version).split('.')[0], 10)
  if (!SUPPORTED_NEXT_MAJORS.includes(major)) {
    throw nextError(
      `tiered-cache/next speaks the cache handler interfaces of Next.js ${SUPPORTED_NEXT_MAJORS.join(', ')}.x; ` +
        `this app has Next.js ${version}`,
    )
  }
}

/** One `Cache` per process for equal options, whichever handler (and however many bundles of it) asks first. */
const SHARED = Symbol.for('tiered-cache.next.shared')
const shared = (globalThis[SHARED] ??= new Map())

/** The handlers' state per `Cache` given as `{ cache }`: its invalidations in progress, shared by both handlers. */
const GIVEN = new WeakMap()
/** The caches given as `{ cache }`, for `handlerCaches()`; held weakly, so that a closed and dropped one goes. */
const given = (globalThis[Symbol.for('tiered-cache.next.given')] ??= {
  refs: new Set(),
  add(cache) {
    for (const ref of this.refs) if (ref.deref() === cache) return
    this.refs.add(new WeakRef(cache))
  },
  *[Symbol.iterator]() {
    for (const ref of this.refs) {
      const cache = ref.deref()
      if (cache === undefined) this.refs.delete(ref)
      else yield cache
    }
  },
})

function sharedCache(options) {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw invalidOption('the handler options must be an object')
  }
  const { onError, ...rest } = { namespace: DEFAULT_NAMESPACE, ...options }
  if (onError !== undefined && typeof onError !== 'function') {
    throw invalidOption('option `onError` must be a function')
  }
  const report = (error) => {
    try {
      onError?.(error)
    } catch {
      // As for the Cache's own onError: a hook that throws is ignored.
    }
  }
  if (rest.cache !== undefined) {
    if (!(rest.cache instanceof Cache)) {
      throw invalidOption('option `cache` must be a Cache')
    }
    let invalidations = GIVEN.get(rest.cache)
    if (invalidations === undefined) GIVEN.set(rest.cache, (invalidations = new Map()))
    given.add(rest.cache)
    return { cache: rest.cache, report, invalidations }
  }
  const id = JSON.stringify(rest, Object.keys(rest).sort())
  let entry = shared.get(id)
  if (entry === undefined) {
    let cache
    entry = {
      // Opened on first use: `next build` loads the handlers in every worker, most of which never read.
      get cache() {
        cache ??= new Cache({ ...rest, onError: report })
        return cache
      },
      get opened() {
        return cache !== undefined
      },
      report,
      invalidations: new Map(),
    }
    shared.set(id, entry)
  }
  return entry
}

/**
 * Whether Next.js asks for a soft invalidation: durations (`revalidateTag(tag, profile)`) mark entries stale, served
 * once more while a fresh one renders; none (`updateTag`, `revalidatePath`) or an `expire` of 0 expire them at once,
 * as Next.js's own handlers read them.
 */
function isSoft(durations) {
  return durations !== undefined && durations !== null && durations.expire !== 0
}

/**
 * Invalidates tags once for both handlers: Next.js calls every `'use cache'` handler's `updateTags` and the
 * incremental handler's `revalidateTag` with the same tags at once, and they share one namespace. Strict: an
 * invalidation the L2 did not record rejects, so that Next.js reports it instead of losing it.
 */
function invalidate(store, tags, soft) {
  const list = [...new Set(typeof tags === 'string' ? [tags] : tags)]
  if (list.length === 0) return Promise.resolve()
  const id = `${soft}\0${list.join('\0')}`
  let running = store.invalidations.get(id)
  if (running === undefined) {
    const chunks = []
    for (let i = 0; i < list.length; i += RULES.maxTags) chunks.push(list.slice(i, i + RULES.maxTags))
    running = Promise.all(chunks.map((chunk) => store.cache.invalidateTags(chunk, { soft, strict: true })))
      .catch((error) => {
        // Next.js runs a route handler's revalidations after its response and may drop their failure: onError hears
        // of it too, with the tags that were not invalidated.
        store.report(
          Object.assign(new Error(`tags not invalidated (${list.join(', ')}): ${error.message}`, { cause: error }), {
            code: error.code,
            tags: list,
          }),
        )
        throw error
      })
      .finally(() => store.invalidations.delete(id))
    store.invalidations.set(id, running)
  }
  return running.then(() => undefined)
}

/**
 * `call()`, or `fallback` when it throws (a closed cache; L2 failures the cache absorbs itself, to `onError`), the
 * error reported: a handler's read or write never fails a render.
 */
async function reported(store, call, fallback) {
  try {
    return await call()
  } catch (error) {
    store.report(error)
    return fallback
  }
}

/** An entry, stale ones included, or `undefined`. */
const readEntry = (store, key) => reported(store, () => store.cache.getEntry(key), undefined)

/** A write fence for `key` (see `Cache.writeFence`), or `undefined` when the L2 failed: then nothing is stored. */
const writeFence = (store, key) => reported(store, () => store.cache.writeFence(key), undefined)

/** The latest invalidation of any of `tags` (ms, the L2's clock), 0 when none or when it cannot be read. */
const tagExpiration = (store, tags) => reported(store, () => store.cache.getTagExpiration(tags), 0)

/**
 * The cache key of a Next.js key: a prefix per handler, and a SHA-256 digest in place of a key longer than the
 * cache's `maxKeyLength` (`'use cache'` keys carry the serialized arguments and can be long).
 */
function keyOf(prefix, key, options) {
  const full = prefix + key
  const limit = (options?.cache === undefined ? options?.maxKeyLength : undefined) ?? RULE_OF.maxKeyLength.default
  if (Buffer.byteLength(full) <= limit) return full
  return `${prefix}#${createHash('sha256').update(key).digest('base64url')}`
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Bytes as a JSON value: as text when they are UTF-8 without NUL (RSC payloads and HTML nearly always are), which
 * JSON stores at about their own size; otherwise as base64 (4/3 of their size), since a JSON string cannot carry
 * arbitrary bytes and Postgres's JSONB refuses U+0000.
 */
function encodeBytes(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)
  if (!view.includes(0)) {
    try {
      return UTF8.decode(view)
    } catch {
      // Not UTF-8: base64 below.
    }
  }
  return { base64: Buffer.from(view.buffer, view.byteOffset, view.byteLength).toString('base64') }
}

function decodeBytes(stored) {
  return typeof stored === 'string' ? Buffer.from(stored, 'utf8') : Buffer.from(stored.base64, 'base64')
}

async function readAll(stream) {
  const chunks = []
  const reader = stream.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    chunks.push(value)
  }
  return Buffer.concat(chunks)
}

function streamOf(bytes) {
  return new ReadableStream({
    start(controller) {
      if (bytes.byteLength > 0) controller.enqueue(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      controller.close()
    },
  })
}

/** The TTL, in whole seconds, of an entry made at `timestamp` (ms) that Next.js may use for `expire` seconds. */
function ttlUntil(timestamp, expireSeconds) {
  if (typeof expireSeconds !== 'number' || !(expireSeconds < LONGEST_TTL_S)) return LONGEST_TTL_S
  const remainingMs = timestamp + expireSeconds * 1000 - Date.now()
  if (!(remainingMs > 0)) return undefined
  return Math.min(LONGEST_TTL_S, Math.max(1, Math.ceil(remainingMs / 1000)))
}

/**
 * Creates the handler of Next.js's `'use cache'` directive (`cacheHandlers` in `next.config`): the object a handler
 * module default-exports. See `next.d.ts` for the semantics.
 */
function createUseCacheHandler(options) {
  checkNextVersion()
  const store = sharedCache(options)
  /** Sets in progress in this process, by cache key: a `get` of the key waits for its `set`. */
  const pending = new Map()
  return {
    async get(cacheKey, _softTags) {
      const wait = pending.get(cacheKey)
      if (wait !== undefined) await wait
      const read = await readEntry(store, keyOf('uc:', cacheKey, options))
      if (read === undefined) return undefined
      const stored = read.value
      return {
        value: streamOf(decodeBytes(stored.value)),
        tags: stored.tags,
        stale: stored.stale,
        timestamp: stored.timestamp,
        expire: stored.expire,
        // Soft-invalidated (`revalidateTag(tag, 'max')`): served once more while Next.js makes a fresh one, as its
        // own handler signals it.
        revalidate: read.stale ? -1 : stored.revalidate,
      }
    },

    async set(cacheKey, pendingEntry) {
      let settle
      const done = new Promise((resolve) => (settle = resolve))
      pending.set(cacheKey, done)
      const key = keyOf('uc:', cacheKey, options)
      try {
        // Taken now, while Next.js renders: a revalidation of the entry's tags (or a write of the key) on any
        // instance during the render drops the write, since the render may have read the data before it.
        const fence = writeFence(store, key)
        const entry = await pendingEntry
        const bytes = await readAll(entry.value)
        // An `expire` of 0 is a dynamic entry Next.js regenerates on every read: storing it would be a wasted write.
        if (entry.expire === 0 && !process.env.__NEXT_DEV_SERVER) return
        const ttl = ttlUntil(entry.timestamp, entry.expire)
        const since = await fence
        if (ttl === undefined || since === undefined) return
        const { tags, stale, timestamp, expire, revalidate } = entry
        const stored = { value: encodeBytes(bytes), tags, stale, timestamp, expire, revalidate }
        await store.cache.set(key, stored, { ttl, tags, ifUnchangedSince: since })
      } catch (error) {
        // A stream that failed, or an entry the cache refuses (too large, a bad tag): nothing is stored, so that a
        // later read renders afresh.
        store.report(error)
      } finally {
        if (pending.get(cacheKey) === done) pending.delete(cacheKey)
        settle()
      }
    },

    async refreshTags() {
      // Nothing to pull: the invalidation bus keeps this instance's tag times current, and getExpiration reads the
      // L2's records.
    },

    getExpiration(tags) {
      return tagExpiration(store, tags)
    },

    updateTags(tags, durations) {
      return invalidate(store, tags, isSoft(durations))
    },
  }
}

/** Buffers and Maps of Buffers in a Next.js incremental cache value, as JSON values and back. */
function encodeValue(value) {
  if (value === null || typeof value !== 'object') return value
  switch (value.kind) {
    case 'APP_PAGE':
      return {
        ...value,
        rscData: value.rscData === undefined ? undefined : encodeBytes(value.rscData),
        segmentData:
          value.segmentData === undefined
            ? undefined
            : [...value.segmentData].map(([segment, bytes]) => [segment, encodeBytes(bytes)]),
      }
    case 'APP_ROUTE':
      return { ...value, body: encodeBytes(value.body) }
    case 'IMAGE':
      return { ...value, buffer: encodeBytes(value.buffer) }
    default:
      return value
  }
}

function decodeValue(value) {
  if (value === null || typeof value !== 'object') return value
  switch (value.kind) {
    case 'APP_PAGE':
      // Every field named, as Next.js makes them: JSON drops the ones that are undefined.
      return {
        kind: value.kind,
        html: value.html,
        rscData: value.rscData === undefined ? undefined : decodeBytes(value.rscData),
        headers: value.headers,
        postponed: value.postponed,
        status: value.status,
        segmentData:
          value.segmentData === undefined
            ? undefined
            : new Map(value.segmentData.map(([segment, bytes]) => [segment, decodeBytes(bytes)])),
      }
    case 'PAGES':
      return { kind: value.kind, html: value.html, pageData: value.pageData, headers: value.headers, status: value.status }
    case 'APP_ROUTE':
      return { ...value, body: decodeBytes(value.body) }
    case 'IMAGE':
      return { ...value, buffer: decodeBytes(value.buffer) }
    default:
      return value
  }
}

/** The tags of a page or route entry (its `x-next-cache-tags` header, implicit tags included) or of a fetch. */
function tagsOf(data, ctx) {
  if (data?.kind === 'FETCH') return ctx?.tags ?? data.tags ?? []
  const header = data?.headers?.[NEXT_CACHE_TAGS_HEADER]
  if (typeof header !== 'string' || header === '') return []
  return header.split(',')
}

/**
 * The `lastModified` that makes Next.js serve a soft-invalidated entry as stale (and render a fresh one in the
 * background): just past its revalidate time. `undefined` when the entry has no revalidate time to be past.
 */
function staleLastModified(value, cacheControl) {
  const revalidate = value?.kind === 'FETCH' ? value.revalidate : cacheControl?.revalidate
  if (typeof revalidate !== 'number') return undefined
  return Date.now() - revalidate * 1000 - 1000
}

/**
 * Creates the handler of Next.js's incremental cache (`cacheHandler` in `next.config`: pages, ISR, route handlers,
 * fetch, `unstable_cache`, images): the class a handler module default-exports. See `next.d.ts`.
 */
function createIncrementalCacheHandler(options) {
  checkNextVersion()
  const store = sharedCache(options)
  return class TieredCacheHandler {
    constructor(context) {
      this.context = context
    }

    async get(key, ctx) {
      const read = await readEntry(store, keyOf('ic:', key, options))
      if (read === undefined) return null
      const { lastModified, value, cacheControl, tags } = read.value
      if (value?.kind === 'FETCH' && ctx?.kind === 'FETCH') {
        // Tags the entry was not stored with: the page's implicit tags (`revalidatePath`) and tags the fetch gained.
        const others = [...(ctx.tags ?? []), ...(ctx.softTags ?? [])].filter((tag) => !tags.includes(tag))
        if (others.length > 0 && (await tagExpiration(store, others)) >= lastModified) return null
      }
      let served = lastModified
      if (read.stale) {
        served = staleLastModified(value, cacheControl)
        if (served === undefined) return null
      }
      return { lastModified: served, value: decodeValue(value), cacheControl }
    }

    async set(key, data, ctx) {
      try {
        const tags = tagsOf(data, ctx)
        const cacheControl = ctx?.cacheControl
        const lastModified = Date.now()
        const expire = data?.kind === 'FETCH' ? undefined : cacheControl?.expire
        const ttl = ttlUntil(lastModified, expire)
        if (ttl === undefined) return
        const stored = { lastModified, value: encodeValue(data), cacheControl, tags }
        const cacheKey = keyOf('ic:', key, options)
        // Next.js hands the value over once made, so the fence covers only the write itself (see next.d.ts).
        const since = await writeFence(store, cacheKey)
        if (since === undefined) return
        await store.cache.set(cacheKey, stored, { ttl, tags, ifUnchangedSince: since })
      } catch (error) {
        store.report(error)
      }
    }

    revalidateTag(tags, durations) {
      return invalidate(store, tags, isSoft(durations))
    }

    resetRequestCache() {
      // Nothing held per request: the L1 is coherent across requests and instances.
    }
  }
}

/**
 * The caches the handlers of this process use (one per distinct options, opened on first use, and every `Cache`
 * given as `{ cache }`), for an admin page or metrics: each has `namespace`, `backend` and `stats()`.
 */
function handlerCaches() {
  const caches = new Set()
  for (const entry of shared.values()) if (entry.opened) caches.add(entry.cache)
  for (const cache of given) caches.add(cache)
  return [...caches]
}

module.exports = {
  handlerCaches,
  createUseCacheHandler,
  createIncrementalCacheHandler,
  checkNextVersion,
  SUPPORTED_NEXT_MAJORS,
  ERR_NEXT_VERSION,
}
