"""Datashader thumbnails: one small PNG per head and 2D layout, queries and keys in their own colours."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..fsutil import write_bytes

QUERY_COLOUR = "#1b9e77"
KEY_COLOUR = "#e7298a"


def thumbnail_png(coords: np.ndarray, is_key: np.ndarray, size: int) -> bytes:
    """Render [n, 2] coordinates to a `size`×`size` PNG on white (categorical shade + dynspread)."""
    import datashader as ds
    import datashader.transfer_functions as tf
    import pandas as pd

    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    pad_x = (x.max() - x.min()) * 0.04 or 1.0
    pad_y = (y.max() - y.min()) * 0.04 or 1.0
    frame = pd.DataFrame({"x": x, "y": y,
                          "kind": pd.Categorical(np.where(is_key, "key", "query"), categories=["query", "key"])})
    canvas = ds.Canvas(plot_width=size, plot_height=size,
                       x_range=(x.min() - pad_x, x.max() + pad_x), y_range=(y.min() - pad_y, y.max() + pad_y))
    agg = canvas.points(frame, "x", "y", ds.by("kind", ds.count()))
    img = tf.shade(agg, color_key={"query": QUERY_COLOUR, "key": KEY_COLOUR}, min_alpha=110)
    img = tf.set_background(tf.dynspread(img, threshold=0.5, max_px=2), "white")
    pil = img.to_pil().convert("RGB")
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_thumbnail(path: Path, coords: np.ndarray, is_key: np.ndarray, size: int) -> None:
    write_bytes(path, thumbnail_png(coords, is_key, size))
