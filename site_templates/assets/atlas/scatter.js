// A Canvas2D point renderer: points are stamped into an ImageData (exact colours, no WebGL context to run out of),
// overlays (lines, rings, labels) are drawn with the 2D context on top. 2D pan/zoom and 3D orbit. A head with a
// tile pyramid is drawn from its tiles while zoomed out and many points are in view. The background is the plot's
// CSS background, re-read on every draw (and redrawn when the colour scheme changes).

import { Disposer } from "./dom.js";
import { parseColour, rasterize } from "./raster.js";
import { ink, onSchemeChange } from "./theme.js";

const PAD = 16;
const TILE_MIN_POINTS = 2000;

const DEPTH_STEPS = 65536;

// `order`'s rows by rank (small integers, optional), then ascending depth (the last drawn is on top): a counting
// sort over depth quantised to DEPTH_STEPS steps of its range, linear in the number of points (rows less than a
// step apart in depth keep their order).
function depthOrder(order, depth, rank) {
  let lo = Infinity;
  let hi = -Infinity;
  let ranks = 1;
  for (let j = 0; j < order.length; j++) {
    const d = depth[order[j]];
    if (d < lo) lo = d;
    if (d > hi) hi = d;
    if (rank && rank[order[j]] >= ranks) ranks = rank[order[j]] + 1;
  }
  const scale = (DEPTH_STEPS - 1) / Math.max(hi - lo, 1e-12);
  const key = new Int32Array(order.length);
  const start = new Int32Array(ranks * DEPTH_STEPS + 1);
  for (let j = 0; j < order.length; j++) {
    const i = order[j];
    key[j] = (rank ? rank[i] : 0) * DEPTH_STEPS + Math.floor((depth[i] - lo) * scale);
    start[key[j] + 1]++;
  }
  for (let b = 1; b < start.length; b++) start[b] += start[b - 1];
  const out = new Int32Array(order.length);
  for (let j = 0; j < order.length; j++) out[start[key[j]]++] = order[j];
  return out;
}

export class Scatter {
  constructor(container, { onHover = () => {}, onClick = () => {}, onView = () => {}, onDraw = () => {} } = {}) {
    this.container = container;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "atlas-canvas";
    container.append(this.canvas);
    this.ctx = this.canvas.getContext("2d");
    this.handlers = { onHover, onClick, onView, onDraw };
    this.tiles = null;
    this.mode = "points";
    this.n = 0;
    this.style = { rgb: new Uint8Array(0), alpha: null, radius: 3, order: null };
    this.overlay = null;
    this.yaw = 0.6;
    this.pitch = 0.35;
    this.disposer = new Disposer();
    this.frame = 0;
    this.resize();
    const ro = new ResizeObserver(() => this.resize());
    ro.observe(container);
    this.disposer.add(() => ro.disconnect());
    this.disposer.add(onSchemeChange(() => this.schedule()));
    this.bindPointer();
  }

