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
  // `npm run build:standalone` (NEXT_OUTPUT=standalone) writes a self-contained server to .next-standalone/standalone
  // (the e2e runs it beside `next start`, which does not serve that output): the native binary and the cache handler
  // modules are traced into it.
  ...(process.env.NEXT_OUTPUT === 'standalone' ? { output: 'standalone' as const } : {}),
  cacheComponents: true,
  ...cacheHandlerConfig(),
  // The standalone build and bench/next's builds (one per set of handlers it compares) go beside the tests' build.
  ...(process.env.NEXT_DIST_DIR ? { distDir: process.env.NEXT_DIST_DIR } : {}),
}

/**
 * Next.js's caches on tiered-cache: 'use cache' entries, pages, route handlers and fetches shared by every instance on
 * the L2, and revalidateTag/updateTag/revalidatePath seen by all of them. bench/next swaps them for its comparisons:
 * NEXT_CACHE_HANDLERS=default keeps Next.js's own, NEXT_INCREMENTAL_HANDLER names another incremental handler.
 */
function cacheHandlerConfig(): NextConfig {
  if (process.env.NEXT_CACHE_HANDLERS === 'default') return {}
  if (process.env.NEXT_INCREMENTAL_HANDLER) {
    return { cacheHandler: process.env.NEXT_INCREMENTAL_HANDLER, cacheMaxMemorySize: 0 }
  }
  return {
    cacheHandlers: {
      default: require.resolve('./cache-handlers/use-cache.mjs'),
      remote: require.resolve('./cache-handlers/use-cache.mjs'),
    },
    cacheHandler: require.resolve('./cache-handlers/incremental.mjs'),
    // Next.js's own in-memory copy in front of the incremental handler is per instance and never invalidated by
    // another one: the handler's L1 takes its place.
    cacheMaxMemorySize: 0,
  }
}

export default nextConfig
