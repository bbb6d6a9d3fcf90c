// What the console knows: the agent, its pending offers and the contacts it holds.
//
// Built from the socket's snapshot (`reset`), then moved by each event (`apply`) in log order.
// Applying is idempotent and never undoes an ending: an offer once decided (accepted,
// rejected, expired, rescinded) is remembered as closed and never comes back, and a contact
// once ended never returns, whatever order a replay brings them in. Listeners are told what
// changed ("agent", "offers", "contacts", "cases"), and "ended-elsewhere" (a contact this
// agent held that someone else ended: the service, as for a caller who hung up before being
// put through, or a supervisor, who may also transfer it), with the contact, its
// disposition and the queue it was transferred to.

const OFFER_CLOSED = new Set(["offer.accepted", "offer.rejected", "offer.expired", "offer.rescinded"]);
const CONTACT_ENDED = new Set([
  "contact.completed",
  "contact.abandoned",
  "contact.canceled",
  "contact.transferred",
  "contact.timed_out",
]);
const HELD = "hotline.console.contacts";

export class ConsoleModel extends EventTarget {
  constructor() {
    super();
    this.agent = null;
    this.offers = new Map();
    this.closedOffers = new Set();
    this.contacts = new Map();
    this.endedContacts = new Set();
  }

  changed(...what) {
    for (const name of what) this.dispatchEvent(new Event(name));
  }

  /** A fresh snapshot: the agent and its pending offers. */
  reset(snapshot) {
    this.agent = { ...snapshot.agent };
    this.offers = new Map();
    for (const offer of snapshot.offers) {
      if (!this.closedOffers.has(offer.id)) this.offers.set(offer.id, offer);
    }
    this.changed("agent", "offers", "contacts", "cases");
  }

  mine(data) {
    return this.agent !== null && data && data.agent_id === this.agent.id;
  }

  /** Apply one event of the log. */
  apply(event) {
    const data = event.data || {};
    if (event.type === "offer.created") return this.offerCreated(event, data);
    if (OFFER_CLOSED.has(event.type)) return this.offerClosed(event, data);
    if (event.type === "contact.connected") return this.hold(data.contact_id, { status: "connected" }, data);
    if (event.type === "contact.wrap_up") {
      this.endedBySomeoneElse(event, data);
      return this.hold(data.contact_id, { status: "wrap_up", until: data.until }, data);
    }
    if (event.type === "contact.completed" || event.type === "contact.transferred") {
      this.endedBySomeoneElse(event, data);
    }
    if (CONTACT_ENDED.has(event.type)) return this.ended(data.contact_id);
    if (event.type === "agent.status_changed" && this.mine(data)) {
      this.agent.status = data.status;
      this.agent.status_reason = data.reason ?? null;
      return this.changed("agent");
    }
    if (event.type === "agent.state_changed" && this.mine(data)) {
      this.agent.state = data.state;
      return this.changed("agent");
    }
    if (event.type.startsWith("complaint.")) return this.changed("cases");
    return undefined;
  }

  offerCreated(event, data) {
    if (!this.mine(data) || this.closedOffers.has(data.offer_id)) return;
    this.offers.set(data.offer_id, {
      id: data.offer_id,
      contact_id: data.contact_id,
      agent_id: data.agent_id,
      queue_id: data.queue_id,
      channel: data.channel,
      status: "pending",
      reason: data.reason,
      created_at: event.at,
      expires_at: data.expires_at,
      decided_at: null,
    });
    this.changed("offers");
  }

  offerClosed(event, data) {
    this.closedOffers.add(data.offer_id);
    this.offers.delete(data.offer_id);
    if (event.type === "offer.accepted" && this.mine(data)) {
      this.hold(data.contact_id, { status: "connected" }, data);
    }
    this.changed("offers");
  }

  /** Close an offer the service has answered for (an action's answer may beat its event). */
  offerDecided(offer) {
    if (offer.status === "pending") return;
    this.closedOffers.add(offer.id);
    this.offers.delete(offer.id);
    if (offer.status === "accepted") this.hold(offer.contact_id, { status: "connected" }, offer);
    this.changed("offers");
  }

  /** Hold a contact; its channel comes with the event or record `data` when it has one. */
  hold(contactId, fields, data) {
    if (!contactId || this.endedContacts.has(contactId) || (data && !this.mine(data))) return;
    const known = this.contacts.get(contactId) || { id: contactId, until: null, channel: null };
    const channel = (data && data.channel) || fields.channel || known.channel;
    this.contacts.set(contactId, { ...known, ...fields, channel });
    this.remember();
    this.changed("contacts");
  }

  ended(contactId) {
    if (!contactId) return;
    this.endedContacts.add(contactId);
    if (this.contacts.delete(contactId)) {
      this.remember();
      this.changed("contacts");
    }
  }

  /** The conversation of a held contact ended (wrap-up, completed without it, or handed to
   * another queue) by an actor other than this agent: tell the listeners, once (the contact
   * is no longer "connected" after it, and a replay finds it so). */
  endedBySomeoneElse(event, data) {
    const held = this.contacts.get(data.contact_id);
    if (!held || held.status !== "connected" || this.agent === null) return;
    if (event.actor === `agent:${this.agent.id}`) return;
    const detail = {
      contactId: data.contact_id,
      disposition: data.disposition || null,
      toQueue: event.type === "contact.transferred" ? data.to_queue_id : null,
    };
    this.dispatchEvent(new CustomEvent("ended-elsewhere", { detail }));
  }

  /** Contacts found held by asking the service (after a reload). */
  recovered(contacts) {
    for (const contact of contacts) {
      const status = contact.status === "wrap_up" ? "wrap_up" : "connected";
      this.hold(contact.id, { status, channel: contact.channel || null }, null);
    }
  }

  remember() {
    try {
      sessionStorage.setItem(HELD, JSON.stringify([...this.contacts.keys()]));
    } catch {
      // storage disabled: a reload asks the service instead
    }
  }

  /** The ids of the contacts this tab held before a reload. */
  static rememberedContacts() {
    try {
      const ids = JSON.parse(sessionStorage.getItem(HELD) || "[]");
      return Array.isArray(ids) ? ids.filter((id) => Number.isInteger(id)) : [];
    } catch {
      return [];
    }
  }
}
