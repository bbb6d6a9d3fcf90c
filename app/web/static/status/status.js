// The customer's status page: a complaint by its reference and the phone number it gave.
//
// GET /api/v1/public/complaints/{reference}?phone= answers with what the customer may know
// (status, deadlines, the public timeline) and nothing internal; a wrong number and an unknown
// reference are one answer, shown as one message. No sign-in: the call is anonymous. The
// phone number never goes into the page's address.

import { api, ApiError, describe } from "../js/api.js";
import { byId, h, replace, text } from "../js/dom.js";
import { dateTime, inUnits, onChange, t, waitInWords } from "../js/i18n.js";
import { startPage } from "../js/page.js";

let shown = null;
let said = null; // what the lookup problem says, as a function: said again in a new language

function problem(error) {
  if (error instanceof ApiError && error.status === 404) return t("status.not_found");
  if (error instanceof ApiError && error.status === 429) {
    return t("status.too_many", { wait: waitInWords(error.retryAfter || 60) });
  }
  return describe(error);
}

function fact(label, value) {
  return [h("dt", { text: t(label) }), h("dd", {}, value)];
}

function when(value) {
  return value ? h("time", { datetime: value, text: dateTime(value) }) : "—";
}

function deadlineRow(deadline) {
  return h(
    "tr",
    {},
    h("td", { text: t(`clock.${deadline.clock}`) }),
    h("td", {}, when(deadline.due_at)),
    h("td", { text: t(`clock_status.${deadline.status}`) }),
  );
}

// The status after a move is said only when the move's name does not already say it
// ("Registered", not "Registered — Registered").
function timelineItem(line) {
  const event = t(`status.event.${line.event}`);
  const status = t(`complaint.status.${line.status}`);
  return h(
    "li",
    {},
    when(line.at),
    h("strong", { text: event }),
    status === event ? null : [" — ", status],
    line.days ? h("p", { text: t("status.extended_by", { days: inUnits(line.days, "day") }) }) : null,
    line.reason ? h("p", { class: "user-text reason", text: line.reason }) : null,
    line.text ? h("p", { class: "user-text note", text: line.text }) : null,
  );
}

function sayProblem(what) {
  said = what;
  text(byId("lookup-problem"), what ? what() : "");
}

function render() {
  if (said) sayProblem(said);
  if (!shown) return;
  text(byId("result-heading"), t("status.result_heading", { reference: shown.reference }));
  replace(
    byId("summary"),
    fact("status.current", h("span", { class: "badge muted", id: "current-status", text: t(`complaint.status.${shown.status}`) })),
    fact("status.registered_at", when(shown.registered_at)),
    fact("status.due_at", when(shown.due_at)),
  );
  replace(byId("deadlines-body"), shown.deadlines.map(deadlineRow));
  replace(byId("timeline"), shown.timeline.map(timelineItem));
  byId("result").hidden = false;
}

async function lookup(event) {
  event.preventDefault();
  const reference = byId("reference").value.trim();
  const phone = byId("phone").value.trim();
  if (!reference || !phone) {
    sayProblem(() => t("status.missing"));
    byId(reference ? "phone" : "reference").focus();
    return;
  }
  const button = byId("lookup-submit");
  button.disabled = true;
  sayProblem(null);
  try {
    shown = await api(`/api/v1/public/complaints/${encodeURIComponent(reference)}`, { query: { phone }, anonymous: true });
    render();
    byId("result").focus();
  } catch (error) {
    shown = null;
    byId("result").hidden = true;
    sayProblem(() => problem(error));
  } finally {
    button.disabled = false;
  }
}

async function main() {
  await startPage({ title: "status.title", dictionaries: ["status"], signedIn: false });
  const given = new URLSearchParams(location.search).get("reference");
  if (given) byId("reference").value = given;
  byId("lookup").addEventListener("submit", lookup);
  byId("lookup-submit").disabled = false; // never a plain form submission (a phone in a URL)
  onChange(render);
}

main();
