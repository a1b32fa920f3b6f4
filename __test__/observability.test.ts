// What the cache tells the world: the diagnostics channels (every public call, every loader run, the breaker's and
// the bus's transitions), the logger, tiered-cache/prometheus scraped and parsed, tiered-cache/otel through the SDK's
// in-memory exporters. Real servers, and the fault proxy for the transitions. Serial: the channels are process-wide.
import test, { type ExecutionContext } from 'ava'
import { Writable } from 'node:stream'
import dc from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import pino from 'pino'
import { Registry } from 'prom-client'
import * as api from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics'

import { BACKENDS, L2S, connectionOf, eventually, openCache, proxied, proxyFor, uniqueNamespace, waitFor } from './helpers.js'
import type { CacheLogger } from '../index.js'
import type { OperationContext, LoaderRunContext, TransitionMessage } from '../diagnostics.js'

const require = createRequire(import.meta.url)
const { registerMetrics } = require('../prometheus.js') as typeof import('../prometheus.js')
const { instrument } = require('../otel.js') as typeof import('../otel.js')
const { rules } = require('../binding.js') as { rules: () => { transitions: Record<string, string[]> } }

/** Every event of the two tracing channels, as [channel, event, a copy of the context], while the test runs. */
function recordTraces(t: ExecutionContext): Array<[string, string, OperationContext & LoaderRunContext]> {
  const seen: Array<[string, string, OperationContext & LoaderRunContext]> = []
  for (const name of ['tiered-cache:operation', 'tiered-cache:loader']) {
    const channel = dc.tracingChannel(name)
    const on = (event: string) => (context: object) => {
      seen.push([name, event, { ...(context as OperationContext & LoaderRunContext) }])
    }
    const handlers = {
      start: on('start'),
      end: on('end'),
      asyncStart: on('asyncStart'),
      asyncEnd: on('asyncEnd'),
      error: on('error'),
    }
    channel.subscribe(handlers)
    t.teardown(() => channel.unsubscribe(handlers))
  }
  return seen
}

/** The asyncEnd contexts of one namespace's operations. */
function ended(seen: ReturnType<typeof recordTraces>, namespace: string): OperationContext[] {
  return seen
    .filter(([channel, event, context]) => channel === 'tiered-cache:operation' && event === 'asyncEnd' && context.namespace === namespace)
    .map(([, , context]) => context)
}

