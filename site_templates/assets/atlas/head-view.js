// Single-head view: scatter of the head's queries and keys, tooltip, search, selection with attention lines,
// sentence view (text models) or image view (image models), colour encodings, tiles for large heads,
// adjacent-head navigation and state in the URL hash. Opening the page fetches only the manifest, the head's own
// file, the tokens and the current layout; other layouts, norms and attention load when asked for.

import { AtlasDataError, loadHeadDetail, loadLayout, loadManifest, loadModel, loadNorms, prefetch } from "./data.js";
import { DEFAULT_ENCODING, colourPoints, encoding, encodingsFor, paletteOf, setCssColours } from "./colours.js";
import { Disposer, download, el, hashIsState, isTyping, readHash, select, showError, writeHash } from "./dom.js";
import { HeadDetail } from "./head-detail.js";
import { HeadNav } from "./head-nav.js";
import { DatasetSwitch } from "./dataset-switch.js";
import { imageInfo, isImageModel } from "./images.js";
import { drawSelection, viewToSvg } from "./overlay.js";
import { Scatter, rankOrder } from "./scatter.js";
import { legendElement, sidePanel } from "./panels.js";
import { TileLayer } from "./tiles.js";
import { TOKEN_KEY, normalizeToken, pieceNote } from "./token-text.js";

const DIM = 0.15;

export function mountHead(root) {
  const view = new HeadView(root);
  view.start();
  return view;
}

class HeadView {
  constructor(root) {
    this.root = root;
    this.disposer = new Disposer();
    this.destroyed = false;
    this.layer = Number(root.dataset.layer);
    this.head = Number(root.dataset.head);
    this.base = new URL(root.dataset.data || "./", location.href).href;
    this.status = el("p", { class: "atlas-status", text: "Loading this head…" });
    root.append(this.status);
    root.atlasView = this;
  }

  async start() {
    try {
      const meta = await loadManifest(this.base);
      const summary = meta.headInfo(this.layer, this.head);
      if (!summary) throw new AtlasDataError(`manifest.json lists no head at layer ${this.layer}, head ${this.head}`);
      const layouts = meta.manifest.layouts;
      if (!layouts.length) throw new AtlasDataError("manifest.json lists no layouts");
      const wanted = readHash().get("layout");
      const layout = layouts.includes(wanted) ? wanted : meta.defaultLayout;
      prefetch(meta.coordsFile(this.layer, this.head, layout).url);
      const [model, info] = await Promise.all([loadModel(this.base), loadHeadDetail(meta, this.layer, this.head)]);
      const [coords, images] = await Promise.all([loadLayout(model, this.layer, this.head, layout),
        isImageModel(model) ? import("./head-images.js") : null]);
      if (!this.destroyed) this.build(model, info, layout, coords, images);
    } catch (err) {
      this.fail(err);
    }
  }

  fail(err) {
    if (this.destroyed) return;
    this.status.remove();
    if (!(err instanceof AtlasDataError)) console.error(err);
    showError(this.root, err instanceof AtlasDataError ? err.message : `unexpected error: ${err.message}`);
  }

  build(model, info, layout, coords, images) {
    Object.assign(this, { model, info, imagesModule: images });
    this.attrs = { ...model.attrs, norm: new Float32Array(model.attrs.n) };
    this.palette = paletteOf(model.manifest);
    setCssColours(this.root, this.palette);
    this.listeners = [];
    this.normalized = this.attrs.text.map(normalizeToken);
    this.isImage = isImageModel(model);
    this.encodings = encodingsFor(this.isImage);
    this.tileLayers = new Map();
    this.layouts = model.manifest.layouts;
    this.defaultLayout = model.defaultLayout;
    this.coords = { layout, data: coords };
    this.state = { layout, colour: DEFAULT_ENCODING, search: "", point: null, size: false };
    this.readState();
    this.state.layout = layout;
    this.buildDom();
    this.status.remove();
    this.scatter.setPoints(coords.axes);
    this.apply();
    requestAnimationFrame(() => requestAnimationFrame(() => {
      if (!this.destroyed) this.root.dataset.state = "ready";
    }));
  }

  readState() {
    const h = readHash();
    const s = this.state;
    if (this.layouts.includes(h.get("layout"))) s.layout = h.get("layout");
    if (this.encodings.some((e) => e.id === h.get("colour"))) s.colour = h.get("colour");
    s.search = h.get("search") || "";
    const pid = h.has("point") ? Number(h.get("point")) : NaN;
    s.point = Number.isInteger(pid) && this.rowOfPoint(pid) >= 0 ? pid : null;
    s.size = h.get("size") === "norm";
  }

