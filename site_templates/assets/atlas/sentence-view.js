// BertViz-style sentence view: queries on the left, keys on the right, one line per pair with opacity = weight.
// Hiding tokens (special, first, or clicked ones) re-normalizes every row over the keys that stay. Hovering a line
// calls onPair(query, key) (the neuron view follows it); a link opens the sentence's model view.

import { Disposer, el, svg } from "./dom.js";

const ROW = 20;
const LEFT = 170;
const RIGHT = 330;
const WIDTH = 500;
const MIN_WEIGHT = 0.005;
const SPAN = 8;
const BAR = 18;

export class SentenceView {
  constructor(container) {
    this.disposer = new Disposer();
    this.hideSpecial = false;
    this.hideFirst = false;
    this.hidden = new Set();
    this.root = el("section", { class: "atlas-sentence", hidden: true, "aria-label": "sentence view" });
    this.title = el("h3", { class: "atlas-sentence-title" });
    this.modelLink = el("a", { class: "atlas-model-view-link", hidden: true, text: "every head on this sentence (model view) →" });
    const special = el("input", { type: "checkbox", class: "atlas-hide-special" });
    const first = el("input", { type: "checkbox", class: "atlas-hide-first" });
    this.disposer.on(special, "change", () => ((this.hideSpecial = special.checked), this.render()));
    this.disposer.on(first, "change", () => ((this.hideFirst = first.checked), this.render()));
    const close = el("button", { type: "button", class: "atlas-sentence-close", text: "close" });
    this.disposer.on(close, "click", () => this.onClose && this.onClose());
    this.controls = el("div", { class: "atlas-sentence-controls" }, [
      el("label", {}, [special, " hide special tokens"]),
      el("label", {}, [first, " hide first token"]),
      el("span", { class: "atlas-hint", text: "click a token to hide it, hover to focus its lines" }),
      close,
    ]);
    this.figure = el("div", { class: "atlas-sentence-figure" });
    this.aggregate = el("div", { class: "atlas-aggregate" });
    this.root.append(this.title, this.modelLink, this.controls, this.figure, this.aggregate);
    container.append(this.root);
  }

  // tokens: [{text, special, position, side}] in position order; matrix: {n, w} row-major; focus: {position,
  // isKey} (position within the focused token's side); sides: cross-attention's [query side, key side] names (its
  // tokens carry side 0 / 1 and go to the left / right column), or null; modelView: URL of the sentence's model-view
  // page (every head on it), or null.
  show({ sentenceId, tokens, matrix, focus, sides = null, modelView = null }) {
    if (this.sentenceId !== sentenceId) this.hidden = new Set();
    Object.assign(this, { sentenceId, tokens, matrix, focus, sides });
    this.root.hidden = false;
    this.title.textContent = sides
      ? `Input ${sentenceId} · ${this.column(0).length} ${sides[0]} tokens → ${this.column(1).length} ${sides[1]} tokens`
      : `Sentence ${sentenceId} · ${tokens.length} tokens`;
    this.modelLink.hidden = !modelView;
    if (modelView) this.modelLink.href = modelView;
    this.render();
  }

  hide() {
    this.root.hidden = true;
    this.sentenceId = undefined;
  }

  // Token indices (= matrix rows/columns) of the query column (0) or the key column (1).
  column(which) {
    const all = this.tokens.map((_, p) => p);
    return this.sides ? all.filter((p) => this.tokens[p].side === which) : all;
  }

  isHidden(p) {
    const first = p === 0 || (this.sides && p === this.column(1)[0]);
    return this.hidden.has(p) || (this.hideFirst && first) || (this.hideSpecial && this.tokens[p].special);
  }

