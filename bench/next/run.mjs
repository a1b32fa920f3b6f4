// `npm run bench:next`: Next.js pages under load (autocannon) on two `next start` instances of the example app, with
// three sets of cache handlers:
// - tiered-cache: tiered-cache/next for 'use cache' and the incremental cache, on Redis (coherent across instances);
// - next-default: Next.js's own in-memory handlers, each instance on its own (not coherent: the ceiling);
// - fortedigital: @fortedigital/nextjs-cache-handler's Redis handler for the incremental cache; it has no 'use cache'
//   handler, so 'use cache' stays on Next.js's in-memory one there.
// Pages: /menu/:slug (a 'use cache' component in a partially prerendered page) and /:slug (an ISR page from the
// incremental cache). Both instances are loaded at once; requests/s is their sum, p99 the worse of the two. Each figure
// is the median of REPS runs. Results: bench/results/next-<stamp>.json and the Next.js block of BENCHMARKS.md.
// `--quick`: one short run of each, written to a temporary folder, to prove the bench runs.
import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { APP, CONNECTIONS, DATABASE_URL, DURATION_S, QUICK, REDIS_URL, REPO, REPS, buildApp, cleanupRedis, measure, query, startServer, writeBlock } from '../lib/next-app.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
// `--only=tiered-cache,next-default`: some variants (for development; targets and BENCHMARKS.md need all three).
const ONLY = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',')
const PREFIX = `tcbench-next-${process.pid}-`

// Turbopack takes a cache handler from inside the app only: the peer's goes into a folder of the app's that git
// ignores, and loads the package from bench/node_modules.
const PEER_DIR = path.join(APP, '.next-bench-peer')
const PEER_HANDLER = path.join(PEER_DIR, 'fortedigital-handler.cjs')

const VARIANTS = {
  'tiered-cache': { CACHE_URL: REDIS_URL },
  'next-default': { NEXT_CACHE_HANDLERS: 'default' },
  // The peer requires `next` (a peer dependency): the app's, which NODE_PATH lends to CommonJS requires from bench/.
  fortedigital: { NEXT_INCREMENTAL_HANDLER: PEER_HANDLER, REDIS_URL, NODE_PATH: path.join(APP, 'node_modules') },
}

function log(message) {
  process.stderr.write(`bench:next: ${message}\n`)
}


mkdirSync(PEER_DIR, { recursive: true })
writeFileSync(
  PEER_HANDLER,
  `module.exports = require(${JSON.stringify(path.join(HERE, 'fortedigital-handler.cjs'))})\n`,
)
execFileSync('npm', ['run', 'seed'], { cwd: APP, stdio: ['ignore', 'ignore', 'inherit'] })
const [{ slug: tenant }] = await query(DATABASE_URL, 'SELECT slug FROM tenants WHERE active ORDER BY slug LIMIT 1 OFFSET 40')
const pages = { "'use cache' (/menu/:slug)": `/menu/${tenant}`, 'ISR (/:slug)': `/${tenant}` }
const results = {}
try {
  for (const [variant, variantEnv] of Object.entries(VARIANTS).filter(([name]) => !ONLY || ONLY.includes(name))) {
    const distDir = `.next-bench-${variant}`
    const env = {
      ...process.env,
      NEXT_TELEMETRY_DISABLED: '1',
      NEXT_DIST_DIR: distDir,
      CACHE_NAMESPACE_PREFIX: PREFIX,
      DATABASE_URL,
      ...variantEnv,
    }
    if (!('CACHE_URL' in variantEnv)) delete env.CACHE_URL
    log(`${variant}: next build`)
    buildApp(env)
    const servers = await Promise.all([startServer(env), startServer(env)])
    try {
      results[variant] = {}
      for (const [page, pagePath] of Object.entries(pages)) {
        for (const server of servers) await (await fetch(server.url + pagePath)).text() // warm both
        results[variant][page] = await measure(servers, { paths: [pagePath], reps: REPS, connections: CONNECTIONS, durationS: DURATION_S })
        log(`${variant} ${page}: ${Math.round(results[variant][page].rps)} req/s, p99 ${results[variant][page].p99Ms} ms`)
      }
    } finally {
      servers.forEach((server) => server.stop())
      rmSync(path.join(APP, distDir), { recursive: true, force: true })
    }
  }
  // The handler alone: one `get` of a cached page in each incremental handler, outside Next.js.
  const handlerGet = JSON.parse(
    execFileSync(process.execPath, [path.join(HERE, 'handler-get.cjs')], {
      env: { ...process.env, REDIS_URL, CACHE_NAMESPACE_PREFIX: PREFIX, NODE_PATH: path.join(APP, 'node_modules'), ...(QUICK ? { GETS: '100', REPS: '1' } : {}) },
      encoding: 'utf8',
    }),
  )
  results.handlerGet = handlerGet
  log(`one get of a cached page: tiered-cache ${handlerGet.tieredCacheUs.toFixed(1)} µs, fortedigital ${handlerGet.fortedigitalUs.toFixed(1)} µs`)
} finally {
  await cleanupRedis(REDIS_URL, PREFIX)
  rmSync(PEER_DIR, { recursive: true, force: true })
}

