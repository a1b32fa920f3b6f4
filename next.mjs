// The ESM entry of tiered-cache/next: the same module as next.js (one shared Cache per process either way).
import next from './next.js'

export const { handlerCaches, createUseCacheHandler, createIncrementalCacheHandler, checkNextVersion, SUPPORTED_NEXT_MAJORS, ERR_NEXT_VERSION } =
  next
