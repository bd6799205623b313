// The value view of a head page: a layout of the value vectors of the head's key/value head (one point per token,
// coloured like the query/key view) and the "where information flows" panel: for the selected query token, the
// keys its attention row mixes, each key's contribution a_ij·‖v_j‖, and ‖Σ a_ij v_j‖, the norm of the head's output
// before W_O (computed by the build). Files: manifest.json's `values` section (docs/reference/formats.md, "Values").
// It sees the head view only through the context of HeadView.context(); text goes in through textContent only.

import { colourPoints } from "./colours.js";
import { fromBytePlanes, gunzip, loadSentenceAttention, readCoords } from "./data.js";
import { Disposer, el, fmt, select } from "./dom.js";
import { AtlasDataError, SCHEMA_VERSION, fetchBuffer, versionError } from "./fetch.js";
import { drawLines, drawRings } from "./overlay.js";
import { legendElement } from "./panels.js";
import { Scatter } from "./scatter.js";

const DIM = 0.12;
const SHOWN = 8; // contributions listed in the panel (the strongest first)

// `index` is the key/value head ("coords", "norms") or the query head ("outputs").
function valueUrl(model, kind, layer, index, layout = "") {
  const template = ((model.manifest.values || {}).files || {})[kind];
  if (!template) throw new AtlasDataError(`manifest.json has no values "${kind}" file template`);
  const rel = template.replaceAll("{layer}", String(layer)).replaceAll("{kv_head}", String(index))
    .replaceAll("{head}", String(index)).replaceAll("{layout}", layout);
  return new URL(rel, model.base).href;
}

const cache = new Map();
function cached(url, read) {
  if (!cache.has(url)) {
    const p = read();
    cache.set(url, p);
    p.catch(() => cache.delete(url));
    while (cache.size > 16) cache.delete(cache.keys().next().value);
  }
  return cache.get(url);
}

// One value layout: {tokenIds, axes} (rows as in the file, each naming its token).
export function loadValueLayout(model, layer, kvHead, layout) {
  const url = valueUrl(model, "coords", layer, kvHead, layout);
  return cached(url, async () => {
    const buffer = await gunzip(await fetchBuffer(url), url);
    const { axes, tokenIds } = readCoords(buffer, url, { layer, head: kvHead, layout, values: true });
    return { tokenIds, axes };
  });
}

const NORMS_MAGIC = { norms: "VNRM", outputs: "ONRM" };
const NORMS_COLUMNS = { norms: 1, outputs: 2 };

// A norms file: ‖v‖ of every token of a key/value head ("norms"), or ‖Σ a·v‖ (column 0) and Σ a·‖v‖ (column 1) of
// every token of a query head ("outputs"); {of(tokenId, column = 0) → number or null}.
export function loadNorms(model, kind, layer, index) {
  const url = valueUrl(model, kind, layer, index);
  return cached(url, async () => {
    const buffer = await gunzip(await fetchBuffer(url), url);
    const view = new DataView(buffer);
    const magic = String.fromCharCode(...new Uint8Array(buffer, 0, Math.min(4, buffer.byteLength)));
    if (magic !== NORMS_MAGIC[kind] || buffer.byteLength < 20) throw new AtlasDataError(`${url} is not a ${kind} file`);
    const [version, fileLayer, fileIndex, count] = [4, 8, 12, 16].map((o) => view.getUint32(o, true));
    if (version !== SCHEMA_VERSION) throw versionError(url, version);
    if (fileLayer !== layer || fileIndex !== index) throw new AtlasDataError(`${url} holds layer ${fileLayer}, head ${fileIndex}`);
    const columns = NORMS_COLUMNS[kind];
    if (20 + count * 4 * (1 + columns) > buffer.byteLength) throw new AtlasDataError(`${url} is truncated`);
    const ids = new Uint32Array(fromBytePlanes(buffer, 20, count, 4));
    const norms = Array.from({ length: columns }, (_, c) => new Float32Array(fromBytePlanes(buffer, 20 + 4 * count * (1 + c), count, 4)));
    const rowOf = new Map();
    ids.forEach((id, r) => rowOf.set(id, r));
    return { of: (tokenId, column = 0) => (rowOf.has(tokenId) ? norms[column][rowOf.get(tokenId)] : null) };
  });
}

