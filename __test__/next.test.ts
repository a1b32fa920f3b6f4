// tiered-cache/next: Next.js's two cache handler interfaces, checked as Next.js drives them, on every backend, with
// two instances (two caches on one L2, as two `next start` processes have). The example app's end-to-end test runs
// them under real `next build` / `next start`.
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'

import {
  BACKENDS,
  eventually,
  freePort,
  isolatedOptions,
  openCache,
  runNode,
  secondInstance,
  sleep,
  type Backend,
} from './helpers.js'
import type { Cache as CacheType, CacheOptions } from '../index.js'
import type * as NextModule from '../next.js'

const require = createRequire(import.meta.url)
const next = require('../next.js') as typeof NextModule

// How long another instance may keep its old L1 copy after a set: until the write's bus message reaches it
// (milliseconds; the bound only allows for a loaded machine). A set does not wait for its echo; a delete does.
const BUS_BOUND_MS = 2_000

/** Two instances of an app: a store each (another L1, another bus subscription) on one L2 and namespace. */
async function twoInstances(t: ExecutionContext, backend: Backend, errors: Error[] = []) {
  const options: CacheOptions = { ...(await isolatedOptions(t, backend, 'next')), onError: (e) => errors.push(e) }
  const a = openCache(t, options)
  return { a, b: secondInstance(t, backend, options, a), options }
}

function stream(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk)
      controller.close()
    },
  })
}

async function bytesOf(value: ReadableStream<Uint8Array>): Promise<Buffer> {
  return Buffer.from(await new Response(value).arrayBuffer())
}

function entry(value: ReadableStream<Uint8Array>, fields: Partial<NextModule.UseCacheEntry> = {}) {
  return { value, tags: [], stale: 300, timestamp: Date.now(), expire: 3600, revalidate: 900, ...fields }
}

