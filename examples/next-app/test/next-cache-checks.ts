/**
 * Next.js's own caches on tiered-cache/next, over two `next start` servers on one L2: a `'use cache'` component, the
 * fetch cache with tags, and revalidateTag / revalidatePath across instances.
 */
import test from 'ava'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { cacheStats, getPage } from './support/http'
import { chromium } from 'playwright-core'
import { Cache } from 'tiered-cache'
import type { AppServer } from './support/servers'

// How long a background render Next.js started for a stale entry may take to land, on a loaded machine.
const RENDER_BOUND_MS = 10_000
// How long a server may still answer the old copy after POST /api/revalidate answered: Next.js runs a route
// handler's revalidations after its response (waitUntil), then the bus carries them to the other instances, both in
// milliseconds; this only allows for a loaded machine.
const BUS_BOUND_MS = 2_000

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

/**
 * Next.js stores a render's cache entries in the background, after the response: resolves once `server` has stored
 * more than `before` entries in Next.js's cache namespace, so that another instance can be asked for them.
 */
async function storedMoreThan(server: AppServer, namespace: string, before: number): Promise<number> {
  const deadline = performance.now() + RENDER_BOUND_MS
  for (;;) {
    const sets = (await cacheStats(server))[namespace]?.sets ?? 0
    if (sets > before) return sets
    if (performance.now() > deadline) throw new Error(`${server.name} stored nothing in ${namespace} within ${RENDER_BOUND_MS} ms`)
    await sleep(20)
  }
}

async function setsOf(server: AppServer, namespace: string): Promise<number> {
  return (await cacheStats(server))[namespace]?.sets ?? 0
}

export interface NextCacheContext {
  backend: string
  /** Two `next start` servers on one L2. */
  servers: () => [AppServer, AppServer]
  /** The `output: 'standalone'` server.js on the same L2. */
  standalone: () => AppServer
  slugOf: (index: number) => string
  upstream: () => Upstream
  /** The namespaces of the app's tenant cache and of Next.js's caches, and their L2. */
  tenantNamespace: string
  nextNamespace: string
  cacheUrl: string
}

