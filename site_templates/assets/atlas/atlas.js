// Entry point. Mounts every <div class="atlas-view" data-view="…"> of the page, on mkdocs-material's document$
// (so instant navigation works) or once on plain pages; views whose element left the page are destroyed first,
// which releases their canvases, listeners and observers.

import { mountHead } from "./head-view.js";
import { mountMatrix } from "./matrix-view.js";
import { showError } from "./dom.js";

const VIEWS = { head: mountHead, matrix: mountMatrix };
const mounted = new Map();

function unmountStale() {
  for (const [element, view] of mounted) {
    if (element.isConnected) continue;
    mounted.delete(element);
    try {
      view.destroy();
    } catch (err) {
      console.error(err);
    }
  }
}

function mountAll() {
  unmountStale();
  for (const element of document.querySelectorAll(".atlas-view")) {
    if (mounted.has(element)) continue;
    const mount = VIEWS[element.dataset.view];
    if (!mount) {
      showError(element, `unknown view type "${element.dataset.view}"`);
      mounted.set(element, { destroy() {} });
      continue;
    }
    try {
      mounted.set(element, mount(element));
    } catch (err) {
      console.error(err);
      showError(element, err.message);
    }
  }
  document.documentElement.dataset.atlasMounted = String(mounted.size);
}

if (window.document$ && typeof window.document$.subscribe === "function") {
  window.document$.subscribe(() => mountAll());
} else if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", mountAll, { once: true });
} else {
  mountAll();
}

window.atlasViews = mounted;