  resize() {
    const w = Math.max(1, Math.round(this.container.clientWidth));
    const h = Math.max(1, Math.round(this.container.clientHeight));
    const dpr = window.devicePixelRatio || 1;
    if (w === this.w && h === this.h && dpr === this.dpr) return;
    const first = this.w === undefined;
    [this.w, this.h, this.dpr] = [w, h, dpr];
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${h}px`;
    if (!first && this.coords) this.fit();
    this.draw();
  }

  // coords: array of 2 or 3 Float32Arrays (one per axis).
  setPoints(coords) {
    this.coords = coords;
    this.n = coords[0].length;
    this.sx = new Float32Array(this.n);
    this.sy = new Float32Array(this.n);
    this.depth = coords.length > 2 ? new Float32Array(this.n) : null;
    this.centre = coords.map((a) => {
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < a.length; i++) {
        if (a[i] < lo) lo = a[i];
        if (a[i] > hi) hi = a[i];
      }
      return this.n ? [lo, hi] : [0, 1];
    });
    this.fit();
  }

  get is3d() {
    return !!this.depth;
  }

  fit() {
    const spans = this.centre.map(([lo, hi]) => Math.max(hi - lo, 1e-9));
    const w = Math.max(1, this.w - 2 * PAD);
    const h = Math.max(1, this.h - 2 * PAD);
    this.k = this.is3d ? Math.min(w, h) / Math.hypot(...spans) : Math.min(w / spans[0], h / spans[1]);
    this.pan = [0, 0];
    this.schedule();
  }

  setStyle(style) {
    this.style = { ...this.style, ...style };
    this.schedule();
  }

  setOverlay(fn) {
    this.overlay = fn;
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  projectAll() {
    const { coords, n, k } = this;
    const mid = this.centre.map(([lo, hi]) => (lo + hi) / 2);
    const ox = this.w / 2 + this.pan[0];
    const oy = this.h / 2 + this.pan[1];
    if (!this.is3d) {
      for (let i = 0; i < n; i++) {
        this.sx[i] = ox + (coords[0][i] - mid[0]) * k;
        this.sy[i] = oy - (coords[1][i] - mid[1]) * k;
      }
      return;
    }
    const [cy, sy, cp, sp] = [Math.cos(this.yaw), Math.sin(this.yaw), Math.cos(this.pitch), Math.sin(this.pitch)];
    for (let i = 0; i < n; i++) {
      const x = coords[0][i] - mid[0];
      const y = coords[1][i] - mid[1];
      const z = coords[2][i] - mid[2];
      const rx = cy * x + sy * z;
      const rz = -sy * x + cy * z;
      this.sx[i] = ox + rx * k;
      this.sy[i] = oy - (cp * y - sp * rz) * k;
      this.depth[i] = sp * y + cp * rz;
    }
  }

  // The rows in drawing order; in 3D sorted by depth, once per angle (panning and zooming reuse it).
  drawOrder() {
    const order = this.style.order || Int32Array.from({ length: this.n }, (_, i) => i);
    if (!this.is3d) return order;
    const key = [this.yaw, this.pitch, order, this.style.rank, this.depth];
    if (!this.sorted || this.sorted.key.some((v, i) => v !== key[i])) {
      this.sorted = { key, order: depthOrder(order, this.depth, this.style.rank) };
    }
    return this.sorted.order;
  }

  // tiles: a TileLayer for the current layout, or null to always draw points.
  setTiles(tiles) {
    this.tiles = tiles;
    this.schedule();
  }

  // The tile level to draw now, or -1 for points: 2D only, zoomed out enough, and many points in view.
  tileLevel() {
    if (!this.tiles || this.is3d || !this.n) return -1;
    const z = this.tiles.level(this.k * this.dpr);
    if (z < 0) return -1;
    let inView = 0;
    for (let i = 0; i < this.n && inView < TILE_MIN_POINTS; i++) {
      if (this.sx[i] >= 0 && this.sy[i] >= 0 && this.sx[i] <= this.w && this.sy[i] <= this.h) inView++;
    }
    return inView >= TILE_MIN_POINTS ? z : -1;
  }

  view() {
    return {
      w: this.w, h: this.h, dpr: this.dpr, k: this.k, ox: this.w / 2 + this.pan[0], oy: this.h / 2 + this.pan[1],
      mid: this.centre.map(([lo, hi]) => (lo + hi) / 2),
    };
  }

  draw() {
    if (!this.canvas.width) return;
    const { ctx, dpr } = this;
    this.bg = parseColour(getComputedStyle(this.container).backgroundColor);
    if (this.coords && this.n) this.projectAll();
    const z = this.tileLevel();
    this.mode = z >= 0 ? "tiles" : "points";
    if (z >= 0) {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = `rgb(${this.bg.join(",")})`;
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      const highlight = !!this.style.highlight;
      this.tiles.draw(ctx, this.view(), z, highlight ? 0.3 : 1);
      if (highlight) {
        const image = ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
        const alpha = this.style.alpha;
        const order = this.drawOrder().filter((i) => !alpha || alpha[i] >= 1);
        rasterize(image, null, { ...this.style, sx: this.sx, sy: this.sy, order }, dpr);
        ctx.putImageData(image, 0, 0);
      }
    } else {
      const image = this.imageData();
      rasterize(image, this.bg, this.n ? { ...this.style, sx: this.sx, sy: this.sy, order: this.drawOrder() } : null, dpr);
      ctx.putImageData(image, 0, 0);
    }
    if (this.overlay && this.coords) {
      ctx.save();
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      this.overlay(ctx, (i) => [this.sx[i], this.sy[i]], ink(this.container));
      ctx.restore();
    }
    if (this.coords) this.handlers.onDraw(this.mode);
  }

  // The ImageData points are stamped into, kept from frame to frame (allocating 4 bytes a pixel each frame costs).
  imageData() {
    const { width, height } = this.canvas;
    if (!this.image || this.image.width !== width || this.image.height !== height) {
      this.image = this.ctx.createImageData(width, height);
    }
    return this.image;
  }

  // Screen position (CSS pixels, relative to the canvas) of point i as last drawn.
  project(i) {
    this.projectAll();
    return [this.sx[i], this.sy[i]];
  }

  pick(mx, my, slack = 4) {
    const { alpha, radius } = this.style;
    let best = -1;
    let bestD = Infinity;
    for (let i = 0; i < this.n; i++) {
      if (alpha && alpha[i] <= 0) continue;
      const r = (typeof radius === "number" ? radius : radius[i]) + slack;
      const d = (this.sx[i] - mx) ** 2 + (this.sy[i] - my) ** 2;
      if (d <= r * r && d <= bestD) {
        best = i;
        bestD = d;
      }
    }
    return best;
  }

  local(event) {
    const rect = this.canvas.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  bindPointer() {
    const c = this.canvas;
    const on = (type, fn, opts) => this.disposer.on(c, type, fn, opts);
    let drag = null;
    on("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, moved: false, rotate: this.is3d && !e.shiftKey };
      c.setPointerCapture(e.pointerId);
    });
    on("pointermove", (e) => {
      if (!drag) {
        const [mx, my] = this.local(e);
        this.handlers.onHover(this.pick(mx, my), mx, my);
        return;
      }
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 3) return;
      drag.moved = true;
      [drag.x, drag.y] = [e.clientX, e.clientY];
      if (drag.rotate) {
        this.yaw += dx * 0.01;
        this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch + dy * 0.01));
      } else {
        this.pan = [this.pan[0] + dx, this.pan[1] + dy];
      }
      this.handlers.onHover(-1);
      this.schedule();
    });
    on("pointerup", (e) => {
      if (drag && !drag.moved) {
        const [mx, my] = this.local(e);
        this.handlers.onClick(this.pick(mx, my));
      }
      if (drag && drag.moved) this.handlers.onView();
      drag = null;
    });
    on("pointercancel", () => (drag = null));
    on("pointerleave", () => {
      if (!drag) this.handlers.onHover(-1);
    });
    on("dblclick", () => this.fit());
    on(
      "wheel",
      (e) => {
        e.preventDefault();
        const [mx, my] = this.local(e);
        const f = Math.exp(-Math.max(-200, Math.min(200, e.deltaY)) * 0.002);
        const cx = this.w / 2 + this.pan[0];
        const cy = this.h / 2 + this.pan[1];
        this.k *= f;
        this.pan = [mx - f * (mx - cx) - this.w / 2, my - f * (my - cy) - this.h / 2];
        this.handlers.onHover(-1);
        this.schedule();
      },
      { passive: false },
    );
  }

  toBlob() {
    this.draw();
    return new Promise((resolve) => this.canvas.toBlob(resolve, "image/png"));
  }

  destroy() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.disposer.dispose();
    this.canvas.width = 0;
    this.canvas.height = 0;
    this.canvas.remove();
  }
}

// Rows by ascending rank (0-2), in row order within a rank: a counting sort, linear in the number of points.
export function rankOrder(rank) {
  const start = new Int32Array(4);
  for (let i = 0; i < rank.length; i++) start[rank[i] + 1]++;
  for (let r = 1; r < 4; r++) start[r] += start[r - 1];
  const order = new Int32Array(rank.length);
  for (let i = 0; i < rank.length; i++) order[start[rank[i]]++] = i;
  return order;
}
