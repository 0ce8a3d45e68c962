/**
 * A path of this site to go to after sign-in, or null: it starts with one `/`, never `//host` or `/\host`,
 * holds no scheme before it, and no space or control character (which URL parsers drop).
 */
export function safeNext(value: unknown): string | null {
  if (typeof value !== 'string' || value.length > 2_000) return null
  if (!/^\/(?![/\\])[\x21-\x7e]*$/.test(value) || value.includes('\\')) return null
  const base = 'http://dashboard.invalid'
  return new URL(value, base).origin === base ? value : null
}
