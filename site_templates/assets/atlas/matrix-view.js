// Matrix view: every head of a model (layers × heads). Thumbnails come first and stand in for the default picture
// (query/key colours of a 2D layout), one strip per layer when the model has strips; the tokens follow once they
// are drawn. One shared canvas lies over the whole grid (sticky to the viewport) and
// draws every head whose points are loaded: a head's coordinates are fetched when its cell is in view and the view
// needs points (another colouring, a search, a layout without thumbnails) or the pointer rests on it. Hovering a
// point shows its token and rings the same point in every drawn head; a search highlights its hits in every head
// with a count per head. Layout and colour switch, sort by a behaviour score, filter by label; a click opens the head.
// In a 3D layout, dragging on any drawn head turns every head together (one shared angle).
// The thumbnails are pictures on white: in the dark colour scheme every cell in view is drawn from its points.

import { AtlasDataError, loadLayout, loadManifest, loadModel, loadNorms } from "./data.js";
import { DEFAULT_ENCODING, colourPoints, encoding, encodingsFor, paletteOf, setCssColours } from "./colours.js";
import { Disposer, el, fmt, readHash, select, showError, writeHash } from "./dom.js";
import { imageInfo, isImageModel, loadPatchFeatures } from "./images.js";
import { MatrixCanvas } from "./matrix-canvas.js";
import { perLayout, sortOptions, sortValue, sorted } from "./matrix-sort.js";
import { DatasetSwitch } from "./dataset-switch.js";
import { isDark, onSchemeChange } from "./theme.js";
import { TOKEN_KEY, normalizeToken, pieceNote } from "./token-text.js";

