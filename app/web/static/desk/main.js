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
import { rules } from "../js/rules.js";

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

/** What the user has typed or chosen in the view (by control id), and the move form open. */
function held(view) {
  const form = view.querySelector("#move-form");
  const values = [];
  for (const field of view.querySelectorAll("input, select, textarea")) {
    if (!field.id || field.type === "file" || field.type === "hidden") continue;
    values.push([field.id, field.type === "checkbox" || field.type === "radio" ? field.checked : field.value]);
  }
  return { verb: form ? form.dataset.verb : null, values, focused: document.activeElement };
}

/** Put back what `held` kept into the view drawn again, as if the user had typed it. */
function restore(view, { verb, values, focused }) {
  if (verb && ctx.openMove) ctx.openMove(verb);
  for (const [id, value] of values) {
    const field = document.getElementById(id);
    if (!field || !view.contains(field)) continue;
    const now = typeof value === "boolean" ? field.checked : field.value;
    if (now === value) continue;
    if (typeof value === "boolean") field.checked = value;
    else field.value = value;
    field.dispatchEvent(new Event("input", { bubbles: true }));
  }
  const phone = document.getElementById("reg-phone");
  if (phone && phone.value.trim()) byId("reg-find").click(); // the customer found, found again
  if (focused && focused.isConnected) focused.focus();
}

/** The language changed: draw the view in it, keeping what the user was in the middle of. */
async function relabel() {
  const view = byId("view");
  const kept = held(view);
  ctx.focusOnRoute = false;
  await route();
  restore(view, kept);
}

async function main() {
  await startPage({ title: "desk.title", dictionaries: ["desk"] });
  const [table, user] = await Promise.all([rules(), me()]);
  ctx = { table, people: new People(user), prefill: {}, openMove: null, focusOnRoute: false, done: null, handedAway: null };
  window.addEventListener("hashchange", () => {
    ctx.done = null; // the confirmation of a move is for the case it was made on, seen then
    ctx.handedAway = null;
    route();
  });
  onChange(relabel);
  await route();
}

main();
