// The agent's console: status, offers, the contacts in hand, complaint cases.
//
// The page signs in (or goes to the sign-in page), opens /ws/agent, builds its model from the
// snapshot and moves it with each event. When the connection drops the banner says so, and
// the socket resumes from its last cursor once it is back (js/socket.js): no event is lost.

import { allPages, me } from "../js/api.js";
import { LiveSocket } from "../js/socket.js";
import { onChange } from "../js/i18n.js";
import { connectionBanner, showError, startPage } from "../js/page.js";
import * as actions from "./actions.js";
import { mountCases, redrawCases } from "./cases.js";
import { mountContacts, recoverContacts, redrawContacts } from "./contacts.js";
import { loadQueues } from "./lookups.js";
import { ConsoleModel } from "./model.js";
import { decide, mountOffers, redrawOffers, targetOffer } from "./offers.js";
import { mountPresence, redrawPresence } from "./presence.js";

const KEYS = { a: "accept", r: "reject" };
const TYPING = new Set(["INPUT", "TEXTAREA", "SELECT"]);
const ACCEPTED_PAGES = 5;

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
  const target = event.target;
  if (target && (TYPING.has(target.tagName) || target.isContentEditable)) return;
  const verb = KEYS[event.key.toLowerCase()];
  if (!verb) return;
  const offerId = targetOffer();
  if (offerId === null) return;
  event.preventDefault();
  decide(offerId, verb);
}

/** The contacts held when the page was (re)loaded: those this tab remembers, else the latest
 * accepted offers' contacts (the state says some are held). */
async function heldIds(model) {
  const ids = new Set([...ConsoleModel.rememberedContacts(), ...model.contacts.keys()]);
  if (ids.size === 0 && ["busy", "wrap_up"].includes(model.agent.state)) {
    const accepted = await allPages("/api/v1/offers", { query: { agent: "me", status: "accepted" }, maxPages: ACCEPTED_PAGES });
    for (const offer of accepted.slice(-10)) ids.add(offer.contact_id);
  }
  return [...ids];
}

async function main() {
  const user = await startPage({ title: "console.title", dictionaries: ["console", "desk"] });
  const model = new ConsoleModel();
  await loadQueues().catch(showError);
  mountPresence(model);
  mountOffers(model);
  mountContacts(model);
  const socket = new LiveSocket("/ws/agent", {
    onSnapshot: (data) => {
      model.reset(data);
      heldIds(model).then(recoverContacts).catch(showError);
    },
    onEvent: (event) => model.apply(event),
    onState: connectionBanner,
  });
  actions.useSocket(socket);
  socket.start();
  mountCases(model, user || (await me()));
  document.addEventListener("keydown", onKey);
  onChange(() => {
    redrawPresence();
    redrawOffers();
    redrawContacts();
    redrawCases();
  });
  window.hotlineConsole = { model, socket }; // for a look from the browser's developer tools
}

main().catch(showError);
