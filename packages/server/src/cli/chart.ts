// The chart `tollgate simulate` writes: stacked bars of admitted (below) and denied
// (above) requests per second for each bin, as a self-contained SVG (no scripts, fonts
// or links), or an HTML page holding that SVG and a summary table.

import { describePattern, type SimulationResult } from "./simulate.js"

const W = 960
const H = 400
const M = { top: 56, right: 24, bottom: 52, left: 64 }
const ADMITTED = "#12805c"
const DENIED = "#d9480f"

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** niceMax rounds a maximum up to 1, 2 or 5 times a power of ten (for the y axis). */
function niceMax(x: number): number {
  if (x <= 0) return 1
  const p = 10 ** Math.floor(Math.log10(x))
  for (const s of [1, 2, 2.5, 5, 10]) if (s * p >= x) return s * p
  return 10 * p
}

function seconds(ms: number): string {
  const s = ms / 1000
  if (s >= 3600 && s % 60 === 0) return `${Math.round(s / 60)}m`
  return Number.isInteger(s) ? `${s}s` : `${s.toFixed(1)}s`
}

/** renderSvg draws a simulation result; `title` names the policy. */
export function renderSvg(r: SimulationResult, title: string): string {
  const plotW = W - M.left - M.right
  const plotH = H - M.top - M.bottom
  const perSecond = 1000 / r.binMs
  const peak = Math.max(0, ...r.bins.map((b) => (b.admitted + b.denied) * perSecond))
  const yMax = niceMax(peak)
  const x = (ms: number) => M.left + (ms / r.durationMs) * plotW
  const y = (v: number) => M.top + plotH - (v / yMax) * plotH
  const barW = Math.max(1, (r.binMs / r.durationMs) * plotW - 1)
  const parts: string[] = []
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${M.left}" y="22" font-size="15" font-weight="600" fill="#1d2330">${esc(title)}</text>`,
    `<text x="${M.left}" y="40" fill="#667085">${esc(describePattern(r.pattern))} for ${seconds(r.durationMs)} — admitted ${r.admitted}, denied ${r.denied} (${pct(r)} admitted)</text>`,
  )
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5
    const yy = y(v)
    parts.push(
      `<line x1="${M.left}" x2="${W - M.right}" y1="${yy}" y2="${yy}" stroke="#e4e7ec"/>`,
      `<text x="${M.left - 8}" y="${yy + 4}" text-anchor="end" fill="#667085">${fmt(v)}</text>`,
    )
  }
  for (const b of r.bins) {
    const a = b.admitted * perSecond
    const d = b.denied * perSecond
    const bx = x(b.startMs)
    if (a > 0) {
      parts.push(
        `<rect class="admitted" x="${bx.toFixed(1)}" y="${y(a).toFixed(1)}" width="${barW.toFixed(1)}" height="${(y(0) - y(a)).toFixed(1)}" fill="${ADMITTED}"/>`,
      )
    }
    if (d > 0) {
      parts.push(
        `<rect class="denied" x="${bx.toFixed(1)}" y="${y(a + d).toFixed(1)}" width="${barW.toFixed(1)}" height="${(y(a) - y(a + d)).toFixed(1)}" fill="${DENIED}"/>`,
      )
    }
  }
  const ticks = 6
  for (let i = 0; i <= ticks; i++) {
    const ms = (r.durationMs * i) / ticks
    parts.push(
      `<text x="${x(ms)}" y="${H - M.bottom + 18}" text-anchor="middle" fill="#667085">${seconds(Math.round(ms))}</text>`,
    )
  }
  parts.push(
    `<line x1="${M.left}" x2="${W - M.right}" y1="${y(0)}" y2="${y(0)}" stroke="#98a2b3"/>`,
    `<text x="${M.left + plotW / 2}" y="${H - 12}" text-anchor="middle" fill="#667085">time</text>`,
    `<text transform="translate(18 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#667085">requests per second</text>`,
    `<rect x="${W - M.right - 190}" y="12" width="12" height="12" fill="${ADMITTED}"/>`,
    `<text x="${W - M.right - 172}" y="22" fill="#1d2330">admitted</text>`,
    `<rect x="${W - M.right - 100}" y="12" width="12" height="12" fill="${DENIED}"/>`,
    `<text x="${W - M.right - 82}" y="22" fill="#1d2330">denied</text>`,
    "</svg>",
  )
  return `${parts.join("\n")}\n`
}

/** renderHtml wraps the SVG in a page with a summary table. */
export function renderHtml(r: SimulationResult, title: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#1d2330}table{border-collapse:collapse;margin-top:16px}td,th{padding:4px 10px;border-bottom:1px solid #e4e7ec;text-align:left}td.n{text-align:right}</style>
</head><body>
${renderSvg(r, title)}
<table>
<tr><th>traffic</th><td>${esc(describePattern(r.pattern))}</td></tr>
<tr><th>duration</th><td>${seconds(r.durationMs)}</td></tr>
<tr><th>offered</th><td class="n">${r.admitted + r.denied}</td></tr>
<tr><th>admitted</th><td class="n">${r.admitted}</td></tr>
<tr><th>denied</th><td class="n">${r.denied}</td></tr>
<tr><th>admitted share</th><td class="n">${pct(r)}</td></tr>
</table>
</body></html>
`
}

function pct(r: SimulationResult): string {
  const total = r.admitted + r.denied
  return total === 0 ? "0%" : `${((100 * r.admitted) / total).toFixed(1)}%`
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1)
}
