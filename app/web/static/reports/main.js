// The reports page: pick a range, an interval and a queue or an agent, then see the report
// or download it (GET /api/v1/reports/queues and /reports/agents, docs/reports.md) as CSV or
// JSON; or the complaints registered in the range, cut into periods and grouped by category,
// channel, branch, tier or severity (GET /api/v1/complaints/reports/summary: counts, the
// share resolved in time, the time to resolve), its periods cut at the browser's midnights;
// or the resolved complaints' root causes, by category, branch and responsible unit, each
// split by whether the complaint was upheld (GET /api/v1/complaints/reports/root-causes);
// or the IVR's outcomes for the calls started in the range, with where callers hung up in the
// menus (GET /api/v1/ivr/reports/outcomes).
// The table shows the report's own columns in its own order, so the page needs no
// change when the report gains a figure. The range is entered in the browser's time and
// sent in UTC; the service says what is wrong with it (a 422 naming the field), and the page
// marks that field.
//
// The agents offered are those the access table's reports/read lets the user report on (as
// the service judges it: a supervisor themselves and the agents of their own site, an admin
// everyone). A refusal (403) is said in the page's language. What the page says itself (a
// missing field, a refusal, a download) is kept as what says it, so that a switch of language
// says it again.

import { allPages, api, ApiError, describe, me } from "../js/api.js";
import { byId, h, replace, show, text } from "../js/dom.js";
import { dateTime, onChange, t } from "../js/i18n.js";
import { announce, clearErrors, startPage } from "../js/page.js";
import { save } from "../desk/download.js";
import { label } from "../desk/format.js";
import { hasAny, may, ruleOf, rules } from "../js/rules.js";

const DAY_MS = 86400 * 1000;
const LIST_PAGES = 50; // the queues or agents offered: up to 5,000, and said when there are more
const FIELD_IDS = { from: "report-from", to: "report-to", interval: "report-interval", queue_id: "report-subject", agent_id: "report-subject", by: "report-by", period: "report-period" };
const PATHS = { queues: "/api/v1/reports/queues", agents: "/api/v1/reports/agents", complaints: "/api/v1/complaints/reports/summary", causes: "/api/v1/complaints/reports/root-causes", ivr: "/api/v1/ivr/reports/outcomes" };
// The fields besides the range each kind of report takes.
const FIELDS = { queues: ["interval-field", "subject-field"], agents: ["interval-field", "subject-field"], complaints: ["period-field", "by-field"], causes: [], ivr: [] };
// A complaint summary's groups, named in the page's language (the code when a name is lacking).
const GROUP_LABELS = { category: "desk.category", channel: "channel", tier: "tier", severity: "desk.severity" };
let last = null;
let lastKind = null; // the kind of report `last` is
let table = null;
let user = null;
const said = { "report-problem": null, "report-done": null, "report-subject-problem": null }; // element id: what says its text
let fills = 0; // the lists asked for: only the last one asked is shown

/** Show `what()` in the element `id` (nothing when null), and say it again after a switch. */
function say(id, what) {
  said[id] = what;
  text(byId(id), what ? what() : "");
}

function localValue(date) {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 16);
}

function midnight(offsetDays) {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return new Date(d.getTime() + offsetDays * DAY_MS);
}

/** Set the range; `to` null is "until now" (the field left empty: the service's now). */
function setRange(from, to) {
  byId("report-from").value = localValue(from);
  byId("report-to").value = to ? localValue(to) : "";
}

const PRESETS = {
  today: () => [midnight(0), null],
  yesterday: () => [midnight(-1), midnight(0)],
  week: () => [midnight(-6), null],
};

function kind() {
  return document.querySelector('input[name="kind"]:checked').value;
}

/** Show the fields the chosen kind of report takes; list the queues or agents for theirs. */
async function kindChanged() {
  const wanted = FIELDS[kind()];
  for (const id of new Set(Object.values(FIELDS).flat())) show(byId(id), wanted.includes(id));
  if (wanted.includes("subject-field")) await fillSubjects();
}

async function fillSubjects() {
  const select = byId("report-subject");
  const agents = kind() === "agents";
  // Marked with their keys, so that a switch of language says them again (i18n's `apply`).
  const heading = byId("report-subject-label");
  heading.dataset.i18n = agents ? "reports.agent" : "reports.queue";
  text(heading, t(heading.dataset.i18n));
  const every = agents ? "reports.all_agents" : "reports.all_queues";
  replace(select, h("option", { value: "", text: t(every), dataset: { i18n: every } }));
  say("report-subject-problem", null);
  const turn = ++fills;
  let items;
  try {
    items = agents ? await reportableAgents() : await allPages("/api/v1/queues", { maxPages: LIST_PAGES });
  } catch (error) {
    // A switch of kind made since asks for its own list: this one is not shown.
    if (turn !== fills) return;
    // "Every …" still works; the user is told why the list is short.
    const why = agents ? "reports.agents_unavailable" : "reports.queues_unavailable";
    say("report-subject-problem", () => t(why, { reason: describe(error) }));
    return;
  }
  if (turn !== fills) return;
  select.append(...items.map((item) => h("option", { value: String(item.id), text: agents && item.site ? `${item.name} (${item.site})` : item.name })));
  if (items.more) {
    const cut = agents ? "reports.agents_cut" : "reports.queues_cut";
    say("report-subject-problem", () => t(cut, { count: items.length }));
  }
}

