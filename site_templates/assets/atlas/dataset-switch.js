// Dataset switcher of a model on several datasets, and block switcher of an encoder–decoder model (matrix and head
// pages): a select in the toolbar that opens the same view (same layer and head) on another dataset or block,
// carrying the view state in the hash. The page lists the datasets (blocks) and the relative URL of the same page
// in each in the view's data-datasets (data-blocks) attribute (site/pages.py; a block with fewer layers or heads
// links its last one); the page's own links (.atlas-dataset-link, .atlas-block-link) get the same hash, so they
// carry the state too.

import { el, select } from "./dom.js";

function readLinks(root, kind) {
  try {
    const links = JSON.parse(root.dataset[`${kind}s`] || "[]");
    const ok = (l) => l && typeof l.name === "string" && typeof l.href === "string";
    return Array.isArray(links) ? links.filter(ok) : [];
  } catch {
    return [];
  }
}

// Same-origin http(s) URL of a link's page with the state's hash, or null.
function targetUrl(href, hash) {
  const url = new URL(href, location.href);
  if (url.origin !== location.origin || !/^(https?|file):$/.test(url.protocol)) return null;
  url.hash = hash;
  return url.href;
}

export class DatasetSwitch {
  // hash(): the view state to carry (URLSearchParams text without the selected point: point ids are per dataset).
  // kind: "dataset" or "block" (which data- attributes and link class the page uses).
  constructor(root, hash, disposer, kind = "dataset") {
    this.root = root;
    this.hash = hash;
    this.kind = kind;
    this.links = readLinks(root, kind);
    this.element = null;
    if (this.links.length < 2) return;
    const current = root.dataset[kind] || "";
    this.select = select(this.links.map((l) => ({ id: l.name, label: l.name })), current, kind);
    this.select.classList.add(`atlas-${kind}-select`);
    disposer.on(this.select, "change", () => this.go(this.select.value));
    this.element = el("label", { class: `atlas-${kind}-switch` }, [`${kind} `, this.select]);
  }

  go(name) {
    const link = this.links.find((l) => l.name === name);
    const url = link && targetUrl(link.href, this.hash());
    if (url) location.assign(url);
  }

  // Puts the current state on the page's static dataset (block) links.
  update() {
    const hash = this.hash();
    for (const a of document.querySelectorAll(`a.atlas-${this.kind}-link`)) {
      if (!a.dataset.base) a.dataset.base = a.getAttribute("href");
      a.setAttribute("href", a.dataset.base + (hash ? `#${hash}` : ""));
    }
  }
}
