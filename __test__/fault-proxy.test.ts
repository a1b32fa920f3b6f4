// The fault proxy's own tests, against the real Redis and Postgres through it: the cache's fault tests trust it, so a
// failure there must point at the cache and not at the proxy. Serial: they measure delays and wait for silences.
import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import pg from 'pg'
import { Redis, type RedisOptions } from 'ioredis'

import type { FaultProxy } from './fault-proxy.js'
import { type L2, POSTGRES_URL, REDIS_URL, eventually, proxyFor, settlesWithin, sleep } from './helpers.js'

// Long enough that a forwarded round trip to a local server would have answered many times over.
const HANG_MS = 500
const DELAY_MS = 150
// Retries, reconnects and the offline queue would hide a fault behind a fresh connection.
const NO_RETRIES: RedisOptions = {
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
  lazyConnect: true,
  enableOfflineQueue: false,
}

const BACKENDS: L2[] = ['redis', 'postgres']

/** One client of either server, reduced to what the mode tests need. */
interface Probe {
  roundTrip(): Promise<unknown>
  /** Settles once the client has seen its connection end, for whatever reason. */
  closed: Promise<void>
}

const channelName = () => `fp_${randomBytes(6).toString('hex')}`

function redisVia(t: ExecutionContext, proxy: FaultProxy): Redis {
  const client = new Redis(proxy.url(REDIS_URL), NO_RETRIES)
  // The faults make ioredis emit errors on purpose; unheard, it would print them.
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  return client
}

function pgVia(t: ExecutionContext, proxy: FaultProxy): pg.Client {
  const client = new pg.Client({ connectionString: proxy.url(POSTGRES_URL) })
  // An unheard 'error' event would crash the worker when a fault ends the connection.
  client.on('error', () => {})
  t.teardown(() => endPg(client))
  return client
}

async function endPg(client: pg.Client): Promise<void> {
  const ended = client.end().catch(() => {})
  // An idle client on a black-holed connection waits for the server's goodbye forever.
  const stream = (client as unknown as { connection: { stream: Socket } }).connection.stream
  const timer = setTimeout(() => stream.destroy(), 250)
  await ended
  clearTimeout(timer)
}

async function connectedProbe(t: ExecutionContext, backend: L2, proxy: FaultProxy): Promise<Probe> {
  if (backend === 'redis') {
    const client = redisVia(t, proxy)
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
    await client.connect()
    return { roundTrip: () => client.ping(), closed }
  }
  const client = pgVia(t, proxy)
  const closed = new Promise<void>((resolve) => client.once('end', () => resolve()))
  await client.connect()
  return { roundTrip: () => client.query('SELECT 1'), closed }
}

async function connectionError(t: ExecutionContext, backend: L2, proxy: FaultProxy): Promise<string> {
  const client = backend === 'redis' ? redisVia(t, proxy) : pgVia(t, proxy)
  // ioredis rejects connect() with a plain 'Connection is closed.'; the socket's error came as an event before it.
  let code: string | undefined
  client.on('error', (error: NodeJS.ErrnoException) => (code ??= error.code))
  try {
    await client.connect()
  } catch (error) {
    return code ?? (error as NodeJS.ErrnoException).code ?? String(error)
  }
  return 'connected'
}

test.serial('url() swaps the host and port for the proxy and keeps the rest', async (t) => {
  const proxy = await proxyFor(t, 'redis')
  const at = `127.0.0.1:${proxy.port}`
  t.true(proxy.port > 0)
  t.is(proxy.url('redis://127.0.0.1:6379'), `redis://${at}`)
  t.is(proxy.url('postgres://postgres@127.0.0.1:5432/test'), `postgres://postgres@${at}/test`)
  t.is(proxy.url('rediss://:s3cr%40t@cache.internal:6380/2?family=4'), `rediss://:s3cr%40t@${at}/2?family=4`)
  t.is(proxy.url('postgresql://app:p@ss@[::1]/db?sslmode=disable'), `postgresql://app:p@ss@${at}/db?sslmode=disable`)
  t.throws(() => proxy.url('127.0.0.1:6379'), { instanceOf: TypeError })
})

for (const backend of BACKENDS) {
  test.serial(`${backend}: pass forwards both ways`, async (t) => {
    const proxy = await proxyFor(t, backend)
    if (backend === 'redis') {
      const client = redisVia(t, proxy)
      await client.connect()
      t.is(await client.ping(), 'PONG')
    } else {
      const client = pgVia(t, proxy)
      await client.connect()
      t.deepEqual((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }])
    }
    t.is(proxy.connections(), 1)
    t.is(proxy.connections('bus'), 0)
  })

  test.serial(`${backend}: blackhole holds a live connection's command and a new connection's handshake`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const live = await connectedProbe(t, backend, proxy)
    await live.roundTrip()

    proxy.set('blackhole')
    t.false(await settlesWithin(live.roundTrip(), HANG_MS), 'a command answered through the black hole')
    const fresh = backend === 'redis' ? redisVia(t, proxy) : pgVia(t, proxy)
    t.false(await settlesWithin(fresh.connect(), HANG_MS), 'a new connection got through the black hole')
    t.is(proxy.connections(), 2, 'black-holed connections stay open')

    // Healed for new flows only: the old connection stays dead.
    proxy.set('pass')
    const after = await connectedProbe(t, backend, proxy)
    await after.roundTrip()
    t.false(await settlesWithin(live.roundTrip(), HANG_MS), 'the black-holed connection came back to life')
  })

  test.serial(`${backend}: reset ends a live connection and every new one`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const live = await connectedProbe(t, backend, proxy)
    await live.roundTrip()

    proxy.set('reset')
    t.true(await settlesWithin(live.closed, 2000), 'the live client did not see its connection end')
    await t.throwsAsync(live.roundTrip())
    t.is(await connectionError(t, backend, proxy), 'ECONNRESET')
  })

  test.serial(`${backend}: refuse turns new connections away and resets live ones, until pass`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const live = await connectedProbe(t, backend, proxy)

    proxy.set('refuse')
    t.regex(await connectionError(t, backend, proxy), /^(ECONNREFUSED|ECONNRESET)$/)
    t.true(await settlesWithin(live.closed, 2000), 'the live client did not see its connection end')

    proxy.set('pass')
    const after = await connectedProbe(t, backend, proxy)
    await t.notThrowsAsync(after.roundTrip())
  })

  test.serial(`${backend}: delay adds at least delayMs to a round trip`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const probe = await connectedProbe(t, backend, proxy)
    await probe.roundTrip()

    proxy.set('delay', { delayMs: DELAY_MS })
    const started = performance.now()
    await probe.roundTrip()
    const ms = performance.now() - started
    t.log(`a round trip with ${DELAY_MS} ms of delay took ${ms.toFixed(1)} ms`)
    t.true(ms >= DELAY_MS - 5, `${ms} ms`)
  })
}

