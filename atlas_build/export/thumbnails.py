"""Datashader thumbnails: one small PNG per head and 2D layout, queries and keys in their own colours.

Datashader aggregates the points per pixel and per kind; the shading (colour mix by count, log-scaled alpha over
white, and a one-pixel spread for sparse heads) is done here in numpy, which avoids datashader's shading
kernels whose JIT compilation costs ~20 s on every fresh process.

A layer's thumbnails of one layout are also written side by side as one strip (`strip_png`), which the matrix
page loads instead of one file per head: 16 requests instead of 512 for a 16 x 32 model.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from .colours import KEY as KEY_COLOUR
from .colours import QUERY as QUERY_COLOUR
from .colours import hex_rgb

#: Where a layer's strip of one 2D layout lives under data/<model>/ (manifest.json `thumbnails.strips`).
STRIP_PATH = "thumbs/L{layer}_{layout}.png"
MIN_ALPHA = 110
SPREAD_BELOW = 0.12
PALETTE = 256


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array(hex_rgb(hex_colour), np.float64)


def aggregate(coords: np.ndarray, is_key: np.ndarray, size: int, extent: tuple[float, float, float, float]
              ) -> np.ndarray:
    """Counts per pixel and kind: [size, size, 2] (query, key), row 0 at the top (largest y)."""
    import datashader as ds
    import pandas as pd

    frame = pd.DataFrame({"x": coords[:, 0].astype(np.float64), "y": coords[:, 1].astype(np.float64),
                          "kind": pd.Categorical(np.where(is_key, "key", "query"), categories=["query", "key"])})
    canvas = ds.Canvas(plot_width=size, plot_height=size, x_range=extent[:2], y_range=extent[2:])
    agg = canvas.points(frame, "x", "y", ds.by("kind", ds.count()))
    return np.asarray(agg.transpose("y", "x", "kind").values, np.float64)[::-1]


def _spread(counts: np.ndarray) -> np.ndarray:
    """Dilate by one pixel (3×3 max) so isolated points stay visible."""
    padded = np.pad(counts, ((1, 1), (1, 1), (0, 0)))
    h, w = counts.shape[:2]
    return np.max([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)


def shade(counts: np.ndarray, background: bool = True) -> np.ndarray:
    """RGBA uint8 image from per-kind counts: colours mixed by count, alpha grows with log density."""
    if (counts.sum(-1) > 0).mean() < SPREAD_BELOW:
        counts = _spread(counts)
    total = counts.sum(-1)
    colours = np.stack([_rgb(QUERY_COLOUR), _rgb(KEY_COLOUR)])
    with np.errstate(invalid="ignore", divide="ignore"):
        mix = np.nan_to_num((counts @ colours) / total[..., None])
        peak = np.log1p(total.max()) or 1.0
        alpha = np.where(total > 0, MIN_ALPHA + (255 - MIN_ALPHA) * np.log1p(total) / peak, 0.0) / 255
    if background:
        rgb = mix * alpha[..., None] + 255 * (1 - alpha[..., None])
        return np.dstack([rgb, np.full(total.shape, 255.0)]).round().astype(np.uint8)
    return np.dstack([mix, alpha * 255]).round().astype(np.uint8)


def padded_extent(coords: np.ndarray, pad: float = 0.04) -> tuple[float, float, float, float]:
    x, y = coords[:, 0], coords[:, 1]
    px = float(x.max() - x.min()) * pad or 1.0
    py = float(y.max() - y.min()) * pad or 1.0
    return float(x.min()) - px, float(x.max()) + px, float(y.min()) - py, float(y.max()) + py


def png_bytes(rgba: np.ndarray, mode: str = "RGB") -> bytes:
    """PNG of an RGBA array; opaque ("RGB") images as 256-colour palette PNGs (about half the bytes: the pictures
    are blends of two colours over white), transparent ones as RGBA."""
    from PIL import Image

    buf = io.BytesIO()
    image = Image.fromarray(rgba, "RGBA").convert(mode)
    if mode == "RGB":
        image = image.quantize(colors=PALETTE, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def preview_layout(layouts: Sequence[str], default: str | None) -> str | None:
    """The 2D layout a head's static picture shows (the page's preview image, the static grid, the findings):
    the default layout when it is 2D, else the first 2D layout; None without one."""
    two_d = [name for name in layouts if name.endswith("-2d")]
    return default if default in two_d else next(iter(two_d), None)


def thumbnail_png(coords: np.ndarray, is_key: np.ndarray, size: int) -> bytes:
    """Render [n, 2] coordinates to a `size`×`size` PNG on white."""
    return png_bytes(shade(aggregate(coords, is_key, size, padded_extent(coords))))


def strip_png(thumbnails: list[bytes]) -> bytes:
    """One 256-colour PNG of equally sized opaque thumbnails (PNG bytes) side by side, left to right in the given
    order: exactly their pixels when they have at most 256 colours together, else quantized like a thumbnail (the
    rarest blends move by a few levels; an RGB strip would be three times the bytes)."""
    from PIL import Image

    images = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in thumbnails]
    if len({im.shape for im in images}) != 1:
        raise ValueError("thumbnails of a strip must have one size")
    rgb = np.concatenate(images, axis=1)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours, index = np.unique(packed, return_inverse=True)
    if len(colours) <= PALETTE:
        image = Image.fromarray(index.reshape(packed.shape).astype(np.uint8), "P")
        image.putpalette(np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], 1).astype(np.uint8).tobytes())
    else:
        return png_bytes(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
