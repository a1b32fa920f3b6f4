/** The database holding the `tenants` table, its own so it never meets another suite's tables. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/next_example'

export function databaseUrl(): string {
  return process.env.DATABASE_URL || DEFAULT_DATABASE_URL
}

/**
 * Prepended to every cache namespace. Empty in a real deployment; the end-to-end test sets one per run so runs
 * sharing an L2 never see each other's entries.
 */
export function cacheNamespacePrefix(): string {
  return process.env.CACHE_NAMESPACE_PREFIX ?? ''
}