export function defineNextCacheChecks(context: NextCacheContext): void {
  const { backend, servers, slugOf, upstream } = context
  test.serial(`${backend}: a 'use cache' component rendered on server 1 is a cache hit on server 2`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(5)
    const before = await setsOf(server1, context.nextNamespace)
    const first = await rendering(server1, slug)
    await storedMoreThan(server1, context.nextNamespace, before)
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

  test.serial(`${backend}: an immediate revalidateTag on server 2 serves a fresh render, and so does server 1, within the bus bound`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(5)
    const old = await rendering(server1, slug)
    t.is(await rendering(server2, slug), old)
    await revalidate(server2, { tag: `menu:${slug}` })
    t.truthy(await until(() => rendering(server2, slug), old, BUS_BOUND_MS), `server 2 still served ${old}`)
    t.truthy(await until(() => rendering(server1, slug), old, BUS_BOUND_MS), `server 1 still served ${old}`)
  })

  test.serial(`${backend}: revalidatePath on server 1 serves a fresh render, and so does server 2, within the bus bound`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(5)
    const old = await rendering(server2, slug)
    t.is(await rendering(server1, slug), old)
    await revalidate(server1, { path: `/menu/${slug}` })
    t.truthy(await until(() => rendering(server1, slug), old, BUS_BOUND_MS), `server 1 still served ${old}`)
    t.truthy(await until(() => rendering(server2, slug), old, BUS_BOUND_MS), `server 2 still served ${old}`)
  })

  test.serial(`${backend}: a fetch with next.tags is fetched once for both servers, and again on both after its tag is revalidated`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(5)
    const path = `/prices/${slug}`
    const before = await setsOf(server1, context.nextNamespace)
    const first = await prices(server1, slug)
    await storedMoreThan(server1, context.nextNamespace, before)
    t.is(await prices(server2, slug), first, 'server 2 answered from the shared fetch cache')
    t.is(upstream().requests.get(path), 1, 'one upstream request for both servers')
    const stored = await setsOf(server2, context.nextNamespace)
    await revalidate(server2, { tag: `prices:${slug}` })
    const fetched = await until(async () => String(await prices(server2, slug)), String(first), BUS_BOUND_MS)
    t.is(fetched, String(first + 1), 'server 2 fetched anew')
    await storedMoreThan(server2, context.nextNamespace, stored)
    const seen = await until(async () => String(await prices(server1, slug)), String(first), BUS_BOUND_MS)
    t.is(seen, String(first + 1), "server 1 answers server 2's new fetch within the bus bound")
    t.is(upstream().requests.get(path), 2)
  })

  test.serial(`${backend}: the standalone server.js (native binary traced into it) answers from the fetch cache server 1 filled`, async (t) => {
    // A build of its own (output: 'standalone'), so 'use cache' keys, which carry build-specific function ids, are
    // not shared with the `next start` servers; the fetch cache's keys are, as the URL and options make them.
    const [server1] = servers()
    const slug = slugOf(4)
    const path = `/prices/${slug}`
    const before = await setsOf(server1, context.nextNamespace)
    const first = await prices(server1, slug)
    await storedMoreThan(server1, context.nextNamespace, before)
    t.is(await prices(context.standalone(), slug), first)
    t.is(upstream().requests.get(path), 1, 'the standalone server did not fetch')
    t.is((await cacheStats(context.standalone()))[context.nextNamespace]?.backend, backend)
  })

  test.serial(`${backend}: /admin/cache in a real browser shows each cache's counters, and its Server Action's updateTag reaches server 2`, async (t) => {
    const [server1, server2] = servers()
    const slug = slugOf(4)
    const old = await rendering(server2, slug)
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
    t.teardown(() => browser.close())
    const page = await browser.newPage()
    await page.goto(`${server1.baseUrl}/admin/cache`)
    const row = page.locator(`tr[data-namespace="${context.nextNamespace}"]`)
    await row.waitFor()
    t.is(await row.locator('.backend').textContent(), backend)
    t.is(await row.locator('.l2-state').textContent(), 'up')
    t.true(Number(await row.locator('.hits').textContent()) > 0, 'Next.js cache hits on server 1')
    t.regex((await row.locator('.hit-rate').textContent()) ?? '', /^\d+\.\d%$/)
    t.true(Number(await row.locator('.l1-entries').textContent()) > 0)
    const tenantRow = page.locator(`tr[data-namespace="${context.tenantNamespace}"]`)
    t.true(Number(await tenantRow.locator('.hits').textContent()) > 0, 'tenant cache hits')

    await page.fill('#refresh-slug', slug)
    const action = page.waitForResponse((response) => response.request().method() === 'POST')
    await page.click('#refresh-menu')
    t.is((await action).status(), 200)
    t.truthy(await until(() => rendering(server2, slug), old, BUS_BOUND_MS), "updateTag in the Server Action reached server 2")
  })

  test.serial(`${backend}: GET /api/cron/cache-warmup stores every missing active tenant once, for every server`, async (t) => {
    const [server1, server2] = servers()
    const tenants = new Cache({ url: context.cacheUrl, namespace: context.tenantNamespace })
    t.teardown(() => tenants.close())
    await tenants.clear()
    const warm = async (server: AppServer) => {
      const response = await fetch(`${server.baseUrl}/api/cron/cache-warmup`)
      t.is(response.status, 200)
      return (await response.json()) as { tenants: number; stored: number }
    }
    const first = await warm(server1)
    t.true(first.tenants > 0)
    t.is(first.stored, first.tenants, 'every active tenant stored after the clear')
    t.is((await warm(server1)).stored, 0)
    t.is((await warm(server2)).stored, 0, 'server 2 finds them in the shared L2')
  })
}

// Debian's chromium, never a downloaded browser; the flags keep it off the network it cannot reach.
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