for (const backend of BACKENDS) {
  const name = backend.name

  test(`${name}: a 'use cache' entry set on one instance is a hit on the other, bytes, tags and times as set, a new stream per get`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    const one = next.createUseCacheHandler({ cache: a })
    const two = next.createUseCacheHandler({ cache: b })
    const timestamp = Date.now()
    await one.set('key', Promise.resolve(entry(stream('0:["$","div",null,', '{"children":"héllo"}]\n'), { tags: ['menu'], timestamp })))
    for (let round = 0; round < 2; round++) {
      const hit = await two.get('key', [])
      t.truthy(hit)
      t.is((await bytesOf(hit!.value)).toString(), '0:["$","div",null,{"children":"héllo"}]\n')
      t.deepEqual({ ...hit, value: undefined }, { value: undefined, tags: ['menu'], stale: 300, timestamp, expire: 3600, revalidate: 900 })
    }
    t.is(await two.get('other', []), undefined)
  })

  test(`${name}: 'use cache' bytes that are not UTF-8, hold NUL or start with a BOM round-trip exactly`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    const cases = {
      binary: Uint8Array.from({ length: 256 }, (_, i) => i),
      nul: new TextEncoder().encode('a\u0000b'),
      bom: Uint8Array.from([0xef, 0xbb, 0xbf, 0x41]),
      empty: new Uint8Array(0),
    }
    for (const [key, bytes] of Object.entries(cases)) {
      await next.createUseCacheHandler({ cache: a }).set(key, Promise.resolve(entry(stream(bytes))))
      const hit = await next.createUseCacheHandler({ cache: b }).get(key, [])
      t.deepEqual(await bytesOf(hit!.value), Buffer.from(bytes), key)
    }
  })

  test(`${name}: a 'use cache' get waits for a set of the same key in progress, and an expire of 0 is not stored`, async (t) => {
    const { a } = await twoInstances(t, backend)
    const handler = next.createUseCacheHandler({ cache: a })
    let finish!: () => void
    const late = new Promise<void>((resolve) => (finish = resolve))
    const setting = handler.set(
      'slow',
      late.then(() => entry(stream('rendered'))),
    )
    const getting = handler.get('slow', [])
    await sleep(50)
    finish()
    const hit = await getting
    t.is((await bytesOf(hit!.value)).toString(), 'rendered', 'the get saw the set it waited for')
    await setting
    await handler.set('dynamic', Promise.resolve(entry(stream('x'), { expire: 0, revalidate: 0 })))
    t.is(await handler.get('dynamic', []), undefined)
  })

  test(`${name}: 'use cache' entries live until expire, not revalidate: Next.js serves them stale while it renders anew`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    await next.createUseCacheHandler({ cache: a }).set('k', Promise.resolve(entry(stream('v'), { revalidate: 1, expire: 60 })))
    await sleep(1_200)
    const hit = await next.createUseCacheHandler({ cache: b }).get('k', [])
    t.is(hit?.revalidate, 1, 'past revalidate, still there: Next.js decides it is stale by its timestamp')
  })

  test(`${name}: updateTags without durations (updateTag) makes entries made before it misses on every instance; getExpiration reports it`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    const one = next.createUseCacheHandler({ cache: a })
    const two = next.createUseCacheHandler({ cache: b })
    await one.set('menu', Promise.resolve(entry(stream('old'), { tags: ['menu:1'] })))
    await one.set('plain', Promise.resolve(entry(stream('kept'), { tags: ['menu:2'] })))
    t.truthy(await two.get('menu', []), 'the other instance holds it')
    t.is(await two.getExpiration(['menu:1']), 0)
    const before = Date.now()
    await one.updateTags(['menu:1'])
    t.is(await two.get('menu', []), undefined)
    t.is(await one.get('menu', []), undefined)
    t.truthy(await two.get('plain', []))
    const expiration = await two.getExpiration(['menu:1', 'menu:2'])
    // The L2's clock, which is this machine's: within a second of the call.
    t.true(Math.abs(expiration - before) < 1_000, `${expiration} vs ${before}`)
    await sleep(5)
    await two.set('menu', Promise.resolve(entry(stream('new'), { tags: ['menu:1'] })))
    const newOne = async () => (await bytesOf((await one.get('menu', []))!.value)).toString() === 'new'
    t.true(await eventually(newOne, BUS_BOUND_MS), 'made after: live, once the bus drops the old L1 copy')
  })

  test(`${name}: updateTags with durations (revalidateTag(tag, 'max')) serves entries made before once more as stale, revalidate -1`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    const one = next.createUseCacheHandler({ cache: a })
    const two = next.createUseCacheHandler({ cache: b })
    await one.set('page', Promise.resolve(entry(stream('old'), { tags: ['posts'] })))
    t.is((await two.get('page', []))?.revalidate, 900)
    await one.updateTags(['posts'], { expire: 3600 })
    for (const handler of [one, two]) {
      const stale = await handler.get('page', [])
      t.is(stale?.revalidate, -1)
      t.is((await bytesOf(stale!.value)).toString(), 'old')
    }
    await sleep(5)
    await two.set('page', Promise.resolve(entry(stream('fresh'), { tags: ['posts'] })))
    const isFresh = async () => {
      const fresh = await one.get('page', [])
      return fresh?.revalidate === 900 && (await bytesOf(fresh.value)).toString() === 'fresh'
    }
    t.true(await eventually(isFresh, BUS_BOUND_MS), 'the fresh copy, once the bus drops the stale L1 copy')
    t.true((await a.stats()).staleHits >= 1)
  })

  test(`${name}: every incremental cache value kind round-trips exactly through another instance`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    const One = next.createIncrementalCacheHandler({ cache: a })
    const Two = next.createIncrementalCacheHandler({ cache: b })
    const one = new One({})
    const two = new Two({})
    const headers = { 'x-next-cache-tags': '_N_T_/layout,_N_T_/blog', 'content-type': 'text/html', 'set-cookie': ['a=1', 'b=2'] }
    const values: Record<string, NextModule.IncrementalCacheValue | null> = {
      appPage: {
        kind: 'APP_PAGE',
        html: '<html>héllo</html>',
        rscData: Buffer.from([0, 1, 2, 255]),
        headers,
        postponed: undefined,
        status: 200,
        segmentData: new Map([
          ['/_tree', Buffer.from('tree')],
          ['/blog', Buffer.from([0xc3, 0x28])],
        ]),
      },
      appRoute: { kind: 'APP_ROUTE', body: Buffer.from('{"ok":true}'), status: 201, headers: { 'content-type': 'application/json' } },
      pages: { kind: 'PAGES', html: '<p>x</p>', pageData: { pageProps: { n: 1, list: [1, 'a', null] } }, headers: undefined, status: undefined },
      fetch: { kind: 'FETCH', data: { headers: { a: 'b' }, body: 'eyJ4IjoxfQ==', url: 'http://upstream/x', status: 200 }, tags: ['t1'], revalidate: 60 },
      redirect: { kind: 'REDIRECT', props: { destination: '/x' } },
      image: { kind: 'IMAGE', etag: 'e', upstreamEtag: 'u', buffer: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0]), extension: 'png', revalidate: 60 },
      nothing: null,
    }
    const cacheControl = { revalidate: 60, expire: 3600 }
    for (const [key, value] of Object.entries(values)) {
      await one.set(`/${key}`, value, value?.kind === 'FETCH' ? { tags: ['t1'] } : { cacheControl })
      const got = await two.get(`/${key}`, { kind: value?.kind === 'FETCH' ? 'FETCH' : 'APP_PAGE', tags: ['t1'] })
      t.truthy(got, key)
      t.deepEqual(got!.value, value, key)
      t.true(typeof got!.lastModified === 'number' && got!.lastModified <= Date.now(), key)
      if (value?.kind !== 'FETCH') t.deepEqual(got!.cacheControl, cacheControl, key)
    }
    const page = (await two.get('/appPage', { kind: 'APP_PAGE' }))!.value as unknown as { rscData: unknown; segmentData: unknown }
    t.true(Buffer.isBuffer(page.rscData))
    t.true(page.segmentData instanceof Map)
  })

  test(`${name}: incremental entries are judged by their tags: x-next-cache-tags for pages, ctx.tags and soft tags for fetches`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    const one = new (next.createIncrementalCacheHandler({ cache: a }))({})
    const two = new (next.createIncrementalCacheHandler({ cache: b }))({})
    const page = {
      kind: 'APP_PAGE',
      html: 'v1',
      rscData: Buffer.from('rsc'),
      headers: { 'x-next-cache-tags': '_N_T_/layout,_N_T_/menu,menu' },
      postponed: undefined,
      status: 200,
      segmentData: undefined,
    }
    await one.set('/menu', page, { cacheControl: { revalidate: 30, expire: 3600 } })
    const fetched = { kind: 'FETCH', data: { headers: {}, body: 'e30=', url: 'http://u/', status: 200 }, tags: ['prices'], revalidate: 30 }
    await one.set('fetch-key', fetched, { tags: ['prices'] })
    t.truthy(await two.get('/menu', { kind: 'APP_PAGE' }))
    t.truthy(await two.get('fetch-key', { kind: 'FETCH', tags: ['prices'], softTags: ['_N_T_/menu'] }))

    // revalidateTag(tag, 'max'): stale, lastModified just past revalidate (Next.js serves it and renders anew).
    await one.revalidateTag('menu', { expire: 3600 })
    const stale = await two.get('/menu', { kind: 'APP_PAGE' })
    t.truthy(stale)
    t.true(stale!.lastModified <= Date.now() - 30_000, 'past its revalidate time')
    // revalidatePath: the implicit tag, hard.
    await two.revalidateTag(['_N_T_/menu'])
    t.is(await one.get('/menu', { kind: 'APP_PAGE' }), null)
    t.is(await one.get('fetch-key', { kind: 'FETCH', tags: ['prices'], softTags: ['_N_T_/menu'] }), null, 'soft tags judge a fetch')
    await sleep(5)
    await one.set('fetch-key', fetched, { tags: ['prices'] })
    const live = async () => (await two.get('fetch-key', { kind: 'FETCH', tags: ['prices'], softTags: ['_N_T_/menu'] })) !== null
    t.true(await eventually(live, BUS_BOUND_MS), 'stored after: live, once the bus drops the old L1 copy')
    await one.revalidateTag('prices')
    t.is(await two.get('fetch-key', { kind: 'FETCH', tags: ['prices'] }), null, 'its own tags judge a fetch')
  })

  test(`${name}: Cache.getEntry answers stale entries flagged (grace, soft tags) where get misses them; an expire of 0 is hard`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    await a.set('graced', 'old', { ttl: 1, grace: 60 })
    await a.set('tagged', 'old', { tags: ['soft'] })
    await sleep(1_100)
    t.is(await b.get('graced'), undefined)
    t.deepEqual(await b.getEntry('graced'), { value: 'old', stale: true })
    t.deepEqual(await b.getEntry('tagged'), { value: 'old', stale: false })
    await a.invalidateTags('soft', { soft: true })
    t.is(await b.get('tagged'), undefined)
    t.deepEqual(await b.getEntry('tagged'), { value: 'old', stale: true })
    t.is(await b.getEntry('never'), undefined)
    const handler = next.createUseCacheHandler({ cache: a })
    await handler.set('page', Promise.resolve(entry(stream('v'), { tags: ['hard'] })))
    await next.createUseCacheHandler({ cache: b }).updateTags(['hard'], { expire: 0 })
    t.is(await handler.get('page', []), undefined, 'revalidateTag(tag, { expire: 0 }) expires at once')
  })

  test(`${name}: a fenced set is dropped when its key or one of its tags changed on any instance after the fence`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    for (let round = 0; round < 10; round++) {
      const fence = (await a.writeFence(`k${round}`))!
      t.true(Number.isSafeInteger(fence))
      if (round % 3 === 0) await b.invalidateTags(`t${round}`)
      if (round % 3 === 1) await b.set(`k${round}`, 'theirs')
      const stored = await a.set(`k${round}`, 'mine', { tags: [`t${round}`], ifUnchangedSince: fence })
      // Memory only there is one instance, and its fence goes by tags alone.
      const expected = round % 3 === 2 || (backend.url === undefined && round % 3 === 1)
      t.is(stored, expected, `round ${round}`)
      for (const cache of [a, b]) {
        t.is(await cache.get(`k${round}`), round % 3 === 0 ? undefined : expected ? 'mine' : 'theirs', `round ${round}`)
      }
    }
    t.is((await a.stats()).loadsDiscarded, backend.url === undefined ? 4 : 7)
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 60, 'x']) {
      t.throws(() => a.set('k', 1, { ifUnchangedSince: bad as number }), { code: 'ERR_CACHE_INVALID_TTL' }, String(bad))
    }
  })

  test(`${name}: a 'use cache' render during which updateTag ran on another instance is not stored`, async (t) => {
    const { a, b } = await twoInstances(t, backend)
    const one = next.createUseCacheHandler({ cache: a })
    const two = next.createUseCacheHandler({ cache: b })
    for (let round = 0; round < 10; round++) {
      let finish!: () => void
      const rendered = new Promise<void>((resolve) => (finish = resolve))
      // The fence is one L2 read, taken as the render starts: give it twenty times what one takes now, so that the
      // update below comes after it however loaded the machine is.
      const started = performance.now()
      await a.writeFence('probe')
      const fenceMs = performance.now() - started
      const setting = one.set(`page${round}`, rendered.then(() => entry(stream('old data'), { tags: [`menu${round}`] })))
      await sleep(Math.max(50, 20 * fenceMs))
      await two.updateTags([`menu${round}`])
      finish()
      await setting
      t.is(await one.get(`page${round}`, []), undefined, `round ${round}: rendered from data read before updateTag`)
      t.is(await two.get(`page${round}`, []), undefined, `round ${round}`)
    }
    await one.set('after', Promise.resolve(entry(stream('new'), { tags: ['menu0'] })))
    t.truthy(await two.get('after', []), 'a render after the update is stored')
  })

  test(`${name}: updateTags and revalidateTag of the same tags at once are one invalidation`, async (t) => {
    const { a } = await twoInstances(t, backend)
    const useCache = next.createUseCacheHandler({ cache: a })
    const incremental = new (next.createIncrementalCacheHandler({ cache: a }))({})
    await Promise.all([useCache.updateTags(['x', 'y']), incremental.revalidateTag(['x', 'y'])])
    t.is((await a.stats()).tagInvalidations, 1)
  })
}