/** May the user see `agent`'s report? The service's own check (reports_router.agent_report). */
function mayReportOn(agent) {
  return may(table, user, "reports", "read", { ownerIds: [agent.id], sites: [agent.site ?? null] });
}

/** The agents the user may report on: a supervisor's site only is asked for, then every
 * agent is checked as the service would. */
async function reportableAgents() {
  const siteOnly = ruleOf(table, user.role, "reports", "read") === "same site" && user.site;
  const agents = await allPages("/api/v1/agents", { query: siteOnly ? { site: user.site } : {}, maxPages: LIST_PAGES });
  return Object.assign(agents.filter(mayReportOn), { more: agents.more });
}

/** The report's query: the range, and what else the kind of report takes (`FIELDS`). */
function query() {
  const of = kind();
  const from = byId("report-from").value;
  const to = byId("report-to").value;
  const q = {};
  if (FIELDS[of].includes("interval-field")) q.interval = byId("report-interval").value;
  // The complaint reports cut days at the browser's midnights, as the range is entered.
  if (of === "complaints" || of === "causes") q.tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (from) q.from = new Date(from).toISOString();
  if (to) q.to = new Date(to).toISOString();
  if (FIELDS[of].includes("by-field")) {
    for (const name of ["by", "period"]) if (byId(FIELD_IDS[name]).value) q[name] = byId(FIELD_IDS[name]).value;
  }
  const subject = byId("report-subject").value;
  if (FIELDS[of].includes("subject-field") && subject) q[of === "agents" ? "agent_id" : "queue_id"] = subject;
  return q;
}

function checkRange() {
  const missing = ["from"].filter((name) => !byId(FIELD_IDS[name]).value);
  if (!missing.length) return true;
  say("report-problem", () => t("reports.missing", { fields: missing.map((n) => t(`reports.${n}`)).join(t("reports.separator")) }));
  for (const name of missing) byId(FIELD_IDS[name]).setAttribute("aria-invalid", "true");
  byId(FIELD_IDS[missing[0]]).focus();
  return false;
}

function refused(error, q) {
  if (error instanceof ApiError && error.status === 403) {
    say("report-problem", () => t(q.agent_id ? "reports.forbidden_agent" : "reports.forbidden"));
  } else {
    say("report-problem", () => describe(error));
  }
  for (const field of error.fields || []) {
    const name = String(field.field || "").split(".").pop();
    if (FIELD_IDS[name]) byId(FIELD_IDS[name]).setAttribute("aria-invalid", "true");
  }
}

function cell(value, column = "") {
  if (value === null || value === undefined) return "—";
  if (/_(start|end)$/.test(column) && typeof value === "string") return dateTime(value);
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(1);
  if (typeof value === "object") return "pct" in value ? cell(value.pct) : JSON.stringify(value);
  return String(value);
}

/** The IVR's outcome report as rows: each outcome, the callers who hung up waiting in a queue,
 * and each menu node callers hung up at, with the share of the calls started. */
function ivrRows(report) {
  if (!report.calls) return [];
  const row = (what, calls) => ({ what, calls, share_pct: (100 * calls) / report.calls });
  return [
    ...report.outcomes.map((o) => row({ outcome: o.outcome }, o.calls)),
    row({ queue: true }, report.abandoned_in_queue),
    ...report.drop_off.map((d) => row({ node: d.node }, d.calls)),
  ];
}

/** What an IVR report's row counts, in the page's language. */
function ivrWhat(what) {
  if (what.node !== undefined) return t("reports.ivr.hung_up_at", { node: what.node });
  if (what.queue) return t("reports.ivr.abandoned_in_queue");
  return label("reports.ivr.outcome", what.outcome);
}

/** The report `of` a kind as the table's rows. */
function rowsOf(report, of) {
  if (Array.isArray(report)) return report;
  if (of === "ivr") return ivrRows(report);
  const rows = (report && (report.items || report.rows || report.buckets)) || [];
  if (of !== "complaints") return rows;
  // A complaint summary's row: its period, its group (when grouped) and its figures.
  return rows.map((row) => ({ period_start: row.period_start, period_end: row.period_end, ...(report.by ? { key: row.key } : {}), ...row.figures }));
}

