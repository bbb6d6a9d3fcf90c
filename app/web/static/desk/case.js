// A complaint's case page: what it is about, its clocks (paused, extended, at risk), the
// classifier's suggestion, the moves the signed-in user may make, notes, files, and the
// timeline. Every text a complainant or an agent wrote is shown as text.

import { api } from "../js/api.js";
import { h, replace } from "../js/dom.js";
import { t } from "../js/i18n.js";
import { clearErrors, showError } from "../js/page.js";
import { categoriesText, categoryLabel, clockBadge, fact, label, statusBadge, used, when } from "./format.js";
import { mayAct, movesPanel, stillReadable } from "./moves.js";
import { filesPanel, notesPanel } from "./notes.js";

function clocksTable(complaint) {
  const rows = complaint.clocks.map((clock) =>
    h(
      "tr",
      { dataset: { clock: clock.kind } },
      h("th", { scope: "row", text: label("desk.clock.kind", clock.kind) }),
      h("td", { text: when(clock.due_at) }),
      h("td", {}, clockBadge(clock), clock.paused_for ? [" ", h("span", { class: "user-text", text: t("desk.clock.paused_for", { reason: label("desk.pause", clock.paused_for) }) })] : null),
      // A clock of no time at all (acknowledged on registration) has no share to show.
      clock.target === 0 && !clock.extensions.length
        ? h("td", { text: "—" })
        : h("td", {}, clock.status === "stopped" ? null : [h("meter", { min: 0, max: 1, low: 0.5, high: 0.8, optimum: 0, value: Math.min(Math.max(clock.elapsed, 0), 1), "aria-label": t("desk.clock.used_of", { kind: label("desk.clock.kind", clock.kind) }) }), " "], used(clock)),
      h("td", { text: clock.extensions.length ? clock.extensions.map((d) => t("desk.clock.days", { days: d })).join(", ") : "—" }),
    ),
  );
  return h(
    "table",
    { id: "clocks" },
    h("caption", { class: "visually-hidden", text: t("desk.case.clocks") }),
    h("thead", {}, h("tr", {}, ["kind", "due", "state", "used", "extensions"].map((c) => h("th", { scope: "col", text: t(`desk.clock.${c}`) })))),
    h("tbody", {}, rows),
  );
}

function facts(complaint, people) {
  const c = complaint;
  return h(
    "dl",
    { class: "facts", id: "case-facts" },
    fact("desk.case.channel", label("channel", c.channel)),
    fact("desk.case.branch", c.branch),
    fact("desk.case.categories", categoriesText(c.categories)),
    fact("desk.case.severity", c.severity ? label("desk.severity", c.severity) : ""),
    fact("desk.case.escalation", label("desk.level", c.escalation_level)),
    fact("desk.case.assignee", people.name(c.assignee_id)),
    fact("desk.case.complainant", `${c.complainant.name} (${label("desk.relation", c.complainant.relation)})`),
    fact("desk.case.contact", c.complainant.contact),
    fact("desk.case.occurred_at", when(c.matter.occurred_at)),
    fact("desk.case.location", c.matter.location),
    fact("desk.case.description", c.matter.description),
    fact("desk.case.grounds", c.grounds),
    fact("desk.case.request", c.request),
    fact("desk.case.registered", `${when(c.registered_at)} · ${actorName(c.registered_by, people)}`),
    c.contact_id ? fact("desk.case.contact_id", `#${c.contact_id}`) : null,
  );
}

/** "agent:7" as the colleague's name; "system" and other actors as they are. */
function actorName(actor, people) {
  const match = /^agent:(\d+)$/.exec(actor || "");
  return match ? people.name(Number(match[1])) : actor;
}

function actorIds(complaint) {
  return [complaint.registered_by, ...complaint.timeline.map((e) => e.actor)]
    .map((actor) => /^agent:(\d+)$/.exec(actor || ""))
    .filter(Boolean)
    .map((match) => Number(match[1]));
}

