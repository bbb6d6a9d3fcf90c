// The sign-in page: POST /api/v1/auth/token, keep the token for this tab, go back to `next`.
// A problem shown is kept as what says it, so that a switch of language says it again.

import { ApiError, describe, safeNext, signIn } from "../js/api.js";
import { byId, text } from "../js/dom.js";
import { onChange, t, waitInWords } from "../js/i18n.js";
import { startPage } from "../js/page.js";

function problem(error) {
  if (error instanceof ApiError && error.status === 401) return t("signin.wrong");
  if (error instanceof ApiError && error.status === 429) {
    return t("signin.too_many", { wait: waitInWords(error.retryAfter || 60) });
  }
  return describe(error);
}

let said = null;

function sayProblem(what) {
  said = what;
  text(byId("signin-problem"), what ? what() : "");
}

async function submit(event) {
  event.preventDefault();
  const username = byId("username");
  const password = byId("password");
  const button = byId("signin-submit");
  if (!username.value.trim() || !password.value) {
    sayProblem(() => t("signin.missing"));
    (username.value.trim() ? password : username).focus();
    return;
  }
  button.disabled = true;
  sayProblem(null);
  try {
    await signIn(username.value.trim(), password.value);
    const next = new URLSearchParams(location.search).get("next");
    location.assign(safeNext(next));
  } catch (error) {
    sayProblem(() => problem(error));
    password.select();
    button.disabled = false;
  }
}

async function main() {
  await startPage({ title: "signin.title", dictionaries: ["signin"], signedIn: false });
  byId("signin").addEventListener("submit", submit);
  onChange(() => {
    if (said) sayProblem(said);
  });
  byId("signin-submit").disabled = false; // never a plain form submission (a password in a URL)
  // The cursor goes to the username unless the user is already typing somewhere: a focus
  // taken from the password box mid-word would put the password in plain sight.
  const active = document.activeElement;
  if (!active || active === document.body) byId("username").focus();
}

main();
