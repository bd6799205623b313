"""Two more synthetic models for the browser tests, written straight from docs/reference/formats.md.

* ``synth-vit``: a tiny image model: 2 images of 32×32 pixels, 8-pixel patches (4×4) plus a [CLS] token, every
  patch one flat colour, and attention rows with a known strongest target.
* ``synth-big``: 3000 points in 12 layers × 4 heads (matrix view lazy loading) whose first head has a tile
  pyramid drawn in pure blue, a colour no point encoding uses.
"""

from __future__ import annotations

import colorsys
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

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
QMAX = 65535


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


def _meta(extra: dict[str, str] | None = None) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in {"atlas.schema_version": "1", **(extra or {})}.items()}


def _write_arrow(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _write_attn(path: Path, blocks: list[tuple[int, int, np.ndarray]]) -> None:
    header = b"ATTN" + struct.pack("<II", 1, len(blocks))
    offset = len(header) + 16 * len(blocks)
    table, payload = b"", b""
    for sid, first, w in blocks:
        block = np.rint(w * 255).astype(np.uint8)
        table += struct.pack("<IIII", sid, first, block.shape[0], offset)
        payload += block.tobytes()
        offset += block.size
    path.write_bytes(header + table + payload)


def _head_table(ids: list[int], layouts: dict[str, np.ndarray], norm: np.ndarray) -> tuple[pa.Table, dict]:
    cols: dict[str, pa.Array] = {"point_id": pa.array(ids, pa.uint32())}
    ranges = {}
    for name, xy in layouts.items():
        ranges[name] = []
        for dim, axis in enumerate("xy"):
            lo, hi = float(xy[:, dim].min()) - 1.0, float(xy[:, dim].max()) + 1.0
            cols[f"{name}_{axis}"] = pa.array(np.rint((xy[:, dim] - lo) / (hi - lo) * QMAX).astype(np.uint16))
            ranges[name].append([lo, hi])
    cols["norm"] = pa.array(norm, pa.float32())
    return pa.table(cols).replace_schema_metadata(_meta({"atlas.ranges": json.dumps(ranges)})), ranges


def _tokens(ids, sentence, position, length, text, special, patch=None) -> pa.Table:
    cols = {"token_id": pa.array(ids, pa.uint32()), "sentence_id": pa.array(sentence, pa.uint32()),
            "position": pa.array(position, pa.uint16()), "sentence_length": pa.array(length, pa.uint16()),
            "text": pa.array(text, pa.string()).dictionary_encode(), "special": pa.array(special, pa.bool_())}
    if patch is not None:
        cols["patch_row"] = pa.array(patch[0], pa.int16())
        cols["patch_col"] = pa.array(patch[1], pa.int16())
    return pa.table(cols).replace_schema_metadata(_meta())


def _points(pts) -> pa.Table:
    return pa.table({
        "point_id": pa.array([p[0] for p in pts], pa.uint32()), "token_id": pa.array([p[1] for p in pts], pa.uint32()),
        "is_key": pa.array([p[2] for p in pts], pa.uint8()), "sentence_id": pa.array([p[3] for p in pts], pa.uint32()),
        "position": pa.array([p[4] for p in pts], pa.uint16()),
    }).replace_schema_metadata(_meta())


def _model(name: str, layers: int, heads: int, extra: dict | None = None) -> dict:
    return {"name": name, "title": name, "source": "synthetic", "revision": "0", "architecture": "synthetic",
            "num_layers": layers, "num_heads": heads, "num_kv_heads": heads, "head_dim": 4, "causal": False,
            "kv_head_of_query": list(range(heads)), "license": "CC0", "input_kind": "text", **(extra or {})}


def _head_meta(layer: int, head: int, ranges: dict, label: str, attn: str | None = None) -> dict:
    stem = f"L{layer}H{head}"
    return {"layer": layer, "head": head, "kv_head": head, "file": f"{stem}.arrow", "attn": attn or f"attn/{stem}.bin",
            "thumbs": {"pca-2d": f"thumbs/{stem}_pca-2d.png"}, "ranges": ranges, "tiles": {},
            "norm": {"scale_c": 1.0, "mean_q_norm": 1.0, "mean_k_norm": 1.0, "translation_norm": 0.0},
            "metrics": {"self": 0.1 * head}, "label": label}


def write_vit(data_dir: Path) -> list[VitPoint]:
    for sub in ("attn", "thumbs", "images"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    pts = vit_points()
    toks = sorted({(p.token_id, p.image, p.position) for p in pts})
    rc = [(-1, -1) if pos < PREFIX else ((pos - PREFIX) // COLS, (pos - PREFIX) % COLS) for _, _, pos in toks]
    text = ["[CLS]" if r < 0 else f"patch r{r} c{c}" for r, c in rc]
    tokens = _tokens([t[0] for t in toks], [t[1] for t in toks], [t[2] for t in toks], [N_TOKENS] * len(toks), text,
                     [r < 0 for r, _ in rc], ([r for r, _ in rc], [c for _, c in rc]))
    _write_arrow(data_dir / "tokens.arrow", tokens.take(np.arange(len(toks))[::-1]))
    _write_arrow(data_dir / "points.arrow", _points([(p.point_id, p.token_id, p.is_key, p.image, p.position) for p in pts]))
    for image in range(len(IMAGES)):
        px = np.zeros((ROWS * PATCH, COLS * PATCH, 3), np.uint8)
        for r in range(ROWS):
            for c in range(COLS):
                px[r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] = patch_rgb(image, r, c)
        Image.fromarray(px, "RGB").save(data_dir / "images" / f"{image}.png")
    order = np.random.default_rng(1).permutation(len(pts))
    heads = []
    for head in range(VIT_HEADS):
        xy = np.array([vit_coords(pts[i]) for i in order])
        table, ranges = _head_table([pts[i].point_id for i in order], {"pca-2d": xy}, np.ones(len(pts)))
        _write_arrow(data_dir / f"L0H{head}.arrow", table)
        first = {image: VIT_TOKEN0 + 5 * image * N_TOKENS for image in range(len(IMAGES))}
        _write_attn(data_dir / "attn" / f"L0H{head}.bin", [(im, first[im], vit_attention(head)) for im in first])
        Image.new("RGB", (48, 48), (200, 220, 240)).save(data_dir / "thumbs" / f"L0H{head}_pca-2d.png")
        heads.append(_head_meta(0, head, ranges, "next-patch" if head == 0 else "self"))
    images = [{"image_id": i, "name": name, "file": f"images/{i}.png", "license": "CC0", "attribution": "tests"}
              for i, name in enumerate(IMAGES)]
    model = _model(VIT, 1, VIT_HEADS, {"input_kind": "image", "patch_grid": [ROWS, COLS], "patch_size": PATCH,
                                       "image_size": ROWS * PATCH, "num_prefix_tokens": PREFIX})
    manifest = {"schema_version": 1, "model": model, "images": images, "layouts": ["pca-2d"],
                "dataset": {"name": "blocks", "source": "inline", "seed": 0, "num_sentences": len(IMAGES),
                            "num_tokens": len(toks), "license": "CC0", "attribution": "tests", "kind": "images",
                            "num_images": len(IMAGES)},
                "points": {"file": "points.arrow", "count": len(pts)}, "tokens": {"file": "tokens.arrow", "count": len(toks)},
                "heads": heads}
    (data_dir / "manifest.json").write_text(json.dumps(manifest, sort_keys=True), "utf-8")
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
    for sub in ("attn", "thumbs"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    n = BIG_SENTENCES * BIG_LENGTH
    ids = np.arange(n)
    words = [f"w{i % 97}" for i in ids]
    _write_arrow(data_dir / "tokens.arrow", _tokens(ids + 10, ids // BIG_LENGTH, ids % BIG_LENGTH, [BIG_LENGTH] * n,
                                                    words, [False] * n))
    pts = [(2 * i + k, 10 + i, k, i // BIG_LENGTH, i % BIG_LENGTH) for k in (0, 1) for i in ids]
    _write_arrow(data_dir / "points.arrow", _points(pts))
    xy = big_coords(n)
    table, ranges = _head_table([p[0] for p in pts], {"pca-2d": xy}, np.ones(len(pts)))
    rows = np.full((BIG_LENGTH, BIG_LENGTH), 1.0 / BIG_LENGTH)
    _write_attn(data_dir / "attn" / "L0H0.bin", [(s, 10 + s * BIG_LENGTH, rows) for s in range(BIG_SENTENCES)])
    heads = []
    for layer in range(BIG_LAYERS):
        for head in range(BIG_HEADS):
            _write_arrow(data_dir / f"L{layer}H{head}.arrow", table)
            Image.new("RGB", (48, 48), (230, 230, 200 + 4 * layer)).save(data_dir / "thumbs" / f"L{layer}H{head}_pca-2d.png")
            heads.append(_head_meta(layer, head, ranges, "blob", attn="attn/L0H0.bin"))
    heads[0]["tiles"] = {"pca-2d": _write_tiles(data_dir / "tiles" / "L0H0_pca-2d", xy)}
    manifest = {"schema_version": 1, "model": _model(BIG, BIG_LAYERS, BIG_HEADS), "layouts": ["pca-2d"],
                "dataset": {"name": "words", "source": "inline", "seed": 0, "num_sentences": BIG_SENTENCES,
                            "num_tokens": n, "license": "CC0", "attribution": "tests"},
                "points": {"file": "points.arrow", "count": len(pts)}, "tokens": {"file": "tokens.arrow", "count": n},
                "heads": heads}
    (data_dir / "manifest.json").write_text(json.dumps(manifest, sort_keys=True), "utf-8")


def pages() -> dict[str, list[tuple[int, int]]]:
    """Model name → head pages to write (layer, head)."""
    return {VIT: [(0, h) for h in range(VIT_HEADS)], BIG: [(0, 0)]}
