// Single-head view: scatter of the head's queries and keys, tooltip, search, selection with attention lines,
// sentence view, colour encodings, adjacent-head navigation and state in the URL hash.

import { AtlasDataError, headAttributes, loadAttention, loadHead, loadModel } from "./data.js";
import { ENCODINGS, colourPoints, normalizeToken } from "./colours.js";
import { Disposer, download, el, hashIsState, isTyping, readHash, select, showError, writeHash } from "./dom.js";
import { drawLines, drawRings, placeLabels, viewToSvg } from "./overlay.js";
import { Scatter } from "./scatter.js";
import { SentenceView } from "./sentence-view.js";
import { legendElement, sidePanel } from "./panels.js";

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
      const model = await loadModel(this.base);
      const info = model.headInfo(this.layer, this.head);
      if (!info) throw new AtlasDataError(`manifest.json lists no head at layer ${this.layer}, head ${this.head}`);
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
    if (ENCODINGS.some((e) => e.id === h.get("colour"))) s.colour = h.get("colour");
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
    this.colourSelect = select(ENCODINGS, s.colour, "colour");
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
    this.toolbar = el("div", { class: "atlas-toolbar" }, [
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
    this.sentenceView = new SentenceView(this.root);
    this.sentenceView.onClose = () => this.select(null);
    this.scatter = new Scatter(this.plot, {
      onHover: (i) => this.hover(i),
      onClick: (i) => this.select(i >= 0 ? this.attrs.pointId[i] : null),
    });
    this.disposer.add(() => this.scatter.destroy());
    this.disposer.add(() => this.sentenceView.destroy());
    this.nav = this.buildNav();
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

  // Neighbours in manifest order (prev/next) and in the same head column (up/down).
  buildNav() {
    const heads = this.model.manifest.heads;
    const at = heads.findIndex((h) => h.layer === this.layer && h.head === this.head);
    const find = (layer, head) => heads.find((h) => h.layer === layer && h.head === head);
    const targets = { prev: heads[at - 1], next: heads[at + 1], up: find(this.layer - 1, this.head), down: find(this.layer + 1, this.head) };
    const page = document.querySelector(".atlas-headnav");
    const links = {};
    const own = el("nav", { class: "atlas-headnav-own" });
    for (const [dir, target] of Object.entries(targets)) {
      if (!target) continue;
      links[dir] = (page && page.querySelector(`a.atlas-${dir}`)) || null;
      if (!links[dir] && (dir === "prev" || dir === "next" || !page)) {
        const arrows = { prev: "←", next: "→", up: "↑", down: "↓" };
        links[dir] = el("a", { class: `atlas-${dir}`, href: "#", text: `${arrows[dir]} L${target.layer} H${target.head}` });
        own.append(links[dir], " ");
      }
      if (links[dir]) links[dir].dataset.target = `../../L${target.layer}/H${target.head}/`;
    }
    if (own.childNodes.length) this.toolbar.prepend(own);
    return { targets, links };
  }

  updateNav() {
    const hash = this.hashParams().toString();
    for (const link of Object.values(this.nav.links)) {
      if (link) link.setAttribute("href", link.dataset.target + (hash ? `#${hash}` : ""));
    }
  }

  go(dir) {
    const target = this.nav.targets[dir];
    if (!target) return;
    let link = this.nav.links[dir];
    const temporary = !link;
    if (temporary) {
      const hash = this.hashParams().toString();
      link = el("a", { href: `../../L${target.layer}/H${target.head}/` + (hash ? `#${hash}` : ""), hidden: true });
      this.root.append(link);
    }
    link.click();
    if (temporary) link.remove();
  }

  key(e) {
    if (isTyping(e) || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    const dir = { ArrowLeft: "prev", ArrowRight: "next", ArrowUp: "up", ArrowDown: "down" }[e.key];
    if (dir && this.nav.targets[dir]) {
      e.preventDefault();
      this.go(dir);
    } else if (e.key === "Escape" && this.state.point !== null) {
      this.select(null);
    }
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
      el("div", { class: "atlas-tip-sentence", text: `sentence ${a.sentence[i]}` }),
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
    const { rgb, legend } = colourPoints(s.colour, a);
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
    this.scatter.setStyle({ rgb, alpha, radius, order, rank });
    this.count.textContent = hits ? `${hitCount} point${hitCount === 1 ? "" : "s"}` : "";
    this.count.dataset.count = hits ? String(hitCount) : "";
    this.legend.replaceChildren(legendElement(legend));
    this.overlay = { hits, selRow, selSentence, lines: [] };
    this.scatter.setOverlay((ctx, project) => this.drawOverlay(ctx, project));
    this.root.dataset.selectedSentence = selRow >= 0 ? String(selSentence) : "";
    writeHash(this.hashParams());
    this.updateNav();
    if (selRow >= 0) this.openSentence(selRow);
    else this.sentenceView.hide();
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
      showError(this.sentenceView.root, err.message);
    }
    if (this.destroyed || this.state.point !== a.pointId[row]) return;
    const matrix = attn ? attn.matrix(sid) : null;
    this.sentenceView.show({ sentenceId: sid, tokens, matrix, focus: { position: a.position[row], isKey: !!a.isKey[row] } });
    if (attn && !this.aggregateShown) {
      this.sentenceView.showAggregate(attn);
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
      for (let i = 0; i < a.n; i++) if (a.sentence[i] === selSentence && !a.isKey[i]) labels.push({ row: i, text: a.text[i] });
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
