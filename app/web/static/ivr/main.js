// The IVR page: every flow version as a diagram drawn from its document; for those who
// manage the queues (the access table's `queues update`: supervisors and admins), uploading
// a new version and activating one.
//
// After an error, nothing shown stays as if current: a refused upload's earlier draft is
// dropped, a refused upload or activation reloads what is stored, and what a failed load
// could not replace is marked "not current" until a load succeeds.
//
// An upload the service refuses (422) names every problem by node and field. The page then
// draws the refused draft itself — it reads the document it sent, JSON or YAML (js-yaml,
// vendored) — and marks each problem on its node, so the supervisor sees where the flow is
// wrong, not only a list. Nothing of a refused draft is stored.

import { allPages, api, describe, me } from "../js/api.js";
import { byId, h, replace, show, text } from "../js/dom.js";
import { dateTime, onChange, t } from "../js/i18n.js";
import { announce, clearErrors, showError, startPage } from "../js/page.js";
import { may, rules } from "../js/rules.js";
import { drawDiagram, highlight, nodeTable } from "./diagram.js";
import { problemsByNode, titleOf } from "./graph.js";
import { load as loadYaml } from "./vendor/js-yaml/js-yaml.js";

const view = { flows: [], listed: false, shown: null, draft: null, manage: false };

/** Mark the flow list and the diagram panel as shown before an error (or current again). */
function markStale({ list, shown }) {
  for (const [id, stale] of [["flows-panel", list], ["diagram-panel", shown]]) {
    if (stale === undefined) continue;
    byId(id).classList.toggle("stale", stale);
    show(byId(`${id}-stale`), stale);
  }
}

/**
 * Load the list and the shown version (`selectId`, else the one shown, else the active one)
 * again. What a failed load could not replace is marked not current; never throws.
 */
async function reload(selectId) {
  try {
    view.flows = await allPages("/api/v1/ivr/flows");
    view.listed = true;
    drawList();
    markStale({ list: false });
  } catch (error) {
    showError(error);
    markStale({ list: view.listed, shown: Boolean(view.shown) });
    return;
  }
  const active = view.flows.find((f) => f.active_numbers.length) || view.flows[view.flows.length - 1];
  const id = selectId ?? (view.shown ? view.shown.id : active && active.id);
  try {
    if (id !== undefined && id !== null) view.shown = await api(`/api/v1/ivr/flows/${id}`);
    drawList();
    drawShown();
    markStale({ shown: false });
  } catch (error) {
    showError(error);
    markStale({ shown: Boolean(view.shown) });
  }
}

function isJson(textValue) {
  return textValue.trim().startsWith("{");
}

function parseDocument(textValue) {
  return isJson(textValue) ? JSON.parse(textValue) : loadYaml(textValue, { json: true });
}

function flowRow(flow) {
  const showIt = () => select(flow.id);
  return h(
    "tr",
    { dataset: { flow: flow.id, name: flow.name }, class: view.shown && view.shown.id === flow.id ? "current" : null },
    h("th", { scope: "row" }, h("button", { type: "button", class: "link", text: `${flow.name} v${flow.version}`, on: { click: showIt } })),
    h("td", { class: "user-text", text: flow.numbers.join(", ") || "—" }),
    h("td", { class: "user-text" }, flow.active_numbers.length ? h("span", { class: "badge ok", text: flow.active_numbers.join(", ") }) : h("span", { class: "badge muted", text: t("ivr.flows.inactive") })),
    h("td", { text: `${dateTime(flow.uploaded_at)} · ${flow.uploaded_by}` }),
  );
}

function drawList() {
  replace(
    byId("flows"),
    h("caption", { class: "visually-hidden", text: t("ivr.flows.heading") }),
    h("thead", {}, h("tr", {}, ["flow", "numbers", "active", "uploaded"].map((c) => h("th", { scope: "col", text: t(`ivr.flows.${c}`) })))),
    h("tbody", {}, view.flows.length ? view.flows.map(flowRow) : h("tr", {}, h("td", { colspan: 4, class: "empty", text: t("ivr.flows.none") }))),
  );
}

function draftHeading(doc) {
  const { name, version } = titleOf(doc);
  const named = name ?? t("ivr.diagram.unnamed");
  return version === null ? t("ivr.diagram.draft_unversioned", { name: named }) : t("ivr.diagram.draft", { name: named, version });
}

