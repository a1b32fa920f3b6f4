// 6. Memory per L1 entry at many entries of the 1 KB value. Each measurement runs in a fresh child process with
// --expose-gc, so that nothing else lives in the heap and the baseline is taken right before the fill.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { N, alternate, summarize } from '../lib/common.mjs'

const run1 = promisify(execFile)
const child = fileURLToPath(new URL('./memory-child.mjs', import.meta.url))

export async function run() {
  const names = ['tiered-cache', 'lru-cache (parsed objects)']
  const perRep = await alternate(names, N.reps, async (name) => {
    const { stdout } = await run1(process.execPath, ['--expose-gc', child, name, String(N.memoryEntries)], { env: process.env })
    return JSON.parse(stdout)
  })
  return { entries: N.memoryEntries, ...Object.fromEntries(names.map((c) => [c, summarize(perRep[c])])) }
}
