import type { TenantSettings, TenantUpdate } from './tenants'

export type ParsedTenantUpdate = { ok: true; update: TenantUpdate } | { ok: false; error: string }

const UPDATABLE_FIELDS = new Set(['name', 'active', 'settings'])
const MAX_NAME_LENGTH = 120
// Settings are cached with the tenant on every instance: a generous bound keeps one update from bloating every L1.
const MAX_SETTINGS_BYTES = 16 * 1024

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Checks a request body as a tenant update: at least one known field, each of the right type. */
export function parseTenantUpdate(body: unknown): ParsedTenantUpdate {
  if (!isPlainObject(body)) return { ok: false, error: 'The body must be a JSON object' }
  const fields = Object.keys(body)
  const unknown = fields.filter((field) => !UPDATABLE_FIELDS.has(field))
  if (unknown.length > 0) return { ok: false, error: `Unknown fields: ${unknown.join(', ')}` }
  if (fields.length === 0) return { ok: false, error: 'Nothing to update: give name, active or settings' }

  const update: TenantUpdate = {}
  if ('name' in body) {
    const name = typeof body.name === 'string' ? body.name.trim() : ''
    if (name.length === 0 || name.length > MAX_NAME_LENGTH) {
      return { ok: false, error: `name must be a non-empty string of at most ${MAX_NAME_LENGTH} characters` }
    }
    update.name = name
  }
  if ('active' in body) {
    if (typeof body.active !== 'boolean') return { ok: false, error: 'active must be a boolean' }
    update.active = body.active
  }
  if ('settings' in body) {
    if (!isPlainObject(body.settings)) return { ok: false, error: 'settings must be a JSON object' }
    if (Buffer.byteLength(JSON.stringify(body.settings)) > MAX_SETTINGS_BYTES) {
      return { ok: false, error: `settings must be at most ${MAX_SETTINGS_BYTES} bytes of JSON` }
    }
    // It came out of JSON.parse, so every value in it is JSON.
    update.settings = body.settings as TenantSettings
  }
  return { ok: true, update }
}
