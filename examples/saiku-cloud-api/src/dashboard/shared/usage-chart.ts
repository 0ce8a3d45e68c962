import type { UsageCounts, UsageHistory, UsagePoint } from '@saiku/core'

/** The Usage page's ranges: the last 24 hours and 7 days by hour, the last 30 days by UTC day. */
export const USAGE_RANGES = {
  '24h': { label: 'Last 24 hours', granularity: 'hour', points: 24 },
  '7d': { label: 'Last 7 days', granularity: 'hour', points: 168 },
  '30d': { label: 'Last 30 days', granularity: 'day', points: 30 },
} as const

export type UsageRange = keyof typeof USAGE_RANGES

export const isUsageRange = (value: unknown): value is UsageRange =>
  typeof value === 'string' && Object.hasOwn(USAGE_RANGES, value)

const HOUR_MS = 3_600_000

/** The query for a range ending with the hour (or day) that holds `nowMs`. */
export function rangeQuery(range: UsageRange, nowMs: number) {
  const { granularity, points } = USAGE_RANGES[range]
  const stepMs = granularity === 'hour' ? HOUR_MS : 24 * HOUR_MS
  const to = Math.ceil((nowMs + 1) / stepMs) * stepMs
  return { from: to - points * stepMs, to, granularity }
}

export const refusals = (counts: UsageCounts): number =>
  counts.rateLimited + counts.quotaExceeded + counts.forbidden + counts.paymentRequired

/** "1 Dec 14:00" by hour, "1 Dec" by day: UTC, independent of the server's locale. */
export function pointLabel(point: UsagePoint, granularity: UsageHistory['granularity']): string {
  const at = new Date(point.start)
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
  const day = `${at.getUTCDate()} ${months[at.getUTCMonth()]}`
  return granularity === 'day' ? day : `${day} ${String(at.getUTCHours()).padStart(2, '0')}:00`
}

const WIDTH = 720
const HEIGHT = 220
const LEFT = 48
const BOTTOM = 24
const TOP = 8

/**
 * The points as a stacked bar chart in SVG, drawn on the server: admitted below, refused above.
 * Only numbers and fixed words go into it; colours come from the stylesheet's classes (the CSP
 * allows no inline style). Each bar's title reads its hour or day and counts.
 */
export function usageChartSvg(history: UsageHistory, titleId: string): string {
  const { points, granularity } = history
  const max = Math.max(1, ...points.map((p) => p.admitted + refusals(p)))
  const plotHeight = HEIGHT - TOP - BOTTOM
  const slot = (WIDTH - LEFT) / Math.max(1, points.length)
  const barWidth = Math.max(1, slot * 0.8)
  const y = (count: number) => (count / max) * plotHeight
  const bars = points.map((point, index) => {
    const x = (LEFT + index * slot + (slot - barWidth) / 2).toFixed(2)
    const admitted = y(point.admitted)
    const refused = y(refusals(point))
    const base = HEIGHT - BOTTOM
    const title = `${pointLabel(point, granularity)} UTC: ${point.admitted} admitted, ${refusals(point)} refused`
    return (
      `<g><title>${title}</title>` +
      `<rect class="bar-admitted" x="${x}" y="${(base - admitted).toFixed(2)}" width="${barWidth.toFixed(2)}" height="${admitted.toFixed(2)}"/>` +
      `<rect class="bar-refused" x="${x}" y="${(base - admitted - refused).toFixed(2)}" width="${barWidth.toFixed(2)}" height="${refused.toFixed(2)}"/></g>`
    )
  })
  // Three labels under the axis: the first, middle and last point.
  const ticks = [0, Math.floor((points.length - 1) / 2), points.length - 1]
    .filter((index, i, all) => index >= 0 && all.indexOf(index) === i)
    .map((index) => {
      const x = LEFT + index * slot + slot / 2
      const anchor = index === 0 ? 'start' : index === points.length - 1 ? 'end' : 'middle'
      return `<text class="axis" x="${x.toFixed(2)}" y="${HEIGHT - 6}" text-anchor="${anchor}">${pointLabel(points[index]!, granularity)}</text>`
    })
  const totals = history.totals
  return [
    `<svg class="usage-chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${titleId} ${titleId}-desc" preserveAspectRatio="none">`,
    `<title id="${titleId}">Requests per ${granularity}, admitted and refused, stacked</title>`,
    `<desc id="${titleId}-desc">${totals.admitted} admitted and ${refusals(totals)} refused in ${points.length} ${granularity}s; the tallest bar is ${max} requests. The table beside the chart holds every number.</desc>`,
    `<line class="grid" x1="${LEFT}" y1="${TOP}" x2="${WIDTH}" y2="${TOP}"/>`,
    `<line class="grid" x1="${LEFT}" y1="${HEIGHT - BOTTOM}" x2="${WIDTH}" y2="${HEIGHT - BOTTOM}"/>`,
    `<text class="axis" x="${LEFT - 6}" y="${TOP + 10}" text-anchor="end">${max}</text>`,
    `<text class="axis" x="${LEFT - 6}" y="${HEIGHT - BOTTOM}" text-anchor="end">0</text>`,
    ...bars,
    ...ticks,
    '</svg>',
  ].join('')
}

/**
 * One CSV field: quoted when it holds a quote, comma or line break (quotes doubled, RFC 4180); a
 * field that a spreadsheet would read as a formula (= + - @, or a tab or carriage return first)
 * starts with an apostrophe, so it stays text.
 */
export function csvField(value: string | number): string {
  let text = String(value)
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

const COLUMNS = [
  'period_start',
  'period_end',
  'key_id',
  'label',
  'admitted',
  'rate_limited',
  'quota_exceeded',
  'forbidden',
  'payment_required',
]

/**
 * The range as CSV: one row per hour or day for all keys, then one row per key for the whole range.
 * `labels`: key ID → label, for keys still live.
 */
export function usageCsv(history: UsageHistory, labels: ReadonlyMap<string, string>): string {
  const stepMs = history.granularity === 'hour' ? HOUR_MS : 24 * HOUR_MS
  const counts = (c: UsageCounts) => [c.admitted, c.rateLimited, c.quotaExceeded, c.forbidden, c.paymentRequired]
  const rows: (string | number)[][] = [
    ...history.points.map((point) => [
      point.start,
      new Date(Date.parse(point.start) + stepMs).toISOString(),
      '',
      'All keys',
      ...counts(point),
    ]),
    ...history.keys.map((key) => [
      history.from,
      history.to,
      key.keyId ?? '',
      key.keyId === null ? 'Without a key ID' : (labels.get(key.keyId) ?? '(revoked key)'),
      ...counts(key),
    ]),
  ]
  return [COLUMNS, ...rows].map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n'
}
