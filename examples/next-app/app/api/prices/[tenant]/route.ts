import { NextResponse } from 'next/server'
import { normalizeSubdomain } from '../../../../lib/subdomain'

type Context = { params: Promise<{ tenant: string }> }

/**
 * A tenant's prices from an upstream service (`PRICES_URL`), through Next.js's fetch cache with a tag: shared by
 * every instance, and refetched on all of them after `revalidateTag('prices:<tenant>')`.
 */
export async function GET(_request: Request, { params }: Context): Promise<NextResponse> {
  const slug = normalizeSubdomain((await params).tenant)
  const upstream = process.env.PRICES_URL
  if (slug === null || !upstream) return NextResponse.json({ error: 'no such prices' }, { status: 404 })
  const response = await fetch(`${upstream}/prices/${slug}`, { cache: 'force-cache', next: { tags: [`prices:${slug}`] } })
  return NextResponse.json({ prices: await response.json() })
}
