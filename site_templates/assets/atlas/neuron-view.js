// Neuron view (BertViz's), in the head page's sentence panel: for a query token and a key token of a featured
// input, the query and key vectors dimension by dimension, their elementwise product q⊙k (bars, positive up and
// negative down), its sum q·k (the score), the scaling the capture recorded for the layer, and the softmax of the
// query's row, next to the model's own attention from the attention file. The vectors (vectors/…, float16) load
// when a featured input is shown; other inputs list the featured ones to pick from.

import { strongest } from "./data.js";
import { Disposer, el, svg } from "./dom.js";
import { inputsOf, loadVectors, scalingOf } from "./inputs-data.js";

const WIDTH = 520;
const ROW = 46;
const ROW_GAP = 16;
const CHART = 70;

export class NeuronView {
  // onPick(inputId): select a featured input in the head view.
  constructor(container, { onPick = () => {} } = {}) {
    this.disposer = new Disposer();
    this.onPick = onPick;
    this.root = el("section", { class: "atlas-neuron", hidden: true, "aria-label": "neuron view" });
    this.root.atlasNeuron = this;
    this.title = el("h4", { text: "Neuron view: query and key vectors dimension by dimension" });
    this.querySelect = el("select", { class: "atlas-neuron-query", "aria-label": "query token" });
    this.keySelect = el("select", { class: "atlas-neuron-key", "aria-label": "key token" });
    this.disposer.on(this.querySelect, "change", () => this.setPair(Number(this.querySelect.value), this.key));
    this.disposer.on(this.keySelect, "change", () => this.setPair(this.query, Number(this.keySelect.value)));
    this.controls = el("div", { class: "atlas-neuron-controls" }, [
      el("label", {}, ["query ", this.querySelect]), el("label", {}, ["key ", this.keySelect]),
      el("span", { class: "atlas-hint", text: "or hover a line of the sentence view" }),
    ]);
    this.note = el("p", { class: "atlas-neuron-note" });
    this.body = el("div", { class: "atlas-neuron-body" });
    this.root.append(this.title, this.controls, this.note, this.body);
    container.append(this.root);
  }

  // model: the head view's model; tokens: [{text, special, position, side}]; focus: {position, isKey}; matrix: the
  // head's attention rows of the input ({n, w}) or null. Cross-attention (tokens with side 0 / 1): queries are the
  // query side's tokens, keys the key side's, positions are shown within each side.
  async show({ model, layer, head, inputId, tokens, focus, matrix }) {
    const manifest = model.manifest;
    const inputs = inputsOf(manifest);
    const kv = (manifest.model.kv_head_of_query || [])[head] ?? head;
    const keyStart = tokens.findIndex((t) => t.side === 1);
    Object.assign(this, { model, layer, head, kv, inputId, tokens, matrix, vectors: null, keyStart: keyStart < 0 ? 0 : keyStart,
      cross: keyStart >= 0 });
    this.root.hidden = false;
    this.root.dataset.state = "loading";
    if (!(inputs.vectors || []).includes(inputId)) {
      this.offerFeatured(inputs.vectors || []);
      return;
    }
    const [q, k] = await Promise.all([loadVectors(model, "query", layer, head), loadVectors(model, "key", layer, kv)]);
    if (this.inputId !== inputId || this.layer !== layer || this.head !== head) return;
    const [qr, kr] = [q.rows(inputId), k.rows(inputId)];
    if (!qr || !kr || qr.n !== tokens.length || kr.n !== tokens.length) {
      const text = `the vector files hold no ${tokens.length}-token rows for input ${inputId}`;
      this.body.replaceChildren(el("p", { class: "atlas-error", text }));
      return;
    }
    this.vectors = { q: qr.values, k: kr.values, dim: q.dim };
    this.scaling = scalingOf(manifest, layer);
    this.causal = !!manifest.model.causal;
    this.controls.hidden = false;
    this.noteText(manifest.model);
    const query = focus && !focus.isKey ? focus.position : this.firstWord();
    this.fillSelects();
    this.setPair(query, this.strongestKey(query));
  }

  hide() {
    this.root.hidden = true;
    this.inputId = undefined;
  }

  firstWord() {
    const p = this.tokens.findIndex((t, j) => !t.special && this.isQuery(j));
    return p < 0 ? 0 : p;
  }

  isQuery(p) {
    return !this.cross || p < this.keyStart;
  }

  // A position as readers count it: within its own side for cross-attention.
  shown(p) {
    return this.cross && p >= this.keyStart ? p - this.keyStart : p;
  }