  render() {
    const { tokens, matrix } = this;
    if (!tokens) return;
    const [left, right] = [this.column(0), this.column(1)];
    const height = Math.max(left.length, right.length) * ROW + 10;
    const figure = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, width: "100%", class: "atlas-bipartite" });
    figure.style.maxWidth = `${WIDTH}px`;
    const lines = svg("g", { class: "atlas-lines" });
    figure.append(lines);
    const y = (row) => 5 + row * ROW + ROW / 2;
    const visible = tokens.map((_, p) => !this.isHidden(p));
    const size = matrix ? matrix.n : 0;
    left.forEach((i, a) => {
      if (!visible[i] || i >= size) return;
      let total = 0;
      for (const j of right) if (visible[j] && j < size) total += matrix.w[i * size + j];
      right.forEach((j, b) => {
        const w = total > 0 && visible[j] && j < size ? matrix.w[i * size + j] / total : 0;
        if (w < MIN_WEIGHT) return;
        const line = svg("line", { x1: LEFT + 6, y1: y(a), x2: RIGHT - 6, y2: y(b), "stroke-opacity": w.toFixed(3) });
        line.dataset.q = i;
        line.dataset.k = j;
        line.dataset.weight = w.toFixed(4);
        lines.append(line);
      });
    });
    for (const [side, x, anchor, column] of [["q", LEFT, "end", left], ["k", RIGHT, "start", right]]) {
      column.forEach((p, row) => {
        const cls = ["atlas-token", `atlas-token-${side}`];
        if (!visible[p]) cls.push("is-hidden");
        if (this.focus && this.focus.position === row && (this.focus.isKey ? "k" : "q") === side) cls.push("is-focus");
        const text = svg("text", { x, y: y(row) + 4, "text-anchor": anchor, class: cls.join(" ") });
        text.textContent = tokens[p].text;
        text.dataset.position = p;
        text.dataset.side = side;
        figure.append(text);
      });
    }
    const names = this.sides ? [`queries (${this.sides[0]})`, `keys (${this.sides[1]})`] : ["queries", "keys"];
    for (const [label, x] of [[names[0], LEFT], [names[1], RIGHT]]) {
      const head = svg("text", { x, y: 0, "text-anchor": x === LEFT ? "end" : "start", class: "atlas-col-label" });
      head.textContent = label;
      figure.prepend(head);
    }
    figure.setAttribute("viewBox", `0 -14 ${WIDTH} ${height + 14}`);
    this.bindFigure(figure, lines);
    this.figure.replaceChildren(figure);
  }

  bindFigure(figure, lines) {
    const focus = (side, p) => {
      figure.classList.toggle("is-focusing", p !== null);
      for (const line of lines.children) line.classList.toggle("is-focused", p !== null && line.dataset[side] === String(p));
    };
    figure.addEventListener("mouseover", (e) => {
      const t = e.target.closest("text.atlas-token");
      focus(t ? t.dataset.side : "q", t ? t.dataset.position : null);
      const line = e.target.closest("line");
      if (line && this.onPair) this.onPair(Number(line.dataset.q), Number(line.dataset.k));
    });
    figure.addEventListener("mouseleave", () => focus("q", null));
    figure.addEventListener("click", (e) => {
      const t = e.target.closest("text.atlas-token");
      if (!t) return;
      const p = Number(t.dataset.position);
      if (this.hidden.has(p)) this.hidden.delete(p);
      else this.hidden.add(p);
      this.render();
    });
  }

  // The head's aggregate pattern (aggregate/L<l>H<h>.json): mean attention by relative offset (key position −
  // query position) over every sentence, for the offsets within ±SPAN; cross-attention: by key-side position.
  showAggregate(aggregate) {
    const [lo, hi] = aggregate.offsets || [0, -1];
    const shown = [];
    for (let d = Math.max(lo, -SPAN); d <= Math.min(hi, SPAN); d++) shown.push([d, Number(aggregate.mean[d - lo]) || 0]);
    const peak = Math.max(...shown.map(([, m]) => m), 1e-9);
    const chart = svg("svg", { viewBox: `0 0 ${shown.length * BAR} 70`, class: "atlas-aggregate-chart", width: "100%" });
    chart.style.maxWidth = `${shown.length * BAR}px`;
    shown.forEach(([d, m], k) => {
      const h = (m / peak) * 50;
      const bar = svg("rect", { x: k * BAR + 2, y: 52 - h, width: BAR - 4, height: h, class: "atlas-bar" });
      bar.dataset.offset = String(d);
      bar.dataset.mean = String(m);
      const tip = svg("title");
      tip.textContent = `offset ${d}: mean weight ${m.toFixed(3)}`;
      bar.append(tip);
      const label = svg("text", { x: k * BAR + BAR / 2, y: 66, "text-anchor": "middle", class: "atlas-bar-label" });
      label.textContent = String(d);
      chart.append(bar, label);
    });
    const heading = aggregate.kind === "key-position"
      ? "Head pattern: mean attention by key-side position (0 = the first key-side token)"
      : "Head pattern: mean attention by relative position (key − query)";
    this.aggregate.replaceChildren(el("h4", { text: heading }), chart);
  }

  destroy() {
    this.disposer.dispose();
    this.root.remove();
  }
}