  rowOfPoint(pid) {
    return this.model.pointRowOf(pid);
  }

  hashParams(withPoint = true) {
    const s = this.state;
    const p = new URLSearchParams();
    if (s.layout !== this.defaultLayout) p.set("layout", s.layout);
    if (s.colour !== DEFAULT_ENCODING) p.set("colour", s.colour);
    if (s.search) p.set("search", s.search);
    if (withPoint && s.point !== null) p.set("point", String(s.point));
    if (s.size) p.set("size", "norm");
    return p;
  }

  buildDom() {
    const d = this.disposer;
    const s = this.state;
    const fallback = this.root.querySelector(".atlas-fallback");
    if (fallback) fallback.hidden = true;
    this.layoutSelect = select(this.layouts.map((id) => ({ id, label: id })), s.layout, "layout");
    this.colourSelect = select(this.encodings, s.colour, "colour");
    this.search = el("input", { type: "search", class: "atlas-search", placeholder: "search tokens", "aria-label": "search tokens", title: TOKEN_KEY });
    this.search.value = s.search;
    this.count = el("span", { class: "atlas-search-count", "aria-live": "polite" });
    this.sizeBox = el("input", { type: "checkbox", class: "atlas-size-norm" });
    this.sizeBox.checked = s.size;
    const png = el("button", { type: "button", class: "atlas-export-png", text: "PNG" });
    const svgButton = el("button", { type: "button", class: "atlas-export-svg", text: "SVG" });
    d.on(this.layoutSelect, "change", () => ((s.layout = this.layoutSelect.value), this.apply()));
    d.on(this.colourSelect, "change", () => ((s.colour = this.colourSelect.value), this.apply()));
    d.on(this.search, "input", () => ((s.search = this.search.value.trim()), this.apply()));
    d.on(this.sizeBox, "change", () => ((s.size = this.sizeBox.checked), this.apply()));
    d.on(png, "click", () => this.scatter.toBlob().then((b) => download(`${this.fileStem()}.png`, b)));
    d.on(svgButton, "click", () => download(`${this.fileStem()}.svg`, new Blob([this.svgText()], { type: "image/svg+xml" })));
    this.detail = new HeadDetail(this.context(), this.imagesModule);
    this.imageSelect = this.detail.chooser(d);
    this.datasetSwitch = new DatasetSwitch(this.root, () => this.hashParams(false).toString(), d);
    this.blockSwitch = new DatasetSwitch(this.root, () => this.hashParams(false).toString(), d, "block");
    this.toolbar = el("div", { class: "atlas-toolbar" }, [
      this.datasetSwitch.element,
      this.blockSwitch.element,
      this.imageSelect ? el("label", {}, ["image ", this.imageSelect]) : null,
      el("label", {}, ["layout ", this.layoutSelect]),
      el("label", {}, ["colour ", this.colourSelect]),
      el("span", { class: "atlas-search-box" }, [this.search, this.count]),
      el("label", {}, [this.sizeBox, " size by norm"]),
      el("span", { class: "atlas-export" }, ["export ", png, svgButton]),
    ]);
    this.plot = el("div", { class: "atlas-plot" });
    this.tooltip = el("div", { class: "atlas-tooltip", hidden: true, role: "tooltip" });
    this.hoverRing = el("div", { class: "atlas-hover-ring", hidden: true });
    this.plot.append(this.tooltip, this.hoverRing);
    this.legend = el("div", { class: "atlas-legend" });
    const main = el("div", { class: "atlas-main" }, [el("div", { class: "atlas-plot-column" }, [this.plot, this.legend]),
      sidePanel(this.model, this.info)]);
    this.root.append(this.toolbar, main);
    this.detail.mount(this.root);
    this.detail.mountValues(this.root);
    this.scatter = new Scatter(this.plot, {
      onHover: (i) => this.hover(i),
      onClick: (i) => this.select(i >= 0 ? this.attrs.pointId[i] : null),
      onDraw: (mode) => this.drawn(mode),
    });
    this.disposer.add(() => this.scatter.destroy());
    this.disposer.add(() => this.detail.destroy());
    this.nav = new HeadNav({ manifest: this.model.manifest, layer: this.layer, head: this.head, toolbar: this.toolbar,
      root: this.root, hash: () => this.hashParams().toString() });
    d.on(document, "keydown", (e) => this.key(e));
    d.on(window, "hashchange", () => {
      if (!hashIsState()) return;
      this.readState();
      this.syncControls();
      this.apply();
    });
  }

  syncControls() {
    const s = this.state;
    [this.layoutSelect.value, this.colourSelect.value, this.search.value, this.sizeBox.checked] = [s.layout, s.colour, s.search, s.size];
  }

