// Small pieces the desk's views share: labels for the service's codes, badges, clocks.

import { h } from "../js/dom.js";
import { dateTime, t } from "../js/i18n.js";

/** t(`${prefix}.${value}`), or the value itself when the dictionaries lack it. */
export function label(prefix, value) {
  if (value === null || value === undefined || value === "") return "—";
  const key = `${prefix}.${value}`;
  const said = t(key);
  return said === key ? String(value) : said;
}

/**
 * A complaint category in the page's language (desk.category.<code>); a category the
 * dictionaries lack (an agent may type any) as its code.
 */
export function categoryLabel(code) {
  return label("desk.category", code);
}

/** A complaint's categories, each as `categoryLabel` says it, in one line ("" for none). */
export function categoriesText(codes) {
  return (codes || []).map(categoryLabel).join(t("desk.list_separator"));
}

export function statusLabel(status) {
  return label("complaint.status", status);
}

const STATUS_LEVEL = {
  registered: "warn",
  classified: "warn",
  assigned: "muted",
  in_progress: "muted",
  paused: "warn",
  resolved: "ok",
  confirmed: "ok",
  closed: "ok",
  under_review: "warn",
  withdrawn: "muted",
  rejected: "muted",
  archived: "muted",
};

export function statusBadge(status) {
  return h("span", { class: `badge ${STATUS_LEVEL[status] || "muted"}`, dataset: { status }, text: statusLabel(status) });
}

export function when(value) {
  return value ? dateTime(value) : "—";
}

/** A clock's urgency: "breached", "at_risk" (80 % of its time used), "paused", "stopped", "running". */
export function clockLevel(clock) {
  if (clock.status === "breached") return "breached";
  if (clock.status === "stopped") return "stopped";
  if (clock.elapsed >= 0.8) return "at_risk";
  return clock.status === "paused" ? "paused" : "running";
}

const LEVEL_BADGE = { breached: "danger", at_risk: "warn", paused: "warn", stopped: "ok", running: "muted" };

export function clockBadge(clock) {
  const level = clockLevel(clock);
  return h("span", { class: `badge ${LEVEL_BADGE[level]}`, dataset: { level }, text: t(`desk.clock.level.${level}`) });
}

/** "42 %" of the clock's (extended) time used. */
export function used(clock) {
  return `${Math.round(Math.max(0, clock.elapsed) * 100)}%`;
}

/** A fact as a <dt>/<dd> pair; user text stays text. */
export function fact(key, value) {
  return [h("dt", { text: t(key) }), h("dd", { class: "user-text", text: value === null || value === undefined || value === "" ? "—" : String(value) })];
}