test('with the L2 down, the handlers serve misses and store nothing without rejecting, but an invalidation rejects', async (t) => {
  const errors: Error[] = []
  const cache = openCache(t, {
    url: `redis://127.0.0.1:${await freePort()}`,
    namespace: 'next-down',
    l2Timeout: 0.2,
    onError: (e) => errors.push(e),
  })
  const useCache = next.createUseCacheHandler({ cache })
  const incremental = new (next.createIncrementalCacheHandler({ cache }))({})
  t.is(await useCache.get('k', []), undefined)
  await useCache.set('k', Promise.resolve(entry(stream('v'))))
  t.is(await incremental.get('/p', { kind: 'APP_PAGE' }), null)
  await incremental.set('/p', { kind: 'REDIRECT', props: {} }, {})
  t.is(await useCache.getExpiration(['t']), 0)
  const rejected = await t.throwsAsync(useCache.updateTags(['t']))
  t.regex((rejected as Error & { code: string }).code, /^ERR_CACHE_L2/)
  const alsoRejected = await t.throwsAsync(incremental.revalidateTag('t', { expire: 60 }))
  t.regex((alsoRejected as Error & { code: string }).code, /^ERR_CACHE_L2/)
  t.true(errors.length > 0 && errors.every((e) => /^ERR_CACHE_L2/.test((e as Error & { code: string }).code)))
})

