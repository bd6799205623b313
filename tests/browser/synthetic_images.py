"""Two more synthetic models for the browser tests, written straight from docs/reference/formats.md.

* ``synth-vit``: a tiny image model: 2 images of 32×32 pixels, 8-pixel patches (4×4) plus a [CLS] token, every
  patch one flat colour, and attention rows with a known strongest target.
* ``synth-big``: 3000 points in 12 layers × 4 heads (matrix view lazy loading) whose first head has a tile
  pyramid drawn in pure blue, a colour no point encoding uses.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import synthetic_format as sf

VIT = "synth-vit"
BIG = "synth-big"
ROWS = COLS = 4
PATCH = 8
PREFIX = 1
N_TOKENS = PREFIX + ROWS * COLS
IMAGES = ["blocks", "<img src=x onerror=alert(1)>.png"]
VIT_HEADS = 2
VIT_TOKEN0, VIT_POINT0 = 900, 70_000
BIG_LAYERS, BIG_HEADS, BIG_SENTENCES, BIG_LENGTH = 12, 4, 50, 30
TILE_RGB = (0, 0, 255)
TILE_SIZE, TILE_LEVELS = 256, 3


@dataclass(frozen=True)
class VitPoint:
    point_id: int
    token_id: int
    image: int
    position: int
    is_key: int

    @property
    def row(self) -> int:
        return (self.position - PREFIX) // COLS if self.position >= PREFIX else -1

    @property
    def col(self) -> int:
        return (self.position - PREFIX) % COLS if self.position >= PREFIX else -1


def patch_rgb(image: int, row: int, col: int) -> tuple[int, int, int]:
    """Flat colour of one patch: hue by column (image 0) or by row (image 1), brightness by the other axis."""
    hue, value = (col / COLS, 1.0 - 0.2 * row) if image == 0 else (row / ROWS, 1.0 - 0.2 * col)
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.9, value))


def strongest(head: int, position: int) -> int:
    """The key position each query position attends to most: head 0 the next patch to the right (wrapping),
    head 1 itself; [CLS] attends to the bottom-right patch."""
    if position < PREFIX:
        return N_TOKENS - 1
    if head == 1:
        return position
    q = position - PREFIX
    return PREFIX + (q // COLS) * COLS + (q % COLS + 1) % COLS


def vit_attention(head: int) -> np.ndarray:
    w = np.full((N_TOKENS, N_TOKENS), 0.2 / (N_TOKENS - 2))
    for i in range(N_TOKENS):
        w[i, 0] = 0.2 if i else w[i, 0]
        w[i, strongest(head, i)] = 0.6
    return w / w.sum(axis=1, keepdims=True)


def vit_points() -> list[VitPoint]:
    pts = []
    for is_key in (0, 1):
        for image in range(len(IMAGES)):
            for pos in range(N_TOKENS):
                tid = VIT_TOKEN0 + 5 * (image * N_TOKENS + pos)
                pts.append(VitPoint(VIT_POINT0 + 3 * len(pts), tid, image, pos, is_key))
    return pts


def vit_coords(p: VitPoint) -> tuple[float, float]:
    """Queries of an image on a 4×4 grid, its keys on a grid to the right; [CLS] above the grid's left corner."""
    x0 = p.is_key * 7.0 + p.image * 14.0
    if p.row < 0:
        return x0 - 1.5, 1.5
    return x0 + p.col * 1.5, -p.row * 1.5


def _model(name: str, layers: int, heads: int, extra: dict | None = None) -> dict:
    return {"name": name, "title": name, "source": "synthetic", "revision": "0", "architecture": "synthetic",
            "num_layers": layers, "num_heads": heads, "num_kv_heads": heads, "head_dim": 4, "causal": False,
            "kv_head_of_query": list(range(heads)), "license": "CC0", "input_kind": "text", **(extra or {})}


