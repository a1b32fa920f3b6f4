// A TCP proxy that can misbehave on demand, put between the cache and its real Redis or Postgres so a test can cut,
// stall, reset or slow the network the way production does, without root, iptables or a second host.
import { connect, createServer, type Server, type Socket } from 'node:net'

export type FaultMode = 'pass' | 'blackhole' | 'reset' | 'refuse' | 'delay'
export type FaultScope = 'all' | 'bus'

// A bus connection opens exactly like a command connection; only what it says gives it away. Matched
// case-insensitively on client->server bytes: SUBSCRIBE also covers SSUBSCRIBE and PSUBSCRIBE (Redis RESP), LISTEN is
// the Postgres query text in a simple or extended query. A value that merely contains these words marks a command
// connection as a bus one too; the cache never writes such values in tests. TLS (rediss://) hides the words, so
// over TLS no connection is ever a bus connection.
const BUS_COMMAND = /SUBSCRIBE|LISTEN\s/i
// Carried over from one chunk to the next, so a keyword split by TCP across two reads is still found.
const SNIFF_CARRY = 64

type Item = Buffer | 'end' | 'destroy'

/** One direction of a link: items leave in arrival order, none before its own due time. */
class Lane {
  private queue: { due: number; item: Item }[] = []
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly deliver: (item: Item) => void) {}

  push(item: Item, delayMs: number): void {
    this.queue.push({ due: performance.now() + delayMs, item })
    // A pending timer means an earlier, later-due item is waiting: this one must wait behind it to keep the order.
    if (this.timer === undefined) this.flush()
  }

  clear(): void {
    this.queue = []
    clearTimeout(this.timer)
    this.timer = undefined
  }

  private flush(): void {
    this.timer = undefined
    const now = performance.now()
    while (this.queue.length > 0 && (this.queue[0]?.due ?? Infinity) <= now) {
      const next = this.queue.shift()
      if (next) this.deliver(next.item)
    }
    const head = this.queue[0]
    // Timers can fire a little early against performance.now(); flush() then simply waits the rest.
    if (head && this.timer === undefined) this.timer = setTimeout(() => this.flush(), Math.max(1, head.due - now))
  }
}

interface Link {
  client: Socket
  // Absent when the connection was black-holed from its first byte: nothing will ever reach the server.
  upstream?: Socket
  bus: boolean
  sniffed: string
  // Black-holed: for good, see set().
  dead: boolean
  toServer: Lane
  toClient: Lane
}

export class FaultProxy {
  private listenPort = 0
  private listener: Server | undefined
  private mode: FaultMode = 'pass'
  private scope: FaultScope = 'all'
  private delayMs = 0
  private closed = false
  private failure: Error | undefined
  private readonly links = new Set<Link>()
  // Every socket, links' or not: a black-holed link's server side outlives its client side, and close() ends both.
  private readonly sockets = new Set<Socket>()

  private constructor(private readonly target: { host: string; port: number }) {}

  /** Listens on 127.0.0.1, on a free port, and forwards to `target` (127.0.0.1 unless a host is given). */
  static async start(target: { host?: string; port: number }): Promise<FaultProxy> {
    const proxy = new FaultProxy({ host: target.host ?? '127.0.0.1', port: target.port })
    await new Promise<void>((resolve, reject) => {
      const server = proxy.listen(0)
      server.once('listening', resolve)
      server.once('error', reject)
    })
    return proxy
  }

  get port(): number {
    return this.listenPort
  }

  /** `original` with its host and port replaced by the proxy's; scheme, user, password, path and query are kept. */
  url(original: string): string {
    const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/is.exec(original)
    if (!match) throw new TypeError(`not a URL with a host: ${original}`)
    const [, scheme = '', authority = '', rest = ''] = match
    // The last @, not the first: a password may hold an unescaped @ that the URL parsers of the clients tolerate.
    const userinfo = authority.slice(0, authority.lastIndexOf('@') + 1)
    return `${scheme}${userinfo}127.0.0.1:${this.listenPort}${rest}`
  }

  /**
   * Switches the fault, for live connections at once and for every new one. With scope 'bus' only bus connections
   * (see BUS_COMMAND) suffer it and all others pass.
   *
   * A black-holed connection stays dead-but-open for good, even after set('pass'): a partition that heals only
   * for new flows, as after a NAT or load balancer forgot the old one. Only 'reset' (or close()) ends it, as the RST
   * that a middlebox sends when the client finally talks on a flow it no longer knows.
   *
   * 'refuse' with scope 'bus' cannot refuse at the TCP level, since a bus connection is only known once it speaks:
   * such connections are accepted and reset as soon as they are identified, as 'reset' does.
   */
  set(mode: FaultMode, options: { scope?: FaultScope; delayMs?: number } = {}): void {
    if (this.closed) throw new Error('the fault proxy is closed')
    if (this.failure) throw this.failure
    if (mode === 'delay' && !((options.delayMs ?? -1) >= 0)) throw new TypeError("'delay' needs delayMs >= 0")
    this.mode = mode
    this.scope = options.scope ?? 'all'
    this.delayMs = options.delayMs ?? 0
    for (const link of this.links) {
      const effective = this.effectiveMode(link)
      if (effective === 'blackhole') this.blackhole(link)
      else if (effective === 'reset' || effective === 'refuse') this.reset(link)
    }
    if (mode === 'refuse' && this.scope === 'all') void this.stopListening()
    // Synchronously, not after an await: the bind then precedes any connect a test starts after set() returns,
    // since both begin on the same process.nextTick queue.
    else if (!this.listener) this.listen(this.listenPort)
  }

