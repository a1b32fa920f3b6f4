/**
 * Next.js's own caches on tiered-cache/next, over two `next start` servers on one L2: a `'use cache'` component, the
 * fetch cache with tags, and revalidateTag / revalidatePath across instances.
 */
import test from 'ava'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { getPage } from './support/http'
import type { AppServer } from './support/servers'

// How long a background render Next.js started for a stale entry may take to land, on a loaded machine.
const RENDER_BOUND_MS = 10_000

/** The upstream price service the app's fetch cache sits in front of: counts the requests per path. */
export class Upstream {
  readonly requests = new Map<string, number>()
  private constructor(private readonly server: Server, readonly url: string) {}

  static async start(): Promise<Upstream> {
    let upstream: Upstream | undefined
    const server = createServer((request, response) => {
      const path = request.url ?? '/'
      const count = (upstream!.requests.get(path) ?? 0) + 1
      upstream!.requests.set(path, count)
      response.setHeader('content-type', 'application/json')
      response.end(JSON.stringify({ path, version: count }))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const address = server.address()
    if (address === null || typeof address === 'string') throw new Error('no TCP address')
    upstream = new Upstream(server, `http://127.0.0.1:${address.port}`)
    return upstream
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

/** Which process rendered the copy of the menu page a server answered with, and when. */
async function rendering(server: AppServer, slug: string): Promise<string> {
  const page = await getPage(server, `/menu/${slug}`)
  const match = /id="rendering">([^<]+)</.exec(page.html)
  if (page.status !== 200 || match === null) throw new Error(`${server.name} answered ${page.status}: ${page.html.slice(0, 300)}`)
  return match[1]!
}

async function revalidate(server: AppServer, body: Record<string, string>): Promise<void> {
  const response = await fetch(`${server.baseUrl}/api/revalidate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  if (!response.ok) throw new Error(`revalidate ${JSON.stringify(body)} on ${server.name}: ${response.status} ${await response.text()}`)
}

async function prices(server: AppServer, slug: string): Promise<number> {
  const response = await fetch(`${server.baseUrl}/api/prices/${slug}`)
  const body = (await response.json()) as { prices?: { version: number } }
  if (!response.ok || body.prices === undefined) throw new Error(`${server.name}: prices answered ${response.status}`)
  return body.prices.version
}

/** Polls until `read` answers something other than `old`, for up to `boundMs`; the new answer, or undefined. */
async function until(read: () => Promise<string>, old: string, boundMs: number): Promise<string | undefined> {
  const deadline = performance.now() + boundMs
  while (performance.now() < deadline) {
    const now = await read()
    if (now !== old) return now
    await sleep(20)
  }
  return undefined
}

const pidOf = (copy: string) => copy.split(':')[0]

export function defineNextCacheChecks(
  backend: string,
  servers: () => [AppServer, AppServer],
  slugOf: (index: number) => string,
  upstream: () => Upstream,
): void {
  test.serial(`${backend}: a 'use cache' component rendered on server 1 is a cache hit on server 2`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(5)
    const first = await rendering(server1, slug)
    t.is(await rendering(server2, slug), first, 'server 2 served the copy server 1 rendered')
    t.is(await rendering(server1, slug), first)
    t.not(pidOf(first), '', first)
  })

  test.serial(`${backend}: revalidateTag(tag, 'max') on server 1 has server 2 serve the stale copy once, then a fresh one`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(5)
    const old = await rendering(server2, slug)
    await revalidate(server1, { tag: `menu:${slug}`, profile: 'max' })
    t.is(await rendering(server2, slug), old, 'the stale copy, once, while Next.js renders anew')
    const fresh = await until(() => rendering(server2, slug), old, RENDER_BOUND_MS)
    t.truthy(fresh, `server 2 still served ${old} ${RENDER_BOUND_MS} ms later`)
    t.is(await until(() => rendering(server1, slug), old, RENDER_BOUND_MS), fresh, 'server 1 serves the fresh copy too')
  })

  test.serial(`${backend}: an immediate revalidateTag on server 2 makes server 1's next render a fresh one`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(5)
    const old = await rendering(server1, slug)
    await revalidate(server2, { tag: `menu:${slug}` })
    const next = await rendering(server1, slug)
    t.not(next, old, 'no stale copy after an immediate expiry')
    t.is(await rendering(server2, slug), next)
  })

  test.serial(`${backend}: revalidatePath on server 1 makes server 2's next render a fresh one`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(5)
    const old = await rendering(server2, slug)
    await revalidate(server1, { path: `/menu/${slug}` })
    const next = await rendering(server2, slug)
    t.not(next, old)
    t.is(await rendering(server1, slug), next)
  })

  test.serial(`${backend}: a fetch with next.tags is fetched once for both servers, and again on both after its tag is revalidated`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(5)
    const path = `/prices/${slug}`
    const first = await prices(server1, slug)
    t.is(await prices(server2, slug), first, 'server 2 answered from the shared fetch cache')
    t.is(upstream().requests.get(path), 1, 'one upstream request for both servers')
    await revalidate(server2, { tag: `prices:${slug}` })
    const second = await prices(server1, slug)
    t.is(second, first + 1, 'server 1 fetched anew')
    t.is(await prices(server2, slug), second)
    t.is(upstream().requests.get(path), 2)
  })
}