test('an entry the cache refuses (a tag over 256 bytes) is not stored and goes to onError', async (t) => {
  const errors: Error[] = []
  const cache = openCache(t, { namespace: 'next-refused' })
  const handler = next.createUseCacheHandler({ cache, onError: (e: Error) => errors.push(e) })
  await handler.set('k', Promise.resolve(entry(stream('v'), { tags: ['x'.repeat(300)] })))
  t.is(await handler.get('k', []), undefined)
  t.is((errors[0] as Error & { code: string }).code, 'ERR_CACHE_INVALID_TAG')
})

test('long keys are stored under a digest; factories with equal options share one cache per process', async (t) => {
  const handler = next.createUseCacheHandler({ namespace: `next-shared-${process.pid}` })
  const incremental = new (next.createIncrementalCacheHandler({ namespace: `next-shared-${process.pid}` }))({})
  const long = 'k'.repeat(10_000)
  await handler.set(long, Promise.resolve(entry(stream('v'))))
  t.is((await bytesOf((await handler.get(long, []))!.value)).toString(), 'v')
  await incremental.set(long, { kind: 'REDIRECT', props: { a: 1 } }, {})
  t.deepEqual((await incremental.get(long, { kind: 'APP_PAGE' }))?.value, { kind: 'REDIRECT', props: { a: 1 } })
  // Both handlers went through one cache, which handlerCaches() lists once, with both sets counted.
  const shared = next.createUseCacheHandler({ namespace: `next-shared-${process.pid}` })
  t.truthy(await shared.get(long, []))
  const listed = next.handlerCaches().filter((cache) => cache.namespace === `next-shared-${process.pid}`)
  t.is(listed.length, 1)
  t.is((await listed[0]!.stats()).sets, 2)
})

