// The peer in bench/next: @fortedigital/nextjs-cache-handler's Redis handler as the example app's incremental cache
// handler (it has no 'use cache' handler), on the same Redis as tiered-cache; its quick-start setup, with the client
// connecting on first use since a CommonJS module cannot await at the top.
const { CacheHandler } = require('@fortedigital/nextjs-cache-handler')
const createRedisHandler = require('@fortedigital/nextjs-cache-handler/redis-strings').default
const { createClient } = require('redis')

CacheHandler.onCreation(async () => {
  const client = createClient({ url: process.env.REDIS_URL })
  await client.connect()
  return { handlers: [createRedisHandler({ client, keyPrefix: `${process.env.CACHE_NAMESPACE_PREFIX ?? ''}forte:` })] }
})

module.exports = CacheHandler
