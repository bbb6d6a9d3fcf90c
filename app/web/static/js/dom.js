// Building the DOM from data, safely.
//
// Every page builds what it shows with `h` (and `svg`): text goes in as text nodes, attributes
// through setAttribute, so nothing a customer or an agent typed is ever parsed as markup. This
// module is the only place the pages create elements; none of them uses innerHTML,
// outerHTML, insertAdjacentHTML or document.write. Event handler attributes and inline
// styles are refused here: handlers are attached with `on`, and the pages' Content-Security-
// Policy allows no inline style or script anyway.

const SVG_NS = "http://www.w3.org/2000/svg";
const UNSAFE_URL = /^\s*(javascript|data|vbscript):/i;
const URL_ATTRIBUTES = new Set(["href", "src", "action", "formaction", "xlink:href"]);

function setAttributes(element, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    const lower = name.toLowerCase();
    if (lower.startsWith("on") || lower === "style") {
      throw new Error(`dom: attribute ${name} is not allowed; use on: {...} or a class`);
    }
    if (URL_ATTRIBUTES.has(lower) && UNSAFE_URL.test(String(value))) {
      throw new Error(`dom: unsafe URL in ${name}`);
    }
    element.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function build(element, props, children) {
  const { class: className, text, on, dataset, attrs, ...rest } = props || {};
  if (className) element.setAttribute("class", Array.isArray(className) ? className.filter(Boolean).join(" ") : className);
  setAttributes(element, { ...rest, ...(attrs || {}) });
  for (const [key, value] of Object.entries(dataset || {})) element.dataset[key] = String(value);
  for (const [type, handler] of Object.entries(on || {})) element.addEventListener(type, handler);
  if (text !== undefined && text !== null) element.textContent = String(text);
  append(element, children);
  return element;
}

/** An HTML element: h("li", {class: "offer", tabindex: 0, on: {click}}, "text", child). */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

/** An SVG element, in the SVG namespace. */
export function svg(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

/** Replace an element's children with these. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** Set an element's text (textContent: never parsed). */
export function text(element, value) {
  element.textContent = value === null || value === undefined ? "" : String(value);
  return element;
}

/** The element with this id, or an error naming it (a page's HTML and script disagree). */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`dom: no element #${id}`);
  return element;
}

/** Show or hide an element (the `hidden` attribute, styled by app.css). */
export function show(element, visible) {
  element.hidden = !visible;
  return element;
}
