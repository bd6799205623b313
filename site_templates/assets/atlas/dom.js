// Small DOM helpers. Text only ever goes in through textContent / text nodes: dataset strings are never markup.

export function el(tag, opts = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(opts)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

export function select(options, value, label) {
  const node = el("select", { "aria-label": label });
  for (const opt of options) node.append(el("option", { value: opt.id, text: opt.label, title: opt.title }));
  node.value = value;
  return node;
}

// Collects listeners and observers so a view can release everything it holds in one call.
export class Disposer {
  constructor() {
    this.items = [];
  }
  on(target, type, fn, options) {
    target.addEventListener(type, fn, options);
    this.items.push(() => target.removeEventListener(type, fn, options));
  }
  add(fn) {
    this.items.push(fn);
  }
  dispose() {
    for (const fn of this.items.splice(0).reverse()) {
      try {
        fn();
      } catch (err) {
        console.error(err);
      }
    }
  }
}

// View state lives in the hash as URL parameters; a plain anchor (#section, no "=") is not view state.
// The last state of each page is remembered for the session, so following an in-page anchor (which makes
// mkdocs-material render the page again) keeps the view as it was.
export function hashIsState() {
  return location.hash.includes("=");
}

function remembered() {
  try {
    return sessionStorage.getItem(`atlas-state:${location.pathname}`);
  } catch {
    return null;
  }
}

export function readHash() {
  if (hashIsState()) return new URLSearchParams(location.hash.replace(/^#/, ""));
  return new URLSearchParams(location.hash.length > 1 ? remembered() || "" : "");
}

export function writeHash(params) {
  const text = params.toString();
  const anchor = location.hash.length > 1 && !hashIsState();
  if (anchor && text === (remembered() || "")) return;
  try {
    sessionStorage.setItem(`atlas-state:${location.pathname}`, text);
  } catch {
    // storage may be disabled: the hash alone still carries the state
  }
  if (!text && !hashIsState()) return;
  const url = location.pathname + location.search + (text ? `#${text}` : "");
  if (url !== location.pathname + location.search + location.hash) history.replaceState(history.state, "", url);
}

export function showError(root, message) {
  const box = el("div", { class: "atlas-error", role: "alert" }, [el("strong", { text: "Atlas view: " }), message]);
  root.prepend(box);
  return box;
}

export function fmt(value) {
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 1000 || Math.abs(value) < 0.001 ? value.toExponential(2) : value.toFixed(3);
}

export function isTyping(event) {
  const t = event.target;
  return !!t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
}

export function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
