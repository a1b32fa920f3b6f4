import { cacheLife, cacheTag } from 'next/cache'
import { notFound } from 'next/navigation'
import { Suspense } from 'react'
import { resolveTenant } from '../../../lib/tenant-resolver'

type Props = { params: Promise<{ tenant: string }> }

/** A restaurant's menu: a `'use cache'` component, shared by every instance through tiered-cache/next. */
export default function MenuPage({ params }: Props) {
  return (
    <Suspense fallback={<p>Loading…</p>}>
      <Menu params={params} />
    </Suspense>
  )
}

async function Menu({ params }: Props) {
  const { tenant } = await params
  return <CachedMenu slug={tenant} />
}

async function CachedMenu({ slug }: { slug: string }) {
  'use cache'
  cacheTag(`menu:${slug}`, 'menus')
  cacheLife({ stale: 30, revalidate: 300, expire: 3600 })
  const { tenant } = await resolveTenant(slug)
  if (tenant === null) notFound()
  // Which process rendered this copy, and when: another instance serving it shows the copy came from the L2.
  const rendering = `${process.pid}:${Date.now()}:${Math.random().toString(36).slice(2, 8)}`
  return (
    <main>
      <h1>{tenant.name}</h1>
      <p>
        Menu rendered by <span id="rendering">{rendering}</span>
      </p>
    </main>
  )
}
