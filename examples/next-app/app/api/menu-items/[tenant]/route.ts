import { NextResponse } from 'next/server'
import { log } from '../../../../lib/log'
import { menuItemsOf } from '../../../../lib/menu-items'
import { resolveTenant } from '../../../../lib/tenant-resolver'

type Context = { params: Promise<{ tenant: string }> }

/** A restaurant's menu items: the tenant and its 50 items, 51 cache reads per request. */
export async function GET(_request: Request, { params }: Context): Promise<NextResponse> {
  const { tenant: subdomain } = await params
  try {
    const resolution = await resolveTenant(subdomain)
    if (resolution.tenant === null || !resolution.isValid) {
      return NextResponse.json({ error: resolution.error }, { status: resolution.isValid ? 404 : 400 })
    }
    return NextResponse.json({ tenant: resolution.tenant.slug, items: await menuItemsOf(resolution.tenant) })
  } catch (err) {
    log.error('menu items unavailable', { error: err instanceof Error ? err.message : String(err) })
    return NextResponse.json({ error: 'Tenant database unavailable' }, { status: 503 })
  }
}
