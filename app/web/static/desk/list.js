// The desk's list: the complaints the signed-in user may see (GET /api/v1/complaints, which
// decides that), with its filters. The filters live in the address (#list?status=…), so a
// reload or a shared link shows the same list.

import { api, serverNow } from "../js/api.js";
import { h, replace, text } from "../js/dom.js";
import { t } from "../js/i18n.js";
import { clearErrors, showError } from "../js/page.js";
import { categoriesText, categoryLabel, label, statusBadge, when } from "./format.js";

const FILTERS = ["status", "category", "assignee", "branch", "text"];
// The deadline filter is one choice in the form and the API's own parameter in the address
// (overdue=true or at_risk=true), as the API defines them: overdue while the resolution clock
// counts, at risk when 80 % of it has gone and it is not yet overdue.
const DEADLINES = ["overdue", "at_risk"];

function filterForm(table, values, people, go) {
  const status = h(
    "select",
    { id: "filter-status", name: "status" },
    h("option", { value: "", text: t("desk.filter.any") }),
    table.complaints.statuses.map((s) => h("option", { value: s, selected: values.status === s, text: label("complaint.status", s) })),
  );
  const assignee = h(
    "select",
    { id: "filter-assignee", name: "assignee" },
    h("option", { value: "", text: t("desk.filter.anyone") }),
    h("option", { value: String(people.me.id), selected: values.assignee === String(people.me.id), text: t("desk.filter.me") }),
  );
  const deadline = h(
    "select",
    { id: "filter-deadline", name: "deadline" },
    h("option", { value: "", text: t("desk.filter.any_deadline") }),
    DEADLINES.map((d) => h("option", { value: d, selected: values[d] === "true", text: t(`desk.filter.${d}`) })),
  );
  const input = (name) => h("input", { id: `filter-${name}`, name, value: values[name] || "", maxlength: name === "text" ? 200 : 100 });
  // The category by its name in the page's language, offered from the service's list; the
  // address keeps its code. A category of the desk's own is typed as it is stored.
  const known = table.complaints.categories || [];
  const category = h("input", {
    id: "filter-category",
    name: "category",
    list: "filter-category-names",
    value: values.category ? categoryLabel(values.category) : "",
    maxlength: 100,
  });
  const names = h("datalist", { id: "filter-category-names" }, known.map((code) => h("option", { value: categoryLabel(code) })));
  const form = h(
    "form",
    { id: "filters", class: "filters", role: "search", "aria-label": t("desk.filter.heading") },
    h("div", {}, h("label", { for: "filter-status", text: t("desk.filter.status") }), status),
    h("div", {}, h("label", { for: "filter-category", text: t("desk.filter.category") }), category, names),
    h("div", {}, h("label", { for: "filter-deadline", text: t("desk.filter.deadline") }), deadline),
    h("div", {}, h("label", { for: "filter-assignee", text: t("desk.filter.assignee") }), assignee),
    h("div", {}, h("label", { for: "filter-branch", text: t("desk.filter.branch") }), input("branch")),
    h("div", { class: "wide" }, h("label", { for: "filter-text", text: t("desk.filter.text") }), input("text")),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "filter-apply", text: t("desk.filter.apply") }), h("button", { type: "reset", class: "secondary", text: t("desk.filter.clear") })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const chosen = Object.fromEntries(FILTERS.map((name) => [name, String(data.get(name) || "").trim()]).filter(([, v]) => v));
    if (chosen.category) chosen.category = categoryCode(chosen.category, known);
    const wanted = String(data.get("deadline") || "");
    if (DEADLINES.includes(wanted)) chosen[wanted] = "true";
    go(chosen);
  });
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    go({});
  });
  return form;
}

/** The code of the category `typed` names (its name in the page's language or its code, in
 * any case); what was typed when it names none of `known` (a category of the desk's own). */
function categoryCode(typed, known) {
  const wanted = typed.toLocaleLowerCase();
  const found = known.find((code) => code.toLocaleLowerCase() === wanted || categoryLabel(code).toLocaleLowerCase() === wanted);
  return found || typed;
}

// Overdue as the API's filter has it: the deadline passed while the resolution clock still
// counts (the service's list of where it does). A complaint resolved in time is not overdue
// for waiting on the customer.
function dueCell(item, counts) {
  if (!item.due_at) return h("td", { text: "—" });
  const late = counts.has(item.status) && Date.parse(item.due_at) <= serverNow();
  return h("td", {}, when(item.due_at), late ? [" ", h("span", { class: "badge danger", text: t("desk.list.overdue") })] : null);
}

function row(item, people, counts) {
  return h(
    "tr",
    { dataset: { reference: item.reference, id: item.id } },
    h("th", { scope: "row" }, h("a", { href: `#case/${item.id}`, text: item.reference })),
    h("td", {}, statusBadge(item.status)),
    dueCell(item, counts),
    h("td", { class: "user-text wraps", text: categoriesText(item.categories) || "—" }),
    h("td", { text: label("desk.severity", item.severity) }),
    h("td", { class: "user-text", text: item.branch }),
    h("td", { class: "user-text", text: people.name(item.assignee_id) }),
    h("td", { text: when(item.registered_at) }),
  );
}

// What a handler scans first comes first: the deadline is never off to the side of a wide
// list (the categories wrap).
const COLUMNS = ["reference", "status", "due", "categories", "severity", "branch", "assignee", "registered"];

/** Draw the list view into `view` with `values` as filters; `go(values)` changes them. */
export async function showList(view, { table, people, values, go }) {
  const body = h("tbody", {});
  const counts = new Set(table.complaints.deadline_counts);
  const more = h("button", { type: "button", class: "secondary", id: "list-more", hidden: true, text: t("desk.list.more") });
  const count = h("p", { id: "list-count", class: "muted-line", "aria-live": "polite" });
  replace(
    view,
    h("h2", { id: "view-heading", tabindex: -1, text: t("desk.list.heading") }),
    filterForm(table, values, people, go),
    count,
    h("div", { class: "scroll", tabindex: 0, role: "region", "aria-labelledby": "view-heading" }, h("table", { id: "complaints" }, h("caption", { class: "visually-hidden", text: t("desk.list.heading") }), h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col", text: t(`desk.list.${c}`) })))), body)),
    more,
  );
  let shown = 0;
  let cursor = null;
  const page = async () => {
    clearErrors();
    try {
      const query = { ...values, limit: 50, cursor };
      const answer = await api("/api/v1/complaints", { query });
      await people.load(answer.items.map((i) => i.assignee_id));
      body.append(...answer.items.map((item) => row(item, people, counts)));
      shown += answer.items.length;
      cursor = answer.next_cursor;
      more.hidden = !cursor;
      text(count, shown ? t("desk.list.count", { count: shown }) : t("desk.list.none"));
    } catch (error) {
      showError(error);
    }
  };
  more.addEventListener("click", page);
  await page();
}
