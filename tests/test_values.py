"""Value vectors: the value scores on synthetic heads whose answers are known in closed form, the value set and its
layouts in the per-head unit (once per key/value head), and the value files with their explicit ids."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from atlas_build import SCHEMA_VERSION
from atlas_build.export.values import (quantize_rows, value_coords_table, value_path, value_vectors_blob,
                                       values_section, write_layer_values)
from atlas_build.metrics.registry import BY_NAME, for_model
from atlas_build.metrics.values import value_scores, values_by_sentence
from atlas_build.normalize import HeadSample
from atlas_build.normalize.values import FALLBACK_LAYOUT, value_layout_names, value_set
from atlas_build.pipeline.heads import HeadResult, HeadTask, align_values, run_head
from atlas_build.project import ProjectionParams

VALUE_SCORES = ("first_token_output_share", "output_norm_ratio", "attended_value_norm")


def sink_head(n: int, alpha: float) -> np.ndarray:
    """Causal rows: α on position 0 and 1 − α on the diagonal (row 0: all on position 0)."""
    a = np.eye(n) * (1 - alpha)
    a[:, 0] += alpha
    a[0, 0] = 1.0
    return a


def test_sink_head_with_a_small_first_value_matches_the_closed_form() -> None:
    n, alpha, s = 7, 0.8, 0.1  # a sink taking 80% of attention whose value is 10x shorter than the others'
    v = np.zeros((n, 3))
    v[0, 0] = s
    v[1:, 1] = 1.0
    got = value_scores({0: sink_head(n, alpha)}, {0: v}, causal=True)
    total = alpha * s + (1 - alpha)
    assert got["first_token_output_share"] == pytest.approx(alpha * s / total, abs=1e-12)  # 0.286, not 0.8
    assert got["output_norm_ratio"] == pytest.approx(np.hypot(alpha * s, 1 - alpha) / total, abs=1e-12)
    rows = np.arange(1, n)
    assert got["attended_value_norm"] == pytest.approx(np.mean(total / ((s + rows) / (rows + 1))), abs=1e-12)


def test_equal_values_give_the_attention_share_and_ratio_one() -> None:
    rng = np.random.default_rng(0)
    n = 9
    a = rng.random((n, n))
    a /= a.sum(axis=1, keepdims=True)
    v = np.tile(rng.normal(size=4), (n, 1))
    got = value_scores({3: a}, {3: v}, causal=False)
    assert got["first_token_output_share"] == pytest.approx(a[2:, 0].mean(), abs=1e-12)
    assert got["output_norm_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert got["attended_value_norm"] == pytest.approx(1.0, abs=1e-12)


def test_opposite_values_cancel_and_rows_pool_over_sentences() -> None:
    u = np.array([3.0, -4.0])
    half = np.full((2, 2), 0.5)
    got = value_scores({0: half}, {0: np.stack([u, -u])}, causal=False)
    assert got["output_norm_ratio"] == pytest.approx(0.0, abs=1e-12)
    assert "first_token_output_share" not in got  # no row at position ≥ 2: omitted, not NaN
    one_key = np.eye(3)  # each row attends to itself only: ratio 1 on 3 rows
    pooled = value_scores({0: half, 1: one_key}, {0: np.stack([u, -u]), 1: np.eye(3)}, causal=False)
    assert pooled["output_norm_ratio"] == pytest.approx((0 + 0 + 1 + 1 + 1) / 5, abs=1e-12)
    swapped = value_scores({1: one_key, 0: half}, {1: np.eye(3), 0: np.stack([u, -u])}, causal=False)
    assert swapped == pooled


def test_values_by_sentence_orders_by_position() -> None:
    v = np.arange(10.0).reshape(5, 2)
    out = values_by_sentence(np.array([4, 4, 2, 4, 2]), np.array([2, 0, 1, 1, 0]), v)
    assert np.array_equal(out[4], v[[1, 3, 0]]) and np.array_equal(out[2], v[[4, 2]])


def test_value_scores_are_registered_for_every_model_kind() -> None:
    for name in VALUE_SCORES:
        assert BY_NAME[name].group == "values" and BY_NAME[name].applies == "both"
    assert set(VALUE_SCORES) <= {s["name"] for s in for_model("text")} & {s["name"] for s in for_model("image")}


def test_value_layouts_are_the_2d_classic_layouts_and_the_set_is_centred() -> None:
    assert value_layout_names(("faithful-2d", "pca-2d", "tsne-2d", "umap-3d", "umap-2d")) == \
        ("pca-2d", "tsne-2d", "umap-2d")
    assert value_layout_names(("faithful-2d", "tsne-3d")) == (FALLBACK_LAYOUT,)
    v = np.random.default_rng(1).normal(size=(6, 3)) + 5.0
    x = value_set(v, np.array([0, 2, 5]))
    assert x.shape == (3, 3) and np.allclose(x.mean(axis=0), 0, atol=1e-6)
    assert np.allclose(x, v[[0, 2, 5]] - v[[0, 2, 5]].mean(axis=0), atol=1e-6)


def _task(values: np.ndarray, head: int, lays_out: bool) -> HeadTask:
    rng = np.random.default_rng(2)
    n_sent, n = 4, 6
    sid = np.repeat(np.arange(n_sent), n)
    pos = np.tile(np.arange(n), n_sent)
    sample = HeadSample(q=rng.normal(size=(n_sent * n, 4)), k=rng.normal(size=(n_sent * n, 4)), sentence_id=sid,
                        position=pos, causal=True, scaling=0.5)
    attn = {}
    for s in range(n_sent):
        a = np.tril(rng.random((n, n)))
        attn[s] = a / a.sum(axis=1, keepdims=True)
    params = ProjectionParams(tsne_perplexity=3.0, tsne_early_iter=5, tsne_iter=10)
    return HeadTask(0, head, 0, sample, attn, None, np.linalg.norm(values, axis=1), ("pca-2d", "tsne-2d"), params,
                    values=values, lays_out_values=lays_out)


def test_the_first_query_head_of_a_kv_head_lays_out_its_values(tmp_path) -> None:
    values = np.random.default_rng(3).normal(size=(24, 5))
    first, second = run_head(_task(values, 0, True)), run_head(_task(values, 1, False))
    assert list(first.value_layouts) == ["pca-2d", "tsne-2d"] and second.value_layouts == {}
    assert all(c.shape == (24, 2) and c.dtype == np.float32 for c in first.value_layouts.values())
    assert set(VALUE_SCORES) <= set(first.metrics) and first.metrics == second.metrics
    expected = value_scores(_task(values, 0, True).attention, values_by_sentence(
        np.repeat(np.arange(4), 6), np.tile(np.arange(6), 4), values), causal=True)
    assert first.metrics["output_norm_ratio"] == pytest.approx(expected["output_norm_ratio"], rel=1e-5)
    first.save(tmp_path / "u")
    back = HeadResult.load(tmp_path / "u")
    assert all(np.array_equal(back.value_layouts[k], v) for k, v in first.value_layouts.items())
    again = run_head(_task(values, 0, True))
    assert all(np.array_equal(again.value_layouts[k], v) for k, v in first.value_layouts.items())  # deterministic
    aligned = align_values([first, second, again])
    assert aligned[1].value_layouts == {} and np.allclose(aligned[2].value_layouts["pca-2d"],
                                                          aligned[0].value_layouts["pca-2d"], atol=1e-5)


def test_value_coords_carry_token_ids_and_the_key_value_head() -> None:
    coords = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.0]], np.float32)
    t = value_coords_table(coords, np.array([7, 9, 300]), layer=2, kv_head=1, layout="tsne-2d")
    assert t.column("token_id").to_pylist() == [7, 9, 300] and t.schema.field("token_id").type == pa.uint16()
    meta = t.schema.metadata
    assert meta[b"atlas.schema_version"] == str(SCHEMA_VERSION).encode()
    assert (meta[b"atlas.layer"], meta[b"atlas.kv_head"], meta[b"atlas.layout"]) == (b"2", b"1", b"tsne-2d")
    (xlo, xhi), (ylo, yhi) = json.loads(meta[b"atlas.range"])
    x = xlo + t.column("x").to_numpy() / 65535 * (xhi - xlo)
    assert np.allclose(x, coords[:, 0], atol=1e-4)
    with pytest.raises(ValueError):
        value_coords_table(coords, np.array([1, 2]), 0, 0, "pca-2d")


def test_value_vectors_round_trip_within_the_int8_step() -> None:
    rng = np.random.default_rng(4)
    v = rng.normal(size=(5, 6)) * np.array([[1], [10], [0.01], [0], [3]])
    blob = value_vectors_blob(3, 2, np.array([10, 11, 12, 13, 14]), v)
    assert blob[:4] == b"VALS" and struct.unpack_from("<5I", blob, 4) == (SCHEMA_VERSION, 3, 2, 6, 5)
    ids = np.frombuffer(blob, "<u4", 5, 24)
    scale = np.frombuffer(blob, "<f4", 5, 44)
    codes = np.frombuffer(blob, np.int8, 30, 64).reshape(5, 6)
    assert ids.tolist() == [10, 11, 12, 13, 14] and len(blob) == 64 + 30
    back = codes * scale[:, None].astype(np.float64)
    step = np.abs(v).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(back - v) <= step / 2 + 1e-6 * np.abs(v).max(axis=1, keepdims=True))
    assert np.array_equal(back[3], np.zeros(6))
    assert np.array_equal(quantize_rows(v)[0], codes)


def test_layer_files_are_per_kv_head_and_reproducible(tmp_path) -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(6, 2, 4))  # 6 tokens, 2 key/value heads
    has_point = np.array([1, 1, 0, 1, 1, 1], bool)
    layouts = {1: {"pca-2d": rng.normal(size=(5, 2)).astype(np.float32)}}
    for out in ("a", "b"):
        assert write_layer_values(tmp_path / out, 0, values, np.arange(100, 106), has_point, layouts) == 4
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == [value_path("coords", 0, 1, "pca-2d"), value_path("vectors", 0, 1)]
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    t = ipc.open_file(pa.memory_map(str(tmp_path / "a" / files[0]))).read_all()
    assert t.column("token_id").to_pylist() == [100, 101, 103, 104, 105]  # the point tokens only, by id
    blob = gzip.decompress((tmp_path / "a" / files[1]).read_bytes())
    assert np.frombuffer(blob, "<u4", 6, 24).tolist() == list(range(100, 106))  # every token: the flow needs them
    section = values_section([HeadResult(0, 0, 1, {}, np.zeros(0), {}, {}, "", value_layouts=layouts[1])],
                             ["tsne-2d", "pca-2d"], 4)
    assert section == {"layouts": ["pca-2d"], "dims": 4, "output": "before W_O",
                       "files": {"coords": "values/coords/L{layer}V{kv_head}_{layout}.arrow",
                                 "vectors": "values/vectors/L{layer}V{kv_head}.bin.gz"}}


def test_the_values_switch_turns_off_the_layouts_not_the_scores() -> None:
    from dataclasses import replace

    from atlas_build.errors import InputError
    from atlas_build.manifest import parse_manifest

    doc = {"datasets": [{"name": "d", "source": "inline", "sentences": ["One two."]}],
           "models": [{"name": "m", "source": "random:bert", "tokenizer": "package:x", "dataset": "d"}]}
    assert parse_manifest(doc, "m.toml").projections.values is True
    spec = parse_manifest({**doc, "projections": {"values": False}}, "m.toml").projections
    assert spec.values is False and ProjectionParams.from_spec(spec, seed=0).values is False
    with pytest.raises(InputError, match=r"projections\.values.*expected true or false"):
        parse_manifest({**doc, "projections": {"values": "no"}}, "m.toml")
    values = np.random.default_rng(3).normal(size=(24, 5))
    task = _task(values, 0, True)
    off = run_head(replace(task, params=replace(task.params, values=False)))
    assert off.value_layouts == {} and set(VALUE_SCORES) <= set(off.metrics)


def test_site_size_estimate_matches_the_measured_demo_and_warns_when_over_the_budget() -> None:
    """`atlas validate`'s size line: the demo's all-MiniLM-L6-v2 (72 heads × 9,940 points, seven layouts) measured
    33.0 MB of data without values in schema version 6 (23.7 MB of it coordinates; 18.2 MB at 12 bits) and 18.9 MB
    of value files; a 144-head MiniLM-shaped model at 10k points is then over DESIGN.md's 100 MB with values and
    within it without them or at 12 bits, and the warning names both switches."""
    from atlas_build.manifest import ProjectionSpec
    from atlas_build.normalize.values import value_layout_names
    from atlas_build.validate import head_site_bytes, size_lines

    layouts = ProjectionSpec().layouts
    n_values = len(value_layout_names(layouts))
    demo = 72 * head_site_bytes(9_940, layouts, 32, 1.0, n_values)
    without = 72 * head_site_bytes(9_940, layouts)
    assert without == pytest.approx(33.0e6, rel=0.05) and demo - without == pytest.approx(18.9e6, rel=0.05)
    coords16 = without - 72 * 9_940 * head_site_bytes(1, ())
    coords12 = 72 * head_site_bytes(9_940, layouts, coordinate_bits=12) - 72 * 9_940 * head_site_bytes(1, ())
    assert coords16 == pytest.approx(23.7e6, rel=0.02) and coords12 == pytest.approx(18.2e6, rel=0.02)
    lines = size_lines("minilm", 144, 10_000, layouts, True, 32, 1.0, n_values)
    assert "about 107 MB (budget 100 MB for 144 heads × 10,000 points)" in lines[0] and len(lines) == 2
    assert "`[projections] values = false` brings it to about 68 MB" in lines[1]
    assert "`[export] coordinate_bits = 12` to about 96 MB" in lines[1] and "both to about 57 MB" in lines[1]
    assert len(size_lines("minilm", 144, 10_000, layouts, False, 32, 1.0, n_values)) == 1
    at12 = size_lines("minilm", 200, 10_000, layouts, False, 32, 1.0, n_values, 12)
    assert len(at12) == 1 and "about 79 MB" in at12[0], "within its budget: no warning"
    # grouped-query attention shares a key/value head's files: 3 query heads per key/value head pay a third each
    base = head_site_bytes(10_000, layouts)
    assert (head_site_bytes(10_000, layouts, 64, 1 / 3, n_values) - base
            == pytest.approx((head_site_bytes(10_000, layouts, 64, 1.0, n_values) - base) / 3))
