// Shared settings and helpers of the benchmark sections.
import { createRequire } from 'node:module'
import { createHistogram } from 'node:perf_hooks'
import { isDeepStrictEqual } from 'node:util'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const REPO_DIR = path.resolve(BENCH_DIR, '..')

export const QUICK = process.env.BENCH_QUICK === '1'
export const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'

// Everything the bench writes to the shared servers lives under these names, so cleanup can never touch the
// data of the tests or of another instance using the same servers.
export const TABLE = 'bench_cache_entries'
export const PREFIX = 'tcbench'

// A user's CACHE_URL would silently turn the memory-only contenders into L2 ones.
delete process.env.CACHE_URL

/** Counts: the full run follows the issue; quick mode only proves that every path still runs. */
export const N = {
  reps: QUICK ? 1 : 5,
  keys: QUICK ? 200 : 10_000,
  l1CpuTimeNs: QUICK ? 5e6 : 300e6,
  seqOps: QUICK ? 50 : 2_000,
  inflightOps: QUICK ? 256 : 20_000,
  inflight: 64,
  stampedeCalls: QUICK ? 50 : 1_000,
  stampedeProcs: 4,
  loaderMs: 50,
  invalidateKeys: QUICK ? 1_000 : 100_000,
  memoryEntries: QUICK ? 2_000 : 100_000,
  eventLoopMs: QUICK ? 300 : 3_000,
  workerMs: QUICK ? 200 : 1_000,
  l2DownOps: QUICK ? 3 : 500,
  hitMs: QUICK ? 100 : 1_000,
  l1SizingEntries: QUICK ? 900 : 45_000,
}

let tieredModule
/** The addon through its public entry point, exactly as a user loads it. */
export function loadTiered() {
  if (!tieredModule) {
    const require = createRequire(import.meta.url)
    tieredModule = require(process.env.TIERED_CACHE_PATH ?? REPO_DIR)
  }
  return tieredModule
}

/** A tenant row as an app would resolve it from a subdomain: about 1 KB of JSON. */
export function tenantValue(i) {
  return {
    id: `c${(0x5f3759df ^ i).toString(36)}k2m9x8t0000${i}`,
    slug: `tenant-${i}`,
    name: `Tenant number ${i} Ltd.`,
    plan: i % 3 === 0 ? 'enterprise' : 'team',
    status: 'active',
    createdAt: '2024-03-14T09:26:53.589Z',
    updatedAt: '2025-11-02T17:04:11.120Z',
    locale: 'en-GB',
    timezone: 'Europe/London',
    currency: 'GBP',
    domains: [`tenant-${i}.example.com`, `www.tenant-${i}.example.com`],
    branding: { primaryColor: '#1d4ed8', secondaryColor: '#f59e0b', logoUrl: `https://cdn.example.com/logos/${i}.svg`, faviconUrl: `https://cdn.example.com/favicons/${i}.ico` },
    features: { sso: i % 2 === 0, auditLog: true, customDomain: true, apiAccess: true, betaDashboard: false, maxSeats: 250, maxProjects: 1000 },
    limits: { requestsPerMinute: 6000, storageGb: 500, retentionDays: 365 },
    billing: { customerId: `cus_${i}Xk29dLq8`, email: `billing+${i}@tenant-${i}.example.com`, vatId: `GB${100000000 + i}`, address: { line1: '221B Baker Street', city: 'London', postcode: 'NW1 6XE', country: 'GB' } },
    owner: { id: `u_${i}`, email: `owner@tenant-${i}.example.com`, name: 'Ada Lovelace' },
    tags: ['priority', 'eu', 'gdpr'],
  }
}

/** A small row, about 100 B of JSON. */
export function smallValue(i) {
  return { id: i, slug: `tenant-${i}`, plan: 'team', active: true, seats: 25, region: 'eu-west-2' }
}

export const VALUES = { '1KB': tenantValue, '100B': smallValue }

export function keyOf(i) {
  return `tenant-${i}`
}

/** Deterministic shuffle (mulberry32 + Fisher-Yates), so every contender and every run visits keys in one order. */
export function shuffled(items, seed = 0x9e3779b9) {
  const out = items.slice()
  let s = seed >>> 0
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

export function median(xs) {
  const s = xs.slice().sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Runs `fn(contender, rep)` for every contender in every repetition, rotating the order each repetition so that
 * no contender always runs first (warm caches, turbo, a neighbour's load) and none runs all its reps in a row. */
export async function alternate(contenders, reps, fn) {
  const out = Object.fromEntries(contenders.map((c) => [c, []]))
  for (let rep = 0; rep < reps; rep++) {
    const k = rep % contenders.length
    const order = [...contenders.slice(k), ...contenders.slice(0, k)]
    for (const c of order) out[c].push(await fn(c, rep))
  }
  return out
}

/** Folds per-repetition objects of numbers into { metric: { median, reps } }. */
export function summarize(perRep) {
  const out = {}
  for (const key of Object.keys(perRep[0] ?? {})) {
    const reps = perRep.map((r) => r[key])
    out[key] = typeof reps[0] === 'number' ? { median: median(reps), reps } : { median: reps[0], reps }
  }
  return out
}

/** Sequential latency: one request at a time over `keys`, percentiles in microseconds. */
export async function sequentialLatency(op, keys, count) {
  const h = createHistogram()
  for (let i = 0; i < count; i++) {
    const k = keys[i % keys.length]
    const t0 = process.hrtime.bigint()
    await op(k, i)
    h.record(Math.max(1, Number(process.hrtime.bigint() - t0)))
  }
  return { p50Us: h.percentile(50) / 1e3, p99Us: h.percentile(99) / 1e3 }
}

/** Throughput with `inflight` requests always outstanding, as a server under load issues them. */
export async function inflightThroughput(op, keys, total, inflight) {
  let next = 0
  const t0 = process.hrtime.bigint()
  const lane = async () => {
    for (let i = next++; i < total; i = next++) await op(keys[i % keys.length], i)
  }
  await Promise.all(Array.from({ length: inflight }, lane))
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  return { opsPerSec: total / s }
}

/** Runs `op` over all items with a bounded number in flight (used to load data, not to measure). */
export async function forEachLimit(items, limit, op) {
  let next = 0
  const lane = async () => {
    for (let i = next++; i < items.length; i = next++) await op(items[i], i)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
}

/** A benchmark that reads the wrong thing measures nothing: fail loudly instead. */
export function check(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)?.slice(0, 80)}, got ${JSON.stringify(actual)?.slice(0, 80)}`)
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Creates a tiered-cache and, when it has an L2, waits until a written value reads back from it: `new Cache()`
 * returns before the L2 connects, and calls made before then degrade to misses that would be measured as very fast
 * reads. */
export async function openTiered(options) {
  const { Cache } = loadTiered()
  const cache = new Cache(options)
  if (!options.url) return cache
  const probe = new Cache({ url: options.url, namespace: options.namespace, l1: false, postgres: options.postgres })
  const key = `${PREFIX}-ready-${process.pid}`
  const deadline = Date.now() + 15_000
  try {
    while (Date.now() < deadline) {
      await cache.set(key, 1)
      if ((await probe.get(key)) === 1) {
        await cache.delete(key)
        return cache
      }
      await sleep(100)
    }
  } finally {
    await probe.close()
  }
  throw new Error(`tiered-cache on ${options.url.split(':')[0]}: the L2 did not answer within 15 s`)
}
