// The typings of the ESM entry (index.mjs), which re-exports the CommonJS module: the same declarations, so `Cache`
// is one type whichever entry a file imports. TypeScript (`moduleResolution: node16`/`nodenext`) reads a `.d.ts`
// in this CommonJS package as the typings of a CommonJS file; this `.d.mts` is what tells it the import is ESM.
export * from './index.js'
