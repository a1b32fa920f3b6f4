// What bench/next and bench/app share: the example app, built into a distDir of its own and started as `next start`
// servers on free ports, loaded by autocannon, and the Redis keys of a run removed after it.
import autocannon from 'autocannon'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import Redis from 'ioredis'
import pg from 'pg'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const APP = path.join(REPO, 'examples/next-app')
const NEXT_BIN = path.join(APP, 'node_modules/next/dist/bin/next')

/** `--quick`: one short run of each, to prove the bench runs; its figures mean nothing. */
export const QUICK = process.argv.includes('--quick')
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/next_example'
/** The load both benches put on each server: runs of DURATION_S with CONNECTIONS, each figure a median of REPS. */
export const REPS = QUICK ? 1 : 3
export const DURATION_S = QUICK ? 1 : 10
export const CONNECTIONS = 16

export async function freePort() {
  const server = createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** `next build` with `env` (its NEXT_DIST_DIR says where); the app's tsconfig.json, which next build edits, put back. */
export function buildApp(env) {
  const tsconfig = readFileSync(path.join(APP, 'tsconfig.json'), 'utf8')
  try {
    execFileSync(process.execPath, [NEXT_BIN, 'build'], { cwd: APP, env, stdio: ['ignore', 'ignore', 'inherit'] })
  } finally {
    writeFileSync(path.join(APP, 'tsconfig.json'), tsconfig)
  }
}

const running = new Set()
process.once('exit', () => running.forEach((child) => child.kill('SIGKILL')))

/** A `next start` of the build `env` names, once it answers `/api/cache/stats`; `stop()` kills it. */
export async function startServer(env) {
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

/** autocannon against `url` for `durationS` with `connections`; each request's path picked at random from `paths`. */
function load(url, { connections, durationS, paths }) {
  const requests = [{ setupRequest: (request) => ({ ...request, path: paths[Math.floor(Math.random() * paths.length)] }) }]
  return new Promise((resolve, reject) => {
    autocannon({ url, connections, duration: durationS, requests }, (error, result) => (error ? reject(error) : resolve(result)))
  })
}

export const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

/**
 * Every server loaded at once, `reps` times: requests/s summed over the servers, p99 (ms) the worse server's, the
 * median of each over the repetitions. A failed, timed-out or non-2xx request throws: a figure of errors means nothing.
 */
export async function measure(servers, { paths, reps, connections, durationS }) {
  const runs = []
  for (let rep = 0; rep < reps; rep++) {
    const results = await Promise.all(servers.map((server) => load(server.url, { connections, durationS, paths })))
    const failures = results.reduce((sum, r) => sum + r.errors + r.timeouts + r.non2xx, 0)
    if (failures > 0) throw new Error(`${paths[0]}...: ${failures} failed requests`)
    runs.push({
      rps: results.reduce((sum, r) => sum + r.requests.average, 0),
      p99: Math.max(...results.map((r) => r.latency.p99)),
    })
  }
  return { rps: median(runs.map((r) => r.rps)), p99Ms: median(runs.map((r) => r.p99)), runs }
}

/** The rows of one statement, on a connection of its own to `databaseUrl`. */
export async function query(databaseUrl, text) {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    return (await client.query(text)).rows
  } finally {
    await client.end()
  }
}

/** Removes every Redis key whose name holds `prefix`. */
export async function cleanupRedis(redisUrl, prefix) {
  const redis = new Redis(redisUrl)
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000)
    if (keys.length > 0) await redis.unlink(...keys)
    cursor = next
  } while (cursor !== '0')
  redis.disconnect()
}

/** Puts `lines` in `mdPath` as the block between `<!-- name:start -->` and `<!-- name:end -->`, replacing the last
 * run's block or, the first time, appended. */
export function writeBlock(mdPath, name, lines) {
  const before = existsSync(mdPath) ? readFileSync(mdPath, 'utf8') : ''
  const block = [`<!-- ${name}:start -->`, ...lines, `<!-- ${name}:end -->`].join('\n')
  const marked = new RegExp(`<!-- ${name}:start -->[\\s\\S]*<!-- ${name}:end -->`)
  writeFileSync(mdPath, marked.test(before) ? before.replace(marked, () => block) : `${before.trimEnd()}\n\n${block}\n`)
}
