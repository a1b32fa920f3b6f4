'use strict'

// The cache's node:diagnostics_channel channels: one source of events for tracing, metrics and logs (the Prometheus
// and OpenTelemetry modules subscribe to these, as an APM would). Named as undici (`undici:request:create`) and
// ioredis (`ioredis:command`) name theirs: the package, then what is observed.

const dc = require('node:diagnostics_channel')

/** Each public call: start/end/asyncStart/asyncEnd/error, with `{ operation, namespace, key, hit, tier, stale }`. */
const operation = dc.tracingChannel('tiered-cache:operation')
/** Each run of a `getOrSet` loader (a call's, or an early refresh's), with `{ namespace, key, operation }`. */
const loader = dc.tracingChannel('tiered-cache:loader')
/** Each transition of the L2's circuit breaker: `{ namespace, backend, state: 'open' | 'half-open' | 'closed' }`. */
const breaker = dc.channel('tiered-cache:breaker')
/** Each transition of the invalidation bus: `{ namespace, backend, state: 'subscribed' | 'lost' | 'half-open' | 'reconnected' }`. */
const bus = dc.channel('tiered-cache:bus')

/** The channel of each transition subject, as the core names them (`rules().transitions`). */
const transitionChannels = { breaker, bus }

module.exports = { operation, loader, breaker, bus, transitionChannels }
