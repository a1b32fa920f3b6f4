// The typings of tiered-cache/diagnostics's ESM entry (diagnostics.mjs), which re-exports diagnostics.js: the same declarations.
export * from './diagnostics.js'