/** A group of `by` (a complaint summary's, or a root cause's key) in the page's language
 * where the page knows its name. */
function groupOf(by, value) {
  if (value === null || value === undefined) {
    // No category or severity yet (not classified), no customer's tier (none known), no
    // responsible unit named; a root cause's "all" has no key.
    const key = `reports.group.none.${by}`;
    const said = t(key);
    return said === key ? cell(value) : said;
  }
  return GROUP_LABELS[by] ? label(GROUP_LABELS[by], value) : cell(value);
}

function drawTable(report) {
  const rows = rowsOf(report, lastKind);
  const columns = rows.length ? Object.keys(rows[0]) : [];
  const heading = (c) => (c === "key" && report.by ? t(`reports.by.${report.by}`) : labelOf(c, lastKind));
  const value = (row, c) => {
    if (c === "key") return groupOf(report.by || row.dimension, row[c]); // a summary's group, a cause's key
    if (c === "what") return ivrWhat(row[c]);
    if (c === "dimension") return label("reports.dimension", row[c]); // a root cause's
    return cell(row[c], c);
  };
  const ivr = lastKind === "ivr";
  const timed = ivr && report.mean_ivr_s !== null;
  const caption = ivr ? t(timed ? "reports.ivr.caption" : "reports.ivr.caption_untimed", { calls: report.calls, seconds: timed ? cell(report.mean_ivr_s) : "" }) : t("reports.caption", { count: rows.length });
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", text: heading(c) })));
  replace(
    byId("report-table"),
    h("caption", { text: caption }),
    h("thead", {}, head),
    h("tbody", {}, rows.length ? null : h("tr", {}, h("td", { class: "empty", text: t("reports.none") })), rows.map((row) => h("tr", {}, columns.map((c, i) => h(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : null, class: "user-text", text: value(row, c) }))))),
  );
  show(byId("result"), true);
}

/** A column's name: the kind's own where it has one (a complaint "rejected" is no offer). */
function labelOf(column, of) {
  for (const key of [`reports.column.${of}.${column}`, `reports.column.${column}`]) {
    const said = t(key);
    if (said !== key) return said;
  }
  return column;
}

async function showReport(event) {
  event.preventDefault();
  clear();
  if (!checkRange()) return forget();
  const q = query();
  try {
    const of = kind();
    last = await api(PATHS[of], { query: q });
    lastKind = of;
    drawTable(last);
    announce(t("reports.shown", { count: rowsOf(last, of).length }));
  } catch (error) {
    forget();
    refused(error, q);
  }
}

/** A report asked for and not shown takes the one shown before away: the table on the page
 * is always the one the form asks for. */
function forget() {
  last = null;
  show(byId("result"), false);
}

async function download(format) {
  clear();
  if (!checkRange()) return;
  const accept = format === "csv" ? "text/csv" : "application/json";
  const q = query();
  const cut = { complaints: `${q.by || "all"}-${q.period || "range"}`, causes: "root-causes", ivr: "outcomes" }[kind()] || q.interval;
  const name = `${kind()}-${cut}-${(q.from || "").slice(0, 10)}-${(q.to || "").slice(0, 10)}.${format}`;
  try {
    const saved = await save(await api(PATHS[kind()], { query: q, headers: { Accept: accept }, raw: true }), name);
    announce(t("reports.downloaded", { name: saved }));
    say("report-done", () => t("reports.downloaded", { name: saved }));
  } catch (error) {
    refused(error, q);
  }
}

function clear() {
  clearErrors();
  say("report-problem", null);
  say("report-done", null);
  for (const id of new Set(Object.values(FIELD_IDS))) byId(id).removeAttribute("aria-invalid");
}

async function main() {
  await startPage({ title: "reports.title", dictionaries: ["reports", "desk"] });
  [table, user] = await Promise.all([rules(), me()]);
  if (!hasAny(table, user, "reports", "read")) {
    show(byId("not-yours"), true);
    return;
  }
  show(byId("report-panel"), true);
  setRange(...PRESETS.today());
  for (const [name, range] of Object.entries(PRESETS)) byId(`preset-${name}`).addEventListener("click", () => setRange(...range()));
  for (const input of document.querySelectorAll('input[name="kind"]')) input.addEventListener("change", kindChanged);
  byId("report-form").addEventListener("submit", showReport);
  byId("report-show").disabled = false;
  byId("download-csv").addEventListener("click", () => download("csv"));
  byId("download-json").addEventListener("click", () => download("json"));
  onChange(() => {
    for (const [id, what] of Object.entries(said)) if (what) say(id, what);
    if (last) drawTable(last);
  });
  await kindChanged();
  // Today's queues, as a supervisor opening the page most often wants; any other is a click away.
  byId("report-form").requestSubmit();
}

main();
