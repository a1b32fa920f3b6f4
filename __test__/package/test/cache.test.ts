// A user's suite against the installed package, on the real Postgres and Redis: the calls an app makes first, and a
// caught error narrowed by its `code`. tsc checks the types (expectTypeOf is a compile-time assertion there).
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import { afterAll, describe, expect, expectTypeOf, test } from 'vitest'
import { Cache, type CacheError, type CacheErrorCode, type CacheStats } from 'tiered-cache'

interface Tenant {
  id: number
  slug: string
  plan: 'free' | 'pro'
}

const URLS = {
  postgres: process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  redis: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  memory: undefined,
} as const
type Backend = keyof typeof URLS
// All three here; the release workflow's runners without Postgres and Redis (macOS, Windows, Alpine) ask for memory.
const BACKENDS = (process.env.PACKAGE_TEST_BACKENDS ?? 'postgres,redis,memory')
  .split(',')
  .map((name) => {
    if (!(name in URLS)) throw new Error(`PACKAGE_TEST_BACKENDS: unknown backend ${name}`)
    return [name as Backend, URLS[name as Backend]] as const
  })

/** A user's guard: every error the cache raises is an Error with one of the documented codes. */
function isCacheError(error: unknown): error is CacheError {
  return error instanceof Error && typeof (error as { code?: unknown }).code === 'string'
}

/** What an app does with a caught cache error: narrow it by `code` (a typo in a case label fails tsc). */
function describeError(error: unknown): string {
  if (!isCacheError(error)) throw error
  switch (error.code) {
    case 'ERR_CACHE_INVALID_KEY':
      return 'bad key'
    case 'ERR_CACHE_CLOSED':
      return 'closed'
    default: {
      const other: CacheErrorCode = error.code
      return other
    }
  }
}

test('require() and import give the same Cache class', () => {
  const require = createRequire(import.meta.url)
  expect(require('tiered-cache').Cache).toBe(Cache)
})

describe.each(BACKENDS)('on %s', (backend, url) => {
  const namespace = `pkg-${backend}-${randomBytes(6).toString('hex')}`
  const errors: CacheError[] = []
  const cache = new Cache({ url, namespace, ttl: 60, onError: (error) => errors.push(error) })

  afterAll(async () => {
    await cache.clear()
    await cache.close()
  })

  test('the cache is on the L2 it was given', () => {
    expect(cache.backend).toBe(backend)
    expect(cache.namespace).toBe(namespace)
  })

  test('set, then get', async () => {
    const acme: Tenant = { id: 1, slug: 'acme', plan: 'pro' }
    await cache.set('tenant:acme', acme, { ttl: 30 })
    const tenant = await cache.get<Tenant>('tenant:acme')
    expectTypeOf(tenant).toEqualTypeOf<Tenant | undefined>()
    expect(tenant).toEqual(acme)
    expect(await cache.get('tenant:nobody')).toBeUndefined()
  })

  test('setMany, then getMany<Tenant> in the order asked', async () => {
    const tenants: Tenant[] = [
      { id: 3, slug: 'gamma', plan: 'pro' },
      { id: 4, slug: 'delta', plan: 'free' },
    ]
    await cache.setMany(tenants.map((tenant) => ({ key: `tenant:${tenant.slug}`, value: tenant, ttl: 30 })))
    const found = await cache.getMany<Tenant>(['tenant:delta', 'tenant:nobody', 'tenant:gamma'])
    expectTypeOf(found).toEqualTypeOf<Array<Tenant | undefined>>()
    expect(found).toEqual([tenants[1], undefined, tenants[0]])
  })

  test('getOrSet<Tenant | null> loads once, caches the null too', async () => {
    let loads = 0
    const load = async (): Promise<Tenant | null> => {
      loads += 1
      return null
    }
    const first = await cache.getOrSet<Tenant | null>('tenant:ghost', load)
    expectTypeOf(first).toEqualTypeOf<Tenant | null>()
    const again = await cache.getOrSet<Tenant | null>('tenant:ghost', load)
    expect([first, again, loads]).toEqual([null, null, 1])

    // Without a type argument, the loader's return type is the result's.
    const inferred = await cache.getOrSet('tenant:beta', () => ({ id: 2, slug: 'beta', plan: 'free' as const }))
    expectTypeOf(inferred).toEqualTypeOf<{ id: number; slug: string; plan: 'free' }>()
    expect(inferred.slug).toBe('beta')
  })

  test('invalidatePattern removes the matching keys only', async () => {
    await Promise.all(['region:eu:1', 'region:eu:2', 'region:us:1'].map((key) => cache.set(key, key)))
    const removed = await cache.invalidatePattern('region:eu:*')
    expectTypeOf(removed).toEqualTypeOf<number>()
    expect(removed).toBe(2)
    expect(await cache.get('region:eu:1')).toBeUndefined()
    expect(await cache.get('region:us:1')).toBe('region:us:1')
  })

  test('stats count what happened', async () => {
    const stats = await cache.stats()
    expectTypeOf(stats).toEqualTypeOf<CacheStats>()
    expect(stats.hits).toBeGreaterThan(0)
    expect(stats.misses).toBeGreaterThan(0)
    expect(stats.sets).toBeGreaterThan(0)
    expect(stats.loaderCalls).toBe(2)
    expect(errors).toEqual([])
  })

  test('a bad key is a CacheError with code ERR_CACHE_INVALID_KEY, thrown synchronously', () => {
    let caught: unknown
    try {
      void cache.get('')
    } catch (error) {
      caught = error
    }
    expect(caught).toBeInstanceOf(TypeError)
    expect(describeError(caught)).toBe('bad key')
  })

  test('after close(), calls fail with ERR_CACHE_CLOSED', async () => {
    const other = new Cache({ url, namespace: `${namespace}-closed` })
    await other.close()
    expect(() => other.get('k')).toThrow(expect.objectContaining({ code: 'ERR_CACHE_CLOSED' }))
    try {
      await other.set('k', 1)
    } catch (error) {
      expect(describeError(error)).toBe('closed')
    }
    expect.assertions(2)
  })
})
