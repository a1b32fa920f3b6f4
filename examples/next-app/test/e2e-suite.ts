/**
 * The end-to-end suite: the built app, two `next start` servers sharing one L2, checked over HTTP. Each test file
 * runs it for one L2; everything it writes lives under a namespace and slugs of its own run.
 */
import test from 'ava'
import { setTimeout as sleep } from 'node:timers/promises'
import { Cache } from 'tiered-cache'
import { TestDatabase, DATABASE_URL } from './support/database'
import { cacheStats, getPage, getTenant, putTenant, type Resolution } from './support/http'
import { kill, startServer, terminate, type AppServer } from './support/servers'
import { defineNextCacheChecks, Upstream } from './next-cache-checks'

export type Backend = 'postgres' | 'redis'

const CACHE_NAMES = ['tenant', 'session', 'permission', 'menu'] as const
// The namespace of Next.js's own caches (cache-handlers/*.mjs).
const NEXT_CACHE_NAMESPACE = 'next'
// The figures, restated on purpose: the test checks what the app reports against them.
const EXPECTED_TTLS = { tenant: 300, session: 86_400, permission: 300, menu: 600 }
const CONCURRENT_GETS = 200
const SIGTERM_GRACE_MS = 5_000
const PUT_ROUNDS = 20
// How long another instance may still answer from its old L1 copy after a PUT resolved. The bus delivers in
// milliseconds, so this only allows for a loaded machine; a lost invalidation would leave the old copy until its TTL.
const BUS_BOUND_MS = 2_000
// GETs after the first new answer that must all still answer it.
const CONFIRMING_GETS = 5
const POLL_PAUSE_MS = 5
function cacheUrl(backend: Backend): string {
  return backend === 'postgres' ? DATABASE_URL : process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379'
}

type Propagation = { ms: number; gets: number; tenant: Resolution['tenant'] } | { failure: string }

/** GETs `slug` on `server` until it answers `name`, for up to BUS_BOUND_MS; any name but `oldName` meanwhile fails. */
async function untilServerAnswers(
  server: AppServer,
  slug: string,
  oldName: string | undefined,
  name: string,
): Promise<Propagation> {
  const startedAt = performance.now()
  for (let gets = 1; ; gets += 1) {
    const { status, body } = await getTenant(server, slug)
    const ms = Math.round(performance.now() - startedAt)
    const answered = body.tenant?.name
    if (status !== 200) return { failure: `answered ${status} ${ms} ms after the PUT` }
    if (answered === name) return { ms, gets, tenant: body.tenant }
    if (answered !== oldName) {
      return { failure: `answered ${JSON.stringify(answered)}, neither the old nor the new name, after ${ms} ms` }
    }
    if (ms >= BUS_BOUND_MS) return { failure: `still answered the old name ${ms} ms after the PUT, on GET ${gets}` }
    await sleep(POLL_PAUSE_MS)
  }
}