function drawShown() {
  const source = view.draft || view.shown;
  show(byId("diagram-panel"), Boolean(source));
  if (!source) return;
  const { byNode, flow } = view.draft ? problemsByNode(view.draft.fields) : { byNode: new Map(), flow: [] };
  const doc = source.document;
  text(byId("diagram-heading"), view.draft ? draftHeading(doc) : t("ivr.diagram.version", { name: source.name, version: source.version }));
  byId("diagram-panel").classList.toggle("refused", Boolean(view.draft));
  replace(byId("flow-problems"), ...(flow.length ? [h("p", { class: "field-error", text: t("ivr.problems.flow") }), h("ul", { class: "problems" }, flow.map((p) => h("li", { class: "user-text", text: `${p.field}: ${p.message}` })))] : []));
  const element = byId("diagram");
  const graph = drawDiagram(element, doc, byNode);
  nodeTable(byId("nodes"), graph, byNode, (name) => highlight(element, name));
  drawActivation();
}

function drawActivation() {
  const holder = byId("activation");
  const flow = view.shown;
  if (!view.manage || view.draft || !flow) {
    replace(holder);
    return;
  }
  const activate = async () => {
    clearErrors();
    try {
      const answer = await api(`/api/v1/ivr/flows/${flow.id}/activate`, { method: "POST", json: {} });
      announce(t("ivr.activate.done", { name: answer.name, version: answer.version, numbers: answer.active_numbers.join(", ") }));
    } catch (error) {
      showError(error); // refused: what is stored now is shown below it, not what was before
    }
    await reload(flow.id);
  };
  // The version already answers every number it declares: marked, not offered again.
  const remaining = flow.numbers.filter((number) => !flow.active_numbers.includes(number));
  const active = flow.active_numbers.length > 0;
  replace(
    holder,
    h(
      "p",
      {},
      active ? [h("span", { class: "badge ok", id: "active-mark", text: t("ivr.activate.active") }), " "] : null,
      active ? t("ivr.activate.answers", { numbers: flow.active_numbers.join(", ") }) : t("ivr.activate.idle"),
    ),
    active && remaining.length === 0 ? null : h("button", { type: "button", id: "activate", text: t("ivr.activate.button", { numbers: remaining.join(", ") || "—" }), disabled: remaining.length === 0, on: { click: activate } }),
  );
}

async function select(id) {
  clearErrors();
  try {
    view.shown = await api(`/api/v1/ivr/flows/${id}`);
    view.draft = null;
    drawList();
    drawShown();
    markStale({ shown: false });
    byId("diagram-heading").focus();
  } catch (error) {
    showError(error);
    markStale({ shown: true });
  }
}

async function upload(event) {
  event.preventDefault();
  const area = byId("flow-text");
  const problem = byId("upload-problem");
  const value = area.value;
  clearErrors();
  if (!value.trim()) {
    text(problem, t("ivr.upload.empty"));
    area.focus();
    return;
  }
  text(problem, "");
  const type = isJson(value) ? "application/json" : "application/yaml";
  let body;
  try {
    const response = await api("/api/v1/ivr/flows", { method: "POST", body: value, headers: { "Content-Type": type }, raw: true });
    body = await response.json();
    announce(t(response.status === 201 ? "ivr.upload.done" : "ivr.upload.same", { name: body.name, version: body.version }));
  } catch (error) {
    return refused(error, value);
  }
  view.draft = null;
  await reload(body.id);
}

/** An upload refused: its draft drawn with the problems (a 422 of a readable document), else
 * what is stored shown again, never an earlier attempt's draft. */
async function refused(error, value) {
  const problem = byId("upload-problem");
  text(problem, describe(error));
  view.draft = null;
  if (error.status !== 422) {
    showError(error);
    return reload(null);
  }
  let document = null;
  try {
    document = parseDocument(value);
  } catch (cause) {
    text(problem, t("ivr.upload.unreadable", { detail: String(cause.message || cause) }));
  }
  if (document && typeof document === "object" && document.nodes && typeof document.nodes === "object") {
    view.draft = { document, fields: error.fields };
    markStale({ shown: false });
  }
  drawShown();
  if (view.draft) byId("diagram-heading").focus();
}

async function readFile() {
  const input = byId("flow-file");
  if (!input.files.length) return;
  byId("flow-text").value = await input.files[0].text();
  announce(t("ivr.upload.loaded", { name: input.files[0].name }));
}

async function main() {
  await startPage({ title: "ivr.title", dictionaries: ["ivr"] });
  const [table, user] = await Promise.all([rules(), me()]);
  view.manage = may(table, user, "queues", "update", { sites: null });
  show(byId("upload-panel"), view.manage);
  byId("upload").addEventListener("submit", upload);
  byId("upload-submit").disabled = false;
  byId("flow-file").addEventListener("change", readFile);
  onChange(() => {
    drawList();
    drawShown();
  });
  await reload(null);
}

main();