for (const backend of BACKENDS) {
  test.serial(`${backend.name}: tiered-cache:operation traces each call with where its value came from`, async (t) => {
    const seen = recordTraces(t)
    const namespace = uniqueNamespace('dc')
    const cache = openCache(t, { ...connectionOf(backend), namespace })
    await cache.set('a', { n: 1 })
    t.deepEqual(await cache.get('a'), { n: 1 })
    t.is(await cache.get('missing'), undefined)
    t.is(await cache.getOrSet('loaded', () => 7), 7)
    t.is(await cache.getOrSet('loaded', () => 8), 7)
    t.is(await cache.delete('a', 'b'), 1)
    const thrown = t.throws(() => cache.get(42 as unknown as string)) as Error & { code: string }
    t.is(thrown.code, 'ERR_CACHE_INVALID_KEY', 'bad input still throws synchronously')

    const ends = ended(seen, namespace).map(({ operation, key, hit, tier, stale }) => ({ operation, key, hit, tier, stale }))
    t.deepEqual(ends, [
      { operation: 'set', key: 'a', hit: undefined, tier: undefined, stale: undefined },
      { operation: 'get', key: 'a', hit: true, tier: 'l1', stale: false },
      { operation: 'get', key: 'missing', hit: false, tier: undefined, stale: false },
      { operation: 'getOrSet', key: 'loaded', hit: false, tier: 'loader', stale: false },
      { operation: 'getOrSet', key: 'loaded', hit: true, tier: 'l1', stale: false },
      { operation: 'delete', key: ['a', 'b'], hit: undefined, tier: undefined, stale: undefined },
    ])
    const mine = seen.filter(([, , context]) => context.namespace === namespace)
    const starts = mine.filter(([channel, event]) => channel === 'tiered-cache:operation' && event === 'start')
    t.is(starts.length, 7, 'one start per call, the throwing one included')
    t.true(starts.every(([, , context]) => context.backend === cache.backend))
    const errors = mine.filter(([, event]) => event === 'error')
    t.is(errors.length, 1)
    t.is((errors[0][2].error as { code: string }).code, 'ERR_CACHE_INVALID_KEY')
    const loads = mine.filter(([channel, event]) => channel === 'tiered-cache:loader' && event === 'asyncEnd')
    t.deepEqual(
      loads.map(([, , c]) => [c.operation, c.key, c.result]),
      [['getOrSet', 'loaded', 7]],
      'one loader run, traced with what it returned',
    )
  })

  test.serial(`${backend.name}: tiered-cache:operation traces batch calls with their keys and where the values came from`, async (t) => {
    const seen = recordTraces(t)
    const namespace = uniqueNamespace('dcmany')
    const cache = openCache(t, { ...connectionOf(backend), namespace })
    await cache.setMany([{ key: 'a', value: 1 }, { key: 'b', value: 2 }])
    t.deepEqual(await cache.getMany(['a', 'b']), [1, 2])
    t.deepEqual(await cache.getMany(['a', 'missing']), [1, undefined])
    const expected = [
      { operation: 'setMany', key: ['a', 'b'], hit: undefined, tier: undefined },
      { operation: 'getMany', key: ['a', 'b'], hit: true, tier: 'l1' },
      { operation: 'getMany', key: ['a', 'missing'], hit: false, tier: undefined },
    ]
    if (backend.url !== undefined) {
      const reader = openCache(t, { ...connectionOf(backend), namespace, l1: false })
      t.deepEqual(await reader.getMany(['a', 'b']), [1, 2])
      expected.push({ operation: 'getMany', key: ['a', 'b'], hit: true, tier: 'l2' })
    }
    t.deepEqual(ended(seen, namespace).map(({ operation, key, hit, tier }) => ({ operation, key, hit, tier })), expected)
  })

  test.serial(`${backend.name}: without subscribers a call publishes nothing and an L1 hit is still a settled promise`, async (t) => {
    const cache = openCache(t, { ...connectionOf(backend), namespace: uniqueNamespace('idle') })
    t.false(dc.tracingChannel('tiered-cache:operation').hasSubscribers)
    await cache.set('k', 1)
    // An already-settled promise wins a race against one resolved after it.
    const first = await Promise.race([cache.get('k'), Promise.resolve('later')])
    t.is(first, 1)
  })
}

for (const backend of L2S) {
  test.serial(`${backend}: tiered-cache:operation names the L2 as the tier of an L2 hit`, async (t) => {
    const seen = recordTraces(t)
    const namespace = uniqueNamespace('dcl2')
    const url = backend === 'postgres' ? BACKENDS[1].url : BACKENDS[2].url
    const writer = openCache(t, { url, namespace })
    const reader = openCache(t, { url, namespace, l1: false })
    await writer.set('k', 'v')
    t.is(await reader.get('k'), 'v')
    t.is(await reader.getOrSet('k', () => 'loaded'), 'v')
    const reads = ended(seen, namespace).filter((c) => c.operation !== 'set')
    t.deepEqual(
      reads.map(({ operation, hit, tier }) => ({ operation, hit, tier })),
      [
        { operation: 'get', hit: true, tier: 'l2' },
        { operation: 'getOrSet', hit: true, tier: 'l2' },
      ],
    )
  })
}

/** A pino logger writing JSON lines into an array. */
function pinoLines(): { logger: CacheLogger; lines: Array<Record<string, unknown>>; text: string[] } {
  const lines: Array<Record<string, unknown>> = []
  const text: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        text.push(line)
        lines.push(JSON.parse(line))
      }
      done()
    },
  })
  return { logger: pino({ level: 'debug' }, stream), lines, text }
}

/** The transitions published on the two plain channels for `namespace`, as `subject:state`. */
function recordTransitions(t: ExecutionContext, namespace: string): string[] {
  const seen: string[] = []
  for (const subject of ['breaker', 'bus']) {
    const listener = (message: unknown) => {
      const { namespace: ns, state } = message as TransitionMessage<string>
      if (ns === namespace) seen.push(`${subject}:${state}`)
    }
    dc.subscribe(`tiered-cache:${subject}`, listener)
    t.teardown(() => dc.unsubscribe(`tiered-cache:${subject}`, listener))
  }
  return seen
}

