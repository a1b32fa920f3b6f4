// Turns the sections' results into comparisons with their peers, the issue's targets, BENCHMARKS.md and the chart.
import { readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import os from 'node:os'
import path from 'node:path'
import * as vega from 'vega'
import { compile } from 'vega-lite'
import { BENCH_DIR, REPO_DIR } from './common.mjs'
import { redisClient, pgPool } from './servers.mjs'
import { ANALYSIS } from '../analysis.mjs'

const PEERS = ['mitata', 'lru-cache', 'bentocache', 'cache-manager', 'keyv', 'ioredis', 'pg', 'vega', 'vega-lite']

const med = (section, contender, metric) => section?.[contender]?.[metric]?.median
const maxRep = (section, contender, metric) => Math.max(...(section?.[contender]?.[metric]?.reps ?? [NaN]))

/**
 * Each comparison: tiered-cache's figure, its peer's, `ratio` = tiered / peer in the metric's own unit, and
 * `advantage` = how many times better tiered-cache is (above 1 it wins, below 1 it loses), whichever way the metric
 * points.
 */
function comparisons(r) {
  const out = []
  const add = (group, label, unit, lowerIsBetter, tiered, peer, peerName, inChart = true) => {
    if (!Number.isFinite(tiered) || !Number.isFinite(peer)) return
    const ratio = tiered / peer
    out.push({ group, label, peer: peerName, unit, lowerIsBetter, tiered, peerValue: peer, ratio, advantage: lowerIsBetter ? 1 / ratio : ratio, inChart })
  }
  for (const size of ['1KB', '100B']) {
    const s = r.l1?.[size]
    for (const peer of ['bentocache (serialize: true)', 'bentocache (serialize: false)', 'cache-manager 7', 'lru-cache (objects)', 'lru-cache (JSON text)']) {
      add('L1 hit', `L1 hit ${size} vs ${peer}`, 'ns/op', true, med(s, 'tiered-cache', 'nsPerOp'), med(s, peer, 'nsPerOp'), peer, size === '1KB')
    }
    for (const peer of ['bentocache (serialize: true)', 'cache-manager 7', 'lru-cache (objects)']) {
      add('L1 hit', `L1 hit ${size} immutable vs ${peer}`, 'ns/op', true, med(s, 'tiered-cache (immutable)', 'nsPerOp'), med(s, peer, 'nsPerOp'), peer, size === '1KB' && peer === 'cache-manager 7')
    }
  }
  for (const [tc, peer, short] of [['tiered-cache (Redis)', 'ioredis GET + JSON.parse', 'Redis'], ['tiered-cache (Postgres)', 'pg prepared SELECT', 'Postgres']]) {
    add('L2 hit', `L2 hit ${short} p50`, 'µs', true, med(r.l2, tc, 'p50Us'), med(r.l2, peer, 'p50Us'), peer)
    add('L2 hit', `L2 hit ${short} p99`, 'µs', true, med(r.l2, tc, 'p99Us'), med(r.l2, peer, 'p99Us'), peer, false)
    add('L2 hit', `L2 hit ${short} ops/s at 64 in flight`, 'ops/s', false, med(r.l2, tc, 'opsPerSec'), med(r.l2, peer, 'opsPerSec'), peer)
  }
  for (const [tc, peer, short] of [['tiered-cache (Redis)', 'ioredis SET PX', 'Redis'], ['tiered-cache (Postgres)', 'TS upsert (pg)', 'Postgres']]) {
    add('Writes', `set ${short} p50`, 'µs', true, med(r.writes, tc, 'p50Us'), med(r.writes, peer, 'p50Us'), peer)
    add('Writes', `set ${short} ops/s at 64 in flight`, 'ops/s', false, med(r.writes, tc, 'opsPerSec'), med(r.writes, peer, 'opsPerSec'), peer)
  }
  const st = r.stampede?.inProcess
  for (const peer of ['bentocache getOrSet (L1 + Redis)', 'cache-manager 7 wrap']) {
    add('Stampede', `stampede wall time (Redis L2) vs ${peer.split(' ')[0]}`, 'ms', true, med(st, 'tiered-cache (Redis)', 'wallMs'), med(st, peer, 'wallMs'), peer)
    add('Stampede', `stampede wall time (Postgres L2) vs ${peer.split(' ')[0]}`, 'ms', true, med(st, 'tiered-cache (Postgres)', 'wallMs'), med(st, peer, 'wallMs'), peer, false)
  }
  add('invalidatePattern', 'invalidatePattern Redis wall time', 'ms', true, med(r.invalidate, 'tiered-cache (Redis)', 'wallMs'), med(r.invalidate, 'ioredis SCAN + UNLINK', 'wallMs'), 'ioredis SCAN + UNLINK')
  add('invalidatePattern', 'invalidatePattern Redis longest command', 'ms', true, med(r.invalidate, 'tiered-cache (Redis)', 'maxCommandMs'), med(r.invalidate, 'ioredis SCAN + UNLINK', 'maxCommandMs'), 'ioredis SCAN + UNLINK', false)
  add('invalidatePattern', 'invalidatePattern Postgres wall time', 'ms', true, med(r.invalidate, 'tiered-cache (Postgres)', 'wallMs'), med(r.invalidate, 'pg DELETE ... LIKE', 'wallMs'), 'pg DELETE ... LIKE')
  add('Memory', 'memory per 1 KB entry: tiered RSS vs lru-cache heap', 'B', true, med(r.memory, 'tiered-cache', 'rssBytesPerEntry'), med(r.memory, 'lru-cache (parsed objects)', 'heapBytesPerEntry'), 'lru-cache (parsed objects)')
  add('Memory', 'memory per 1 KB entry: RSS vs RSS', 'B', true, med(r.memory, 'tiered-cache', 'rssBytesPerEntry'), med(r.memory, 'lru-cache (parsed objects)', 'rssBytesPerEntry'), 'lru-cache (parsed objects)', false)
  add('Event loop', 'event-loop p99 delay, mixed writes', 'ms', true, med(r.eventloop, 'tiered-cache (L1 + Redis)', 'p99DelayMs'), med(r.eventloop, 'bentocache (L1 + Redis + bus)', 'p99DelayMs'), 'bentocache (L1 + Redis + bus)')
  add('Event loop', 'mixed-load ops/s', 'ops/s', false, med(r.eventloop, 'tiered-cache (L1 + Redis)', 'opsPerSec'), med(r.eventloop, 'bentocache (L1 + Redis + bus)', 'opsPerSec'), 'bentocache (L1 + Redis + bus)', false)
  for (const n of ['1 worker', '2 workers']) {
    add('Worker threads', `L1 hit ops/s, ${n}`, 'ops/s', false, med(r.workers, `tiered-cache, ${n}`, 'opsPerSec'), med(r.workers, `lru-cache (objects), ${n}`, 'opsPerSec'), `lru-cache (objects), ${n}`, n === '2 workers')
  }
  add('Worker threads', 'L1 hit scaling, 2 workers / 1 worker', 'x', false, med(r.workers, 'tiered-cache, 2 workers', 'opsPerSec') / med(r.workers, 'tiered-cache, 1 worker', 'opsPerSec'), med(r.workers, 'lru-cache (objects), 2 workers', 'opsPerSec') / med(r.workers, 'lru-cache (objects), 1 worker', 'opsPerSec'), 'lru-cache scaling', false)
  const batch = r.batch
  for (const short of ['Redis', 'Postgres']) {
    const rawRead = short === 'Redis' ? 'ioredis MGET + JSON.parse' : 'pg SELECT = ANY($1)'
    const rawWrite = short === 'Redis' ? 'ioredis pipeline of 100 SET PX' : 'pg upsert over unnest'
    for (const peer of [`tiered-cache 100 gets (${short})`, rawRead]) {
      add('Batch', `getMany of 100 keys, ${short}, p50 vs ${peer}`, 'µs', true, med(batch?.reads, `tiered-cache getMany (${short})`, 'p50Us'), med(batch?.reads, peer, 'p50Us'), peer, peer === rawRead)
    }
    for (const peer of [`tiered-cache 100 sets (${short})`, rawWrite]) {
      add('Batch', `setMany of 100 keys, ${short}, p50 vs ${peer}`, 'µs', true, med(batch?.writes, `tiered-cache setMany (${short})`, 'p50Us'), med(batch?.writes, peer, 'p50Us'), peer, false)
    }
  }
  return out
}

/** The targets table of the issue, each judged on this run's figures. */
function targets(r, cmp) {
  const c = (label) => cmp.find((x) => x.label === label)
  const t = []
  const add = (id, what, target, figure, met) => t.push({ id, what, target, figure, met: Number.isNaN(met) || met === undefined ? null : met, ...(met === false ? ANALYSIS[id] ?? {} : {}) })
  const x = (v) => (v === undefined || Number.isNaN(v) ? 'n/a' : `${v.toFixed(2)}x`)
  let k = c('L1 hit 1KB vs bentocache (serialize: true)')
  add('l1-bento', 'L1 hit, 1 KB', 'at least 2x faster than bentocache\'s default memory tier', `${x(k?.advantage)} faster`, k && k.advantage >= 2)
  k = c('L1 hit 1KB immutable vs cache-manager 7')
  add('l1-cm', 'L1 hit, 1 KB, stretch', 'within 1.2x of cache-manager\'s default get', `${x(k?.ratio)} its time (with \`immutable: true\`; ${x(c('L1 hit 1KB vs cache-manager 7')?.ratio)} without)`, k && k.ratio <= 1.2)
  for (const s of ['Redis', 'Postgres']) {
    k = c(`L2 hit ${s} p50`)
    add(`l2-p50-${s.toLowerCase()}`, `L2 hit p50, ${s}`, 'at most 1.0x the raw client\'s', `${x(k?.ratio)}`, k && k.ratio <= 1)
  }
  for (const s of ['Redis', 'Postgres']) {
    k = c(`L2 hit ${s} ops/s at 64 in flight`)
    add(`l2-thr-${s.toLowerCase()}`, `L2 throughput at 64 in flight, ${s}`, 'at least 1.0x the raw client\'s', `${x(k?.ratio)}`, k && k.ratio >= 1)
  }
  k = c('set Postgres p50')
  add('set-pg', 'Postgres set p50', 'at most 1.0x the TypeScript upsert', `${x(k?.ratio)}`, k && k.ratio <= 1)
  const st = r.stampede
  if (st) {
    const calls = [
      maxRep(st.inProcess, 'tiered-cache (Redis)', 'loaderCalls'),
      maxRep(st.inProcess, 'tiered-cache (Postgres)', 'loaderCalls'),
      ...Object.keys(st.acrossProcesses).map((name) => maxRep(st.acrossProcesses, name, 'loaderCalls')),
    ]
    add('stampede', 'stampede', 'exactly 1 loader call, in one process and across 4', `${calls.join(', ')} (Redis, Postgres in one process; Redis, Postgres across 4; most in any repetition)`, calls.every((n) => n === 1))
  }
  if (r.invalidate) {
    const worst = maxRep(r.invalidate, 'tiered-cache (Redis)', 'maxCommandMs')
    add('inv-redis', 'Redis command during invalidatePattern', 'under 10 ms each', `${worst.toFixed(2)} ms longest (${r.invalidate['tiered-cache (Redis)'].longestCommand.median})`, worst < 10)
  }
  const down = r.l2down
  if (down) {
    const memory = down['tiered-cache, memory only']
    const extra = Object.entries(down)
      .filter(([name]) => name.startsWith('tiered-cache, ') && name !== 'tiered-cache, memory only')
      .flatMap(([name, m]) => ['getP50Us', 'getOrSetP50Us'].map((k) => ({ name, k, us: m[k].median - memory[k].median })))
    const worst = extra.reduce((a, b) => (b.us > a.us ? b : a), { us: -Infinity })
    add('l2-down', 'a call once the L2 failed (refused or black-holed)', 'under 1 ms more than memory only', `${worst.us.toFixed(1)} µs more at worst (${worst.name}, ${worst.k === 'getP50Us' ? 'get' : 'getOrSet'} p50)`, worst.us < 1000)
  }
  const tags = r.tags
  if (tags) {
    const ratios = ['Redis', 'Postgres'].map((l2) => {
      const many = tags[`tiered-cache invalidateTags (${l2})`].wallMs.median
      const one = tags[`tiered-cache invalidateTags (${l2}), 1 entry`].wallMs.median
      return { l2, many, one, ratio: many / one }
    })
    const worst = ratios.reduce((a, b) => (b.ratio > a.ratio ? b : a))
    add('tags', `invalidateTags of a tag on ${tags['tiered-cache invalidateTags (Redis)'].entries.median} entries`, 'within 2x of a tag on 1 entry', ratios.map((q) => `${q.l2} ${q.many.toFixed(2)} ms vs ${q.one.toFixed(2)} ms (${x(q.ratio)})`).join('; '), worst.ratio <= 2)
  }
  k = c('memory per 1 KB entry: tiered RSS vs lru-cache heap')
  add('memory', 'memory per 1 KB entry', 'at most lru-cache\'s heap bytes per parsed entry', k ? `${Math.round(k.tiered)} B RSS vs ${Math.round(k.peerValue)} B heap (${x(k.ratio)})` : 'n/a', k && k.ratio <= 1)
  return t
}

function fmt(v, unit) {
  if (v === undefined || Number.isNaN(v)) return 'n/a'
  if (unit === 'ops/s') return v >= 1e6 ? `${(v / 1e6).toFixed(2)} M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} k` : v.toFixed(0)
  if (Math.abs(v) >= 100) return v.toFixed(0)
  if (Math.abs(v) >= 10) return v.toFixed(1)
  return v.toFixed(2)
}

function table(header, rows) {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

const verdict = (a) => (a >= 1 ? `${a.toFixed(2)}x better` : `${(1 / a).toFixed(2)}x worse`)

async function environment() {
  const version = (name) => JSON.parse(readFileSync(path.join(BENCH_DIR, 'node_modules', name, 'package.json'), 'utf8')).version
  const redis = redisClient()
  const pool = pgPool(1)
  try {
    const info = await redis.info('server')
    const { rows } = await pool.query('SHOW server_version')
    let commit = 'uncommitted'
    try {
      commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_DIR, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()
    } catch {}
    return {
      machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), os: `${os.type()} ${os.release()}`, arch: os.arch() },
      versions: {
        node: process.version,
        'tiered-cache': `${JSON.parse(readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')).version} (${commit})`,
        redis: /redis_version:(\S+)/.exec(info)?.[1],
        postgres: rows[0].server_version,
        ...Object.fromEntries(PEERS.map((p) => [p, version(p)])),
      },
    }
  } finally {
    redis.disconnect()
    await pool.end()
  }
}

