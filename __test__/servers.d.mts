/** A throw-away Redis Cluster: 3 masters and their replicas on free loopback ports. */
export interface RedisCluster {
  /** Every node's port; the first three were masters when created. */
  readonly ports: number[]
  /** The seed URL for the cache: every node, comma-separated. */
  readonly url: string
  readonly pids: number[]
  /** The ports of the masters now, as a live node sees them. */
  masters(): Promise<number[]>
  /** Kills the node on `port` with SIGKILL, by its pid. */
  kill(port: number): void
  /** Runs `redis-cli` against the node on `port`; resolves its standard output. */
  cli(port: number, ...args: string[]): Promise<string>
  /** Kills every node by pid and removes its directory. */
  stop(): void
}

export function startRedisCluster(options?: { masters?: number; nodeTimeoutMs?: number }): Promise<RedisCluster>

/** A throw-away PgBouncer in transaction pooling mode. */
export interface PgBouncer {
  readonly port: number
  /** A `postgres://` URL through the pooler, TLS off. */
  readonly url: string
  readonly pid: number
  readonly dir: string
  stop(): void
}

export function startPgBouncer(options?: {
  upstreamHost?: string
  upstreamPort?: number
  database?: string
  user?: string
  poolSize?: number
}): Promise<PgBouncer>

export function pgbouncerBinary(): string
