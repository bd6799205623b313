// Model view (BertViz's, on a static page): one input, every layer × head at once. Text models: each cell is the
// head's attention on the input as a heatmap (one pixel per query row × key column, colour = √weight) or as
// bipartite lines (opacity = weight), the reader's choice. Image models: each cell is the picture with the selected
// patch's attention over it. Hiding special tokens or the first token re-normalizes every row over the keys that
// stay. A cell opens its head page with the input selected; cells of query heads that share a key/value head (GQA)
// carry the same band. Data: manifest.json, tokens.arrow and the input's attention files, one per layer
// (inputs/S<id>_L<l>.bin.gz).

import { AtlasDataError, loadManifest, loadModel } from "./data.js";
import { hex, paletteOf, setCssColours } from "./colours.js";
import { Disposer, el, readHash, select, showError, writeHash } from "./dom.js";
import { loadInputAttention } from "./inputs-data.js";
import { ink, onSchemeChange } from "./theme.js";

export const HEAT_RGB = [0xd9, 0x48, 0x01];
const MODES = [{ id: "heatmap", label: "heatmap" }, { id: "lines", label: "lines" }];
const LINE_MIN = 0.01;
const LINE_LEVELS = 16;
const MIN_CELL = 36;
const MAX_CELL = 120;

export function mountModel(root) {
  const view = new ModelView(root);
  view.start();
  return view;
}

// A CSS colour as [r, g, b] (the canvas resolves any syntax the theme uses).
export function cssRgb(colour) {
  const c = document.createElement("canvas");
  c.width = c.height = 1;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = colour;
  ctx.fillRect(0, 0, 1, 1);
  return Array.from(ctx.getImageData(0, 0, 1, 1).data.slice(0, 3));
}

class ModelView {
  constructor(root) {
    this.root = root;
    this.disposer = new Disposer();
    this.destroyed = false;
    this.inputId = Number(root.dataset.input);
    this.base = new URL(root.dataset.data || "./", location.href).href;
    this.status = el("p", { class: "atlas-status", text: "Loading every head's attention on this input…" });
    root.append(this.status);
    root.atlasView = this;
  }

  async start() {
    try {
      if (!Number.isInteger(this.inputId)) throw new AtlasDataError("this page names no input");
      const meta = await loadManifest(this.base);
      const [model, attention] = await Promise.all([loadModel(this.base), loadInputAttention(meta, this.inputId)]);
      const rows = model.sentences.get(this.inputId);
      if (!rows) throw new AtlasDataError(`tokens.arrow has no input ${this.inputId}`);
      if (rows.length !== attention.n) {
        throw new AtlasDataError(`input ${this.inputId} has ${rows.length} tokens but its attention file ${attention.n}`);
      }
      const images = model.manifest.model.input_kind === "image"
        ? new (await import("./model-view-images.js")).ImageCells(this, model) : null;
      if (images) await images.load();
      if (!this.destroyed) this.build(model, attention, rows, images);
    } catch (err) {
      if (this.destroyed) return;
      this.status.remove();
      if (!(err instanceof AtlasDataError)) console.error(err);
      showError(this.root, err instanceof AtlasDataError ? err.message : `unexpected error: ${err.message}`);
    }
  }

  build(model, attention, rows, images) {
    const t = model.tokens;
    Object.assign(this, { model, attention, images });
    this.tokens = rows.map((r) => ({ text: t.text[r], special: !!t.special[r], position: t.position[r], side: t.side ? t.side[r] : null }));
    // Rows (queries) and columns (keys) a cell draws: every position, or cross-attention's decoder rows × encoder columns.
    const all = this.tokens.map((_, p) => p);
    this.axes = t.side ? { rows: all.filter((p) => this.tokens[p].side === 0), cols: all.filter((p) => this.tokens[p].side === 1) }
      : { rows: all, cols: all };
    this.palette = paletteOf(model.manifest);
    setCssColours(this.root, this.palette);
    const h = readHash();
    const n = attention.n;
    const token = h.has("token") ? Number(h.get("token")) : NaN;
    this.state = {
      mode: MODES.some((m) => m.id === h.get("mode")) && !images ? h.get("mode") : "heatmap",
      hideSpecial: h.get("special") === "hide",
      hideFirst: h.get("first") === "hide",
      focus: Number.isInteger(token) && token >= 0 && token < n ? token : images ? images.defaultFocus() : this.firstWord(),
    };
    this.buildDom();
    this.status.remove();
    this.disposer.add(onSchemeChange(() => this.draw()));
    this.draw();
  }

