import type { JsonValue } from 'tiered-cache'
import { db } from './db'
import { ACTIVE_TENANTS_SUBJECT } from './schema'

export type TenantSettings = { [key: string]: JsonValue }

/** A tenant as the app caches and serves it: plain JSON, so a cache hit and a database read look the same. */
export interface Tenant {
  id: string
  slug: string
  name: string
  active: boolean
  settings: TenantSettings
  updatedAt: string
}

/** The fields a tenant update may change; absent ones keep their value. */
export interface TenantUpdate {
  name?: string
  active?: boolean
  settings?: TenantSettings
}

interface TenantRow {
  id: string
  slug: string
  name: string
  active: boolean
  settings: TenantSettings
  updated_at: Date
}

const TENANT_COLUMNS = 'id, slug, name, active, settings, updated_at'

// The counter is bumped in the same statement as the read, so every read of the table is counted and none is
// counted that did not happen.
const COUNT_READ = `
  INSERT INTO tenant_reads (subject, reads) VALUES ($1, 1)
  ON CONFLICT (subject) DO UPDATE SET reads = tenant_reads.reads + 1`

function toTenant(row: TenantRow): Tenant {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    active: row.active,
    settings: row.settings,
    updatedAt: row.updated_at.toISOString(),
  }
}

/** The tenant with this slug, or `null` when there is none. */
export async function findTenantBySlug(slug: string): Promise<Tenant | null> {
  const { rows } = await db().query<TenantRow>(
    `WITH counted AS (${COUNT_READ}) SELECT ${TENANT_COLUMNS} FROM tenants WHERE slug = $1`,
    [slug],
  )
  return rows[0] ? toTenant(rows[0]) : null
}

export async function findActiveTenants(): Promise<Tenant[]> {
  const { rows } = await db().query<TenantRow>(
    `WITH counted AS (${COUNT_READ}) SELECT ${TENANT_COLUMNS} FROM tenants WHERE active ORDER BY slug`,
    [ACTIVE_TENANTS_SUBJECT],
  )
  return rows.map(toTenant)
}

/** Applies the update and returns the tenant as it is now, or `null` when no tenant has this slug. */
export async function updateTenant(slug: string, update: TenantUpdate): Promise<Tenant | null> {
  const { rows } = await db().query<TenantRow>(
    `UPDATE tenants
        SET name = COALESCE($2, name),
            active = COALESCE($3, active),
            settings = COALESCE($4::jsonb, settings),
            updated_at = now()
      WHERE slug = $1
  RETURNING ${TENANT_COLUMNS}`,
    [slug, update.name ?? null, update.active ?? null, update.settings ? JSON.stringify(update.settings) : null],
  )
  return rows[0] ? toTenant(rows[0]) : null
}