const count = (list: string[], item: string) => list.filter((x) => x === item).length

for (const backend of L2S) {
  test.serial(`${backend}: an L2 outage and its end are logged and published once each, however many calls meet it`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const namespace = uniqueNamespace('outage')
    const transitions = recordTransitions(t, namespace)
    const { logger, lines, text } = pinoLines()
    const url = proxied(proxy, backend)
    const cache = openCache(t, { url, namespace, l2Timeout: 0.5, logger, onError: () => {} })
    const logged = () => lines.map((l) => `${l.subject}:${l.state}`)
    await cache.set('k', 1)
    await waitFor('the bus to subscribe', 10_000, async () => transitions.includes('bus:subscribed'))

    proxy.set('refuse')
    await waitFor('the breaker to open and the bus to be lost', 15_000, async () => {
      for (let i = 0; i < 20; i++) await cache.get(`miss-${i}`)
      await cache.set('k', 2)
      return transitions.includes('breaker:open') && transitions.some((x) => x === 'bus:lost' || x === 'bus:half-open')
    })
    for (let i = 0; i < 200; i++) await cache.get(`during-${i}`)
    proxy.set('pass')
    await waitFor('the breaker to close and the bus to come back', 15_000, async () => {
      await cache.get('k')
      return transitions.includes('breaker:closed') && transitions.includes('bus:reconnected')
    })
    // Whatever came late would show now.
    for (let i = 0; i < 100; i++) await cache.get(`after-${i}`)
    await new Promise((resolve) => setTimeout(resolve, 3000))

    for (const list of [transitions, logged()]) {
      t.is(count(list, 'breaker:open'), 1, list.join())
      t.is(count(list, 'breaker:half-open'), 1, list.join())
      t.is(count(list, 'breaker:closed'), 1, list.join())
      t.is(count(list, 'bus:subscribed'), 1, list.join())
      t.is(count(list, 'bus:lost') + count(list, 'bus:half-open'), 1, list.join())
      t.is(count(list, 'bus:reconnected'), 1, list.join())
    }
    t.deepEqual(logged(), transitions, 'the log and the channels tell the same story, in the same order')
    t.true(lines.every((l) => l.name === 'tiered-cache' && l.namespace === namespace && l.backend === backend))
    t.is(lines.find((l) => l.state === 'open')?.level, 40, 'the outage is a warning')
    t.is(lines.find((l) => l.state === 'closed')?.level, 30)
    const port = String(proxy.port)
    t.false(text.some((line) => line.includes(port) || line.includes('127.0.0.1')), 'no URL in any line')
  })

  test.serial(`${backend}: a half-open bus is logged and published once as half-open, then reconnected`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const namespace = uniqueNamespace('busho')
    const transitions = recordTransitions(t, namespace)
    const { logger, lines } = pinoLines()
    const cache = openCache(t, { url: proxied(proxy, backend), namespace, logger, onError: () => {} })
    await cache.set('k', 1)
    await waitFor('the bus to subscribe', 10_000, async () => transitions.includes('bus:subscribed'))
    proxy.set('blackhole', { scope: 'bus' })
    await waitFor('the half-open bus to be found', 15_000, async () => transitions.includes('bus:half-open'))
    proxy.set('pass')
    await waitFor('the bus to come back', 20_000, async () => transitions.includes('bus:reconnected'))
    await new Promise((resolve) => setTimeout(resolve, 3000))
    t.deepEqual(transitions, ['bus:subscribed', 'bus:half-open', 'bus:reconnected'])
    t.deepEqual(
      lines.map((l) => [l.subject, l.state, l.level]),
      [
        ['bus', 'subscribed', 30],
        ['bus', 'half-open', 40],
        ['bus', 'reconnected', 30],
      ],
    )
  })
}

