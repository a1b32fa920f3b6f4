/**
 * The example's tables. `tenant_reads` counts the tenant reads the resolver makes, in the statement that reads, so
 * the database itself says how many queries reached `tenants` whatever the number of app instances.
 */
export const SCHEMA_SQL = `
DROP TABLE IF EXISTS tenants;
DROP TABLE IF EXISTS tenant_reads;

CREATE TABLE tenants (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
  active boolean NOT NULL DEFAULT true,
  settings jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_reads (
  subject text PRIMARY KEY,
  reads bigint NOT NULL
);
`

/** The `tenant_reads` subject of the start-up read of every active tenant (no slug has parentheses). */
export const ACTIVE_TENANTS_SUBJECT = '(active tenants)'