const CONCURRENCY = 4;

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
    this.queue = [];
    this.inFlight = 0;
    this.features = null;
    root.atlasView = this;
  }

  async start() {
    try {
      this.meta = await loadManifest(this.base);
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
    const { manifest } = this.meta;
    const d = this.disposer;
    const labels = [...new Set(manifest.heads.map((h) => h.label || ""))].sort();
    this.sorts = sortOptions(manifest);
    this.palette = paletteOf(manifest);
    setCssColours(this.root, this.palette);
    const layouts = manifest.layouts;
    this.encodings = encodingsFor(isImageModel(this.meta));
    const h = readHash();
    this.state = {
      layout: layouts.includes(h.get("layout")) ? h.get("layout") : this.meta.defaultLayout,
      colour: this.encodings.some((e) => e.id === h.get("colour")) ? h.get("colour") : DEFAULT_ENCODING,
      search: h.get("search") || "",
      sort: this.sorts.some((s) => s.id === h.get("sort")) ? h.get("sort") : "order",
      label: labels.includes(h.get("label")) ? h.get("label") : "",
    };
    const s = this.state;
    const layoutSel = select(layouts.map((id) => ({ id, label: id })), s.layout, "layout");
    const colourSel = select(this.encodings, s.colour, "colour");
    const sortSel = select(this.sorts, s.sort, "sort heads");
    const labelSel = select([{ id: "", label: "all labels" }, ...labels.filter(Boolean).map((id) => ({ id, label: id }))], s.label, "label");
    const search = el("input", { type: "search", class: "atlas-search", placeholder: "search tokens in every head", "aria-label": "search tokens", title: TOKEN_KEY });
    search.value = s.search;
    this.count = el("span", { class: "atlas-search-count", "aria-live": "polite" });
    this.turnHint = el("span", { class: "atlas-hint", text: "drag a head to turn them all" });
    d.on(layoutSel, "change", () => {
      s.layout = layoutSel.value;
      this.showThumbs();
      if (perLayout(s.sort)) this.arrange();
      this.changed();
    });
    d.on(colourSel, "change", () => ((s.colour = colourSel.value), this.changed()));
    d.on(search, "input", () => ((s.search = search.value.trim()), this.changed()));
    d.on(sortSel, "change", () => ((s.sort = sortSel.value), this.arrange()));
    d.on(labelSel, "change", () => ((s.label = labelSel.value), this.arrange()));
    this.datasetSwitch = new DatasetSwitch(this.root, () => this.hashText || "", d);
    this.blockSwitch = new DatasetSwitch(this.root, () => this.hashText || "", d, "block");
    this.toolbar = el("div", { class: "atlas-toolbar" }, [
      this.datasetSwitch.element,
      this.blockSwitch.element,
      el("label", {}, ["layout ", layoutSel]),
      el("label", {}, ["colour ", colourSel]),
      el("span", { class: "atlas-search-box" }, [search, this.count]),
      el("label", {}, ["sort ", sortSel]),
      el("label", {}, ["label ", labelSel]),
      this.turnHint,
    ]);
    this.grid = el("div", { class: "atlas-matrix-grid" });
    this.grid.style.setProperty("--atlas-columns", String(manifest.model.num_heads || 1));
    for (const info of manifest.heads) this.cells.push(this.makeCell(info));
    const fallback = this.root.querySelector(".atlas-matrix-static");
    if (fallback) fallback.hidden = true;
    const stage = el("div", { class: "atlas-matrix-stage" });
    this.root.append(this.toolbar, stage);
    this.canvas = new MatrixCanvas(stage, this.grid, {
      cellAt: (target) => this.cellAt(target),
      onHover: (cell) => cell && this.request(cell),
      describe: (row) => this.describe(row),
      href: (cell, pointId) => this.cellHref(cell, pointId),
    });
    this.disposer.add(() => this.canvas.destroy());
    this.disposer.add(onSchemeChange(() => this.changed()));
    this.arrange();
    if (normalizeToken(s.search)) this.loadTokens();
  }

  makeCell(info) {
    const img = el("img", { class: "atlas-cell-thumb", alt: "", loading: "lazy" });
    img.addEventListener("load", () => this.firstDrawn(), { once: true });
    const plot = el("span", { class: "atlas-cell-plot" }, [img]);
    const link = el("a", { class: "atlas-matrix-cell", href: `L${info.layer}/H${info.head}/` }, [
      plot,
      el("span", { class: "atlas-cell-caption", text: `L${info.layer} H${info.head}` }),
      el("span", { class: "atlas-cell-label", text: info.label || "" }),
      el("span", { class: "atlas-cell-metric" }),
      el("span", { class: "atlas-cell-hits" }),
    ]);
    link.dataset.layer = info.layer;
    link.dataset.head = info.head;
    link.title = `layer ${info.layer} head ${info.head}: ${info.label || ""}`;
    const cell = { info, link, plot, img, coords: new Map(), norm: null, pending: new Set() };
    link.atlasCell = cell;
    this.setThumb(cell);
    return cell;
  }

  // The cell's thumbnail: its part of the layer's strip when the model has strips (one file per layer, so a wide
  // model costs one request per layer), else its own file.
  setThumb(cell) {
    const { layer, head } = cell.info;
    const layout = this.state.layout;
    const has = this.meta.thumbLayouts.has(layout);
    const strip = has ? this.stripUrl(layer, layout) : null;
    const n = this.meta.manifest.model.num_heads || 1;
    if (strip) cell.img.src = strip;
    else if (has) cell.img.src = this.meta.url("thumb", layer, head, layout);
    cell.img.style.objectFit = strip ? "cover" : "";
    cell.img.style.objectPosition = strip ? `${n > 1 ? (100 * head) / (n - 1) : 0}% 0` : "";
    cell.img.hidden = !has;
  }

  stripUrl(layer, layout) {
    const template = (this.meta.manifest.thumbnails || {}).strips;
    if (typeof template !== "string" || !template) return null;
    return new URL(template.replaceAll("{layer}", String(layer)).replaceAll("{layout}", layout), this.base).href;
  }

  cellAt(target) {
    const link = target && target.closest ? target.closest(".atlas-matrix-cell") : null;
    return link && this.grid.contains(link) ? link.atlasCell : null;
  }

  // Order and visibility of the cells from the sort and label filter.
  arrange() {
    const { sort, label } = this.state;
    const value = (c) => sortValue(c.info, sort, this.state.layout);
    const cells = sorted(this.cells, (c) => c.info, sort, this.state.layout);
    this.grid.classList.toggle("is-sorted", sort !== "order");
    for (const c of cells) {
      c.link.hidden = !!label && c.info.label !== label;
      c.link.querySelector(".atlas-cell-metric").textContent = sort === "order" || value(c) === undefined ? "" : fmt(value(c));
    }
    this.grid.replaceChildren(...cells.map((c) => c.link));
    this.root.dataset.visibleCells = String(cells.filter((c) => !c.link.hidden).length);
    this.update();
  }

  // Cells in view request their points when the view needs them.
  observe() {
    const io = new IntersectionObserver((entries) => {
      for (const e of entries) e.target.atlasCell.visible = e.isIntersecting;
      this.requestNeeded();
      if (!this.inFlight && !this.queue.length) this.settled();
    });
    for (const c of this.cells) io.observe(c.link);
    this.disposer.add(() => io.disconnect());
  }

  needsPoints(cell) {
    const s = this.state;
    return !encoding(s.colour).pictured || !!normalizeToken(s.search) || !this.meta.thumbLayouts.has(s.layout) ||
      cell.coords.size > 0 || isDark();
  }

  requestNeeded() {
    for (const c of this.cells) if (c.visible && !c.link.hidden && this.needsPoints(c)) this.request(c);
  }

  // What a cell still lacks for the current state: the layout's coordinates, and its norms when coloured by norm.
  missing(cell) {
    const out = [];
    if (!cell.coords.has(this.state.layout)) out.push(`coords:${this.state.layout}`);
    if (encoding(this.state.colour).needs === "norms" && !cell.norm) out.push("norms");
    return out.filter((k) => !cell.pending.has(k) && !cell.broken);
  }

  request(cell) {
    const parts = this.missing(cell);
    if (!parts.length || this.destroyed) return;
    for (const p of parts) cell.pending.add(p);
    this.queue.push([cell, parts]);
    this.root.dataset.loaded = "false";
    this.pump();
  }

  pump() {
    while (this.inFlight < CONCURRENCY && this.queue.length) {
      const [cell, parts] = this.queue.shift();
      this.inFlight++;
      this.load(cell, parts).finally(() => {
        this.inFlight--;
        this.pump();
        if (!this.inFlight && !this.queue.length && !this.destroyed) this.settled();
      });
    }
  }

  loadTokens() {
    if (!this.full) {
      this.full = loadModel(this.base);
      this.full.then((m) => ((this.model = m), this.changed()), (err) => showError(this.root, err.message));
    }
    return this.full;
  }

  async load(cell, parts) {
    const { layer, head } = cell.info;
    try {
      const model = await this.loadTokens();
      for (const part of parts) {
        if (part === "norms") cell.norm = await loadNorms(model, layer, head);
        else cell.coords.set(part.slice(7), await loadLayout(model, layer, head, part.slice(7)));
        cell.pending.delete(part);
      }
      if (this.destroyed) return;
      this.canvas.invalidate(cell);
    } catch (err) {
      if (this.destroyed) return;
      cell.broken = true;
      cell.link.classList.add("is-broken");
      cell.link.title = err.message;
    }
  }

  // Every requested head has arrived: the cells in view are drawn on the next frame. The first time, the view is
  // interactive once the thumbnails of the cells in view are decoded too.
  settled() {
    this.root.dataset.allLoaded = String(this.cells.every((c) => c.coords.has(this.state.layout) || c.broken));
    this.canvas.schedule(async () => {
      this.root.dataset.loaded = "true";
      if (this.interactive) return;
      this.interactive = true;
      const thumbs = this.cells.filter((c) => c.visible && !this.canvas.drawn(c) && !c.img.hidden && c.img.src);
      await Promise.all(thumbs.map((c) => c.img.decode().catch(() => null)));
      if (this.destroyed) return;
      performance.mark("atlas:interactive", { detail: { view: "matrix" } });
      this.loadTokens(); // what every hover needs: the first one then waits only for its head's points
    });
  }

  showThumbs() {
    for (const c of this.cells) this.setThumb(c);
  }

  firstDrawn() {
    if (this.firstDraw || this.destroyed) return;
    this.firstDraw = true;
    performance.mark("atlas:first-draw", { detail: { view: "matrix" } });
  }

  // Patch features for the pixel colourings, loaded with the images on first use (cells redraw on arrival).
  pixelFeatures() {
    if (encoding(this.state.colour).needs !== "pixels" || !this.model) return null;
    if (!this.features) {
      this.features = loadPatchFeatures(this.model);
      this.features.then((f) => ((this.featureData = f), this.changed()), (err) => showError(this.root, err.message));
    }
    return this.featureData || null;
  }

  changed() {
    if (normalizeToken(this.state.search)) this.loadTokens();
    this.update();
  }

  update() {
    const s = this.state;
    const p = new URLSearchParams();
    const defaults = [["layout", this.meta.defaultLayout], ["colour", DEFAULT_ENCODING], ["search", ""], ["sort", "order"], ["label", ""]];
    for (const [key, fallback] of defaults) {
      if (s[key] && s[key] !== fallback) p.set(key, s[key]);
    }
    writeHash(p);
    this.hashText = p.toString();
    this.datasetSwitch.update();
    this.blockSwitch.update();
    this.turnHint.hidden = !this.is3d();
    this.carry = new URLSearchParams([...p].filter(([k]) => ["layout", "colour", "search"].includes(k)));
    for (const c of this.cells) c.link.setAttribute("href", this.cellHref(c, null));
    this.requestNeeded();
    this.counts();
    this.canvas.setPicture(this.picture());
  }

  is3d() {
    return !this.meta.layouts2d.includes(this.state.layout);
  }

  cellHref(cell, pointId) {
    const p = new URLSearchParams(this.carry);
    if (pointId !== null) p.set("point", String(pointId));
    const hash = p.toString();
    return `L${cell.info.layer}/H${cell.info.head}/` + (hash ? `#${hash}` : "");
  }

  // Search hits: every head shows the same points, so each head's count is the model's count.
  counts() {
    const query = normalizeToken(this.state.search);
    const model = this.model;
    const hits = query && model ? model.attrs.text.reduce((n, t) => n + (normalizeToken(t) === query ? 1 : 0), 0) : 0;
    for (const c of this.cells) {
      const badge = c.link.querySelector(".atlas-cell-hits");
      const shown = query && model ? String(hits) : "";
      badge.textContent = shown;
      badge.dataset.count = shown;
      c.link.classList.toggle("has-hits", hits > 0);
      c.link.classList.toggle("is-pending", !this.canvas.drawn(c) && this.needsPoints(c));
    }
    const heads = this.cells.length;
    this.count.textContent = query ? (model ? `${hits * heads} points in ${heads} heads` : "loading the tokens…") : "";
    this.count.dataset.count = query && model ? String(hits * heads) : "";
  }

  // What the shared canvas draws for a cell: its points in the current layout and colours, or null (thumbnail).
  picture() {
    const s = this.state;
    const model = this.model;
    const query = normalizeToken(s.search);
    const features = this.pixelFeatures();
    const colours = new Map();
    const highlight = query && model ? Uint8Array.from(model.attrs.text, (t) => (normalizeToken(t) === query ? 1 : 0)) : null;
    return {
      key: `${s.layout}|${s.colour}|${query}|${features ? 1 : 0}|${isDark() ? "dark" : "light"}`,
      layout: s.layout,
      rotatable: this.is3d(),
      highlight,
      draw: (cell) => {
        const coords = cell.coords.get(s.layout);
        const norm = encoding(s.colour).needs === "norms";
        if (!model || !coords || !this.needsPoints(cell) || (norm && !cell.norm)) return null;
        if (norm || !colours.has(s.colour)) {
          const points = norm ? { ...model.attrs, norm: cell.norm } : model.attrs;
          const rgb = colourPoints(s.colour, points, this.palette, features).rgb;
          if (norm) return { axes: coords.axes, rgb };
          colours.set(s.colour, rgb);
        }
        return { axes: coords.axes, rgb: colours.get(s.colour) };
      },
    };
  }

  describe(row) {
    const a = this.model.attrs;
    const sid = a.sentence[row];
    const image = isImageModel(this.model) ? imageInfo(this.model, sid) : null;
    return { text: a.text[row], piece: pieceNote(this.model.tokens.piece[a.tokenRow[row]], a.text[row]),
      kind: a.isKey[row] ? "key" : "query", group: image ? `image ${image.name}` : `sentence ${sid}`,
      position: a.position[row], length: a.length[row], pointId: a.pointId[row] };
  }

  // Viewport position (CSS px) of a point in a drawn head's cell, or null; for tests and tools.
  clientPosition(layer, head, pointId) {
    const cell = this.cells.find((c) => c.info.layer === layer && c.info.head === head);
    const row = this.model && cell ? this.model.pointRowOf(pointId) : -1;
    return row >= 0 ? this.canvas.clientPosition(cell, row) : null;
  }

  destroy() {
    this.destroyed = true;
    this.disposer.dispose();
    delete this.root.atlasView;
  }
}
