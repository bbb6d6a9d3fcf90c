// The last hour on the wallboard: waiting contacts and service level, as a small SVG chart.
//
// The points are kept here, one per figures frame (at most one a second), for an hour. On
// load the service level is seeded from the queue report of the last hour (one point per
// quarter of an hour, summed over the queues), so a reload does not start from nothing;
// waiting contacts are not in the report and start with the page.
//
// Waiting contacts use the left scale (0 to a round number above the hour's highest), the
// service level the right one (0–100 %), with the centre's target as a dashed line. The two
// lines differ in colour and in dash, so the chart does not rely on colour alone, and the
// SVG's text alternative says the latest values and the hour's peak.

import { svg, replace } from "../js/dom.js";
import { t } from "../js/i18n.js";

const HOUR_MS = 3600 * 1000;
const W = 640;
const H = 220;
const PAD = { left: 44, right: 48, top: 12, bottom: 28 };

export class HourChart {
  constructor(element) {
    this.element = element;
    this.points = []; // {at: ms, waiting: number|null, sl: number|null}
    this.target = null;
  }

  /** Seed the service level from report buckets: [{at: ms, sl: pct|null}]. */
  seed(buckets) {
    const first = this.points.length ? this.points[0].at : Infinity;
    const older = buckets.filter((b) => b.at < first && b.sl !== null).map((b) => ({ at: b.at, waiting: null, sl: b.sl }));
    this.points = [...older, ...this.points].sort((a, b) => a.at - b.at);
  }

  add(at, waiting, sl, target) {
    const last = this.points[this.points.length - 1];
    if (last && at - last.at < 1000) this.points.pop(); // one point a second at most
    this.points.push({ at, waiting, sl });
    if (target !== undefined) this.target = target;
    const oldest = at - HOUR_MS;
    while (this.points.length && this.points[0].at < oldest) this.points.shift();
  }

  draw(now) {
    const end = now;
    const start = end - HOUR_MS;
    const waits = this.points.map((p) => p.waiting).filter((w) => w !== null);
    const top = niceTop(Math.max(4, ...waits));
    const x = (at) => PAD.left + ((at - start) / HOUR_MS) * (W - PAD.left - PAD.right);
    const yWait = (w) => H - PAD.bottom - (w / top) * (H - PAD.top - PAD.bottom);
    const ySl = (pct) => H - PAD.bottom - (pct / 100) * (H - PAD.top - PAD.bottom);
    const children = [
      svg("title", { id: "chart-title", text: t("wallboard.chart.title") }),
      svg("desc", { id: "chart-desc", text: this.summary(waits) }),
      ...this.grid(top, yWait, ySl),
      ...this.timeAxis(start, x),
    ];
    if (this.target !== null) {
      children.push(svg("line", { class: "target", x1: PAD.left, x2: W - PAD.right, y1: ySl(this.target), y2: ySl(this.target) }));
    }
    children.push(line(this.points.filter((p) => p.waiting !== null), x, (p) => yWait(p.waiting), "series waiting"));
    children.push(line(this.points.filter((p) => p.sl !== null), x, (p) => ySl(p.sl), "series sl"));
    this.element.setAttribute("viewBox", `0 0 ${W} ${H}`);
    replace(this.element, ...children);
  }

  grid(top, yWait, ySl) {
    const parts = [];
    for (let i = 0; i <= 4; i += 1) {
      const w = (top / 4) * i;
      const y = yWait(w);
      parts.push(svg("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
      parts.push(svg("text", { class: "axis", x: PAD.left - 6, y: y + 4, "text-anchor": "end", text: String(Math.round(w)) }));
      parts.push(svg("text", { class: "axis", x: W - PAD.right + 6, y: ySl(25 * i) + 4, text: `${25 * i}%` }));
    }
    return parts;
  }

  timeAxis(start, x) {
    const parts = [];
    for (let minutes = 0; minutes <= 60; minutes += 15) {
      const at = start + minutes * 60000;
      const label = minutes === 60 ? t("wallboard.chart.now") : `-${60 - minutes}′`;
      parts.push(svg("text", { class: "axis", x: x(at), y: H - 8, "text-anchor": "middle", text: label }));
    }
    return parts;
  }

  summary(waits) {
    const last = this.points[this.points.length - 1];
    if (!last) return t("wallboard.chart.empty");
    const sl = [...this.points].reverse().find((p) => p.sl !== null);
    return t("wallboard.chart.summary", {
      waiting: last.waiting === null ? "—" : last.waiting,
      sl: sl ? `${sl.sl.toFixed(1)}%` : "—",
      peak: waits.length ? Math.max(...waits) : "—",
    });
  }
}

function line(points, x, y, className) {
  if (points.length === 0) return svg("g", { class: className });
  if (points.length === 1) {
    const [p] = points;
    return svg("circle", { class: className, cx: x(p.at).toFixed(1), cy: y(p).toFixed(1), r: 3 });
  }
  const coordinates = points.map((p) => `${x(p.at).toFixed(1)},${y(p).toFixed(1)}`).join(" ");
  const last = points[points.length - 1];
  // The latest value is marked, so a line that has only just begun is seen.
  return svg("g", {}, svg("polyline", { class: className, points: coordinates }), svg("circle", { class: className, cx: x(last.at).toFixed(1), cy: y(last).toFixed(1), r: 3.5 }));
}

function niceTop(value) {
  for (const step of [4, 8, 12, 20, 40, 80, 120, 200, 400, 800, 2000, 4000]) if (value <= step) return step;
  return Math.ceil(value / 1000) * 1000;
}

/**
 * The queue report's rows (GET /api/v1/reports/queues: one per bucket and queue) as the
 * centre's service level per bucket, at the bucket's end: Σ answered within each queue's
 * threshold / Σ each queue's denominator, never an average of percentages. A row gives its
 * numerator (`answered_within`) and its percentage; its denominator is their ratio (a count,
 * so rounding it recovers it exactly from the percentage's 0.1 precision), or, for a row at
 * 0 %, the answered and the abandons past the short cutoff (the queue's default formula).
 */
export function reportBuckets(rows) {
  const byBucket = new Map();
  for (const row of rows) {
    const at = Date.parse(row.bucket_end);
    if (Number.isNaN(at) || row.service_level_pct === null || row.service_level_pct === undefined) continue;
    const met = row.answered_within || 0;
    const counted =
      row.service_level_pct > 0
        ? Math.round((met * 100) / row.service_level_pct)
        : (row.answered || 0) + (row.abandoned || 0) - (row.short_abandoned || 0);
    const bucket = byBucket.get(at) || { met: 0, counted: 0 };
    bucket.met += met;
    bucket.counted += counted;
    byBucket.set(at, bucket);
  }
  return [...byBucket.entries()].map(([at, b]) => ({ at, sl: b.counted > 0 ? (100 * b.met) / b.counted : null }));
}
