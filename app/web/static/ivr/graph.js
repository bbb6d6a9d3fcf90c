// A flow document as a graph: its nodes, the moves between them, and a layered layout.
//
// Edges are the fields that name another node (docs/ivr.md, "Node types"): a menu's options
// and its two counters' fallbacks, a collect's `next` and fallbacks, the branches of
// identify, business_hours and complaint_status, say's `next`. A name that is no node of the
// document (a draft the service refused for it) becomes a "missing" node, so the edge still
// shows where it points.
//
// Layout: layers by breadth-first depth from `start` (and from the operator node, which
// every menu reaches by its key); a node no path reaches goes in a layer after all the
// others; within a layer, nodes keep the order they were found in. Pure: no DOM.

const BRANCHES = {
  menu: [],
  collect: [["next", "ivr.edge.collected"]],
  identify: [["found", "ivr.edge.found"], ["not_found", "ivr.edge.not_found"]],
  say: [["next", "ivr.edge.next"]],
  business_hours: [["open", "ivr.edge.open"], ["closed", "ivr.edge.closed"]],
  complaint_status: [["found", "ivr.edge.found"], ["not_found", "ivr.edge.not_found"]],
};

/** [{to, label, params, field}] for one node. */
export function movesOf(node) {
  const moves = [];
  if (!node || typeof node !== "object") return moves;
  if (node.type === "menu" && Array.isArray(node.options)) {
    node.options.forEach((option, i) => {
      if (!option || typeof option.next !== "string") return;
      const phrase = option.phrases && Object.values(option.phrases).flat()[0];
      const label = option.key !== undefined && option.key !== null ? "ivr.edge.key" : "ivr.edge.said";
      moves.push({ to: option.next, label, params: { key: option.key, phrase: phrase || "" }, field: `options[${i}].next` });
    });
  }
  for (const [field, label] of BRANCHES[node.type] || []) {
    if (typeof node[field] === "string") moves.push({ to: node[field], label, params: {}, field });
  }
  for (const counter of ["no_input", "invalid"]) {
    const retry = node[counter];
    if (retry && typeof retry.fallback === "string") {
      moves.push({ to: retry.fallback, label: `ivr.edge.${counter}`, params: { max: retry.max ?? 3 }, field: `${counter}.fallback` });
    }
  }
  return moves;
}

/** Nodes (real and missing) and edges of a document; edges between one pair merged. */
export function graphOf(document) {
  const source = (document && typeof document.nodes === "object" && document.nodes) || {};
  const nodes = new Map(Object.entries(source).map(([name, node]) => [name, { name, node, missing: false }]));
  const edges = new Map();
  for (const [name, node] of Object.entries(source)) {
    for (const move of movesOf(node)) {
      if (!nodes.has(move.to)) nodes.set(move.to, { name: move.to, node: null, missing: true });
      const key = `${name}\u0000${move.to}`;
      const edge = edges.get(key) || { from: name, to: move.to, labels: [] };
      edge.labels.push(move);
      edges.set(key, edge);
    }
  }
  const roots = [document && document.start, document && document.keys && document.keys.operator_node].filter((n) => typeof n === "string");
  for (const root of roots) if (!nodes.has(root)) nodes.set(root, { name: root, node: null, missing: true });
  return { nodes, edges: [...edges.values()], roots };
}

/**
 * Layer (column) and row of every node: {positions: Map(name -> {layer, row}), layers}.
 *
 * Breadth-first depth from `start`; then every node that leads nowhere (a queue, a hang-up)
 * moves one layer past the deepest node that leads to it, so the many fallbacks into a
 * goodbye or the operator's queue run forward instead of back across the diagram. The
 * operator node, when only the operator key reaches it, sits in the first layer after start.
 */
export function layout(graph) {
  const next = new Map([...graph.nodes.keys()].map((name) => [name, []]));
  const previous = new Map([...graph.nodes.keys()].map((name) => [name, []]));
  for (const edge of graph.edges) {
    next.get(edge.from).push(edge.to);
    previous.get(edge.to).push(edge.from);
  }
  const [start, ...others] = graph.roots;
  const depth = new Map();
  const queue = [];
  const visit = (name, d) => {
    if (name === undefined || depth.has(name)) return;
    depth.set(name, d);
    queue.push(name);
  };
  visit(start, 0);
  for (let i = 0; i < queue.length; i += 1) for (const to of next.get(queue[i]) || []) visit(to, depth.get(queue[i]) + 1);
  for (const root of others) {
    visit(root, 1);
    for (let i = 0; i < queue.length; i += 1) for (const to of next.get(queue[i]) || []) visit(to, depth.get(queue[i]) + 1);
  }
  for (const [name, d] of depth) {
    const sources = previous.get(name).filter((from) => depth.has(from) && from !== name);
    if (next.get(name).length === 0 && sources.length) depth.set(name, Math.max(d, ...sources.map((from) => depth.get(from) + 1)));
  }
  const reached = depth.size ? Math.max(...depth.values()) + 1 : 0;
  const order = [...queue, ...[...graph.nodes.keys()].filter((name) => !depth.has(name))];
  for (const name of order) if (!depth.has(name)) depth.set(name, reached);
  const layers = [];
  for (const name of order) (layers[depth.get(name)] = layers[depth.get(name)] || []).push(name);
  const positions = new Map();
  layers.forEach((names, layer) => (names || []).forEach((name, row) => positions.set(name, { layer, row })));
  return { positions, layers: layers.map((names) => names || []), order };
}

/** Problems by node name, and those of the flow as a whole, from a 422's `fields`. */
export function problemsByNode(fields) {
  const byNode = new Map();
  const flow = [];
  for (const item of fields || []) {
    const path = String(item.field || "");
    const match = /^nodes\.([a-z][a-z0-9_]*)(?:\.(.*))?$/.exec(path);
    if (match) {
      const list = byNode.get(match[1]) || [];
      list.push({ field: match[2] || "", message: String(item.message || "") });
      byNode.set(match[1], list);
    } else {
      flow.push({ field: path, message: String(item.message || "") });
    }
  }
  return { byNode, flow };
}

/**
 * A document's name and version as a heading shows them; null for what a draft lacks. A
 * version left out is 1, as the service reads it (docs/ivr.md); one that is no number is null.
 */
export function titleOf(document) {
  const name = document && typeof document.name === "string" && document.name.trim() ? document.name : null;
  const raw = document && document.version !== undefined ? document.version : 1;
  const numbered = Number.isInteger(raw) || (typeof raw === "string" && /^\s*\d+\s*$/.test(raw));
  return { name, version: numbered ? String(raw).trim() : null };
}

/** What a node does, in a few words (its queue, number, type). */
export function detailOf(entry) {
  const node = entry.node;
  if (!node) return "";
  if (node.type === "enqueue" || node.type === "callback") return node.queue || "";
  if (node.type === "transfer") return node.number || "";
  if (node.type === "collect") return node.into || "";
  if (node.type === "identify") return node.by || "";
  return "";
}
