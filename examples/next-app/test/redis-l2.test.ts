import { defineE2eSuite } from './e2e-suite'

defineE2eSuite('redis', 10)
