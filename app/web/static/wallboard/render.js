// Drawing the wallboard's figures (the shapes are those of docs/websockets.md, "Live figures").
//
// Everything is built with dom.js from the frames' values: a queue's name or an away reason
// is shown as text, never parsed. Service levels are coloured against their target — on
// target, within WARN_POINTS below it, or further below — and always say so in words too.
// The centre has no target of its own: its figure is compared with the queues' targets
// weighted by each queue's share of the formula's denominator (the contacts that count),
// which is the target the centre meets exactly when every queue meets its own.

import { h, replace, text } from "../js/dom.js";
import { dateTime, duration, t } from "../js/i18n.js";

const WARN_POINTS = 10;
const STATES = ["idle", "offered", "busy", "wrap_up"];
const STATUSES = ["available", "away", "offline"];

export function count(value) {
  return value === null || value === undefined ? "—" : String(value);
}

export function pct(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(1)}%`;
}

export function seconds(value) {
  return value === null || value === undefined ? "—" : duration(value);
}

/** "ok", "warn", "danger" or "muted" for a service level against its target. */
export function slLevel(value, target) {
  if (value === null || value === undefined || target === null || target === undefined) return "muted";
  if (value >= target) return "ok";
  if (value >= target - WARN_POINTS) return "warn";
  return "danger";
}

/** Has a span had any contact: offered in it, or waiting now (since before it began)? */
export function hadContacts(figures, live) {
  return Boolean((figures && figures.offered > 0) || (live && live.waiting > 0));
}

// No service level yet: "no contacts yet" only when there were none; contacts waiting, or
// abandoned too soon to count, have no level until one is answered.
function slBadge(value, target, contacts) {
  const level = slLevel(value, target);
  const none = contacts ? "wallboard.sl.none_answered" : "wallboard.sl.none";
  const words = { ok: "wallboard.sl.on_target", warn: "wallboard.sl.near_target", danger: "wallboard.sl.below_target", muted: none };
  return h(
    "span",
    { class: ["sl", level], dataset: { level } },
    h("span", { class: "sl-value", text: pct(value) }),
    " ",
    h("span", { class: `badge ${level}`, text: t(words[level], { target: pct(target) }) }),
  );
}

/** What counts in a queue's service-level formula over a span. */
function denominator(figures) {
  const sl = figures.service_level || {};
  const late = (figures.abandoned || 0) - (figures.short_abandoned || 0);
  return (figures.answered || 0) + (sl.counts_abandons ? late : 0);
}

/** The centre's target: the queues' targets weighted by their denominators (null: no contact). */
export function centreTarget(queues, span) {
  let weight = 0;
  let sum = 0;
  for (const queue of queues) {
    const figures = queue[span];
    if (!figures || !figures.service_level) continue;
    const d = denominator(figures);
    weight += d;
    sum += d * figures.service_level.target_pct;
  }
  return weight > 0 ? sum / weight : null;
}

function tile(id, label, value, extra) {
  return h(
    "div",
    { class: "tile", id, dataset: { field: id } },
    h("span", { class: "tile-label", text: label }),
    h("span", { class: "tile-value", text: value }),
    extra || null,
  );
}

/** The centre's big numbers. */
export function renderTiles(container, board) {
  const overall = board.overall;
  const live = overall ? overall.live : sumLive(board.queues);
  const now = overall ? overall.interval : null;
  const target = centreTarget(board.queues, "interval");
  const children = [
    tile("overall-waiting", t("wallboard.waiting"), count(live.waiting)),
    tile("overall-longest", t("wallboard.longest_wait"), seconds(live.longest_wait_s)),
  ];
  if (now) {
    children.push(
      tile("overall-sl", t("wallboard.service_level"), "", slBadge(now.service_level_pct, target, hadContacts(now, live))),
      tile("overall-asa", t("wallboard.asa"), seconds(now.asa_s)),
      tile("overall-aht", t("wallboard.aht"), seconds(now.aht_s)),
      tile("overall-abandon-rate", t("wallboard.abandon_rate"), pct(now.abandon_rate_pct)),
      tile("overall-occupancy", t("wallboard.occupancy"), pct(now.occupancy_pct)),
      tile("overall-needed", t("wallboard.agents_needed"), count(now.erlang_agents_needed)),
    );
  }
  replace(container, ...children);
}

function sumLive(queues) {
  return {
    waiting: queues.reduce((s, q) => s + q.live.waiting, 0),
    longest_wait_s: queues.reduce((m, q) => Math.max(m, q.live.longest_wait_s), 0),
    agents: null,
  };
}

const FIGURE_ROWS = [
  ["offered", (f) => count(f.offered)],
  ["answered", (f) => count(f.answered)],
  ["abandoned", (f) => t("wallboard.abandoned_value", { all: count(f.abandoned), short: count(f.short_abandoned) })],
  ["timed_out", (f) => count(f.timed_out)],
  ["transferred_out", (f) => count(f.transferred_out)],
  ["asa", (f) => seconds(f.asa_s)],
  ["aht", (f) => seconds(f.aht_s)],
  ["abandon_rate", (f) => pct(f.abandon_rate_pct)],
  ["occupancy", (f) => pct(f.occupancy_pct)],
  ["agents_needed", (f) => count(f.erlang_agents_needed)],
];

function spanHeading(figures, key) {
  const since = figures && figures.from ? dateTime(figures.from) : "";
  return h("th", { scope: "col", text: t(key, { name: (figures && figures.name) || "", since }) });
}

/** The centre over the interval and the day, side by side, with the SL formula. */
export function renderFigures(table, formula, board) {
  const overall = board.overall;
  if (!overall) {
    replace(table, h("caption", { text: t("wallboard.figures.caption") }), h("tbody", {}, h("tr", {}, h("td", { text: t("wallboard.no_centre") }))));
    text(formula, "");
    return;
  }
  const { interval, day } = overall;
  const targets = { interval: centreTarget(board.queues, "interval"), day: centreTarget(board.queues, "day") };
  const rows = [
    h(
      "tr",
      {},
      h("th", { scope: "row", text: t("wallboard.service_level") }),
      h("td", {}, slBadge(interval.service_level_pct, targets.interval, hadContacts(interval, overall.live))),
      h("td", {}, slBadge(day.service_level_pct, targets.day, hadContacts(day, overall.live))),
    ),
    ...FIGURE_ROWS.map(([key, show]) =>
      h("tr", { dataset: { row: key } }, h("th", { scope: "row", text: t(`wallboard.${key}`) }), h("td", { text: show(interval) }), h("td", { text: show(day) })),
    ),
  ];
  replace(
    table,
    h("caption", { text: t("wallboard.figures.caption") }),
    h("thead", {}, h("tr", {}, h("td", {}), spanHeading(interval, "wallboard.span.interval"), spanHeading(day, "wallboard.span.day"))),
    h("tbody", {}, rows),
  );
  text(formula, t("wallboard.formula", { formula: t("wallboard.formula.centre") }));
}

/** A queue's service-level formula in the page's language, from the settings the frame
 * gives with it (the service's `formula` is the same in English). */
export function queueFormula(sl) {
  if (!sl || sl.threshold_s === undefined || sl.threshold_s === null) return null;
  const threshold = t("wallboard.formula.seconds", { seconds: sl.threshold_s });
  if (!sl.counts_abandons) return t("wallboard.formula.queue_answered", { threshold });
  const cutoff = t("wallboard.formula.seconds", { seconds: sl.short_abandon_s ?? 0 });
  return t("wallboard.formula.queue", { threshold, cutoff });
}

/** Agents by status (with away reasons) and by state. */
export function renderAgents(container, agents) {
  if (!agents) {
    replace(container, h("p", { class: "empty", text: t("wallboard.no_centre") }));
    return;
  }
  const reasons = Object.entries(agents.away_reasons || {});
  replace(
    container,
    h("h3", { text: t("wallboard.agents.by_status") }),
    h("dl", { class: "facts big" }, STATUSES.flatMap((s) => [h("dt", { text: t(`wallboard.status.${s}`) }), h("dd", { dataset: { status: s }, text: count(agents.by_status[s]) })])),
    reasons.length
      ? h("ul", { class: "reasons" }, reasons.map(([reason, n]) => h("li", { class: "user-text", text: t("wallboard.agents.reason", { reason: reason || t("wallboard.agents.no_reason"), count: n }) })))
      : null,
    h("h3", { text: t("wallboard.agents.by_state") }),
    h("dl", { class: "facts big" }, STATES.flatMap((s) => [h("dt", { text: t(`wallboard.state.${s}`) }), h("dd", { dataset: { state: s }, text: count(agents.by_state[s]) })])),
  );
}

const QUEUE_COLUMNS = [
  ["waiting", (q) => count(q.live.waiting)],
  ["longest_wait", (q) => seconds(q.live.longest_wait_s)],
  ["agents", (q) => t("wallboard.agents.short", { available: q.live.agents.by_status.available, busy: q.live.agents.by_state.busy, total: q.live.agents.total })],
  ["offered", (q, f) => count(f.offered)],
  ["answered", (q, f) => count(f.answered)],
  ["abandoned", (q, f) => t("wallboard.abandoned_value", { all: count(f.abandoned), short: count(f.short_abandoned) })],
  ["service_level", null],
  ["asa", (q, f) => seconds(f.asa_s)],
  ["aht", (q, f) => seconds(f.aht_s)],
  ["abandon_rate", (q, f) => pct(f.abandon_rate_pct)],
  ["occupancy", (q, f) => pct(f.occupancy_pct)],
  ["agents_needed", (q, f) => count(f.erlang_agents_needed)],
];

/** One row per queue over `span` ("interval" or "day"). */
export function renderQueues(table, board, span) {
  const head = h("tr", {}, h("th", { scope: "col", text: t("wallboard.queue") }), QUEUE_COLUMNS.map(([key]) => h("th", { scope: "col", text: t(`wallboard.${key}`) })));
  const rows = board.queues.map((queue) => {
    const figures = queue[span] || queue.interval;
    const cells = QUEUE_COLUMNS.map(([key, show]) => {
      if (key === "service_level") {
        const sl = figures.service_level || {};
        const said = queueFormula(sl) ?? sl.formula;
        const title = said ? t("wallboard.formula", { formula: said }) : null;
        const badge = slBadge(figures.service_level_pct, sl.target_pct, hadContacts(figures, queue.live));
        return h("td", { dataset: { field: key }, title }, badge);
      }
      return h("td", { dataset: { field: key }, text: show(queue, figures) });
    });
    return h("tr", { dataset: { queue: queue.queue } }, h("th", { scope: "row", class: "user-text", text: queue.queue }), cells);
  });
  const caption = t(span === "day" ? "wallboard.queues.caption_day" : "wallboard.queues.caption_interval");
  replace(
    table,
    h("caption", { text: caption }),
    h("thead", {}, head),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: QUEUE_COLUMNS.length + 1, class: "empty", text: t("wallboard.queues.none") }))),
  );
}

/** Complaint deadlines: the counts, and the at-risk list. */
export function renderComplaints(tiles, list, counts) {
  if (!counts) {
    replace(tiles, h("p", { class: "empty", text: t("wallboard.complaints.none_yet") }));
    replace(list);
    return;
  }
  replace(
    tiles,
    tile("complaints-due-today", t("wallboard.complaints.due_today"), count(counts.due_today)),
    h("div", { class: ["tile", counts.at_risk > 0 ? "warn" : null], id: "complaints-at-risk", dataset: { field: "at_risk" } }, h("span", { class: "tile-label", text: t("wallboard.complaints.at_risk") }), h("span", { class: "tile-value", text: count(counts.at_risk) })),
    h("div", { class: ["tile", counts.breached > 0 ? "danger" : null], id: "complaints-breached", dataset: { field: "breached" } }, h("span", { class: "tile-label", text: t("wallboard.complaints.breached") }), h("span", { class: "tile-value", text: count(counts.breached) })),
  );
  const items = counts.at_risk_list || [];
  if (!items.length) {
    replace(list, h("p", { class: "empty", text: t("wallboard.complaints.none_at_risk") }));
    return;
  }
  const rows = items.map((item) => {
    const reference = item.complaint_id ? h("a", { href: `/desk#case/${encodeURIComponent(item.complaint_id)}`, text: item.reference }) : item.reference;
    const used = typeof item.elapsed === "number" ? `${Math.round(item.elapsed * 100)}%` : "—";
    const level = typeof item.elapsed === "number" && item.elapsed >= 1 ? "danger" : "warn";
    return h(
      "tr",
      { dataset: { reference: item.reference } },
      h("th", { scope: "row", class: "user-text" }, reference),
      h("td", { text: item.due_at ? dateTime(item.due_at) : "—" }),
      h("td", {}, h("span", { class: `badge ${level}`, text: used })),
      h("td", { class: "user-text", text: assigneeOf(item) }),
    );
  });
  replace(
    list,
    h(
      "table",
      { id: "at-risk-table" },
      h("caption", { text: t("wallboard.complaints.at_risk_list") }),
      h("thead", {}, h("tr", {}, ["reference", "due", "elapsed", "assignee"].map((key) => h("th", { scope: "col", text: t(`wallboard.complaints.${key}`) })))),
      h("tbody", {}, rows),
    ),
  );
}

function assigneeOf(item) {
  const who = item.assignee;
  if (who === null || who === undefined) return t("wallboard.complaints.unassigned");
  if (typeof who === "object") return who.name || who.username || String(who.id);
  return String(who);
}
