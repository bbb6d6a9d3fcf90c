// The REST API, as the pages call it.
//
// The access token of POST /api/v1/auth/token is kept in sessionStorage (this tab only, gone
// when it closes) with its expiry. `api` sends it as a bearer token and turns every answer
// that is not 2xx into an ApiError carrying the service's error body ({"error", "detail",
// "fields"}): pages show `describe(error)`, the service's own words. A 401 means the sign-in
// is over (expired, revoked, never was): the token is dropped and the browser goes to the
// sign-in page, which brings it back here afterwards. Anonymous calls (the customer's status
// page) send no token and are never redirected.
//
// `serverNow` is the service's clock as this browser sees it (from the Date header of the
// last answer): offer countdowns and deadlines are the service's times, and a browser's clock
// may be minutes off.

const TOKEN = "hotline.token";
const EXPIRES = "hotline.token_expires_at";
const SIGN_IN = "/signin";

let clockOffsetMs = 0;

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const detail = (body && typeof body.detail === "string" && body.detail) || fallback || `HTTP ${status}`;
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.code = (body && body.error) || null;
    this.detail = detail;
    this.fields = (body && Array.isArray(body.fields) && body.fields) || [];
    this.retryAfter = null;
  }
}

/** The text to show for an error: the service's detail, and each field it names. */
export function describe(error) {
  if (!(error instanceof ApiError)) return String((error && error.message) || error);
  const fields = error.fields
    .filter((f) => f && f.field && !error.detail.includes(f.message || "\u0000"))
    .map((f) => `${f.field}: ${f.message}`);
  return [error.detail, ...fields].join(" — ");
}

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

/** The access token, if this tab holds one that has not expired. */
export function token() {
  const store = storage();
  const value = store && store.getItem(TOKEN);
  const expires = Number(store && store.getItem(EXPIRES));
  if (!value || (expires && Date.now() >= expires)) return null;
  return value;
}

/** Keep a token of POST /auth/token (its `expires_in` in seconds). */
export function keepToken(accessToken, expiresIn) {
  const store = storage();
  if (!store) return;
  store.setItem(TOKEN, accessToken);
  store.setItem(EXPIRES, String(Date.now() + Number(expiresIn || 0) * 1000));
}

/** Forget the token. */
export function signOut() {
  const store = storage();
  if (store) {
    store.removeItem(TOKEN);
    store.removeItem(EXPIRES);
  }
}

/** Where the sign-in page sends the browser back to: this page, at the same place (#...). */
export function returnPath() {
  return `${location.pathname}${location.search}${location.hash}`;
}

/** Go to the sign-in page, coming back here afterwards. */
export function toSignIn() {
  signOut();
  location.assign(`${SIGN_IN}?next=${encodeURIComponent(returnPath())}`);
}

/** A page that needs a sign-in calls this first: false (and on its way to sign in) if none. */
export function requireSession() {
  if (token()) return true;
  toSignIn();
  return false;
}

/** A path the sign-in page may return to: a path of this site, never another site. */
export function safeNext(value, fallback = "/console") {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//") || value.includes("\\")) {
    return fallback;
  }
  return value;
}

/** The service's clock (ms since the epoch), as seen from this browser. */
export function serverNow() {
  return Date.now() + clockOffsetMs;
}

function noteClock(response) {
  const date = Date.parse(response.headers.get("date") || "");
  if (!Number.isNaN(date)) clockOffsetMs = date + 500 - Date.now(); // the header drops the ms
}

function url(path, query) {
  const target = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") target.searchParams.set(key, String(value));
  }
  return target;
}

async function body(response) {
  const type = response.headers.get("content-type") || "";
  if (response.status === 204 || !type.includes("json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/**
 * Call the API: api("/api/v1/offers", {query: {agent: "me"}}), api(path, {method: "POST",
 * json: {...}}), {form: {...}} for a form body, or {body} for a body sent as it is (a
 * FormData, a Blob, text with its Content-Type in `headers`). Resolves to the JSON body, or
 * with `raw: true` to the Response itself (a CSV, a file); rejects with an ApiError.
 */
export async function api(
  path,
  { method = "GET", json, form, body: rawBody, query, anonymous = false, raw = false, headers = {} } = {},
) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  const bearer = anonymous ? null : token();
  if (!anonymous && !bearer) {
    toSignIn();
    throw new ApiError(401, null, "not signed in");
  }
  if (bearer) init.headers.Authorization = `Bearer ${bearer}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = new URLSearchParams(form);
  } else if (rawBody !== undefined) {
    init.body = rawBody;
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch (cause) {
    throw new ApiError(0, null, `the service cannot be reached (${cause && cause.message})`);
  }
  noteClock(response);
  if (raw && response.ok) return response;
  const content = await body(response);
  if (response.ok) return content;
  const error = new ApiError(response.status, content, response.statusText);
  error.retryAfter = Number(response.headers.get("retry-after")) || null;
  if (response.status === 401 && !anonymous) toSignIn();
  throw error;
}

/**
 * Every item of a paged list (following next_cursor), at most `maxPages` pages of 100; the
 * array's `more` is true when the list goes on past them, for the page to say it is cut.
 */
export async function allPages(path, { query = {}, maxPages = 10, ...options } = {}) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page += 1) {
    const result = await api(path, { ...options, query: { ...query, limit: 100, cursor } });
    items.push(...result.items);
    cursor = result.next_cursor;
    if (!cursor) break;
  }
  items.more = Boolean(cursor);
  return items;
}

let meOnce = null;

/** The signed-in user (GET /api/v1/agents/me), asked once per page. */
export function me() {
  if (!meOnce) meOnce = api("/api/v1/agents/me");
  return meOnce;
}

/** Sign in with a username and password; resolves once the token is kept. */
export async function signIn(username, password) {
  const answer = await api("/api/v1/auth/token", {
    method: "POST",
    form: { username, password },
    anonymous: true,
  });
  keepToken(answer.access_token, answer.expires_in);
  return answer;
}
