// A live socket (/ws/agent or /ws/wallboard) that survives its connection (docs/websockets.md).
//
// The socket signs in with its first message (the token stays out of URLs and logs). The
// first snapshot builds the page (`onSnapshot`); every event after it is handed to `onEvent`
// in log order, and its cursor kept. When the connection drops, the page says so (`onState`)
// and the socket reconnects with a growing, jittered delay. On the new socket the page keeps
// its state, ignores the new snapshot and sends `resume` with its last cursor, then a `ping`:
//
// - events that arrive before the replay starts are already in the replay (it runs up to what
//   the socket has sent): they are held, and dropped when an event whose cursor is not after
//   the previous one shows where the replay starts;
// - if the `pong` comes first, there was nothing to replay, and the held events are new;
// - `resync` (the replay is too long, or the cursor unknown) means the state cannot be brought
//   up to date event by event: the socket reconnects without a cursor and the next snapshot
//   rebuilds the page (`onSnapshot` again).
//
// So the page misses no event and applies each one in order. Close 4401 (the sign-in is over)
// goes to the sign-in page; 4403 (the role may not open this socket) is final, not retried.
//
// `request(message)` sends a message carrying a request_id and resolves with the answer of the
// same request_id (`ack`) or rejects with it (`error`). A request still unanswered when the
// connection drops is sent again on the next one: the service answers a repeated request_id
// with its first answer and never acts twice.

import { token, toSignIn } from "./api.js";

const UNAUTHORIZED = 4401;
const FORBIDDEN = 4403;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const PING_EVERY_MS = 25000;
const REQUEST_TIMEOUT_MS = 20000;

/** Is cursor `a` after cursor `b` in the log? (Cursors are "<tx>-<id>"; unknown shapes: yes.) */
export function isAfter(a, b) {
  const parse = (value) => /^(\d+)-(\d+)$/.exec(String(value));
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return true;
  const [tx1, id1, tx2, id2] = [x[1], x[2], y[1], y[2]].map((part) => BigInt(part));
  return tx1 > tx2 || (tx1 === tx2 && id1 > id2);
}

/** A fresh request id (crypto.randomUUID needs https; getRandomValues does not). */
export function newRequestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export class LiveSocket {
  /**
   * path: "/ws/agent"; handlers: onSnapshot(data), onEvent(event, message),
   * onState("connecting" | "live" | "reconnecting" | "refused"), onMessage(message) for
   * anything else the service sends.
   */
  constructor(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.ws = null;
    this.cursor = null;
    this.replay = null;
    this.attempt = 0;
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pending = new Map(); // request_id -> {message, resolve, reject, timer}
    this.state = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, "page closed");
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    if (this.handlers.onState) this.handlers.onState(state);
  }

  connect() {
    const bearer = token();
    if (!bearer) {
      toSignIn();
      return;
    }
    this.setState(this.cursor === null && this.attempt === 0 ? "connecting" : "reconnecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${this.path}`);
    this.ws = ws;
    ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "auth", token: bearer })));
    ws.addEventListener("message", (message) => this.receive(message));
    ws.addEventListener("close", (close) => this.closed(ws, close));
  }

  closed(ws, close) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.replay = null;
    clearInterval(this.pingTimer);
    if (close.code === UNAUTHORIZED) {
      this.stopped = true;
      toSignIn();
      return;
    }
    if (close.code === FORBIDDEN) {
      this.stopped = true;
      this.setState("refused");
      return;
    }
    if (this.stopped) return;
    this.setState("reconnecting");
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), base / 2 + Math.random() * base / 2);
  }

  sendNow(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  receive(raw) {
    let message;
    try {
      message = JSON.parse(raw.data);
    } catch {
      return; // not JSON: nothing the protocol sends
    }
    switch (message.type) {
      case "snapshot":
        return this.snapshot(message);
      case "event":
        return this.event(message);
      case "pong":
        return this.pong();
      case "resync":
        return this.resync();
      default:
        return this.other(message);
    }
  }

  snapshot(message) {
    this.attempt = 0;
    this.pingTimer = setInterval(() => this.sendNow({ type: "ping" }), PING_EVERY_MS);
    if (this.cursor === null) {
      this.cursor = message.cursor;
      this.handlers.onSnapshot(message.data);
      this.setState("live");
    } else {
      this.replay = { previous: message.cursor, held: [], started: false };
      this.sendNow({ type: "resume", cursor: this.cursor });
      this.sendNow({ type: "ping" });
    }
    for (const request of this.pending.values()) this.sendNow(request.message);
  }

  apply(message) {
    this.cursor = message.cursor;
    this.handlers.onEvent(message.event, message);
  }

  event(message) {
    const replay = this.replay;
    if (replay === null || replay.started) return this.apply(message);
    if (isAfter(message.cursor, replay.previous)) {
      replay.held.push(message);
      replay.previous = message.cursor;
      return undefined;
    }
    replay.started = true;
    replay.held = [];
    return this.apply(message);
  }

  pong() {
    const replay = this.replay;
    if (replay === null) return;
    this.replay = null;
    for (const message of replay.started ? [] : replay.held) this.apply(message);
    this.setState("live");
  }

  resync() {
    this.cursor = null;
    this.replay = null;
    this.attempt = 0;
    if (this.ws) this.ws.close(1000, "resync");
  }

  other(message) {
    const request = message.request_id ? this.pending.get(message.request_id) : undefined;
    if (request && (message.type === "ack" || message.type === "error")) {
      this.pending.delete(message.request_id);
      clearTimeout(request.timer);
      if (message.type === "ack") request.resolve(message.result);
      else request.reject(message);
      return;
    }
    if (message.type === "error" && this.replay !== null && !message.request_id) {
      this.resync(); // the resume was refused (a cursor the service cannot read)
      return;
    }
    if (this.handlers.onMessage) this.handlers.onMessage(message);
  }

  /** Send a request (it gets a request_id); resolves with its ack's result. */
  request(message) {
    const requestId = message.request_id || newRequestId();
    const framed = { ...message, request_id: requestId };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject({ type: "error", request_id: requestId, status: 0, detail: "no answer from the service" });
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(requestId, { message: framed, resolve, reject, timer });
      this.sendNow(framed); // if the socket is down, sent again once it is back
    });
  }
}
