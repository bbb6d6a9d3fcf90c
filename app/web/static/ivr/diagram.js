// Drawing a flow: the SVG diagram, and the same graph as a table (the diagram's text
// alternative, and the way through it by keyboard).
//
// Every node is a box with its name, its type and what it leads to; a node with problems
// (the service's 422 on upload) is drawn in the danger colour with the number of problems,
// and each problem is listed beside the diagram. Missing nodes (a name no node has) are
// dashed. Edges run left to right from a layer to the next; an edge back to an earlier
// layer (a menu that returns to another) curves below the boxes.

import { h, replace, svg } from "../js/dom.js";
import { t } from "../js/i18n.js";
import { detailOf, graphOf, layout, titleOf } from "./graph.js";

const BOX_W = 200;
const BOX_H = 66;
const COL = BOX_W + 110;
const ROW = BOX_H + 34;
const MARGIN = 24;
// The node types of a flow document (docs/ivr.md), each with an `ivr.type.<type>` text. A
// refused draft may name any other type, or none: it is shown as such, never as a key.
const TYPES = new Set(["menu", "collect", "identify", "say", "business_hours", "enqueue", "callback", "complaint_status", "transfer", "hangup"]);

function typeOf(entry) {
  const type = entry.node && typeof entry.node === "object" ? entry.node.type : undefined;
  return TYPES.has(type) ? type : null;
}

/** The words for a node's type: known, unknown (as written) or not given. */
export function typeText(entry) {
  if (entry.missing) return t("ivr.node.missing");
  const known = typeOf(entry);
  if (known) return t(`ivr.type.${known}`);
  const type = entry.node && typeof entry.node === "object" ? entry.node.type : undefined;
  if (type === undefined || type === null || type === "") return t("ivr.type.none");
  return t("ivr.type.unknown", { type: typeof type === "string" ? type : JSON.stringify(type) });
}

function edgeText(labels) {
  return labels.map((move) => t(move.label, move.params)).join(", ");
}

function place(positions, name) {
  const p = positions.get(name);
  return { x: MARGIN + p.layer * COL, y: MARGIN + p.row * ROW };
}

function edgePath(a, b) {
  if (b.x > a.x) {
    const [sx, sy, tx, ty] = [a.x + BOX_W, a.y + BOX_H / 2, b.x, b.y + BOX_H / 2];
    const bend = (tx - sx) / 2;
    return { d: `M${sx},${sy} C${sx + bend},${sy} ${tx - bend},${ty} ${tx},${ty}`, lx: (sx + tx) / 2, ly: (sy + ty) / 2 - 6 };
  }
  if (b.x === a.x) {
    const [sx, sy, ty] = [a.x + BOX_W, a.y + BOX_H / 2, b.y + BOX_H / 2];
    const out = sx + 36;
    return { d: `M${sx},${sy} C${out},${sy} ${out},${ty} ${sx},${ty}`, lx: out - 6, ly: (sy + ty) / 2 };
  }
  const [sx, sy, tx, ty] = [a.x + BOX_W / 2 + 20, a.y + BOX_H, b.x + BOX_W / 2 - 20, b.y + BOX_H];
  const drop = Math.max(sy, ty) + 30;
  return { d: `M${sx},${sy} C${sx},${drop} ${tx},${drop} ${tx},${ty}`, lx: (sx + tx) / 2, ly: drop - 4 };
}

function box(entry, at, problems, isStart) {
  const count = problems.length;
  const classes = ["node", entry.missing ? "missing" : typeOf(entry), count ? "invalid" : null, isStart ? "start" : null];
  const type = typeText(entry);
  const detail = detailOf(entry);
  const tip = [entry.name, type, ...problems.map((p) => `${p.field || entry.name}: ${p.message}`)].join("\n");
  return svg(
    "g",
    { class: classes, transform: `translate(${at.x},${at.y})`, dataset: { node: entry.name, problems: count } },
    svg("title", { text: tip }),
    svg("rect", { width: BOX_W, height: BOX_H, rx: 6 }),
    svg("text", { class: "name", x: 10, y: 20, text: entry.name }),
    svg("text", { class: "type", x: 10, y: 39, text: detail ? `${type} · ${detail}` : type }),
    count ? svg("text", { class: "problem-count", x: 10, y: 57, text: t("ivr.node.problems", { count }) }) : null,
  );
}

