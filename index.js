'use strict'

// The public `Cache`: argument checks that belong to JavaScript types, JSON (de)serialization in V8, the
// synchronous L1 path and per-thread single-flight of `getOrSet`. Everything else is native (see src/ and crates/).

const { NativeCache, rules, checkTags } = require('./binding.js')
const channels = require('./diagnostics.js')
const { loggerFor } = require('./logger.js')

const { operation: OPERATION, loader: LOADER } = channels

/** Every limit, default and error code comes from the core (crates/core/src/rules.rs), written there once. */
const RULES = rules()
const CODES = RULES.errorCodes
const RULE_OF = Object.fromEntries(RULES.options.map((rule) => [rule.name, rule]))
const SET_OPTIONS = new Set([...RULES.perCallOptions.set, ...RULES.perCallOptions.fencedSet])
// A batch write is unconditional: a fence belongs to one key's read-then-write.
const SET_MANY_OPTIONS = new Set(RULES.perCallOptions.set)
const GET_OR_SET_OPTIONS = new Set(RULES.perCallOptions.getOrSet)
const INVALIDATE_TAGS_OPTIONS = new Set(['soft', 'strict'])
// The failures that mean the L2 did not take a call (as opposed to a bus that did not echo it).
const L2_FAILURES = new Set([CODES.L2Unavailable, CODES.L2Timeout, CODES.L2])

function cacheError(ErrorClass, code, message, options) {
  const error = new ErrorClass(message, options)
  error.code = code
  return error
}

function fromInfo(info) {
  return cacheError(Error, info.code, info.message)
}

/**
 * What every caller that waited for another caller's load gets when that load fails, whatever thread ran it: the
 * loader's message under `ERR_CACHE_LOADER_FAILED`, the loader's error as `cause` (the error itself in this thread,
 * an `Error` with its message from another).
 */
function loaderFailed(message, cause = new Error(message)) {
  return cacheError(Error, CODES.LoaderFailed, message, { cause })
}

/** What a `getOrSet` caller gets past its `hardTimeout`; the load itself goes on and stores its value. */
function loaderTimeout(ms) {
  return cacheError(
    Error,
    CODES.LoaderTimeout,
    `the loader did not settle within ${ms / 1000} s (hardTimeout); its value will be stored when it comes`,
  )
}

/** A lone surrogate would reach native code as U+FFFD, and two different strings would become one. */
function checkWellFormed(text, code, what) {
  if (!text.isWellFormed()) {
    throw cacheError(TypeError, code, `${what} must be well-formed text (no lone surrogates)`)
  }
}

function checkKey(key) {
  if (typeof key !== 'string') {
    throw cacheError(TypeError, CODES.InvalidKey, `a key must be a string; got ${typeof key}`)
  }
  checkWellFormed(key, CODES.InvalidKey, 'a key')
}

function serialize(value) {
  let json
  try {
    json = JSON.stringify(value)
  } catch (cause) {
    throw cacheError(TypeError, CODES.InvalidValue, `the value cannot be stored as JSON: ${cause.message}`)
  }
  if (json === undefined) {
    throw cacheError(TypeError, CODES.InvalidValue, `the value cannot be stored as JSON: ${typeof value}`)
  }
  return json
}

function invalidTtl(message) {
  return cacheError(TypeError, CODES.InvalidTtl, message)
}

function accepts(rule, value) {
  return (
    typeof value === 'number' &&
    (rule.integer ? Number.isInteger(value) : Number.isFinite(value)) &&
    value >= rule.min &&
    value <= rule.max
  )
}

/**
 * A call's options: a number (the TTL) or a plain object of the options `known` for that method, each checked by the
 * rule of the constructor option of its name (`RULES`). Checked here, not only natively, because a getOrSet answered
 * from the L1 never reaches native code, and a bad option must throw whatever the cache holds. A typo
 * (`{ ttll: 60 }`) throws instead of silently meaning the default.
 */
