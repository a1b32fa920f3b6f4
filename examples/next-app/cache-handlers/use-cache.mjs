// The 'use cache' handler: every instance shares its entries and its tags through tiered-cache (CACHE_URL).
import { createUseCacheHandler } from 'tiered-cache/next'
import { reportNextCacheFailure } from './report.mjs'

export default createUseCacheHandler({ namespace: `${process.env.CACHE_NAMESPACE_PREFIX ?? ''}next`, onError: reportNextCacheFailure })