test('a logger that is not pino-like is refused synchronously, and a throwing one is ignored', async (t) => {
  for (const logger of [null, 'log', { info() {} }, console]) {
    const error = t.throws(() => new (require('../index.js').Cache)({ logger, namespace: uniqueNamespace('lg') })) as Error & {
      code: string
    }
    t.is(error.code, 'ERR_CACHE_INVALID_OPTION', String(logger))
    t.regex(error.message, /logger/)
  }
  const throwing: CacheLogger = {
    child: () => throwing,
    debug: () => {
      throw new Error('no')
    },
    info: () => {
      throw new Error('no')
    },
    warn: () => {
      throw new Error('no')
    },
    error: () => {
      throw new Error('no')
    },
  }
  const cache = openCache(t, { url: BACKENDS[2].url, namespace: uniqueNamespace('lgt'), logger: throwing })
  await cache.set('k', 1)
  t.true(await eventually(async () => (await cache.stats()).busUp, 10_000))
  t.is(await cache.get('k'), 1)
})

test('the transitions of the typings are the core\'s', (t) => {
  const dts = readFileSync(new URL('../diagnostics.d.ts', import.meta.url), 'utf8')
  const union = (name: string) =>
    [...(new RegExp(`export type ${name} = ([^\\n]+)`).exec(dts)?.[1] ?? '').matchAll(/'([a-z-]+)'/g)].map((m) => m[1])
  t.deepEqual(union('BreakerState'), rules().transitions.breaker)
  t.deepEqual(union('BusState'), rules().transitions.bus)
})

/** Prometheus text, parsed: each sample's value by `name{labels}` (labels sorted), plus the TYPE of each metric. */
function parsePrometheus(text: string): { samples: Map<string, number>; types: Map<string, string> } {
  const samples = new Map<string, number>()
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type) types.set(type[1], type[2])
    if (line === '' || line.startsWith('#')) continue
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!sample) throw new Error(`not a sample: ${line}`)
    const labels = [...(sample[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)]
      .map(([, k, v]) => `${k}="${v}"`)
      .sort()
      .join(',')
    samples.set(`${sample[1]}{${labels}}`, Number(sample[3]))
  }
  return { samples, types }
}

async function scrape(registry: Registry) {
  return parsePrometheus(await registry.metrics())
}

for (const backend of BACKENDS) {
  test.serial(`${backend.name}: tiered-cache/prometheus exposes the counters, gauges and histograms of real traffic`, async (t) => {
    const registry = new Registry()
    const namespace = uniqueNamespace('prom')
    const cache = openCache(t, { ...connectionOf(backend), namespace })
    const metrics = registerMetrics(registry, cache)
    t.teardown(() => metrics.close())
    for (let i = 0; i < 5; i++) await cache.set(`k${i}`, { i })
    for (let i = 0; i < 5; i++) await cache.get(`k${i}`)
    for (let i = 0; i < 3; i++) await cache.get(`missing${i}`)
    await cache.getOrSet('loaded', () => new Promise((resolve) => setTimeout(resolve, 20, 'v')))
    await cache.delete('k0')

    const { samples, types } = await scrape(registry)
    const stats = await cache.stats()
    const of = (name: string, labels = '') =>
      samples.get(`${name}{${[`namespace="${namespace}"`, ...labels.split(',').filter(Boolean)].sort().join(',')}}`)
    t.is(of('tiered_cache_hits_total', 'tier="l1"'), 5)
    t.is(of('tiered_cache_hits_total', 'tier="l2"'), 0)
    t.is(of('tiered_cache_misses_total'), stats.misses)
    t.true(stats.misses >= 3)
    t.is(of('tiered_cache_sets_total'), 6)
    t.is(of('tiered_cache_deletes_total'), 1)
    t.is(of('tiered_cache_loader_calls_total'), 1)
    t.is(of('tiered_cache_errors_total'), 0)
    t.is(of('tiered_cache_stale_hits_total'), 0)
    t.is(of('tiered_cache_bus_messages_published_total'), stats.busPublished)
    t.is(of('tiered_cache_l1_entries'), stats.l1Entries)
    t.is(of('tiered_cache_l1_bytes'), stats.l1Bytes)
    t.true(stats.l1Entries >= 5)
    t.is(types.get('tiered_cache_hits_total'), 'counter')
    t.is(types.get('tiered_cache_l1_bytes'), 'gauge')
    t.is(types.get('tiered_cache_loader_duration_seconds'), 'histogram')
    t.is(of('tiered_cache_loader_duration_seconds_count'), 1)
    t.true(of('tiered_cache_loader_duration_seconds_sum')! >= 0.015, 'the loader took its 20 ms')
    if (backend.url === undefined) {
      t.is(of('tiered_cache_l2_up'), undefined, 'memory only: no L2 to be up')
      t.is(of('tiered_cache_l2_duration_seconds_count'), undefined, 'nothing went to an L2')
    } else {
      t.is(of('tiered_cache_l2_up'), 1)
      // 5 sets, 3 L1 misses read from the L2, 1 delete; the 5 L1 hits and the getOrSet are not the L2's time.
      t.is(of('tiered_cache_l2_duration_seconds_count'), 9)
      t.is(of('tiered_cache_l2_duration_seconds_bucket', 'le="+Inf"'), 9)
      t.true(of('tiered_cache_l2_duration_seconds_sum')! > 0)
    }
  })
}

