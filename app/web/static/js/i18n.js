// Languages: Chinese (zh-CN) and English, switchable, remembered.
//
// Strings live in JSON dictionaries, /static/i18n/<name>.<language>.json, one pair per page
// (plus "common" for what every page shares); a page loads the names it needs with `load`.
// The language is the one chosen before (localStorage), else the browser's: the first of
// navigator.languages that is Chinese or English, English when neither is listed.
//
// In HTML, an element with data-i18n="key" gets t(key) as its text, and
// data-i18n-attr="placeholder:key;aria-label:other.key" sets attributes; `apply` does both.
// A missing key falls back to English, then to the key itself (visible, so it gets noticed).

export const LANGUAGES = ["zh-CN", "en"];
const FALLBACK = "en";
const STORE = "hotline.lang";

let current = null;
let names = [];
let strings = {};
let fallback = {};
const listeners = new Set();

/** The browser's preferred language among ours. */
export function browserLanguage() {
  const preferred = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  for (const tag of preferred) {
    const lower = String(tag || "").toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return FALLBACK;
}

function stored() {
  try {
    const value = localStorage.getItem(STORE);
    return LANGUAGES.includes(value) ? value : null;
  } catch {
    return null; // storage disabled: the browser's language, not remembered
  }
}

/** The language in use. */
export function lang() {
  if (current === null) current = stored() || browserLanguage();
  return current;
}

async function dictionary(name, language) {
  const response = await fetch(`/static/i18n/${name}.${language}.json`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`i18n: no dictionary ${name}.${language} (${response.status})`);
  return response.json();
}

async function merged(language) {
  const parts = await Promise.all(names.map((name) => dictionary(name, language)));
  return Object.assign({}, ...parts);
}

/** Load the dictionaries `pageNames` (with "common") in the current language. */
export async function load(pageNames) {
  names = ["common", ...pageNames.filter((name) => name !== "common")];
  const language = lang();
  [strings, fallback] = await Promise.all([merged(language), language === FALLBACK ? null : merged(FALLBACK)]);
  fallback = fallback || strings;
  document.documentElement.lang = language;
  apply(document);
}

/** The text of `key`, with {placeholders} filled from `params`. */
export function t(key, params) {
  const template = strings[key] ?? fallback[key] ?? key;
  if (!params) return template;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** Translate the marked elements under `root`. */
export function apply(root) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of element.dataset.i18nAttr.split(";")) {
      const [attribute, key] = pair.split(":").map((part) => part.trim());
      if (attribute && key) element.setAttribute(attribute, t(key));
    }
  }
}

/** Switch to `language`, remember it, translate the page and tell the listeners. */
export async function setLang(language) {
  if (!LANGUAGES.includes(language)) throw new Error(`i18n: unknown language ${language}`);
  current = language;
  try {
    localStorage.setItem(STORE, language);
  } catch {
    // storage disabled: the choice lasts as long as the page
  }
  await load(names.filter((name) => name !== "common"));
  for (const listener of listeners) listener(language);
}

/** Call `listener(language)` after every switch (to redraw what the page built itself). */
export function onChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** A date and time in the current language. */
export function dateTime(value) {
  if (!value) return "";
  const date = value instanceof Date ? value : new Date(value);
  return new Intl.DateTimeFormat(lang(), { dateStyle: "medium", timeStyle: "short" }).format(date);
}

const MINUTE = 60;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** `count` of `unit` (day, hour, minute) in words: "1 day", "15 minutes", "15 分钟". */
export function inUnits(count, unit) {
  const form = new Intl.PluralRules(lang()).select(count) === "one" ? "one" : "other";
  return t(`time.unit.${unit}.${form}`, { count });
}

function pair(count, unit, rest, restUnit) {
  const big = inUnits(count, unit);
  return rest ? t("time.unit.pair", { big, small: inUnits(rest, restUnit) }) : big;
}

/** A wait in seconds in the largest units that fit, rounded up (never shorter than it is):
 * "15 minutes", "1 hour 5 minutes", "2 days 3 hours" (a wait to be read, where `duration`
 * is a clock to be watched). */
export function waitInWords(seconds) {
  const minutes = Math.max(1, Math.ceil(seconds / MINUTE));
  if (minutes * MINUTE < HOUR) return inUnits(minutes, "minute");
  if (minutes * MINUTE < DAY) return pair(Math.floor(minutes / 60), "hour", minutes % 60, "minute");
  const hours = Math.ceil(seconds / HOUR);
  return pair(Math.floor(hours / 24), "day", hours % 24, "hour");
}

/** A duration in seconds, as "1:05" (under an hour) or "2 d 3 h" style words. */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 3600) return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days > 0) return t("time.days_hours", { days, hours });
  return t("time.hours_minutes", { hours, minutes });
}
