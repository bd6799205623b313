// Pixel-exact point stamping shared by the head and matrix views: discs (or patch sprites) written straight into
// an ImageData, so colours on screen are exactly the encoding's colours. No WebGL context to run out of.

function discOffsets(radius) {
  const r = Math.max(0.5, radius);
  const R = Math.ceil(r);
  const out = [];
  for (let dy = -R; dy <= R; dy++) for (let dx = -R; dx <= R; dx++) if (dx * dx + dy * dy <= r * r + 0.25) out.push(dx, dy);
  return Int32Array.from(out);
}

const discs = new Map();

// A disc's pixels for rows `width` pixels wide: (dx, dy) pairs, their offsets in the pixel array, and its reach.
function disc(radius, width) {
  const key = Math.round(radius * 4) / 4;
  const id = `${key}/${width}`;
  let d = discs.get(id);
  if (!d) {
    const xy = discOffsets(key);
    const lin = new Int32Array(xy.length / 2);
    let reach = 0;
    for (let o = 0; o < lin.length; o++) {
      lin[o] = xy[2 * o + 1] * width + xy[2 * o];
      reach = Math.max(reach, Math.abs(xy[2 * o]), Math.abs(xy[2 * o + 1]));
    }
    d = { xy, lin, reach };
    if (discs.size > 64) discs.clear();
    discs.set(id, d);
  }
  return d;
}

const pack = (r, g, b) => (255 << 24) | (b << 16) | (g << 8) | r;

function blend(px, at, packed, a) {
  if (a >= 1) {
    px[at] = packed;
    return;
  }
  const d = px[at];
  const r = Math.round((packed & 255) * a + (d & 255) * (1 - a));
  const g = Math.round(((packed >> 8) & 255) * a + ((d >> 8) & 255) * (1 - a));
  const b = Math.round(((packed >> 16) & 255) * a + ((d >> 16) & 255) * (1 - a));
  px[at] = (255 << 24) | (b << 16) | (g << 8) | r;
}

// A square sprite (device pixels, packed RGBA) centred on the point, framed by the point's own colour.
function stampSprite(px, W, H, cx, cy, sprite, index, packed, a) {
  const S = sprite.size;
  const border = sprite.border || 0;
  const x0 = cx - (S >> 1);
  const y0 = cy - (S >> 1);
  const base = index * S * S;
  for (let dy = 0; dy < S; dy++) {
    const y = y0 + dy;
    if (y < 0 || y >= H) continue;
    for (let dx = 0; dx < S; dx++) {
      const x = x0 + dx;
      if (x < 0 || x >= W) continue;
      const edge = dx < border || dy < border || dx >= S - border || dy >= S - border;
      blend(px, y * W + x, edge ? packed : sprite.pixels[base + dy * S + dx], a);
    }
  }
}

// One disc: skipped when off the image, written by linear offsets when wholly inside, clipped pixel by pixel else.
function stampDisc(px, W, H, cx, cy, d, packed, a) {
  const R = d.reach;
  if (cx + R < 0 || cy + R < 0 || cx - R >= W || cy - R >= H) return;
  const lin = d.lin;
  if (cx >= R && cy >= R && cx + R < W && cy + R < H) {
    const at = cy * W + cx;
    if (a >= 1) for (let o = 0; o < lin.length; o++) px[at + lin[o]] = packed;
    else for (let o = 0; o < lin.length; o++) blend(px, at + lin[o], packed, a);
    return;
  }
  const xy = d.xy;
  for (let o = 0; o < xy.length; o += 2) {
    const x = cx + xy[o];
    const y = cy + xy[o + 1];
    if (x >= 0 && y >= 0 && x < W && y < H) blend(px, y * W + x, packed, a);
  }
}

// Stamps points into an ImageData: sx/sy in CSS pixels, order = rows to draw (last on top), rgb packed per row,
// alpha per row (null = opaque; ≤ 0 = skipped), radius a number or per row, in CSS pixels. bg null keeps what
// the ImageData holds. sprite (optional): {size, border, pixels, index} with index[row] ≥ 0 to draw that sprite.
export function rasterize(image, bg, points, dpr) {
  const W = image.width;
  const H = image.height;
  const px = new Uint32Array(image.data.buffer);
  if (bg) px.fill(pack(bg[0], bg[1], bg[2]));
  if (!points) return;
  const { sx, sy, order, rgb, alpha, radius, sprite } = points;
  const fixed = typeof radius === "number" ? disc(radius * dpr, W) : null;
  for (let j = 0; j < order.length; j++) {
    const i = order[j];
    const a = alpha ? alpha[i] : 1;
    if (a <= 0) continue;
    const cx = Math.round(sx[i] * dpr);
    const cy = Math.round(sy[i] * dpr);
    const packed = pack(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
    if (sprite && sprite.index[i] >= 0) stampSprite(px, W, H, cx, cy, sprite, sprite.index[i], packed, a);
    else stampDisc(px, W, H, cx, cy, fixed || disc(radius[i] * dpr, W), packed, a);
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