function callOptions(argument, known) {
  if (argument === undefined) return {}
  if (argument === null || typeof argument !== 'object') {
    if (accepts(RULE_OF.ttl, argument)) return { ttl: argument }
    throw invalidTtl(
      `a TTL must be an integer number of seconds from ${RULE_OF.ttl.min} to ${RULE_OF.ttl.max}, or { ttl: seconds }; got ${String(argument)}`,
    )
  }
  const prototype = Object.getPrototypeOf(argument)
  if (Array.isArray(argument) || (prototype !== Object.prototype && prototype !== null)) {
    throw invalidTtl('per-call options must be a plain object, such as { ttl: 60 }')
  }
  for (const [name, value] of Object.entries(argument)) {
    if (!known.has(name)) {
      throw invalidTtl(`unknown per-call option \`${name}\`; the known ones are: ${[...known].join(', ')}`)
    }
    if (name === 'tags') {
      if (value !== undefined) checkTagList(value)
      continue
    }
    // A fence has no numeric rule: the core checks its range (every set reaches the core); only its type is here,
    // where the binding would otherwise throw a conversion error without our code.
    if (name === 'ifUnchangedSince') {
      if (value !== undefined && typeof value !== 'number') {
        throw invalidTtl(`per-call option \`ifUnchangedSince\` must be a fence from writeFence(); got ${typeof value}`)
      }
      continue
    }
    const rule = RULE_OF[name]
    if (value !== undefined && !accepts(rule, value)) {
      const kind = rule.integer ? 'an integer' : 'a number'
      const of = rule.unit === 'seconds' ? ' of seconds' : ''
      throw invalidTtl(`per-call option \`${name}\` must be ${kind}${of} from ${rule.min} to ${rule.max}; got ${String(value)}`)
    }
  }
  return argument
}

/** Tags: an array of well-formed strings, then the core's rules (count, length, no NUL). */
function checkTagList(tags) {
  if (!Array.isArray(tags)) {
    throw cacheError(TypeError, CODES.InvalidTag, `tags must be an array of strings; got ${typeof tags}`)
  }
  for (const tag of tags) {
    if (typeof tag !== 'string') {
      throw cacheError(TypeError, CODES.InvalidTag, `a tag must be a string; got ${typeof tag}`)
    }
    checkWellFormed(tag, CODES.InvalidTag, 'a tag')
  }
  checkTags(tags)
  return tags
}

/**
 * Options cross into native code as JSON, which has no NaN or Infinity: such a number is refused here, named, with
 * the code every other bad option gets.
 */
function checkFiniteNumbers(value, path) {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw cacheError(TypeError, CODES.InvalidOption, `option \`${path}\` must be a finite number`)
  }
  if (value !== null && typeof value === 'object') {
    for (const [name, inner] of Object.entries(value)) checkFiniteNumbers(inner, path ? `${path}.${name}` : name)
  }
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
 * like the L1, by entries and by bytes of JSON text (`l1.maxEntries`, `l1.maxBytes`, per thread); the oldest parse
 * goes first, and a value whose L1 entry went is dropped at its next read.
 */
class FrozenValues {
  #byKey = new Map()
  #bytes = 0
  #maxEntries
  #maxBytes

  constructor([maxEntries, maxBytes]) {
    this.#maxEntries = maxEntries
    this.#maxBytes = maxBytes
  }

  #forget(key) {
    const known = this.#byKey.get(key)
    if (known === undefined) return
    this.#byKey.delete(key)
    this.#bytes -= known.bytes
  }

  l1Get(native, key) {
    const version = native.l1Version(key)
    if (version < 0) {
      this.#forget(key)
      return undefined
    }
    const known = this.#byKey.get(key)
    if (known !== undefined && known.version === version) return known.value
    const json = native.l1Peek(key)
    if (json == null) return undefined
    const value = deepFreeze(JSON.parse(json))
    this.#forget(key)
    const bytes = key.length + json.length
    if (bytes > this.#maxBytes) return value
    this.#byKey.set(key, { version, value, bytes })
    this.#bytes += bytes
    while (this.#byKey.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      this.#forget(this.#byKey.keys().next().value)
    }
    return value
  }

  clear() {
    this.#byKey.clear()
    this.#bytes = 0
  }
}

