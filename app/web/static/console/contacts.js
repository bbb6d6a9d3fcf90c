// The contacts the agent holds: a card each with how a caller came through the IVR (path.js),
// the customer (tier, recent contacts, open complaints and their deadlines), the completion
// form (disposition and notes) and, after it, the wrap-up timer with "done".
//
// A card is built once per contact and then only updated, so notes being typed survive the
// events that arrive meanwhile. Everything shown comes from the REST API as the signed-in
// role may see it (an agent sees customers' numbers masked).

import { allPages, api, ApiError, serverNow } from "../js/api.js";
import { byId, h, replace, text } from "../js/dom.js";
import { dateTime, duration, t } from "../js/i18n.js";
import { announce, showError } from "../js/page.js";
import * as actions from "./actions.js";
import { caseLink, deadlineBadge, openStatuses } from "./cases.js";
import { contact, customer, queueName } from "./lookups.js";
import { pathOf, pathSection } from "./path.js";

// The channels of the contacts the IVR queues; no other contact has a path to ask for.
const THROUGH_IVR = new Set(["voice", "callback"]);

export const DISPOSITIONS = ["resolved", "follow_up", "escalated", "complaint_registered", "no_resolution"];

let model = null;
const cards = new Map();
let lastEnded = null; // the last contact ended by someone else, as "ended-elsewhere" told it

function fact(label, value) {
  return [h("dt", { text: t(label) }), h("dd", { class: "user-text", text: value ?? "—" })];
}

async function openComplaints(customerId) {
  // `customer` narrows the list where the service supports it; the filter below keeps the
  // card right either way.
  const [items, open] = await Promise.all([allPages("/api/v1/complaints", { query: { customer: customerId }, maxPages: 3 }), openStatuses()]);
  return items.filter((c) => c.customer_id === customerId && open.has(c.status));
}

// The customer's contacts, newest first: while the agent serves the customer (this card), the
// service lists all of them, other agents' with the number masked and without notes.
async function recentContacts(customerId, currentId) {
  try {
    const page = await api("/api/v1/contacts", { query: { customer: customerId, limit: 6 } });
    return page.items.filter((c) => c.id !== currentId).slice(0, 5);
  } catch (error) {
    if (error instanceof ApiError && [404, 405].includes(error.status)) return null; // not offered
    throw error;
  }
}

function complaintsList(complaints) {
  if (complaints.length === 0) return h("p", { class: "empty", text: t("console.no_open_complaints") });
  return h(
    "ul",
    { class: "plain complaints" },
    complaints.map((c) =>
      h("li", {}, h("strong", {}, caseLink(c)), " ", h("span", { class: "badge muted", text: t(`complaint.status.${c.status}`) }), " ", deadlineBadge(c)),
    ),
  );
}

function contactsList(contacts) {
  if (contacts.length === 0) return h("p", { class: "empty", text: t("console.no_recent_contacts") });
  return h(
    "ul",
    { class: "plain recent" },
    contacts.map((c) =>
      h("li", {}, dateTime(c.enqueued_at), " · ", t(`channel.${c.channel}`), " · ", c.queue, " ",
        h("span", { class: "user-text", text: c.subject || "" })),
    ),
  );
}

async function fillCustomer(section, found) {
  if (!found.customer_id) {
    replace(section, h("p", { class: "empty", text: t("console.no_customer") }));
    return;
  }
  const [person, complaints, recent] = await Promise.all([
    customer(found.customer_id),
    openComplaints(found.customer_id),
    recentContacts(found.customer_id, found.id),
  ]);
  replace(
    section,
    h("dl", { class: "facts" }, fact("console.customer", person.name), fact("console.tier", t(`tier.${person.tier}`)), fact("console.phone", person.phone)),
    recent === null ? null : [h("h3", { text: t("console.recent_contacts") }), contactsList(recent)],
    h("h3", { text: t("console.open_complaints") }),
    complaintsList(complaints),
  );
}

async function fillDetails(card, contactId) {
  try {
    const found = await contact(contactId, { fresh: true });
    const call = THROUGH_IVR.has(found.channel) ? await pathOf(contactId) : null;
    replace(
      card.details,
      h("h3", { class: "contact-title", text: t("console.contact_title", { channel: t(`channel.${found.channel}`), queue: found.queue || queueName(found.queue_id) }) }),
      h(
        "dl",
        { class: "facts" },
        fact("console.subject", found.subject),
        found.customer_id || !found.tier ? null : fact("console.tier", t(`tier.${found.tier}`)),
      ),
      call && pathSection(call),
    );
    await fillCustomer(card.customer, found);
  } catch (error) {
    showError(error);
  }
}

