// The incremental cache handler (pages, ISR, route handlers, fetch): shared through tiered-cache (CACHE_URL).
import { createIncrementalCacheHandler } from 'tiered-cache/next'
import { reportNextCacheFailure } from './report.mjs'

export default createIncrementalCacheHandler({ namespace: `${process.env.CACHE_NAMESPACE_PREFIX ?? ''}next`, onError: reportNextCacheFailure })
