// Registering a complaint while the customer is on the phone (POST /api/v1/complaints).
//
// Every fact the service requires is marked, and the form says which are still missing as
// the agent types (and again, naming each, if they send it anyway), so the call does not end
// with a refusal. Finding the customer by phone is optional: a complaint is never refused
// for an unknown customer. The category is not asked: classification is the service's job
// (its suggestion shows on the case page, for the agent to take or correct). The same
// matter already open is linked to that complaint, and the page says so; a different
// grievance that only looks like it (the same branch that week) is registered on its own
// when the agent ticks "a separate complaint" (the trail names the open one).

import { api, describe } from "../js/api.js";
import { h, replace, text } from "../js/dom.js";
import { t } from "../js/i18n.js";
import { announce, clearErrors, showError } from "../js/page.js";
import { label } from "./format.js";

// name -> [path in the body, dictionary key, control]
const FIELDS = [
  ["channel", "channel", "select"],
  ["name", "complainant.name", "input"],
  ["contact", "complainant.contact", "input"],
  ["relation", "complainant.relation", "select"],
  ["occurred_at", "matter.occurred_at", "datetime"],
  ["location", "matter.location", "input"],
  ["branch", "matter.branch", "input"],
  ["description", "matter.description", "textarea"],
  ["grounds", "grounds", "textarea"],
  ["request", "request", "textarea"],
];

function control(name, kind, table) {
  const attrs = { id: `reg-${name}`, name, "aria-required": "true", "aria-describedby": "reg-missing" };
  if (kind === "select") {
    const values = name === "channel" ? table.complaints.channels : table.complaints.relations;
    const prefix = name === "channel" ? "channel" : "desk.relation";
    return h("select", attrs, values.map((v) => h("option", { value: v, text: label(prefix, v) })));
  }
  if (kind === "datetime") return h("input", { ...attrs, type: "datetime-local" });
  if (kind === "textarea") return h("textarea", { ...attrs, maxlength: 10000 });
  return h("input", { ...attrs, maxlength: name === "branch" ? 100 : 200 });
}

function missingOf(form) {
  return FIELDS.filter(([name]) => !String(form.elements[name].value || "").trim()).map(([name]) => name);
}

function bodyOf(form, customer, contactId) {
  const v = (name) => form.elements[name].value.trim();
  const body = {
    channel: v("channel"),
    complainant: { name: v("name"), contact: v("contact"), relation: v("relation") },
    matter: { occurred_at: new Date(v("occurred_at")).toISOString(), location: v("location"), branch: v("branch"), description: v("description") },
    grounds: v("grounds"),
    request: v("request"),
  };
  if (customer) body.customer = { id: customer.id };
  if (contactId) body.contact_id = contactId;
  if (form.elements.separate.checked) body.separate = true;
  return body;
}

function customerFinder(state) {
  const phone = h("input", { id: "reg-phone", type: "tel", autocomplete: "off", maxlength: 32 });
  const found = h("p", { id: "reg-customer", "aria-live": "polite" });
  const find = async () => {
    state.customer = null;
    if (!phone.value.trim()) {
      text(found, "");
      return;
    }
    try {
      const page = await api("/api/v1/customers", { query: { phone: phone.value.trim() } });
      state.customer = page.items[0] || null;
      text(found, state.customer ? t("desk.new.customer_found", { name: state.customer.name, tier: label("tier", state.customer.tier) }) : t("desk.new.customer_unknown"));
    } catch (error) {
      text(found, describe(error));
    }
  };
  phone.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      find();
    }
  });
  return h(
    "fieldset",
    {},
    h("legend", { text: t("desk.new.customer") }),
    h("label", { for: "reg-phone", text: t("desk.new.phone") }),
    h("div", { class: "inline" }, phone, h("button", { type: "button", class: "secondary", id: "reg-find", text: t("desk.new.find"), on: { click: find } })),
    found,
  );
}

/** Draw the registration form into `view`; `opened(id)` shows the new complaint. */
export function showRegister(view, { table, contactId, opened }) {
  const state = { customer: null };
  const missing = h("p", { id: "reg-missing", class: "missing", "aria-live": "polite" });
  const problem = h("div", { id: "reg-problem", class: "field-error", role: "alert" });
  const done = h("p", { id: "reg-done", class: "notice", tabindex: -1, "aria-live": "polite" });
  const row = ([name, key, kind]) =>
    h("div", { class: kind === "textarea" ? "field wide" : "field" }, h("label", { for: `reg-${name}` }, t(`desk.field.${key}`), h("span", { class: "required", text: ` (${t("desk.fact.required")})` })), control(name, kind, table));
  const submit = h("button", { type: "submit", id: "reg-submit", text: t("desk.new.submit") });
  const form = h(
    "form",
    { id: "register", class: "register", novalidate: true },
    customerFinder(state),
    h("fieldset", {}, h("legend", { text: t("desk.new.complainant") }), h("div", { class: "fields" }, FIELDS.slice(0, 4).map(row))),
    h("fieldset", {}, h("legend", { text: t("desk.new.matter") }), h("div", { class: "fields" }, FIELDS.slice(4).map(row))),
    contactId ? h("p", { id: "reg-linked-contact", text: t("desk.new.contact", { id: contactId }) }) : null,
    h(
      "div",
      { class: "field wide" },
      h("label", { class: "choice" }, h("input", { type: "checkbox", id: "reg-separate", name: "separate", "aria-describedby": "reg-separate-hint" }), t("desk.new.separate")),
      h("p", { id: "reg-separate-hint", class: "hint", text: t("desk.new.separate_hint") }),
    ),
    missing,
    problem,
    done,
    h("div", { class: "actions" }, submit),
  );
  const update = () => {
    const names = missingOf(form);
    text(missing, names.length ? t("desk.missing", { fields: names.map((n) => t(`desk.field.${FIELDS.find((f) => f[0] === n)[1]}`)).join(t("desk.list_separator")) }) : t("desk.new.complete"));
    missing.classList.toggle("done", names.length === 0);
  };
  form.addEventListener("input", update);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const [name] of FIELDS) form.elements[name].removeAttribute("aria-invalid");
    const names = missingOf(form);
    update();
    if (names.length) {
      for (const name of names) form.elements[name].setAttribute("aria-invalid", "true");
      text(problem, missing.textContent);
      form.elements[names[0]].focus();
      return;
    }
    text(problem, "");
    text(done, "");
    submit.disabled = true;
    clearErrors();
    try {
      const answer = await api("/api/v1/complaints", { method: "POST", json: bodyOf(form, state.customer, contactId), headers: { "Idempotency-Key": state.key || (state.key = crypto.getRandomValues(new Uint32Array(4)).join("-")) } });
      if (answer.linked) {
        // The open complaint may be one this user cannot read: say where the facts went.
        submit.disabled = false;
        state.key = null;
        text(done, t("desk.new.linked", { reference: answer.reference }));
        done.focus();
        return;
      }
      announce(t("desk.new.registered", { reference: answer.reference }));
      opened(answer.id, answer);
    } catch (error) {
      submit.disabled = false;
      if (error.status >= 400 && error.status < 500) state.key = null; // refused: a corrected form is a new request
      for (const field of error.fields || []) {
        const name = String(field.field || "").split(".").pop();
        if (form.elements[name]) form.elements[name].setAttribute("aria-invalid", "true");
      }
      text(problem, describe(error));
      showError(error);
    }
  });
  replace(view, h("h2", { id: "view-heading", tabindex: -1, text: t("desk.new.heading") }), h("p", { class: "hint", text: t("desk.new.intro") }), form);
  update();
}
