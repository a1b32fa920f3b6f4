import { revalidatePath, revalidateTag } from 'next/cache'
import { NextResponse } from 'next/server'

/**
 * Revalidates on every instance. Body: `{ tag, profile? }` (`profile: "max"` marks the tag's entries stale, served
 * once more while a fresh one renders; without it they expire at once) or `{ path }` (`revalidatePath`).
 */
export async function POST(request: Request): Promise<NextResponse> {
  const body = (await request.json().catch(() => null)) as { tag?: unknown; path?: unknown; profile?: unknown } | null
  try {
    if (typeof body?.tag === 'string') {
      revalidateTag(body.tag, body.profile === 'max' ? 'max' : { expire: 0 })
    } else if (typeof body?.path === 'string') {
      revalidatePath(body.path)
    } else {
      return NextResponse.json({ error: 'give a tag or a path' }, { status: 400 })
    }
  } catch (err) {
    return NextResponse.json({ error: err instanceof Error ? err.message : String(err) }, { status: 500 })
  }
  return NextResponse.json({ revalidated: true })
}
