// The ESM entry (index.mjs) and the CommonJS one (index.js) in one process: one module, one class, one store. An
// app mixes them without knowing (its ESM code and a CommonJS dependency, Next.js's server and a cache handler), so a
// second copy of the class would split `instanceof` and the per-thread single-flight of `getOrSet` in two.
import test from 'ava'

import { POSTGRES_URL, runNode, uniqueNamespace } from './helpers.js'

test('import and require of tiered-cache give one Cache class, one module instance and one store', async (t) => {
  const namespace = uniqueNamespace('entries')
  const script = `
    import { Cache as EsmCache } from 'tiered-cache'
    import { createRequire } from 'node:module'
    const require = createRequire(import.meta.url)
    const { Cache: CjsCache } = require('tiered-cache')
    const options = { url: ${JSON.stringify(POSTGRES_URL)}, namespace: ${JSON.stringify(namespace)}, onError() {} }
    const esm = new EsmCache(options)
    const cjs = new CjsCache(options)
    let loads = 0
    let release
    const gate = new Promise((resolve) => (release = resolve))
    const loader = async () => { loads += 1; await gate; return { by: 'loader' } }
    // Both entries ask for the same missing key at once: one loader call between them.
    const both = Promise.all([esm.getOrSet('k', loader), cjs.getOrSet('k', loader)])
    setTimeout(release, 200)
    const [viaEsm, viaCjs] = await both
    await esm.set('written-by-esm', 42)
    const read = await cjs.get('written-by-esm')
    const modules = Object.keys(require.cache).filter((file) => /[\\\\/](index|binding)\\.js$/.test(file))
    console.log(JSON.stringify({
      sameClass: EsmCache === CjsCache,
      crossInstanceof: esm instanceof CjsCache && cjs instanceof EsmCache,
      esmEntry: import.meta.resolve('tiered-cache'),
      cjsEntry: require.resolve('tiered-cache'),
      modules: modules.map((file) => file.split(/[\\\\/]/).pop()).sort(),
      loads, viaEsm, viaCjs, read,
      // Both handles count on the one store: the L1 hit of cjs.get shows in esm.stats().
      esmHits: (await esm.stats()).hits, cjsHits: (await cjs.stats()).hits,
    }))
    await esm.clear()
    esm.close()
    cjs.close()`
  const result = await runNode(['--input-type=module', '-e', script])
  t.is(result.code, 0, result.stderr)
  const seen = JSON.parse(result.stdout)
  t.true(seen.sameClass)
  t.true(seen.crossInstanceof)
  t.regex(seen.esmEntry, /\/index\.mjs$/)
  t.regex(seen.cjsEntry, /\/index\.js$/)
  t.deepEqual(seen.modules, ['binding.js', 'index.js'])
  t.is(seen.loads, 1)
  t.deepEqual(seen.viaEsm, { by: 'loader' })
  t.deepEqual(seen.viaCjs, { by: 'loader' })
  t.is(seen.read, 42)
  t.true(seen.esmHits >= 1)
  t.is(seen.esmHits, seen.cjsHits)
})

test('tiered-cache/next: import and require give the same handler factories', async (t) => {
  const script = `
    import * as esm from 'tiered-cache/next'
    import { createRequire } from 'node:module'
    const cjs = createRequire(import.meta.url)('tiered-cache/next')
    const names = Object.keys(cjs).sort()
    console.log(JSON.stringify({ names, esmNames: Object.keys(esm).sort(), same: names.every((name) => esm[name] === cjs[name]) }))`
  const result = await runNode(['--input-type=module', '-e', script])
  t.is(result.code, 0, result.stderr)
  const seen = JSON.parse(result.stdout)
  t.deepEqual(seen.esmNames, seen.names)
  t.true(seen.same)
})
