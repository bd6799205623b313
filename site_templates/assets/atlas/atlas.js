// Entry point. Mounts every <div class="atlas-view" data-view="…"> of the page, on mkdocs-material's document$
// (so instant navigation works) or once on plain pages; views whose element left the page are destroyed first,
// which releases their canvases, listeners and observers.

import { showError } from "./dom.js";

// Each view's module is loaded only by pages that show it.
const VIEWS = {
  head: () => import("./head-view.js").then((m) => m.mountHead),
  matrix: () => import("./matrix-view.js").then((m) => m.mountMatrix),
  model: () => import("./model-view.js").then((m) => m.mountModel),
};
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

// A slot standing for the view until its module has loaded; destroying it early cancels the mount.
function mountOne(element) {
  const slot = {
    view: null,
    destroyed: false,
    destroy() {
      this.destroyed = true;
      if (this.view) this.view.destroy();
    },
  };
  const load = VIEWS[element.dataset.view];
  if (!load) {
    showError(element, `unknown view type "${element.dataset.view}"`);
    return slot;
  }
  load()
    .then((mount) => {
      if (!slot.destroyed) slot.view = mount(element);
    })
    .catch((err) => {
      console.error(err);
      showError(element, err.message);
    });
  return slot;
}

function mountAll() {
  unmountStale();
  for (const element of document.querySelectorAll(".atlas-view")) {
    if (mounted.has(element)) continue;
    mounted.set(element, mountOne(element));
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
