import { cacheLife, cacheTag } from 'next/cache'
import { notFound } from 'next/navigation'
import { normalizeSubdomain } from '../../lib/subdomain'
import { resolveTenant, type TenantResolution } from '../../lib/tenant-resolver'

type Props = { params: Promise<{ tenant: string }> }

// Cache Components validates a dynamic route at build time through one prerendered param; `www` is no restaurant, so
// it prerenders the 404. Every restaurant is rendered on its first request, then kept in the incremental cache (ISR,
// through tiered-cache/next) until a PUT revalidates its tag.
export function generateStaticParams(): { tenant: string }[] {
  return [{ tenant: 'www' }]
}

/** The tenant of a subdomain, as a `'use cache'` entry tagged `tenant:<slug>` (the PUT route revalidates it). */
async function cachedTenant(subdomain: string): Promise<TenantResolution> {
  'use cache'
  cacheTag(`tenant:${normalizeSubdomain(subdomain) ?? 'invalid'}`)
  cacheLife({ stale: 60, revalidate: 300, expire: 3600 })
  return resolveTenant(subdomain)
}

// Outside any Suspense boundary, so that an unknown restaurant answers 404, not a streamed 200.
export default async function TenantPage({ params }: Props) {
  const { tenant: subdomain } = await params
  const { tenant, isValid, error } = await cachedTenant(subdomain)
  if (tenant === null) notFound()
  return (
    <main>
      <h1>{tenant.name}</h1>
      {isValid ? <p>Welcome! Order online or book a table.</p> : <p>{error}</p>}
    </main>
  )
}
