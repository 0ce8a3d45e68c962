/**
 * Text for a terminal: every control character (C0 with tab and line breaks, DEL, C1), format character
 * (bidi overrides and isolates, zero-width characters), line or paragraph separator and lone surrogate is
 * written as `\uXXXX`, so stored text can neither rewrite the screen, reorder a line, nor start a new one.
 */
export function printable(text: string): string {
  return text.replace(
    /[\p{Cc}\p{Cf}\u2028\u2029\uD800-\uDFFF]/gu,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}

/** A value as a JSON string, safe to print: how a refused input is quoted back. */
export const quoted = (text: string): string => printable(JSON.stringify(text))
