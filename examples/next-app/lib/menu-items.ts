import { readThrough } from './read-through'
import type { Tenant } from './tenants'

/** How many items a tenant's menu has: the menu-items route reads this many cached keys per request. */
export const MENU_ITEMS_PER_TENANT = 50

/** One item of a restaurant's menu, as the app caches and serves it. */
export interface MenuItem {
  id: string
  name: string
  priceCents: number
  currency: string
  category: string
  available: boolean
  allergens: string[]
}

const CATEGORIES = ['starters', 'mains', 'desserts', 'drinks'] as const

// Made from the tenant instead of read from a table: the menu-items route exists to measure what 50 cache reads
// per request cost, and after its first request every read is a hit.
function menuItemOf(tenant: Tenant, index: number): MenuItem {
  const currency = typeof tenant.settings.currency === 'string' ? tenant.settings.currency : 'USD'
  return {
    id: `${tenant.id}-item-${index}`,
    name: `${tenant.name} dish ${index + 1}`,
    priceCents: 500 + ((index * 137) % 2500),
    currency,
    category: CATEGORIES[index % CATEGORIES.length]!,
    available: index % 9 !== 0,
    allergens: index % 3 === 0 ? ['gluten'] : [],
  }
}

/** The tenant's menu items, each its own cache entry (`<slug>:item:<n>` in the `menu` cache), read concurrently. */
export function menuItemsOf(tenant: Tenant): Promise<MenuItem[]> {
  const cache = readThrough('menu')
  return Promise.all(
    Array.from({ length: MENU_ITEMS_PER_TENANT }, (_, index) =>
      cache.getOrSet(`${tenant.slug}:item:${index}`, () => menuItemOf(tenant, index)),
    ),
  )
}
