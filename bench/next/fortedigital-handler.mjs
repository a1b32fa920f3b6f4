// The peer in bench/next: @fortedigital/nextjs-cache-handler's Redis handler as the example app's incremental cache
// handler (it has no 'use cache' handler), on the same Redis as tiered-cache. Its quick-start setup.
import { CacheHandler } from '@fortedigital/nextjs-cache-handler'
import createRedisHandler from '@fortedigital/nextjs-cache-handler/redis-strings'
import { createClient } from 'redis'

const client = createClient({ url: process.env.REDIS_URL })
await client.connect()

CacheHandler.onCreation(() => ({
  handlers: [createRedisHandler({ client, keyPrefix: `${process.env.CACHE_NAMESPACE_PREFIX ?? ''}forte:` })],
}))

export default CacheHandler
