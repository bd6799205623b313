"""Slippy-map tile pyramids (`{z}/{x}/{y}.png`, 256 px) for heads too large to ship as points alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..fsutil import write_bytes
from .thumbnails import aggregate, png_bytes, shade

TILE = 256


def zoom_levels(n_points: int, max_zoom: int = 4) -> int:
    """Levels so that the finest level has about one pixel per point (at most `max_zoom` + 1 levels)."""
    return min(max_zoom, max(0, math.ceil(math.log2(max(1.0, math.sqrt(n_points) / TILE))))) + 1


def write_tiles(directory: Path, coords: np.ndarray, is_key: np.ndarray, levels: int) -> dict:
    """Render the [n, 2] layout at zoom 0..levels-1; tile (z, x, y) covers 1/2^z of each axis, y from the top.

    Tiles are transparent where empty; all-empty tiles are not written. Returns the pyramid's metadata: levels,
    tile size and the (square, padded) data extent the tiles cover."""
    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    half = max(x.max() - x.min(), y.max() - y.min(), 1e-9) * 0.52
    extent = (cx - half, cx + half, cy - half, cy + half)
    for z in range(levels):
        image = shade(aggregate(coords, is_key, TILE * 2**z, extent), background=False)
        for tx in range(2**z):
            for ty in range(2**z):
                tile = image[ty * TILE:(ty + 1) * TILE, tx * TILE:(tx + 1) * TILE]
                if tile[..., 3].any():
                    write_bytes(directory / str(z) / str(tx) / f"{ty}.png", png_bytes(tile, "RGBA"))
    return {"levels": levels, "tile_size": TILE, "extent": [float(v) for v in extent]}