async function chart(cmp) {
  const data = cmp.filter((c) => c.inChart && Number.isFinite(c.advantage)).map((c) => ({ what: c.label, advantage: c.advantage, result: c.advantage >= 1 ? 'tiered-cache better' : 'tiered-cache worse' }))
  const spec = compile({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'tiered-cache against its peers', subtitle: 'how many times better (log scale; right of 1 = tiered-cache wins)' },
    width: 520,
    data: { values: data },
    layer: [
      {
        mark: 'bar',
        encoding: {
          y: { field: 'what', type: 'nominal', sort: null, title: null, axis: { labelLimit: 360 } },
          // Bars grow from 1 (a tie) towards the winner's side; a log bar from 0 would be undefined.
          x: { field: 'advantage', type: 'quantitative', scale: { type: 'log' }, title: 'advantage (x)' },
          x2: { datum: 1 },
          color: { field: 'result', type: 'nominal', scale: { domain: ['tiered-cache better', 'tiered-cache worse'], range: ['#2b8a3e', '#c92a2a'] }, title: null },
        },
      },
      { mark: { type: 'rule', color: 'black' }, encoding: { x: { datum: 1 } } },
      {
        mark: { type: 'text', align: 'left', dx: 3 },
        encoding: { y: { field: 'what', type: 'nominal', sort: null }, x: { datum: 1 }, text: { field: 'advantage', type: 'quantitative', format: '.2f' } },
      },
    ],
    config: { legend: { orient: 'bottom' } },
  }).spec
  const view = new vega.View(vega.parse(spec), { renderer: 'none' })
  return view.toSVG()
}