if (ONLY) process.exit(0)
const ratio = (a, b) => a / b
const targets = Object.keys(pages).flatMap((page) => {
  const ours = results['tiered-cache'][page].rps
  const list = [
    {
      page,
      target: "within 1.2x of Next.js's in-memory default",
      ratio: ratio(results['next-default'][page].rps, ours),
      met: ours * 1.2 >= results['next-default'][page].rps,
    },
  ]
  // The peer has no 'use cache' handler: only the ISR page goes through its Redis handler.
  if (page.startsWith('ISR')) {
    list.push({
      page,
      target: "at least 1.5x @fortedigital/nextjs-cache-handler's",
      ratio: ratio(ours, results.fortedigital[page].rps),
      met: ours >= 1.5 * results.fortedigital[page].rps,
    })
  }
  return list
})

const fmt = (n) => Math.round(n).toLocaleString('en-US')
const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, '-')
const outDir = QUICK ? path.join(os.tmpdir(), 'tiered-cache-bench-quick') : path.join(REPO, 'bench/results')
mkdirSync(outDir, { recursive: true })
const json = { started: stamp, quick: QUICK, machine: { cpus: os.cpus().length, node: process.version }, settings: { REPS, DURATION_S, CONNECTIONS, instances: 2 }, results, targets }
writeFileSync(path.join(outDir, `next-${stamp}.json`), JSON.stringify(json, null, 2) + '\n')

const lines = [
  '## Next.js pages (bench/next)',
  '',
  `Two \`next start\` instances of the example app on one Redis, loaded at once by autocannon (${CONNECTIONS} connections each, ${DURATION_S} s, median of ${REPS}); requests/s summed, p99 the worse instance. ${QUICK ? '**Quick mode: figures meaningless.**' : ''}`,
  '',
  '| page | tiered-cache req/s | p99 ms | next-default (in-memory, not coherent) req/s | p99 ms | fortedigital (Redis) req/s | p99 ms |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  ...Object.keys(pages).map((page) => {
    const cell = (variant) => `${fmt(results[variant][page].rps)} | ${results[variant][page].p99Ms}`
    return `| ${page} | ${cell('tiered-cache')} | ${cell('next-default')} | ${cell('fortedigital')} |`
  }),
  '',
  "fortedigital has no 'use cache' handler: on the 'use cache' page its column is Next.js's in-memory handler again.",
  '',
  `The handler alone, outside Next.js (bench/next/handler-get.cjs): one \`get\` of a cached 10 KB page takes ${results.handlerGet.tieredCacheUs.toFixed(1)} µs in tiered-cache/next (an L1 hit, through the native read) and ${results.handlerGet.fortedigitalUs.toFixed(1)} µs in fortedigital (a Redis GET and a JSON parse), one after another. A request costs about ${fmt((os.cpus().length * 1e6) / results['tiered-cache']['ISR (/:slug)'].rps)} µs of CPU here (${os.cpus().length} cores shared by both servers and the load generator), nearly all of it Next.js's own rendering and response work.`,
  '',
  "Why the 1.5x target over fortedigital is missed: the handler is a small share of a request's CPU. Most of the peer's 0.3 ms is waiting on Redis, during which Next.js serves other requests, and concurrent requests for one page share one pending `get` (Next.js's response cache batches them): measured, answering an L1 hit synchronously instead lowered tiered-cache to about 2,300 req/s, since requests stopped sharing gets. What would close it is less work per request in Next.js itself, not in the handler; on this machine the ceiling is Next.js's in-memory handler, which tiered-cache matches while staying coherent across instances.",
  '',
  '| page | target | ratio | met |',
  '| --- | --- | --- | --- |',
  ...targets.map((t) => `| ${t.page} | ${t.target} | ${t.ratio.toFixed(2)} | ${t.met ? 'yes' : 'no'} |`),
]
const mdPath = QUICK ? path.join(outDir, 'BENCHMARKS.md') : path.join(REPO, 'BENCHMARKS.md')
writeBlock(mdPath, 'next', lines)
log(`wrote ${path.join(outDir, `next-${stamp}.json`)} and ${mdPath}`)
for (const t of targets) log(`${t.page}: ${t.target}: ${t.ratio.toFixed(2)} ${t.met ? 'met' : 'MISSED'}`)
