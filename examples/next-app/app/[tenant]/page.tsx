import { notFound } from 'next/navigation'
import { resolveTenant } from '../../lib/tenant-resolver'

// Each restaurant's page is rendered per request from the tenant cache, never prerendered at build time.
export const dynamic = 'force-dynamic'

type Props = { params: Promise<{ tenant: string }> }

export default async function TenantPage({ params }: Props) {
  const { tenant: subdomain } = await params
  const { tenant, isValid, error } = await resolveTenant(subdomain)
  if (tenant === null) notFound()
  return (
    <main>
      <h1>{tenant.name}</h1>
      {isValid ? <p>Welcome! Order online or book a table.</p> : <p>{error}</p>}
    </main>
  )
}
