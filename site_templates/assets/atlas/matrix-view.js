// Matrix view: every head of a model (layers × heads). Thumbnails show first and stand in for the default
// picture (query/key colours of a 2D layout); a head's file is fetched only when its cell is in view and the view
// needs its points (another colouring, a layout without thumbnails), and a search fetches every head. Fetched
// heads are drawn on the cell's canvas. Layout and colour switch, token search with hit counts in every head,
// sort by a behaviour score, filter by label. Clicking a cell opens that head.

import { AtlasDataError, headAttributes, loadHead, loadManifest, loadModel } from "./data.js";
import { PIXEL_ENCODINGS, colourPoints, encodingsFor, normalizeToken } from "./colours.js";
import { Disposer, el, fmt, readHash, select, showError, writeHash } from "./dom.js";
import { isImageModel, loadPatchFeatures } from "./images.js";
import { fitProject, parseColour, rasterize } from "./raster.js";

const CONCURRENCY = 4;
const DIM = 0.12;

export function mountMatrix(root) {
  const view = new MatrixView(root);
  view.start();
  return view;
}

class MatrixView {
  constructor(root) {
    this.root = root;
    this.disposer = new Disposer();
    this.destroyed = false;
    this.base = new URL(root.dataset.data || "./", location.href).href;
    this.cells = [];
    this.frame = 0;
    this.queue = [];
    this.inFlight = 0;
    this.features = null;
    root.atlasView = this;
  }

  async start() {
    try {
      this.model = await loadManifest(this.base);
      if (this.destroyed) return;
      this.build();
      this.observe();
    } catch (err) {
      if (this.destroyed) return;
      if (!(err instanceof AtlasDataError)) console.error(err);
      showError(this.root, err instanceof AtlasDataError ? err.message : `unexpected error: ${err.message}`);
    }
  }

  build() {
    const { manifest } = this.model;
    const d = this.disposer;
    const metrics = [...new Set(manifest.heads.flatMap((h) => Object.keys(h.metrics || {})))].sort();
    const labels = [...new Set(manifest.heads.map((h) => h.label || ""))].sort();
    this.sorts = [{ id: "order", label: "layer, head" }];
    for (const m of metrics) {
      this.sorts.push({ id: `${m}:desc`, label: `${m.replace(/_/g, " ")} ↓` }, { id: `${m}:asc`, label: `${m.replace(/_/g, " ")} ↑` });
    }
    const layouts = manifest.layouts;
    this.encodings = encodingsFor(isImageModel(this.model));
    const h = readHash();
    this.state = {
      layout: layouts.includes(h.get("layout")) ? h.get("layout") : this.model.layouts2d[0] || layouts[0],
      colour: this.encodings.some((e) => e.id === h.get("colour")) ? h.get("colour") : "qk",
      search: h.get("search") || "",
      sort: this.sorts.some((s) => s.id === h.get("sort")) ? h.get("sort") : "order",
      label: labels.includes(h.get("label")) ? h.get("label") : "",
    };
    const s = this.state;
    const layoutSel = select(layouts.map((id) => ({ id, label: id })), s.layout, "layout");
    const colourSel = select(this.encodings, s.colour, "colour");
    const sortSel = select(this.sorts, s.sort, "sort heads");
    const labelSel = select([{ id: "", label: "all labels" }, ...labels.filter(Boolean).map((id) => ({ id, label: id }))], s.label, "label");
    const search = el("input", { type: "search", class: "atlas-search", placeholder: "search tokens in every head", "aria-label": "search tokens" });
    search.value = s.search;
    this.count = el("span", { class: "atlas-search-count", "aria-live": "polite" });
    d.on(layoutSel, "change", () => ((s.layout = layoutSel.value), this.showThumbs(), this.redrawAll()));
    d.on(colourSel, "change", () => ((s.colour = colourSel.value), this.redrawAll()));
    d.on(search, "input", () => ((s.search = search.value.trim()), this.redrawAll()));
    d.on(sortSel, "change", () => ((s.sort = sortSel.value), this.arrange()));
    d.on(labelSel, "change", () => ((s.label = labelSel.value), this.arrange()));
    this.toolbar = el("div", { class: "atlas-toolbar" }, [
      el("label", {}, ["layout ", layoutSel]),
      el("label", {}, ["colour ", colourSel]),
      el("span", { class: "atlas-search-box" }, [search, this.count]),
      el("label", {}, ["sort ", sortSel]),
      el("label", {}, ["label ", labelSel]),
    ]);
    this.grid = el("div", { class: "atlas-matrix-grid" });
    this.grid.style.setProperty("--atlas-columns", String(manifest.model.num_heads || 1));
    for (const info of manifest.heads) this.cells.push(this.makeCell(info));
    const fallback = this.root.querySelector(".atlas-matrix-static");
    if (fallback) fallback.hidden = true;
    this.root.append(this.toolbar, this.grid);
    this.arrange();
  }

