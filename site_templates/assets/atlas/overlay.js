// Overlays on a scatter: attention lines, rings and token labels placed greedily so they never overlap,
// plus the SVG export of what is on screen. Labels are canvas text or SVG text nodes: never markup.

import { svg } from "./dom.js";
import { ink } from "./theme.js";

export function drawLines(ctx, project, lines, colour) {
  ctx.lineWidth = 1.5;
  for (const { from, to, weight } of lines) {
    const [x1, y1] = project(from);
    const [x2, y2] = project(to);
    ctx.strokeStyle = colour;
    ctx.globalAlpha = Math.max(0.05, Math.min(1, weight));
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x2, y2);
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
}

export function drawRings(ctx, project, rows, radius, colour, width = 1.5) {
  ctx.strokeStyle = colour;
  ctx.lineWidth = width;
  for (const i of rows) {
    const [x, y] = project(i);
    ctx.beginPath();
    ctx.arc(x, y, radius, 0, Math.PI * 2);
    ctx.stroke();
  }
}

const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

// labels: [{row, text}] in priority order; c: the scheme's ink (theme.js). Returns the boxes placed (for tests and
// the SVG export).
export function placeLabels(ctx, project, labels, bounds, c, limit = 250) {
  ctx.font = "11px system-ui, sans-serif";
  const placed = [];
  for (const { row, text } of labels.slice(0, limit * 4)) {
    if (placed.length >= limit) break;
    const [x, y] = project(row);
    const w = ctx.measureText(text).width + 4;
    const h = 14;
    const candidates = [
      { x: x + 5, y: y - h - 2 },
      { x: x + 5, y: y + 2 },
      { x: x - w - 5, y: y - h - 2 },
      { x: x - w - 5, y: y + 2 },
    ];
    const spot = candidates
      .map((c) => ({ ...c, w, h }))
      .find((b) => b.x >= 0 && b.y >= 0 && b.x + w <= bounds[0] && b.y + h <= bounds[1] && !placed.some((p) => overlaps(p, b)));
    if (spot) placed.push({ ...spot, text });
  }
  for (const b of placed) {
    ctx.fillStyle = c.label;
    ctx.fillRect(b.x, b.y, b.w, b.h);
    ctx.fillStyle = c.fg;
    ctx.fillText(b.text, b.x + 2, b.y + 11);
  }
  return placed;
}

// The current view as SVG: one circle per drawn point (draw order), then lines and labels.
export function viewToSvg(scatter, { lines = [], labels = [] } = {}) {
  const [w, h] = [scatter.w, scatter.h];
  const c = ink(scatter.container);
  const root = svg("svg", { xmlns: "http://www.w3.org/2000/svg", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  root.append(svg("rect", { width: w, height: h, fill: `rgb(${scatter.bg.join(",")})` }));
  scatter.projectAll();
  const { rgb, alpha, radius } = scatter.style;
  for (const i of scatter.drawOrder()) {
    const a = alpha ? alpha[i] : 1;
    if (a <= 0) continue;
    const [x, y] = [scatter.sx[i], scatter.sy[i]];
    if (x < -10 || y < -10 || x > w + 10 || y > h + 10) continue;
    const c = svg("circle", {
      cx: x.toFixed(1), cy: y.toFixed(1), r: typeof radius === "number" ? radius : radius[i].toFixed(2),
      fill: `rgb(${rgb[3 * i]},${rgb[3 * i + 1]},${rgb[3 * i + 2]})`,
    });
    if (a < 1) c.setAttribute("fill-opacity", a.toFixed(2));
    root.append(c);
  }
  for (const { from, to, weight } of lines) {
    root.append(svg("line", {
      x1: scatter.sx[from], y1: scatter.sy[from], x2: scatter.sx[to], y2: scatter.sy[to],
      stroke: c.attn, "stroke-opacity": Math.max(0.05, Math.min(1, weight)).toFixed(3), "stroke-width": 1.5,
    }));
  }
  for (const b of labels) {
    const t = svg("text", { x: b.x + 2, y: b.y + 11, "font-size": 11, "font-family": "sans-serif", fill: c.fg });
    t.textContent = b.text;
    root.append(t);
  }
  return new XMLSerializer().serializeToString(root);
}

// The single-head view's overlay: attention lines, rings on search hits and on the selected point, and labels for the
// hits and the selected sentence's queries (an image model: the selected patch only); returns the placed labels.
// overlay: {hits, selRow, selSentence, lines}; a: the points' attributes (n, text, sentence, isKey).
export function drawSelection(ctx, project, overlay, a, isImage, size, c) {
  const { hits, selRow, selSentence, lines } = overlay;
  drawLines(ctx, project, lines, c.attn);
  const labels = [];
  if (hits) {
    const rows = [];
    for (let i = 0; i < a.n; i++) if (hits[i]) rows.push(i);
    drawRings(ctx, project, rows, 6, c.fg);
    rows.forEach((row) => labels.push({ row, text: a.text[row] }));
  }
  if (selRow >= 0) {
    drawRings(ctx, project, [selRow], 8, c.ring, 2.5);
    if (isImage) labels.unshift({ row: selRow, text: a.text[selRow] });
    else for (let i = 0; i < a.n; i++) if (a.sentence[i] === selSentence && !a.isKey[i]) labels.push({ row: i, text: a.text[i] });
  }
  return placeLabels(ctx, project, labels, size, c);
}
