import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'

export const APP_DIR = fileURLToPath(new URL('../..', import.meta.url))
const NEXT_BIN = fileURLToPath(new URL('../../node_modules/next/dist/bin/next', import.meta.url))
/** The `output: 'standalone'` server `npm run build:standalone` writes: server.js with only the files it traced. */
const STANDALONE_DIR = fileURLToPath(new URL('../../.next-standalone/standalone', import.meta.url))

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface AppServer {
  name: string
  baseUrl: string
  pid: number
  /** Everything the server printed, for the failure message. */
  output: () => string
  /** Settles when the process has exited. */
  exited: Promise<Exit>
  hasExited: () => boolean
}

// Every server this process started and that is still running: stopped by pid on any way out of the process.
const running = new Map<number, ChildProcess>()

function killAll(): void {
  for (const [pid] of running) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
  running.clear()
}

process.once('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killAll()
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1))
  })
}

/** A loopback port nobody listens on now. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return address.port
}

/**
 * Starts `next start` (or, `standalone`, the standalone server.js) on a free loopback port and resolves once it answers HTTP, which Next.js does only after
 * instrumentation's register() has finished.
 */
export async function startServer(name: string, env: Record<string, string>, standalone = false): Promise<AppServer> {
  const port = await freePort()
  // node runs the Next.js CLI (or the standalone server.js) directly, not through npx, so the pid is the server's own.
  const [args, cwd] = standalone
    ? [['server.js'], STANDALONE_DIR]
    : [[NEXT_BIN, 'start', '--port', String(port), '--hostname', '127.0.0.1'], APP_DIR]
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1', PORT: String(port), HOSTNAME: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (child.pid === undefined) throw new Error(`${name}: next start did not spawn`)
  const pid = child.pid
  running.set(pid, child)

  const chunks: string[] = []
  child.stdout?.on('data', (chunk: Buffer) => chunks.push(chunk.toString()))
  child.stderr?.on('data', (chunk: Buffer) => chunks.push(chunk.toString()))
  let exitedYet = false
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedYet = true
      running.delete(pid)
      resolve({ code, signal })
    })
  })

  const server: AppServer = {
    name,
    baseUrl: `http://127.0.0.1:${port}`,
    pid,
    output: () => chunks.join(''),
    exited,
    hasExited: () => exitedYet,
  }
  try {
    await waitUntilServing(server, 60_000)
  } catch (err) {
    await kill(server)
    throw err
  }
  return server
}

async function waitUntilServing(server: AppServer, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (server.hasExited()) throw new Error(`${server.name} exited while starting:\n${server.output()}`)
    try {
      const response = await fetch(`${server.baseUrl}/api/cache/stats`)
      await response.arrayBuffer()
      if (response.ok) return
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${server.name} did not answer within ${timeoutMs} ms:\n${server.output()}`)
}

/** Sends SIGTERM and resolves with how the process ended and how long it took, or `null` if it outlived the grace. */
export async function terminate(server: AppServer, graceMs: number): Promise<{ exit: Exit; ms: number } | null> {
  const started = performance.now()
  process.kill(server.pid, 'SIGTERM')
  const timeout = new Promise<null>((resolve) => setTimeout(resolve, graceMs, null).unref())
  const exit = await Promise.race([server.exited, timeout])
  return exit === null ? null : { exit, ms: Math.round(performance.now() - started) }
}

/** Kills a server that is still running, by its pid, and waits until it is gone. */
export async function kill(server: AppServer): Promise<void> {
  if (server.hasExited()) return
  process.kill(server.pid, 'SIGKILL')
  await server.exited
}
