"""Value vectors: the value scores and output norms on synthetic heads whose answers are known in closed form, the
value set and its layouts in the per-head unit (once per key/value head), and the value files with their explicit
ids."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from atlas_build import SCHEMA_VERSION
from atlas_build.errors import SchemaVersionError
from atlas_build.export import coords_header, read_value_coords, read_value_norms, write_coords
from atlas_build.export.values import norms_blob, value_path, values_section, write_layer_values
from atlas_build.export.writer import byte_planes
from atlas_build.metrics.registry import BY_NAME, for_model
from atlas_build.metrics.values import output_norms, sentence_rows, value_scores, values_by_sentence
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


def test_value_coords_carry_token_ids_and_the_key_value_head(tmp_path) -> None:
    coords = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.0]], np.float32)
    path = tmp_path / "v.bin.gz"
    write_coords(path, coords, 2, 1, "tsne-2d", 12, token_ids=np.array([7, 9, 70_000]))
    blob = gzip.decompress(path.read_bytes())
    assert blob[:4] == b"VCRD" and struct.unpack_from("<7I", blob, 4) == (SCHEMA_VERSION, 2, 1, 3, 2, 12, 7)
    with pytest.raises(SchemaVersionError):  # the head files' reader refuses a value layout, and the other way round
        coords_header(path)
    ids, back = read_value_coords(path)
    assert ids.tolist() == [7, 9, 70_000]
    assert np.abs(back - coords).max() <= 0.5 * 3 / 4095 + 1e-9  # half a 12-bit step of the widest range
    write_coords(tmp_path / "h.bin.gz", coords, 2, 1, "tsne-2d", 12)
    with pytest.raises(SchemaVersionError):
        read_value_coords(tmp_path / "h.bin.gz")
    with pytest.raises(ValueError):
        write_coords(path, coords, 0, 0, "pca-2d", 12, token_ids=np.array([1, 2]))


def _read_norms(blob: bytes, tmp_path) -> tuple[bytes, tuple, np.ndarray, np.ndarray]:
    """(magic, (version, layer, index, count), ids, norms [N, columns]) of a norms blob, by the reader."""
    (tmp_path / "blob").write_bytes(blob)
    r = read_value_norms(tmp_path / "blob")
    return blob[:4], struct.unpack_from("<4I", blob, 4), r.token_id, r.norms


def test_norms_blob_keeps_ids_and_float32_norms_in_byte_planes(tmp_path) -> None:
    ids, norms = np.array([10, 11, 300, 70_000]), np.array([0.0, 1.5, 2.0 ** -20, 1234.5678])
    blob = norms_blob("norms", 3, 2, ids, norms)
    magic, header, back_ids, back = _read_norms(blob, tmp_path)
    assert (magic, header) == (b"VNRM", (SCHEMA_VERSION, 3, 2, 4)) and len(blob) == 20 + 8 * 4
    assert back_ids.tolist() == ids.tolist() and np.array_equal(back[:, 0], norms.astype(np.float32))
    assert blob[20:24] == bytes([10, 11, 300 & 0xFF, 70_000 & 0xFF])  # plane 0: the lowest byte of every id
    both = np.stack([norms, 2 * norms], axis=1)
    magic, header, _, back = _read_norms(norms_blob("outputs", 0, 1, ids, both), tmp_path)
    assert magic == b"ONRM" and np.array_equal(back, both.astype(np.float32))  # column after column
    assert byte_planes(np.array([1, 2], "<u2")) == bytes([1, 2, 0, 0])
    for bad_blob in (blob[:-1], b"CRDS" + blob[4:]):  # truncated; not a norms file
        (tmp_path / "bad").write_bytes(bad_blob)
        with pytest.raises(SchemaVersionError):
            read_value_norms(tmp_path / "bad")
    for kind, bad in (("norms", norms[:2]), ("outputs", norms), ("norms", both)):
        with pytest.raises(ValueError):
            norms_blob(kind, 0, 0, ids, bad)


def test_output_norms_are_the_rows_the_scores_read() -> None:
    """‖Σ_j A_ij v_j‖ and Σ_j A_ij ‖v_j‖ by query position over each sentence's cleaned rows: a sink row gives
    ‖v_0‖ twice, a row split between opposite values gives 0 and 5, a causal row's future keys and NaN weights do
    not count, a dead row gives 0, and the mean of their ratio over the multi-key rows is the head's
    output_norm_ratio."""
    v = np.array([[3.0, 4.0], [-3.0, -4.0], [1.0, 0.0]])
    a = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, np.nan, 2.0]])
    got = output_norms({7: a}, {7: v}, causal=True)[7]
    assert got.tolist() == [pytest.approx([5.0, 5.0], abs=1e-12), pytest.approx([0.0, 5.0], abs=1e-12),
                            pytest.approx([1.0, 1.0], abs=1e-12)]
    future = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert output_norms({7: future}, {7: v}, causal=True)[7][:, 0].tolist() == pytest.approx([5.0, 0.0, 1.0], abs=1e-12)
    rng = np.random.default_rng(8)
    att = {s: np.tril(rng.random((5, 5))) for s in range(3)}
    vals = {s: rng.normal(size=(5, 3)) for s in range(3)}
    out = output_norms(att, vals, causal=True)
    totals = [sum(att[s][i, j] / att[s][i].sum() * np.linalg.norm(vals[s][j]) for j in range(5))
              for s in range(3) for i in range(1, 5)]
    assert np.concatenate([out[s][1:, 1] for s in range(3)]) == pytest.approx(totals, rel=1e-12)
    ratio = np.concatenate([out[s][1:, 0] / out[s][1:, 1] for s in range(3)])
    assert value_scores(att, vals, causal=True)["output_norm_ratio"] == pytest.approx(np.mean(ratio), rel=1e-12)


def test_sentence_rows_group_and_order_by_position() -> None:
    rows = sentence_rows(np.array([4, 2, 4, 2, 4]), np.array([1, 1, 0, 0, 2]))
    assert list(rows) == [2, 4] and rows[2].tolist() == [3, 1] and rows[4].tolist() == [2, 0, 4]
    assert sentence_rows(np.array([], int), np.array([], int)) == {}


def test_layer_files_are_per_kv_head_and_reproducible(tmp_path) -> None:
    rng = np.random.default_rng(5)
    norms = rng.random(size=(6, 2))  # 6 tokens, 2 key/value heads
    has_point = np.array([1, 1, 0, 1, 1, 1], bool)
    layouts = {1: {"pca-2d": rng.normal(size=(5, 2)).astype(np.float32)}}
    outputs = {2: rng.random((6, 2)), 3: rng.random((6, 2))}  # the query heads of key/value head 1
    for out in ("a", "b"):
        write_layer_values(tmp_path / out, 0, norms, np.arange(100, 106), has_point, layouts, outputs, 12)
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted([value_path("coords", 0, 1, "pca-2d"), value_path("norms", 0, 1),
                            value_path("outputs", 0, 2), value_path("outputs", 0, 3)])
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    ids, xy = read_value_coords(tmp_path / "a" / value_path("coords", 0, 1, "pca-2d"))
    assert ids.tolist() == [100, 101, 103, 104, 105]  # the point tokens only, by id
    assert struct.unpack_from("<I", gzip.decompress((tmp_path / "a" / value_path("coords", 0, 1, "pca-2d")).read_bytes()),
                              24) == (12,)  # the manifest's coordinate bits
    assert np.allclose(xy, layouts[1]["pca-2d"], atol=np.ptp(layouts[1]["pca-2d"], axis=0).max() / 4095)
    magic, header, ids, back = _read_norms(gzip.decompress((tmp_path / "a" / value_path("norms", 0, 1)).read_bytes()),
                                           tmp_path)
    assert (magic, header) == (b"VNRM", (SCHEMA_VERSION, 0, 1, 6))
    assert ids.tolist() == list(range(100, 106)) and np.array_equal(back[:, 0], norms[:, 1].astype(np.float32))  # every token
    magic, header, ids, back = _read_norms(gzip.decompress((tmp_path / "a" / value_path("outputs", 0, 3)).read_bytes()),
                                           tmp_path)
    assert (magic, header[:3]) == (b"ONRM", (SCHEMA_VERSION, 0, 3)) and np.array_equal(back, outputs[3].astype(np.float32))
    section = values_section([HeadResult(0, 0, 1, {}, np.zeros(0), {}, {}, "", value_layouts=layouts[1])],
                             ["tsne-2d", "pca-2d"], 4)
    assert section == {"layouts": ["pca-2d"], "dims": 4, "output": "before W_O",
                       "files": {"coords": "values/coords/L{layer}V{kv_head}_{layout}.bin.gz",
                                 "norms": "values/norms/L{layer}V{kv_head}.bin.gz",
                                 "outputs": "values/outputs/L{layer}H{head}.bin.gz"}}


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
    33.0 MB of data without values in schema version 6 (23.7 MB of it coordinates; 18.2 MB at 12 bits); its value
    files take 107 KiB per head in schema version 7 (benchmarks/bench_values.py, three heads; 18.9 MB for the model
    in version 6, 12.1 MB of it int8 value vectors). Since schema version 8 pca-2d has no file of its own (it is
    the first two axes of pca-3d's), so those figures less its coordinates are what the estimate must give. A
    144-head MiniLM-shaped model at 10k points is then within DESIGN.md's 100 MB with values; a site over the
    budget gets a warning naming both switches."""
    from atlas_build.manifest import ProjectionSpec
    from atlas_build.normalize.values import value_layout_names
    from atlas_build.validate import COORD_BYTES, NORM_BYTES, head_site_bytes, size_lines

    layouts = ProjectionSpec().layouts
    n_values = len(value_layout_names(layouts))
    demo = 72 * head_site_bytes(9_940, layouts, True, 1.0, n_values)
    without = 72 * head_site_bytes(9_940, layouts)
    pca_2d = {bits: 72 * 9_940 * 2 * COORD_BYTES[bits] for bits in (16, 12)}  # the file schema 8 no longer writes
    assert without == pytest.approx(33.0e6 - pca_2d[16], rel=0.05)
    assert demo - without == pytest.approx(72 * 107 * 1024, rel=0.02)
    coords16 = without - 72 * 9_940 * head_site_bytes(1, ())
    coords12 = 72 * head_site_bytes(9_940, layouts, coordinate_bits=12) - 72 * 9_940 * head_site_bytes(1, ())
    assert coords16 == pytest.approx(23.7e6 - pca_2d[16], rel=0.02)
    assert coords12 == pytest.approx(18.2e6 - pca_2d[12], rel=0.02)
    lines = size_lines("minilm", 144, 10_000, layouts, True, 1.0, n_values)
    assert lines == ["  site data: about 78 MB (budget 100 MB for 144 heads × 10,000 points)"], "within: no warning"
    heavy = layouts + ("tsne-3d", "umap-3d", "pca-3d")  # more coordinates per point than the default set
    lines = size_lines("minilm", 144, 10_000, heavy, True, 1.0, n_values)
    assert "about 103 MB (budget 100 MB for 144 heads × 10,000 points)" in lines[0] and len(lines) == 2
    assert "`[projections] values = false` brings it to about 87 MB" in lines[1]
    assert "`[export] coordinate_bits = 12` to about 86 MB" in lines[1] and "both to about 72 MB" in lines[1]
    at12 = size_lines("minilm", 144, 10_000, heavy, True, 1.0, n_values, 12)
    assert len(at12) == 1 and "about 86 MB" in at12[0], "within its budget at 12 bits: no warning"
    # grouped-query attention shares a key/value head's files: 3 query heads per key/value head pay a third of them,
    # and each its own outputs file (two float32 columns)
    base = head_site_bytes(10_000, layouts)
    shared = head_site_bytes(10_000, layouts, True, 1.0, n_values) - base
    own = 5_000 * 2 * NORM_BYTES
    assert head_site_bytes(10_000, layouts, True, 1 / 3, n_values) - base == pytest.approx(own + (shared - own) / 3)


