// What the handler modules do with the failures tiered-cache/next reports, as lib/cache.ts does for the app's caches:
// a tag invalidation that did not reach the L2 is always logged (another instance may serve what it invalidates);
// other failures (an L2 that is down fails every call) once a minute per code.
const REPORT_INTERVAL_MS = 60_000
const lastReported = new Map()

export function reportNextCacheFailure(error) {
  const lost = Array.isArray(error.tags)
  const now = Date.now()
  if (!lost && now - (lastReported.get(error.code) ?? -Infinity) < REPORT_INTERVAL_MS) return
  if (!lost) lastReported.set(error.code, now)
  const line = { time: new Date(now).toISOString(), level: lost ? 'error' : 'warn', message: 'next cache degraded', code: error.code, error: error.message }
  process.stderr.write(`${JSON.stringify(line)}\n`)
}