for (const backend of L2S) {
  test.serial(`${backend}: with the breaker open, l2_up is 0, skipped calls are counted and are not L2 latency`, async (t) => {
    const proxy = await proxyFor(t, backend)
    const registry = new Registry()
    const namespace = uniqueNamespace('promdown')
    const transitions = recordTransitions(t, namespace)
    const cache = openCache(t, { url: proxied(proxy, backend), namespace, l2Timeout: 0.5, onError: () => {} })
    const metrics = registerMetrics(registry, { caches: [cache], prefix: 'app_cache_' })
    t.teardown(() => metrics.close())
    await cache.set('k', 1)
    proxy.set('refuse')
    await waitFor('the breaker to open', 15_000, async () => {
      await cache.get('miss')
      return transitions.includes('breaker:open')
    })
    const before = await scrape(registry)
    const of = (s: typeof before, name: string) => s.samples.get(`app_cache_${name}{namespace="${namespace}"}`)
    for (let i = 0; i < 50; i++) await cache.get(`skipped-${i}`)
    const after = await scrape(registry)
    t.is(of(after, 'l2_up'), 0)
    t.is(of(after, 'l2_duration_seconds_count'), of(before, 'l2_duration_seconds_count'), 'skipped calls observe nothing')
    t.true(of(after, 'l2_skipped_total')! - of(before, 'l2_skipped_total')! >= 50)
    t.true(of(after, 'errors_total')! >= 1)
    proxy.set('pass')
    await waitFor('the L2 to be back', 15_000, async () => transitions.includes('breaker:closed'))
    t.is(of(await scrape(registry), 'l2_up'), 1)
    await cache.get('after')
    const back = await scrape(registry)
    t.is(of(back, 'l2_duration_seconds_count'), of(after, 'l2_duration_seconds_count')! + 1, 'observed again')
  })
}

test.serial('registerMetrics refuses what it cannot label, and close() takes its metrics away', async (t) => {
  const registry = new Registry()
  const namespace = uniqueNamespace('promv')
  const a = openCache(t, { namespace })
  const b = openCache(t, { namespace, ttl: 60 })
  const code = (f: () => unknown) => (t.throws(f) as Error & { code: string }).code
  t.is(code(() => registerMetrics({} as Registry, a)), 'ERR_CACHE_INVALID_OPTION')
  t.is(code(() => registerMetrics(registry, { caches: [a], bucket: [1] } as never)), 'ERR_CACHE_INVALID_OPTION')
  t.is(code(() => registerMetrics(registry, { caches: [a], l2Buckets: [] })), 'ERR_CACHE_INVALID_OPTION')
  t.is(code(() => registerMetrics(registry, [a, b])), 'ERR_CACHE_INVALID_OPTION', 'one namespace twice')
  t.is((await registry.metrics()).trim(), '', 'a refused call leaves nothing behind')
  const metrics = registerMetrics(registry, a)
  t.is(code(() => registerMetrics(registry, b)), 'ERR_CACHE_INVALID_OPTION', 'the same metrics twice on one registry')
  t.true((await registry.metrics()).includes(`tiered_cache_sets_total{namespace="${namespace}"} 0`))
  a.close()
  t.false((await registry.metrics()).includes(namespace), 'a closed cache leaves the scrape')
  metrics.close()
  t.is((await registry.metrics()).trim(), '')
})

