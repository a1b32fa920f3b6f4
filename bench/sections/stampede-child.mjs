// One of the processes of the cross-process stampede: waits for the parent's go, fires its share of getOrSet calls.
import { openTiered, tenantValue, check } from '../lib/common.mjs'
import { redisClient } from '../lib/servers.mjs'
import { TIERED_OPTIONS, makeLoader } from './stampede.mjs'

const cache = await openTiered(TIERED_OPTIONS[process.argv[2]])
const redis = redisClient()
const value = tenantValue(1)
process.on('message', async ({ key, counter, calls }) => {
  try {
    const loader = makeLoader(redis, counter, value)
    const results = await Promise.all(Array.from({ length: calls }, () => cache.getOrSet(key, loader)))
    check(results[calls - 1], value, 'getOrSet result')
    process.send({ ok: true })
  } catch (err) {
    process.send({ error: String(err?.stack ?? err) })
  }
})
process.on('disconnect', async () => {
  await cache.close()
  redis.disconnect()
})
process.send({ ready: true })
