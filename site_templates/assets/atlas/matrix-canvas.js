// The matrix view's one shared canvas: a viewport-sized canvas stuck over the grid of cells. Each drawn head is
// rasterized once into an offscreen bitmap of its cell's size (redone when the picture or the cell size changes),
// then every frame the bitmaps of the cells in view are copied to where their cells are. Cells without points
// stay transparent, so their thumbnails show through. Hovering a point shows a tooltip and rings the same point in
// every drawn head. Pointer events go to the cells underneath (links to the heads), never to the canvas.

import { Disposer, el } from "./dom.js";
import { fitProject, parseColour, rasterize } from "./raster.js";
import { ink } from "./theme.js";

const DIM = 0.12;
const PICK = 5;
const RING = 4.5;

export class MatrixCanvas {
  // hooks: cellAt(target) → cell | null, onHover(cell | null), describe(row) → {text, kind, …}, href(cell, pointId).
  constructor(stage, grid, hooks) {
    Object.assign(this, { stage, grid, hooks });
    this.disposer = new Disposer();
    this.canvas = el("canvas", { class: "atlas-matrix-canvas", "aria-hidden": "true" });
    this.tooltip = el("div", { class: "atlas-tooltip atlas-matrix-tooltip", hidden: true, role: "tooltip" });
    stage.append(this.canvas, grid, this.tooltip);
    this.ctx = this.canvas.getContext("2d");
    this.rendered = new Map();
    this.picture = null;
    this.hover = null;
    this.frame = 0;
    this.after = [];
    const d = this.disposer;
    const redraw = () => this.schedule();
    d.on(window, "scroll", redraw, { passive: true });
    d.on(window, "resize", redraw);
    d.on(grid, "scroll", redraw, { passive: true });
    d.on(grid, "pointermove", (e) => this.pointer(e));
    d.on(grid, "pointerleave", () => this.setHover(null));
    const ro = new ResizeObserver(redraw);
    ro.observe(grid);
    d.add(() => ro.disconnect());
  }

  // picture: {key, highlight (per point 0/1, or null), draw(cell) → {axes, rgb} | null}.
  setPicture(picture) {
    this.picture = picture;
    this.schedule();
  }

  invalidate(cell) {
    this.rendered.delete(cell);
    this.schedule();
  }

  // Whether the cell shows points (for the current picture) rather than its thumbnail.
  drawn(cell) {
    const r = this.rendered.get(cell);
    return !!(r && r.bitmap && this.picture && r.key === this.picture.key);
  }

