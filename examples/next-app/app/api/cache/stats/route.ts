import { connection, NextResponse } from 'next/server'
import { handlerCaches } from 'tiered-cache/next'
import { CACHE_TTLS, getCaches, type CacheName } from '../../../../lib/cache'

/**
 * The counters of each of the app's caches in this instance, with its backend, namespace and default TTL, by name;
 * and of the cache behind Next.js's own caches (tiered-cache/next), by its namespace, once a handler has used it.
 */
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
  const handlers = await Promise.all(
    handlerCaches().map(async (cache) => {
      const stats = await cache.stats()
      return [cache.namespace, { backend: cache.backend, namespace: cache.namespace, ...stats }] as const
    }),
  )
  return NextResponse.json(Object.fromEntries([...entries, ...handlers]))
}
