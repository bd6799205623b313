// Tile pyramids of large heads (docs/reference/formats.md: `tiles[layout]`): PNG tiles at <dir>/<z>/<x>/<y>.png,
// tile (z, x, y) covering 1/2^z of the square extent, y counted from the top. Empty tiles are not written, so a
// missing tile is simply empty. While a tile loads, the nearest loaded ancestor stands in for it.

const MAX_TILES = 256;

export class TileLayer {
  // spec: {dir, levels, tile_size, extent: [xmin, xmax, ymin, ymax]}; base: URL of the model's data directory.
  constructor(spec, base, onChange) {
    this.spec = spec;
    this.base = base;
    this.onChange = onChange;
    this.cache = new Map();
    [this.xmin, this.xmax, this.ymin, this.ymax] = spec.extent;
    this.span = Math.max(this.xmax - this.xmin, this.ymax - this.ymin, 1e-12);
  }

  // The coarsest level with at least one tile pixel per device pixel, or -1 when zoomed in past the finest.
  level(deviceScale) {
    for (let z = 0; z < this.spec.levels; z++) {
      if ((this.spec.tile_size * 2 ** z) / this.span >= deviceScale * 0.95) return z;
    }
    return -1;
  }

  tile(z, x, y) {
    const key = `${z}/${x}/${y}`;
    let t = this.cache.get(key);
    if (t) {
      this.cache.delete(key);
      this.cache.set(key, t);
      return t;
    }
    const img = new Image();
    t = { img, state: "loading" };
    img.decoding = "async";
    img.onload = () => ((t.state = "ok"), this.onChange());
    img.onerror = () => ((t.state = "missing"), this.onChange());
    img.src = new URL(`${this.spec.dir}/${key}.png`, this.base).href;
    this.cache.set(key, t);
    while (this.cache.size > MAX_TILES) this.cache.delete(this.cache.keys().next().value);
    return t;
  }

  // Draws the visible tiles of level z. view: {w, h, dpr, k, ox, oy, mid: [mx, my]} (screen = o + (v - mid) · k,
  // y flipped). Returns false when a tile is still loading with nothing to stand in for it.
  draw(ctx, view, z, alpha = 1) {
    const { w, h, dpr, k, ox, oy, mid } = view;
    const count = 2 ** z;
    const size = this.span / count;
    const toX = (sx) => mid[0] + (sx - ox) / k;
    const toY = (sy) => mid[1] - (sy - oy) / k;
    const clamp = (v) => Math.max(0, Math.min(count - 1, v));
    const [tx0, tx1] = [clamp(Math.floor((toX(0) - this.xmin) / size)), clamp(Math.floor((toX(w) - this.xmin) / size))];
    const [ty0, ty1] = [clamp(Math.floor((this.ymax - toY(0)) / size)), clamp(Math.floor((this.ymax - toY(h)) / size))];
    let complete = true;
    ctx.save();
    ctx.globalAlpha = alpha;
    ctx.imageSmoothingEnabled = true;
    for (let tx = tx0; tx <= tx1; tx++) {
      for (let ty = ty0; ty <= ty1; ty++) {
        const sx = ox + (this.xmin + tx * size - mid[0]) * k;
        const sy = oy - (this.ymax - ty * size - mid[1]) * k;
        const dest = [sx * dpr, sy * dpr, size * k * dpr, size * k * dpr];
        complete = this.drawTile(ctx, z, tx, ty, dest) && complete;
      }
    }
    ctx.restore();
    return complete;
  }

  drawTile(ctx, z, tx, ty, dest) {
    const t = this.tile(z, tx, ty);
    if (t.state === "ok") ctx.drawImage(t.img, ...dest);
    if (t.state !== "loading") return true;
    for (let up = 1; up <= z; up++) {
      const parent = this.cache.get(`${z - up}/${tx >> up}/${ty >> up}`);
      if (!parent || parent.state === "loading") continue;
      if (parent.state === "ok") {
        const part = this.spec.tile_size / 2 ** up;
        const src = [(tx % 2 ** up) * part, (ty % 2 ** up) * part, part, part];
        ctx.drawImage(parent.img, ...src, ...dest);
      }
      return true;
    }
    return false;
  }
}
