// Records the console shows beside its live state, read from the REST API and kept for the
// page's life: queue names, contacts, customers. What the signed-in role may not see is the
// API's refusal, shown as such; nothing here widens what a role sees.

import { allPages, api } from "../js/api.js";

const queues = new Map();
const contacts = new Map();
const customers = new Map();

/** Read the queues' names once (agents may list queues). */
export async function loadQueues() {
  for (const queue of await allPages("/api/v1/queues")) queues.set(queue.id, queue.name);
}

/** A queue's name (its id while unknown). */
export function queueName(id) {
  return queues.get(id) ?? `#${id}`;
}

function cached(map, key, read, fresh) {
  if (fresh || !map.has(key)) {
    const reading = read().catch((error) => {
      map.delete(key);
      throw error;
    });
    map.set(key, reading);
  }
  return map.get(key);
}

/** GET /contacts/{id}, once unless `fresh`. */
export function contact(id, { fresh = false } = {}) {
  return cached(contacts, id, () => api(`/api/v1/contacts/${id}`), fresh);
}

/** GET /customers/{id}, once. */
export function customer(id) {
  return cached(customers, id, () => api(`/api/v1/customers/${id}`), false);
}
