import type { AppServer } from './servers'

export interface Resolution {
  tenant: { id: string; slug: string; name: string; active: boolean; settings: Record<string, unknown> } | null
  isValid: boolean
  error?: string
  cached: boolean
}

export interface Answer<T> {
  status: number
  body: T
}

async function answer<T>(response: Response): Promise<Answer<T>> {
  const text = await response.text()
  try {
    return { status: response.status, body: JSON.parse(text) as T }
  } catch {
    throw new Error(`${response.url} answered ${response.status} with no JSON: ${text.slice(0, 300)}`)
  }
}

export async function getTenant(server: AppServer, slug: string): Promise<Answer<Resolution>> {
  return answer(await fetch(`${server.baseUrl}/api/tenants/${slug}`))
}

/** PUTs `body` as it is when it is a string, as JSON otherwise. */
export async function putTenant(server: AppServer, slug: string, body: unknown): Promise<Answer<{ error?: string }>> {
  const response = await fetch(`${server.baseUrl}/api/tenants/${slug}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  return answer(response)
}

export interface CacheStatsAnswer {
  backend: string
  namespace: string
  ttl: number
  hits: number
  misses: number
  l1Hits: number
  l2Hits: number
  loaderCalls: number
  errors: number
  sets: number
  hitRate: number
  busReceived: number
}

export async function cacheStats(server: AppServer): Promise<Record<string, CacheStatsAnswer>> {
  const { status, body } = await answer<Record<string, CacheStatsAnswer>>(
    await fetch(`${server.baseUrl}/api/cache/stats`),
  )
  if (status !== 200) throw new Error(`${server.baseUrl}/api/cache/stats answered ${status}`)
  return body
}

export async function getPage(server: AppServer, path: string): Promise<{ status: number; html: string }> {
  const response = await fetch(`${server.baseUrl}${path}`)
  return { status: response.status, html: await response.text() }
}
