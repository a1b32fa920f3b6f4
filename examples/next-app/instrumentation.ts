/**
 * Runs once when a server instance starts, before it answers requests. Next.js also runs this file in the edge
 * runtime, where a native .node addon cannot load: the cache is imported only under Node.js, and inside the check so
 * the edge bundle never contains it.
 */
export async function register(): Promise<void> {
  if (process.env.NEXT_RUNTIME === 'nodejs') {
    const { getCaches } = await import('./lib/cache')
    const { preloadTenantCache } = await import('./lib/tenant-resolver')
    const { log } = await import('./lib/log')
    const caches = getCaches()
    try {
      const started = performance.now()
      const count = await preloadTenantCache()
      log.info('tenant cache preloaded', {
        tenants: count,
        ms: Math.round(performance.now() - started),
        backend: caches.tenant.backend,
      })
    } catch (err) {
      // Without the preload every tenant is still resolved on demand: start, and say so.
      log.error('tenant cache preload failed', { error: err instanceof Error ? err.message : String(err) })
    }
  }
}