function timeline(complaint, people) {
  return h(
    "ol",
    { class: "timeline", id: "timeline" },
    complaint.timeline.map((entry) =>
      h(
        "li",
        { dataset: { action: entry.action } },
        h("time", { datetime: entry.at, text: `${when(entry.at)} · ${actorName(entry.actor, people)}` }),
        h("strong", { text: label("desk.verb", entry.action) }),
        entry.before && entry.after && entry.before !== entry.after ? ` — ${label("complaint.status", entry.before)} → ${label("complaint.status", entry.after)}` : null,
        entry.reason ? h("p", { class: "user-text", text: entry.reason }) : null,
      ),
    ),
  );
}

/**
 * Why the classifier suggests what it does, in the page's language: for each category the
 * complaint's words that weigh most for it (a concept it knows in both languages by its
 * label), then the severity cues. The words themselves are the complaint's, shown as text.
 */
function reasons(suggestion) {
  const evidence = suggestion.evidence || [];
  if (!evidence.length) return null;
  const sep = t("desk.list_separator");
  const word = (w) => (w.startsWith("#") ? t("desk.suggestion.topic", { topic: label("desk.concept", w.slice(1)) }) : w);
  const cues = suggestion.severity_cues || [];
  return h(
    "div",
    { class: "hint", id: "suggestion-why" },
    h("p", { text: t("desk.suggestion.why") }),
    h(
      "ul",
      {},
      evidence.map((e) => h("li", { dataset: { category: e.category } }, `${categoryLabel(e.category)}${t("desk.suggestion.colon")}`, h("span", { class: "user-text", text: e.words.length ? e.words.map(word).join(sep) : t("desk.suggestion.prior") }))),
      h("li", { id: "suggestion-cues", text: t("desk.suggestion.cues", { cues: cues.length ? cues.map((c) => label("desk.cue", c)).join(sep) : t("desk.suggestion.no_cues") }) }),
    ),
  );
}

async function suggestionPanel(container, ctx, complaint, acting) {
  replace(container, h("p", { class: "empty", text: t("desk.suggestion.loading") }));
  let suggestion;
  try {
    suggestion = await api(`/api/v1/complaints/${complaint.id}/suggestion`);
  } catch (error) {
    replace(container, h("p", { class: "empty", text: t("desk.suggestion.none") }));
    return;
  }
  if (!suggestion.categories.length) {
    replace(container, h("p", { class: "empty", text: t("desk.suggestion.none") }));
    return;
  }
  const names = suggestion.categories.map((c) => c.name);
  const use = () => {
    ctx.prefill = { categories: names, severity: suggestion.severity && suggestion.severity.name };
    if (ctx.openMove) ctx.openMove("classify");
  };
  const classify = acting && complaint.status && ctx.table.complaints.moves.some((m) => m.from === complaint.status && m.verb === "classify");
  replace(
    container,
    h("p", { id: "suggested-categories" }, t("desk.suggestion.categories"), " ", suggestion.categories.map((c, i) => [i ? t("desk.list_separator") : "", h("span", { class: "user-text", dataset: { category: c.name }, text: categoryLabel(c.name) }), ` (${Math.round(c.score * 100)}%)`])),
    suggestion.severity ? h("p", { id: "suggested-severity", text: t("desk.suggestion.severity", { severity: label("desk.severity", suggestion.severity.name) }) }) : null,
    reasons(suggestion),
    h("p", { class: "hint", text: t("desk.suggestion.advice") }),
    classify ? h("button", { type: "button", class: "secondary", id: "use-suggestion", text: t("desk.suggestion.use"), on: { click: use } }) : null,
  );
}

/** Draw complaint `id` into `view`. */
export async function showCase(view, ctx, id) {
  clearErrors();
  const gone = ctx.handedAway;
  if (gone && String(gone.id) === String(id)) {
    handedAway(view, ctx, gone); // drawn again (a language switch): the API would say 404
    return;
  }
  let complaint;
  try {
    complaint = await api(`/api/v1/complaints/${encodeURIComponent(id)}`);
  } catch (error) {
    replace(view, h("h2", { id: "view-heading", tabindex: -1, text: t("desk.case.missing") }), h("p", {}, h("a", { href: "#list", text: t("desk.case.back") })));
    showError(error);
    return;
  }
  await ctx.people.load([complaint.assignee_id, ...actorIds(complaint)]);
  draw(view, ctx, complaint);
}