// For query position i of a sentence: each key's stored weight, ‖v‖ and contribution a·‖v‖, strongest first; the
// output norm ‖Σ a v‖ and the total Σ a‖v‖ come from the build (`outputs`: exact weights, where the stored ones are
// rounded to 1/255 and a diffuse row's small weights can round to 0).
export function flowOf(matrix, tokenIds, valueNorms, outputs, i) {
  const { n, w } = matrix;
  const terms = [];
  for (let j = 0; j < n; j++) {
    const a = w[i * n + j];
    const nu = valueNorms.of(tokenIds[j]);
    if (nu === null || a <= 0) continue;
    terms.push({ position: j, tokenId: tokenIds[j], weight: a, valueNorm: nu, contribution: a * nu });
  }
  terms.sort((x, y) => y.contribution - x.contribution || x.position - y.position);
  return { position: i, outputNorm: outputs.of(tokenIds[i], 0), total: outputs.of(tokenIds[i], 1), terms };
}

export class ValueView {
  constructor(ctx) {
    this.ctx = ctx;
    this.disposer = new Disposer();
    const { model, layer, head } = ctx;
    this.section = model.manifest.values;
    this.kvHead = (model.headInfo(layer, head) || {}).kv_head ?? head;
    this.layout = this.section.layouts[0];
    this.point = null;
    this.flow = null;
  }

  mount(root) {
    const layouts = this.section.layouts.map((id) => ({ id, label: id }));
    this.layoutSelect = select(layouts, this.layout, "value layout");
    this.disposer.on(this.layoutSelect, "change", () => ((this.layout = this.layoutSelect.value), this.load()));
    this.plot = el("div", { class: "atlas-plot atlas-value-plot" });
    this.legend = el("div", { class: "atlas-legend" });
    this.panel = el("div", { class: "atlas-flow", "aria-live": "polite" });
    this.root = el("section", { class: "atlas-values", "aria-label": "value view" }, [
      el("h3", { text: `Values · key/value head ${this.kvHead}` }),
      el("p", { class: "atlas-hint", text: "one point per token: its value vector (centred), coloured as above; select a query to see where its output comes from" }),
      el("div", { class: "atlas-toolbar" }, [el("label", {}, ["value layout ", this.layoutSelect])]),
      el("div", { class: "atlas-values-main" }, [el("div", { class: "atlas-plot-column" }, [this.plot, this.legend]), this.panel]),
    ]);
    root.append(this.root);
    this.scatter = new Scatter(this.plot, { onClick: (r) => this.pick(r) });
    this.scatter.canvas.className = "atlas-value-canvas"; // the head view's canvas stays the page's .atlas-canvas
    this.showPanel();
    this.whenVisible(() => this.load());
  }

