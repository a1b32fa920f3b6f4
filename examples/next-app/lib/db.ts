import pg from 'pg'
import { databaseUrl } from './config'
import { log } from './log'

// Route modules are separate bundles and dev-mode HMR re-evaluates them: keeping the pool on globalThis gives the
// process one pool instead of one per module evaluation.
const processGlobal = globalThis as typeof globalThis & { __tenantDbPool?: pg.Pool }

export function db(): pg.Pool {
  processGlobal.__tenantDbPool ??= createPool()
  return processGlobal.__tenantDbPool
}

function createPool(): pg.Pool {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 10 })
  // An idle client whose connection drops emits 'error' on the pool; unhandled, that would end the process.
  pool.on('error', (err) => log.error('idle database connection failed', { error: err.message }))
  return pool
}
