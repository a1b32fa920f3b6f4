'use strict'

// The public `Cache`: argument checks that belong to JavaScript types, JSON (de)serialization in V8, the
// synchronous L1 path and per-thread single-flight of `getOrSet`. Everything else is native (see src/ and crates/).

const { NativeCache } = require('./binding.js')

function cacheError(ErrorClass, code, message) {
  const error = new ErrorClass(message)
  error.code = code
  return error
}

function fromInfo(info) {
  return cacheError(Error, info.code, info.message)
}

function checkKey(key) {
  if (typeof key !== 'string') {
    throw cacheError(TypeError, 'ERR_CACHE_INVALID_KEY', `a key must be a string; got ${typeof key}`)
  }
  // A lone surrogate would reach native code as U+FFFD, and two different keys would share an entry.
  if (!key.isWellFormed()) {
    throw cacheError(TypeError, 'ERR_CACHE_INVALID_KEY', 'a key must be well-formed text (no lone surrogates)')
  }
}

function serialize(value) {
  let json
  try {
    json = JSON.stringify(value)
  } catch (cause) {
    throw cacheError(TypeError, 'ERR_CACHE_INVALID_VALUE', `the value cannot be stored as JSON: ${cause.message}`)
  }
  if (json === undefined) {
    throw cacheError(TypeError, 'ERR_CACHE_INVALID_VALUE', `the value cannot be stored as JSON: ${typeof value}`)
  }
  return json
}

const MAX_TTL_SECONDS = 2_592_000
const DEFAULT_L1_MAX_ENTRIES = 10_000

/**
 * Checked here, not only natively, because a getOrSet answered from the L1 never reaches native code with its TTL,
 * and a bad TTL must throw whatever the cache holds. Same rule as crates/core/src/ttl.rs.
 */
function ttlSeconds(ttl) {
  const seconds = ttl !== null && typeof ttl === 'object' ? ttl.ttl : ttl
  if (seconds === undefined) return undefined
  if (Number.isInteger(seconds) && seconds >= 1 && seconds <= MAX_TTL_SECONDS) return seconds
  throw cacheError(
    TypeError,
    'ERR_CACHE_INVALID_TTL',
    `a TTL must be an integer number of seconds from 1 to ${MAX_TTL_SECONDS}, or { ttl: seconds }; got ${String(seconds)}`,
  )
}

function deepFreeze(value) {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const key of Object.keys(value)) deepFreeze(value[key])
  }
  return value
}

/**
 * With `immutable: true`, the values this thread parsed, by key, with the L1 version they were parsed from: an L1
 * hit whose version has not moved hands back the same frozen value instead of parsing the JSON text again. Bounded
 * like the L1; the oldest parse goes first.
 */
class FrozenValues {
  #byKey = new Map()
  #max

  constructor(max) {
    this.#max = max
  }

  l1Get(native, key) {
    const version = native.l1Version(key)
    if (version < 0) {
      this.#byKey.delete(key)
      return undefined
    }
    const known = this.#byKey.get(key)
    if (known !== undefined && known.version === version) return known.value
    const json = native.l1Peek(key)
    if (json == null) return undefined
    const value = deepFreeze(JSON.parse(json))
    this.#byKey.delete(key)
    this.#byKey.set(key, { version, value })
    if (this.#byKey.size > this.#max) this.#byKey.delete(this.#byKey.keys().next().value)
    return value
  }

  clear() {
    this.#byKey.clear()
  }
}

function errorMessage(error) {
  return error instanceof Error ? error.message : String(error)
}

/** Calls the user's hook; a hook that throws must not break the call that reported. */
function reporterFor(onError) {
  if (onError === undefined) return undefined
  return (info) => {
    try {
      onError(fromInfo(info))
    } catch {
      // Documented: an exception thrown by onError is ignored.
    }
  }
}

class Cache {
  #native
  #report
  /** Per-thread single-flight: the JSON text each in-progress getOrSet load will produce, by key. */
  #loads = new Map()
  /** `immutable: true`: the frozen values of this thread; `null` otherwise. */
  #frozen = null
  #parse = JSON.parse

