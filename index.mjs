// The ESM entry of tiered-cache: the CommonJS module itself, re-exported. A copy of the class here would give an app
// that mixes `import` and `require` (its own code and a dependency, or Next.js's server and a cache handler) two
// `Cache` classes, with `instanceof` failing across them and the per-thread `getOrSet` fast path split in two.
import cjs from './index.js'

export const { Cache } = cjs
