'use strict'

// `tiered-cache/otel`: spans and metrics through @opentelemetry/api, built on the diagnostics channels
// (`tiered-cache:operation`, `tiered-cache:loader`) so that there is one source of events. The application's SDK
// (tracer and meter providers) decides where they go; without one, the API's no-op providers record nothing.

const { performance } = require('node:perf_hooks')
const api = require('@opentelemetry/api')
const channels = require('./diagnostics.js')

const NAME = 'tiered-cache'
const VERSION = require('./package.json').version

/** OpenTelemetry's `db.system.name` of each backend (memory-only caches have none). */
const DB_SYSTEM = { postgres: 'postgresql', redis: 'redis' }

function invalid(message) {
  const error = new TypeError(message)
  error.code = 'ERR_CACHE_INVALID_OPTION'
  return error
}

/** A call's attributes: low-cardinality ones only, unless `recordKeys` asks for the key. */
function attributesOf(context, recordKeys) {
  const attributes = { 'cache.operation': context.operation, 'cache.namespace': context.namespace }
  const system = DB_SYSTEM[context.backend]
  if (system !== undefined) attributes['db.system.name'] = system
  if (context.hit !== undefined) attributes['cache.hit'] = context.hit
  if (context.tier !== undefined) attributes['cache.tier'] = context.tier
  if (context.stale !== undefined) attributes['cache.stale'] = context.stale
  if (recordKeys && context.key !== undefined) {
    attributes['cache.key'] = Array.isArray(context.key) ? context.key.map(String) : String(context.key)
  }
  return attributes
}

function errorType(error) {
  return error?.code ?? error?.name ?? 'Error'
}

/**
 * Starts recording every cache call as a span and in two histograms; see otel.d.ts. Returns a handle whose
 * `close()` stops it.
 */
function instrument(options = {}) {
  if (options === null || typeof options !== 'object') throw invalid('instrument takes an options object')
  for (const name of Object.keys(options)) {
    if (!['tracerProvider', 'meterProvider', 'recordKeys'].includes(name)) {
      throw invalid(`unknown instrument option \`${name}\``)
    }
  }
  const { recordKeys = false } = options
  if (typeof recordKeys !== 'boolean') throw invalid('option `recordKeys` must be a boolean')
  const tracer = (options.tracerProvider ?? api.trace.getTracerProvider()).getTracer(NAME, VERSION)
  const meter = (options.meterProvider ?? api.metrics.getMeterProvider()).getMeter(NAME, VERSION)
  const operationSeconds = meter.createHistogram('cache.operation.duration', {
    description: 'Time of tiered-cache calls, from the call to its settling.',
    unit: 's',
  })
  const loaderSeconds = meter.createHistogram('cache.loader.duration', {
    description: 'Time of getOrSet loader runs (early refreshes included), until they settled.',
    unit: 's',
  })

  /** Each traced call's span and start. */
  const open = new WeakMap()

  function begin(context, name, attributes) {
    const span = tracer.startSpan(name, { kind: api.SpanKind.INTERNAL, attributes }, api.context.active())
    open.set(context, { span, at: performance.now() })
  }

  function finish(context, histogram, attributes) {
    const opened = open.get(context)
    if (opened === undefined) return
    open.delete(context)
    const { span, at } = opened
    if (context.error !== undefined) {
      attributes['error.type'] = errorType(context.error)
      span.recordException(context.error)
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: context.error?.message })
    }
    span.setAttributes(attributes)
    histogram.record((performance.now() - at) / 1000, attributes)
    span.end()
  }

  const operationHandlers = {
    start(context) {
      begin(context, `${context.operation} ${context.namespace}`, attributesOf(context, recordKeys))
    },
    // A synchronous throw (bad input) has no asyncEnd: its error is known by the end of the call.
    end(context) {
      if (context.error !== undefined) finish(context, operationSeconds, attributesOf(context, recordKeys))
    },
    asyncEnd(context) {
      finish(context, operationSeconds, attributesOf(context, recordKeys))
    },
  }
  const loaderAttributes = (context) => {
    const attributes = { 'cache.operation': context.operation, 'cache.namespace': context.namespace }
    if (recordKeys) attributes['cache.key'] = context.key
    return attributes
  }
  const loaderHandlers = {
    start(context) {
      begin(context, `load ${context.namespace}`, loaderAttributes(context))
    },
    asyncEnd(context) {
      finish(context, loaderSeconds, loaderAttributes(context))
    },
  }
  channels.operation.subscribe(operationHandlers)
  channels.loader.subscribe(loaderHandlers)
  return {
    /** Stops recording; spans of calls in flight are not ended. */
    close() {
      channels.operation.unsubscribe(operationHandlers)
      channels.loader.unsubscribe(loaderHandlers)
    },
  }
}

module.exports = { instrument }