export async function report({ results, started, quick, counts, chartFile }) {
  const env = await environment()
  const cmp = comparisons(results)
  const tgt = targets(results, cmp)
  const json = { date: started.toISOString(), quick, command: quick ? 'npm run bench:quick' : 'npm run bench', counts, ...env, targets: tgt, comparisons: cmp, results }

  const md = []
  md.push('# Benchmarks', '')
  md.push(`Generated by \`${json.command}\` on ${json.date}${quick ? ' in quick mode (tiny counts: the figures mean nothing)' : ''}. Raw figures: \`bench/results/${chartFile.replace('.svg', '.json')}\`.`, '')
  md.push(`Machine: ${env.machine.cpu}, ${env.machine.cores} cores, ${env.machine.memoryGiB} GiB, ${env.machine.os} (${env.machine.arch}). The local Redis and Postgres run on the same cores as the bench.`, '')
  md.push(`Versions: ${Object.entries(env.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`, '')
  md.push(`Method: each section runs in its own process; within it every contender is measured ${counts.reps} times, the contenders alternating in a rotating order, and each figure is the median of those repetitions. In-process loops use mitata. Values: a ${'~1 KB'} tenant object and a ~100 B object, ${counts.keys} keys visited in one shuffled order. Each ratio is tiered-cache's figure over its peer's; "better/worse" reads it in the direction of the metric.`, '')
  md.push(`![main ratios](bench/results/${chartFile})`, '')
  md.push('## Targets', '')
  md.push(table(['what', 'target', 'this run', 'met', 'why missed (profiled)', 'what would close it'], tgt.map((t) => [t.what, t.target, t.figure, t.met === null ? 'n/a' : t.met ? 'met' : '**missed**', t.met === false ? t.reason ?? 'not yet profiled' : '', t.met === false ? t.toClose ?? '' : ''])), '')

  md.push('## All comparisons', '')
  md.push(table(['what', 'unit', 'tiered-cache', 'peer', 'peer figure', 'ratio', 'tiered-cache is'], cmp.map((c) => [c.label, c.unit, fmt(c.tiered, c.unit), c.peer, fmt(c.peerValue, c.unit), c.ratio.toFixed(2), verdict(c.advantage)])), '')

  const section = (title, data, metrics, note) => {
    if (!data) return
    md.push(`### ${title}`, '')
    if (note) md.push(note, '')
    md.push(table(['contender', ...metrics.map(([, h]) => h)], Object.entries(data).filter(([, m]) => typeof m === 'object').map(([name, m]) => [name, ...metrics.map(([k, , u]) => fmt(m[k]?.median, u))])), '')
  }
  md.push('## Figures by section', '')
  for (const size of ['1KB', '100B']) section(`1. L1 hit, ${size} value`, results.l1?.[size], [['nsPerOp', 'ns/op'], ['opsPerSec', 'ops/s', 'ops/s']], size === '1KB' ? '`await cache.get(k)` over keys already in memory. lru-cache is called synchronously, as its users do; the others are awaited.' : undefined)
  section('2. L2 hit (L1 off)', results.l2, [['p50Us', 'p50 µs'], ['p99Us', 'p99 µs'], ['opsPerSec', `ops/s, ${counts.inflight} in flight`, 'ops/s']], 'ioredis on one connection, pg.Pool of 10, tiered-cache with its defaults (L1 off).')
  section('3. Writes', results.writes, [['p50Us', 'p50 µs'], ['p99Us', 'p99 µs'], ['opsPerSec', `ops/s, ${counts.inflight} in flight`, 'ops/s']], 'tiered-cache with its defaults (L1 on, invalidation bus on): a set also fills the L1 and publishes on the bus.')
  section(`4. Stampede, ${counts.stampedeCalls} concurrent getOrSet, ${counts.loaderMs} ms loader, one process`, results.stampede?.inProcess, [['loaderCalls', 'loader calls'], ['wallMs', 'wall ms']], 'Loader calls are counted in Redis (INCR in the loader), not in the process.')
  section(`4b. Stampede across ${counts.stampedeProcs} processes`, results.stampede?.acrossProcesses, [['loaderCalls', 'loader calls'], ['wallMs', 'wall ms']], `${counts.stampedeCalls} calls split over ${counts.stampedeProcs} processes on one L2. tiered-cache only: bentocache and cache-manager have no lock across processes, so each process would run its own loader.`)
  section(`5. invalidatePattern over ${counts.invalidateKeys} keys`, results.invalidate, [['wallMs', 'wall ms'], ['maxCommandMs', 'longest Redis command ms'], ['commands', 'Redis commands']], 'Every key matches. The longest command is the longest SLOWLOG entry naming the bench\'s keys, with slowlog-log-slower-than at 0 for the run (restored after).')
  section(`6. Memory, ${results.memory?.entries} entries of the 1 KB value`, results.memory, [['rssBytesPerEntry', 'RSS B/entry'], ['heapBytesPerEntry', 'heap B/entry'], ['externalBytesPerEntry', 'external B/entry']], 'Each measurement in a fresh process with --expose-gc; the store is created before the baseline. tiered-cache keeps entries in native memory (RSS), lru-cache in the V8 heap.')
  section('7. Event loop under a write-heavy mixed load (7 writes in 10)', results.eventloop, [['p99DelayMs', 'p99 delay ms'], ['maxDelayMs', 'max delay ms'], ['opsPerSec', 'ops/s', 'ops/s']], `${counts.inflight} requests in flight for ${counts.eventLoopMs} ms, perf_hooks.monitorEventLoopDelay.`)
  section('8. Worker threads, L1 hit', results.workers, [['opsPerSec', 'ops/s (all workers)', 'ops/s']], 'The main thread fills one tiered-cache L1; the workers read it. lru-cache: each worker fills its own copy (a JS cache cannot be shared).')
  section('9. L2 down: the cost of a call once the L2 failed', results.l2down, [['getP50Us', 'get p50 µs'], ['getP99Us', 'get p99 µs'], ['getOrSetP50Us', 'getOrSet p50 µs'], ['getOrSetP99Us', 'getOrSet p99 µs'], ['cappedCalls', 'calls cut at 1 s']], 'Refused: nothing listens on the port. Black-holed: a server accepts and never answers. Each contender with its defaults; the first failing call is made and left out, then every call of a key that is in no tier is timed. A call still waiting after 1 s is cut and counted at 1 s.')
  section(`10. Tags: invalidateTags of a tag on ${counts.invalidateKeys} entries, and what tags cost a hit`, results.tags, [['wallMs', 'wall ms'], ['maxCommandMs', 'longest Redis command ms'], ['opsPerSec', 'hits/s, sequential', 'ops/s']], 'invalidateTags writes one record per tag (entries are judged against it when read), so its cost does not depend on how many entries carry the tag; the "1 entry" rows are the same call for a tag one entry carries. bentocache also invalidates by tag timestamps. invalidatePattern of the same entries ran once (it deletes them), after the tag repetitions; section 5 repeats it over as many keys. Hits: the same ~100 B value with no tag and with three, in a namespace that holds an invalidation record of another tag.')
  for (const size of ['1KB', '100B']) section(`11. The diagnostics channel on an L1 hit, ${size} value`, results.diagnostics?.[size], [['nsPerOp', 'ns/op'], ['p50Ns', 'p50 ns'], ['opsPerSec', 'ops/s', 'ops/s']], size === '1KB' ? '`await cache.get(k)` over keys already in the L1: with nobody subscribed to `tiered-cache:operation` (each call checks `hasSubscribers` and allocates nothing more), with one no-op `asyncEnd` subscriber (the floor of what an APM or `tiered-cache/prometheus`/`otel` costs), and the binding\'s synchronous L1 read that `get` wraps, parsed and resolved alike.' : undefined)
  const batchNote = (what) =>
    `${results.batch?.batch ?? 100} keys of the 1 KB tenant row per call, one call at a time, L1 off so every key reaches the L2; tiered-cache with its defaults otherwise. ${what}`
  section('12. Batch read of 100 keys (L1 off)', results.batch?.reads, [['p50Us', 'p50 µs per batch'], ['p99Us', 'p99 µs per batch']], batchNote('"100 gets" is `Promise.all` of 100 `get` calls; the raw reads decode each value with JSON.parse (pg decodes jsonb itself).'))
  section('12b. Batch write of 100 keys', results.batch?.writes, [['p50Us', 'p50 µs per batch'], ['p99Us', 'p99 µs per batch']], batchNote('tiered-cache also publishes one bus message per batch (per set for "100 sets"); the raw writes publish nothing.'))
  const sizing = results.l1sizing
  section(`13. L1 sizing: ${sizing?.entries} entries of about 170 B (${sizing?.setMiB?.toFixed(1)} MiB) through a Redis L2`, sizing, [['l1HitPercent', 'L1 hit %'], ['opsPerSec', `reads/s, ${counts.inflight} in flight`, 'ops/s'], ['l1Entries', 'L1 entries'], ['l1MiB', 'L1 MiB of keys and values']], 'Uniform random reads over the whole set, the L1 warmed by as many reads first. The old default bound on entries (10,000, scaled with the set in quick mode) against the default now (only `l1.maxBytes` binds, which counts 700 B of bookkeeping per entry), and an L1 whose `maxBytes` holds 1/1.2 of the set: a perfect policy would keep 83 % of reads in the L1.')
  md.push('## Closing note', '')
  md.push(ANALYSIS.closing ?? '', '')
  return { json, markdown: md.join('\n'), svg: await chart(cmp) }
}