function completeForm(contactId) {
  const id = (name) => `${name}-${contactId}`;
  const disposition = h("select", { id: id("disposition"), name: "disposition" },
    DISPOSITIONS.map((value) => h("option", { value, text: t(`disposition.${value}`) })));
  const notes = h("textarea", { id: id("notes"), name: "notes", maxlength: 10000 });
  const button = h("button", { type: "submit", class: "complete", text: t("console.complete") });
  const form = h(
    "form",
    { class: "complete-form" },
    h("label", { for: id("disposition"), text: t("console.disposition") }),
    disposition,
    h("label", { for: id("notes"), text: t("console.notes") }),
    notes,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      const done = await actions.complete(contactId, disposition.value, notes.value.trim());
      if (done.status === "wrap_up") model.hold(contactId, { status: "wrap_up" }, null);
      else model.ended(contactId);
      announce(t("console.completed"));
    } catch (error) {
      showError(error);
      button.disabled = false;
    }
  });
  return form;
}

function wrapUpPanel() {
  const left = h("span", { class: "wrap-up-left" });
  const done = h("button", { type: "button", class: "wrap-up-done", text: t("console.wrap_up_done") });
  done.addEventListener("click", async () => {
    done.disabled = true;
    try {
      await actions.wrapUpDone(model.agent.id);
      for (const [id, held] of model.contacts) if (held.status === "wrap_up") model.ended(id);
      announce(t("console.wrap_up_ended"));
    } catch (error) {
      showError(error);
      done.disabled = false;
    }
  });
  return h("div", { class: "wrap-up-panel" }, h("p", { class: "wrap-up" }, left), done);
}

function newCard(contactId) {
  const card = h("article", { class: "contact-card", dataset: { contactId } });
  card.details = h("div", { class: "details" }, h("p", { class: "empty", text: t("console.loading") }));
  card.customer = h("div", { class: "customer" });
  card.form = completeForm(contactId);
  card.wrapUp = wrapUpPanel();
  card.append(card.details, card.customer, card.form, card.wrapUp);
  fillDetails(card, contactId);
  return card;
}

function tickWrapUp(card, held) {
  const left = card.wrapUp.querySelector(".wrap-up-left");
  if (!held.until) return text(left, t("console.wrap_up"));
  const seconds = (Date.parse(held.until) - serverNow()) / 1000;
  return text(left, seconds > 0 ? t("console.wrap_up_left", { time: duration(seconds) }) : t("console.wrap_up_ending"));
}

function update(card, held) {
  const wrapping = held.status === "wrap_up";
  card.form.hidden = wrapping;
  card.wrapUp.hidden = !wrapping;
  if (wrapping) tickWrapUp(card, held);
}

function render() {
  const list = byId("contacts");
  for (const [id, card] of cards) {
    if (!model.contacts.has(id)) {
      card.remove();
      cards.delete(id);
    }
  }
  for (const [id, held] of model.contacts) {
    if (!cards.has(id)) {
      cards.set(id, newCard(id));
      list.append(cards.get(id));
      forgetEnded(); // a new contact in hand: the line about the last one has had its time
    }
    update(cards.get(id), held);
  }
  byId("no-contacts").hidden = model.contacts.size > 0;
}

/** A contact the agent held was ended by someone else (the service, a supervisor): say so
 * where the card was, and to a screen reader. */
function endedElsewhere(ended) {
  lastEnded = ended;
  const message = endedMessage(ended);
  const notice = byId("contact-ended");
  text(notice, message);
  notice.hidden = false;
  announce(message);
}

function forgetEnded() {
  lastEnded = null;
  byId("contact-ended").hidden = true;
}

function endedMessage({ contactId, disposition, toQueue }) {
  const key = `disposition.${disposition}`;
  let why = t(key) === key ? disposition : t(key);
  if (toQueue !== null) why = t("console.ended_transferred", { queue: queueName(toQueue) });
  else if (disposition === null) why = t("console.ended_no_disposition");
  return t("console.ended_elsewhere", { id: contactId, why });
}

/** Show the contacts the model holds. */
export function mountContacts(consoleModel) {
  model = consoleModel;
  model.addEventListener("contacts", render);
  model.addEventListener("ended-elsewhere", (event) => endedElsewhere(event.detail));
  setInterval(() => {
    for (const [id, card] of cards) {
      const held = model.contacts.get(id);
      if (held && held.status === "wrap_up") tickWrapUp(card, held);
    }
  }, 1000);
  render();
}

/** Rebuild the cards in the current language (the notes being typed and the disposition
 * chosen are kept). */
export function redrawContacts() {
  for (const [id, card] of cards) {
    const notes = card.form.querySelector("textarea").value;
    const disposition = card.form.querySelector("select").value;
    const fresh = newCard(id);
    fresh.form.querySelector("textarea").value = notes;
    fresh.form.querySelector("select").value = disposition;
    card.replaceWith(fresh);
    cards.set(id, fresh);
  }
  if (lastEnded !== null) text(byId("contact-ended"), endedMessage(lastEnded));
  render();
}

/** After a reload: the contacts this agent still holds, asked of the service. */
export async function recoverContacts(ids) {
  const found = await Promise.all(ids.map((id) => contact(id, { fresh: true }).catch(() => null)));
  const held = found.filter((c) => c && c.agent_id === model.agent.id && ["connected", "wrap_up"].includes(c.status));
  const gone = ids.filter((id) => !held.some((c) => c.id === id));
  for (const id of gone) model.ended(id);
  model.recovered(held);
}