  firstWord() {
    const p = this.tokens.findIndex((tok) => !tok.special);
    return p < 0 ? 0 : p;
  }

  buildDom() {
    const d = this.disposer;
    const s = this.state;
    const special = el("input", { type: "checkbox", class: "atlas-hide-special" });
    const first = el("input", { type: "checkbox", class: "atlas-hide-first" });
    [special.checked, first.checked] = [s.hideSpecial, s.hideFirst];
    d.on(special, "change", () => ((s.hideSpecial = special.checked), this.draw()));
    d.on(first, "change", () => ((s.hideFirst = first.checked), this.draw()));
    this.modeSelect = this.images ? null : select(MODES, s.mode, "draw each head as");
    if (this.modeSelect) d.on(this.modeSelect, "change", () => ((s.mode = this.modeSelect.value), this.draw()));
    this.toolbar = el("div", { class: "atlas-toolbar atlas-mv-toolbar" }, [
      this.modeSelect ? el("label", {}, ["draw heads as ", this.modeSelect]) : null,
      el("label", {}, [special, " hide special tokens"]),
      el("label", {}, [first, " hide first token"]),
      el("span", { class: "atlas-hint", text: this.images ? "click a patch or a token to focus it" :
        "click a token to focus it (lines: drawn in colour); a cell opens its head with that token selected" }),
    ]);
    this.strip = el("div", { class: "atlas-mv-tokens", "aria-label": "tokens: click one to focus it" });
    d.on(this.strip, "click", (e) => {
      const chip = e.target.closest("button[data-position]");
      if (chip) this.focusOn(Number(chip.dataset.position));
    });
    this.note = el("p", { class: "atlas-mv-note" });
    this.info = el("p", { class: "atlas-mv-info", "aria-live": "polite" });
    this.grid = el("div", { class: "atlas-mv-grid" });
    d.on(this.grid, "mouseover", (e) => this.describe(e.target.closest(".atlas-mv-cell")));
    d.on(this.grid, "mouseleave", () => this.describe(null));
    this.root.append(this.toolbar, this.strip);
    if (this.images) this.root.append(this.images.mount());
    this.root.append(this.note, this.grid, this.info);
    this.buildCells();
  }

  buildCells() {
    const m = this.model.manifest.model;
    const grouped = Number(m.num_kv_heads) < Number(m.num_heads);
    const byLayer = new Map();
    for (const h of this.attention.heads) {
      if (!byLayer.has(h.layer)) byLayer.set(h.layer, []);
      byLayer.get(h.layer).push(h);
    }
    const columns = Math.max(...[...byLayer.values()].map((hs) => hs.length), 1);
    const width = this.root.clientWidth || 900;
    this.cellSize = Math.max(MIN_CELL, Math.min(MAX_CELL, Math.floor((width - 48) / columns) - 8));
    this.grid.style.setProperty("--atlas-mv-columns", String(columns));
    this.grid.style.setProperty("--atlas-mv-cell", `${this.cellSize}px`);
    this.cells = [];
    for (const [layer, heads] of [...byLayer.entries()].sort((a, b) => a[0] - b[0])) {
      const row = el("div", { class: "atlas-mv-row" }, [el("span", { class: "atlas-mv-layer", text: `L${layer}` })]);
      for (const h of heads.sort((a, b) => a.head - b.head)) {
        const info = this.model.headInfo(h.layer, h.head);
        const label = info ? info.label : "";
        const canvas = el("canvas", { class: "atlas-mv-canvas" });
        const title = `L${h.layer} H${h.head}${label ? ` · ${label}` : ""}${grouped ? ` · key/value head ${h.kv}` : ""}`;
        const cell = el("a", { class: "atlas-mv-cell", href: "#", title }, [
          canvas,
          el("span", { class: "atlas-mv-label", text: `H${h.head}${label ? ` · ${label}` : ""}` }),
        ]);
        Object.assign(cell.dataset, { layer: String(h.layer), head: String(h.head), kv: String(h.kv), label });
        if (grouped) {
          cell.classList.add("is-grouped");
          cell.append(el("span", { class: `atlas-mv-kv atlas-mv-kv-${h.kv % 6}`, text: `kv${h.kv}` }));
        }
        row.append(cell);
        this.cells.push({ ...h, cell, canvas });
      }
      this.grid.append(row);
    }
    this.note.textContent = grouped
      ? `Grouped-query attention: ${m.num_heads / m.num_kv_heads} query heads share each of the ${m.num_kv_heads} ` +
        "key/value heads; cells with the same band and kv number share one."
      : "";
  }