const TIMED_OUT = Symbol('timed out')

/** A traced read answered by `tier`, a hit (`undefined`: a miss). */
function found(trace, tier) {
  trace.hit = tier !== undefined
  trace.tier = tier
  trace.stale = false
}

function errorMessage(error) {
  return error instanceof Error ? error.message : String(error)
}

/** Calls the user's hook with an error; a hook that throws must not break the call that reported. */
function reporterFor(onError) {
  if (onError === undefined) return undefined
  return (error) => {
    try {
      onError(error)
    } catch {
      // Documented: an exception thrown by onError is ignored.
    }
  }
}

/** The loader's call, as a promise whatever it returns or throws, for `tiered-cache:loader` to trace. */
function callLoader(loader, context) {
  return new Promise((resolve) => resolve(loader(context)))
}

class Cache {
  #native
  #report
  /** The namespace, read once: every traced call names it. */
  #namespace
  #backend
  /** The `logger` option's child, or `undefined`. */
  #logger
  /** Per-thread single-flight: the JSON text each in-progress getOrSet load will produce, by key. */
  #loads = new Map()
  /** The abort controllers of the loaders running in this thread: `close()` aborts them. */
  #running = new Set()
  /** `immutable: true`: the frozen values of this thread; `null` otherwise. */
  #frozen = null
  #parse = JSON.parse
  /** The L1 misses of `get` in this turn, waiting to be read from the L2 together; `null` when there are none. */
  #l2Reads = null

  constructor(options = {}) {
    if (options === null || typeof options !== 'object') {
      throw cacheError(TypeError, CODES.InvalidOption, 'options must be an object')
    }
    const { onError, immutable, logger, ...rest } = options
    if (onError !== undefined && typeof onError !== 'function') {
      throw cacheError(TypeError, CODES.InvalidOption, 'option `onError` must be a function')
    }
    if (immutable !== undefined && typeof immutable !== 'boolean') {
      throw cacheError(TypeError, CODES.InvalidOption, 'option `immutable` must be a boolean')
    }
    checkFiniteNumbers(rest, '')
    for (const [name, value] of Object.entries(rest)) {
      if (typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') {
        throw cacheError(TypeError, CODES.InvalidOption, `option \`${name}\` has an invalid type`)
      }
      if (value === undefined) delete rest[name]
    }
    const log = loggerFor(logger, CODES.InvalidOption)
    const report = reporterFor(onError)
    this.#report = report ?? (() => {})
    // Transitions are always handed over (once per change, never per call): a channel may be subscribed at any time.
    this.#native = new NativeCache(
      rest,
      report && ((info) => report(fromInfo(info))),
      (info) => this.#transition(info),
    )
    this.#namespace = this.#native.namespace
    this.#backend = this.#native.backend
    this.#logger = log?.(this.#namespace, this.#backend)
    if (immutable) {
      this.#frozen = new FrozenValues(this.#native.l1Bounds)
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

  /** A breaker or bus transition from the core: published on its channel and logged, once each. */
  #transition({ subject, state }) {
    const channel = channels.transitionChannels[subject]
    if (channel.hasSubscribers) channel.publish({ namespace: this.#namespace, backend: this.#backend, state })
    this.#logger?.transition(subject, state)
  }

  /**
   * Runs a public call inside `tiered-cache:operation` (only called when it has subscribers): `method` gets the
   * context as its last argument and fills in `hit`, `tier` and `stale` before its promise settles.
   */
  #traced(operation, key, method, ...args) {
    const context = {
      operation,
      namespace: this.#namespace,
      backend: this.#backend,
      key,
      hit: undefined,
      tier: undefined,
      stale: undefined,
    }
    return OPERATION.tracePromise(method, context, this, ...args, context)
  }

  #absorbed(info) {
    if (info) this.#report(fromInfo(info))
  }