def test_built_norm_files_are_the_captured_heads_own(tiny_build) -> None:
    """The tiny build's ‖v‖ and outputs files, joined by token id, equal ‖v_j‖, ‖Σ_j A_ij v_j‖ and Σ_j A_ij ‖v_j‖
    recomputed here with plain numpy from its capture (every head: its own attention rows renormalised, its
    key/value head's values), to float32."""
    from atlas_build.capture import load_capture, read_layer

    data = tiny_build / "site" / "data" / "tiny-bert"
    cap = load_capture(next((tiny_build / "cache" / "tiny-bert").glob("capture-*")))
    tok = cap.tokens
    for layer in range(cap.facts.num_layers):
        lc = read_layer(cap.directory, layer)
        for head in range(cap.facts.num_heads):
            kv = cap.facts.kv_head_of_query[head]
            out_file = read_value_norms(data / value_path("outputs", layer, head))
            v_file = read_value_norms(data / value_path("norms", layer, kv))
            ids, outs, vids, vnorms = out_file.token_id, out_file.norms, v_file.token_id, v_file.norms
            assert (out_file.kind, out_file.layer, out_file.index) == ("outputs", layer, head)
            assert (v_file.kind, v_file.layer, v_file.index) == ("norms", layer, kv)
            assert sorted(ids.tolist()) == sorted(tok.token_id.tolist()) and vids.tolist() == ids.tolist()
            expected_out, expected_v = {}, {}
            for sid in np.unique(tok.sentence_id):
                rows = np.flatnonzero(tok.sentence_id == sid)
                rows = rows[np.argsort(tok.position[rows])]
                a = lc.attention(int(sid))[head].astype(np.float64)
                a /= a.sum(axis=1, keepdims=True)  # the capture stores float16 rows: they sum to 1 ± 1e-3
                v = lc.v[rows, kv].astype(np.float64)
                for i, r in enumerate(rows):
                    expected_out[int(tok.token_id[r])] = (np.linalg.norm(a[i] @ v), a[i] @ np.linalg.norm(v, axis=1))
                    expected_v[int(tok.token_id[r])] = np.linalg.norm(v[i])
            np.testing.assert_allclose(outs, [expected_out[t] for t in ids.tolist()], rtol=2e-6)
            np.testing.assert_allclose(vnorms[:, 0], [expected_v[t] for t in ids.tolist()], rtol=2e-6)
