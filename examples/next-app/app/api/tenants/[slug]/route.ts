import { revalidateTag } from 'next/cache'
import { NextResponse } from 'next/server'
import { log } from '../../../../lib/log'
import { normalizeSubdomain } from '../../../../lib/subdomain'
import { parseTenantUpdate } from '../../../../lib/tenant-update'
import {
  INVALID_SUBDOMAIN,
  TENANT_NOT_FOUND,
  invalidateTenantCache,
  resolveTenant,
} from '../../../../lib/tenant-resolver'
import { updateTenant } from '../../../../lib/tenants'

type Context = { params: Promise<{ slug: string }> }

function invalidSubdomain(): NextResponse {
  return NextResponse.json({ error: INVALID_SUBDOMAIN }, { status: 400 })
}

function databaseUnavailable(err: unknown): NextResponse {
  log.error('tenant database unavailable', { error: err instanceof Error ? err.message : String(err) })
  return NextResponse.json({ error: 'Tenant database unavailable' }, { status: 503 })
}

/** The tenant of a subdomain, with `cached` telling whether the database was read for this request. */
export async function GET(_request: Request, { params }: Context): Promise<NextResponse> {
  const { slug } = await params
  if (normalizeSubdomain(slug) === null) return invalidSubdomain()
  try {
    const resolution = await resolveTenant(slug)
    return NextResponse.json(resolution, { status: resolution.tenant === null ? 404 : 200 })
  } catch (err) {
    return databaseUnavailable(err)
  }
}

/** Updates a tenant's name, active flag or settings, then drops it from the cache of every instance. */
export async function PUT(request: Request, { params }: Context): Promise<NextResponse> {
  const slug = normalizeSubdomain((await params).slug)
  if (slug === null) return invalidSubdomain()

  let body: unknown
  try {
    body = await request.json()
  } catch {
    return NextResponse.json({ error: 'The body must be JSON' }, { status: 400 })
  }
  const parsed = parseTenantUpdate(body)
  if (!parsed.ok) return NextResponse.json({ error: parsed.error }, { status: 400 })

  try {
    const tenant = await updateTenant(slug, parsed.update)
    if (tenant === null) return NextResponse.json({ error: TENANT_NOT_FOUND }, { status: 404 })
    await invalidateTenantCache(slug)
    // The restaurant's page and its 'use cache' lookup, on every instance, at once.
    revalidateTag(`tenant:${normalizeSubdomain(slug)}`, { expire: 0 })
    return NextResponse.json({ tenant })
  } catch (err) {
    return databaseUnavailable(err)
  }
}
