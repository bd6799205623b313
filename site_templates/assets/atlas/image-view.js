// Image view (vision transformers): the picture the model saw, three times. (1) The selected patch outlined
// (query green, key pink) with the attention heatmap of its row (a key: its column) over the patches, opacity =
// weight; (2) every query patch's strongest target as an arrow; (3) every flow above 0.1, width and opacity by
// weight. CLS/register tokens sit beside the picture as chips. Text goes in through textContent only. Backgrounds,
// flows and arrows take the colour scheme's ink (theme.js) and are drawn again when the scheme changes.

import { hex } from "./colours.js";
import { strongest } from "./data.js";
import { Disposer, el } from "./dom.js";
import { ink, onSchemeChange } from "./theme.js";

export const HEAT = [0xff, 0x7f, 0x0e];
export const HEAT_ALPHA = 0.85;
const FLOW_MIN = 0.1;
const SIZE = 240;
const MIN_SIZE = 120;
const GAP = 12;
const AGGREGATE = 160;

export class ImageView {
  // colours: {query, key} as RGB triples (the manifest's colours).
  constructor(container, { onSelect = () => {}, onClose = () => {}, colours }) {
    this.disposer = new Disposer();
    this.onSelect = onSelect;
    this.colours = colours;
    this.root = el("section", { class: "atlas-image-view", hidden: true, "aria-label": "image view" });
    this.title = el("h3", { class: "atlas-image-title" });
    this.modelLink = el("a", { class: "atlas-model-view-link", text: "every head on this image (model view) →" });
    this.credit = el("p", { class: "atlas-image-credit" });
    this.chips = el("div", { class: "atlas-image-prefix" });
    this.status = el("p", { class: "atlas-image-status", "aria-live": "polite" });
    const close = el("button", { type: "button", class: "atlas-image-close", text: "close" });
    this.disposer.on(close, "click", () => onClose());
    this.panels = ["heatmap", "arrows", "flows"].map((kind) => this.panel(kind));
    this.panelBox = el("div", { class: "atlas-image-panels" }, this.panels.map((p) => p.figure));
    this.aggregate = el("figure", { class: "atlas-image-aggregate", hidden: true });
    this.root.append(el("div", { class: "atlas-image-head" }, [this.title, close]), this.modelLink, this.credit, this.chips, this.panelBox, this.status,
      this.aggregate);
    container.append(this.root);
    this.disposer.add(onSchemeChange(() => this.redraw()));
  }

  redraw() {
    if (this.root.hidden || !this.picture) return;
    for (const p of this.panels) this.draw(p);
    if (this.aggregateData) this.showAggregate(this.aggregateData);
  }

  panel(kind) {
    const captions = {
      heatmap: "selected patch and its attention (opacity = weight ÷ its strongest weight)",
      arrows: "strongest target of every query patch",
      flows: `every flow above ${FLOW_MIN} (width and opacity = weight)`,
    };
    const canvas = el("canvas", { class: `atlas-image-canvas atlas-image-${kind}` });
    const figure = el("figure", { class: "atlas-image-figure" }, [canvas, el("figcaption", { text: captions[kind] })]);
    this.disposer.on(canvas, "click", (e) => {
      const p = this.patchAt(canvas, e);
      if (p !== null) this.onSelect(p);
    });
    this.disposer.on(canvas, "mousemove", (e) => this.describe(this.patchAt(canvas, e)));
    this.disposer.on(canvas, "mouseleave", () => this.describe(null));
    return { kind, canvas, figure };
  }

  // image: {name, license, attribution}; picture: {bitmap, width, height}; grid: {rows, cols, ph, pw, prefix};
  // tokens: texts by position; matrix: {n, w} row-major; focus: {position, isKey}.
  show({ imageId, image, picture, grid, tokens, matrix, focus }) {
    Object.assign(this, { imageId, image, picture, grid, tokens, matrix, focus });
    this.root.hidden = false;
    const name = image ? image.name : String(imageId);
    this.title.textContent = `Image ${name} · ${grid.rows} × ${grid.cols} patches`;
    this.modelLink.href = new URL(`../../inputs/${imageId}/`, location.href).href; // from the head page
    this.credit.textContent = image ? [image.license, image.attribution].filter(Boolean).join(" · ") : "";
    this.weights = this.focusWeights();
    this.renderChips();
    for (const p of this.panels) this.draw(p);
    this.root.dataset.image = String(imageId);
    this.root.dataset.focus = `${focus.position}:${focus.isKey ? "key" : "query"}`;
    this.root.dataset.state = "drawn";
  }

  hide() {
    this.root.hidden = true;
    this.root.dataset.state = "";
  }

  // Weights of the focus token over every position: its row for a query, its column for a key.
  focusWeights() {
    const { matrix, focus } = this;
    if (!matrix) return null;
    const { n, w } = matrix;
    const p = focus.position;
    return Float32Array.from({ length: n }, (_, j) => (focus.isKey ? w[j * n + p] : w[p * n + j]));
  }

