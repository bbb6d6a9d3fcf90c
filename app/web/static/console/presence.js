// The agent's status (their choice: available, away with a reason, offline) and state (the
// service's: idle, offered, busy, wrap-up, "offered" said as the offers are: ringing for a
// call, a new offer otherwise; "busy" said as the contacts in hand are: on a call, in a
// conversation), and the form that sets the status.

import { byId, text } from "../js/dom.js";
import { t } from "../js/i18n.js";
import { announce, showError } from "../js/page.js";
import * as actions from "./actions.js";

export const AWAY_REASONS = ["break", "lunch", "training", "meeting"];
// What "busy" is called follows the channels of the contacts in hand: a call when one of them
// is a call, a conversation when all are; anything else (e-mail, a case, not known yet) is
// "on a contact". "Offered" follows the pending offers: ringing when one of them is a call,
// else (a chat, web, app, e-mail or case offer, or none known yet) a new offer.
const CALLS = new Set(["voice", "callback"]);
const CONVERSATIONS = new Set(["chat", "web", "app"]);

let model = null;

function chosen() {
  const checked = byId("status-form").querySelector('input[name="status"]:checked');
  return checked ? checked.value : null;
}

function showReason() {
  byId("away-reason-field").hidden = chosen() !== "away";
}

function stateText(state) {
  if (state === "offered") {
    const offered = [...model.offers.values()].map((offer) => offer.channel);
    return t(offered.some((channel) => CALLS.has(channel)) ? "state.offered_call" : "state.offered");
  }
  if (state !== "busy") return t(`state.${state}`);
  const channels = [...model.contacts.values()].filter((c) => c.status === "connected").map((c) => c.channel);
  if (channels.some((channel) => CALLS.has(channel))) return t("state.busy_call");
  if (channels.length && channels.every((channel) => CONVERSATIONS.has(channel))) return t("state.busy_conversation");
  return t("state.busy");
}

function render() {
  const agent = model.agent;
  if (!agent) return;
  const reason = agent.status === "away" && agent.status_reason ? ` (${reasonText(agent.status_reason)})` : "";
  text(byId("status-now"), `${t(`presence.${agent.status}`)}${reason}`);
  byId("status-now").className = `badge ${agent.status === "available" ? "ok" : "muted"}`;
  text(byId("state-now"), stateText(agent.state));
  const form = byId("status-form");
  if (!form.contains(document.activeElement)) {
    const radio = form.querySelector(`input[name="status"][value="${agent.status}"]`);
    if (radio) radio.checked = true;
    if (agent.status === "away" && AWAY_REASONS.includes(agent.status_reason)) byId("away-reason").value = agent.status_reason;
    showReason();
  }
}

function reasonText(reason) {
  return AWAY_REASONS.includes(reason) || reason === "disconnected" || reason === "no_answer" ? t(`away.${reason}`) : reason;
}

async function submit(event) {
  event.preventDefault();
  const status = chosen();
  if (!status) return;
  const button = byId("status-submit");
  button.disabled = true;
  try {
    const reason = status === "away" ? byId("away-reason").value : null;
    const agent = await actions.setStatus(model.agent.id, status, reason);
    model.agent.status = agent.status;
    model.agent.status_reason = agent.status_reason ?? null;
    model.changed("agent");
    announce(t("console.status_set", { status: t(`presence.${agent.status}`) }));
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

/** The status line and form, kept in step with the model. */
export function mountPresence(consoleModel) {
  model = consoleModel;
  model.addEventListener("agent", render);
  model.addEventListener("contacts", render);
  model.addEventListener("offers", render);
  const form = byId("status-form");
  form.addEventListener("submit", submit);
  form.addEventListener("change", showReason);
  byId("status-submit").disabled = false; // the form submits through this module only
  render();
}

/** Redraw in the current language. */
export function redrawPresence() {
  render();
}
