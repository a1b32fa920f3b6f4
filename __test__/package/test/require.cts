// A CommonJS file of the same project: `require` resolves the package's `require` condition (index.js, index.d.ts).
// Only type-checked: it holds the CommonJS typings to the same API as the ESM ones.
import tieredCache = require('tiered-cache')

const cache: tieredCache.Cache = new tieredCache.Cache({ namespace: 'cjs' })
const pending: Promise<number | undefined> = cache.get<number>('k')
const code: tieredCache.CacheErrorCode = 'ERR_CACHE_CLOSED'

// @ts-expect-error a TTL is seconds as a number or SetOptions, never a string: typings that resolved to `any` would let this through
void cache.set('k', 1, 'soon')

export = { pending, code }
