// Only type-checked (vitest runs *.test.ts): the ESM entry's typings are ESM's. Had the `import` condition pointed
// at index.d.ts (which TypeScript reads as CommonJS in this package), a default import would type-check under
// node16 and then fail at run time, index.mjs having named exports only.
// @ts-expect-error index.mjs has no default export
import tieredCache from 'tiered-cache'

export { tieredCache }
