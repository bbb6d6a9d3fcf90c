// What the agent does, through one door: the console's socket or the REST API.
//
// Both doors run the same action with the same rules and answer with the same body
// (docs/websockets.md "Acting on the socket"); this module is the only place the console
// chooses between them. On the socket, each action carries a request_id and is sent again
// after a reconnect until it is answered: the service never acts twice on one request_id.
// A refusal rejects with an ApiError either way, so the page shows the service's detail.

import { api, ApiError } from "../js/api.js";

// "socket": actions go over /ws/agent; "rest": over the REST routes.
export const DOOR = "socket";

let socket = null;

/** The console's live socket (needed by the socket door). */
export function useSocket(liveSocket) {
  socket = liveSocket;
}

function refused(frame) {
  const body = frame.body || { error: frame.code, detail: frame.detail };
  return new ApiError(frame.status || 0, body, frame.detail);
}

async function overSocket(message) {
  try {
    return await socket.request(message);
  } catch (frame) {
    throw refused(frame);
  }
}

const rest = {
  accept: (offerId) => api(`/api/v1/offers/${offerId}/accept`, { method: "POST" }),
  reject: (offerId) => api(`/api/v1/offers/${offerId}/reject`, { method: "POST" }),
  setStatus: (agentId, status, reason) =>
    api(`/api/v1/agents/${agentId}/status`, { method: "POST", json: { status, status_reason: reason } }),
  complete: (contactId, disposition, notes) =>
    api(`/api/v1/contacts/${contactId}/complete`, { method: "POST", json: { disposition, notes } }),
  wrapUpDone: (agentId) => api(`/api/v1/agents/${agentId}/wrap-up/done`, { method: "POST" }),
};

const overTheSocket = {
  accept: (offerId) => overSocket({ type: "accept", offer_id: offerId }),
  reject: (offerId) => overSocket({ type: "reject", offer_id: offerId }),
  setStatus: (_agentId, status, reason) => overSocket({ type: "set_status", status, status_reason: reason }),
  complete: (contactId, disposition, notes) => overSocket({ type: "complete", contact_id: contactId, disposition, notes }),
  wrapUpDone: () => overSocket({ type: "wrap_up_done" }),
};

const door = DOOR === "socket" ? overTheSocket : rest;

/** Answer an offer made to the agent: the contact is connected. Resolves to the offer. */
export const accept = (offerId) => door.accept(offerId);
/** Decline an offer: the contact goes back to its queue. Resolves to the offer. */
export const reject = (offerId) => door.reject(offerId);
/** The agent's own status: "available", "away" (with a reason) or "offline". */
export const setStatus = (agentId, status, reason) => door.setStatus(agentId, status, reason ?? null);
/** The conversation is over: the contact's disposition and notes; wrap-up follows. */
export const complete = (contactId, disposition, notes) => door.complete(contactId, disposition || null, notes || null);
/** End the after-contact work now. */
export const wrapUpDone = (agentId) => door.wrapUpDone(agentId);
