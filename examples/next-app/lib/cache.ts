import { Cache, type CacheError } from 'tiered-cache'
import { cacheNamespacePrefix } from './config'
import { log } from './log'

/** Default time-to-live of each cache, in seconds. The one place these figures live. */
export const CACHE_TTLS = {
  tenant: 300,
  session: 86_400,
  permission: 300,
  menu: 600,
} as const

export type CacheName = keyof typeof CACHE_TTLS
export type AppCaches = Readonly<Record<CacheName, Cache>>

// instrumentation.ts and each route are bundled apart, and dev-mode HMR re-evaluates modules, so a module-level
// variable would be created several times in one process. globalThis is the one object they all share.
const processGlobal = globalThis as typeof globalThis & { __appCaches?: AppCaches }

/**
 * The app's caches, created on first use. Their L2 is `CACHE_URL` (postgres:// or redis://), read by tiered-cache;
 * without it they are memory only.
 */
export function getCaches(): AppCaches {
  processGlobal.__appCaches ??= createCaches()
  return processGlobal.__appCaches
}

function createCaches(): AppCaches {
  const prefix = cacheNamespacePrefix()
  const create = (name: CacheName) =>
    new Cache({ namespace: `${prefix}${name}`, ttl: CACHE_TTLS[name], onError: reportCacheFailure })
  return Object.freeze({
    tenant: create('tenant'),
    session: create('session'),
    permission: create('permission'),
    menu: create('menu'),
  })
}

// The cache absorbs L2 failures and carries on from L1 and the database; while an L2 is down every call would
// report one, so say it once a minute per kind of failure and leave the count to stats().errors.
const REPORT_INTERVAL_MS = 60_000
const lastReported = new Map<string, number>()

function reportCacheFailure(err: CacheError): void {
  const now = Date.now()
  if (now - (lastReported.get(err.code) ?? -Infinity) < REPORT_INTERVAL_MS) return
  lastReported.set(err.code, now)
  log.warn('cache degraded', { code: err.code, error: err.message })
}
