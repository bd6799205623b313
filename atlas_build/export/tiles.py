"""Slippy-map tile pyramids (`{z}/{x}/{y}.png`, 256 px) for heads too large to ship as points alone."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..fsutil import write_bytes
from .thumbnails import KEY_COLOUR, QUERY_COLOUR

TILE = 256


def zoom_levels(n_points: int, max_zoom: int = 4) -> int:
    """Levels so that the finest level has about one pixel per point (at most `max_zoom` + 1 levels)."""
    return min(max_zoom, max(0, math.ceil(math.log2(max(1.0, math.sqrt(n_points) / TILE))))) + 1


def write_tiles(directory: Path, coords: np.ndarray, is_key: np.ndarray, levels: int) -> dict:
    """Render the [n, 2] layout at zoom 0..levels-1; tile (z, x, y) covers 1/2^z of each axis, y down.

    Returns the pyramid's metadata: levels, tile size and the data extent the tiles cover (square, padded)."""
    import datashader as ds
    import datashader.transfer_functions as tf
    import pandas as pd

    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    half = max(x.max() - x.min(), y.max() - y.min(), 1e-9) * 0.52
    extent = [cx - half, cx + half, cy - half, cy + half]
    frame = pd.DataFrame({"x": x, "y": y,
                          "kind": pd.Categorical(np.where(is_key, "key", "query"), categories=["query", "key"])})
    for z in range(levels):
        size = TILE * 2**z
        canvas = ds.Canvas(plot_width=size, plot_height=size, x_range=tuple(extent[:2]), y_range=tuple(extent[2:]))
        agg = canvas.points(frame, "x", "y", ds.by("kind", ds.count()))
        img = tf.dynspread(tf.shade(agg, color_key={"query": QUERY_COLOUR, "key": KEY_COLOUR}, min_alpha=110),
                           threshold=0.5, max_px=2)
        pil = img.to_pil()
        for tx in range(2**z):
            for ty in range(2**z):
                tile = pil.crop((tx * TILE, ty * TILE, (tx + 1) * TILE, (ty + 1) * TILE))
                if tile.getbbox() is None:
                    continue
                buf = io.BytesIO()
                tile.save(buf, format="PNG", optimize=True)
                write_bytes(directory / str(z) / str(tx) / f"{ty}.png", buf.getvalue())
    return {"levels": levels, "tile_size": TILE, "extent": [float(v) for v in extent]}
