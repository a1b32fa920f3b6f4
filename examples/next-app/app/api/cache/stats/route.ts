import { NextResponse } from 'next/server'
import { CACHE_TTLS, getCaches, type CacheName } from '../../../../lib/cache'

// Counters change with every request: never serve a copy made at build time.
export const dynamic = 'force-dynamic'

/** The counters of each of the app's caches in this instance, with its backend, namespace and default TTL. */
export async function GET(): Promise<NextResponse> {
  const caches = getCaches()
  const names = Object.keys(CACHE_TTLS) as CacheName[]
  const entries = await Promise.all(
    names.map(async (name) => {
      const cache = caches[name]
      const stats = await cache.stats()
      return [name, { backend: cache.backend, namespace: cache.namespace, ttl: CACHE_TTLS[name], ...stats }] as const
    }),
  )
  return NextResponse.json(Object.fromEntries(entries))
}
