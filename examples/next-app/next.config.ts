import { fileURLToPath } from 'node:url'
import type { NextConfig } from 'next'

// The repository root has a lockfile of its own; without this Next.js takes the root for the app's workspace.
const appRoot = fileURLToPath(new URL('.', import.meta.url))

const nextConfig: NextConfig = {
  // tiered-cache loads a native .node binary with require(): bundled by Turbopack or webpack it would lose the path
  // to that binary, so Next.js must leave it to Node's own require at run time.
  serverExternalPackages: ['tiered-cache'],
  turbopack: { root: appRoot },
  outputFileTracingRoot: appRoot,
}

export default nextConfig
