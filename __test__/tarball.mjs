#!/usr/bin/env node
// The packed-tarball test (`npm run test:package`): the package as npm would publish it, installed into a fresh
// TypeScript project in a temporary folder, type-checked and tested there with vitest against the real servers.
//
// 1. `npm pack` the root package and check its file list: nothing of the repository's own. `files` has `*.node` so
//    that a pack from a development checkout carries the binary built here (examples/next-app installs it so).
// 2. Stage the release as the workflow's publish job has it: a root without binaries (they are in npm/<target>),
//    whose `optionalDependencies` `napi pre-publish` sets on every per-platform package at its version; the one built
//    here carries the `.node`. The release tarball must hold exactly what a user needs.
// 3. Copy __test__/package/ (a user's project: "type": "module", its own lock file) to a temporary folder, `npm ci`
//    it, then install the root tarball on top. `overrides` point each per-platform package at its local tarball, so
//    npm never asks the registry for one, and picks among them by their os/cpu/libc as it would from the registry.
// 4. Check npm installed this platform's package only, and that the binding loads from it.
// 5. `tsc --noEmit` under `moduleResolution: "bundler"` and `"node16"`, arethetypeswrong on the tarball (each entry
//    under node10, node16 from CJS and from ESM, and bundler), then `vitest run`.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIXTURE = path.join(ROOT, '__test__/package')
const PKG = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
// npm's own CLI through node (as `npm run` tells it), so that no shell is needed on Windows either.
const NPM = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm']

/** Exactly what the released root package holds (npm adds package.json and README.md to `files`; its `*.node`
 * matches nothing in the publish job's checkout, where the binaries are in npm/<target>). */