  schedule(after = null) {
    if (after) this.after.push(after);
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
      for (const fn of this.after.splice(0)) fn();
    });
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, this.stage.clientWidth);
    const h = Math.max(1, window.innerHeight);
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      [this.canvas.width, this.canvas.height] = [Math.round(w * dpr), Math.round(h * dpr)];
      this.canvas.style.width = `${w}px`;
      this.canvas.style.height = `${h}px`;
      this.canvas.style.marginBottom = `-${h}px`;
    }
    return dpr;
  }

  // The cell's bitmap for the current picture and cell size (rendered on first need), or null.
  bitmap(cell, w, h, dpr) {
    const picture = this.picture;
    let r = this.rendered.get(cell);
    if (r && r.key === picture.key && r.w === w && r.h === h && r.dpr === dpr) return r.bitmap;
    const spec = picture.draw(cell);
    r = { key: picture.key, w, h, dpr, bitmap: null };
    this.rendered.set(cell, r);
    if (!spec) return null;
    const { sx, sy } = fitProject(spec.axes, w, h);
    const hl = picture.highlight;
    const n = sx.length;
    const alpha = hl ? Float32Array.from(hl, (v) => (v ? 1 : DIM)) : null;
    const order = Int32Array.from({ length: n }, (_, i) => i);
    if (hl) order.sort((a, b) => hl[a] - hl[b]);
    const bitmap = document.createElement("canvas");
    [bitmap.width, bitmap.height] = [Math.round(w * dpr), Math.round(h * dpr)];
    const bctx = bitmap.getContext("2d");
    const image = bctx.createImageData(bitmap.width, bitmap.height);
    const bg = parseColour(getComputedStyle(cell.plot).backgroundColor);
    rasterize(image, bg, { sx, sy, order, rgb: spec.rgb, alpha, radius: (n < 4000 ? 1.5 : 1) + (hl ? 0.5 : 0) }, dpr);
    bctx.putImageData(image, 0, 0);
    Object.assign(r, { bitmap, sx, sy });
    cell.link.dataset.drawn = "true";
    return bitmap;
  }

  draw() {
    if (!this.picture) return;
    const dpr = this.resize();
    const { ctx, canvas } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const origin = canvas.getBoundingClientRect();
    const clip = this.grid.getBoundingClientRect();
    ctx.save();
    ctx.beginPath();
    ctx.rect((clip.left - origin.left) * dpr, (clip.top - origin.top) * dpr, clip.width * dpr, clip.height * dpr);
    ctx.clip();
    this.placed = [];
    for (const cell of this.cellsInView(origin)) {
      const box = cell.plot.getBoundingClientRect();
      const [w, h] = [Math.round(box.width), Math.round(box.height)];
      const bitmap = w > 0 && h > 0 ? this.bitmap(cell, w, h, dpr) : null;
      cell.link.dataset.drawn = String(!!bitmap);
      if (!bitmap) continue;
      const [x, y] = [box.left - origin.left, box.top - origin.top];
      ctx.drawImage(bitmap, Math.round(x * dpr), Math.round(y * dpr));
      this.placed.push({ cell, x, y });
    }
    this.drawHover(dpr);
    ctx.restore();
  }

  cellsInView(origin) {
    const out = [];
    for (const link of this.grid.children) {
      const cell = link.atlasCell;
      if (!cell || link.hidden) continue;
      const box = cell.plot.getBoundingClientRect();
      if (box.bottom >= origin.top && box.top <= origin.bottom && box.right >= origin.left && box.left <= origin.right) out.push(cell);
    }
    return out;
  }

  drawHover(dpr) {
    if (!this.hover) return;
    const { ctx } = this;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.strokeStyle = ink(this.stage).ring;
    ctx.lineWidth = 1.5;
    for (const { cell, x, y } of this.placed) {
      const r = this.rendered.get(cell);
      ctx.beginPath();
      ctx.arc(x + r.sx[this.hover.row], y + r.sy[this.hover.row], RING, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  // Nearest drawn point of the cell under the pointer, within PICK pixels: its row, or -1.
  pick(cell, event) {
    const r = this.rendered.get(cell);
    if (!this.drawn(cell) || !r.sx) return -1;
    const box = cell.plot.getBoundingClientRect();
    const [mx, my] = [event.clientX - box.left, event.clientY - box.top];
    let [best, bestD] = [-1, PICK * PICK];
    const hl = this.picture.highlight;
    for (let i = 0; i < r.sx.length; i++) {
      const d = (r.sx[i] - mx) ** 2 + (r.sy[i] - my) ** 2;
      if (d <= bestD && (!hl || hl[i] || best < 0 || !hl[best])) [best, bestD] = [i, d];
    }
    return best;
  }

  pointer(event) {
    const cell = this.hooks.cellAt(event.target);
    this.hooks.onHover(cell);
    const row = cell ? this.pick(cell, event) : -1;
    this.setHover(row >= 0 ? { cell, row } : null, event);
  }

  setHover(hover, event = null) {
    const before = this.hover;
    if (before && (!hover || before.cell !== hover.cell)) before.cell.link.setAttribute("href", this.hooks.href(before.cell, null));
    this.hover = hover;
    this.stage.dataset.hoverPoint = hover ? String(this.hooks.describe(hover.row).pointId) : "";
    if (!hover) {
      this.tooltip.hidden = true;
      if (before) this.schedule();
      return;
    }
    const info = this.hooks.describe(hover.row);
    hover.cell.link.setAttribute("href", this.hooks.href(hover.cell, info.pointId));
    this.tooltip.replaceChildren(
      el("div", { class: "atlas-tip-token", text: info.text }),
      el("div", { class: "atlas-tip-piece", text: info.piece || "" }),
      el("div", { class: "atlas-tip-kind", text: info.kind }),
      el("div", { class: "atlas-tip-pos", text: `position ${info.position + 1} of ${info.length} · ${info.group}` }),
    );
    this.tooltip.classList.toggle("is-key", info.kind === "key");
    this.tooltip.hidden = false;
    const stage = this.stage.getBoundingClientRect();
    const left = Math.min(event.clientX - stage.left + 12, stage.width - this.tooltip.offsetWidth);
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${event.clientY - stage.top + 12}px`;
    if (!before || before.row !== hover.row) this.schedule();
  }

  // Viewport position of a point of a drawn cell (CSS px), or null; for tests and tools.
  clientPosition(cell, row) {
    const r = this.rendered.get(cell);
    if (!this.drawn(cell)) return null;
    const box = cell.plot.getBoundingClientRect();
    return { x: box.left + r.sx[row], y: box.top + r.sy[row] };
  }

  destroy() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.disposer.dispose();
    this.rendered.clear();
    this.canvas.width = 0;
    this.canvas.height = 0;
  }
}
