// index.d.ts against the native rules (crates/core/src/rules.rs): the error codes, the documented range and default of
// every numeric option, the per-call options and the stats' fields. A rule changed on one side only fails here.
import test from 'ava'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

import { Cache } from './helpers.js'

interface NumberRule {
  name: string
  min: number
  max: number
  integer: boolean
  default: number | null
  unit: string
}
interface Rules {
  options: NumberRule[]
  perCallOptions: { set: string[]; getOrSet: string[] }
  errorCodes: Record<string, string>
  busLossDetectionMs: number
  maxTagBytes: number
  maxTags: number
}

const require = createRequire(import.meta.url)
const { rules } = require('../binding.js') as { rules: () => Rules }
const RULES = rules()
const DTS = readFileSync(new URL('../index.d.ts', import.meta.url), 'utf8')

/** The text between `export interface <name> {` and its closing brace at the start of a line. */
function interfaceBody(name: string): string {
  const start = DTS.search(new RegExp(`export interface ${name} (extends \\w+ )?\\{`))
  if (start < 0) throw new Error(`index.d.ts has no interface ${name}`)
  return DTS.slice(start, DTS.indexOf('\n}', start))
}

/** The doc comment right above `<field>?:` or `<field>:` in `body`. */
function docOf(body: string, field: string): string {
  const declared = new RegExp(`\\n\\s*${field}\\??:`).exec(body)
  if (!declared) throw new Error(`no field ${field}`)
  const before = body.slice(0, declared.index)
  return before.slice(before.lastIndexOf('/**'))
}

const INTERFACE_OF_PREFIX: Record<string, string> = {
  '': 'CacheOptions',
  l1: 'L1Options',
  postgres: 'PostgresOptions',
  redis: 'RedisOptions',
  l2Breaker: 'L2BreakerOptions',
}

test('the error codes of index.d.ts are exactly the native ones, each documented', (t) => {
  const union = /export type CacheErrorCode =([^]*?)\n\n/.exec(DTS)?.[1] ?? ''
  const typed = [...union.matchAll(/'([A-Z0-9_]+)'/g)].map((m) => m[1]).sort()
  const native = Object.values(RULES.errorCodes).sort()
  t.deepEqual(typed, native)
  const doc = DTS.slice(0, DTS.indexOf('export type CacheErrorCode'))
  for (const code of native) t.true(doc.includes(`\`${code}\``), `${code} is documented`)
})

test('every numeric option is documented with its native range, unit and default', (t) => {
  t.true(RULES.options.length >= 13)
  for (const rule of RULES.options) {
    const [prefix, field] = rule.name.includes('.') ? rule.name.split('.') : ['', rule.name]
    const doc = docOf(interfaceBody(INTERFACE_OF_PREFIX[prefix]), field)
    t.true(doc.includes(`${rule.integer ? 'Integer' : 'Number'} from ${rule.min} to ${rule.max}`), `${rule.name}: ${doc}`)
    if (rule.default !== null) t.true(doc.includes(`Default \`${rule.default}\``), `${rule.name} default: ${doc}`)
    if (rule.unit === 'seconds') t.regex(doc, /seconds/i, `${rule.name} says its unit`)
  }
})

test('the per-call options of index.d.ts are the native ones, each documented with its rule', (t) => {
  const setOptions = interfaceBody('SetOptions')
  const getOrSetOptions = interfaceBody('GetOrSetOptions')
  t.regex(DTS, /export interface GetOrSetOptions extends SetOptions \{/)
  const fields = (body: string) => [...body.matchAll(/\n {2}(\w+)\?: /g)].map((m) => m[1])
  t.deepEqual(fields(setOptions).sort(), [...RULES.perCallOptions.set].sort())
  t.deepEqual([...fields(setOptions), ...fields(getOrSetOptions)].sort(), [...RULES.perCallOptions.getOrSet].sort())
  for (const name of RULES.perCallOptions.getOrSet) {
    const body = fields(setOptions).includes(name) ? setOptions : getOrSetOptions
    const rule = RULES.options.find((r) => r.name === name)
    if (rule === undefined) {
      // The one option that is no number: tags, held to the core's limits.
      t.is(name, 'tags')
      const doc = docOf(body, name)
      t.true(doc.includes(`Up to ${RULES.maxTags} tags of 1 to ${RULES.maxTagBytes} UTF-8 bytes`), doc)
      t.true(doc.includes('ERR_CACHE_INVALID_TAG'))
      continue
    }
    t.true(docOf(body, name).includes(`from ${rule.min} to ${rule.max}`), `per-call ${name}`)
  }
})

test('CacheStats documents exactly the fields stats() returns', async (t) => {
  const cache = new Cache()
  t.teardown(() => cache.close())
  const returned = Object.keys(await cache.stats()).sort()
  const documented = [...interfaceBody('CacheStats').matchAll(/\n {2}(\w+): /g)].map((m) => m[1]).sort()
  t.deepEqual(documented, returned)
  for (const field of documented) t.true(docOf(interfaceBody('CacheStats'), field).startsWith('/**'), field)
})
