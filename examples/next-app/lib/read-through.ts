import { getCaches, type CacheName } from './cache'

/** The one call the tenant and menu-item routes make of their cache. */
export interface ReadThrough {
  getOrSet<T>(key: string, loader: () => Promise<T> | T): Promise<T>
}

// bench/app compares this app on tiered-cache with the same app on other caches (a per-process Map, bentocache, a
// Postgres table read per request): its preload module, given to `next start` with `node --import`, puts a factory
// here before the app loads. Nothing else sets it.
const benchHook = globalThis as typeof globalThis & { __tieredCacheBenchReadThrough?: (name: CacheName) => ReadThrough }

/** The cache a route reads `name`'s entries through: the app's tiered-cache `Cache` of that name. */
export function readThrough(name: CacheName): ReadThrough {
  return benchHook.__tieredCacheBenchReadThrough?.(name) ?? getCaches()[name]
}
