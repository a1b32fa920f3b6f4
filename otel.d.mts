// The typings of tiered-cache/otel's ESM entry (otel.mjs), which re-exports otel.js: the same declarations.
export * from './otel.js'