  makeCell(info) {
    const thumbSrc = (info.thumbs || {})[this.state.layout];
    const canvas = el("canvas", { class: "atlas-cell-canvas", hidden: true });
    const img = el("img", { class: "atlas-cell-thumb", alt: "", loading: "lazy", hidden: !thumbSrc });
    if (thumbSrc) img.src = new URL(thumbSrc, this.base).href;
    img.addEventListener("load", () => this.firstDrawn(), { once: true });
    const link = el("a", { class: "atlas-matrix-cell", href: `L${info.layer}/H${info.head}/` }, [
      el("span", { class: "atlas-cell-plot" }, [img, canvas]),
      el("span", { class: "atlas-cell-caption", text: `L${info.layer} H${info.head}` }),
      el("span", { class: "atlas-cell-label", text: info.label || "" }),
      el("span", { class: "atlas-cell-metric" }),
      el("span", { class: "atlas-cell-hits" }),
    ]);
    link.dataset.layer = info.layer;
    link.dataset.head = info.head;
    link.title = `layer ${info.layer} head ${info.head}: ${info.label || ""}`;
    return { info, link, canvas, img, head: null, attrs: null };
  }

  // Order and visibility of the cells from the sort and label filter.
  arrange() {
    const { sort, label } = this.state;
    const [metric, dir] = sort.split(":");
    const value = (c) => (c.info.metrics || {})[metric];
    const cells = [...this.cells];
    if (sort !== "order") {
      cells.sort((a, b) => {
        const [x, y] = [value(a), value(b)];
        if (x === undefined || y === undefined) return (x === undefined) - (y === undefined);
        return dir === "asc" ? x - y : y - x;
      });
    }
    this.grid.classList.toggle("is-sorted", sort !== "order");
    for (const c of cells) {
      c.link.hidden = !!label && c.info.label !== label;
      c.link.querySelector(".atlas-cell-metric").textContent = sort === "order" || value(c) === undefined ? "" : fmt(value(c));
    }
    this.grid.replaceChildren(...cells.map((c) => c.link));
    this.root.dataset.visibleCells = String(cells.filter((c) => !c.link.hidden).length);
    this.update();
  }

  // Cells in view request their head when the view needs points; a search requests every head.
  observe() {
    const io = new IntersectionObserver((entries) => {
      for (const e of entries) e.target.atlasCell.visible = e.isIntersecting;
      this.requestNeeded();
      if (!this.inFlight && !this.queue.length) this.settled();
    });
    for (const c of this.cells) {
      c.link.atlasCell = c;
      io.observe(c.link);
    }
    this.disposer.add(() => io.disconnect());
  }

  needsPoints(cell) {
    const s = this.state;
    return s.colour !== "qk" || !!normalizeToken(s.search) || !(cell.info.thumbs || {})[s.layout];
  }

  requestNeeded() {
    const search = !!normalizeToken(this.state.search);
    for (const c of this.cells) if (search || (c.visible && this.needsPoints(c))) this.request(c);
  }

  request(cell) {
    if (cell.requested || this.destroyed) return;
    cell.requested = true;
    this.queue.push(cell);
    this.root.dataset.loaded = "false";
    this.pump();
  }

  pump() {
    while (this.inFlight < CONCURRENCY && this.queue.length) {
      const cell = this.queue.shift();
      this.inFlight++;
      this.load(cell).finally(() => {
        this.inFlight--;
        this.pump();
        if (!this.inFlight && !this.queue.length && !this.destroyed) this.settled();
      });
    }
  }

  async load(cell) {
    try {
      this.full ||= loadModel(this.base);
      this.model = await this.full;
      cell.head = await loadHead(this.model, cell.info);
      if (this.destroyed) return;
      cell.attrs = headAttributes(this.model, cell.head);
      cell.normalized = cell.attrs.text.map(normalizeToken);
      cell.dirty = true;
      this.schedule();
    } catch (err) {
      if (this.destroyed) return;
      cell.link.classList.add("is-broken");
      cell.link.title = err.message;
    }
  }

  // Every requested head has arrived: the cells in view are drawn on the next frame. The first time, the view is
  // interactive once the thumbnails of the cells in view are decoded too.
  settled() {
    const all = this.cells.every((c) => c.attrs || c.link.classList.contains("is-broken"));
    this.root.dataset.allLoaded = String(all);
    this.schedule(async () => {
      this.root.dataset.loaded = "true";
      if (this.interactive) return;
      this.interactive = true;
      const thumbs = this.cells.filter((c) => c.visible && !c.attrs && !c.img.hidden && c.img.src);
      await Promise.all(thumbs.map((c) => c.img.decode().catch(() => null)));
      if (!this.destroyed) performance.mark("atlas:interactive", { detail: { view: "matrix" } });
    });
  }