def _head(layer: int, head: int, label: str, tiles: dict | None = None) -> sf.HeadRecord:
    detail = {"tiles": tiles or {}, "norm": {"scale_c": 1.0, "mean_q_norm": 1.0, "mean_k_norm": 1.0, "translation_norm": 0.0}}
    return sf.HeadRecord(layer, head, label, {"self": 0.1 * head}, detail)


def patch_means(w: np.ndarray) -> list[list[float]]:
    """Mean patch-to-patch weight per (Δrow, Δcol), Δ from −(ROWS − 1) to ROWS − 1."""
    sums, counts = np.zeros((2 * ROWS - 1, 2 * COLS - 1)), np.zeros((2 * ROWS - 1, 2 * COLS - 1))
    for q in range(ROWS * COLS):
        for k in range(ROWS * COLS):
            dr, dc = k // COLS - q // COLS + ROWS - 1, k % COLS - q % COLS + COLS - 1
            sums[dr, dc] += w[PREFIX + q, PREFIX + k]
            counts[dr, dc] += 1
    return (sums / counts).tolist()


def write_vit(data_dir: Path) -> list[VitPoint]:
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    pts = vit_points()
    by_token = {(p.image, p.position): {} for p in pts}
    for p in pts:
        by_token[(p.image, p.position)][p.is_key] = p
    rows = []
    for (image, pos), kinds in sorted(by_token.items()):
        q = kinds[0]
        patch = (q.row, q.col)
        text = "[CLS]" if q.row < 0 else f"patch r{q.row} c{q.col}"
        rows.append(sf.TokenRow(q.token_id, image, pos, text, q.row < 0, q.point_id, kinds[1].point_id, patch))
    sf.write_tokens(data_dir / "tokens.arrow", rows[::-1])
    for image in range(len(IMAGES)):
        px = np.zeros((ROWS * PATCH, COLS * PATCH, 3), np.uint8)
        for r in range(ROWS):
            for c in range(COLS):
                px[r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] = patch_rgb(image, r, c)
        Image.fromarray(px, "RGB").save(data_dir / "images" / f"{image}.png")
    heads = []
    first = {image: VIT_TOKEN0 + 5 * image * N_TOKENS for image in range(len(IMAGES))}
    token_ids = {image: [first[image] + 5 * pos for pos in range(N_TOKENS)] for image in first}
    for head in range(VIT_HEADS):
        sf.write_coords(data_dir, 0, head, "pca-2d", np.array([vit_coords(p) for p in pts]))
        sf.write_norms(data_dir, 0, head, np.arange(len(pts), dtype=float))
        w = vit_attention(head)
        sf.write_attention(data_dir, 0, head, [(im, first[im], w) for im in first])
        sf.write_json(data_dir / sf.path("aggregate", 0, head),
                      {"schema_version": sf.VERSION, "layer": 0, "head": head, "kind": "patch-offset",
                       "rows": [1 - ROWS, ROWS - 1], "cols": [1 - COLS, COLS - 1], "mean": patch_means(w),
                       "prefix_mean": float(w[PREFIX:, :PREFIX].sum() / (ROWS * COLS))})
        (data_dir / "thumbs").mkdir(exist_ok=True)
        Image.new("RGB", (48, 48), (200, 220, 240)).save(data_dir / sf.path("thumb", 0, head, "pca-2d"))
        heads.append(_head(0, head, "next-patch" if head == 0 else "self"))
    for h in heads:
        h.write(data_dir)
    images = [{"image_id": i, "name": name, "file": f"images/{i}.png", "license": "CC0", "attribution": "tests"}
              for i, name in enumerate(IMAGES)]
    model = _model(VIT, 1, VIT_HEADS, {"input_kind": "image", "patch_grid": [ROWS, COLS], "patch_size": PATCH,
                                       "image_size": ROWS * PATCH, "num_prefix_tokens": PREFIX})
    dataset = {"name": "blocks", "source": "inline", "seed": 0, "num_sentences": len(IMAGES), "num_tokens": len(rows),
               "license": "CC0", "attribution": "tests", "kind": "images", "num_images": len(IMAGES)}
    sf.write_json(data_dir / "manifest.json", sf.manifest(model, dataset, ["pca-2d"], len(rows), len(pts), heads,
                                                          images=images))
    return pts


