// Resolves tenants by subdomain through tiered-cache twice and prints what the cache did.
// Memory only by default; set CACHE_URL=postgres://... or redis://... to put a shared L2 behind the L1.
import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'

const { Cache } = createRequire(import.meta.url)('../index.js')

const TENANT_DB = new Map(
  ['acme', 'globex', 'initech', 'umbrella'].map((slug, i) => [
    slug,
    { id: `tenant_${i + 1}`, slug, name: slug[0].toUpperCase() + slug.slice(1), active: true, settings: { theme: 'light' } },
  ]),
)
let dbQueries = 0

/** Stands in for the database: 25 ms per lookup, `null` for an unknown slug. */
async function loadTenant(slug) {
  dbQueries++
  await sleep(25)
  return TENANT_DB.get(slug) ?? null
}

const tenants = new Cache({ namespace: `demo-tenant-${process.pid}`, ttl: 300 })
const subdomains = ['acme', 'globex', 'initech', 'umbrella', 'unknown-shop']

for (const pass of [1, 2]) {
  const started = performance.now()
  const resolved = await Promise.all(subdomains.map((slug) => tenants.getOrSet(slug, () => loadTenant(slug))))
  const ms = (performance.now() - started).toFixed(2)
  const names = resolved.map((t) => (t === null ? 'not found (cached null)' : t.name)).join(', ')
  console.log(`pass ${pass}: ${subdomains.length} tenants in ${ms} ms, database queries so far: ${dbQueries}\n  ${names}`)
}

const stats = await tenants.stats()
console.log(`backend: ${tenants.backend}`)
console.log(
  `stats: hits=${stats.hits} (L1 ${stats.l1Hits}, L2 ${stats.l2Hits}) misses=${stats.misses} ` +
    `loaderCalls=${stats.loaderCalls} hitRate=${stats.hitRate.toFixed(2)} l1Entries=${stats.l1Entries} l1Bytes=${stats.l1Bytes}`,
)
await tenants.clear()
await tenants.close()