  /** Live proxied connections, including black-holed ones; with 'bus', only those identified as bus connections. */
  connections(scope: FaultScope = 'all'): number {
    let count = 0
    for (const link of this.links) if (!link.client.destroyed && (scope === 'all' || link.bus)) count += 1
    return count
  }

  /** Destroys every connection and stops listening; nothing of the proxy keeps the event loop alive afterwards. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const link of this.links) {
      link.toServer.clear()
      link.toClient.clear()
    }
    for (const socket of this.sockets) socket.destroy()
    await this.stopListening()
    if (this.failure) throw this.failure
  }

  private listen(port: number): Server {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket))
    this.listener = server
    server.on('error', (error) => {
      if (this.listener === server) this.failure ??= error
    })
    // A stop that came while the bind was still pending: the bind went ahead anyway, so undo it now.
    server.on('listening', () => {
      if (this.listener !== server) server.close()
    })
    server.listen(port, '127.0.0.1', () => {
      const address = server.address()
      if (typeof address === 'object' && address) this.listenPort = address.port
    })
    return server
  }

  private stopListening(): Promise<void> {
    const server = this.listener
    this.listener = undefined
    if (!server) return Promise.resolve()
    return new Promise((resolve) => {
      server.once('close', () => resolve())
      server.once('error', () => resolve())
      // Closing the handle refuses new connections at once; 'close' itself waits for the accepted ones to end.
      if (server.listening) server.close()
    })
  }

  private track(socket: Socket): void {
    this.sockets.add(socket)
    // The faults cause ECONNRESET, EPIPE and write-after-end on purpose; none of them may crash the test process.
    socket.on('error', () => {})
    socket.on('close', () => this.sockets.delete(socket))
  }

  private accept(client: Socket): void {
    this.track(client)
    if (this.closed) {
      client.destroy()
      return
    }
    const link: Link = {
      client,
      bus: false,
      sniffed: '',
      dead: false,
      toServer: new Lane((item) => this.deliver(link, link.upstream, item)),
      toClient: new Lane((item) => this.deliver(link, client, item)),
    }
    this.links.add(link)
    client.on('close', () => this.links.delete(link))

    const mode = this.effectiveMode(link)
    // 'refuse' here is a connection that was already in the backlog when the listener closed.
    if (mode === 'reset' || mode === 'refuse') {
      this.reset(link)
      return
    }
    // Read and dropped rather than left unread, so the client's writes never block: a partition swallows them.
    client.on('data', (chunk: Buffer) => this.sniff(link, chunk))
    if (mode === 'blackhole') {
      link.dead = true
      return
    }

    const upstream = connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true, noDelay: true })
    this.track(upstream)
    link.upstream = upstream
    client.on('data', (chunk: Buffer) => this.carry(link, link.toServer, chunk))
    upstream.on('data', (chunk: Buffer) => this.carry(link, link.toClient, chunk))
    // Half-closes are forwarded by hand, in order after the data, and not at all once black-holed.
    client.on('end', () => this.carry(link, link.toServer, 'end'))
    upstream.on('end', () => this.carry(link, link.toClient, 'end'))
    client.on('close', (hadError) => this.hangUp(link, link.toServer, hadError))
    upstream.on('close', (hadError) => this.hangUp(link, link.toClient, hadError))
  }

  private sniff(link: Link, chunk: Buffer): void {
    if (link.bus) return
    // latin1 maps each byte to one character, so no multi-byte sequence cut at a chunk edge can hide a keyword.
    const seen = link.sniffed + chunk.toString('latin1')
    link.bus = BUS_COMMAND.test(seen)
    link.sniffed = link.bus ? '' : seen.slice(-SNIFF_CARRY)
  }

  private effectiveMode(link: Link): FaultMode {
    return this.scope === 'bus' && !link.bus ? 'pass' : this.mode
  }

  // Runs after sniff() for client bytes (listeners fire in order), so the very bytes that make a connection a bus
  // one already suffer a bus-scoped fault: a SUBSCRIBE sent into a bus black hole is never answered.
  private carry(link: Link, lane: Lane, item: Item): void {
    if (link.dead) return
    const mode = this.effectiveMode(link)
    if (mode === 'blackhole') this.blackhole(link)
    else if (mode === 'reset' || mode === 'refuse') this.reset(link)
    else lane.push(item, mode === 'delay' ? this.delayMs : 0)
  }

  private deliver(link: Link, socket: Socket | undefined, item: Item): void {
    if (link.dead || !socket || socket.destroyed) return
    if (item === 'end') socket.end()
    else if (item === 'destroy') socket.destroy()
    else socket.write(item)
  }

  /** One side closed: an RST is passed on as an RST at once, a clean close after the data still on its way. */
  private hangUp(link: Link, towardOther: Lane, hadError: boolean): void {
    // A black hole tells the other side nothing; close() ends what is left.
    if (link.dead) return
    if (hadError) this.reset(link)
    else towardOther.push('destroy', 0)
  }

  private blackhole(link: Link): void {
    link.dead = true
    link.toServer.clear()
    link.toClient.clear()
  }

  private reset(link: Link): void {
    link.toServer.clear()
    link.toClient.clear()
    for (const socket of [link.client, link.upstream]) if (socket && !socket.destroyed) socket.resetAndDestroy()
  }
}