def big_coords(n_tokens: int) -> np.ndarray:
    """Queries and keys in two blobs, seeded: [2 * n_tokens, 2]."""
    rng = np.random.default_rng(3)
    q = rng.normal((30.0, 50.0), 8.0, (n_tokens, 2))
    k = rng.normal((70.0, 50.0), 8.0, (n_tokens, 2))
    return np.vstack([q, k])


def _write_tiles(directory: Path, xy: np.ndarray) -> dict:
    cx, cy = (xy[:, 0].min() + xy[:, 0].max()) / 2, (xy[:, 1].min() + xy[:, 1].max()) / 2
    half = max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1])) * 0.52
    extent = [float(cx - half), float(cx + half), float(cy - half), float(cy + half)]
    for z in range(TILE_LEVELS):
        size = TILE_SIZE * 2**z
        canvas = np.zeros((size, size, 4), np.uint8)
        px = np.clip(((xy[:, 0] - extent[0]) / (2 * half) * size).astype(int), 1, size - 2)
        py = np.clip(((extent[3] - xy[:, 1]) / (2 * half) * size).astype(int), 1, size - 2)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                canvas[py + dy, px + dx] = (*TILE_RGB, 255)
        for tx in range(2**z):
            for ty in range(2**z):
                tile = canvas[ty * TILE_SIZE:(ty + 1) * TILE_SIZE, tx * TILE_SIZE:(tx + 1) * TILE_SIZE]
                if tile[..., 3].any():
                    (directory / str(z) / str(tx)).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(tile, "RGBA").save(directory / str(z) / str(tx) / f"{ty}.png")
    return {"dir": "tiles/L0H0_pca-2d", "levels": TILE_LEVELS, "tile_size": TILE_SIZE, "extent": extent}


def write_big(data_dir: Path) -> None:
    n = BIG_SENTENCES * BIG_LENGTH
    rows = [sf.TokenRow(10 + i, i // BIG_LENGTH, i % BIG_LENGTH, f"w{i % 97}", False, 2 * i, 2 * i + 1) for i in range(n)]
    sf.write_tokens(data_dir / "tokens.arrow", rows)
    xy = big_coords(n)
    in_id_order = np.empty_like(xy)
    in_id_order[0::2], in_id_order[1::2] = xy[:n], xy[n:]  # query of token i is point 2i, its key 2i + 1
    heads = []
    for layer in range(BIG_LAYERS):
        for head in range(BIG_HEADS):
            sf.write_coords(data_dir, layer, head, "pca-2d", in_id_order)
            (data_dir / "thumbs").mkdir(exist_ok=True)
            Image.new("RGB", (48, 48), (230, 230, 200 + 4 * layer)).save(data_dir / sf.path("thumb", layer, head, "pca-2d"))
            tiles = {"pca-2d": _write_tiles(data_dir / "tiles" / "L0H0_pca-2d", xy)} if (layer, head) == (0, 0) else None
            heads.append(_head(layer, head, "blob", tiles))
    for h in heads:
        h.write(data_dir)
    rows_w = np.full((BIG_LENGTH, BIG_LENGTH), 1.0 / BIG_LENGTH)
    sf.write_attention(data_dir, 0, 0, [(s, 10 + s * BIG_LENGTH, rows_w) for s in range(BIG_SENTENCES)])
    dataset = {"name": "words", "source": "inline", "seed": 0, "num_sentences": BIG_SENTENCES, "num_tokens": n,
               "license": "CC0", "attribution": "tests"}
    sf.write_json(data_dir / "manifest.json", sf.manifest(_model(BIG, BIG_LAYERS, BIG_HEADS), dataset, ["pca-2d"], n,
                                                          2 * n, heads))


def pages() -> dict[str, list[tuple[int, int]]]:
    """Model name → head pages to write (layer, head)."""
    return {VIT: [(0, h) for h in range(VIT_HEADS)], BIG: [(0, 0)]}
