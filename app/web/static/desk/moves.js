// A complaint's moves on its case page: one button per move the lifecycle allows from the
// complaint's status, shown only when the access table lets the signed-in user act on this
// complaint; each opens a form with the facts the move needs (required, named before the
// form is sent when missing) and those it may carry.

import { api, describe } from "../js/api.js";
import { h, replace, text } from "../js/dom.js";
import { t } from "../js/i18n.js";
import { announce, clearErrors, showError } from "../js/page.js";
import { label } from "./format.js";
import { may, movesFrom } from "../js/rules.js";

const LONG = new Set(["resolution", "root_cause", "corrective_action", "remedy"]);

function choice(name, options, prefix, required) {
  return h(
    "select",
    { name, id: `fact-${name}`, "aria-required": required ? "true" : null },
    h("option", { value: "", text: t("desk.fact.choose") }),
    options.map((value) => h("option", { value, text: label(prefix, value) })),
  );
}

function widget(name, verb, ctx, required) {
  const { table, people, prefill } = ctx;
  const c = table.complaints;
  const common = { name, id: `fact-${name}`, "aria-required": required ? "true" : null };
  switch (name) {
    case "severity":
      return choice(name, c.severities, "desk.severity", required);
    case "target":
      return choice(name, c.escalation_targets, "desk.level", required);
    case "outcome":
      return choice(name, c.review_outcomes, "desk.outcome", required);
    case "clock":
      return choice(name, c.clock_kinds, "desk.clock.kind", required);
    case "upheld":
      return h("select", common, h("option", { value: "", text: t("desk.fact.unknown") }), h("option", { value: "true", text: t("desk.fact.yes") }), h("option", { value: "false", text: t("desk.fact.no") }));
    case "reason":
      if (verb === "pause") return choice(name, c.pause_reasons, "desk.pause", required);
      return h("textarea", { ...common, maxlength: 10000 });
    case "assignee": {
      const select = h("select", { ...common, "aria-describedby": "fact-assignee-reach" }, h("option", { value: "", text: t("desk.fact.choose") }));
      const option = (p) => h("option", { value: String(p.id), text: p.site ? `${p.name} (${p.site})` : p.name });
      people.all().then((everyone) => {
        // Colleagues whose cases the user still sees first; the rest (another site) apart.
        const near = everyone.filter((p) => staysInReach(ctx, p));
        const far = everyone.filter((p) => !staysInReach(ctx, p));
        if (!far.length) select.append(...near.map(option));
        else select.append(h("optgroup", { label: t("desk.fact.assignee_near") }, near.map(option)), h("optgroup", { label: t("desk.fact.assignee_far") }, far.map(option)));
      }, () => select.append(option(people.me)));
      return select;
    }
    case "approval":
    case "days":
      return h("input", { ...common, type: "number", min: 1, max: name === "days" ? 365 : null, inputmode: "numeric" });
    case "compensation":
      return h("input", { ...common, inputmode: "decimal", pattern: "[0-9]+(\\.[0-9]{1,2})?" });
    case "categories":
      return categoriesChoice(c.categories || [], prefill.categories || [], required);
    default:
      return LONG.has(name) ? h("textarea", { ...common, maxlength: 10000 }) : h("input", { ...common, maxlength: 200 });
  }
}

/**
 * The categories as a set of boxes, one per category the service knows, named in the page's
 * language, and a line for any other (the desk may use categories of its own: typed as they
 * are to be stored, separated by commas). Those given already are ticked or on the line.
 */
function categoriesChoice(known, given, required) {
  const box = (code) =>
    h("label", { class: "choice" }, h("input", { type: "checkbox", id: `fact-category-${code}`, name: "category", value: code, checked: given.includes(code) }), h("span", { text: label("desk.category", code) }));
  const others = given.filter((code) => !known.includes(code));
  return h(
    "fieldset",
    { name: "categories", id: "fact-categories", class: "categories" },
    h("legend", {}, t("desk.fact.categories"), required ? h("span", { class: "required", text: ` (${t("desk.fact.required")})` }) : null),
    h("div", { class: "boxes" }, known.map(box)),
    h("label", { for: "fact-categories-other", text: t("desk.fact.categories_other") }),
    h("input", { id: "fact-categories-other", name: "categories_other", maxlength: 1400, value: others.join(", "), "aria-describedby": "fact-categories-help" }),
  );
}

function splitCategories(raw) {
  return String(raw || "").split(/[,，、;；]/).map((part) => part.trim()).filter(Boolean);
}

/** The fact `name` as the form has it (undefined when not given). */
function factOf(form, name) {
  if (name === "categories") {
    const ticked = [...form.querySelectorAll('input[name="category"]:checked')].map((box) => box.value);
    const all = [...new Set([...ticked, ...splitCategories(form.elements.categories_other.value)])];
    return all.length ? all : undefined;
  }
  return valueOf(name, form.elements[name] && form.elements[name].value);
}

/** The control marked when the fact `name` is missing or refused (the categories' line). */
function controlOf(form, name) {
  return name === "categories" ? form.elements.categories_other : form.elements[name];
}

/** Where the user goes to give the fact `name`: the categories' first box. */
function focusOf(form, name) {
  return name === "categories" ? form.querySelector('input[name="category"]') || controlOf(form, name) : controlOf(form, name);
}

function valueOf(name, raw) {
  const value = String(raw || "").trim();
  if (!value) return undefined;
  if (["assignee", "approval", "days"].includes(name)) return Number(value);
  if (name === "upheld") return value === "true";
  return value;
}

/** Whether the user may still read a complaint once `person` is its assignee. */
function staysInReach(ctx, person) {
  return may(ctx.table, ctx.people.me, "complaints", "read", { ownerIds: [person.id], sites: [person.site] });
}

