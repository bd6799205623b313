// Single-head view: scatter of the head's queries and keys, tooltip, search, selection with attention lines,
// sentence view (text models) or image view (image models), colour encodings, tiles for large heads,
// adjacent-head navigation and state in the URL hash.

import { AtlasDataError, headAttributes, loadAttention, loadHead, loadManifest, loadModel, prefetch } from "./data.js";
import { colourPoints, encodingsFor, normalizeToken } from "./colours.js";
import { Disposer, download, el, hashIsState, isTyping, readHash, select, showError, writeHash } from "./dom.js";
import { HeadImages } from "./head-images.js";
import { HeadNav } from "./head-nav.js";
import { ImageView } from "./image-view.js";
import { imageInfo, isImageModel } from "./images.js";
import { drawLines, drawRings, placeLabels, viewToSvg } from "./overlay.js";
import { Scatter } from "./scatter.js";
import { SentenceView } from "./sentence-view.js";
import { legendElement, sidePanel } from "./panels.js";
import { TileLayer } from "./tiles.js";

const DIM = 0.15;
const LINE_COLOUR = "#3b4a6b";

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
      const info = meta.headInfo(this.layer, this.head);
      if (!info) throw new AtlasDataError(`manifest.json lists no head at layer ${this.layer}, head ${this.head}`);
      prefetch(new URL(info.file, this.base).href);
      const model = await loadModel(this.base);
      const head = await loadHead(model, info);
      if (!this.destroyed) this.build(model, info, head);
    } catch (err) {
      if (this.destroyed) return;
      this.status.remove();
      if (!(err instanceof AtlasDataError)) console.error(err);
      showError(this.root, err instanceof AtlasDataError ? err.message : `unexpected error: ${err.message}`);
    }
  }

  build(model, info, head) {
    Object.assign(this, { model, info, data: head });
    const a = headAttributes(model, head);
    this.rowOf = new Map();
    for (let r = 0; r < a.n; r++) this.rowOf.set(`${a.sentence[r]}:${a.position[r]}:${a.isKey[r]}`, r);
    this.normalized = a.text.map(normalizeToken);
    this.attrs = a;
    this.isImage = isImageModel(model);
    this.images = this.isImage ? new HeadImages(this) : null;
    this.encodings = encodingsFor(this.isImage);
    this.tileLayers = new Map();
    const layouts = Object.keys(head.layouts).sort((x, y) => model.manifest.layouts.indexOf(x) - model.manifest.layouts.indexOf(y));
    if (!layouts.length) throw new AtlasDataError(`${info.file} has no layout columns`);
    this.layouts = layouts;
    this.defaultLayout = layouts.find((l) => l.endsWith("-2d")) || layouts[0];
    this.state = { layout: this.defaultLayout, colour: "qk", search: "", point: null, size: false };
    this.readState();
    this.buildDom();
    this.status.remove();
    this.apply(true);
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
    return this.attrs.pointId.indexOf(pid);
  }

  hashParams(withPoint = true) {
    const s = this.state;
    const p = new URLSearchParams();
    if (s.layout !== this.defaultLayout) p.set("layout", s.layout);
    if (s.colour !== "qk") p.set("colour", s.colour);
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
    this.search = el("input", { type: "search", class: "atlas-search", placeholder: "search tokens", "aria-label": "search tokens" });
    this.search.value = s.search;
    this.count = el("span", { class: "atlas-search-count", "aria-live": "polite" });
    this.sizeBox = el("input", { type: "checkbox", class: "atlas-size-norm" });
    this.sizeBox.checked = s.size;
    const png = el("button", { type: "button", class: "atlas-export-png", text: "PNG" });
    const svgButton = el("button", { type: "button", class: "atlas-export-svg", text: "SVG" });
    d.on(this.layoutSelect, "change", () => ((s.layout = this.layoutSelect.value), this.apply(true)));
    d.on(this.colourSelect, "change", () => ((s.colour = this.colourSelect.value), this.apply()));
    d.on(this.search, "input", () => ((s.search = this.search.value.trim()), this.apply()));
    d.on(this.sizeBox, "change", () => ((s.size = this.sizeBox.checked), this.apply()));
    d.on(png, "click", () => this.scatter.toBlob().then((b) => download(`${this.fileStem()}.png`, b)));
    d.on(svgButton, "click", () => download(`${this.fileStem()}.svg`, new Blob([this.svgText()], { type: "image/svg+xml" })));
    this.imageSelect = this.images ? this.images.chooser(d) : null;
    this.toolbar = el("div", { class: "atlas-toolbar" }, [
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
    if (this.isImage) {
      this.detail = new ImageView(this.root, { onSelect: (p) => this.selectPosition(p), onClose: () => this.select(null) });
    } else {
      this.detail = new SentenceView(this.root);
      this.detail.onClose = () => this.select(null);
    }
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
      const layout = this.state.layout;
      this.readState();
      this.syncControls();
      this.apply(this.state.layout !== layout);
    });
  }

  syncControls() {
    const s = this.state;
    [this.layoutSelect.value, this.colourSelect.value, this.search.value, this.sizeBox.checked] = [s.layout, s.colour, s.search, s.size];
  }

  fileStem() {
    return `${this.model.manifest.model.name}_L${this.layer}H${this.head}_${this.state.layout}`;
  }

  // Selects the point at a position of an image (default: the current one), keeping query/key unless told.
  selectPosition(position, sid = null, isKey = null) {
    const s = this.state;
    const row = s.point !== null ? this.rowOfPoint(s.point) : -1;
    const image = sid ?? (row >= 0 ? this.attrs.sentence[row] : null);
    if (image === null) return;
    const kind = isKey ?? (row >= 0 ? !!this.attrs.isKey[row] : false);
    const target = this.rowOf.get(`${image}:${position}:${kind ? 1 : 0}`) ?? this.rowOf.get(`${image}:${position}:0`);
    if (target !== undefined) this.select(this.attrs.pointId[target]);
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
    if (!spec || this.data.layouts[layout].dims !== 2) return null;
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
      el("div", { class: "atlas-tip-kind", text: a.isKey[i] ? "key" : "query" }),
      el("div", { class: "atlas-tip-pos", text: `position ${a.position[i] + 1} of ${a.length[i]}` }),
      el("div", { class: "atlas-tip-sentence", text: this.groupName(a.sentence[i]) }),
      this.images ? this.images.preview(i) : "",
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

  apply(relayout = false) {
    const s = this.state;
    const a = this.attrs;
    const n = a.n;
    if (relayout) this.scatter.setPoints(this.data.layouts[s.layout].axes);
    this.scatter.setTiles(s.colour === "qk" ? this.tileLayer(s.layout) : null);
    const features = this.images ? this.images.featuresFor(s.colour) : null;
    const { legend, ...coloured } = colourPoints(s.colour, a, features);
    const sprite = s.colour === "pixels" && features ? this.images.sprite(features) : null;
    const rgb = sprite ? colourPoints("qk", a).rgb : coloured.rgb;
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
    const order = Int32Array.from({ length: n }, (_, i) => i).sort((x, y) => rank[x] - rank[y]);
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
    this.overlay = { hits, selRow, selSentence, lines: [] };
    this.scatter.setOverlay((ctx, project) => this.drawOverlay(ctx, project));
    this.root.dataset.selectedSentence = selRow >= 0 ? String(selSentence) : "";
    writeHash(this.hashParams());
    this.nav.update();
    if (this.imageSelect) this.imageSelect.value = selRow >= 0 ? String(selSentence) : "";
    if (selRow < 0) this.detail.hide();
    else if (this.images) this.images.open(selRow);
    else this.openSentence(selRow);
  }

  async openSentence(row) {
    const a = this.attrs;
    const sid = a.sentence[row];
    const tokens = (this.model.sentences.get(sid) || []).map((t) => ({
      text: this.model.tokens.text[t], special: !!this.model.tokens.special[t], position: this.model.tokens.position[t],
    }));
    let attn = null;
    try {
      attn = await loadAttention(this.model, this.info);
    } catch (err) {
      showError(this.detail.root, err.message);
    }
    if (this.destroyed || this.state.point !== a.pointId[row]) return;
    const matrix = attn ? attn.matrix(sid) : null;
    this.detail.show({ sentenceId: sid, tokens, matrix, focus: { position: a.position[row], isKey: !!a.isKey[row] } });
    if (attn && !this.aggregateShown) {
      this.detail.showAggregate(attn);
      this.aggregateShown = true;
    }
    this.overlay.lines = matrix ? this.topLines(sid, matrix) : [];
    this.scatter.schedule();
  }

  // Top-2 keys of every query of the sentence, opacity = weight.
  topLines(sid, { n, w }) {
    const lines = [];
    for (let i = 0; i < n; i++) {
      const from = this.rowOf.get(`${sid}:${i}:0`);
      if (from === undefined) continue;
      const top = Array.from({ length: n }, (_, j) => j).sort((x, y) => w[i * n + y] - w[i * n + x]).slice(0, 2);
      for (const j of top) {
        const to = this.rowOf.get(`${sid}:${j}:1`);
        if (to !== undefined && w[i * n + j] > 0) lines.push({ from, to, weight: w[i * n + j] });
      }
    }
    return lines;
  }

  drawOverlay(ctx, project) {
    const { hits, selRow, selSentence, lines } = this.overlay;
    const a = this.attrs;
    drawLines(ctx, project, lines, LINE_COLOUR);
    const labels = [];
    if (hits) {
      const rows = [];
      for (let i = 0; i < a.n; i++) if (hits[i]) rows.push(i);
      drawRings(ctx, project, rows, 6, "#222");
      rows.forEach((row) => labels.push({ row, text: a.text[row] }));
    }
    if (selRow >= 0) {
      drawRings(ctx, project, [selRow], 8, "#000", 2.5);
      if (this.isImage) labels.unshift({ row: selRow, text: a.text[selRow] });
      else for (let i = 0; i < a.n; i++) if (a.sentence[i] === selSentence && !a.isKey[i]) labels.push({ row: i, text: a.text[i] });
    }
    this.labels = placeLabels(ctx, project, labels, [this.scatter.w, this.scatter.h]);
  }

  svgText() {
    return viewToSvg(this.scatter, { lines: this.overlay.lines, labels: this.labels || [], lineColour: LINE_COLOUR });
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