export function defineE2eSuite(backend: Backend, seededSlugOffset: number): void {
  // Short, unique per run, and valid inside a DNS label and a cache namespace.
  const run = `${backend === 'postgres' ? 'pg' : 'rd'}${Date.now().toString(36)}`
  const namespacePrefix = `e2e-${run}-`
  const database = new TestDatabase()
  let server1: AppServer
  let server2: AppServer
  let standalone: AppServer
  const started: AppServer[] = []
  let seeded: string[] = []
  let upstream: Upstream | undefined
  let inactive: string[] = []

  const seededSlug = (index: number): string => {
    const slug = seeded[index]
    if (slug === undefined) throw new Error(`no seeded tenant ${index}: run npm run seed`)
    return slug
  }

  test.before(async () => {
    seeded = await database.slugs(true, seededSlugOffset, 6)
    upstream = await Upstream.start()
    // A table's first tagged write extends it, and instances that started before read it without tags until they
    // notice, within a second (README, Tags; the root suite tests that window). Like every deployment past its first
    // second, the servers here start on a table already extended.
    const extend = new Cache({ url: cacheUrl(backend), namespace: `${namespacePrefix}${NEXT_CACHE_NAMESPACE}` })
    await extend.invalidateTags('e2e-start', { strict: true })
    await extend.close()
    inactive = await database.slugs(false, seededSlugOffset, 1)
    const env = { CACHE_URL: cacheUrl(backend), CACHE_NAMESPACE_PREFIX: namespacePrefix, DATABASE_URL, PRICES_URL: upstream.url }
    // Started together, kept as soon as each is up: one failing to start must not leave the other unstopped.
    const starting = ['server 1', 'server 2', 'server 3 (standalone)'].map((name) =>
      startServer(name, env, name.includes('standalone')).then((server) => {
        started.push(server)
        return server
      }),
    )
    const outcomes = await Promise.allSettled(starting)
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason
    ;[server1, server2, standalone] = [...started].sort((a, b) => a.name.localeCompare(b.name)) as [
      AppServer,
      AppServer,
      AppServer,
    ]
  })

  test.after.always(async () => {
    await Promise.all(started.map(kill))
    await upstream?.close()
    await database.deleteTenantsEndingWith(`-${run}`)
    await database.close()
    for (const name of [...CACHE_NAMES, NEXT_CACHE_NAMESPACE]) {
      const cache = new Cache({ url: cacheUrl(backend), namespace: `${namespacePrefix}${name}` })
      await cache.clear()
      await cache.close()
    }
  })

  test.serial(`${backend}: preloaded tenants are cache hits from the first request on both servers`, async (t) => {
    for (const [server, slug] of [[server1, seededSlug(0)], [server2, seededSlug(1)]] as const) {
      const readsBefore = await database.readsOf(slug)
      const { status, body } = await getTenant(server, slug)
      t.is(status, 200, server.name)
      t.is(body.tenant?.slug, slug)
      t.true(body.isValid)
      t.true(body.cached, `${slug} on ${server.name} should come from the preloaded cache`)
      t.is(await database.readsOf(slug), readsBefore, `${slug} should not have been read from the database`)
    }
  })

  test.serial(`${backend}: the first GET of a tenant reads the database, the second is a cache hit`, async (t) => {
    const slug = `fresh-${run}`
    await database.insertTenant(slug, 'Fresh Signup Deli')

    const first = await getTenant(server1, slug)
    t.is(first.status, 200)
    t.is(first.body.tenant?.name, 'Fresh Signup Deli')
    t.false(first.body.cached)
    t.is(await database.readsOf(slug), 1)

    const second = await getTenant(server1, slug)
    t.is(second.status, 200)
    t.true(second.body.cached)
    t.deepEqual(second.body.tenant, first.body.tenant)
    t.is(await database.readsOf(slug), 1)
  })

  test.serial(`${backend}: a subdomain is trimmed and lower-cased before it becomes a key`, async (t) => {
    const slug = seededSlug(0)
    const readsBefore = await database.readsOf(slug)
    const { status, body } = await getTenant(server1, encodeURIComponent(`  ${slug.toUpperCase()} `))
    t.is(status, 200)
    t.is(body.tenant?.slug, slug)
    t.true(body.cached)
    t.is(await database.readsOf(slug), readsBefore)
  })

  test.serial(`${backend}: an unknown tenant answers 404 and is then a cached negative on both servers`, async (t) => {
    const slug = `missing-${run}`
    const first = await getTenant(server1, slug)
    t.is(first.status, 404)
    t.like(first.body, { tenant: null, isValid: false, error: 'Restaurant not found', cached: false })

    for (const server of [server1, server2]) {
      const again = await getTenant(server, slug)
      t.is(again.status, 404, server.name)
      t.like(again.body, { tenant: null, isValid: false, error: 'Restaurant not found', cached: true })
    }
    t.is((await getPage(server2, `/${slug}`)).status, 404)

    const put = await putTenant(server1, slug, { name: 'Nobody' })
    t.is(put.status, 404)
    t.true((await getTenant(server2, slug)).body.cached, 'a PUT that changed nothing keeps the cached negative')
    t.is(await database.readsOf(slug), 1)
  })

  test.serial(`${backend}: an inactive tenant is not preloaded and resolves as inactive`, async (t) => {
    const slug = inactive[0]
    if (slug === undefined) return t.fail('no inactive seeded tenant: run npm run seed')
    const readsBefore = await database.readsOf(slug)
    const first = await getTenant(server1, slug)
    t.is(first.status, 200)
    t.like(first.body, { isValid: false, error: 'Restaurant is inactive', cached: false })
    t.is(first.body.tenant?.slug, slug)
    t.true((await getTenant(server2, slug)).body.cached)
    t.is(await database.readsOf(slug), readsBefore + 1)
  })

  test.serial(`${backend}: an invalid subdomain answers 400 without touching the cache or the database`, async (t) => {
    const before = await Promise.all([cacheStats(server1), cacheStats(server2)])
    const readsBefore = await database.totalReads()

    for (const slug of ['not_a_subdomain', '-leading-dash', 'a'.repeat(64), encodeURIComponent('dot.ted')]) {
      const { status, body } = await getTenant(server1, slug)
      t.is(status, 400, slug)
      t.is(body.error, 'Invalid subdomain')
    }
    const put = await putTenant(server2, 'not_a_subdomain', { name: 'Anything' })
    t.is(put.status, 400)

    const after = await Promise.all([cacheStats(server1), cacheStats(server2)])
    for (const [index, stats] of after.entries()) {
      const previous = before[index]?.tenant
      t.like(stats.tenant, { hits: previous?.hits, misses: previous?.misses, loaderCalls: previous?.loaderCalls })
    }
    t.is(await database.totalReads(), readsBefore)
  })

  test.serial(`${backend}: a PUT whose body is not a valid update answers 400 and changes nothing`, async (t) => {
    const slug = seededSlug(2)
    const before = await database.tenant(slug)
    const invalidBodies: unknown[] = [
      'not json',
      [],
      {},
      { name: '' },
      { name: 42 },
      { name: 'x'.repeat(121) },
      { active: 'yes' },
      { settings: [1, 2] },
      { settings: null },
      { colour: 'red' },
      { name: 'Fine Name', extra: true },
    ]
    for (const body of invalidBodies) {
      const answer = await putTenant(server1, slug, body)
      t.is(answer.status, 400, JSON.stringify(body))
      t.is(typeof answer.body.error, 'string')
    }
    t.deepEqual(await database.tenant(slug), before)
    const seen = await getTenant(server2, slug)
    t.is(seen.body.tenant?.name, before?.name)
  })

  // The PUT resolves once its own bus message came back to server 1: that proves the message was published, not that
  // server 2 has handled it yet. So server 2 may answer the old name for a moment, but must answer the new one within
  // the bus bound, and from then on never the old one again.
  test.serial(`${backend}: a PUT on server 1 is seen by server 2 within the bus bound, with its data`, async (t) => {
    const slug = seededSlug(3)
    const delays: number[] = []
    let previousName: string | undefined
    for (let round = 1; round <= PUT_ROUNDS; round += 1) {
      const warm = await getTenant(server2, slug)
      t.true(warm.body.cached, `round ${round}: server 2 should hold the tenant before the update`)
      const oldName = warm.body.tenant?.name
      if (previousName !== undefined) t.is(oldName, previousName, `round ${round}: server 2 went back to an older name`)

      const name = `Renamed Bistro ${run} ${round}`
      const primaryColor = `#${(0x100000 + round).toString(16)}`
      const put = await putTenant(server1, slug, { name, settings: { branding: { primaryColor } } })
      t.is(put.status, 200, `round ${round}`)

      const seen = await untilServerAnswers(server2, slug, oldName, name)
      if ('failure' in seen) return t.fail(`round ${round}: server 2 ${seen.failure}`)
      delays.push(seen.ms)
      t.log(`round ${round}: server 2 answered the new name ${seen.ms} ms after the PUT resolved, on GET ${seen.gets}`)
      t.deepEqual(seen.tenant?.settings, { branding: { primaryColor } }, `round ${round}`)
      // Once seen, the new data stays: a late message or an L2 copy must not bring the old name back.
      for (let get = 1; get <= CONFIRMING_GETS; get += 1) {
        const again = (await getTenant(server2, slug)).body.tenant
        t.is(again?.name, name, `round ${round}: server 2 answered the new name, then ${JSON.stringify(again?.name)}`)
      }
      previousName = name
    }
    t.log(`slowest round: ${Math.max(...delays)} ms from the PUT to server 2 answering the new name`)
    t.is((await database.tenant(slug))?.name, `Renamed Bistro ${run} ${PUT_ROUNDS}`)
  })

  test.serial(`${backend}: ${CONCURRENT_GETS} concurrent GETs of one cold tenant over both servers read the database once`, async (t) => {
    const slug = `burst-${run}`
    await database.insertTenant(slug, 'Burst Noodle Bar')

    const startedAt = performance.now()
    const answers = await Promise.all(
      Array.from({ length: CONCURRENT_GETS }, (_, index) => getTenant(index % 2 === 0 ? server1 : server2, slug)),
    )
    const ms = Math.round(performance.now() - startedAt)

    t.deepEqual(new Set(answers.map((answer) => answer.status)), new Set([200]))
    t.deepEqual(new Set(answers.map((answer) => answer.body.tenant?.slug)), new Set([slug]))
    t.is(await database.readsOf(slug), 1, 'queries to tenants for this slug, counted by Postgres')
    t.is(answers.filter((answer) => !answer.body.cached).length, 1, 'exactly one request should say it read the database')
    t.log(`${CONCURRENT_GETS} concurrent GETs over 2 servers answered in ${ms} ms`)
  })

  test.serial(`${backend}: the tenant page renders the tenant's name`, async (t) => {
    const slug = seededSlug(4)
    const row = await database.tenant(slug)
    const page = await getPage(server2, `/${slug}`)
    t.is(page.status, 200)
    t.true(page.html.includes(`<h1>${row?.name}</h1>`), page.html.slice(0, 500))
  })

  defineNextCacheChecks({
    backend,
    servers: () => [server1, server2],
    standalone: () => standalone,
    slugOf: seededSlug,
    upstream: () => upstream!,
    tenantNamespace: `${namespacePrefix}tenant`,
    nextNamespace: `${namespacePrefix}${NEXT_CACHE_NAMESPACE}`,
    cacheUrl: cacheUrl(backend),
  })

  test.serial(`${backend}: the stats route shows the hits, on the ${backend} L2`, async (t) => {
    const [stats1, stats2] = await Promise.all([cacheStats(server1), cacheStats(server2)])
    for (const [server, stats] of [[server1, stats1], [server2, stats2]] as const) {
      for (const name of CACHE_NAMES) {
        t.like(stats[name], { backend, namespace: `${namespacePrefix}${name}`, ttl: EXPECTED_TTLS[name] })
      }
      const tenant = stats.tenant
      t.truthy(tenant)
      t.true((tenant?.hits ?? 0) > 0, 'hits')
      t.true((tenant?.l1Hits ?? 0) > 0, 'l1Hits')
      t.true((tenant?.hitRate ?? 0) > 0, 'hitRate')
      if (tenant?.errors !== 0) t.log(`${server.name} said:\n${server.output()}`)
      t.is(tenant?.errors, 0, `the L2 should never have failed on ${server.name}`)
    }
    t.true((stats2.tenant?.busReceived ?? 0) > 0, 'server 2 should have received the PUT invalidations')
    t.log(`tenant cache, server 1: ${JSON.stringify(stats1.tenant)}`)
  })

  test.serial(`${backend}: both servers exit cleanly on SIGTERM within ${SIGTERM_GRACE_MS / 1000} s`, async (t) => {
    const results = await Promise.all([server1, server2].map((server) => terminate(server, SIGTERM_GRACE_MS)))
    for (const [index, result] of results.entries()) {
      t.not(result, null, `server ${index + 1} was still running ${SIGTERM_GRACE_MS} ms after SIGTERM`)
      // next start handles SIGTERM itself: it closes the HTTP server and exits with 128 + 15, not by the signal.
      t.deepEqual(result?.exit, { code: 143, signal: null })
      t.log(`server ${index + 1} exited ${result?.ms} ms after SIGTERM`)
    }
  })
}
