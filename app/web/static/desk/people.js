// Colleagues by id (GET /api/v1/agents/{id}: any signed-in user may see a colleague's name
// and site), asked once each per page.

import { api, allPages } from "../js/api.js";
import { t } from "../js/i18n.js";

export class People {
  constructor(me) {
    this.me = me;
    this.known = new Map([[me.id, me]]);
    this.everyone = null;
  }

  async load(ids) {
    const missing = [...new Set(ids.filter((id) => id !== null && id !== undefined && !this.known.has(id)))];
    await Promise.all(
      missing.map(async (id) => {
        try {
          this.known.set(id, await api(`/api/v1/agents/${id}`));
        } catch {
          this.known.set(id, null); // gone or hidden: shown by id
        }
      }),
    );
  }

  get(id) {
    return this.known.get(id) || null;
  }

  name(id) {
    if (id === null || id === undefined) return t("desk.unassigned");
    const person = this.get(id);
    return person ? person.name : `#${id}`;
  }

  site(id) {
    const person = this.get(id);
    return person ? person.site : null;
  }

  /** Every active colleague (for the assignee choice), asked once. */
  async all() {
    if (!this.everyone) {
      this.everyone = allPages("/api/v1/agents").then((items) => {
        for (const person of items) this.known.set(person.id, person);
        return items.filter((person) => person.active !== false);
      });
    }
    return this.everyone;
  }
}
