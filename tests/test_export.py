"""Export format round trips: quantization, attention blobs, thumbnails and tile pyramids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atlas_build.export import (KEY_COLOUR, QUERY_COLOUR, attention_blob, head_table, quantize, read_attention,
                                read_head, thumbnail_png, write_attention, write_table)
from atlas_build.export.tiles import write_tiles, zoom_levels


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def test_quantization_error_is_within_half_a_step() -> None:
    v = np.random.default_rng(0).normal(size=5000) * 37.0
    codes, (lo, hi) = quantize(v)
    back = lo + codes / 65535 * (hi - lo)
    assert codes.dtype == np.uint16 and codes.min() == 0 and codes.max() == 65535
    assert np.max(np.abs(back - v)) <= (hi - lo) / 65535 / 2 + 1e-12
    const, rng = quantize(np.full(4, 2.5))
    assert rng == [2.5, 3.5] and not const.any()


def test_head_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    layouts = {"pca-2d": rng.normal(size=(100, 2)), "umap-3d": rng.normal(size=(100, 3))}
    pid = rng.permutation(100).astype(np.uint32)
    table, ranges = head_table(pid, layouts, rng.random(100))
    write_table(tmp_path / "h.arrow", table)
    back = read_head(tmp_path / "h.arrow")
    assert np.array_equal(back.point_id, pid)
    assert set(back.layouts) == {"pca-2d", "umap-3d"} and back.layouts["umap-3d"].shape == (100, 3)
    for name, coords in layouts.items():
        step = np.array([(hi - lo) / 65535 for lo, hi in ranges[name]])
        assert np.all(np.abs(back.layouts[name] - coords) <= step / 2 + 1e-9)


def test_attention_blob_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    blocks = []
    first = 0
    for sid, n in [(7, 3), (2, 5), (9, 1)]:
        w = rng.random((n, n))
        blocks.append((sid, first, w / w.sum(1, keepdims=True)))
        first += n
    write_attention(tmp_path / "a.bin", blocks)
    back = read_attention(tmp_path / "a.bin")
    assert list(back) == [7, 2, 9]
    for sid, f, w in blocks:
        assert back[sid][0] == f
        assert np.max(np.abs(back[sid][1] - w)) <= 0.5 / 255 + 1e-7
    assert attention_blob(blocks) == (tmp_path / "a.bin").read_bytes()
    with pytest.raises(ValueError, match="not square"):
        attention_blob([(0, 0, np.zeros((2, 3)))])


def test_thumbnail_has_query_and_key_colours() -> None:
    rng = np.random.default_rng(3)
    coords = np.concatenate([rng.normal(-3, 0.5, (300, 2)), rng.normal(3, 0.5, (300, 2))])
    is_key = np.repeat([False, True], 300)
    png = thumbnail_png(coords, is_key, 96)
    img = np.asarray(Image.open(__import__("io").BytesIO(png)).convert("RGB")).astype(int)
    assert img.shape == (96, 96, 3)
    near = lambda c: (np.abs(img - _rgb(c)).sum(-1) < 60).sum()  # noqa: E731
    assert near(QUERY_COLOUR) > 20 and near(KEY_COLOUR) > 20
    left, right = img[:, :48], img[:, 48:]
    assert (np.abs(left - _rgb(QUERY_COLOUR)).sum(-1) < 60).sum() > (np.abs(right - _rgb(QUERY_COLOUR)).sum(-1) < 60).sum()
    assert thumbnail_png(coords, is_key, 96) == png


def test_tile_pyramid_levels_and_coverage(tmp_path: Path) -> None:
    assert zoom_levels(1000) == 1 and zoom_levels(300_000) == 3 and zoom_levels(10**9) == 5
    rng = np.random.default_rng(4)
    coords = rng.uniform(-1, 1, (20_000, 2))
    meta = write_tiles(tmp_path, coords, np.arange(20_000) % 2 == 1, 2)
    assert meta["levels"] == 2 and meta["tile_size"] == 256
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png")) == [
        "0/0/0.png", "1/0/0.png", "1/0/1.png", "1/1/0.png", "1/1/1.png"]
    x0, x1, y0, y1 = meta["extent"]
    assert x0 < -1 and x1 > 1 and y0 < -1 and y1 > 1
    assert Image.open(tmp_path / "1" / "1" / "0.png").size == (256, 256)
