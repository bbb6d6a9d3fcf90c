// What every page has: the bar (name, page title, links to the pages of the user's role, user,
// language switch, sign-out), the connection banner, the error list and a live region for announcements.
//
// A page's HTML holds the empty containers (#bar, #connection, #errors, #announce) and
// calls `startPage` first; `startPage` loads the dictionaries and, for a page behind a
// sign-in, sends a browser without a session to the sign-in page.

import { describe, me, requireSession, signOut } from "./api.js";
import { byId, h, replace, text } from "./dom.js";
import { lang, LANGUAGES, load, onChange, setLang, t } from "./i18n.js";

const LANGUAGE_NAMES = { "zh-CN": "中文", en: "English" };
const STAFF = ["agent", "supervisor", "admin"];
const SUPERVISORS = ["supervisor", "admin"];
// The pages people work in, in the bar's order, and the roles each is for (docs/pages.md).
// A link only saves typing the address: every page and every request is checked anyway.
const PAGES = [
  { path: "/console", key: "nav.console", roles: STAFF },
  { path: "/desk", key: "nav.desk", roles: STAFF },
  { path: "/wallboard", key: "nav.wallboard", roles: SUPERVISORS },
  { path: "/reports", key: "nav.reports", roles: SUPERVISORS },
  { path: "/ivr", key: "nav.ivr", roles: STAFF },
];

/** Links to the pages of the user's role, the one shown marked as current; null if none. */
function pagesNav(user) {
  const links = PAGES.filter(({ roles }) => roles.includes(user.role)).map(({ path, key }) =>
    h(
      "li",
      {},
      h("a", {
        href: path,
        "data-i18n": key,
        text: t(key),
        "aria-current": path === location.pathname ? "page" : null,
      }),
    ),
  );
  if (!links.length) return null;
  return h(
    "nav",
    { class: "pages", id: "pages", "aria-label": t("nav.label"), "data-i18n-attr": "aria-label:nav.label" },
    h("ul", {}, links),
  );
}

function languageButton() {
  const other = () => LANGUAGES.find((language) => language !== lang());
  const button = h("button", {
    type: "button",
    class: "secondary",
    id: "language",
    on: { click: () => setLang(other()) },
  });
  const label = () => {
    text(button, LANGUAGE_NAMES[other()]);
    button.setAttribute("lang", other());
    button.setAttribute("aria-label", `${t("common.language")}: ${LANGUAGE_NAMES[other()]}`);
  };
  label();
  onChange(label);
  return button;
}

function signOutButton() {
  return h("button", {
    type: "button",
    class: "secondary",
    id: "sign-out",
    "data-i18n": "common.sign_out",
    text: t("common.sign_out"),
    on: {
      click: () => {
        signOut();
        location.assign("/signin");
      },
    },
  });
}

async function whoLine(bar) {
  const who = h("span", { class: "who", id: "who" });
  bar.append(who);
  const user = await me();
  const line = () => text(who, t("common.signed_in_as", { name: user.name, role: t(`role.${user.role}`) }));
  line();
  onChange(line);
  return user;
}

/**
 * Start a page: its dictionaries, the bar, and (`signedIn`) the session check and the user.
 * Resolves to the signed-in user (null for a public page); never resolves when the browser
 * is on its way to the sign-in page.
 */
export async function startPage({ title, dictionaries, signedIn = true }) {
  if (signedIn && !requireSession()) return new Promise(() => {});
  await load(dictionaries);
  const bar = byId("bar");
  const spacer = h("span", { class: "spacer" });
  replace(
    bar,
    h("p", { class: "brand", "data-i18n": "common.brand", text: t("common.brand") }),
    h("h1", { class: "page-title", "data-i18n": title, text: t(title) }),
    spacer,
  );
  const user = signedIn ? await whoLine(bar) : null;
  const nav = user ? pagesNav(user) : null;
  if (nav) bar.insertBefore(nav, spacer);
  bar.append(languageButton());
  if (signedIn) bar.append(signOutButton());
  return user;
}

/** Show an error (an ApiError shows the service's detail); the user may dismiss it. */
export function showError(error) {
  const list = byId("errors");
  const message = h(
    "div",
    { class: "error" },
    h("span", { class: "user-text", text: describe(error) }),
    h("button", {
      type: "button",
      class: "secondary",
      "data-i18n": "common.dismiss",
      text: t("common.dismiss"),
      on: { click: () => message.remove() },
    }),
  );
  list.append(message);
  while (list.children.length > 3) list.firstElementChild.remove();
}

/** Remove the errors shown. */
export function clearErrors() {
  byId("errors").replaceChildren();
}

/** Say something to screen readers (the page's polite live region). */
export function announce(message) {
  const region = byId("announce");
  text(region, "");
  // A change after the clear is what screen readers announce, even for the same text twice.
  requestAnimationFrame(() => text(region, message));
}

/** Show a socket's state in the connection banner (empty while it is live). */
export function connectionBanner(state) {
  const banner = byId("connection");
  const messages = {
    connecting: "connection.connecting",
    reconnecting: "connection.lost",
    refused: "connection.refused",
  };
  banner.classList.toggle("refused", state === "refused");
  banner.dataset.state = state;
  const key = messages[state];
  // The region stays in the page (a live region that appears is not always announced).
  if (key) banner.dataset.i18n = key;
  else delete banner.dataset.i18n;
  text(banner, key ? t(key) : "");
}