  focusOn(position) {
    this.state.focus = position;
    this.draw();
  }

  // Keys (positions) that stay: hidden ones drop out of every row, which is re-normalized over the rest.
  visible() {
    const s = this.state;
    const firstKey = this.axes.cols[0];
    return this.tokens.map((tok, p) => !((s.hideFirst && (p === 0 || p === firstKey)) || (s.hideSpecial && tok.special)));
  }

  // The weights a cell draws: text, the n × n matrix; images, the focus row. With every token shown they are the
  // attention file's (byte / 255); hidden keys (and, for text, hidden queries) are 0 and each row is re-normalized
  // over the keys that stay.
  cellWeights(layer, head) {
    const bytes = this.attention.bytes(layer, head);
    const n = this.attention.n;
    const vis = this.visible();
    const all = vis.every(Boolean);
    const rows = this.images ? [this.state.focus] : Array.from({ length: n }, (_, i) => i);
    const out = new Float32Array(rows.length * n);
    rows.forEach((i, r) => {
      if (!this.images && !vis[i]) return;
      let total = all ? 255 : 0;
      for (let j = 0; j < n && !all; j++) if (vis[j]) total += bytes[i * n + j];
      for (let j = 0; j < n && total > 0; j++) out[r * n + j] = vis[j] ? bytes[i * n + j] / total : 0;
    });
    return out;
  }

  draw() {
    if (this.destroyed || !this.cells) return;
    const s = this.state;
    const c = ink(this.root);
    this.colours = { bg: cssRgb(c.bg), heat: HEAT_RGB, fg: c.attn, query: hex(this.palette.query) };
    this.root.dataset.heatFrom = hex(this.colours.bg);
    this.root.dataset.heatTo = hex(HEAT_RGB);
    this.renderStrip();
    if (this.images) this.images.drawPicker();
    for (const cell of this.cells) {
      const w = this.cellWeights(cell.layer, cell.head);
      if (this.images) this.images.drawCell(cell, w);
      else if (s.mode === "lines") this.drawLines(cell, w);
      else this.drawHeatmap(cell, w);
      cell.cell.href = this.headUrl(cell);
    }
    this.root.dataset.mode = this.images ? "image" : s.mode;
    this.root.dataset.focus = String(s.focus);
    this.root.dataset.state = "drawn";
    if (!this.drawnOnce) {
      this.drawnOnce = true;
      performance.mark("atlas:model-drawn", { detail: { view: "model", input: this.inputId, cells: this.cells.length } });
    }
    this.writeState();
  }