const ROOT_FILES = [...PKG.files.filter((file) => file !== '*.node'), 'package.json', 'README.md'].sort()
/** What must never be in it, whatever `files` says. */
const FORBIDDEN = [/^__test__\//, /^bench\//, /^examples\//, /^target\//, /^crates\//, /^src\//, /\.rs$/, /\.node$/, /^npm\//, /^\.ci\//, /^\.github\//, /^demo\//, /Cargo\./]

let failures = 0
function check(ok, what) {
  console.log(`${ok ? 'ok' : 'FAILED'}: ${what}`)
  if (!ok) failures += 1
}

function run(cwd, [command, ...first], args, env = {}) {
  console.log(`$ (${path.relative(work, cwd) || '.'}) ${path.basename(command)} ${[...first.map((arg) => path.basename(arg)), ...args].join(' ')}`)
  return execFileSync(command, [...first, ...args], { cwd, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
}

/** A tool the project installed, run by node from its package's `bin` (no .bin shims, which differ on Windows). */
function tool(project, name, bin = name) {
  const dir = path.join(project, 'node_modules', name)
  const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'))
  return [process.execPath, path.join(dir, typeof manifest.bin === 'string' ? manifest.bin : manifest.bin[bin])]
}

/** `npm pack` of `dir` into `into`; resolves the tarball's path and the files it holds. */
function pack(dir, into) {
  const [report] = JSON.parse(run(dir, NPM, ['pack', '--json', '--ignore-scripts', '--pack-destination', into]))
  return { tarball: path.join(into, report.filename), files: report.files.map((file) => file.path).sort() }
}

const started = Date.now()
const work = mkdtempSync(path.join(tmpdir(), 'tiered-cache-tarball-'))
try {
  // 1. The root package's contents.
  const tarballs = path.join(work, 'tarballs')
  mkdirSync(tarballs)
  const packed = pack(ROOT, path.join(work))
  const localBinaries = packed.files.filter((file) => file.endsWith('.node'))
  const localStray = packed.files.filter((file) => !file.endsWith('.node') && FORBIDDEN.some((pattern) => pattern.test(file)))
  check(localStray.length === 0, `a development pack has no tests, bench, examples, target/, crates/ or Rust sources${localStray.length ? `: ${localStray.join(', ')}` : ''}; its binaries: ${localBinaries.join(', ') || 'none'}`)

  // 2. The release as the publish job stages it.
  const stage = path.join(work, 'stage')
  for (const file of packed.files.filter((file) => !file.endsWith('.node'))) cpSync(path.join(ROOT, file), path.join(stage, 'root', file))
  const platformPackages = readdirSync(path.join(ROOT, 'npm')).sort()
  const optionalDependencies = {}
  const overrides = {}
  let built = []
  for (const target of platformPackages) {
    const dir = path.join(stage, 'npm', target)
    cpSync(path.join(ROOT, 'npm', target), dir, { recursive: true })
    const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'))
    const binary = path.join(ROOT, manifest.main)
    if (existsSync(binary)) {
      cpSync(binary, path.join(dir, manifest.main))
      built.push(manifest.name)
    }
    optionalDependencies[manifest.name] = manifest.version
    overrides[manifest.name] = `file:${pack(dir, tarballs).tarball}`
  }
  check(built.length === 1, `one per-platform package carries a binary built here: ${built.join(', ')}`)
  const rootManifest = JSON.parse(readFileSync(path.join(stage, 'root/package.json'), 'utf8'))
  writeFileSync(path.join(stage, 'root/package.json'), JSON.stringify({ ...rootManifest, optionalDependencies }, null, 2))
  const release = pack(path.join(stage, 'root'), tarballs)
  check(JSON.stringify(release.files) === JSON.stringify(ROOT_FILES), `the released root tarball holds exactly ${ROOT_FILES.join(', ')} (it holds ${release.files.join(', ')})`)
  const stray = release.files.filter((file) => FORBIDDEN.some((pattern) => pattern.test(file)))
  check(stray.length === 0, `no tests, bench, examples, target/, crates/, Rust sources or binaries in it${stray.length ? `: ${stray.join(', ')}` : ''}`)

  // 3. A user's project.
  const project = path.join(work, 'project')
  cpSync(FIXTURE, project, { recursive: true, filter: (source) => !source.includes(`${path.sep}node_modules`) })
  run(project, NPM, ['ci', '--no-audit', '--no-fund'])
  const projectManifest = JSON.parse(readFileSync(path.join(project, 'package.json'), 'utf8'))
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ ...projectManifest, overrides }, null, 2))
  run(project, NPM, ['install', '--no-save', '--no-audit', '--no-fund', release.tarball])

  // 4. What npm installed, and where the binding comes from.
  const installed = readdirSync(path.join(project, 'node_modules')).filter((name) => name.startsWith(`${PKG.name}-`))
  check(JSON.stringify(installed) === JSON.stringify(built), `npm installed only this platform's package (${installed.join(', ')}), skipping the others by os/cpu/libc`)
  const loadedFrom = run(project, [process.execPath], [
    '-e',
    `require('${PKG.name}'); console.log(Object.keys(require.cache).filter((file) => file.endsWith('.node')).join(' '))`,
  ]).trim()
  check(built.length === 1 && loadedFrom === path.join(realpathSync(project), 'node_modules', built[0], `${PKG.napi.binaryName}.${built[0].slice(PKG.name.length + 1)}.node`), `the binding loads from the per-platform package: ${loadedFrom}`)

  // 5. The user's type-check and tests.
  for (const config of ['tsconfig.bundler.json', 'tsconfig.node16.json']) {
    try {
      run(project, tool(project, 'typescript', 'tsc'), ['-p', config])
      check(true, `tsc --noEmit -p ${config}`)
    } catch (error) {
      console.log(error.stdout)
      check(false, `tsc --noEmit -p ${config}`)
    }
  }
  try {
    console.log(run(project, tool(project, '@arethetypeswrong/cli', 'attw'), [release.tarball, '--format', 'table-flipped']))
    check(true, 'arethetypeswrong: no problems')
  } catch (error) {
    console.log(error.stdout)
    check(false, 'arethetypeswrong: no problems')
  }
  try {
    console.log(run(project, tool(project, 'vitest'), ['run'], { CI: 'true' }))
    check(true, 'vitest run')
  } catch (error) {
    console.log(error.stdout)
    check(false, 'vitest run')
  }
} finally {
  if (process.env.KEEP_TARBALL_TEST) console.log(`kept ${work}`)
  else rmSync(work, { recursive: true, force: true })
}
console.log(`tarball test: ${failures ? `${failures} checks failed` : 'all checks passed'} in ${((Date.now() - started) / 1000).toFixed(0)} s`)
process.exit(failures ? 1 : 0)