async function fakeNextApp(t: ExecutionContext, version: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tc-next-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await mkdir(path.join(dir, 'node_modules', 'next'), { recursive: true })
  await writeFile(path.join(dir, 'package.json'), '{"name":"app","private":true}')
  await writeFile(path.join(dir, 'node_modules', 'next', 'package.json'), JSON.stringify({ name: 'next', version }))
  return dir
}

test('a Next.js version whose interfaces the handlers do not speak fails at start-up with ERR_CACHE_NEXT_VERSION', async (t) => {
  const root = path.resolve(import.meta.dirname, '..')
  const script = (dir: string) =>
    `process.chdir(${JSON.stringify(dir)});` +
    `try { require(${JSON.stringify(path.join(root, 'next.js'))}).createUseCacheHandler(); console.log('ok') }` +
    `catch (e) { console.log(e.code, e.message) }`
  const old = await runNode(['-e', script(await fakeNextApp(t, '15.5.4'))])
  t.regex(old.stdout, /^ERR_CACHE_NEXT_VERSION .*Next\.js 16\.x; this app has Next\.js 15\.5\.4/)
  const current = await runNode(['-e', script(await fakeNextApp(t, '16.4.5'))])
  t.is(current.stdout.trim(), 'ok')
  const newer = await fakeNextApp(t, '17.0.0')
  t.throws(() => next.checkNextVersion(newer), { code: 'ERR_CACHE_NEXT_VERSION' })
})

test('tiered-cache/next loads as ESM and as CommonJS through the package exports', async (t) => {
  const esm = await runNode([
    '--input-type=module',
    '-e',
    "import { createUseCacheHandler, createIncrementalCacheHandler } from 'tiered-cache/next'; console.log(typeof createUseCacheHandler, typeof createIncrementalCacheHandler)",
  ])
  t.is(esm.stdout.trim(), 'function function', esm.stderr)
  const cjs = await runNode(['-e', "console.log(typeof require('tiered-cache/next').createIncrementalCacheHandler)"])
  t.is(cjs.stdout.trim(), 'function', cjs.stderr)
})
