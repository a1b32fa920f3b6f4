import { connection } from 'next/server'
import { Suspense } from 'react'
import { handlerCaches } from 'tiered-cache/next'
import { getCaches } from '../../../lib/cache'
import { refreshMenu } from './actions'

/** Each cache of this instance: the app's own and the one behind Next.js's caches, with their counters. */
export default function CacheAdminPage() {
  return (
    <main>
      <h1>Caches of this instance</h1>
      <Suspense fallback={<p>Loading…</p>}>
        <CacheTable />
      </Suspense>
      <form action={refreshMenu}>
        <label>
          Restaurant <input name="slug" id="refresh-slug" required />
        </label>{' '}
        <button type="submit" id="refresh-menu">
          Refresh its menu everywhere
        </button>
      </form>
    </main>
  )
}

async function CacheTable() {
  // Counters change with every request: rendered per request, never prerendered.
  await connection()
  const caches = [...Object.values(getCaches()), ...handlerCaches()]
  const rows = await Promise.all(caches.map(async (cache) => ({ cache, stats: await cache.stats() })))
  return (
    <table id="caches">
      <thead>
        <tr>
          <th>namespace</th>
          <th>L2</th>
          <th>hits</th>
          <th>misses</th>
          <th>hit rate</th>
          <th>L1 entries</th>
          <th>L1 bytes</th>
          <th>L2 state</th>
        </tr>
      </thead>
      <tbody>
        {rows.map(({ cache, stats }) => (
          <tr key={cache.namespace} data-namespace={cache.namespace}>
            <td>{cache.namespace}</td>
            <td className="backend">{cache.backend}</td>
            <td className="hits">{stats.hits}</td>
            <td className="misses">{stats.misses}</td>
            <td className="hit-rate">{(stats.hitRate * 100).toFixed(1)}%</td>
            <td className="l1-entries">{stats.l1Entries}</td>
            <td className="l1-bytes">{stats.l1Bytes}</td>
            <td className="l2-state">{stats.l2State}</td>
          </tr>
        ))}
      </tbody>
    </table>
  )
}
