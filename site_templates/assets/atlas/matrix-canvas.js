// The matrix view's one shared canvas: a viewport-sized canvas stuck over the grid of cells. Each drawn head is
// rasterized once into an offscreen bitmap of its cell's size (redone when the picture or the cell size changes),
// then every frame the bitmaps of the cells in view are copied to where their cells are. Cells without points
// stay transparent, so their thumbnails show through. Hovering a point shows a tooltip and rings the same point in
// every drawn head. Pointer events go to the cells underneath (links to the heads), never to the canvas.
// 3D heads share one view angle (yaw, pitch): dragging on a drawn 3D cell turns every 3D head together, as the
// global view of AttentionViz does; a drag never follows the cell's link.

import { Disposer, el } from "./dom.js";
import { fitProject, parseColour, rasterize } from "./raster.js";
import { ink } from "./theme.js";

const DIM = 0.12;
const PICK = 5;
const RING = 4.5;
const TURN = 0.01; // radians per CSS pixel dragged, as in the head view
const PITCH = 1.5;
const DEPTH_BUCKETS = 256;

// A 3D head seen at (yaw, pitch), the head view's rotation: centred on its bounding box and scaled by the box's
// diagonal, so turning never rescales it. sx, sy in CSS px of a w × h box; depth grows towards the reader.
export function orbitProject(axes, w, h, yaw, pitch, pad = 4) {
  const n = axes[0].length;
  const mid = [0, 0, 0];
  const span = [0, 0, 0];
  for (let a = 0; a < 3; a++) {
    let [lo, hi] = [Infinity, -Infinity];
    for (const v of axes[a]) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    [mid[a], span[a]] = n ? [(lo + hi) / 2, hi - lo] : [0, 0];
  }
  const k = Math.max(1, Math.min(w, h) - 2 * pad) / Math.max(Math.hypot(...span), 1e-9);
  const [cy, sy0, cp, sp] = [Math.cos(yaw), Math.sin(yaw), Math.cos(pitch), Math.sin(pitch)];
  const sx = new Float32Array(n);
  const sy = new Float32Array(n);
  const depth = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const [x, y, z] = [axes[0][i] - mid[0], axes[1][i] - mid[1], axes[2][i] - mid[2]];
    const [rx, rz] = [cy * x + sy0 * z, -sy0 * x + cy * z];
    sx[i] = w / 2 + rx * k;
    sy[i] = h / 2 - (cp * y - sp * rz) * k;
    depth[i] = sp * y + cp * rz;
  }
  return { sx, sy, depth };
}

