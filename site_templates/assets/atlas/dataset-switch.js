// Dataset switcher of a model on several datasets (matrix and head pages): a select in the toolbar that opens the
// same view (same layer and head) on another dataset, carrying the view state in the hash. The page lists the
// datasets and the relative URL of the same page in each in the view's data-datasets attribute (site/pages.py);
// the page's own dataset links (.atlas-dataset-link) get the same hash, so they carry the state too.

import { el, select } from "./dom.js";

function readLinks(root) {
  try {
    const links = JSON.parse(root.dataset.datasets || "[]");
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
  constructor(root, hash, disposer) {
    this.root = root;
    this.hash = hash;
    this.links = readLinks(root);
    this.element = null;
    if (this.links.length < 2) return;
    const current = root.dataset.dataset || "";
    this.select = select(this.links.map((l) => ({ id: l.name, label: l.name })), current, "dataset");
    this.select.classList.add("atlas-dataset-select");
    disposer.on(this.select, "change", () => this.go(this.select.value));
    this.element = el("label", { class: "atlas-dataset-switch" }, ["dataset ", this.select]);
  }

  go(name) {
    const link = this.links.find((l) => l.name === name);
    const url = link && targetUrl(link.href, this.hash());
    if (url) location.assign(url);
  }

  // Puts the current state on the page's static dataset links.
  update() {
    const hash = this.hash();
    for (const a of document.querySelectorAll("a.atlas-dataset-link")) {
      if (!a.dataset.base) a.dataset.base = a.getAttribute("href");
      a.setAttribute("href", a.dataset.base + (hash ? `#${hash}` : ""));
    }
  }
}
