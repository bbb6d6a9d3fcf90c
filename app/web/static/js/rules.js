// What the signed-in user may do, as the service's own tables say (/pages/rules.json: the
// access table and the complaint lifecycle, written by the service from the tables it
// enforces). Pages offer only what these allow; the API still decides every request.

let loaded = null;

/** The rules document, fetched once per page. */
export function rules() {
  if (!loaded) {
    loaded = fetch("/pages/rules.json", { credentials: "same-origin" }).then((response) => {
      if (!response.ok) throw new Error(`rules: ${response.status}`);
      return response.json();
    });
  }
  return loaded;
}

/** The access table's rule for (role, resource, action): "allow", "own", "same site", "deny". */
export function ruleOf(table, role, resource, action) {
  const roleRules = table.access[role] || {};
  return (roleRules[resource] || {})[action] || "deny";
}

/**
 * May `user` do `action` on a record of `resource`? subject: {ownerIds: [...], sites: [...]}
 * as the service judges it (app/agents/access.py); sites null when the record has no site rule,
 * [] when it has none yet.
 */
export function may(table, user, resource, action, subject = {}) {
  const rule = ruleOf(table, user.role, resource, action);
  if (rule === "allow") return true;
  const own = (subject.ownerIds || []).includes(user.id);
  if (rule === "own") return own;
  if (rule !== "same site") return false;
  if (own) return true;
  const sites = subject.sites;
  if (sites === null || sites === undefined) return false;
  return sites.length === 0 || (user.site !== null && user.site !== undefined && sites.includes(user.site));
}

/** Whether the role has the action at all (any rule but deny): to show a page's tools. */
export function hasAny(table, user, resource, action) {
  return ruleOf(table, user.role, resource, action) !== "deny";
}

/** The moves allowed from `status`: [{verb, to}], in the table's order. */
export function movesFrom(table, status) {
  return table.complaints.moves.filter((move) => move.from === status).map(({ verb, to }) => ({ verb, to }));
}
