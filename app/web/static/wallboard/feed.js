// Where the wallboard's figures come from.
//
// The service pushes them on /ws/wallboard (docs/websockets.md, "Live figures"): a
// `queue.stats` frame (every queue over the current interval and the day, and the centre)
// and a `complaints.counts` frame (complaints due today, at risk, breached), at least every
// second and soon after anything that changes them. The page hands every frame that is not
// a snapshot or an event to `frame`.
//
// A service without those frames (an older instance behind the same address) still has
// GET /api/v1/queues/{id}/stats: while no `queue.stats` frame has come for FALLBACK_AFTER_MS
// of a live socket, the feed reads every queue's figures by REST once a second instead, in
// the frame's shape (without the centre's figures, which that route does not give), and it
// stops as soon as a frame arrives. Complaint counts have no such route: without their
// frame the complaints panel says it has nothing to show.

import { allPages, api } from "../js/api.js";

const FALLBACK_AFTER_MS = 3000;
const POLL_EVERY_MS = 1000;

export class FiguresFeed {
  /** handlers: onBoard(board, source), onCounts(counts); source is "socket" or "rest". */
  constructor({ interval = "15m", onBoard, onCounts }) {
    this.interval = interval;
    this.onBoard = onBoard;
    this.onCounts = onCounts;
    this.lastFrameAt = 0;
    this.waitTimer = null;
    this.pollTimer = null;
    this.polling = false;
  }

  /** A message of the socket that is neither a snapshot nor an event. */
  frame(message) {
    if (message.type === "queue.stats") {
      this.lastFrameAt = Date.now();
      this.stopPolling();
      this.onBoard(message, "socket");
    } else if (message.type === "complaints.counts") {
      this.onCounts(message);
    }
  }

  /** The socket's state: live starts the wait for frames; anything else stops polling. */
  state(state) {
    clearTimeout(this.waitTimer);
    if (state !== "live") {
      this.stopPolling();
      return;
    }
    this.waitTimer = setTimeout(() => {
      if (Date.now() - this.lastFrameAt >= FALLBACK_AFTER_MS) this.startPolling();
    }, FALLBACK_AFTER_MS);
  }

  startPolling() {
    if (this.polling) return;
    this.polling = true;
    const tick = async () => {
      if (!this.polling) return;
      try {
        const board = await this.read();
        if (this.polling) this.onBoard(board, "rest");
      } catch {
        // the next tick tries again; the socket's banner says when the service is gone
      }
      if (this.polling) this.pollTimer = setTimeout(tick, POLL_EVERY_MS);
    };
    tick();
  }

  stopPolling() {
    this.polling = false;
    clearTimeout(this.pollTimer);
  }

  async read() {
    const queues = await allPages("/api/v1/queues");
    const figures = await Promise.all(
      queues.map(async (queue) => {
        const [now, day] = await Promise.all([
          api(`/api/v1/queues/${queue.id}/stats`, { query: { interval: this.interval } }),
          api(`/api/v1/queues/${queue.id}/stats`, { query: { interval: "1d" } }),
        ]);
        return { queue_id: queue.id, queue: queue.name, live: now.live, interval: now.interval, day: day.interval };
      }),
    );
    const at = figures.length ? figures[0].interval.to : new Date().toISOString();
    return { type: "queue.stats", at, queues: figures, overall: null };
  }
}