function diagramTitle(document) {
  const { name, version } = titleOf(document);
  const named = name ?? t("ivr.diagram.unnamed");
  return version === null ? t("ivr.diagram.title_unversioned", { name: named }) : t("ivr.diagram.title", { name: named, version });
}

/** The diagram of `document` in `element` (an <svg>), problems by node marked. */
export function drawDiagram(element, document, byNode) {
  const graph = graphOf(document);
  const { positions, layers, order } = layout(graph);
  graph.order = [...order].sort((a, b) => positions.get(a).layer - positions.get(b).layer || positions.get(a).row - positions.get(b).row);
  const width = MARGIN * 2 + Math.max(1, layers.length) * COL - (COL - BOX_W);
  const height = MARGIN * 2 + Math.max(1, ...layers.map((l) => l.length)) * ROW + 40;
  const edges = graph.edges.map((edge) => {
    const path = edgePath(place(positions, edge.from), place(positions, edge.to));
    const broken = (byNode.get(edge.from) || []).some((p) => edge.labels.some((m) => p.field === m.field));
    return svg(
      "g",
      { class: ["edge", broken ? "invalid" : null], dataset: { from: edge.from, to: edge.to } },
      svg("path", { d: path.d, "marker-end": broken ? "url(#arrow-bad)" : "url(#arrow)" }),
      svg("text", { class: "edge-label", x: path.lx, y: path.ly, "text-anchor": "middle", text: edgeText(edge.labels) }),
    );
  });
  const boxes = [...graph.nodes.values()].map((entry) => box(entry, place(positions, entry.name), byNode.get(entry.name) || [], entry.name === document.start));
  const arrow = (id) => svg("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z" }));
  element.setAttribute("viewBox", `0 0 ${width} ${height}`);
  element.setAttribute("width", String(width));
  element.setAttribute("height", String(height));
  replace(
    element,
    svg("title", { id: "diagram-title", text: diagramTitle(document) }),
    svg("defs", {}, arrow("arrow"), arrow("arrow-bad")),
    svg("g", { class: "edges" }, edges),
    svg("g", { class: "nodes" }, boxes),
  );
  return graph;
}

/** The same graph as a table: node, type, where it leads, its problems. */
export function nodeTable(table, graph, byNode, onShow) {
  const rows = (graph.order || [...graph.nodes.keys()]).map((name) => graph.nodes.get(name)).map((entry) => {
    const problems = byNode.get(entry.name) || [];
    const out = graph.edges.filter((e) => e.from === entry.name).map((e) => `${edgeText(e.labels)} → ${e.to}`);
    return h(
      "tr",
      { dataset: { node: entry.name }, class: problems.length ? "invalid" : null },
      h("th", { scope: "row" }, h("button", { type: "button", class: "link", text: entry.name, on: { click: () => onShow(entry.name) }, "aria-label": t("ivr.table.show", { name: entry.name }) })),
      h("td", { class: "user-text", text: typeText(entry) }),
      h("td", { class: "user-text", text: out.join("\n") || "—" }),
      h("td", {}, problems.length ? h("ul", { class: "problems" }, problems.map((p) => h("li", { class: "user-text", text: p.field ? `${p.field}: ${p.message}` : p.message }))) : "—"),
    );
  });
  replace(
    table,
    h("caption", { text: t("ivr.table.caption") }),
    h("thead", {}, h("tr", {}, ["node", "type", "leads_to", "problems"].map((c) => h("th", { scope: "col", text: t(`ivr.table.${c}`) })))),
    h("tbody", {}, rows),
  );
}

/** Mark `name` in the diagram and bring it into view. */
export function highlight(element, name) {
  for (const node of element.querySelectorAll("g.node.selected")) node.classList.remove("selected");
  const target = [...element.querySelectorAll("g.node")].find((g) => g.dataset.node === name);
  if (target) {
    target.classList.add("selected");
    target.scrollIntoView({ block: "nearest", inline: "center" });
  }
}
