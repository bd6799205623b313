"""Export format round trips (schema version 8): tokens with explicit point ids, per-layout coordinates, norms,
per-input attention blobs, aggregate patterns, the manifest split, thumbnails and tile pyramids; and the payload
budget of one head page at demo scale."""

from __future__ import annotations

import gzip
import io
import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from atlas_build import SCHEMA_VERSION
from atlas_build.errors import SchemaVersionError
from atlas_build.export import (KEY_COLOUR, QUERY_COLOUR, SentenceAttention, coords_blob, coords_header, head_path,
                                norms_table, patch_aggregate, point_ids, quantize, read_coords, read_head,
                                read_head_detail, read_manifest, read_norms, read_points, read_table,
                                relative_aggregate, thumbnail_png, tokens_table, write_coords, write_manifest,
                                write_table)
from atlas_build.export.inputs import (FULL, INPUT_HEADER, LOWER, input_blob, quantize_weights, read_input_attention,
                                       write_input_attention)
from atlas_build.export.tiles import write_tiles, zoom_levels

KB = 1024
PAGE_BUDGET = 300 * KB


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
    small, _ = quantize(v, 255)
    assert small.dtype == np.uint8 and small.max() == 255


def _tokens(n_sentences: int, length: int, has_point: np.ndarray) -> pa.Table:
    n = n_sentences * length
    ids = np.arange(n)
    q, k = point_ids(has_point)
    return tokens_table(ids + 7, ids // length, ids % length, [f"w{i % 300}" for i in ids], ids % length == 0, q, k)


def test_tokens_carry_explicit_point_ids_in_the_narrowest_types(tmp_path: Path) -> None:
    has_point = np.arange(40) % 3 != 1  # a subset of tokens has points (max_token_repeats)
    table = _tokens(4, 10, has_point)
    assert [table.schema.field(c).type for c in ("token_id", "sentence_id", "position")] == [pa.uint8()] * 3
    assert table.schema.field("text").type == pa.dictionary(pa.int8(), pa.string())
    q = table.column("query_point").to_pylist()
    k = table.column("key_point").to_pylist()
    m = int(has_point.sum())
    assert [i for i, v in enumerate(q) if v is None] == list(np.flatnonzero(~has_point))
    assert sorted(v for v in q if v is not None) == list(range(m)) and sorted(v for v in k if v is not None) == list(
        range(m, 2 * m))
    write_table(tmp_path / "tokens.arrow", table)
    points = read_points(tmp_path, {"tokens": {"file": "tokens.arrow"}})
    assert np.array_equal(points.point_id, np.arange(2 * m))
    assert np.array_equal(points.is_key, np.repeat([0, 1], m))
    assert np.array_equal(points.token_id[:m], np.flatnonzero(has_point) + 7)
    big = _tokens(300, 300, np.ones(90_000, bool))
    assert big.schema.field("token_id").type == pa.uint32() and big.schema.field("key_point").type == pa.uint32()
    assert big.schema.field("text").type == pa.dictionary(pa.int16(), pa.string())
    image = tokens_table([0, 1], [0, 0], [0, 1], ["[CLS]", "patch r0 c0"], [True, False], [0, 1], [2, 3],
                         patch_row=[-1, 0], patch_col=[-1, 300])
    assert image.schema.field("patch_row").type == pa.int8() and image.schema.field("patch_col").type == pa.int16()
    assert image.column("patch_col").to_pylist() == [-1, 300]
    assert image.column("piece").to_pylist() == ["[CLS]", "patch r0 c0"]  # no piece given: the text
    text = tokens_table([0, 1], [0, 0], [0, 1], ["An", " empire"], [False, False], [0, 1], [2, 3],
                        piece=["An", "Ġempire"])
    assert text.column_names[:5] == ["token_id", "sentence_id", "position", "text", "piece"]
    assert text.schema.field("piece").type == pa.dictionary(pa.int8(), pa.string())
    assert text.column("text").to_pylist() == ["An", " empire"]
    assert text.column("piece").to_pylist() == ["An", "Ġempire"]
    with pytest.raises(ValueError, match="both a query and a key"):
        tokens_table([0], [0], [0], ["a"], [False], [0], [-1])


@pytest.mark.parametrize("bits", [16, 12, 8])
def test_coords_and_norms_round_trip_with_their_ranges(tmp_path: Path, bits: int) -> None:
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(100, 3)) * [1, 10, 100]
    write_coords(tmp_path / "c.bin.gz", xyz, 3, 5, "umap-3d", bits)
    back = read_coords(tmp_path / "c.bin.gz")
    step = np.ptp(xyz, axis=0) / (2**bits - 1)
    assert back.shape == (100, 3) and np.all(np.abs(back - xyz) <= step / 2 + 1e-9)
    assert np.abs(back - xyz).max(axis=0).min() > step.min() / 8, "the stored grid has 2**bits levels, no more"
    assert coords_header(tmp_path / "c.bin.gz") == {"layer": 3, "head": 5, "layout": "umap-3d", "points": 100,
                                                    "dims": 3, "bits": bits}
    blob = coords_blob(xyz, 3, 5, "umap-3d", bits)
    assert len(blob) == 32 + len("umap-3d") + 3 * 16 + 3 * 100 * (2 if bits > 8 else 1)
    stored = (tmp_path / "c.bin.gz").read_bytes()
    assert stored[:2] == b"\x1f\x8b" and gzip.decompress(stored) == blob
    write_coords(tmp_path / "d.bin.gz", xyz, 3, 5, "umap-3d", bits)
    assert (tmp_path / "d.bin.gz").read_bytes() == stored, "no timestamp in the gzip header"
    (tmp_path / "plain.bin").write_bytes(blob)
    assert np.array_equal(read_coords(tmp_path / "plain.bin"), back)
    norms = rng.uniform(2, 9, 100)
    write_table(tmp_path / "n.arrow", norms_table(norms, 3, 5))
    assert read_table(tmp_path / "n.arrow").schema.field("norm").type == pa.uint8()
    assert np.max(np.abs(read_norms(tmp_path / "n.arrow") - norms)) <= np.ptp(norms) / 255 / 2 + 1e-9