  get(key) {
    if (OPERATION.hasSubscribers) return this.#traced('get', key, this.#get, key)
    return this.#get(key)
  }

  #get(key, trace) {
    checkKey(key)
    const hit = this.#l1Value(key)
    if (hit !== undefined) {
      if (trace !== undefined) found(trace, 'l1')
      return Promise.resolve(hit)
    }
    return this.#readL2(key).then((read) => {
      this.#absorbed(read.error)
      if (trace !== undefined) found(trace, read.json == null ? undefined : 'l2')
      return read.json == null ? undefined : this.#parse(read.json)
    })
  }

  /**
   * An L1 miss of `get`, read from the L2 together with the other misses of this turn of the event loop: one native
   * call, one L2 round trip (see `getMany`) and one completion for all of them, instead of two thread hops each.
   * Each read keeps its own generation guard and counts, and every caller of a failed batch hears of its failure.
   */
  #readL2(key) {
    let batch = this.#l2Reads
    if (batch === null) {
      batch = this.#l2Reads = { keys: [], callers: [] }
      queueMicrotask(() => this.#flushL2Reads(batch))
    }
    batch.keys.push(key)
    return new Promise((resolve, reject) => batch.callers.push({ resolve, reject }))
  }

  #flushL2Reads(batch) {
    this.#l2Reads = null
    const { keys, callers } = batch
    let read
    try {
      read = keys.length === 1 ? this.#native.get(keys[0]) : this.#native.getMany(keys)
    } catch (error) {
      // Closed since the calls began (their keys were checked by the L1 lookup that missed).
      for (const caller of callers) caller.reject(error)
      return
    }
    read.then(
      (result) => {
        if (keys.length === 1) return callers[0].resolve(result)
        for (let i = 0; i < callers.length; i++) callers[i].resolve({ json: result.values[i], error: result.error })
      },
      (error) => callers.forEach((caller) => caller.reject(error)),
    )
  }

  getMany(keys) {
    if (OPERATION.hasSubscribers) return this.#traced('getMany', keys, this.#getMany, keys)
    return this.#getMany(keys)
  }

  #getMany(keys, trace) {
    if (!Array.isArray(keys)) {
      throw cacheError(TypeError, CODES.InvalidKey, `getMany takes an array of keys; got ${typeof keys}`)
    }
    keys.forEach(checkKey)
    const values = new Array(keys.length).fill(undefined)
    // Each key once, with the positions it answers: a key given twice is looked up, and counted, once.
    const positions = new Map()
    for (let i = 0; i < keys.length; i++) {
      const known = positions.get(keys[i])
      if (known === undefined) positions.set(keys[i], [i])
      else known.push(i)
    }
    const missed = new Map()
    for (const [key, at] of positions) {
      const hit = this.#l1Value(key)
      if (hit === undefined) missed.set(key, at)
      // Each position gets its own copy (or the one frozen value), as separate gets would.
      else for (let j = 0; j < at.length; j++) values[at[j]] = j === 0 || this.#frozen !== null ? hit : structuredClone(hit)
    }
    if (missed.size === 0) {
      if (trace !== undefined) found(trace, 'l1')
      return Promise.resolve(values)
    }
    return this.#native.getMany([...missed.keys()]).then((read) => {
      this.#absorbed(read.error)
      let misses = 0
      let at = 0
      for (const positions of missed.values()) {
        const json = read.values[at++]
        if (json == null) misses += positions.length
        // Each position parses its own copy (or gets a frozen one), as separate gets would.
        else for (const i of positions) values[i] = this.#parse(json)
      }
      if (trace !== undefined) found(trace, misses === 0 ? 'l2' : undefined)
      return values
    })
  }

  getEntry(key) {
    if (OPERATION.hasSubscribers) return this.#traced('getEntry', key, this.#getEntry, key)
    return this.#getEntry(key)
  }

  #getEntry(key, trace) {
    checkKey(key)
    // Always through the native read, even for an L1 hit: measured in bench/next, answering a hit synchronously cut
    // Next.js's requests/s by a third (2,300 against 3,700 on a cached page), because its response cache lets
    // concurrent requests for one page share a get only while that get is pending.
    return this.#native.getEntry(key).then((read) => {
      this.#absorbed(read.error)
      if (trace !== undefined) {
        // The native read does not say which tier answered.
        trace.hit = read.json != null && !read.stale
        trace.stale = read.stale
      }
      return read.json == null ? undefined : { value: this.#parse(read.json), stale: read.stale }
    })
  }

  set(key, value, ttl) {
    if (OPERATION.hasSubscribers) return this.#traced('set', key, this.#set, key, value, ttl)
    return this.#set(key, value, ttl)
  }

  #set(key, value, ttl) {
    checkKey(key)
    const json = serialize(value)
    const call = callOptions(ttl, SET_OPTIONS)
    const written = this.#native.set(key, json, call.ttl, call.grace, call.tags, call.ifUnchangedSince)
    this.#forgetLoads([key])
    const fenced = call.ifUnchangedSince !== undefined
    return written.then((result) => {
      this.#absorbed(result.error)
      // Only a fenced write says whether it was stored; a plain one resolves to nothing, as it always has.
      if (fenced) return result.count === 1
    })
  }

  setMany(entries) {
    if (OPERATION.hasSubscribers) {
      const keys = Array.isArray(entries) ? entries.map((entry) => entry?.key) : entries
      return this.#traced('setMany', keys, this.#setMany, entries)
    }
    return this.#setMany(entries)
  }

  #setMany(entries) {
    if (!Array.isArray(entries)) {
      throw cacheError(TypeError, CODES.InvalidValue, `setMany takes an array of { key, value } entries; got ${typeof entries}`)
    }
    const batch = entries.map((entry, index) => {
      try {
        if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
          throw cacheError(TypeError, CODES.InvalidValue, 'an entry must be an object such as { key, value, ttl }')
        }
        const { key, value, ...options } = entry
        checkKey(key)
        const json = serialize(value)
        const call = callOptions(options, SET_MANY_OPTIONS)
        return { key, json, ttl: call.ttl, grace: call.grace, tags: call.tags }
      } catch (error) {
        error.message = `setMany entry ${index}: ${error.message}`
        throw error
      }
    })
    const written = this.#native.setMany(batch)
    this.#forgetLoads(batch.map((entry) => entry.key))
    return written.then((error) => this.#absorbed(error))
  }

  writeFence(key) {
    if (OPERATION.hasSubscribers) return this.#traced('writeFence', key, this.#writeFence, key)
    return this.#writeFence(key)
  }

  #writeFence(key) {
    checkKey(key)
    return this.#native.writeFence(key).then((fence) => {
      this.#absorbed(fence.error)
      return fence.count < 0 ? undefined : fence.count
    })
  }

  getOrSet(key, loader, options) {
    if (OPERATION.hasSubscribers) return this.#traced('getOrSet', key, this.#getOrSet, key, loader, options)
    return this.#getOrSet(key, loader, options)
  }

  #getOrSet(key, loader, options, trace) {
    checkKey(key)
    if (typeof loader !== 'function') {
      throw cacheError(TypeError, CODES.InvalidLoader, `a loader must be a function; got ${typeof loader}`)
    }
    const call = callOptions(options, GET_OR_SET_OPTIONS)
    const hit = this.#l1Value(key)
    if (hit !== undefined) {
      if (trace !== undefined) found(trace, 'l1')
      this.#refreshEarly(key, loader, call)
      return Promise.resolve(hit)
    }
    // `stale`: set once a stale value is at hand, which turns the hard timeout into a soft one. `source`: where the
    // value came from ('l2', 'loader' or 'stale'), for the trace.
    const caller = { abort: new AbortController(), stale: false, source: undefined }
    const load = this.#loads.get(key)
    // Each caller parses its own copy (or gets a frozen one): no two callers ever share one mutable object.
    const json =
      load === undefined ? this.#lead(key, loader, call, caller) : this.#follow(load, key, loader, call, caller)
    const value = this.#within(json, this.#hardTimeoutMs(call), caller).then(this.#parse)
    if (trace === undefined) return value
    return value.then((parsed) => {
      // Waiters on this thread's load take its leader's source: a value it loaded, or found in the L2.
      const source = caller.source ?? load?.caller.source
      trace.hit = source === 'l2'
      trace.tier = source === 'stale' ? undefined : source
      trace.stale = source === 'stale'
      return parsed
    })
  }

  /** The call's hard timeout in ms, or the cache's; `undefined` for none. */
  #hardTimeoutMs(call) {
    return call.hardTimeout === undefined ? this.#native.hardTimeoutMs : call.hardTimeout * 1000
  }

  /** The call's soft timeout in ms, or the cache's; `undefined` for none. */
  #softTimeoutMs(call) {
    return call.timeout === undefined ? this.#native.softTimeoutMs : call.timeout * 1000
  }

  /**
   * The caller's wait for `json`, bounded by its hard timeout: past it, the caller gets `ERR_CACHE_LOADER_TIMEOUT`
   * and its loader's signal is aborted, but the load is not dropped: whoever else waits still gets it, and a value
   * that comes is stored. A caller with a stale value at hand gets that instead (see `#orStale`).
   */
  #within(json, ms, caller) {
    if (ms == null) return json
    let timer
    const timedOut = new Promise((_, reject) => {
      // Not unref'd: a caller is waiting on it, as on any I/O.
      timer = setTimeout(() => {
        if (caller.stale) return
        const error = loaderTimeout(ms)
        caller.abort.abort(error)
        reject(error)
      }, ms)
    })
    return Promise.race([json, timedOut]).finally(() => clearTimeout(timer))
  }

  #lead(key, loader, call, caller) {
    let loaderStarted
    const started = new Promise((resolve) => (loaderStarted = resolve))
    const load = { started, json: undefined, caller }
    load.json = this.#load(key, loader, call, caller, true, loaderStarted).finally(() => {
      loaderStarted()
      if (this.#loads.get(key) === load) this.#loads.delete(key)
    })
    this.#loads.set(key, load)
    return load.json
  }

  /**
   * Waits for this thread's load of the key; once its loader runs, only as long as a caller in another thread or
   * process would (`lockTimeout`), then loads itself: a loader that never settles holds up no one for longer.
   */
  #follow(load, key, loader, call, caller) {
    this.#native.countLockWait()
    let timer
    const waited = load.started.then(
      () =>
        new Promise((resolve) => {
          // Not unref'd: a caller is waiting on it, as on any I/O.
          timer = setTimeout(resolve, this.#native.lockTimeoutMs, TIMED_OUT)
        }),
    )
    return Promise.race([load.json, waited]).then(
      (json) => {
        clearTimeout(timer)
        return json === TIMED_OUT ? this.#load(key, loader, call, caller, false) : json
      },
      (error) => {
        clearTimeout(timer)
        throw error?.code === CODES.LoaderFailed ? error : loaderFailed(errorMessage(error), error)
      },
    )
  }

  async #load(key, loader, call, caller, waitForOthers, loaderStarted) {
    const started = await this.#native.beginLoad(key, waitForOthers, call.timeout)
    this.#absorbed(started.error)
    if (started.json != null) {
      caller.source = 'l2'
      this.#refreshEarly(key, loader, call)
      return started.json
    }
    if (started.failure) throw loaderFailed(started.failure.message)
    // Another caller's load failed or outlasted this call's soft timeout (counted natively).
    if (started.lease == null && started.stale != null) {
      caller.source = 'stale'
      return started.stale
    }
    caller.source = 'loader'
    const { lease, stale } = started
    const { abort } = caller
    loaderStarted?.()
    const context = { signal: abort.signal, stale: stale == null ? undefined : this.#parse(stale) }
    const loaded = this.#run(loader, context, lease, call, abort, key, 'getOrSet')
    if (stale == null) return loaded
    caller.stale = true
    return this.#orStale(loaded, stale, call, caller)
  }

  /**
   * Runs the loader and settles its lease: stored when the value comes, its waiters failed over when it throws. The
   * loader's `abort` is `close()`'s to abort while it runs.
   */
  async #run(loader, context, lease, call, abort, key, operation) {
    this.#running.add(abort)
    let json
    try {
      const loaded = LOADER.hasSubscribers
        ? LOADER.tracePromise(callLoader, { operation, namespace: this.#namespace, key }, undefined, loader, context)
        : loader(context)
      json = serialize(await loaded)
    } catch (error) {
      if (lease != null) await this.#native.failLoad(lease, errorMessage(error))
      throw error
    } finally {
      this.#running.delete(abort)
    }
    if (lease != null) this.#absorbed(await this.#native.completeLoad(lease, json, call.ttl, call.grace, call.tags))
    return json
  }

  /**
   * With a stale value at hand: the loaded value, or the stale one when the load fails (stale-if-error, the error
   * to `onError`) or takes longer than the soft timeout (or the hard one, which a stale value turns soft). The load
   * goes on behind a stale answer, and stores its value when it comes.
   */
  #orStale(loaded, stale, call, caller) {
    let served = false
    const serveStale = () => {
      if (!served) this.#native.countStaleHit()
      served = true
      caller.source = 'stale'
      return stale
    }
    const guarded = loaded.catch((error) => {
      this.#report(loaderFailed(errorMessage(error), error))
      return serveStale()
    })
    const softMs = this.#softTimeoutMs(call)
    const hardMs = this.#hardTimeoutMs(call)
    const waitMs = softMs == null ? hardMs : hardMs == null ? softMs : Math.min(softMs, hardMs)
    if (waitMs == null) return guarded
    if (waitMs === 0) return serveStale()
    let timer
    const timedOut = new Promise((resolve) => {
      // Not unref'd: a caller is waiting on it, as on any I/O.
      timer = setTimeout(() => resolve(serveStale()), waitMs)
    })
    return Promise.race([guarded, timedOut]).finally(() => clearTimeout(timer))
  }

  /**
   * `earlyRefresh`: a hit on an entry near the end of its TTL starts one background reload (claimed once per entry,
   * single-flight across threads and processes). The caller never waits for it; its failure goes to `onError`.
   */
  #refreshEarly(key, loader, call) {
    if (call.earlyRefresh === undefined && this.#native.earlyRefresh == null) return
    let refresh
    try {
      if (!this.#native.claimRefresh(key, call.ttl, call.earlyRefresh)) return
      refresh = this.#native.beginRefresh(key, call.ttl, call.earlyRefresh)
    } catch {
      // Closed since the hit: the caller has its value, and there is nothing left to refresh.
      return
    }
    const abort = new AbortController()
    refresh.then(
      (started) => {
        this.#absorbed(started.error)
        if (started.lease == null) return
        const context = { signal: abort.signal, stale: undefined }
        this.#run(loader, context, started.lease, call, abort, key, 'earlyRefresh').catch((error) =>
          this.#report(loaderFailed(errorMessage(error), error)),
        )
      },
      (error) => this.#report(error),
    )
  }

  /** A change of these keys: a getOrSet that starts after it must not join a load that started before it. */
  #forgetLoads(keys) {
    if (keys === undefined) this.#loads.clear()
    else for (const key of keys) this.#loads.delete(key)
  }

  delete(...keys) {
    if (OPERATION.hasSubscribers) return this.#traced('delete', keys.length === 1 ? keys[0] : keys, this.#delete, keys)
    return this.#delete(keys)
  }

  #delete(keys) {
    keys.forEach(checkKey)
    this.#forgetLoads(keys)
    return this.#native.delete(keys).then((removed) => {
      this.#absorbed(removed.error)
      return removed.count
    })
  }

  has(key) {
    if (OPERATION.hasSubscribers) return this.#traced('has', key, this.#has, key)
    return this.#has(key)
  }

  #has(key) {
    checkKey(key)
    return this.#native.has(key).then((found) => {
      this.#absorbed(found.error)
      return found.count === 1
    })
  }

  clear() {
    if (OPERATION.hasSubscribers) return this.#traced('clear', undefined, this.#clear)
    return this.#clear()
  }

  #clear() {
    this.#forgetLoads()
    return this.#native.clear().then((removed) => this.#absorbed(removed.error))
  }

  invalidatePattern(pattern) {
    if (OPERATION.hasSubscribers) return this.#traced('invalidatePattern', pattern, this.#invalidatePattern, pattern)
    return this.#invalidatePattern(pattern)
  }

  #invalidatePattern(pattern) {
    if (typeof pattern !== 'string') {
      throw cacheError(TypeError, CODES.InvalidPattern, `a pattern must be a string; got ${typeof pattern}`)
    }
    checkWellFormed(pattern, CODES.InvalidPattern, 'a pattern')
    const removal = this.#native.invalidatePattern(pattern)
    this.#forgetLoads()
    return removal.then((removed) => {
      this.#absorbed(removed.error)
      return removed.count
    })
  }

  invalidateTags(tags, options) {
    if (OPERATION.hasSubscribers) return this.#traced('invalidateTags', tags, this.#invalidateTags, tags, options)
    return this.#invalidateTags(tags, options)
  }

  #invalidateTags(tags, options) {
    const list = checkTagList(typeof tags === 'string' ? [tags] : tags)
    let soft = false
    let strict = false
    if (options !== undefined) {
      if (options === null || typeof options !== 'object' || Array.isArray(options)) {
        throw cacheError(TypeError, CODES.InvalidOption, 'invalidateTags options must be an object such as { soft: true }')
      }
      for (const [name, value] of Object.entries(options)) {
        if (!INVALIDATE_TAGS_OPTIONS.has(name) || (value !== undefined && typeof value !== 'boolean')) {
          throw cacheError(TypeError, CODES.InvalidOption, 'invalidateTags takes two options, `soft` and `strict`, booleans')
        }
      }
      soft = options.soft === true
      strict = options.strict === true
    }
    const done = this.#native.invalidateTags(list, soft)
    // A load of this thread that started before may carry one of the tags: later callers do not join it.
    this.#forgetLoads()
    return done.then((error) => {
      // Strict: an invalidation the L2 did not record is lost for every other instance, so the caller hears of it.
      // A missing bus echo only delays it (the L2's record judges every later read), so it goes to onError.
      if (strict && error && L2_FAILURES.has(error.code)) throw fromInfo(error)
      this.#absorbed(error)
    })
  }

  getTagExpiration(tags) {
    if (OPERATION.hasSubscribers) return this.#traced('getTagExpiration', tags, this.#getTagExpiration, tags)
    return this.#getTagExpiration(tags)
  }

  #getTagExpiration(tags) {
    const list = checkTagList(tags)
    return this.#native.tagExpiration(list).then((read) => {
      this.#absorbed(read.error)
      return read.count
    })
  }

  stats() {
    return Promise.resolve(this.#native.stats())
  }

  close() {
    for (const abort of this.#running) abort.abort(cacheError(Error, CODES.Closed, 'the cache is closed'))
    this.#native.close()
    this.#loads.clear()
    this.#frozen?.clear()
    return Promise.resolve()
  }
}

module.exports = { Cache }