  renderStrip() {
    const chips = [];
    const vis = this.visible();
    this.tokens.forEach((tok, p) => {
      if (this.images && p >= this.images.grid.prefix) return;
      const chip = el("button", { type: "button", class: "atlas-mv-token", text: tok.text, title: `position ${p}${tok.special ? " · special" : ""}` });
      chip.dataset.position = String(p);
      if (p === this.state.focus) chip.classList.add("is-focus");
      if (!vis[p]) chip.classList.add("is-hidden");
      chips.push(chip);
    });
    this.strip.replaceChildren(...chips);
  }

  // One pixel per (query row, key column), opaque: background + √weight × (heat − background) (the square root
  // keeps the weak weights of long inputs visible).
  drawHeatmap({ canvas }, w) {
    const n = this.attention.n;
    const { rows, cols } = this.axes;
    [canvas.width, canvas.height] = [cols.length, rows.length];
    canvas.classList.remove("is-lines");
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(cols.length, rows.length);
    const { bg, heat } = this.colours;
    rows.forEach((i, r) => cols.forEach((j, c) => {
      const t = Math.sqrt(w[i * n + j]);
      const k = r * cols.length + c;
      for (let ch = 0; ch < 3; ch++) img.data[4 * k + ch] = Math.round(bg[ch] + t * (heat[ch] - bg[ch]));
      img.data[4 * k + 3] = 255;
    }));
    ctx.putImageData(img, 0, 0);
  }

  // Queries on the left edge, keys on the right, one line per pair (opacity = weight, drawn in LINE_LEVELS
  // batches); the focus token's lines in the query colour.
  drawLines({ canvas }, w) {
    const n = this.attention.n;
    const dpr = window.devicePixelRatio || 1;
    const size = this.cellSize;
    [canvas.width, canvas.height] = [Math.round(size * dpr), Math.round(size * dpr)];
    canvas.classList.add("is-lines");
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = hex(this.colours.bg);
    ctx.fillRect(0, 0, size, size);
    const { rows, cols } = this.axes;
    const y = (index, count) => ((index + 0.5) * size) / count;
    const paths = Array.from({ length: LINE_LEVELS }, () => new Path2D());
    const focus = new Path2D();
    rows.forEach((i, r) => cols.forEach((j, c) => {
      const v = w[i * n + j];
      if (v < LINE_MIN) return;
      const path = i === this.state.focus ? focus : paths[Math.min(LINE_LEVELS - 1, Math.floor(v * LINE_LEVELS))];
      path.moveTo(3, y(r, rows.length));
      path.lineTo(size - 3, y(c, cols.length));
    }));
    ctx.lineWidth = 1;
    ctx.strokeStyle = this.colours.fg;
    paths.forEach((path, level) => {
      ctx.globalAlpha = (level + 0.5) / LINE_LEVELS;
      ctx.stroke(path);
    });
    ctx.globalAlpha = 1;
    ctx.strokeStyle = this.colours.query;
    ctx.lineWidth = 1.5;
    ctx.stroke(focus);
  }

  // The head page with this input selected: the focus token's query point (its key point if it has no query).
  headUrl({ layer, head }) {
    const m = this.model;
    const point = m.pointAt(this.inputId, this.state.focus, false) ?? m.pointAt(this.inputId, this.state.focus, true);
    return `../../L${layer}/H${head}/` + (point === null ? "" : `#point=${point}`);
  }

  describe(cell) {
    if (!cell) {
      this.info.textContent = "";
      return;
    }
    const { layer, head, kv, label } = cell.dataset;
    const grouped = cell.classList.contains("is-grouped") ? ` · key/value head ${kv}` : "";
    this.info.textContent = `Layer ${layer} · head ${head}${label ? ` · ${label}` : ""}${grouped} · click to open this head with the input selected`;
  }

  writeState() {
    const s = this.state;
    const p = new URLSearchParams();
    if (s.mode !== "heatmap") p.set("mode", s.mode);
    if (s.hideSpecial) p.set("special", "hide");
    if (s.hideFirst) p.set("first", "hide");
    p.set("token", String(s.focus));
    writeHash(p);
  }

  destroy() {
    this.destroyed = true;
    this.disposer.dispose();
    if (this.images) this.images.destroy();
  }
}