def test_coordinate_byte_planes_are_what_gzip_shrinks(tmp_path: Path) -> None:
    """Every axis's high bytes, then the low bytes: at 12 bits a high plane holds 16 values, so gzip stores a
    clustered layout in well under 7/8 of its 16-bit bytes (0.72–0.77 on real layouts, formats.md)."""
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(20, 2)) * 10
    xy = centres[rng.integers(0, 20, 10_000)] + rng.normal(size=(10_000, 2))
    blob = coords_blob(xy, 0, 0, "tsne-2d", 12)
    at = 32 + len("tsne-2d") + 2 * 16
    hi = np.frombuffer(blob, np.uint8, 20_000, at)
    assert hi.max() <= 15 and len(np.unique(hi[10_000:])) > 8
    sizes = {bits: len(gzip.compress(coords_blob(xy, 0, 0, "tsne-2d", bits), 9, mtime=0)) for bits in (16, 12)}
    assert sizes[12] < 0.84 * sizes[16] and sizes[16] < 40_000 * 1.01
    with pytest.raises(ValueError, match="bits"):
        coords_blob(xy, 0, 0, "tsne-2d", 17)


def _write_model(data_dir: Path, n_tokens: int, n_heads: int, layouts: dict[str, int], length: int = 25) -> dict:
    """A model directory as the exporter writes it: tokens, manifest, and every file of head L0H0."""
    rng = np.random.default_rng(5)
    write_table(data_dir / "tokens.arrow", _tokens(n_tokens // length, length, np.ones(n_tokens, bool)))
    points = 2 * n_tokens
    coords = {name: rng.normal(size=(points, dims)) for name, dims in layouts.items()}
    for name, xyz in coords.items():
        write_coords(data_dir / head_path("coords", 0, 0, name), xyz, 0, 0, name)
    write_table(data_dir / head_path("norms", 0, 0), norms_table(rng.uniform(1, 5, points), 0, 0))
    metrics = {f"score_{i}": float(rng.normal()) for i in range(12)}
    heads = [{"layer": h // 9, "head": h % 9, "kv_head": h % 3, "label": "positional", "metrics": metrics,
              "norm": {"scale_c": 1.25, "mean_q_norm": 3.0}, "trust": {"pca-2d": {"trustworthiness": 0.9}},
              "related": [{"layer": 0, "head": 1, "similarity": 0.5}], "tiles": {},
              "thumbs": {"pca-2d": head_path("thumb", h // 9, h % 9, "pca-2d")}} for h in range(n_heads)]
    doc = {"model": {"name": "m", "num_layers": n_heads // 9, "num_heads": 9}, "layouts": list(layouts),
           "tokens": {"file": "tokens.arrow", "count": n_tokens}, "points": {"count": points}, "heads": heads}
    return {"written": write_manifest(data_dir, doc), "coords": coords, "heads": heads}


def test_manifest_split_and_head_round_trip(tmp_path: Path) -> None:
    model = _write_model(tmp_path, 250, 18, {"pca-2d": 2, "pca-3d": 3})
    manifest = read_manifest(tmp_path / "manifest.json")
    assert manifest == json.loads(json.dumps(model["written"])) and manifest["schema_version"] == SCHEMA_VERSION
    summary = manifest["heads"][4]
    assert set(summary) == {"layer", "head", "kv_head", "label", "metrics"}
    full = model["heads"][4]["metrics"]["score_0"]
    assert summary["metrics"]["score_0"] == float(f"{full:.4g}") and (summary["layer"], summary["head"]) == (0, 4)
    assert manifest["files"]["coords"] == "coords/L{layer}H{head}_{layout}.bin.gz" and "attn" not in manifest["files"]
    detail = read_head_detail(tmp_path, 0, 4, manifest)
    assert detail["metrics"]["score_0"] == full and detail["related"] == [{"layer": 0, "head": 1, "similarity": 0.5}]
    assert "thumbs" not in detail and detail["schema_version"] == SCHEMA_VERSION
    head = read_head(tmp_path, 0, 0, manifest)
    assert np.array_equal(head.point_id, np.arange(500)) and head.norm.shape == (500,)
    for name, xyz in model["coords"].items():
        assert np.max(np.abs(head.layouts[name] - xyz)) <= np.ptp(xyz, axis=0).max() / 65535
    (tmp_path / "heads" / "L0H4.json").write_text(json.dumps({**detail, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        read_head_detail(tmp_path, 0, 4, manifest)


def test_outputs_are_byte_identical(tmp_path: Path) -> None:
    _write_model(tmp_path / "a", 125, 9, {"pca-2d": 2})
    _write_model(tmp_path / "b", 125, 9, {"pca-2d": 2})
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 1 + 1 + 1 + 9 + 1  # tokens, coords, norms, 9 head files, manifest
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_input_attention_blob_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    heads = []
    for layer, head, kv in [(1, 3, 1), (1, 0, 0), (1, 2, 0)]:
        w = rng.random((4, 4))
        heads.append((layer, head, kv, w / w.sum(1, keepdims=True)))
    write_input_attention(tmp_path / "a.bin.gz", 7, 40, heads)
    back = read_input_attention(tmp_path / "a.bin.gz")
    assert (back.input_id, back.first_token) == (7, 40) and list(back.weights) == [(1, 3), (1, 0), (1, 2)]
    assert back.kv_head == {(1, 3): 1, (1, 0): 0, (1, 2): 0}
    for layer, head, _, w in heads:
        assert np.max(np.abs(back.weights[(layer, head)] / 255 - w)) <= 0.5 / 255 + 1e-7
    stored = (tmp_path / "a.bin.gz").read_bytes()
    assert stored[:2] == b"\x1f\x8b" and gzip.decompress(stored) == input_blob(7, 40, heads)
    write_input_attention(tmp_path / "b.bin.gz", 7, 40, heads)
    assert (tmp_path / "b.bin.gz").read_bytes() == stored, "no timestamp in the gzip header"
    (tmp_path / "plain.bin").write_bytes(input_blob(7, 40, heads))
    assert read_input_attention(tmp_path / "plain.bin").weights.keys() == back.weights.keys()
    assert int.from_bytes(input_blob(7, 40, heads)[4:8], "little") == SCHEMA_VERSION
    with pytest.raises(ValueError, match="expected"):
        input_blob(0, 0, [(0, 0, 0, np.zeros((2, 2))), (0, 1, 0, np.zeros((3, 3)))])


def test_causal_inputs_store_lower_triangles_and_read_back_square(tmp_path) -> None:
    """Weights all zero above the diagonal (every head of the file) are stored as lower triangles, packing 1:
    n(n+1)/2 bytes a head, read back as the same n × n bytes; one weight above the diagonal keeps full blocks."""
    rng = np.random.default_rng(3)
    n = 5
    causal = [(2, h, 0, np.tril(rng.random((n, n)))) for h in range(3)]
    blob = input_blob(4, 9, causal)
    assert struct.unpack_from("<I", blob, 24) == (LOWER,) and len(blob) == INPUT_HEADER + 3 * 16 + 3 * n * (n + 1) // 2
    (tmp_path / "c.bin").write_bytes(blob)
    back = read_input_attention(tmp_path / "c.bin")
    for layer, head, _, w in causal:
        assert np.array_equal(back.weights[(layer, head)], quantize_weights(w))
    leaky = causal + [(2, 3, 0, np.eye(n) + np.eye(n, k=1) * 0.01)]
    full = input_blob(4, 9, leaky)
    assert struct.unpack_from("<I", full, 24) == (FULL,) and len(full) == INPUT_HEADER + 4 * 16 + 4 * n * n
    (tmp_path / "f.bin").write_bytes(full)
    assert np.array_equal(read_input_attention(tmp_path / "f.bin").weights[(2, 0)], quantize_weights(causal[0][3]))


def test_relative_aggregate_means_per_offset() -> None:
    w = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    agg = relative_aggregate([SentenceAttention(0, np.arange(3), w)], causal=True, layer=1, head=2)
    assert (agg["offsets"], agg["count"], agg["kind"]) == ([-2, 0], [1, 2, 3], "relative-position")
    assert agg["mean"] == pytest.approx([0.2, (0.5 + 0.3) / 2, (1.0 + 0.5 + 0.5) / 3], rel=1e-4)
    both = relative_aggregate([SentenceAttention(0, np.arange(3), w), SentenceAttention(1, np.arange(2), np.eye(2))],
                              causal=False, layer=1, head=2)
    assert both["offsets"] == [-2, 2] and both["count"] == [1, 3, 5, 3, 1]
    assert both["mean"][2] == pytest.approx((2.0 + 2.0) / 5, rel=1e-4) and both["mean"][4] == 0.0


def test_patch_aggregate_by_2d_offset() -> None:
    grid, prefix = (2, 2), 1
    n = prefix + 4
    w = np.zeros((n, n))
    for q in range(4):  # every patch attends 0.6 to the patch to its right (wrapping) and 0.4 to CLS
        r, c = divmod(q, 2)
        w[prefix + q, prefix + r * 2 + (c + 1) % 2] = 0.6
        w[prefix + q, 0] = 0.4
    agg = patch_aggregate([SentenceAttention(0, np.arange(n), w)], grid, prefix, 0, 0)
    assert agg["rows"] == [-1, 1] and agg["cols"] == [-1, 1] and agg["prefix_mean"] == pytest.approx(0.4)
    mean = np.array(agg["mean"])
    assert mean[1, 2] == pytest.approx(0.6) and mean[1, 0] == pytest.approx(0.6)  # Δcol = +1 and −1 (wrapped)
    assert np.array(agg["count"])[1, 1] == 4 and mean[1, 1] == 0.0


def _served(path: Path) -> int:
    """Bytes GitHub Pages sends: JSON gzip-compressed, Arrow as is."""
    data = path.read_bytes()
    return len(gzip.compress(data, 6, mtime=0)) if path.suffix == ".json" else len(data)


def test_head_page_payload_fits_the_budget_at_demo_scale(tmp_path: Path) -> None:
    """~5k tokens (10k points), 270 heads: what a head page fetches stays ≤ 300 KB raw."""
    model = _write_model(tmp_path, 5000, 270, {"pca-2d": 2, "tsne-2d": 2, "umap-2d": 2})
    manifest = model["written"]
    opened = [tmp_path / "manifest.json", tmp_path / head_path("head", 3, 4), tmp_path / "tokens.arrow",
              tmp_path / head_path("coords", 0, 0, "pca-2d")]
    raw = sum(p.stat().st_size for p in opened)
    assert manifest["points"]["count"] == 10_000
    assert raw <= PAGE_BUDGET, {p.name: p.stat().st_size for p in opened}
    assert sum(_served(p) for p in opened) <= 0.6 * PAGE_BUDGET
    assert (tmp_path / head_path("coords", 0, 0, "pca-2d")).stat().st_size <= 4 * 10_000 + 2 * KB


def test_thumbnail_has_query_and_key_colours() -> None:
    rng = np.random.default_rng(3)
    coords = np.concatenate([rng.normal(-3, 0.5, (300, 2)), rng.normal(3, 0.5, (300, 2))])
    is_key = np.repeat([False, True], 300)
    png = thumbnail_png(coords, is_key, 96)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert img.shape == (96, 96, 3)
    near = lambda c: (np.abs(img - _rgb(c)).sum(-1) < 60).sum()  # noqa: E731
    assert near(QUERY_COLOUR) > 20 and near(KEY_COLOUR) > 20
    left, right = img[:, :48], img[:, 48:]
    assert (np.abs(left - _rgb(QUERY_COLOUR)).sum(-1) < 60).sum() > (np.abs(right - _rgb(QUERY_COLOUR)).sum(-1) < 60).sum()
    assert thumbnail_png(coords, is_key, 96) == png
    assert Image.open(io.BytesIO(png)).mode == "P", "a 256-colour palette PNG"


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
