import { NextResponse } from 'next/server'
import { log } from '../../../../lib/log'
import { warmTenantCache } from '../../../../lib/tenant-resolver'

/**
 * Warms every active tenant's cache entry (a scheduler calls it, e.g. Vercel Cron). With `CRON_SECRET` set, only a
 * request carrying `Authorization: Bearer <CRON_SECRET>` runs it.
 */
export async function GET(request: Request): Promise<NextResponse> {
  const secret = process.env.CRON_SECRET
  if (secret && request.headers.get('authorization') !== `Bearer ${secret}`) {
    return NextResponse.json({ error: 'unauthorized' }, { status: 401 })
  }
  const started = performance.now()
  try {
    const { tenants, stored } = await warmTenantCache()
    return NextResponse.json({ tenants, stored, ms: Math.round(performance.now() - started) })
  } catch (err) {
    log.error('cache warm-up failed', { error: err instanceof Error ? err.message : String(err) })
    return NextResponse.json({ error: 'Tenant database unavailable' }, { status: 503 })
  }
}
