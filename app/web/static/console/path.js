// How a caller came through the IVR, shown on their contact card: the flow, the time spent in
// the menus, the caller's language and the steps that tell the agent something (the options
// chosen, "asked for an agent", "identified", "entered a number"...), in order.
//
// The path is GET /contacts/{id}/ivr, readable exactly when the contact is. A contact that did
// not come through the IVR (a chat, an email, a call put in by hand) is that route's 404: the
// card then shows no section and no error. The steps that only say the IVR spoke or asked
// again (asked, said, repeat, lookup, open) are left out so the list reads at a glance.
// Flow names and chosen options come from the flow's author: they go in as text.

import { api, ApiError } from "../js/api.js";
import { h } from "../js/dom.js";
import { duration, lang, t } from "../js/i18n.js";
import { showError } from "../js/page.js";

// Results with a phrase of their own (console.ivr.result.<result>); outcomes are results too.
const PHRASED = new Set([
  "no_input", "invalid", "fallback", "back", "operator", "collected", "confirmed", "reenter",
  "found", "not_found", "closed", "exhausted", "language",
  "served", "enqueued", "callback", "transferred", "hung_up", "ended",
]);

/** The contact's way through the IVR, or null when it has none (or it could not be read:
 * the error is shown, the rest of the card still is). */
export async function pathOf(contactId) {
  try {
    return await api(`/api/v1/contacts/${contactId}/ivr`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) showError(error);
    return null;
  }
}

// The option's phrase in the page's language, else in a language of the same family
// ("en" reads "en-US"), else in any the flow has.
function chosen(choice) {
  const language = lang();
  const family = language.split("-")[0];
  const key =
    Object.keys(choice).find((k) => k === language) ??
    Object.keys(choice).find((k) => k.split("-")[0] === family) ??
    Object.keys(choice)[0];
  return key === undefined ? null : choice[key];
}

// A lookup of a complaint finds (or not) a complaint, not the caller.
function phraseKey(step) {
  const complaint = String(step.input || "").startsWith("complaint");
  if (complaint && ["found", "not_found"].includes(step.result)) return `console.ivr.result.complaint_${step.result}`;
  return `console.ivr.result.${step.result}`;
}

function stepItem(step) {
  const option = step.choice ? chosen(step.choice) : null;
  if (option !== null) return h("li", {}, t("console.ivr.chose"), " ", h("span", { class: "user-text chosen", text: option }));
  if (PHRASED.has(step.result)) return h("li", { text: t(phraseKey(step)) });
  return null;
}

function languageName(tag) {
  if (!tag) return "—";
  try {
    return new Intl.DisplayNames([lang()], { type: "language" }).of(tag) || tag;
  } catch {
    return tag; // not a language tag Intl knows: shown as the flow names it
  }
}

function fact(label, value, className) {
  return [h("dt", { text: t(label) }), h("dd", { class: className, text: value })];
}

/** The card's "How they called" section for `call` (GET /contacts/{id}/ivr). */
export function pathSection(call) {
  const steps = call.path.map(stepItem).filter(Boolean);
  return h(
    "section",
    { class: "ivr-path" },
    h("h3", { text: t("console.ivr.heading") }),
    h(
      "dl",
      { class: "facts" },
      fact("console.ivr.flow", call.flow, "user-text"),
      fact("console.ivr.time", duration(call.ivr_s)),
      fact("console.ivr.language", languageName(call.language)),
    ),
    steps.length === 0 ? h("p", { class: "empty", text: t("console.ivr.no_steps") }) : h("ol", { class: "ivr-steps" }, steps),
  );
}
