'use server'

import { updateTag } from 'next/cache'
import { normalizeSubdomain } from '../../../lib/subdomain'

/** Expires a restaurant's menu on every instance at once (`updateTag`): the next render anywhere is a fresh one. */
export async function refreshMenu(formData: FormData): Promise<void> {
  const slug = normalizeSubdomain(String(formData.get('slug') ?? ''))
  if (slug !== null) updateTag(`menu:${slug}`)
}