  offerFeatured(ids) {
    this.controls.hidden = true;
    this.note.textContent = ids.length
      ? "Query and key vectors are exported for the featured sentences only. Pick one:"
      : "This atlas exports no query and key vectors (no featured sentences).";
    const buttons = ids.map((id) => {
      const rows = this.model.sentences.get(id) || [];
      const text = rows.filter((r) => !this.model.tokens.special[r]).map((r) => this.model.tokens.text[r]).join("").replaceAll("␣", " ").trim();
      const label = `sentence ${id}: ${text.slice(0, 60)}${text.length > 60 ? "…" : ""}`;
      const b = el("button", { type: "button", class: "atlas-neuron-pick", text: label });
      b.dataset.input = String(id);
      b.addEventListener("click", () => this.onPick(id));
      return b;
    });
    this.body.replaceChildren(el("div", { class: "atlas-neuron-picks" }, buttons));
    this.root.dataset.state = "not-featured";
  }

  noteText(m) {
    const where = m.capture_mode === "hooks"
      ? "These q and k were taken at the attention's projections, before any rotation the model applies later."
      : "These q and k are the vectors the attention's dot product uses: post-rotary (after the rotary position " +
        "embedding, RoPE) in models that have one, so they carry position.";
    const bias = m.has_position_bias
      ? " This model adds score terms that q·k does not hold (relative positions, ALiBi or soft-capping): the " +
        "softmax of q·k alone differs from its attention."
      : "";
    this.note.textContent = where + bias;
  }

  fillSelects() {
    const options = (keep, limit) => this.tokens.flatMap((t, p) => (keep(p)
      ? [el("option", { value: String(p), text: `${this.shown(p)}: ${t.text}`, disabled: limit(p) })] : []));
    this.querySelect.replaceChildren(...options((p) => this.isQuery(p), () => false));
    const allowed = this.allowed(this.query);
    this.keySelect.replaceChildren(...options((p) => !this.cross || allowed[p], (p) => !allowed[p]));
  }

  // The query's strongest allowed key (ties to the lower position); its first allowed key when the row has no weight.
  strongestKey(i) {
    const allowed = this.allowed(i);
    const top = this.matrix ? strongest(this.matrix.w, this.matrix.n, i, this.matrix.n).find((t) => allowed[t.position]) : null;
    return top ? top.position : Math.max(allowed.indexOf(true), 0);
  }

  // The keys a query's softmax runs over: every position, up to its own (causal), or the key side (cross).
  allowed(i) {
    return this.tokens.map((_, j) => (this.cross ? j >= this.keyStart : !this.causal || j <= i));
  }

  // q_i · k_j (float64 over the exported float16 values).
  score(i, j) {
    const { q, k, dim } = this.vectors;
    let s = 0;
    for (let d = 0; d < dim; d++) s += q[i * dim + d] * k[j * dim + d];
    return s;
  }

