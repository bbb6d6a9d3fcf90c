// The wallboard: the centre and every queue, live, for supervisors and admins.
//
// /ws/wallboard signs in (the socket refuses an agent with 4403: the page then says the
// wallboard is not for their role and stops), and its figures frames (feed.js) redraw the
// page: the centre's big numbers, its figures over the current interval and the day, the
// agents, the complaint deadlines, the last hour's chart and the queues' table. Nothing is
// computed here that the service computes: the page shows the frames' figures as they are.

import { api } from "../js/api.js";
import { byId, show, text } from "../js/dom.js";
import { dateTime, onChange, t } from "../js/i18n.js";
import { connectionBanner, showError, startPage } from "../js/page.js";
import { LiveSocket } from "../js/socket.js";
import { HourChart, reportBuckets } from "./chart.js";
import { FiguresFeed } from "./feed.js";
import { centreTarget, renderAgents, renderComplaints, renderFigures, renderQueues, renderTiles } from "./render.js";

const HOUR_MS = 3600 * 1000;
const view = { board: null, counts: null, span: "interval", source: null, chartDrawnAt: 0 };
let chart = null;

function drawBoard() {
  const board = view.board;
  if (!board) return;
  renderTiles(byId("overall-tiles"), board);
  renderFigures(byId("overall-figures"), byId("formula"), board);
  renderAgents(byId("agents"), board.overall ? board.overall.live.agents : null);
  renderQueues(byId("queues"), board, view.span);
  text(byId("updated"), t(view.source === "rest" ? "wallboard.updated_rest" : "wallboard.updated", { at: dateTime(board.at) }));
  byId("updated").dataset.at = board.at;
}

function drawCounts() {
  renderComplaints(byId("complaint-tiles"), byId("at-risk"), view.counts);
}

function drawChart(force) {
  const now = Date.now();
  if (!force && now - view.chartDrawnAt < 1000) return;
  view.chartDrawnAt = now;
  const at = view.board ? Date.parse(view.board.at) : now;
  chart.draw(Number.isNaN(at) ? now : at);
}

function onBoard(board, source) {
  view.board = board;
  view.source = source;
  show(byId("board"), true);
  drawBoard();
  const at = Date.parse(board.at);
  if (board.overall && !Number.isNaN(at)) {
    chart.add(at, board.overall.live.waiting, board.overall.interval.service_level_pct, centreTarget(board.queues, "interval"));
  }
  drawChart(false);
}

function onCounts(counts) {
  view.counts = counts;
  drawCounts();
}

function onState(state) {
  connectionBanner(state);
  if (state === "refused") {
    show(byId("board"), false);
    show(byId("refused"), true);
    byId("refused").focus();
  }
}

async function seedChart() {
  const to = new Date();
  const from = new Date(to.getTime() - HOUR_MS);
  try {
    const report = await api("/api/v1/reports/queues", { query: { from: from.toISOString(), to: to.toISOString(), interval: "15m" } });
    chart.seed(reportBuckets((report && report.rows) || []));
    drawChart(true);
  } catch {
    // no report (a role without it, or an older service): the chart starts with the page
  }
}

function wireSpan() {
  for (const input of document.querySelectorAll('input[name="span"]')) {
    input.addEventListener("change", () => {
      view.span = input.value;
      drawBoard();
    });
  }
}

async function main() {
  const user = await startPage({ title: "wallboard.title", dictionaries: ["wallboard"] });
  chart = new HourChart(byId("chart"));
  drawCounts();
  drawChart(true);
  wireSpan();
  onChange(() => {
    drawBoard();
    drawCounts();
    drawChart(true);
  });
  const feed = new FiguresFeed({ onBoard, onCounts });
  const socket = new LiveSocket("/ws/wallboard?figures=1", {
    onSnapshot: () => {},
    onEvent: () => {},
    onState: (state) => {
      onState(state);
      feed.state(state);
    },
    onMessage: (message) => {
      if (message.type === "error") showError(new Error(message.detail || "error"));
      else feed.frame(message);
    },
  });
  socket.start();
  if (user && user.role !== "agent") seedChart();
}

main();