/**
 * What the user's last move on this complaint did, in the page's language (so a switch says it
 * again): shown on the case drawn after it, without taking the focus, until the next move is
 * sent or the user leaves the case (main.js forgets it then). Screen readers were told by
 * `announce` already, so this line is no live region.
 */
function moveDone(ctx, complaint) {
  const done = ctx.done;
  if (!done || done.id !== complaint.id) return null;
  return h("p", { id: "move-done", class: "notice move-done", text: t("desk.move.done", { verb: label("desk.verb", done.verb), status: label("complaint.status", done.status) }) });
}

/**
 * The move gave the complaint to someone whose cases the user does not see: say where it went.
 * Kept in `ctx` until the user leaves the case (main.js forgets it then), so drawing the view
 * again says it again rather than that there is no such complaint.
 */
function handedAway(view, ctx, complaint) {
  ctx.handedAway = complaint;
  const id = complaint.assignee_id;
  replace(
    view,
    h("h2", { id: "view-heading", tabindex: -1, text: t("desk.case.handed_away", { reference: complaint.reference }) }),
    moveDone(ctx, complaint),
    h("p", { id: "handed-away", text: t("desk.case.handed_away_detail", { name: ctx.people.name(id), site: ctx.people.site(id) || t("desk.no_site") }) }),
    h("p", {}, h("a", { href: "#list", text: t("desk.case.back") })),
  );
}

function draw(view, ctx, complaint) {
  ctx.prefill = { categories: complaint.categories, severity: complaint.severity };
  ctx.openMove = null;
  const acting = mayAct(ctx, complaint);
  const moves = h("div", { id: "moves" });
  const suggestion = h("div", { id: "suggestion" });
  const notes = h("div", {});
  const files = h("div", {});
  replace(
    view,
    h("p", {}, h("a", { href: "#list", text: t("desk.case.back") })),
    h("h2", { id: "view-heading", tabindex: -1 }, h("span", { id: "case-reference", text: complaint.reference }), " ", statusBadge(complaint.status)),
    moveDone(ctx, complaint),
    // The clocks across the page, above the two columns: every deadline and its share used
    // in sight at once, never scrolled inside half the screen.
    h("section", { class: "panel case-clocks", "aria-labelledby": "clocks-h" }, h("h3", { id: "clocks-h", text: t("desk.case.clocks") }), h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": t("desk.case.clocks_table") }, clocksTable(complaint))),
    h(
      "div",
      { class: "case-grid" },
      h(
        "div",
        { class: "stack" },
        h("section", { class: "panel", "aria-labelledby": "facts-h" }, h("h3", { id: "facts-h", text: t("desk.case.facts") }), facts(complaint, ctx.people)),
        h("section", { class: "panel", "aria-labelledby": "notes-h" }, h("h3", { id: "notes-h", text: t("desk.notes.heading") }), notes),
        h("section", { class: "panel", "aria-labelledby": "files-h" }, h("h3", { id: "files-h", text: t("desk.files.heading") }), files),
      ),
      h(
        "div",
        { class: "stack" },
        h("section", { class: "panel", "aria-labelledby": "moves-h" }, h("h3", { id: "moves-h", text: t("desk.move.heading_all") }), moves),
        h("section", { class: "panel", "aria-labelledby": "suggestion-h" }, h("h3", { id: "suggestion-h", text: t("desk.suggestion.heading") }), suggestion),
        h("section", { class: "panel", "aria-labelledby": "timeline-h" }, h("h3", { id: "timeline-h", text: t("desk.case.timeline") }), timeline(complaint, ctx.people)),
      ),
    ),
  );
  const started = () => {
    ctx.done = null;
    const line = view.querySelector("#move-done");
    if (line) line.remove();
  };
  movesPanel(moves, ctx, complaint, {
    started,
    done: async (answer, verb) => {
      ctx.done = { id: complaint.id, verb, status: answer.status };
      await ctx.people.load([answer.assignee_id, ...actorIds(answer)]);
      if (stillReadable(ctx, answer)) draw(view, ctx, answer);
      else handedAway(view, ctx, answer);
      view.querySelector("#view-heading").focus();
    },
  });
  suggestionPanel(suggestion, ctx, complaint, acting);
  notesPanel(notes, { complaint, people: ctx.people, acting });
  filesPanel(files, { complaint, acting });
}