/** The line under the assignee choice: a colleague out of the user's reach takes the case away. */
function reachNote(ctx, select) {
  const note = h("p", { id: "fact-assignee-reach", class: "hint warning", "aria-live": "polite" });
  select.addEventListener("change", () => {
    const person = ctx.people.get(Number(select.value));
    text(note, person && !staysInReach(ctx, person) ? t("desk.fact.assignee_leaves", { name: person.name, site: person.site || t("desk.no_site") }) : "");
  });
  return note;
}

/** Whether the user can still open `complaint` after a move (an assignee elsewhere takes it away). */
export function stillReadable(ctx, complaint) {
  return may(ctx.table, ctx.people.me, "complaints", "read", subjectOf(ctx, complaint));
}

/** The complaint as the access rules see it: its assignee, and the assignee's site. */
function subjectOf(ctx, complaint) {
  const assigned = complaint.assignee_id !== null && complaint.assignee_id !== undefined;
  return { ownerIds: assigned ? [complaint.assignee_id] : [], sites: assigned ? [ctx.people.site(complaint.assignee_id)] : [] };
}

function factLabel(name, required) {
  return h("label", { for: `fact-${name}` }, t(`desk.fact.${name}`), required ? h("span", { class: "required", text: ` (${t("desk.fact.required")})` }) : null);
}

function moveForm(verb, ctx, complaint, { started, done }) {
  const c = ctx.table.complaints;
  const needs = c.needs[verb] || [];
  const optional = (c.optional[verb] || []).filter((n) => !needs.includes(n));
  const problem = h("p", { class: "field-error", id: "move-problem", role: "alert" });
  const fields = [...needs.map((n) => [n, true]), ...optional.map((n) => [n, false])];
  const controls = fields.map(([name, required]) => {
    const control = widget(name, verb, ctx, required);
    if (name === "severity" && ctx.prefill.severity) control.value = ctx.prefill.severity;
    const help = name === "categories" ? h("p", { id: "fact-categories-help", class: "hint", text: t("desk.fact.categories_help") }) : name === "assignee" ? reachNote(ctx, control) : null;
    // The categories' boxes carry their own legend: a label names one control, not a group.
    return h("div", { class: "fact" }, name === "categories" ? null : factLabel(name, required), control, help);
  });
  const submit = h("button", { type: "submit", id: "move-submit", text: label("desk.verb", verb) });
  const form = h(
    "form",
    { class: "move-form panel-inner", id: "move-form", dataset: { verb }, novalidate: true },
    h("h4", { text: t("desk.move.heading", { verb: label("desk.verb", verb) }) }),
    fields.length ? controls : h("p", { text: t("desk.move.no_facts") }),
    problem,
    h("div", { class: "actions" }, submit, h("button", { type: "button", class: "secondary", text: t("desk.move.cancel"), on: { click: () => form.remove() } })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const facts = {};
    for (const [name] of fields) {
      const value = factOf(form, name);
      if (value !== undefined) facts[name] = value;
    }
    const missing = needs.filter((name) => facts[name] === undefined);
    for (const [name] of fields) controlOf(form, name).removeAttribute("aria-invalid");
    if (missing.length) {
      for (const name of missing) controlOf(form, name).setAttribute("aria-invalid", "true");
      text(problem, t("desk.missing", { fields: missing.map((n) => t(`desk.fact.${n}`)).join(t("desk.list_separator")) }));
      focusOf(form, missing[0]).focus();
      return;
    }
    text(problem, "");
    submit.disabled = true;
    clearErrors();
    started();
    try {
      const answer = await api(`/api/v1/complaints/${complaint.id}/${verb}`, { method: "POST", json: facts });
      announce(t("desk.move.done", { verb: label("desk.verb", verb), status: label("complaint.status", answer.status) }));
      done(answer, verb);
    } catch (error) {
      submit.disabled = false;
      text(problem, describe(error));
      for (const field of error.fields || []) {
        const name = String(field.field || "").split(".").find((part) => !/^[0-9]+$/.test(part) && form.elements[part]);
        if (name) controlOf(form, name).setAttribute("aria-invalid", "true");
      }
      showError(error);
    }
  });
  return form;
}

/** Whether the signed-in user may act on `complaint` (the rule app/complaints/router.py applies). */
export function mayAct(ctx, complaint) {
  return may(ctx.table, ctx.people.me, "complaints", "act", subjectOf(ctx, complaint));
}

/**
 * The moves panel's content: the buttons, and the form of the move chosen. `started()` is
 * called when a move is sent, `done(answer, verb)` when the service has made it.
 */
export function movesPanel(container, ctx, complaint, hooks) {
  const moves = mayAct(ctx, complaint) ? movesFrom(ctx.table, complaint.status) : [];
  const holder = h("div", { id: "move-holder" });
  if (!moves.length) {
    replace(container, h("p", { class: "empty", id: "no-moves", text: t(mayAct(ctx, complaint) ? "desk.move.none_now" : "desk.move.not_yours") }));
    return;
  }
  const open = (verb) => {
    const form = moveForm(verb, ctx, complaint, hooks);
    replace(holder, form);
    const first = form.querySelector("input, select, textarea, button");
    if (first) first.focus();
  };
  ctx.openMove = open;
  replace(
    container,
    h("div", { class: "actions", role: "group", "aria-label": t("desk.move.heading_all") }, moves.map(({ verb }) => h("button", { type: "button", class: "secondary", dataset: { verb }, id: `move-${verb}`, text: label("desk.verb", verb), on: { click: () => open(verb) } }))),
    holder,
  );
}
