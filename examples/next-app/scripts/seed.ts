/**
 * Creates the example's database when it is missing, recreates its tables and fills `tenants` with 1,000
 * restaurants of realistic shape (about 1 KB each, one in ten inactive). The same seed gives the same tenants.
 */
import pg from 'pg'
import { databaseUrl } from '../lib/config'
import { SCHEMA_SQL } from '../lib/schema'
import type { TenantSettings } from '../lib/tenants'

const TENANT_COUNT = 1000

interface SeedTenant {
  slug: string
  name: string
  active: boolean
  settings: TenantSettings
}

// A small deterministic generator (mulberry32): reruns produce the same tenants, so a failing test can be replayed.
function randomGenerator(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const random = randomGenerator(20_261_121)
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
const between = (min: number, max: number): number => min + Math.floor(random() * (max - min + 1))

const FIRST_WORDS = ['Golden', 'Little', 'Blue', 'Old', 'Green', 'Red', 'Silver', 'Rustic', 'Urban', 'Happy', 'Lucky',
  'Crimson', 'Sunny', 'Hidden', 'Wild', 'Copper', 'Velvet', 'Salty', 'Smoky', 'Twisted'] as const
const SECOND_WORDS = ['Lotus', 'Olive', 'Oak', 'Harbor', 'Lantern', 'Fig', 'Basil', 'Pepper', 'Anchor', 'Garden',
  'Spoon', 'Fox', 'Kettle', 'Bamboo', 'Saffron', 'Lemon', 'Maple', 'Cedar', 'Pearl', 'Ember'] as const
const KINDS = ['Bistro', 'Kitchen', 'Trattoria', 'Noodle Bar', 'Taqueria', 'Grill', 'Cafe', 'Diner', 'Pizzeria',
  'Sushi', 'Brasserie', 'Bakery', 'Tavern', 'Curry House', 'Ramen'] as const
const CUISINES = ['italian', 'mexican', 'japanese', 'indian', 'thai', 'french', 'american', 'greek', 'korean',
  'vietnamese', 'lebanese', 'spanish'] as const
const CITIES = [
  { city: 'Portland', region: 'OR', country: 'US', timezone: 'America/Los_Angeles', currency: 'USD', locale: 'en-US' },
  { city: 'Austin', region: 'TX', country: 'US', timezone: 'America/Chicago', currency: 'USD', locale: 'en-US' },
  { city: 'Brooklyn', region: 'NY', country: 'US', timezone: 'America/New_York', currency: 'USD', locale: 'en-US' },
  { city: 'Toronto', region: 'ON', country: 'CA', timezone: 'America/Toronto', currency: 'CAD', locale: 'en-CA' },
  { city: 'Lyon', region: 'ARA', country: 'FR', timezone: 'Europe/Paris', currency: 'EUR', locale: 'fr-FR' },
  { city: 'Berlin', region: 'BE', country: 'DE', timezone: 'Europe/Berlin', currency: 'EUR', locale: 'de-DE' },
  { city: 'Manchester', region: 'ENG', country: 'GB', timezone: 'Europe/London', currency: 'GBP', locale: 'en-GB' },
] as const
const STREETS = ['Main St', 'Oak Ave', 'Market St', 'Harbor Rd', 'Elm St', 'Station Rd', 'High St', 'Mill Lane'] as const
const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'] as const

function slugify(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')
}

function color(): string {
  return `#${between(0, 0xffffff).toString(16).padStart(6, '0')}`
}

function openingHours(): TenantSettings {
  const opens = `${between(7, 12)}:${pick(['00', '30'])}`
  const closes = `${between(20, 23)}:${pick(['00', '30'])}`
  const closedOn = pick(DAYS)
  return Object.fromEntries(
    DAYS.map((day) => [day, day === closedOn ? [] : [{ opens, closes }]]),
  )
}

function settingsFor(slug: string): TenantSettings {
  const place = pick(CITIES)
  const delivery = random() < 0.7
  return {
    cuisine: pick(CUISINES),
    locale: place.locale,
    currency: place.currency,
    timezone: place.timezone,
    branding: {
      primaryColor: color(),
      accentColor: color(),
      logoUrl: `https://cdn.example.com/tenants/${slug}/logo.png`,
      coverImageUrl: `https://cdn.example.com/tenants/${slug}/cover.jpg`,
    },
    contact: {
      email: `hello@${slug}.example.com`,
      phone: `+1-555-${String(between(100, 999))}-${String(between(1000, 9999))}`,
    },
    address: {
      street: `${between(1, 999)} ${pick(STREETS)}`,
      city: place.city,
      region: place.region,
      postalCode: String(between(10000, 99999)),
      country: place.country,
    },
    openingHours: openingHours(),
    ordering: {
      pickup: true,
      delivery,
      deliveryRadiusKm: delivery ? between(2, 10) : 0,
      minimumOrderCents: between(0, 30) * 100,
      deliveryFeeCents: delivery ? between(99, 599) : 0,
      preparationMinutes: between(10, 45),
    },
    features: {
      reservations: random() < 0.5,
      loyaltyProgram: random() < 0.3,
      giftCards: random() < 0.4,
      tipping: random() < 0.8,
    },
    taxRatePercent: between(500, 2000) / 100,
  }
}

function generateTenants(count: number): SeedTenant[] {
  const seen = new Map<string, number>()
  return Array.from({ length: count }, (_, index) => {
    const base = `${pick(FIRST_WORDS)} ${pick(SECOND_WORDS)} ${pick(KINDS)}`
    const repeats = seen.get(base) ?? 0
    seen.set(base, repeats + 1)
    // A chain's second branch gets the same name and a numbered subdomain, as real sign-ups do.
    const name = repeats === 0 ? base : `${base} ${repeats + 1}`
    const slug = slugify(name)
    return { slug, name, active: index % 10 !== 9, settings: settingsFor(slug) }
  })
}

async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url)
  const database = decodeURIComponent(target.pathname.slice(1))
  const admin = new URL(url)
  admin.pathname = '/postgres'
  const client = new pg.Client({ connectionString: admin.toString() })
  await client.connect()
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])
    if (rowCount === 0) await client.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`)
  } finally {
    await client.end()
  }
}

async function seed(): Promise<void> {
  const url = databaseUrl()
  await ensureDatabase(url)
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const tenants = generateTenants(TENANT_COUNT)
    await client.query('BEGIN')
    await client.query(SCHEMA_SQL)
    await client.query(
      `INSERT INTO tenants (slug, name, active, settings)
       SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::jsonb[])`,
      [
        tenants.map((t) => t.slug),
        tenants.map((t) => t.name),
        tenants.map((t) => t.active),
        tenants.map((t) => JSON.stringify(t.settings)),
      ],
    )
    await client.query('COMMIT')
    const { rows } = await client.query<{ count: string; active: string; avg_bytes: string }>(
      `SELECT count(*) AS count, count(*) FILTER (WHERE active) AS active,
              round(avg(octet_length(row_to_json(t)::text))) AS avg_bytes
         FROM tenants t`,
    )
    const summary = rows[0]
    process.stdout.write(
      `seeded ${summary?.count} tenants (${summary?.active} active, ${summary?.avg_bytes} bytes each on average) ` +
        `in ${new URL(url).pathname.slice(1)}\n`,
    )
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw err
  } finally {
    await client.end()
  }
}

seed().catch((err: unknown) => {
  process.stderr.write(`seed failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