  // Cells still waiting for their head show the thumbnail of the current layout (none for 3D layouts).
  showThumbs() {
    for (const c of this.cells) {
      const src = (c.info.thumbs || {})[this.state.layout];
      if (src) c.img.src = new URL(src, this.base).href;
      if (!c.attrs) c.img.hidden = !src;
    }
  }

  firstDrawn() {
    if (this.firstDraw || this.destroyed) return;
    this.firstDraw = true;
    performance.mark("atlas:first-draw", { detail: { view: "matrix" } });
  }

  redrawAll() {
    for (const c of this.cells) c.dirty = true;
    this.update();
  }

  update() {
    const s = this.state;
    const p = new URLSearchParams();
    for (const [key, fallback] of [["layout", this.model.layouts2d[0]], ["colour", "qk"], ["search", ""], ["sort", "order"], ["label", ""]]) {
      if (s[key] && s[key] !== fallback) p.set(key, s[key]);
    }
    writeHash(p);
    const carry = new URLSearchParams([...p].filter(([k]) => ["layout", "colour", "search"].includes(k))).toString();
    for (const c of this.cells) c.link.setAttribute("href", `L${c.info.layer}/H${c.info.head}/` + (carry ? `#${carry}` : ""));
    this.schedule();
  }

  schedule(after = null) {
    if (after) (this.afterDraw ||= []).push(after);
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.drawCells();
      for (const fn of (this.afterDraw || []).splice(0)) fn();
    });
  }

  // Patch features for the pixel colourings, loaded with the images on first use (cells redraw on arrival).
  pixelFeatures() {
    if (!PIXEL_ENCODINGS.has(this.state.colour) || !this.model.tokens) return null;
    if (!this.features) {
      this.features = loadPatchFeatures(this.model);
      this.features.then((f) => ((this.featureData = f), this.redrawAll()), (err) => showError(this.root, err.message));
    }
    return this.featureData || null;
  }

  drawCells() {
    const s = this.state;
    const query = normalizeToken(s.search);
    this.requestNeeded();
    const features = this.pixelFeatures();
    let total = 0;
    for (const c of this.cells) {
      c.link.classList.toggle("is-pending", !c.attrs && this.needsPoints(c));
      if (!c.attrs) continue;
      let hits = 0;
      if (query) for (const t of c.normalized) if (t === query) hits++;
      total += hits;
      const badge = c.link.querySelector(".atlas-cell-hits");
      badge.textContent = query ? String(hits) : "";
      badge.dataset.count = query ? String(hits) : "";
      c.link.classList.toggle("has-hits", hits > 0);
      if (c.dirty) this.drawCell(c, query, features);
    }
    const loaded = this.cells.filter((c) => c.attrs).length;
    const of = loaded < this.cells.length ? ` of ${this.cells.length}` : "";
    this.count.textContent = query ? `${total} points in ${loaded}${of} heads` : "";
    this.count.dataset.count = query ? String(total) : "";
  }

  drawCell(c, query, features) {
    const layout = c.head.layouts[this.state.layout];
    if (!layout) return;
    c.dirty = false;
    const dpr = window.devicePixelRatio || 1;
    const box = c.canvas.parentElement;
    const [w, h] = [box.clientWidth || 96, box.clientHeight || 96];
    c.canvas.width = Math.round(w * dpr);
    c.canvas.height = Math.round(h * dpr);
    const { sx, sy } = fitProject(layout.axes, w, h);
    const { rgb } = colourPoints(this.state.colour, c.attrs, features);
    const n = c.attrs.n;
    const alpha = query ? Float32Array.from(c.normalized, (t) => (t === query ? 1 : DIM)) : null;
    const order = Int32Array.from({ length: n }, (_, i) => i);
    if (alpha) order.sort((a, b) => alpha[a] - alpha[b]);
    const ctx = c.canvas.getContext("2d");
    const image = ctx.createImageData(c.canvas.width, c.canvas.height);
    rasterize(image, parseColour(getComputedStyle(box).backgroundColor), { sx, sy, order, rgb, alpha, radius: (n < 4000 ? 1.5 : 1) + (query ? 0.5 : 0) }, dpr);
    ctx.putImageData(image, 0, 0);
    c.canvas.hidden = false;
    c.img.hidden = true;
    this.firstDrawn();
  }

  destroy() {
    this.destroyed = true;
    if (this.frame) cancelAnimationFrame(this.frame);
    this.disposer.dispose();
    for (const c of this.cells) {
      c.canvas.width = 0;
      c.canvas.height = 0;
    }
    delete this.root.atlasView;
  }
}
