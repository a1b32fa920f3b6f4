// `npm run bench`: every section in its own process, one after the other, then the JSON, BENCHMARKS.md and the chart.
// `--quick` (what `npm test` runs): tiny counts and one repetition, written to a temporary folder, so the bench is
// proven to run without its numbers meaning anything. `--only=l1,l2` runs some sections (for development).
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const quick = process.argv.includes('--quick')
if (quick) process.env.BENCH_QUICK = '1'
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',')

const { BENCH_DIR, REPO_DIR, N } = await import('./lib/common.mjs')
const { cleanup } = await import('./lib/servers.mjs')
const { report } = await import('./lib/report.mjs')

const SECTIONS = ['l1', 'l2', 'writes', 'stampede', 'invalidate', 'memory', 'eventloop', 'workers', 'l2down', 'tags', 'diagnostics', 'batch', 'l1sizing']

async function runSection(name) {
  const child = fork(path.join(BENCH_DIR, 'section.mjs'), [name], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let result
  child.on('message', (m) => (result = m.result))
  const [code, signal] = await once(child, 'exit')
  if (code !== 0 || result === undefined) throw new Error(`section ${name} failed (exit ${code ?? signal})`)
  return result
}

const started = new Date()
const results = {}
await cleanup()
try {
  for (const name of SECTIONS.filter((s) => !only || only.includes(s))) {
    const t0 = performance.now()
    process.stderr.write(`bench: ${name}...`)
    results[name] = await runSection(name)
    process.stderr.write(` ${((performance.now() - t0) / 1000).toFixed(1)} s\n`)
  }
} finally {
  await cleanup()
}

const outDir = quick ? path.join(os.tmpdir(), 'tiered-cache-bench-quick') : path.join(BENCH_DIR, 'results')
const mdPath = quick ? path.join(outDir, 'BENCHMARKS.md') : path.join(REPO_DIR, 'BENCHMARKS.md')
mkdirSync(outDir, { recursive: true })
const stamp = started.toISOString().slice(0, 19).replace(/:/g, '-')
const { json, markdown, svg } = await report({ results, started, quick, counts: N, chartFile: `${stamp}.svg` })
writeFileSync(path.join(outDir, `${stamp}.json`), JSON.stringify(json, null, 2) + '\n')
writeFileSync(path.join(outDir, `${stamp}.svg`), svg)
writeFileSync(mdPath, markdown)
process.stderr.write(`bench: wrote ${path.join(outDir, stamp)}.{json,svg} and ${mdPath}\n`)
const missed = json.targets.filter((t) => t.met === false).length
process.stderr.write(`bench: ${json.targets.length - missed} targets met, ${missed} missed${quick ? ' (quick mode: figures are meaningless)' : ''}\n`)
