import type { ExecutionContext } from 'ava'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createServer } from 'node:net'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import pg from 'pg'
import { Redis } from 'ioredis'

import { FaultProxy } from './fault-proxy.js'
import type { Cache as CacheClass, CacheOptions, CacheStats } from '../index.js'

const require = createRequire(import.meta.url)
export const { Cache } = require('../index.js') as { Cache: typeof CacheClass }

export const POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/**
 * The seed nodes of the 6-node Redis Cluster that `npm run test:node` (`__test__/run.mjs`) starts for the whole run;
 * unset when ava runs alone, and the cluster backend is then left out.
 */
export const REDIS_CLUSTER_URL = process.env.TEST_REDIS_CLUSTER_URL

/**
 * The PgBouncer in transaction pooling mode in front of the shared Postgres that `npm run test:node` starts for the
 * whole run; unset when ava runs alone, and the pgbouncer backend is then left out.
 */
export const PGBOUNCER_URL = process.env.TEST_PGBOUNCER_URL

/** A way the cache runs: its name, its L2 URL (none: memory only) and the options that L2 needs besides. */
export interface Backend {
  readonly name: 'memory' | 'postgres' | 'redis' | 'cluster' | 'pgbouncer'
  readonly url: string | undefined
  readonly options: CacheOptions
}

/** The ways the cache runs; every behaviour test is created once per backend from this list. */
export const BACKENDS: readonly Backend[] = [
  { name: 'memory', url: undefined, options: {} },
  { name: 'postgres', url: POSTGRES_URL, options: {} },
  { name: 'redis', url: REDIS_URL, options: {} },
  ...(REDIS_CLUSTER_URL ? [{ name: 'cluster' as const, url: REDIS_CLUSTER_URL, options: { redis: { cluster: true } } }] : []),
  // Postgres through a transaction pooler: unnamed statements, the bus and the locks on a direct session.
  ...(PGBOUNCER_URL
    ? [{ name: 'pgbouncer' as const, url: PGBOUNCER_URL, options: { postgres: { preparedStatements: false, sessionUrl: POSTGRES_URL } } }]
    : []),
]

/** Whether `backend` is a Postgres L2, directly or through a pooler. */
export const isPostgres = (backend: Backend): boolean => backend.name === 'postgres' || backend.name === 'pgbouncer'

/** The backends a fault proxy can stand in front of: one server each (a cluster redirects clients to its nodes). */
export const PROXIABLE = BACKENDS.filter((b): b is Backend & { name: L2 } => b.name === 'postgres' || b.name === 'redis')

/** The options that reach `backend`'s L2. */
export function connectionOf(backend: Backend): CacheOptions {
  return { url: backend.url, ...backend.options }
}

/** The servers an L2 can live on, for the tests that need a real one. */
export type L2 = 'postgres' | 'redis'
export const L2S: L2[] = ['postgres', 'redis']
export const urlOf = (backend: L2): string => (backend === 'postgres' ? POSTGRES_URL : REDIS_URL)

/** Options that can be handed to another thread or process: a hook cannot cross. */
export type PlainCacheOptions = Omit<CacheOptions, 'onError'>

/** A namespace no other test (or earlier run) uses. */
export function uniqueNamespace(prefix = 't'): string {
  return `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns whether it did. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 5000,
  intervalMs = 25,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await sleep(intervalMs)
  }
  return check()
}

/**
 * Polls `check` until it returns a value, and returns that value. Unlike `eventually` it throws on timeout, naming
 * `what`: for waits a test depends on rather than asserts, so that a failure says which precondition never came.
 */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const result = await check()
    if (result !== undefined && result !== false) return result
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

/** Whether `promise` settled within `ms`. One that did not is left to fail when its client is torn down. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = promise.then(
    () => true,
    () => true,
  )
  return Promise.race([settled, sleep(ms).then(() => false)])
}

export async function timed<T>(call: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now()
  const value = await call()
  return { value, ms: performance.now() - started }
}

/** The nearest-rank percentile `p` (0 to 100) of `sorted`, which must be in ascending order. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

export function cacheFor(backend: Backend, options: CacheOptions = {}): CacheClass {
  return new Cache({ ...connectionOf(backend), namespace: uniqueNamespace(backend.name), ...options })
}

/** A cache closed when the test ends, passed or not, so that no store outlives its test. */
export function openCache(t: ExecutionContext, options: CacheOptions): CacheClass {
  const cache = new Cache(options)
  t.teardown(() => cache.close())
  return cache
}

/**
 * A second instance on the same L2 and namespace as `first`: a store of its own (another L1, another bus subscription
 * of the process's bus), since caches of equal options in one process share their store. Memory only there is just the
 * one instance.
 */
export function secondInstance(t: ExecutionContext, backend: Backend, options: CacheOptions, first: CacheClass): CacheClass {
  return backend.url === undefined ? first : openCache(t, { ...options, l1: { maxEntries: 5_000 } })
}

/** A table name no other test uses, and a client on the test database; the table is dropped when the test ends. */
export async function scratchTable(t: ExecutionContext, prefix: string): Promise<{ client: pg.Client; table: string }> {
  const table = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`
  const client = new pg.Client({ connectionString: POSTGRES_URL })
  await client.connect()
  t.teardown(async () => {
    await client.query(`DROP TABLE IF EXISTS "${table}"`)
    await client.end()
  })
  return { client, table }
}

