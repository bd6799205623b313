"""A layer's thumbnail strip: its heads' thumbnails side by side with exactly their pixels, written by the export
for every layer and 2D layout of the tiny build and named in manifest.json."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from atlas_build.export import head_path, read_coords
from atlas_build.export.thumbnails import STRIP_PATH, preview_layout, strip_png, thumbnail_png
from atlas_build.normalize.joint import is_key


def rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def heads(n: int, points: int = 400, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    is_key = np.arange(points) >= points // 2
    return [thumbnail_png(rng.normal(size=(points, 2)) * (1 + i), is_key, 32) for i in range(n)]


def test_strip_holds_each_thumbnail_at_its_offset():
    thumbs = heads(5)
    strip = rgb(strip_png(thumbs))
    assert strip.shape == (32, 5 * 32, 3)
    for i, t in enumerate(thumbs):
        np.testing.assert_array_equal(strip[:, 32 * i:32 * (i + 1)], rgb(t))


def test_strip_of_more_than_256_colours_stays_close_and_small():
    thumbs = heads(24, points=3000, seed=2)
    parts = [rgb(t) for t in thumbs]
    assert len(np.unique(np.concatenate(parts, axis=1).reshape(-1, 3), axis=0)) > 256
    png = strip_png(thumbs)
    strip = rgb(png).astype(int)
    for i, part in enumerate(parts):
        error = np.abs(strip[:, 32 * i:32 * (i + 1)] - part)
        assert error.mean() < 1.0 and error.max() <= 32, (i, error.mean(), error.max())
    assert Image.open(io.BytesIO(png)).mode == "P"
    assert len(png) < 1.5 * sum(len(t) for t in thumbs)


def test_strip_refuses_mixed_sizes():
    with pytest.raises(ValueError, match="one size"):
        strip_png([heads(1)[0], thumbnail_png(np.zeros((4, 2)), np.array([0, 0, 1, 1], bool), 16)])


def test_preview_layout_is_the_default_when_2d_else_the_first_2d_layout():
    assert preview_layout(["pca-2d", "tsne-2d"], "tsne-2d") == "tsne-2d"
    # a 3D default still leaves the pages a picture of their own: the first 2D layout's
    assert preview_layout(["pca-3d", "umap-3d", "tsne-2d", "pca-2d"], "umap-3d") == "tsne-2d"
    assert preview_layout(["pca-2d"], None) == "pca-2d"
    assert preview_layout(["pca-3d"], "pca-3d") is None


def test_tiny_build_writes_a_strip_per_layer_and_layout(tiny_build):
    data = next((tiny_build / "site" / "data").glob("*/manifest.json")).parent
    manifest = json.loads((data / "manifest.json").read_text("utf-8"))
    thumbs = manifest["thumbnails"]
    assert thumbs["strips"] == STRIP_PATH
    n_layers, n_heads = manifest["model"]["num_layers"], manifest["model"]["num_heads"]
    for layer in range(n_layers):
        for layout in thumbs["layouts"]:
            strip = rgb((data / STRIP_PATH.format(layer=layer, layout=layout)).read_bytes())
            size = thumbs["size"]
            assert strip.shape == (size, n_heads * size, 3)
            for head in range(n_heads):
                file = data / head_path("thumb", layer, head, layout)
                part = strip[:, head * size:(head + 1) * size]
                if layout == preview_layout(manifest["layouts"], manifest["default_layout"]):  # a file of its own too
                    np.testing.assert_array_equal(part, rgb(file.read_bytes()))
                    continue
                assert not file.exists()
                # the others only in the strip: the picture of the exported coordinates (16-bit, so a point may
                # land one pixel over)
                xy = read_coords(data / head_path("coords", layer, head, layout))
                own = rgb(thumbnail_png(xy, is_key(len(xy)), size))
                assert (part != own).any(axis=2).mean() < 0.01 and (part != 255).any(axis=2).mean() > 0.02
