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
import autocannon from 'autocannon'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import Redis from 'ioredis'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const REPO = path.resolve(HERE, '../..')
const APP = path.join(REPO, 'examples/next-app')
const NEXT_BIN = path.join(APP, 'node_modules/next/dist/bin/next')
const QUICK = process.argv.includes('--quick')
// `--only=tiered-cache,next-default`: some variants (for development; targets and BENCHMARKS.md need all three).
const ONLY = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',')
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/next_example'
const REPS = QUICK ? 1 : 3
const DURATION_S = QUICK ? 1 : 10
const CONNECTIONS = 16
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

async function freePort() {
  const server = createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

const running = new Set()
process.once('exit', () => running.forEach((child) => child.kill('SIGKILL')))

async function startServer(env) {
  const port = await freePort()
  const child = spawn(process.execPath, [NEXT_BIN, 'start', '--port', String(port), '--hostname', '127.0.0.1'], {
    cwd: APP,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  running.add(child)
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const url = `http://127.0.0.1:${port}`
  for (let tries = 0; ; tries++) {
    if (child.exitCode !== null) throw new Error(`next start exited: ${stderr}`)
    try {
      if ((await fetch(`${url}/api/cache/stats`)).ok) break
    } catch {
      // Not up yet.
    }
    if (tries > 600) throw new Error(`next start did not answer: ${stderr}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return { url, stop: () => (child.kill('SIGKILL'), running.delete(child)) }
}

function load(url) {
  return new Promise((resolve, reject) => {
    autocannon({ url, connections: CONNECTIONS, duration: DURATION_S }, (error, result) =>
      error ? reject(error) : resolve(result),
    )
  })
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function measure(servers, pagePath) {
  const runs = []
  for (let rep = 0; rep < REPS; rep++) {
    const results = await Promise.all(servers.map((server) => load(server.url + pagePath)))
    const failures = results.reduce((sum, r) => sum + r.errors + r.timeouts + r.non2xx, 0)
    if (failures > 0) throw new Error(`${pagePath}: ${failures} failed requests`)
    runs.push({
      rps: results.reduce((sum, r) => sum + r.requests.average, 0),
      p99: Math.max(...results.map((r) => r.latency.p99)),
    })
  }
  return { rps: median(runs.map((r) => r.rps)), p99Ms: median(runs.map((r) => r.p99)), runs }
}

async function slug() {
  const client = new pg.Client({ connectionString: DATABASE_URL })
  await client.connect()
  try {
    const { rows } = await client.query('SELECT slug FROM tenants WHERE active ORDER BY slug LIMIT 1 OFFSET 40')
    return rows[0].slug
  } finally {
    await client.end()
  }
}

async function cleanupRedis() {
  const redis = new Redis(REDIS_URL)
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `*${PREFIX}*`, 'COUNT', 1000)
    if (keys.length > 0) await redis.unlink(...keys)
    cursor = next
  } while (cursor !== '0')
  redis.disconnect()
}

mkdirSync(PEER_DIR, { recursive: true })
writeFileSync(
  PEER_HANDLER,
  `module.exports = require(${JSON.stringify(path.join(HERE, 'fortedigital-handler.cjs'))})\n`,
)
execFileSync('npm', ['run', 'seed'], { cwd: APP, stdio: ['ignore', 'ignore', 'inherit'] })
const tenant = await slug()
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
    // next build adds its distDir's type folders to the app's tsconfig.json: put it back, to leave the tree clean.
    const tsconfig = readFileSync(path.join(APP, 'tsconfig.json'), 'utf8')
    try {
      execFileSync(process.execPath, [NEXT_BIN, 'build'], { cwd: APP, env, stdio: ['ignore', 'ignore', 'inherit'] })
    } finally {
      writeFileSync(path.join(APP, 'tsconfig.json'), tsconfig)
    }
    const servers = await Promise.all([startServer(env), startServer(env)])
    try {
      results[variant] = {}
      for (const [page, pagePath] of Object.entries(pages)) {
        for (const server of servers) await (await fetch(server.url + pagePath)).text() // warm both
        results[variant][page] = await measure(servers, pagePath)
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
  await cleanupRedis()
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
  '<!-- next:start -->',
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
  '<!-- next:end -->',
]
const mdPath = QUICK ? path.join(outDir, 'BENCHMARKS.md') : path.join(REPO, 'BENCHMARKS.md')
const before = existsSync(mdPath) ? readFileSync(mdPath, 'utf8') : ''
const block = lines.join('\n')
const after = before.includes('<!-- next:start -->')
  ? before.replace(/<!-- next:start -->[\s\S]*<!-- next:end -->/, block)
  : `${before.trimEnd()}\n\n${block}\n`
writeFileSync(mdPath, after)
log(`wrote ${path.join(outDir, `next-${stamp}.json`)} and ${mdPath}`)
for (const t of targets) log(`${t.page}: ${t.target}: ${t.ratio.toFixed(2)} ${t.met ? 'met' : 'MISSED'}`)