test.serial('redis: a bus-scoped blackhole holds the subscriber while commands still pass', async (t) => {
  const proxy = await proxyFor(t, 'redis')
  const channel = channelName()
  const subscriber = redisVia(t, proxy)
  const messages: string[] = []
  subscriber.on('message', (_channel: string, message: string) => messages.push(message))
  await subscriber.connect()
  await subscriber.subscribe(channel)
  const plain = redisVia(t, proxy)
  await plain.connect()
  t.is(await plain.ping(), 'PONG')
  t.is(proxy.connections('bus'), 1)
  t.is(proxy.connections(), 2)
  // Proves the silence below means something.
  await plain.publish(channel, 'before')
  t.true(await eventually(() => messages.length === 1, 2000, 10))

  proxy.set('blackhole', { scope: 'bus' })
  t.is(await plain.publish(channel, 'during'), 1, 'Redis still counts the subscriber: a partition, not a hang-up')
  t.is(await plain.ping(), 'PONG')
  await sleep(HANG_MS)
  t.deepEqual(messages, ['before'])

  // The SUBSCRIBE that makes a connection a bus one is itself held.
  const late = redisVia(t, proxy)
  await late.connect()
  t.is(await late.ping(), 'PONG')
  t.false(await settlesWithin(late.subscribe(channelName()), HANG_MS), 'a SUBSCRIBE got through the bus black hole')
  t.is(proxy.connections('bus'), 2)
  t.is(await plain.ping(), 'PONG')
})

test.serial('redis: a bus-scoped reset ends the subscriber only', async (t) => {
  const proxy = await proxyFor(t, 'redis')
  const subscriber = redisVia(t, proxy)
  const closed = new Promise<void>((resolve) => subscriber.once('close', () => resolve()))
  await subscriber.connect()
  await subscriber.subscribe(channelName())
  const plain = redisVia(t, proxy)
  await plain.connect()

  proxy.set('reset', { scope: 'bus' })
  t.true(await settlesWithin(closed, 2000), 'the subscriber did not see its connection end')
  t.is(await plain.ping(), 'PONG')
  t.is(proxy.connections('bus'), 0)
  t.is(proxy.connections(), 1)
})

test.serial('redis: a SUBSCRIBE split across two TCP chunks still marks a bus connection', async (t) => {
  const proxy = await proxyFor(t, 'redis')
  const channel = channelName()
  const socket = connect(proxy.port, '127.0.0.1')
  socket.setNoDelay(true)
  socket.on('error', () => {})
  t.teardown(() => socket.destroy())
  let answer = ''
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')))
  await new Promise((resolve) => socket.once('connect', resolve))

  socket.write('*2\r\n$9\r\nSUBSC')
  await sleep(50)
  t.is(proxy.connections(), 1)
  t.is(proxy.connections('bus'), 0)
  socket.write(`RIBE\r\n$${channel.length}\r\n${channel}\r\n`)
  t.true(await eventually(() => answer.includes(channel), 2000, 10), 'Redis did not confirm the subscription')
  t.is(proxy.connections('bus'), 1)
})

test.serial('postgres: a bus-scoped blackhole holds the LISTEN connection while queries still pass', async (t) => {
  const proxy = await proxyFor(t, 'postgres')
  const channel = channelName()
  const listener = pgVia(t, proxy)
  const notifications: string[] = []
  listener.on('notification', (notification) => notifications.push(notification.payload ?? ''))
  await listener.connect()
  await listener.query(`LISTEN ${channel}`)
  const plain = pgVia(t, proxy)
  await plain.connect()
  await plain.query('SELECT 1')
  t.is(proxy.connections('bus'), 1)
  t.is(proxy.connections(), 2)
  // Proves the silence below means something.
  await plain.query(`NOTIFY ${channel}, 'before'`)
  t.true(await eventually(() => notifications.length === 1, 2000, 10))

  proxy.set('blackhole', { scope: 'bus' })
  await plain.query(`NOTIFY ${channel}, 'during'`)
  t.deepEqual((await plain.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  t.false(await settlesWithin(listener.query('SELECT 1'), HANG_MS), 'the LISTEN connection answered a query')
  t.deepEqual(notifications, ['before'])

  // The LISTEN that makes a connection a bus one is itself held.
  const late = pgVia(t, proxy)
  await late.connect()
  await late.query('SELECT 1')
  t.false(await settlesWithin(late.query(`LISTEN ${channelName()}`), HANG_MS), 'a LISTEN got through the black hole')
  t.is(proxy.connections('bus'), 2)
  t.deepEqual((await plain.query('SELECT 1 AS one')).rows, [{ one: 1 }])
})
