// The model view of an image model: a picker (the picture the model saw; click a patch to select it) and, in every
// head's cell, the picture with the selected patch's attention over the patches as the image view draws it
// (opacity = weight ÷ the row's strongest patch weight). CLS/register tokens are chips in the token strip.

import { hex } from "./colours.js";
import { el } from "./dom.js";
import { HEAT, HEAT_ALPHA } from "./image-view.js";
import { imageInfo, loadPicture, patchGrid } from "./images.js";

const PICKER = 224;

export class ImageCells {
  constructor(view, model) {
    this.view = view;
    this.model = model;
    this.grid = patchGrid(model);
    this.info = imageInfo(model, view.inputId);
  }

  async load() {
    this.picture = await loadPicture(this.model, this.view.inputId);
  }

  defaultFocus() {
    const { rows, cols, prefix } = this.grid;
    return prefix + Math.floor(rows / 2) * cols + Math.floor(cols / 2);
  }

  mount() {
    this.canvas = el("canvas", { class: "atlas-mv-picker", "aria-label": "choose a patch" });
    this.canvas.addEventListener("click", (e) => {
      const p = this.patchAt(e);
      if (p !== null) this.view.focusOn(p);
    });
    const name = this.info ? this.info.name : String(this.view.inputId);
    const credit = this.info ? [this.info.license, this.info.attribution].filter(Boolean).join(" · ") : "";
    return el("figure", { class: "atlas-mv-picture" }, [this.canvas,
      el("figcaption", { text: `${name}: click a patch to see its attention in every head${credit ? ` (${credit})` : ""}` })]);
  }

  patchAt(event) {
    const r = this.canvas.getBoundingClientRect();
    const k = this.picture.width / r.width;
    const col = Math.floor(((event.clientX - r.left) * k) / this.grid.pw);
    const row = Math.floor(((event.clientY - r.top) * k) / this.grid.ph);
    if (row < 0 || col < 0 || row >= this.grid.rows || col >= this.grid.cols) return null;
    return this.grid.prefix + row * this.grid.cols + col;
  }

  // Patch rectangle of a token position in picture pixels, or null for CLS/register tokens.
  rect(p) {
    const { prefix, rows, cols, pw, ph } = this.grid;
    const q = p - prefix;
    if (q < 0 || q >= rows * cols) return null;
    return [(q % cols) * pw, Math.floor(q / cols) * ph, pw, ph];
  }

  // A canvas sized `size` CSS pixels on its longer side, its context scaled to picture pixels.
  prepare(canvas, size) {
    const { width, height } = this.picture;
    const dpr = window.devicePixelRatio || 1;
    const scale = size / Math.max(width, height);
    [canvas.width, canvas.height] = [Math.round(width * scale * dpr), Math.round(height * scale * dpr)];
    canvas.style.width = `${Math.round(width * scale)}px`;
    canvas.style.height = `${Math.round(height * scale)}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(scale * dpr, 0, 0, scale * dpr, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(this.picture.bitmap, 0, 0);
    return { ctx, px: 1 / scale };
  }

  outline(ctx, px) {
    const r = this.rect(this.view.state.focus);
    if (!r) return;
    ctx.strokeStyle = hex(this.view.palette.query);
    ctx.lineWidth = 2 * px;
    ctx.strokeRect(r[0] + px, r[1] + px, r[2] - 2 * px, r[3] - 2 * px);
  }

  drawPicker() {
    const { ctx, px } = this.prepare(this.canvas, PICKER);
    this.outline(ctx, px);
  }

  // w: the focus token's weights over every position (hidden ones 0).
  drawCell({ canvas }, w) {
    const { ctx, px } = this.prepare(canvas, this.view.cellSize);
    let max = 0;
    for (let p = 0; p < w.length; p++) if (this.rect(p)) max = Math.max(max, w[p]);
    ctx.fillStyle = hex(HEAT);
    for (let p = 0; p < w.length && max > 0; p++) {
      const r = this.rect(p);
      if (!r || !w[p]) continue;
      ctx.globalAlpha = (HEAT_ALPHA * w[p]) / max;
      ctx.fillRect(...r);
    }
    ctx.globalAlpha = 1;
    this.outline(ctx, px);
    canvas.dataset.peak = String(max);
  }

  destroy() {}
}
