// Connections to the local servers, the bench's own table, and the "old TypeScript cache" peer.
import { randomUUID } from 'node:crypto'
import Redis from 'ioredis'
import pg from 'pg'
import { POSTGRES_URL, REDIS_URL, TABLE, PREFIX } from './common.mjs'

export function redisClient() {
  // One connection, as the issue prescribes for the raw ioredis peer.
  return new Redis(REDIS_URL, { lazyConnect: false, enableAutoPipelining: false })
}

export function pgPool(max = 10) {
  return new pg.Pool({ connectionString: POSTGRES_URL, max })
}

const T = `"${TABLE}"`

/** The Prisma migration's shape, so the raw peers and tiered-cache read and write one table. */
export async function ensureTable(pool) {
  await pool.query(`CREATE TABLE IF NOT EXISTS ${T} ("id" TEXT NOT NULL, "key" TEXT NOT NULL, "value" JSONB NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL, CONSTRAINT "${TABLE}_pkey" PRIMARY KEY ("id"))`)
  await pool.query(`CREATE UNIQUE INDEX IF NOT EXISTS "${TABLE}_key_key" ON ${T}("key")`)
  await pool.query(`CREATE INDEX IF NOT EXISTS "${TABLE}_expiresAt_idx" ON ${T}("expiresAt")`)
}

/**
 * The Postgres cache apps used before this package, as it talks to the table through Prisma: a findUnique by key
 * (a named prepared statement, expiry checked by the app) and an upsert that supplies `id` and `updatedAt` itself.
 */
export class TsPostgresCache {
  constructor(pool, prefix) {
    this.pool = pool
    this.prefix = prefix
  }

  async get(key) {
    const { rows } = await this.pool.query({
      name: 'tcbench-get',
      text: `SELECT "value", "expiresAt" FROM ${T} WHERE "key" = $1 LIMIT 1`,
      values: [this.prefix + key],
    })
    const row = rows[0]
    return row && row.expiresAt.getTime() > Date.now() ? row.value : undefined
  }

  async set(key, value, ttlSec) {
    const now = new Date()
    await this.pool.query({
      name: 'tcbench-upsert',
      text: `INSERT INTO ${T} ("id", "key", "value", "expiresAt", "updatedAt") VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT ("key") DO UPDATE SET "value" = EXCLUDED."value", "expiresAt" = EXCLUDED."expiresAt", "updatedAt" = EXCLUDED."updatedAt"`,
      values: [randomUUID(), this.prefix + key, JSON.stringify(value), new Date(now.getTime() + ttlSec * 1000), now],
    })
  }
}

/** Removes everything the bench wrote: its table and its Redis keys. Safe to run before and after a run. */
export async function cleanup() {
  const redis = redisClient()
  const pool = pgPool(1)
  try {
    await new Promise((resolve, reject) => {
      const stream = redis.scanStream({ match: `${PREFIX}*`, count: 1000 })
      const pending = []
      stream.on('data', (keys) => {
        if (keys.length) pending.push(redis.unlink(...keys))
      })
      stream.on('end', () => Promise.all(pending).then(resolve, reject))
      stream.on('error', reject)
    })
    await pool.query(`DROP TABLE IF EXISTS ${T}`)
  } finally {
    redis.disconnect()
    await pool.end()
  }
}
