// Postgres behind PgBouncer in transaction pooling (the parametrized suites also run on it, as the `pgbouncer`
// backend): what a transaction pooler cannot carry is found and said at once, never a bus that silently hears nothing.
import test from 'ava'

import { startPgBouncer } from './servers.mjs'
import { PGBOUNCER_URL, POSTGRES_URL, eventually, openCache, sleep, uniqueNamespace, withPg } from './helpers.js'
import type { CacheError } from '../index.js'

test('pgbouncer: a bus pointed at a transaction pooler is reported at once with ERR_CACHE_BUS, and counted in stats', async (t) => {
  // A pooler of its own: the LISTEN that went through it stays on its server connections, whose next clients would
  // then receive notifications they never asked for (sqlx fails such a call), and the shared one serves other files.
  const bouncer = await startPgBouncer()
  t.teardown(() => bouncer.stop())
  const errors: CacheError[] = []
  const cache = openCache(t, {
    url: bouncer.url,
    namespace: uniqueNamespace('deaf'),
    postgres: { preparedStatements: false },
    onError: (e) => errors.push(e),
  })
  await cache.set('k', 1)
  t.is(await cache.get('k'), 1, 'the pooled calls work')
  t.true(await eventually(() => errors.some((e) => e.code === 'ERR_CACHE_BUS'), 15_000), 'reported')
  const reported = errors.find((e) => e.code === 'ERR_CACHE_BUS')!
  t.regex(reported.message, /LISTEN does not work/)
  t.regex(reported.message, /postgres\.sessionUrl/)
  const stats = await cache.stats()
  t.true(stats.busUnheard >= 1)
  t.false(stats.busUp)
  await sleep(5_000)
  t.is(errors.filter((e) => e.code === 'ERR_CACHE_BUS').length, 1, 'reported once, not per retry')
  t.log(`subscriptions found unheard in ~10 s: ${(await cache.stats()).busUnheard}`)
})

test('pgbouncer: with sessionUrl direct, the bus is up and the locks hold their session on the database', async (t) => {
  if (!PGBOUNCER_URL) return t.fail('TEST_PGBOUNCER_URL is not set: run the suites through npm run test:node')
  const errors: CacheError[] = []
  const options = {
    url: PGBOUNCER_URL,
    namespace: uniqueNamespace('session'),
    postgres: { preparedStatements: false, sessionUrl: POSTGRES_URL },
    onError: (e: CacheError) => errors.push(e),
  }
  const cache = openCache(t, options)
  t.true(await eventually(async () => (await cache.stats()).busUp, 10_000))
  let release!: () => void
  const loading = cache.getOrSet('k', () => new Promise<string>((resolve) => (release = () => resolve('v'))))
  // The load lock is a session advisory lock, held on a direct connection of this process.
  const held = await eventually(
    () =>
      withPg(POSTGRES_URL, async (db) => {
        const { rows } = await db.query(
          `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND a.application_name = $1`,
          [`tiered-cache pid ${process.pid}`],
        )
        return rows[0].n >= 1
      }),
    10_000,
  )
  release()
  t.is(await loading, 'v')
  t.true(held, 'the advisory lock is on a direct session')
  t.deepEqual(errors.map((e) => e.code), [])
})

test('pgbouncer: postgres.sessionUrl must be a postgres:// URL, and its password is never quoted', (t) => {
  for (const sessionUrl of ['redis://h', 'not a url', 5 as unknown as string]) {
    const thrown = t.throws<CacheError>(() => openCache(t, { url: POSTGRES_URL, postgres: { sessionUrl } }))
    t.is(thrown?.code, 'ERR_CACHE_INVALID_OPTION')
    t.regex(thrown?.message ?? '', /postgres\.sessionUrl/)
  }
})
