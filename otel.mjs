// The ESM entry of tiered-cache/otel: the same module as otel.js.
import otel from './otel.js'

export const { instrument } = otel
