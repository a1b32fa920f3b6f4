// The typings of tiered-cache/next's ESM entry (next.mjs), which re-exports next.js: the same declarations.
export * from './next.js'
