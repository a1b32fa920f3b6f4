/**
 * A server whose L2 dies: a Redis this test starts, then kills by its pid. Pages still render (from the L1, or afresh
 * from the database), and an invalidation the L2 cannot record fails instead of being silently lost.
 */
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createConnection } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { TestDatabase, DATABASE_URL } from './support/database'
import { getPage } from './support/http'
import { freePort, kill, startServer } from './support/servers'

async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'))
    socket.once('data', (data) => {
      socket.destroy()
      resolve(data.toString().startsWith('+PONG'))
    })
    socket.once('error', () => resolve(false))
  })
}

test('with its L2 killed, a server still renders pages, and a revalidateTag it cannot record is reported as lost', async (t) => {
  const port = await freePort()
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  })
  const redisExited = once(redis, 'exit')
  t.teardown(() => {
    if (redis.exitCode === null && redis.signalCode === null) redis.kill('SIGKILL')
  })
  for (let tries = 0; !(await answersPing(port)); tries++) {
    if (tries > 100) throw new Error('the throw-away Redis did not start')
    await sleep(50)
  }

  const database = new TestDatabase()
  t.teardown(() => database.close())
  const [cached, uncached, other] = await database.slugs(true, 20, 3)
  const server = await startServer('server (its L2 to be killed)', {
    CACHE_URL: `redis://127.0.0.1:${port}`,
    CACHE_NAMESPACE_PREFIX: `down${Date.now().toString(36)}-`,
    DATABASE_URL,
  })
  t.teardown(() => kill(server))
  const before = await getPage(server, `/menu/${cached}`)
  t.is(before.status, 200)

  redis.kill('SIGKILL')
  await redisExited
  for (const path of [`/menu/${cached}`, `/menu/${other}`, `/${uncached}`]) {
    const page = await getPage(server, path)
    t.is(page.status, 200, `${path}: ${page.html.slice(0, 300)}`)
  }
  const name = (await database.tenant(uncached!))?.name
  t.true((await getPage(server, `/${uncached}`)).html.includes(`<h1>${name}</h1>`), 'rendered afresh from the database')

  const response = await fetch(`${server.baseUrl}/api/revalidate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tag: `menu:${cached}` }),
  })
  // A route handler's revalidations run after its response (Next.js's waitUntil): the handler's rejection cannot
  // change the answer, so the failure must at least be reported, with the tag that was not invalidated.
  t.is(response.status, 200, await response.text())
  const lost = await waitForOutput(server, /"level":"error".*tags not invalidated \(menu:/)
  t.regex(lost, /ERR_CACHE_L2/)
  t.log(lost)
})

async function waitForOutput(server: { output: () => string }, pattern: RegExp): Promise<string> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    const line = server.output().split('\n').find((l) => pattern.test(l))
    if (line !== undefined) return line
    await sleep(50)
  }
  throw new Error(`no line matching ${pattern} in:\n${server.output().slice(-2000)}`)
}
