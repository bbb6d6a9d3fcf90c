// The pending offers: each with a ring counting down to its expiry, accept and reject.
//
// The ring runs on the service's clock (api.serverNow): an offer rings from created_at to
// expires_at as the service sees it, whatever this browser's clock says. An offer that runs
// out is shown as expired until the service's offer.expired event removes it. Keys: A accepts,
// R rejects the focused offer (the oldest when none is focused).

import { serverNow } from "../js/api.js";
import { byId, h, replace, svg, text } from "../js/dom.js";
import { t } from "../js/i18n.js";
import { announce, showError } from "../js/page.js";
import * as actions from "./actions.js";
import { contact, queueName } from "./lookups.js";

const SIZE = 52;
const CENTRE = SIZE / 2;
const RADIUS = 21;
const CIRCUMFERENCE = 2 * Math.PI * RADIUS;
const URGENT_S = 5;

let model = null;
const busy = new Set();

function remainingS(offer) {
  return Math.max(0, (Date.parse(offer.expires_at) - serverNow()) / 1000);
}

function ring(offer) {
  const at = { cx: CENTRE, cy: CENTRE, r: RADIUS };
  const left = svg("circle", { class: "left", ...at, transform: `rotate(-90 ${CENTRE} ${CENTRE})` });
  left.setAttribute("stroke-dasharray", String(CIRCUMFERENCE));
  const seconds = svg("text", { x: CENTRE, y: CENTRE + 5, "text-anchor": "middle" });
  const element = svg(
    "svg",
    { class: "ring", width: SIZE, height: SIZE, viewBox: `0 0 ${SIZE} ${SIZE}`, "aria-hidden": "true" },
    svg("circle", { class: "track", ...at }),
    left,
    seconds,
  );
  element.tick = () => {
    const total = Math.max(1, (Date.parse(offer.expires_at) - Date.parse(offer.created_at)) / 1000);
    const remaining = remainingS(offer);
    left.setAttribute("stroke-dashoffset", String(CIRCUMFERENCE * (1 - Math.min(1, remaining / total))));
    text(seconds, Math.ceil(remaining));
    element.classList.toggle("urgent", remaining <= URGENT_S);
    return remaining;
  };
  return element;
}

function subjectLine(offer) {
  const line = h("span", { class: "user-text subject" });
  contact(offer.contact_id)
    .then((found) => text(line, found.subject || ""))
    .catch(() => text(line, ""));
  return line;
}

function offerItem(offer) {
  const clock = ring(offer);
  const acceptButton = h("button", { type: "button", class: "accept", on: { click: () => decide(offer.id, "accept") } },
    t("console.accept"), h("kbd", { "aria-hidden": "true", text: "A" }));
  const rejectButton = h("button", { type: "button", class: "secondary reject", on: { click: () => decide(offer.id, "reject") } },
    t("console.reject"), h("kbd", { "aria-hidden": "true", text: "R" }));
  const what = t("console.offer_what", { channel: t(`channel.${offer.channel}`), queue: queueName(offer.queue_id) });
  const item = h(
    "li",
    { class: "offer", tabindex: 0, dataset: { offerId: offer.id } },
    clock,
    h("span", { class: "what", text: what }),
    h("span", {}, subjectLine(offer)),
    h("span", { class: "actions" }, acceptButton, rejectButton),
  );
  item.tick = () => {
    const expired = clock.tick() <= 0;
    item.classList.toggle("expired", expired);
    const blocked = expired || busy.has(offer.id);
    acceptButton.disabled = blocked;
    rejectButton.disabled = blocked;
  };
  item.tick();
  return item;
}

function render() {
  const list = byId("offers");
  const focusedId = document.activeElement && document.activeElement.closest && document.activeElement.closest(".offer")
    ? Number(document.activeElement.closest(".offer").dataset.offerId)
    : null;
  const offers = [...model.offers.values()].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
  replace(list, offers.map(offerItem));
  byId("no-offers").hidden = offers.length > 0;
  const again = focusedId === null ? null : list.querySelector(`[data-offer-id="${focusedId}"]`);
  if (again) again.focus();
  else if (focusedId !== null) (list.querySelector(".offer") || byId("offers-heading")).focus();
}

function newOffers(before) {
  const fresh = [...model.offers.keys()].filter((id) => !before.has(id));
  if (fresh.length === 0) return;
  const offer = model.offers.get(fresh[fresh.length - 1]);
  announce(t("console.offer_arrived", { channel: t(`channel.${offer.channel}`), queue: queueName(offer.queue_id) }));
  const idle = document.activeElement === document.body || document.activeElement === null;
  if (idle) byId("offers").querySelector(`[data-offer-id="${offer.id}"]`)?.focus();
}

/** Accept or reject an offer; the answer closes it at once (its event follows). */
export async function decide(offerId, verb) {
  if (busy.has(offerId) || !model.offers.has(offerId)) return;
  busy.add(offerId);
  try {
    const offer = await (verb === "accept" ? actions.accept(offerId) : actions.reject(offerId));
    model.offerDecided(offer);
    announce(t(verb === "accept" ? "console.accepted" : "console.rejected"));
  } catch (error) {
    showError(error);
  } finally {
    busy.delete(offerId);
  }
}

/** The offer a key press acts on: the focused one, else the oldest. */
export function targetOffer() {
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest(".offer");
  if (focused) return Number(focused.dataset.offerId);
  const first = byId("offers").querySelector(".offer");
  return first ? Number(first.dataset.offerId) : null;
}

/** Show the model's offers, and keep their rings turning. */
export function mountOffers(consoleModel) {
  model = consoleModel;
  let known = new Set();
  model.addEventListener("offers", () => {
    render();
    newOffers(known);
    known = new Set(model.offers.keys());
  });
  setInterval(() => {
    for (const item of byId("offers").children) item.tick();
  }, 250);
  render();
}

/** Redraw in the current language. */
export function redrawOffers() {
  render();
}
