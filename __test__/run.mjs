// `npm run test:node`: starts the servers that the suites share for the whole run (ava runs each file in a process
// of its own, so a server started by a test file would be started once per file) and hands their addresses to ava in
// the environment: a 6-node Redis Cluster (TEST_REDIS_CLUSTER_URL) and a PgBouncer in transaction pooling in front of
// the shared Postgres (TEST_PGBOUNCER_URL). They are stopped by pid when ava exits, passed or failed, or on a signal.
// Arguments go to ava as they are (`node __test__/run.mjs __test__/cache.test.ts`).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { startPgBouncer, startRedisCluster } from './servers.mjs'

const servers = []
const stopAll = () => {
  for (const server of servers.splice(0)) server.stop()
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopAll()
    process.exit(130)
  })
}

let code = 1
try {
  const env = { ...process.env }
  if (!env.TEST_REDIS_CLUSTER_URL) {
    const cluster = await startRedisCluster()
    servers.push(cluster)
    env.TEST_REDIS_CLUSTER_URL = cluster.url
  }
  if (!env.TEST_PGBOUNCER_URL) {
    const bouncer = await startPgBouncer()
    servers.push(bouncer)
    env.TEST_PGBOUNCER_URL = bouncer.url
  }
  // ava's bin, which its package exports do not name.
  const ava = fileURLToPath(new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url))
  const child = spawn(process.execPath, [ava, ...process.argv.slice(2)], { stdio: 'inherit', env })
  code = await new Promise((resolve) => child.on('exit', (status, signal) => resolve(status ?? (signal ? 1 : 0))))
} catch (error) {
  process.stderr.write(`could not start the test servers: ${error?.stack ?? error}\n`)
} finally {
  stopAll()
}
process.exit(code)
