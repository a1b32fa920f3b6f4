// The ESM entry of tiered-cache/diagnostics: the same channels as diagnostics.js (diagnostics_channel names are
// process-wide, so they would be the same objects anyway).
import diagnostics from './diagnostics.js'

export const { operation, loader, breaker, bus } = diagnostics
