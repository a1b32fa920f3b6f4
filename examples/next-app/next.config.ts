import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { NextConfig } from 'next'

// The repository root has a lockfile of its own; without this Next.js takes the root for the app's workspace.
const appRoot = fileURLToPath(new URL('.', import.meta.url))
const require = createRequire(import.meta.url)

const nextConfig: NextConfig = {
  // tiered-cache loads a native .node binary with require(): bundled by Turbopack or webpack it would lose the path
  // to that binary, so Next.js must leave it to Node's own require at run time.
  serverExternalPackages: ['tiered-cache'],
  turbopack: { root: appRoot },
  outputFileTracingRoot: appRoot,
  // `output: 'standalone'` when NEXT_OUTPUT asks for it: the e2e builds both ways.
  ...(process.env.NEXT_OUTPUT === 'standalone' ? { output: 'standalone' as const } : {}),
  cacheComponents: true,
  // Next.js's caches on tiered-cache: 'use cache' entries, pages, route handlers and fetches shared by every
  // instance on the L2, and revalidateTag/updateTag/revalidatePath seen by all of them.
  cacheHandlers: {
    default: require.resolve('./cache-handlers/use-cache.mjs'),
    remote: require.resolve('./cache-handlers/use-cache.mjs'),
  },
  cacheHandler: require.resolve('./cache-handlers/incremental.mjs'),
  // Next.js's own in-memory copy in front of the incremental handler is per instance and never invalidated by
  // another one: the handler's L1 takes its place.
  cacheMaxMemorySize: 0,
}

export default nextConfig
