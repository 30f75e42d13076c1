// Shared state and small DOM helpers. Modules register their entry points on
// `ctx` so that they can call each other without import cycles.

export const ctx = {
  models: [],
  styles: [],
  samplers: [],
  me: null, // {name, credits, unlimited, shared}
  caps: { upscale: null },
};

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child != null) node.append(child);
  return node;
}

export function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

let toastTimer = null;
export function toast(message, { error = false } = {}) {
  const box = $("#toast");
  box.textContent = message;
  box.classList.toggle("error", error);
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, error ? 6000 : 3000);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** "a message" -> "A message." for display. */
export function sentence(text) {
  const t = String(text || "").trim();
  if (!t) return "";
  const s = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(s) ? s : `${s}.`;
}

export const ASPECT_RATIOS = { "1:1": [1, 1], "16:9": [16, 9], "9:16": [9, 16] };

/** The size the server picks for a ratio (request.size_for_aspect). */
export function sizeForRatio(ratio, native) {
  const [rw, rh] = ASPECT_RATIOS[ratio];
  const area = native * native;
  const width = Math.sqrt((area * rw) / rh);
  const height = area / width;
  const round = (v) => Math.max(8, Math.round(v / 8) * 8);
  return [round(width), round(height)];
}

export function slug(name) {
  return String(name).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}
