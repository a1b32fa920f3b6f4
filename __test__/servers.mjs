// Throw-away servers for the suites that need more than the shared Redis and Postgres: a 6-node Redis Cluster
// (3 masters, 3 replicas) and a PgBouncer in transaction pooling in front of the shared Postgres. Each runs on free
// loopback ports in a temporary directory and is stopped by its pid, never by name.
import { spawn, execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function portIsFree(port) {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** `count` free ports whose cluster-bus port (+10000) is free too. */
async function clusterPorts(count) {
  const ports = []
  while (ports.length < count) {
    const port = 20000 + Math.floor(Math.random() * 20000)
    if (!ports.includes(port) && (await portIsFree(port)) && (await portIsFree(port + 10000))) ports.push(port)
  }
  return ports
}

async function until(check, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

const cli = (port, ...args) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]).then((r) => r.stdout)

/**
 * Starts a Redis Cluster of `masters` masters with one replica each. Returns its nodes' ports, the seed URL for the
 * cache (`redis://127.0.0.1:a,redis://127.0.0.1:b,...`), and `kill(port)` (SIGKILL) and `stop()` by pid.
 */
export async function startRedisCluster({ masters = 3, nodeTimeoutMs = 1500 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tc-cluster-'))
  const ports = await clusterPorts(masters * 2)
  const children = new Map()
  const stop = () => {
    for (const child of children.values()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    children.clear()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (const port of ports) {
      const child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file',
          join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', String(nodeTimeoutMs), '--save', '',
          '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no'],
        { stdio: 'ignore' },
      )
      children.set(port, child)
    }
    for (const port of ports) await until(async () => (await cli(port, 'ping')).trim() === 'PONG', `node ${port}`)
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1',
      '--cluster-yes'])
    for (const port of ports) {
      await until(async () => (await cli(port, 'cluster', 'info')).includes('cluster_state:ok'), `cluster state on ${port}`)
    }
    // Every replica attached and in sync (about 5 s after create), so that a killed master has one to fail over to.
    await until(async () => {
      const links = await Promise.all(ports.map(async (p) => (await cli(p, 'info', 'replication')).match(/master_link_status:(\w+)/)?.[1]))
      return links.filter((l) => l === 'up').length === masters
    }, 'replicas in sync')
  } catch (e) {
    stop()
    throw e
  }
  return {
    ports,
    url: ports.map((p) => `redis://127.0.0.1:${p}`).join(','),
    pids: [...children.values()].map((c) => c.pid),
    /** The ports of the current masters. */
    async masters() {
      for (const port of ports) {
        if (!children.has(port)) continue
        const nodes = await cli(port, 'cluster', 'nodes').catch(() => '')
        if (!nodes) continue
        return nodes.split('\n').filter((l) => /\bmaster\b/.test(l) && !/\bfail\b/.test(l))
          .map((l) => Number(l.split(' ')[1].split('@')[0].split(':')[1]))
      }
      return []
    },
    /** Kills a node with SIGKILL by its pid. */
    kill(port) {
      const child = children.get(port)
      child?.kill('SIGKILL')
      children.delete(port)
    },
    cli,
    stop,
  }
}

/** The pgbouncer binary: on PATH, or where Debian's package puts it. */
export function pgbouncerBinary() {
  return existsSync('/usr/sbin/pgbouncer') ? '/usr/sbin/pgbouncer' : 'pgbouncer'
}

/**
 * Starts a PgBouncer in transaction pooling mode in front of the Postgres at `upstream` (host, port, database), with
 * its own config and auth file. Returns its URL and `stop()` by pid.
 */
export async function startPgBouncer({ upstreamHost = '127.0.0.1', upstreamPort = 5432, database = 'test', user = 'postgres', poolSize = 20 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tc-pgbouncer-'))
  let port
  do port = 20000 + Math.floor(Math.random() * 20000)
  while (!(await portIsFree(port)))
  writeFileSync(join(dir, 'userlist.txt'), `"${user}" ""\n`)
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `${database} = host=${upstreamHost} port=${upstreamPort} dbname=${database}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${poolSize}`,
      'max_client_conn = 500',
      // sqlx sets these at connect; a transaction pooler must accept and drop them.
      'ignore_startup_parameters = extra_float_digits,options,search_path',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  )
  // PgBouncer refuses to run as root: then it runs as postgres, which must be able to write its log there.
  const asRoot = process.getuid?.() === 0
  if (asRoot) chmodSync(dir, 0o777)
  const args = [...(asRoot ? ['-u', 'postgres'] : []), join(dir, 'pgbouncer.ini')]
  const child = spawn(pgbouncerBinary(), args, { stdio: 'ignore' })
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await until(() => portIsFree(port).then((free) => !free), 'pgbouncer', 10_000)
  } catch (e) {
    stop()
    throw e
  }
  return { port, url: `postgres://${user}@127.0.0.1:${port}/${database}?sslmode=disable`, pid: child.pid, dir, stop }
}
