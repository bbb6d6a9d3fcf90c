// The complaint desk: the list, a case, the registration form, in one page.
//
// The address says which view is shown — #list (with its filters), #case/<id>, #new
// (?contact=<id> links the complaint to the contact it came in on) — so the browser's back
// button, reloads and links work, and the console can open a case or the form. Each view
// is drawn from the API when it is opened; its heading then takes the focus, so keyboard and
// screen-reader users land on what just opened.

import { me } from "../js/api.js";
import { byId } from "../js/dom.js";
import { onChange } from "../js/i18n.js";
import { showError, startPage } from "../js/page.js";
import { showCase } from "./case.js";
import { showList } from "./list.js";
import { People } from "./people.js";
import { showRegister } from "./register.js";
import { rules } from "./rules.js";

let ctx = null;

function parse(hash) {
  const [path, search] = hash.replace(/^#/, "").split("?");
  return { path: path || "list", query: Object.fromEntries(new URLSearchParams(search || "")) };
}

function goList(values) {
  const query = new URLSearchParams(values).toString();
  location.hash = query ? `#list?${query}` : "#list";
}

async function route() {
  const view = byId("view");
  const { path, query } = parse(location.hash);
  for (const link of document.querySelectorAll(".desk-nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#${path.split("/")[0]}`);
    if (link.hasAttribute("aria-current")) link.setAttribute("aria-current", "page");
  }
  try {
    if (path.startsWith("case/")) {
      await showCase(view, ctx, path.slice(5));
    } else if (path === "new") {
      const contactId = /^\d+$/.test(query.contact || "") ? Number(query.contact) : null;
      showRegister(view, { table: ctx.table, contactId, opened: (id) => (location.hash = `#case/${id}`) });
    } else {
      await showList(view, { table: ctx.table, people: ctx.people, values: query, go: goList });
    }
  } catch (error) {
    showError(error);
  }
  const heading = document.getElementById("view-heading");
  if (heading && ctx.focusOnRoute) heading.focus();
  ctx.focusOnRoute = true;
}

async function main() {
  await startPage({ title: "desk.title", dictionaries: ["desk"] });
  const [table, user] = await Promise.all([rules(), me()]);
  ctx = { table, people: new People(user), prefill: {}, openMove: null, focusOnRoute: false };
  window.addEventListener("hashchange", route);
  onChange(route);
  await route();
}

main();