  // Below the head view: its files are fetched when the section nears the viewport, so opening a head page
  // fetches only what the head view draws.
  whenVisible(fn) {
    if (typeof IntersectionObserver === "undefined") return fn();
    const seen = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      seen.disconnect();
      fn();
    }, { rootMargin: "100px" });
    seen.observe(this.root);
    this.disposer.add(() => seen.disconnect());
  }

  fail(err) {
    if (this.ctx.alive()) this.ctx.showError(err.message);
  }

  // The current value layout; the value norms come later, when a flow or the norm colouring needs them.
  async load() {
    const { model, layer } = this.ctx;
    const layout = this.layout;
    try {
      const coords = await loadValueLayout(model, layer, this.kvHead, layout);
      if (!this.ctx.alive() || layout !== this.layout) return;
      this.coords = coords;
      this.rows = Int32Array.from(coords.tokenIds, (id) => model.tokenRowOf(id));
      this.attrs = this.attributes();
      this.scatter.setPoints(coords.axes);
      this.refresh();
      this.update(this.point);
    } catch (err) {
      this.fail(err);
    }
  }

  ensureNorms() {
    const { model, layer } = this.ctx;
    if (!this.normsPending) {
      this.normsPending = loadNorms(model, "norms", layer, this.kvHead).then((norms) => {
        this.norms = norms;
        if (this.attrs) this.attrs.norm = this.valueNorms();
        return norms;
      });
      this.normsPending.catch(() => (this.normsPending = null));
    }
    return this.normsPending;
  }

  valueNorms() {
    return Float32Array.from(this.coords.tokenIds, (id) => this.norms.of(id) ?? 0);
  }

  // The head view's per-point attributes for the value points (token rows), with ‖v‖ as the norm.
  attributes() {
    const { tokens } = this.ctx.model;
    const rows = this.rows;
    const counts = new Map();
    for (const t of tokens.text) counts.set(t, (counts.get(t) || 0) + 1);
    const pick = (Type, f) => Type.from(rows, f);
    return {
      n: rows.length, isKey: new Uint8Array(rows.length), text: Array.from(rows, (t) => tokens.text[t]),
      position: pick(Uint16Array, (t) => tokens.position[t]), length: pick(Uint16Array, (t) => tokens.length[t]),
      sentence: pick(Uint32Array, (t) => tokens.sentence[t]), frequency: pick(Float32Array, (t) => counts.get(tokens.text[t])),
      patchRow: pick(Int16Array, (t) => tokens.patchRow[t]), patchCol: pick(Int16Array, (t) => tokens.patchCol[t]),
      norm: this.norms ? this.valueNorms() : new Float32Array(rows.length), tokenRow: rows,
    };
  }

  // Recolours with the head view's colour encoding (query/key: every value point in the key colour).
  refresh() {
    if (!this.attrs) return;
    const colour = this.ctx.colour();
    this.colour = colour;
    if (colour === "norm" && !this.norms) {
      this.ensureNorms().then(() => this.ctx.alive() && this.refresh(), (err) => this.fail(err));
    }
    const a = this.attrs;
    const { rgb, legend } = colourPoints(colour === "qk" ? "position" : colour, a, this.ctx.palette);
    if (colour === "qk") for (let i = 0; i < a.n; i++) rgb.set(this.ctx.palette.key, i * 3);
    const alpha = new Float32Array(a.n).fill(1);
    let radius = 3;
    if (this.flow) {
      const weight = new Map(this.flow.terms.map((t) => [t.tokenId, t.weight]));
      radius = new Float32Array(a.n);
      for (let i = 0; i < a.n; i++) {
        const w = weight.get(this.coords.tokenIds[i]);
        alpha[i] = w === undefined ? DIM : 1;
        radius[i] = w === undefined ? 2 : 2.5 + 9 * Math.sqrt(w);
      }
    }
    this.scatter.setStyle({ rgb, alpha, radius, highlight: !!this.flow });
    this.legend.replaceChildren(legendElement(colour === "qk" ? { swatches: [["value", this.ctx.palette.key]] } : legend),
      el("p", { class: "atlas-legend-note", text: "‖v‖ for norm; dot size = attention weight of the selected query" }));
    this.scatter.setOverlay((c2d, project, c) => this.overlay(c2d, project, c));
  }

  overlay(c2d, project, c) {
    if (!this.flow || this.queryRow < 0) return;
    const rowOf = new Map(Array.from(this.coords.tokenIds, (id, r) => [id, r]));
    const lines = this.flow.terms.map((t) => ({ from: this.queryRow, to: rowOf.get(t.tokenId), weight: t.weight }))
      .filter((l) => l.to !== undefined && l.to !== l.from);
    drawLines(c2d, project, lines, c.attn);
    drawRings(c2d, project, [this.queryRow], 8, c.ring, 2.5);
  }

  // A click on a value point selects its token's query point in the head view.
  pick(r) {
    if (r < 0 || !this.rows) return;
    const id = this.ctx.model.pointOfToken(this.rows[r], false);
    if (id !== null) this.ctx.select(id);
  }

  // The selected point (head view) → the flow of its token's query; null clears it.
  async update(point) {
    this.point = point;
    if (!point) {
      this.flow = null;
      this.showPanel();
      this.refresh();
      return;
    }
    const { model, layer, head } = this.ctx;
    try {
      const [matrix, norms, outputs] = await Promise.all([loadSentenceAttention(model, layer, head, point.sentence),
        this.ensureNorms(), loadNorms(model, "outputs", layer, head)]);
      if (!this.ctx.alive() || this.point !== point || !this.coords) return;
      if (!matrix) throw new AtlasDataError(`the attention file has no rows for sentence ${point.sentence}`);
      const tokenIds = (model.sentences.get(point.sentence) || []).map((t) => model.tokens.id[t]);
      this.flow = { sentence: point.sentence, ...flowOf(matrix, tokenIds, norms, outputs, point.position) };
      if (this.flow.outputNorm === null) throw new AtlasDataError(`the outputs file of head ${head} has no token ${tokenIds[point.position]}`);
      this.queryRow = this.coords.tokenIds.indexOf(model.tokens.id[point.token]);
      this.showPanel();
      this.refresh();
    } catch (err) {
      this.fail(err);
    }
  }

  showPanel() {
    const f = this.flow;
    this.root.dataset.outputNorm = f ? String(f.outputNorm) : "";
    if (!f) {
      this.panel.replaceChildren(el("h4", { text: "Where information flows" }),
        el("p", { class: "atlas-hint", text: "select a point to see the value vectors its query mixes" }));
      return;
    }
    const { model } = this.ctx;
    const textAt = (p) => model.tokens.text[(model.sentences.get(f.sentence) || [])[p]] ?? "";
    const list = el("ol", { class: "atlas-flow-terms" });
    for (const t of f.terms.slice(0, SHOWN)) {
      const share = f.total > 0 ? t.contribution / f.total : 0;
      const bar = el("span", { class: "atlas-flow-bar" });
      bar.setAttribute("style", `width:${(100 * share).toFixed(1)}%`);
      list.append(el("li", { "data-position": t.position, title: `a = ${fmt(t.weight)}, ‖v‖ = ${fmt(t.valueNorm)}` }, [
        el("span", { class: "atlas-flow-token", text: textAt(t.position) }),
        el("span", { class: "atlas-flow-numbers", text: ` ${fmt(t.weight)} × ${fmt(t.valueNorm)} = ${fmt(t.contribution)} (${(100 * share).toFixed(0)}%)` }),
        bar,
      ]));
    }
    const more = f.terms.length > SHOWN ? el("p", { class: "atlas-hint", text: `…and ${f.terms.length - SHOWN} more keys` }) : null;
    const ratio = f.total > 0 ? f.outputNorm / f.total : 0;
    this.panel.replaceChildren(
      el("h4", { text: "Where information flows" }),
      el("p", { class: "atlas-flow-query" }, ["query ", el("strong", { text: textAt(f.position) }), ` (position ${f.position + 1})`]),
      el("p", { class: "atlas-flow-output", text: `‖Σ a·v‖ = ${fmt(f.outputNorm)} (the head's output ${this.section.output}); Σ a·‖v‖ = ${fmt(f.total)}; ratio ${fmt(ratio)}` }),
      el("p", { class: "atlas-hint", text: "attention weight × ‖value‖ = contribution, strongest first:" }),
      list, more,
    );
  }

  destroy() {
    this.disposer.dispose();
    if (this.scatter) this.scatter.destroy();
  }
}
