import type { CacheStats } from 'tiered-cache'
import { getCaches } from './cache'
import { readThrough } from './read-through'
import { normalizeSubdomain } from './subdomain'
import { findActiveTenants, findTenantBySlug, type Tenant } from './tenants'

export type { Tenant } from './tenants'

export interface TenantResolution {
  tenant: Tenant | null
  isValid: boolean
  error?: string
  /** `true` when this call was answered without reading the database (from either cache tier, or a load it joined). */
  cached: boolean
}

export const INVALID_SUBDOMAIN = 'Invalid subdomain'
export const TENANT_NOT_FOUND = 'Restaurant not found'
export const TENANT_INACTIVE = 'Restaurant is inactive'

// Start-up loads this many tenants into the cache at once: enough to overlap L2 round trips, fewer than the L2's
// default pool of 10 connections.
const PRELOAD_CONCURRENCY = 8

/**
 * The tenant of a subdomain. An unknown subdomain is cached as `null` like a tenant, so repeated lookups of it do not
 * reach the database either; concurrent lookups of one uncached tenant, on every instance, share one database read.
 * Rejects only when the database cannot be read.
 */
export async function resolveTenant(subdomain: string): Promise<TenantResolution> {
  const slug = normalizeSubdomain(subdomain)
  if (slug === null) return { tenant: null, isValid: false, error: INVALID_SUBDOMAIN, cached: false }

  // getOrSet does not say where its value came from; the loader running in this call is what makes it a read.
  let readDatabase = false
  const tenant = await readThrough('tenant').getOrSet<Tenant | null>(slug, () => {
    readDatabase = true
    return findTenantBySlug(slug)
  })
  const cached = !readDatabase

  if (tenant === null) return { tenant: null, isValid: false, error: TENANT_NOT_FOUND, cached }
  if (!tenant.active) return { tenant, isValid: false, error: TENANT_INACTIVE, cached }
  return { tenant, isValid: true, cached }
}

/**
 * Loads every active tenant into this instance's cache with one database read; returns how many there are. A tenant
 * another instance already put in the L2 is taken from there (it may be fresher than this read, and writing it again
 * would make every running instance drop its copy); only the missing ones are written.
 */
export async function preloadTenantCache(): Promise<number> {
  const tenants = await findActiveTenants()
  const cache = getCaches().tenant
  // Not getOrSet: its cross-instance lock protects an expensive loader, and here the value is already in hand.
  // A cached null for a tenant just read is a stale "not found" from before it signed up: replace it too.
  const warm = async (tenant: Tenant) => {
    if ((await cache.get<Tenant | null>(tenant.slug)) == null) await cache.set(tenant.slug, tenant)
  }
  for (let start = 0; start < tenants.length; start += PRELOAD_CONCURRENCY) {
    await Promise.all(tenants.slice(start, start + PRELOAD_CONCURRENCY).map(warm))
  }
  return tenants.length
}

/**
 * Warms every active tenant through `getOrSet` (the cron route's job): one database read for the list, then each
 * tenant not cached on any instance is stored, with getOrSet's single-flight across instances, so two warm-ups at
 * once store each tenant once. A cached "not found" for a tenant that has since signed up is replaced. Returns how
 * many active tenants there are and how many this call stored.
 */
export async function warmTenantCache(): Promise<{ tenants: number; stored: number }> {
  const tenants = await findActiveTenants()
  const cache = getCaches().tenant
  let stored = 0
  const warm = async (tenant: Tenant) => {
    const cached = await cache.getOrSet<Tenant | null>(tenant.slug, () => {
      stored += 1
      return tenant
    })
    if (cached === null) {
      await cache.set(tenant.slug, tenant)
      stored += 1
    }
  }
  for (let start = 0; start < tenants.length; start += PRELOAD_CONCURRENCY) {
    await Promise.all(tenants.slice(start, start + PRELOAD_CONCURRENCY).map(warm))
  }
  return { tenants: tenants.length, stored }
}

/** Drops a tenant from the cache of every instance; the next lookup reads it again. */
export async function invalidateTenantCache(subdomain: string): Promise<void> {
  const slug = normalizeSubdomain(subdomain)
  if (slug !== null) await getCaches().tenant.delete(slug)
}

export function getTenantCacheStats(): Promise<CacheStats> {
  return getCaches().tenant.stats()
}
