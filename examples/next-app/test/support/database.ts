import pg from 'pg'

export const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/next_example'

export interface TenantRecord {
  id: string
  slug: string
  name: string
  active: boolean
  settings: Record<string, unknown>
  updatedAt: string
}

/** The example's database as the test sees it, apart from the app: rows and the read counter. */
export class TestDatabase {
  private readonly pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })

  /** How many times the app has read the tenant with this slug from the `tenants` table. */
  async readsOf(slug: string): Promise<number> {
    const { rows } = await this.pool.query<{ reads: string }>('SELECT reads FROM tenant_reads WHERE subject = $1', [
      slug,
    ])
    return rows[0] ? Number(rows[0].reads) : 0
  }

  /** Every read of the `tenants` table by the app, all subjects together. */
  async totalReads(): Promise<number> {
    const { rows } = await this.pool.query<{ total: string }>('SELECT coalesce(sum(reads), 0) AS total FROM tenant_reads')
    return Number(rows[0]?.total ?? 0)
  }

  /** Seeded slugs in a stable order, so each suite can take tenants no other suite uses. */
  async slugs(active: boolean, offset: number, count: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ slug: string }>(
      'SELECT slug FROM tenants WHERE active = $1 ORDER BY slug OFFSET $2 LIMIT $3',
      [active, offset, count],
    )
    return rows.map((row) => row.slug)
  }

  async tenant(slug: string): Promise<TenantRecord | null> {
    const { rows } = await this.pool.query<TenantRecord>(
      `SELECT id, slug, name, active, settings, to_json(updated_at) #>> '{}' AS "updatedAt" FROM tenants WHERE slug = $1`,
      [slug],
    )
    return rows[0] ?? null
  }

  /** A restaurant that signs up while the servers run, so no cache has seen it. */
  async insertTenant(slug: string, name: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO tenants (slug, name, settings) VALUES ($1, $2, $3::jsonb)`,
      [slug, name, JSON.stringify({ cuisine: 'test', branding: { primaryColor: '#123456' } })],
    )
  }

  async deleteTenantsEndingWith(suffix: string): Promise<void> {
    await this.pool.query(`DELETE FROM tenants WHERE right(slug, length($1)) = $1`, [suffix])
    await this.pool.query(`DELETE FROM tenant_reads WHERE right(subject, length($1)) = $1`, [suffix])
  }

  async close(): Promise<void> {
    await this.pool.end()
  }
}