  constructor(options = {}) {
    if (options === null || typeof options !== 'object') {
      throw cacheError(TypeError, 'ERR_CACHE_INVALID_OPTION', 'options must be an object')
    }
    const { onError, immutable, ...rest } = options
    if (onError !== undefined && typeof onError !== 'function') {
      throw cacheError(TypeError, 'ERR_CACHE_INVALID_OPTION', 'option `onError` must be a function')
    }
    if (immutable !== undefined && typeof immutable !== 'boolean') {
      throw cacheError(TypeError, 'ERR_CACHE_INVALID_OPTION', 'option `immutable` must be a boolean')
    }
    for (const [name, value] of Object.entries(rest)) {
      if (typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') {
        throw cacheError(TypeError, 'ERR_CACHE_INVALID_OPTION', `option \`${name}\` has an invalid type`)
      }
      if (value === undefined) delete rest[name]
    }
    const report = reporterFor(onError)
    this.#report = report ?? (() => {})
    this.#native = new NativeCache(rest, report)
    if (immutable) {
      const l1 = rest.l1
      this.#frozen = new FrozenValues(l1 && typeof l1.maxEntries === 'number' ? l1.maxEntries : DEFAULT_L1_MAX_ENTRIES)
      this.#parse = (json) => deepFreeze(JSON.parse(json))
    }
  }

  /** The L1 hit of `key` as a value, or `undefined` on an L1 miss. */
  #l1Value(key) {
    if (this.#frozen !== null) return this.#frozen.l1Get(this.#native, key)
    const json = this.#native.l1Get(key)
    return json == null ? undefined : JSON.parse(json)
  }

  get namespace() {
    return this.#native.namespace
  }

  get backend() {
    return this.#native.backend
  }

  #absorbed(info) {
    if (info) this.#report(info)
  }

  get(key) {
    checkKey(key)
    const hit = this.#l1Value(key)
    if (hit !== undefined) return Promise.resolve(hit)
    return this.#native.get(key).then((read) => {
      this.#absorbed(read.error)
      return read.json == null ? undefined : this.#parse(read.json)
    })
  }

  set(key, value, ttl) {
    checkKey(key)
    const json = serialize(value)
    return this.#native.set(key, json, ttlSeconds(ttl)).then((error) => this.#absorbed(error))
  }

  getOrSet(key, loader, ttl) {
    checkKey(key)
    if (typeof loader !== 'function') {
      throw cacheError(TypeError, 'ERR_CACHE_INVALID_LOADER', `a loader must be a function; got ${typeof loader}`)
    }
    const seconds = ttlSeconds(ttl)
    const hit = this.#l1Value(key)
    if (hit !== undefined) return Promise.resolve(hit)
    let load = this.#loads.get(key)
    if (load === undefined) {
      load = this.#load(key, loader, seconds).finally(() => this.#loads.delete(key))
      this.#loads.set(key, load)
    }
    // Each caller parses its own copy (or gets a frozen one): no two callers ever share one mutable object.
    return load.then(this.#parse)
  }

  async #load(key, loader, seconds) {
    const started = await this.#native.beginLoad(key)
    this.#absorbed(started.error)
    if (started.json != null) return started.json
    if (started.failure) throw fromInfo(started.failure)
    let json
    try {
      json = serialize(await loader())
    } catch (error) {
      await this.#native.failLoad(started.lease, errorMessage(error))
      throw error
    }
    this.#absorbed(await this.#native.completeLoad(started.lease, json, seconds))
    return json
  }

  delete(...keys) {
    keys.forEach(checkKey)
    return this.#native.delete(keys).then((removed) => {
      this.#absorbed(removed.error)
      return removed.count
    })
  }

  has(key) {
    checkKey(key)
    return this.#native.has(key).then((found) => {
      this.#absorbed(found.error)
      return found.count === 1
    })
  }

  clear() {
    return this.#native.clear().then((removed) => this.#absorbed(removed.error))
  }

  invalidatePattern(pattern) {
    if (typeof pattern !== 'string') {
      throw cacheError(TypeError, 'ERR_CACHE_INVALID_PATTERN', `a pattern must be a string; got ${typeof pattern}`)
    }
    return this.#native.invalidatePattern(pattern).then((removed) => {
      this.#absorbed(removed.error)
      return removed.count
    })
  }

  stats() {
    return Promise.resolve(this.#native.stats())
  }

  close() {
    this.#native.close()
    this.#loads.clear()
    this.#frozen?.clear()
    return Promise.resolve()
  }
}

module.exports = { Cache }
module.exports.Cache = Cache