/**
 * Options of a cache on `backend` in a namespace of its own; on Postgres also a table of the test's own (dropped with
 * its tag table when the test ends), since grace and tags extend the table they use.
 */
export async function isolatedOptions(t: ExecutionContext, backend: Backend, prefix: string): Promise<CacheOptions> {
  const namespace = uniqueNamespace(`${prefix}-${backend.name}`)
  if (!isPostgres(backend)) return { ...connectionOf(backend), namespace }
  const { client, table } = await scratchTable(t, prefix)
  t.teardown(() => client.query(`DROP TABLE IF EXISTS "${table}_tags"`))
  return { ...connectionOf(backend), namespace, postgres: { ...backend.options.postgres, table } }
}

export async function withPg<T>(url: string, f: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  try {
    return await f(db)
  } finally {
    await db.end()
  }
}

export async function withRedis<T>(url: string, f: (r: Redis) => Promise<T>): Promise<T> {
  // No retries: a server that is down must fail the call, not stall it.
  const r = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true })
  try {
    await r.connect()
    return await f(r)
  } finally {
    r.disconnect()
  }
}

/** A fault proxy in front of the test server of `backend`, closed when the test ends. */
export async function proxyFor(t: ExecutionContext, backend: L2): Promise<FaultProxy> {
  const { hostname, port } = new URL(urlOf(backend))
  const proxy = await FaultProxy.start({ host: hostname, port: Number(port) })
  t.teardown(() => proxy.close())
  return proxy
}

/**
 * The URL of `backend` through `proxy`. Postgres without TLS: sqlx would otherwise negotiate it with a server that
 * offers it, and the proxy could not tell the bus connection from the others.
 */
export function proxied(proxy: FaultProxy, backend: L2): string {
  const url = proxy.url(urlOf(backend))
  return backend === 'postgres' ? `${url}${url.includes('?') ? '&' : '?'}sslmode=disable` : url
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

/** A throw-away Redis on its own port, stopped by pid. */
export class ThrowawayRedis {
  private child?: ChildProcess
  constructor(readonly port: number, private readonly extraArgs: string[] = []) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    this.child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.extraArgs],
      { stdio: 'ignore' },
    )
    const up = await eventually(() => portOpen(this.port), 5000)
    if (!up) throw new Error(`throw-away redis-server on port ${this.port} did not start`)
  }

  async stop(): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    this.child = undefined
  }
}

/**
 * A Postgres cluster of the test's own (`initdb` in a temporary folder, trust auth, loopback only), started, killed
 * and restarted by the test. Postgres refuses to run as root, so its commands run as the `postgres` user when the
 * test runs as root. `stop()` kills the postmaster by the pid it wrote, as a crash would.
 */
