// A DNS label: letters, digits and inner hyphens, at most 63 characters. Anything else cannot be a subdomain, so it
// is refused before it can become a cache key or a query parameter.
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/** The cache key and database slug for a subdomain as typed or routed, or `null` when it is not a valid one. */
export function normalizeSubdomain(subdomain: string): string | null {
  const slug = subdomain.trim().toLowerCase()
  return DNS_LABEL.test(slug) ? slug : null
}