  fileStem() {
    return `${this.model.manifest.model.name}_L${this.layer}H${this.head}_${this.state.layout}`;
  }

  drawn(mode) {
    this.root.dataset.drawMode = mode;
    if (this.firstDraw) return;
    this.firstDraw = true;
    performance.mark("atlas:first-draw", { detail: { view: "head", layer: this.layer, head: this.head } });
  }

  key(e) {
    if (isTyping(e) || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    const dir = this.nav.direction(e.key);
    if (dir) {
      e.preventDefault();
      this.nav.go(dir);
    } else if (e.key === "Escape" && this.state.point !== null) {
      this.select(null);
    }
  }

  tileLayer(layout) {
    const spec = (this.info.tiles || {})[layout];
    if (!spec || this.coords.data.dims !== 2) return null;
    if (!this.tileLayers.has(layout)) this.tileLayers.set(layout, new TileLayer(spec, this.model.base, () => this.scatter.schedule()));
    return this.tileLayers.get(layout);
  }

  groupName(sid) {
    if (!this.isImage) return `sentence ${sid}`;
    const info = imageInfo(this.model, sid);
    return `image ${info ? info.name : sid}`;
  }

  hover(i) {
    if (i < 0) {
      this.tooltip.hidden = true;
      this.hoverRing.hidden = true;
      return;
    }
    const a = this.attrs;
    const [x, y] = this.scatter.project(i);
    this.tooltip.replaceChildren(
      el("div", { class: "atlas-tip-token", text: a.text[i] }),
      el("div", { class: "atlas-tip-piece", text: pieceNote(this.model.tokens.piece[a.tokenRow[i]], a.text[i]) }),
      el("div", { class: "atlas-tip-kind", text: a.isKey[i] ? "key" : "query" }),
      el("div", { class: "atlas-tip-pos", text: `position ${a.position[i] + 1} of ${a.length[i]}` }),
      el("div", { class: "atlas-tip-sentence", text: this.groupName(a.sentence[i]) }),
      this.detail.preview(a.pointId[i]) || "",
    );
    this.tooltip.classList.toggle("is-key", !!a.isKey[i]);
    this.tooltip.hidden = false;
    const left = x + 12 + this.tooltip.offsetWidth > this.plot.clientWidth ? x - 12 - this.tooltip.offsetWidth : x + 12;
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${Math.max(0, y + 12)}px`;
    this.hoverRing.hidden = false;
    this.hoverRing.style.left = `${x}px`;
    this.hoverRing.style.top = `${y}px`;
  }

  select(pointId) {
    this.state.point = pointId;
    this.apply();
  }

  hits() {
    const q = normalizeToken(this.state.search);
    if (!q) return null;
    const hits = new Uint8Array(this.attrs.n);
    this.normalized.forEach((t, i) => (hits[i] = t === q ? 1 : 0));
    return hits;
  }

  // Switches to the state's layout once its coordinates are here (the previous one stays drawn meanwhile).
  ensureLayout() {
    const layout = this.state.layout;
    if (this.coords.layout === layout || this.pendingLayout === layout) return;
    this.pendingLayout = layout;
    loadLayout(this.model, this.layer, this.head, layout).then((data) => {
      if (this.destroyed || this.state.layout !== layout) return;
      this.pendingLayout = null;
      this.coords = { layout, data };
      this.scatter.setPoints(data.axes);
      this.apply();
    }, (err) => this.fail(err));
  }

  // Norms arrive on first use (colour by norm, size by norm); until then every point has norm 0.
  ensureNorms() {
    const s = this.state;
    if (this.normsLoaded || this.normsPending || (encoding(s.colour).needs !== "norms" && !s.size)) return;
    this.normsPending = true;
    loadNorms(this.model, this.layer, this.head).then((norm) => {
      if (this.destroyed) return;
      this.attrs.norm = norm;
      this.normsLoaded = true;
      this.apply();
    }, (err) => this.fail(err));
  }

  apply() {
    const s = this.state;
    const a = this.attrs;
    const n = a.n;
    this.ensureLayout();
    this.ensureNorms();
    const enc = encoding(s.colour);
    this.scatter.setTiles(enc.pictured && this.coords.layout === s.layout ? this.tileLayer(s.layout) : null);
    const features = this.detail.featuresFor(enc);
    const { legend, ...coloured } = colourPoints(s.colour, a, this.palette, features);
    if ((enc.needs === "norms" || s.size) && !this.normsLoaded) legend.note = "loading the norms…";
    const sprite = enc.sprites && features ? this.detail.sprite(features) : null;
    const rgb = sprite ? colourPoints(DEFAULT_ENCODING, a, this.palette).rgb : coloured.rgb;
    const hits = this.hits();
    const selRow = s.point !== null ? this.rowOfPoint(s.point) : -1;
    const selSentence = selRow >= 0 ? a.sentence[selRow] : -1;
    const alpha = new Float32Array(n);
    const rank = new Uint8Array(n);
    let hitCount = 0;
    for (let i = 0; i < n; i++) {
      const inSel = selRow < 0 || a.sentence[i] === selSentence;
      const hit = !hits || hits[i];
      if (hits && hits[i]) hitCount++;
      alpha[i] = inSel && hit ? 1 : DIM;
      rank[i] = (inSel && hit ? 1 : 0) + (i === selRow ? 1 : 0);
    }
    const order = rankOrder(rank);
    let radius = 3;
    if (s.size) {
      let [lo, hi] = [Infinity, -Infinity];
      for (const v of a.norm) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
      radius = Float32Array.from(a.norm, (v) => 1.5 + 4.5 * ((v - lo) / (hi - lo || 1)));
    }
    this.scatter.setStyle({ rgb, alpha, radius, order, rank, sprite, highlight: !!hits || selRow >= 0 });
    this.count.textContent = hits ? `${hitCount} point${hitCount === 1 ? "" : "s"}` : "";
    this.count.dataset.count = hits ? String(hitCount) : "";
    this.legend.replaceChildren(legendElement(legend));
    if (!this.isImage) this.legend.append(el("p", { class: "atlas-token-key", text: `tokens: ${TOKEN_KEY}` }));
    this.overlay = { hits, selRow, selSentence, lines: this.overlay && this.overlay.selRow === selRow ? this.overlay.lines : [] };
    this.root.dataset.lines = String(this.overlay.lines.length);
    this.scatter.setOverlay((ctx, project, c) => this.drawOverlay(ctx, project, c));
    this.root.dataset.selectedSentence = selRow >= 0 ? String(selSentence) : "";
    writeHash(this.hashParams());
    this.nav.update();
    this.datasetSwitch.update();
    this.blockSwitch.update();
    for (const fn of this.listeners) fn(selRow >= 0 ? s.point : null);
  }

  // What the children (HeadDetail, HeadImages) get instead of the view: the data, points by id, the selection.
  context() {
    const { model, layer, head, palette } = this;
    const a = model.attrs;
    return {
      model, layer, head, palette,
      // {id, token (row of model.tokens), sentence, position, isKey, patchRow, patchCol} of a point id, or null.
      pointOf: (id) => {
        const r = id === null ? -1 : model.pointRowOf(id);
        return r < 0 ? null : { id, token: a.tokenRow[r], sentence: a.sentence[r], position: a.position[r],
          isKey: !!a.isKey[r], patchRow: a.patchRow[r], patchCol: a.patchCol[r] };
      },
      selected: () => this.state.point,
      // The colour encoding the head view shows (the value view follows it).
      colour: () => this.state.colour,
      select: (id) => this.select(id),
      // fn(selected point id or null) after every change of the view.
      onChange: (fn) => this.listeners.push(fn),
      // Attention lines of the selected sentence: [{from, to, weight}], from and to point ids, opacity = weight.
      setLines: (lines) => this.setLines(lines),
      // Draws again (data a child loads has arrived).
      redraw: () => this.apply(),
      alive: () => !this.destroyed,
      showError: (message) => showError(this.root, message),
    };
  }

  setLines(lines) {
    const rows = lines.map(({ from, to, weight }) => ({ from: this.rowOfPoint(from), to: this.rowOfPoint(to), weight }));
    this.overlay.lines = rows.filter((l) => l.from >= 0 && l.to >= 0);
    this.root.dataset.lines = String(this.overlay.lines.length);
    this.scatter.schedule();
  }

  // c: the colour scheme's ink (theme.js).
  drawOverlay(ctx, project, c) {
    this.labels = drawSelection(ctx, project, this.overlay, this.attrs, this.isImage, [this.scatter.w, this.scatter.h], c);
  }

  svgText() {
    return viewToSvg(this.scatter, { lines: this.overlay.lines, labels: this.labels || [] });
  }

  // Viewport position (CSS pixels) of a point id as drawn; for tests and tools.
  clientPosition(pointId) {
    const row = this.rowOfPoint(pointId);
    if (row < 0) return null;
    const [x, y] = this.scatter.project(row);
    const rect = this.scatter.canvas.getBoundingClientRect();
    return { x: rect.left + x, y: rect.top + y };
  }

  destroy() {
    this.destroyed = true;
    this.disposer.dispose();
    delete this.root.atlasView;
  }
}