  renderChips() {
    const { grid, tokens, weights, focus } = this;
    const chips = [];
    for (let p = 0; p < grid.prefix; p++) {
      const chip = el("button", { type: "button", class: "atlas-image-chip" }, [
        el("span", { class: "atlas-chip-token", text: tokens[p] ?? `prefix ${p}` }),
        weights ? el("span", { class: "atlas-chip-weight", text: ` ${weights[p].toFixed(2)}` }) : null,
      ]);
      if (focus.position === p) chip.classList.add(focus.isKey ? "is-key" : "is-query");
      chip.addEventListener("click", () => this.onSelect(p));
      chips.push(chip);
    }
    this.chips.replaceChildren(...chips);
  }

  geometry(canvas) {
    const { picture, grid } = this;
    const dpr = window.devicePixelRatio || 1;
    const fit = Math.floor((this.panelBox.clientWidth - 2 * GAP) / 3);
    const scale = Math.max(MIN_SIZE, Math.min(SIZE, fit || SIZE)) / Math.max(picture.width, picture.height);
    [canvas.width, canvas.height] = [Math.round(picture.width * scale * dpr), Math.round(picture.height * scale * dpr)];
    canvas.style.width = `${Math.round(picture.width * scale)}px`;
    canvas.style.height = `${Math.round(picture.height * scale)}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr * scale, 0, 0, dpr * scale, 0, 0);
    const rect = (p) => {
      const q = p - grid.prefix;
      return [(q % grid.cols) * grid.pw, Math.floor(q / grid.cols) * grid.ph, grid.pw, grid.ph];
    };
    const centre = (p) => {
      const [x, y, w, h] = rect(p);
      return [x + w / 2, y + h / 2];
    };
    return { ctx, scale, rect, centre };
  }

  draw({ kind, canvas }) {
    const { ctx, scale, rect, centre } = this.geometry(canvas);
    const { grid, weights, matrix, focus } = this;
    const patches = grid.rows * grid.cols;
    const isPatch = (p) => p >= grid.prefix && p < grid.prefix + patches;
    const c = ink(this.root);
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = c.bg;
    ctx.fillRect(0, 0, this.picture.width, this.picture.height);
    ctx.globalAlpha = kind === "heatmap" ? 1 : 0.45;
    ctx.drawImage(this.picture.bitmap, 0, 0);
    ctx.globalAlpha = 1;
    const px = 1 / scale;
    if (kind === "heatmap") {
      if (weights) ctx.drawImage(this.heatmap(rect), 0, 0);
      if (isPatch(focus.position)) {
        ctx.strokeStyle = hex(focus.isKey ? this.colours.key : this.colours.query);
        ctx.lineWidth = 3 * px;
        const [x, y, w, h] = rect(focus.position);
        ctx.strokeRect(x + 1.5 * px, y + 1.5 * px, w - 3 * px, h - 3 * px);
      }
      return;
    }
    if (!matrix) return;
    const { n, w } = matrix;
    if (kind === "arrows") {
      const selected = isPatch(focus.position) && !focus.isKey ? focus.position : -1;
      const order = [];
      for (let i = grid.prefix; i < grid.prefix + patches && i < n; i++) if (i !== selected) order.push(i);
      if (selected >= 0 && selected < n) order.push(selected);
      for (const i of order) {
        const [top] = strongest(w, n, i, 1);
        if (!top) continue; // a row without weight has no target
        const best = top.position;
        const [colour, width] = i === selected ? [hex(this.colours.query), 2.2 * px] : [c.fg, 1.4 * px];
        if (!isPatch(best)) markPrefix(ctx, rect(i), px, colour);
        else if (best === i) ring(ctx, centre(i), grid.pw * 0.22, width, colour);
        else arrow(ctx, centre(i), centre(best), px, width, [colour, c.label], Math.min(grid.pw, grid.ph) * 0.3);
      }
      return;
    }
    for (let i = grid.prefix; i < grid.prefix + patches && i < n; i++) {
      for (let j = grid.prefix; j < grid.prefix + patches && j < n; j++) {
        const v = w[i * n + j];
        if (v <= FLOW_MIN) continue;
        ctx.globalAlpha = Math.min(1, v);
        if (i === j) ring(ctx, centre(i), grid.pw * 0.22, px * (0.5 + 4 * v), c.flow);
        else line(ctx, centre(i), centre(j), px * (0.5 + 4 * v), c.flow);
      }
    }
    ctx.globalAlpha = 1;
  }

  // The overlay at the picture's own resolution (whole pixels: no seams between patches once scaled).
  heatmap(rect) {
    const { grid, weights, picture } = this;
    const patches = grid.rows * grid.cols;
    const overlay = document.createElement("canvas");
    [overlay.width, overlay.height] = [picture.width, picture.height];
    const ctx = overlay.getContext("2d");
    let max = 0;
    for (let p = grid.prefix; p < grid.prefix + patches; p++) max = Math.max(max, weights[p]);
    ctx.fillStyle = hex(HEAT);
    for (let p = grid.prefix; p < grid.prefix + patches && max > 0; p++) {
      ctx.globalAlpha = (HEAT_ALPHA * weights[p]) / max;
      ctx.fillRect(...rect(p));
    }
    return overlay;
  }

  // The head's aggregate pattern (aggregate/L<l>H<h>.json, kind "patch-offset"): mean weight per (Δrow, Δcol)
  // from a query patch to a key patch, the centre cell being the patch itself; opacity = mean ÷ the largest mean.
  showAggregate(aggregate) {
    if (aggregate.kind !== "patch-offset") return;
    this.aggregateData = aggregate;
    const c = ink(this.root);
    const mean = aggregate.mean;
    const [rows, cols] = [mean.length, mean[0] ? mean[0].length : 0];
    const cell = Math.max(4, Math.floor(AGGREGATE / Math.max(rows, cols, 1)));
    const canvas = el("canvas", { class: "atlas-aggregate-map", width: cols * cell, height: rows * cell });
    const ctx = canvas.getContext("2d");
    const peak = Math.max(...mean.flat(), 1e-9);
    ctx.fillStyle = c.bg;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = hex(HEAT);
    mean.forEach((row, r) => row.forEach((m, c) => {
      ctx.globalAlpha = m / peak;
      ctx.fillRect(c * cell, r * cell, cell, cell);
    }));
    ctx.globalAlpha = 1;
    ctx.strokeStyle = c.fg;
    ctx.strokeRect(((cols - 1) / 2) * cell + 0.5, ((rows - 1) / 2) * cell + 0.5, cell - 1, cell - 1);
    const prefix = Number(aggregate.prefix_mean || 0).toFixed(3);
    const caption = `Head pattern: mean attention by patch offset (key − query; centre = the patch itself). ` +
      `Patches give ${prefix} of their attention to CLS/register tokens on average.`;
    canvas.dataset.peak = String(peak);
    this.aggregate.replaceChildren(canvas, el("figcaption", { text: caption }));
    this.aggregate.hidden = false;
  }

  // Token position of the patch under the mouse, or null.
  patchAt(canvas, event) {
    if (!this.picture) return null;
    const r = canvas.getBoundingClientRect();
    const k = this.picture.width / r.width;
    const col = Math.floor(((event.clientX - r.left) * k) / this.grid.pw);
    const row = Math.floor(((event.clientY - r.top) * k) / this.grid.ph);
    if (row < 0 || col < 0 || row >= this.grid.rows || col >= this.grid.cols) return null;
    return this.grid.prefix + row * this.grid.cols + col;
  }

  describe(p) {
    if (p === null || p === undefined) {
      this.status.textContent = "";
      return;
    }
    const weight = this.weights ? ` · weight ${this.weights[p].toFixed(3)}` : "";
    this.status.textContent = `${this.tokens[p] ?? `position ${p}`}${weight} · click to select this patch`;
  }

  destroy() {
    this.disposer.dispose();
    this.root.remove();
  }
}

function line(ctx, [x1, y1], [x2, y2], width, colour) {
  ctx.strokeStyle = colour;
  ctx.lineWidth = width;
  ctx.beginPath();
  ctx.moveTo(x1, y1);
  ctx.lineTo(x2, y2);
  ctx.stroke();
}

function ring(ctx, [x, y], radius, width, colour) {
  ctx.strokeStyle = colour;
  ctx.lineWidth = width;
  ctx.beginPath();
  ctx.arc(x, y, radius, 0, 2 * Math.PI);
  ctx.stroke();
}

function markPrefix(ctx, [x, y, w, h], px, colour) {
  ctx.fillStyle = colour;
  ctx.fillRect(x + w / 2 - 1.5 * px, y + h / 2 - 1.5 * px, 3 * px, 3 * px);
}

// colours: [the arrow's, its halo's].
function arrow(ctx, from, to, px, width, [colour, halo], head) {
  const [x1, y1] = from;
  const [x2, y2] = to;
  const a = Math.atan2(y2 - y1, x2 - x1);
  const len = Math.min(head, 8 * px);
  for (const [c, w] of [[halo, width + 1.6 * px], [colour, width]]) {
    line(ctx, from, to, w, c);
    ctx.fillStyle = c;
    ctx.beginPath();
    ctx.moveTo(x2, y2);
    ctx.lineTo(x2 - len * Math.cos(a - 0.45), y2 - len * Math.sin(a - 0.45));
    ctx.lineTo(x2 - len * Math.cos(a + 0.45), y2 - len * Math.sin(a + 0.45));
    ctx.closePath();
    ctx.fill();
  }
}