for (const backend of BACKENDS) {
  test.serial(`${backend.name}: tiered-cache/otel records spans and metrics through the SDK`, async (t) => {
    const contextManager = new AsyncLocalStorageContextManager().enable()
    api.context.setGlobalContextManager(contextManager)
    t.teardown(() => {
      api.context.disable()
    })
    const spans = new InMemorySpanExporter()
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 })
    const meterProvider = new MeterProvider({ readers: [reader] })
    const otel = instrument({ tracerProvider, meterProvider })
    t.teardown(async () => {
      otel.close()
      await meterProvider.shutdown()
    })
    const namespace = uniqueNamespace('otel')
    const cache = openCache(t, { ...connectionOf(backend), namespace })
    const tracer = tracerProvider.getTracer('test')
    await tracer.startActiveSpan('request', async (request) => {
      await cache.set('k', 1)
      await cache.get('k')
      await cache.getOrSet('loaded', async () => 2)
      t.throws(() => cache.get(1 as unknown as string))
      request.end()
    })
    await reader.forceFlush()

    const finished = spans.getFinishedSpans()
    const request = finished.find((s) => s.name === 'request')!
    const mine = finished.filter((s) => s.attributes['cache.namespace'] === namespace)
    t.deepEqual(
      mine.map((s) => s.name),
      [`set ${namespace}`, `get ${namespace}`, `load ${namespace}`, `getOrSet ${namespace}`, `get ${namespace}`],
    )
    const parentOf = (s: (typeof finished)[number]) => s.parentSpanContext?.spanId
    t.true(mine.every((s) => parentOf(s) === request.spanContext().spanId), 'children of the span active at the call')
    const get = mine[1]
    t.like(get.attributes, { 'cache.operation': 'get', 'cache.hit': true, 'cache.tier': 'l1', 'cache.stale': false })
    t.is(get.attributes['cache.key'], undefined, 'keys are not recorded by default')
    const system = { memory: undefined, postgres: 'postgresql', pgbouncer: 'postgresql', redis: 'redis', cluster: 'redis' }[backend.name]
    t.true(mine.filter((s) => s.name !== `load ${namespace}`).every((s) => s.attributes['db.system.name'] === system))
    t.like(mine[3].attributes, { 'cache.hit': false, 'cache.tier': 'loader' })
    const failed = mine[4]
    t.is(failed.status.code, api.SpanStatusCode.ERROR)
    t.is(failed.attributes['error.type'], 'ERR_CACHE_INVALID_KEY')
    t.is(failed.events[0]?.name, 'exception')

    const points = new Map<string, number>()
    for (const resource of exporter.getMetrics()) {
      for (const scope of resource.scopeMetrics) {
        for (const metric of scope.metrics) {
          t.is(metric.descriptor.unit, 's')
          for (const point of metric.dataPoints) {
            if (point.attributes['cache.namespace'] !== namespace) continue
            const value = point.value as { count: number }
            points.set(metric.descriptor.name, (points.get(metric.descriptor.name) ?? 0) + value.count)
          }
        }
      }
    }
    t.is(points.get('cache.operation.duration'), 4)
    t.is(points.get('cache.loader.duration'), 1)
  })
}

test.serial('otel: keys are recorded when asked, and close() stops recording', async (t) => {
  const spans = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
  const otel = instrument({ tracerProvider, recordKeys: true })
  const namespace = uniqueNamespace('otelk')
  const cache = openCache(t, { namespace })
  await cache.set('user:1', 1)
  otel.close()
  await cache.get('user:1')
  const mine = spans.getFinishedSpans().filter((s) => s.attributes['cache.namespace'] === namespace)
  t.deepEqual(
    mine.map((s) => [s.name, s.attributes['cache.key']]),
    [[`set ${namespace}`, 'user:1']],
  )
  t.is((t.throws(() => instrument({ recordKey: true } as never)) as Error & { code: string }).code, 'ERR_CACHE_INVALID_OPTION')
})
