import { connection, NextResponse } from 'next/server'
import { CACHE_TTLS, getCaches, type CacheName } from '../../../../lib/cache'

/** The counters of each of the app's caches in this instance, with its backend, namespace and default TTL. */
export async function GET(): Promise<NextResponse> {
  // Counters change with every request: never a copy made at build time.
  await connection()
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