// Rows in drawing order (last on top): highlighted rows after the others, and far points before near ones.
// A counting sort over depth buckets: linear in the points, so every frame of a drag can afford it.
function drawOrder(n, hl, depth) {
  if (!hl && !depth) return Int32Array.from({ length: n }, (_, i) => i);
  let [lo, hi] = [Infinity, -Infinity];
  if (depth) for (const v of depth) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  const scale = depth && hi > lo ? (DEPTH_BUCKETS - 1) / (hi - lo) : 0;
  const key = new Int32Array(n);
  for (let i = 0; i < n; i++) key[i] = (hl && hl[i] ? DEPTH_BUCKETS : 0) + (depth ? Math.floor((depth[i] - lo) * scale) : 0);
  const start = new Int32Array(2 * DEPTH_BUCKETS + 1);
  for (let i = 0; i < n; i++) start[key[i] + 1]++;
  for (let b = 1; b < start.length; b++) start[b] += start[b - 1];
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[start[key[i]]++] = i;
  return order;
}

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
    this.yaw = 0.6;
    this.pitch = 0.35;
    this.drag = null;
    const d = this.disposer;
    const redraw = () => this.schedule();
    d.on(window, "scroll", redraw, { passive: true });
    d.on(window, "resize", redraw);
    d.on(grid, "scroll", redraw, { passive: true });
    d.on(grid, "pointerdown", (e) => this.press(e));
    d.on(grid, "pointermove", (e) => (this.drag ? this.turn(e) : this.pointer(e)));
    d.on(grid, "pointerup", (e) => this.release(e));
    d.on(grid, "pointercancel", (e) => this.release(e));
    d.on(grid, "pointerleave", () => this.drag || this.setHover(null));
    d.on(grid, "dragstart", (e) => this.rotatable() && e.preventDefault());
    // The click that ends a drag must not open the head under the pointer.
    d.on(grid, "click", (e) => {
      if (!this.dragged) return;
      this.dragged = false;
      e.preventDefault();
      e.stopPropagation();
    }, true);
    const ro = new ResizeObserver(redraw);
    ro.observe(grid);
    d.add(() => ro.disconnect());
  }

  // picture: {key, highlight (per point 0/1, or null), rotatable (3D layout), draw(cell) → {axes, rgb} | null}.
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

  // The shared view angle of the 3D heads.
  angle() {
    return { yaw: this.yaw, pitch: this.pitch };
  }

  // The cell's bitmap for the current picture, cell size and (3D) angle (rendered on first need), or null.
  bitmap(cell, w, h, dpr) {
    const picture = this.picture;
    const angle = `${this.yaw},${this.pitch}`;
    let r = this.rendered.get(cell);
    if (r && r.key === picture.key && r.w === w && r.h === h && r.dpr === dpr && (!r.turns || r.angle === angle)) return r.bitmap;
    const old = r && r.bitmap && r.w === w && r.h === h && r.dpr === dpr ? r.bitmap : null;
    const spec = picture.draw(cell);
    r = { key: picture.key, w, h, dpr, angle, bitmap: null };
    this.rendered.set(cell, r);
    if (!spec) return null;
    r.turns = spec.axes.length > 2;
    const { sx, sy, depth } = r.turns ? orbitProject(spec.axes, w, h, this.yaw, this.pitch) : fitProject(spec.axes, w, h);
    const hl = picture.highlight;
    const n = sx.length;
    const alpha = hl ? Float32Array.from(hl, (v) => (v ? 1 : DIM)) : null;
    const order = drawOrder(n, hl, depth || null);
    const bitmap = old || document.createElement("canvas");
    if (!old) [bitmap.width, bitmap.height] = [Math.round(w * dpr), Math.round(h * dpr)];
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

  rotatable() {
    return !!(this.picture && this.picture.rotatable);
  }

  // A press on a drawn 3D cell may start turning every 3D head (once the pointer has moved a few pixels).
  press(event) {
    this.dragged = false;
    if (event.button !== 0 || !this.rotatable()) return;
    const cell = this.hooks.cellAt(event.target);
    if (!cell || !this.drawn(cell)) return;
    event.preventDefault();
    this.drag = { x: event.clientX, y: event.clientY, moved: false, id: event.pointerId };
  }

  turn(event) {
    const drag = this.drag;
    const [dx, dy] = [event.clientX - drag.x, event.clientY - drag.y];
    if (!drag.moved && Math.hypot(dx, dy) < 3) return;
    if (!drag.moved) {
      drag.moved = true;
      this.grid.setPointerCapture(drag.id);
      this.setHover(null);
    }
    [drag.x, drag.y] = [event.clientX, event.clientY];
    this.yaw += dx * TURN;
    this.pitch = Math.max(-PITCH, Math.min(PITCH, this.pitch + dy * TURN));
    this.stage.dataset.angle = `${this.yaw.toFixed(3)},${this.pitch.toFixed(3)}`;
    this.schedule();
  }

  release(event) {
    const drag = this.drag;
    if (!drag) return;
    this.drag = null;
    if (!drag.moved) return;
    this.dragged = true;
    setTimeout(() => (this.dragged = false), 0); // the click of this release comes before
    if (this.grid.hasPointerCapture(drag.id)) this.grid.releasePointerCapture(drag.id);
    this.pointer(event, document.elementFromPoint(event.clientX, event.clientY));
  }

  pointer(event, target = event.target) {
    const cell = this.hooks.cellAt(target);
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
