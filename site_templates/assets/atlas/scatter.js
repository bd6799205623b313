// A Canvas2D point renderer: points are stamped into an ImageData (exact colours, no WebGL context to run out of),
// overlays (lines, rings, labels) are drawn with the 2D context on top. 2D pan/zoom and 3D orbit.

import { Disposer } from "./dom.js";

const PAD = 16;

function discOffsets(radius) {
  const r = Math.max(0.5, radius);
  const R = Math.ceil(r);
  const out = [];
  for (let dy = -R; dy <= R; dy++) for (let dx = -R; dx <= R; dx++) if (dx * dx + dy * dy <= r * r + 0.25) out.push(dx, dy);
  return Int32Array.from(out);
}

const discs = new Map();

function disc(radius) {
  const key = Math.round(radius * 4) / 4;
  if (!discs.has(key)) discs.set(key, discOffsets(key));
  return discs.get(key);
}

// Stamps discs of points into an ImageData: sx/sy in CSS pixels, order = rows to draw (last on top),
// rgb packed per row, alpha per row (null = opaque; ≤ 0 = skipped), radius a number or per row, in CSS pixels.
export function rasterize(image, bg, points, dpr) {
  const W = image.width;
  const H = image.height;
  const px = new Uint32Array(image.data.buffer);
  px.fill((255 << 24) | (bg[2] << 16) | (bg[1] << 8) | bg[0]);
  if (!points) return;
  const { sx, sy, order, rgb, alpha, radius } = points;
  const fixed = typeof radius === "number" ? disc(radius * dpr) : null;
  for (const i of order) {
    const a = alpha ? alpha[i] : 1;
    if (a <= 0) continue;
    const offs = fixed || disc(radius[i] * dpr);
    const cx = Math.round(sx[i] * dpr);
    const cy = Math.round(sy[i] * dpr);
    const [r, g, b] = [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]];
    const packed = (255 << 24) | (b << 16) | (g << 8) | r;
    for (let o = 0; o < offs.length; o += 2) {
      const x = cx + offs[o];
      const y = cy + offs[o + 1];
      if (x < 0 || y < 0 || x >= W || y >= H) continue;
      const at = y * W + x;
      if (a >= 1) {
        px[at] = packed;
      } else {
        const d = px[at];
        const mix = (c, s) => Math.round(c * a + s * (1 - a));
        px[at] = (255 << 24) | (mix(b, (d >> 16) & 255) << 16) | (mix(g, (d >> 8) & 255) << 8) | mix(r, d & 255);
      }
    }
  }
}

export function parseColour(css) {
  const m = /rgba?\(\s*(\d+)[ ,]+(\d+)[ ,]+(\d+)(?:[ ,/]+([\d.]+))?/.exec(css || "");
  if (!m || (m[4] !== undefined && Number(m[4]) === 0)) return [255, 255, 255];
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

// Fit-to-box projection without interaction (matrix cells): 2D as is, 3D seen from a fixed angle.
export function fitProject(axes, w, h, pad = 4, yaw = 0.6, pitch = 0.35) {
  const n = axes[0].length;
  const sx = new Float32Array(n);
  const sy = new Float32Array(n);
  const [cy, sy0, cp, sp] = [Math.cos(yaw), Math.sin(yaw), Math.cos(pitch), Math.sin(pitch)];
  const flat = axes.length < 3 ? null : new Float32Array(2 * n);
  if (flat) {
    for (let i = 0; i < n; i++) {
      const [x, y, z] = [axes[0][i], axes[1][i], axes[2][i]];
      flat[i] = cy * x + sy0 * z;
      flat[n + i] = cp * y - sp * (-sy0 * x + cy * z);
    }
  }
  const X = flat ? flat.subarray(0, n) : axes[0];
  const Y = flat ? flat.subarray(n) : axes[1];
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < n; i++) {
    [x0, x1, y0, y1] = [Math.min(x0, X[i]), Math.max(x1, X[i]), Math.min(y0, Y[i]), Math.max(y1, Y[i])];
  }
  const k = Math.min((w - 2 * pad) / Math.max(x1 - x0, 1e-9), (h - 2 * pad) / Math.max(y1 - y0, 1e-9));
  for (let i = 0; i < n; i++) {
    sx[i] = w / 2 + (X[i] - (x0 + x1) / 2) * k;
    sy[i] = h / 2 - (Y[i] - (y0 + y1) / 2) * k;
  }
  return { sx, sy };
}

export class Scatter {
  constructor(container, { onHover = () => {}, onClick = () => {}, onView = () => {} } = {}) {
    this.container = container;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "atlas-canvas";
    container.append(this.canvas);
    this.ctx = this.canvas.getContext("2d");
    this.handlers = { onHover, onClick, onView };
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
      for (const v of a) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
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

  drawOrder() {
    const order = this.style.order || Int32Array.from({ length: this.n }, (_, i) => i);
    if (!this.is3d) return order;
    const rank = this.style.rank;
    return Int32Array.from(order).sort((a, b) => (rank ? rank[a] - rank[b] : 0) || this.depth[a] - this.depth[b]);
  }

  draw() {
    if (!this.canvas.width) return;
    const { ctx, dpr } = this;
    this.bg = parseColour(getComputedStyle(this.container).backgroundColor);
    const image = ctx.createImageData(this.canvas.width, this.canvas.height);
    if (this.coords && this.n) this.projectAll();
    rasterize(image, this.bg, this.n ? { ...this.style, sx: this.sx, sy: this.sy, order: this.drawOrder() } : null, dpr);
    ctx.putImageData(image, 0, 0);
    if (this.overlay && this.coords) {
      ctx.save();
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      this.overlay(ctx, (i) => [this.sx[i], this.sy[i]]);
      ctx.restore();
    }
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
