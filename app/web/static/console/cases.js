// The agent's complaint cases with their clocks.
//
// An agent's list is what GET /complaints shows an agent (the cases assigned to them or that
// they registered); a supervisor's or an admin's is the cases assigned to them (their whole
// site's are on the desk). Open cases only, with the resolution deadline as time left, marked
// at risk in its last fifth and overdue past it. The list is read again at once when a
// complaint event reaches the console: /ws/agent brings the user the events of the complaints
// they hold, and the one that takes a complaint from them (it names them as
// previous_agent_id), so a case given to them appears and one taken away goes. It is also
// read when the socket starts again from a snapshot (events may have been missed), when the
// page comes back into view, and every BACKSTOP_MS, for what no event says (a complaint the
// user registered and someone else holds). The time left is drawn again every TICK_MS.

import { allPages, serverNow } from "../js/api.js";
import { byId, h, replace } from "../js/dom.js";
import { dateTime, duration, t } from "../js/i18n.js";
import { showError } from "../js/page.js";
import { categoriesText } from "../desk/format.js";
import { rules } from "../js/rules.js";

// The lifecycle's sets, as the service writes them (/pages/rules.json): the open statuses,
// and those where the resolution deadline counts down (it counts where the API's overdue
// does, but for a pause, which holds it). Read before any case is drawn (``openStatuses``).
let open = new Set();
let running = new Set();

/** The open statuses (neither finished nor archived), once the service's rules are read. */
export async function openStatuses() {
  const table = await rules();
  open = new Set(table.complaints.open);
  running = new Set(table.complaints.deadline_counts.filter((s) => s !== "paused"));
  return open;
}
const AT_RISK = 0.8;
const BACKSTOP_MS = 300000;
const TICK_MS = 30000; // the time left, drawn again from what was read

let model = null;
let user = null;
let cases = [];
let reading = null;
let again = false;

/** How a complaint's resolution deadline stands: "ok", "at_risk", "overdue" or "stopped". */
export function deadlineState(complaint, now = serverNow()) {
  if (!complaint.due_at || !running.has(complaint.status)) return "stopped";
  const due = Date.parse(complaint.due_at);
  const start = Date.parse(complaint.registered_at);
  if (now >= due) return "overdue";
  return (now - start) / Math.max(1, due - start) >= AT_RISK ? "at_risk" : "ok";
}

/** A badge with the time left to a complaint's deadline (or past it). */
export function deadlineBadge(complaint) {
  const state = deadlineState(complaint);
  const classes = { ok: "ok", at_risk: "warn", overdue: "danger", stopped: "muted" };
  const left = complaint.due_at ? (Date.parse(complaint.due_at) - serverNow()) / 1000 : 0;
  const words = {
    ok: () => t("deadline.left", { time: duration(left) }),
    at_risk: () => t("deadline.at_risk", { time: duration(left) }),
    overdue: () => t("deadline.overdue", { time: duration(-left) }),
    stopped: () => (complaint.status === "paused" ? t("deadline.paused") : t("deadline.stopped")),
  };
  return h(
    "span",
    { class: "deadline", dataset: { deadline: state } },
    h("span", { class: ["badge", classes[state]], text: words[state]() }),
    complaint.due_at ? [" ", h("time", { datetime: complaint.due_at, text: dateTime(complaint.due_at) })] : null,
  );
}

/**
 * The complaint's reference as a link to its case on the desk, opened in a tab of the desk's
 * own (the same one each time), so the console keeps its offers and its call.
 */
export function caseLink(complaint) {
  return h("a", { href: `/desk#case/${complaint.id}`, target: "hotline-desk", class: "case-link", title: t("console.open_in_desk"), text: complaint.reference });
}

function row(complaint) {
  return h(
    "tr",
    { dataset: { complaintId: complaint.id } },
    h("td", {}, h("strong", {}, caseLink(complaint))),
    h("td", { text: t(`complaint.status.${complaint.status}`) }),
    h("td", { class: "user-text", text: complaint.branch }),
    h("td", { class: "user-text", text: categoriesText(complaint.categories) }),
    h("td", {}, deadlineBadge(complaint)),
  );
}

function render() {
  replace(byId("cases-body"), cases.map(row));
  byId("cases").hidden = cases.length === 0;
  byId("no-cases").hidden = cases.length > 0;
}

async function read() {
  const query = user.role === "agent" ? {} : { assignee: user.id };
  const [items, statuses] = await Promise.all([allPages("/api/v1/complaints", { query, maxPages: 5 }), openStatuses()]);
  return items.filter((c) => statuses.has(c.status));
}

/** Read the cases again (one read at a time; a request during one reads once more after). */
export async function refreshCases() {
  if (reading) {
    again = true;
    return reading;
  }
  reading = (async () => {
    do {
      again = false;
      try {
        cases = await read();
        render();
      } catch (error) {
        showError(error);
      }
    } while (again);
  })();
  try {
    await reading;
  } finally {
    reading = null;
  }
  return undefined;
}

/** Show the signed-in user's cases and keep them current. */
export function mountCases(consoleModel, signedIn) {
  model = consoleModel;
  user = signedIn;
  model.addEventListener("cases", refreshCases);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refreshCases();
  });
  setInterval(refreshCases, BACKSTOP_MS);
  setInterval(render, TICK_MS);
  refreshCases();
}

/** Redraw in the current language. */
export function redrawCases() {
  render();
}
