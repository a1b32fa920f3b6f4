// The typings of tiered-cache/prometheus's ESM entry (prometheus.mjs), which re-exports prometheus.js: the same declarations.
export * from './prometheus.js'
