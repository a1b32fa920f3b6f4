// Many instances on one L2 (README "Scaling out"): N cache processes on one throw-away Redis (or the shared Postgres,
// or a Redis Cluster), each writing at a fixed rate, so that every instance hears the other N-1's bus messages.
// Measures the messages/s each instance applies and its CPU per message, the L2's CPU (Redis: INFO cpu of a server
// of its own; Postgres: the CPU of the server processes that serve these instances, from /proc), and the connections
// each instance holds on the L2.
//
//   node bench/scale/fanout.mjs [--l2 redis|postgres|cluster] [--instances 16] [--rate 50] [--seconds 10]
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import Redis from 'ioredis'
import pg from 'pg'

import { startRedisCluster } from '../../__test__/servers.mjs'

const { Cache } = createRequire(import.meta.url)('../../index.js')
const POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const { values: args } = parseArgs({
  options: {
    l2: { type: 'string', default: 'redis' },
    instances: { type: 'string', default: '16' },
    rate: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    child: { type: 'string' },
  },
})

if (args.child) {
  // One instance: opens its cache, then on "go" writes `rate` keys/s for `seconds` and reports its counters.
  const options = JSON.parse(args.child)
  const cache = new Cache(options)
  while (!(await cache.stats()).busUp) await sleep(50)
  process.send({ ready: true, pid: process.pid })
  process.on('message', async ({ go, rate, seconds }) => {
    if (!go) return
    const before = { ...(await cache.stats()), cpu: process.cpuUsage() }
    const started = performance.now()
    let n = 0
    while (performance.now() - started < seconds * 1000) {
      await cache.set(`k${process.pid}:${n++ % 100}`, n)
      const due = started + (n * 1000) / rate
      const wait = due - performance.now()
      if (wait > 0) await sleep(wait)
    }
    await sleep(1000) // the last messages of the others
    const after = await cache.stats()
    const cpu = process.cpuUsage(before.cpu)
    const elapsed = (performance.now() - started) / 1000
    process.send({
      received: after.busReceived - before.busReceived,
      published: after.busPublished - before.busPublished,
      elapsed,
      cpuUs: cpu.user + cpu.system,
    })
  })
  // Closed only when told, so that the parent can read the CPU of this instance's Postgres backends first.
  process.on('message', async ({ close }) => {
    if (!close) return
    await cache.close()
    process.exit(0)
  })
} else {
  const instances = Number(args.instances)
  let url
  let stop = () => {}
  let redisForCpu
  let options = {}
  if (args.l2 === 'redis') {
    const port = 20000 + Math.floor(Math.random() * 20000)
    const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    stop = () => server.kill('SIGKILL')
    url = `redis://127.0.0.1:${port}`
    await sleep(300)
    redisForCpu = [new Redis(port)]
  } else if (args.l2 === 'cluster') {
    const cluster = await startRedisCluster()
    stop = cluster.stop
    url = cluster.url
    options = { redis: { cluster: true } }
    redisForCpu = cluster.ports.map((p) => new Redis(p))
  } else {
    url = POSTGRES_URL
  }
  const namespace = `fanout-${process.pid}`
  const pgCpuBefore = new Map()
  const cpuOf = async () => {
    let total = 0
    if (!redisForCpu) {
      for (const pid of await backendPids()) total += processCpuSeconds(pid) - (pgCpuBefore.get(pid) ?? 0)
    }
    for (const r of redisForCpu ?? []) {
      const info = await r.info('cpu')
      total += Number(/used_cpu_sys:([\d.]+)/.exec(info)[1]) + Number(/used_cpu_user:([\d.]+)/.exec(info)[1])
    }
    return total
  }
  // The Postgres backends serving these instances (pool, bus, lock session), found by application_name.
  const backendPids = async () => {
    const db = new pg.Client({ connectionString: POSTGRES_URL })
    await db.connect()
    const { rows } = await db.query(`SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'tiered-cache%'
      AND substring(application_name from 'pid ([0-9]+)')::int = ANY($1)`, [children.map((c) => c.pid)])
    await db.end()
    return rows.map((r) => r.pid)
  }
  // utime + stime of a process, in seconds (clock ticks of 1/100 s, Linux's USER_HZ); 0 once it has gone.
  const processCpuSeconds = (pid) => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
      return (Number(fields[11]) + Number(fields[12])) / 100
    } catch {
      return 0
    }
  }
  const connections = async () => {
    if (redisForCpu) {
      let n = 0
      for (const r of redisForCpu) n += (await r.client('LIST')).trim().split('\n').length - 1 // minus our own
      return n
    }
    const db = new pg.Client({ connectionString: POSTGRES_URL })
    await db.connect()
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'tiered-cache%'
      AND substring(application_name from 'pid ([0-9]+)')::int = ANY($1)`, [children.map((c) => c.pid)])
    await db.end()
    return rows[0].n
  }
  const children = []
  try {
    const self = fileURLToPath(import.meta.url)
    const ready = []
    for (let i = 0; i < instances; i++) {
      const child = spawn(process.execPath, [self, '--child', JSON.stringify({ url, namespace, ...options })], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      children.push(child)
      ready.push(new Promise((resolve) => child.once('message', resolve)))
    }
    await Promise.all(ready)
    const rate = Number(args.rate)
    const seconds = Number(args.seconds)
    // Idle connections first: every instance connected, its bus subscribed and its command connection used once.
    const idleConnections = await connections()
    for (const pid of await backendPids()) pgCpuBefore.set(pid, processCpuSeconds(pid))
    const cpuBefore = await cpuOf()
    const results = children.map((child) => new Promise((resolve) => child.once('message', resolve)))
    for (const child of children) child.send({ go: true, rate, seconds })
    const reports = await Promise.all(results)
    const cpuAfter = await cpuOf()
    const elapsed = Math.max(...reports.map((r) => r.elapsed))
    const received = reports.map((r) => r.received / elapsed)
    const published = reports.reduce((sum, r) => sum + r.published, 0) / elapsed
    const cpuPerMessageUs = reports.map((r) => r.cpuUs / Math.max(1, r.received + r.published))
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
    const summary = {
      l2: args.l2,
      instances,
      writesPerSecondEach: rate,
      busMessagesPublishedPerSecond: Math.round(published),
      busMessagesAppliedPerSecondEach: { median: Math.round(median(received)), min: Math.round(Math.min(...received)) },
      instanceCpuPerMessageUs: Math.round(median(cpuPerMessageUs)),
      l2CpuPercent: Math.round(((cpuAfter - cpuBefore) / elapsed) * 1000) / 10,
      l2ConnectionsPerInstance: Math.round((idleConnections / instances) * 10) / 10,
    }
    console.log(JSON.stringify(summary, null, 2))
    for (const child of children) child.send({ close: true })
    await Promise.all(children.map((child) => (child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve)) : null)))
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
    for (const r of redisForCpu ?? []) r.disconnect()
    stop()
  }
}
