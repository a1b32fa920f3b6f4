'use strict'

// The `logger` option: a pino-compatible logger that hears of the circuit breaker's and the bus's transitions, once
// each, never per call. What it is given are states and the namespace: never a URL, a key or a value.

const METHODS = ['child', 'debug', 'info', 'warn', 'error']

/** Each transition's level and message, by subject then state (the states are the core's: `rules().transitions`). */
const LINES = {
  breaker: {
    open: ['warn', 'the L2 is unreachable: the circuit breaker opened, calls skip the L2 until a probe finds it back'],
    'half-open': ['info', 'the circuit breaker is probing the L2'],
    closed: ['info', 'the L2 answered a probe: the circuit breaker closed, calls use the L2 again'],
  },
  bus: {
    subscribed: ['info', 'the invalidation bus is subscribed'],
    lost: ['warn', 'the invalidation bus lost its connection: the L1 was dropped and the bus is reconnecting'],
    'half-open': [
      'warn',
      'the invalidation bus stopped carrying its probes (half-open): the L1 was dropped and the bus is reconnecting',
    ],
    reconnected: ['info', 'the invalidation bus is subscribed again: the L1 was dropped'],
  },
}

/**
 * Checks the `logger` option and returns what opens the cache's logger once its namespace is known, or `undefined`
 * without one. Throws a `TypeError` with `code` (`ERR_CACHE_INVALID_OPTION`) for anything that is not a pino-like
 * object.
 */
function loggerFor(logger, code) {
  if (logger === undefined) return undefined
  const missing = METHODS.filter((name) => typeof logger?.[name] !== 'function')
  if (logger === null || typeof logger !== 'object' || missing.length > 0) {
    const error = new TypeError(
      `option \`logger\` must be a pino-compatible logger with ${METHODS.join(', ')} methods` +
        (missing.length > 0 && logger !== null && typeof logger === 'object' ? `; missing: ${missing.join(', ')}` : ''),
    )
    error.code = code
    throw error
  }
  return (namespace, backend) => {
    const child = logger.child({ name: 'tiered-cache', namespace, backend })
    return {
      transition(subject, state) {
        const line = LINES[subject]?.[state]
        if (line === undefined) return
        const [level, message] = line
        try {
          child[level]({ subject, state }, message)
        } catch {
          // A logger that throws must not break the cache; there is no call to tell.
        }
      },
    }
  }
}

module.exports = { loggerFor, LINES }
