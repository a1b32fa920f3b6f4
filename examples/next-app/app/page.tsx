export default function Home() {
  return (
    <main>
      <h1>tiered-cache Next.js example</h1>
      <p>
        Open <code>/&lt;tenant&gt;</code> for a restaurant&apos;s page, <code>/api/tenants/&lt;tenant&gt;</code> for its
        record and whether it came from the cache, and <code>/api/cache/stats</code> for the cache counters.
      </p>
    </main>
  )
}