export class ThrowawayPostgres {
  readonly dir: string
  private bin = ''
  constructor(readonly port: number) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'tc-pg-'))
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`
  }

  private run(command: string, args: string[]): void {
    const asPostgres = process.getuid?.() === 0
    const [file, argv] = asPostgres ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args]
    execFileSync(file, argv, { stdio: 'ignore' })
  }

  async init(): Promise<void> {
    const versions = readdirSync('/usr/lib/postgresql').sort()
    this.bin = `/usr/lib/postgresql/${versions[versions.length - 1]}/bin`
    if (process.getuid?.() === 0) execFileSync('chown', ['postgres:postgres', this.dir])
    this.run(`${this.bin}/initdb`, ['-D', this.dir, '-U', 'postgres', '--auth=trust', '--no-sync'])
  }

  async start(): Promise<void> {
    const options = `-p ${this.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${this.dir} -c fsync=off`
    this.run(`${this.bin}/pg_ctl`, ['-D', this.dir, '-o', options, '-l', path.join(this.dir, 'log'), '-w', 'start'])
  }

  /** Kills the postmaster with SIGKILL, as a crash would; its backends exit when they notice. */
  async kill(): Promise<void> {
    const pidFile = path.join(this.dir, 'postmaster.pid')
    if (!existsSync(pidFile)) return
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0])
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      return
    }
    await eventually(() => !processAlive(pid), 10_000)
    rmSync(pidFile, { force: true })
  }

  /** Stops the cluster (by its pid) and removes its folder. */
  async destroy(): Promise<void> {
    await this.kill()
    await sleep(200)
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Whether process `pid` is still alive. */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function portOpen(port: number): Promise<boolean> {
  const { connect } = await import('node:net')
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Runs a Node script in a child process and resolves its exit code, stdout and how long it took. */
export function runNode(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 20_000,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, cwd: new URL('..', import.meta.url) })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    // 'close', not 'exit': only then has all of the child's output been read.
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}

const THREAD = new URL('./fixtures/thread.mjs', import.meta.url)

/** A cache in a worker thread of this process (fixtures/thread.mjs). */
export interface ThreadCache {
  worker: Worker
  /** Calls `method` of the thread's cache; a miss comes back as '<absent>'. Rejects with the thread's error. */
  call(method: 'stats'): Promise<CacheStats>
  call(method: string, ...args: unknown[]): Promise<unknown>
}

/** Starts a worker thread with its own `Cache` on `options`, terminated when the test ends. */
export function startThread(t: ExecutionContext, options: PlainCacheOptions): ThreadCache {
  const worker = new Worker(THREAD, { workerData: { options } })
  t.teardown(() => worker.terminate())
  let next = 0
  const pending = new Map<number, (reply: ThreadReply) => void>()
  worker.on('message', (reply: ThreadReply) => pending.get(reply.id)?.(reply))
  const call = (method: string, ...args: unknown[]) =>
    new Promise<unknown>((resolve, reject) => {
      const id = next++
      pending.set(id, (reply) => {
        if (reply.ok) return resolve(reply.value)
        // The thread's error, rebuilt with what survives a structured clone: its stack, code and cause's message.
        const cause = reply.cause === undefined ? undefined : new Error(reply.cause)
        reject(Object.assign(new Error(reply.error, { cause }), { code: reply.code }))
      })
      worker.postMessage({ id, method, args })
    })
  // The thread answers with what the cache method resolved, `stats` included; a structured clone carries no type.
  return { worker, call: call as ThreadCache['call'] }
}

type ThreadReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string; code?: string; cause?: string }

const PEER = fileURLToPath(new URL('./fixtures/peer.mjs', import.meta.url))

/** One `getOrSet` call of `loadMany`: the value its loader made, or the message of the error it rejected with. */
export type PeerLoad = { by: number; at: string; error?: undefined } | { error: string; by?: undefined; at?: undefined }

/** What each command of fixtures/peer.mjs resolves. Instants are `process.hrtime.bigint()` values as decimal text. */
export interface PeerReplies {
  open: { pid: number; backend: CacheClass['backend'] }
  call: { value: unknown }
  stats: CacheStats
  probe: { value: string; l1: boolean }
  prime: { primed: true }
  watch: { watching: true }
  watchResult: { seenAt?: string; polls: number; sawOldAgain: boolean; unexpected: string[] }
  loadMany: { values: PeerLoad[]; ms: number; stats: CacheStats }
}

/** A message the peer sends unasked, such as `loader-started`. */
export interface PeerEvent {
  event: string
  key: string
  pid: number
  at: string
}

type PeerMessage = PeerEvent | { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string }

/** A cache in a child process (fixtures/peer.mjs), driven over JSON lines: another instance, with its own L1. */
export class Peer {
  readonly child: ChildProcess
  readonly pid: number
  #next = 0
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  #events: PeerEvent[] = []
  #stderr = ''
  #exited: Promise<void>

  private constructor(t: ExecutionContext) {
    this.child = spawn(process.execPath, [PEER], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.pid = this.child.pid!
    // Whatever happens to the test, the child does not outlive it.
    t.teardown(() => {
      this.child.stdin!.end()
      if (this.child.exitCode === null && this.child.signalCode === null) process.kill(this.pid, 'SIGKILL')
    })
    this.child.stderr!.on('data', (chunk) => (this.#stderr += chunk))
    this.#exited = new Promise((resolve) => this.child.once('exit', () => resolve()))
    this.#exited.then(() => {
      for (const { reject } of this.#pending.values()) reject(new Error(`peer ${this.pid} exited: ${this.#stderr}`))
      this.#pending.clear()
    })
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const message = JSON.parse(line) as PeerMessage
      if ('event' in message) {
        this.#events.push(message)
        return
      }
      const pending = this.#pending.get(message.id)
      this.#pending.delete(message.id)
      if (message.ok) pending?.resolve(message.result)
      else pending?.reject(new Error(`peer ${this.pid}: ${message.error}`))
    })
  }

  static async start(t: ExecutionContext, options: PlainCacheOptions): Promise<Peer> {
    const peer = new Peer(t)
    await peer.request('open', { options })
    return peer
  }

  request<C extends keyof PeerReplies>(cmd: C, args: object = {}, timeoutMs = 20_000): Promise<PeerReplies[C]> {
    const id = this.#next++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`peer ${this.pid}: ${cmd} took over ${timeoutMs} ms`)), timeoutMs)
      this.#pending.set(id, {
        // The peer answers `cmd` with what PeerReplies says; JSON carries no type to check it against.
        resolve: (v) => (clearTimeout(timer), resolve(v as PeerReplies[C])),
        reject: (e) => (clearTimeout(timer), reject(e)),
      })
      this.child.stdin!.write(`${JSON.stringify({ id, cmd, ...args })}\n`)
    })
  }

  stats(): Promise<CacheStats> {
    return this.request('stats')
  }

  event(predicate: (e: PeerEvent) => boolean, timeoutMs: number): Promise<PeerEvent> {
    return waitFor('a peer event', timeoutMs, async () => this.#events.find(predicate))
  }

  kill(): Promise<void> {
    process.kill(this.pid, 'SIGKILL')
    return this.#exited
  }
}