  softmaxRow(i) {
    const allowed = this.allowed(i);
    const logits = this.tokens.map((_, j) => (allowed[j] ? this.score(i, j) * this.scaling : -Infinity));
    const top = Math.max(...logits);
    const e = logits.map((l) => (Number.isFinite(l) ? Math.exp(l - top) : 0));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / total);
  }

  // Called with positions of the input (a hovered sentence-view line, the selects).
  setPair(i, j) {
    if (!this.vectors || !(i >= 0 && i < this.tokens.length) || !(j >= 0 && j < this.tokens.length)) return;
    if (!this.isQuery(i)) return;
    if (!this.allowed(i)[j]) j = this.cross ? this.strongestKey(i) : i;
    const changedQuery = i !== this.query;
    [this.query, this.key] = [i, j];
    if (changedQuery) this.fillSelects();
    [this.querySelect.value, this.keySelect.value] = [String(i), String(j)];
    this.render();
  }

  render() {
    const { query: i, key: j } = this;
    const { q, k, dim } = this.vectors;
    const qi = q.subarray(i * dim, (i + 1) * dim);
    const kj = k.subarray(j * dim, (j + 1) * dim);
    const prod = qi.map((v, d) => v * kj[d]);
    const score = prod.reduce((a, b) => a + b, 0);
    const row = this.softmaxRow(i);
    const model = this.matrix ? this.matrix.w[i * this.matrix.n + j] : NaN;
    const figure = svg("svg", { viewBox: `0 0 ${WIDTH} ${3 * (ROW + ROW_GAP)}`, width: "100%", class: "atlas-neuron-bars" });
    figure.style.maxWidth = `${WIDTH}px`;
    const rows = [["q", qi, `query "${this.tokens[i].text}" (position ${this.shown(i)})`],
      ["k", kj, `key "${this.tokens[j].text}" (position ${this.shown(j)})`],
      ["q⊙k", prod, "elementwise product; its sum is the score q·k"]];
    rows.forEach(([name, values, caption], r) => figure.append(this.barRow(name, values, caption, r * (ROW + ROW_GAP))));
    const t = this.tokens;
    const facts = [
      ["q·k (sum of q⊙k)", score, "score"],
      [`scaling (layer ${this.layer})`, this.scaling, "scaling"],
      ["q·k × scaling", score * this.scaling, "scaled"],
      [`softmax over ${t[i].text}'s row`, row[j], "softmax"],
      ["the model's attention (attention file)", model, "attention"],
    ];
    const dl = el("dl", { class: "atlas-neuron-facts" });
    for (const [label, value, key] of facts) {
      dl.append(el("dt", { text: label }), el("dd", { text: Number.isFinite(value) ? value.toPrecision(5) : "—" }));
      this.root.dataset[key] = String(value);
    }
    Object.assign(this.root.dataset, { query: String(i), key: String(j), input: String(this.inputId), state: "drawn" });
    this.body.replaceChildren(figure, dl, this.rowChart(row, i, j));
  }

  // d bars around a baseline: positive up (is-pos), negative down (is-neg), scaled to the row's largest |value|.
  barRow(name, values, caption, top) {
    const g = svg("g", { class: "atlas-neuron-row", transform: `translate(0 ${top})` });
    g.dataset.row = name;
    const left = 40;
    const step = (WIDTH - left) / values.length;
    const peak = Math.max(1e-12, ...Array.from(values, Math.abs));
    const mid = ROW / 2 + 6;
    const label = svg("text", { x: 0, y: mid + 4, class: "atlas-neuron-label" });
    label.textContent = name;
    const cap = svg("text", { x: left, y: 9, class: "atlas-neuron-caption" });
    cap.textContent = `${caption} · max |value| ${peak.toPrecision(3)}`;
    g.append(label, cap, svg("line", { x1: left, x2: WIDTH, y1: mid, y2: mid, class: "atlas-neuron-axis" }));
    values.forEach((v, d) => {
      const h = (Math.abs(v) / peak) * (ROW / 2 - 4);
      const bar = svg("rect", { x: left + d * step, y: v >= 0 ? mid - h : mid, width: Math.max(1, step - 1), height: h,
        class: v >= 0 ? "is-pos" : "is-neg" });
      bar.dataset.dim = String(d);
      bar.dataset.value = String(v);
      const tip = svg("title");
      tip.textContent = `${name}[${d}] = ${v.toPrecision(4)}`;
      bar.append(tip);
      g.append(bar);
    });
    return g;
  }

  // The query's row: softmax of q·k × scaling over its keys (bars; click one to make it the key) and the model's
  // attention (ticks).
  rowChart(row, i, j) {
    const first = this.cross ? this.keyStart : 0;  // the first key the row can reach
    const n = row.length - first;
    const step = Math.min(24, (WIDTH - 40) / n);
    const chart = svg("svg", { viewBox: `0 0 ${40 + n * step} ${CHART + 14}`, width: "100%", class: "atlas-neuron-row-chart" });
    chart.style.maxWidth = `${40 + n * step}px`;
    const allowed = this.allowed(i);
    const model = (k) => (this.matrix ? this.matrix.w[i * this.matrix.n + k] : NaN);
    const peak = Math.max(1e-9, ...row, ...row.map((_, k) => model(k)).filter(Number.isFinite));
    row.forEach((p, k) => {
      if (!allowed[k]) return;
      const h = (p / peak) * CHART;
      const x = 40 + (k - first) * step;
      const bar = svg("rect", { x: x + 1, y: CHART - h, width: step - 2, height: h,
        class: `atlas-neuron-softmax${k === j ? " is-key" : ""}` });
      bar.dataset.key = String(k);
      bar.dataset.softmax = String(p);
      const a = model(k);
      bar.dataset.attention = String(a);
      const tip = svg("title");
      tip.textContent = `${this.tokens[k].text}: softmax ${p.toFixed(4)} · model ${Number.isFinite(a) ? a.toFixed(4) : "—"}`;
      bar.append(tip);
      bar.addEventListener("click", () => this.setPair(i, k));
      chart.append(bar);
      const y = CHART - (a / peak) * CHART;
      if (Number.isFinite(a)) chart.append(svg("line", { x1: x, x2: x + step, y1: y, y2: y, class: "atlas-neuron-model" }));
      const label = svg("text", { x: x + step / 2, y: CHART + 11, "text-anchor": "middle", class: "atlas-bar-label" });
      label.textContent = String(this.shown(k));
      chart.append(label);
    });
    const caption = svg("text", { x: 0, y: 10, class: "atlas-neuron-caption" });
    caption.textContent = peak.toPrecision(2);
    chart.append(caption);
    return el("figure", { class: "atlas-neuron-softmax-figure" }, [chart, el("figcaption", {
      text: `${this.tokens[i].text}'s row: softmax of q·k × scaling over its keys (bars, up to ${peak.toPrecision(2)}; ` +
        "click one to make it the key) and the model's attention (ticks)." })]);
  }

  destroy() {
    this.disposer.dispose();
    this.root.remove();
  }
}
