// The ESM entry of tiered-cache/prometheus: the same module as prometheus.js.
import prometheus from './prometheus.js'

export const { registerMetrics, DEFAULTS } = prometheus
