"""Per-query faithfulness (atlas_build.metrics.faithfulness): numbers, the padded ceiling, degenerate heads, pages."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_build.metrics.faithfulness import QueryRows, highdim_faithfulness, layout_faithfulness, space_faithfulness
from atlas_build.normalize import HeadSample, normalize
from atlas_build.normalize.joint import JointSet
from atlas_build.normalize.padded import padded_space
from atlas_build.pipeline.heads import HeadResult, HeadTask, run_head
from atlas_build.project import ProjectionParams
from atlas_build.site.findings import findings_page, model_summary
from atlas_build.site.pages import NOT_DEFINED, faithfulness_table

MEASURES = ("query_rank_corr", "nearest_key_share")


def _softmax_head(lengths, d=16, seed=0, causal=True, scale=1.0):
    """Random q/k and attention = softmax(q·kᵀ·scale + causal mask), per sentence, by position."""
    rng = np.random.default_rng(seed)
    sid = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.concatenate([np.arange(n) for n in lengths])
    q, k = rng.normal(size=(len(sid), d)), rng.normal(size=(len(sid), d)) * rng.uniform(0.5, 2, (len(sid), 1))
    attn = {}
    for s, n in enumerate(lengths):
        rows = np.flatnonzero(sid == s)
        scores = q[rows] @ k[rows].T * scale
        if causal:
            scores = np.where(np.tri(n, dtype=bool), scores, -np.inf)
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        attn[s] = e / e.sum(axis=1, keepdims=True)
    return HeadSample(q, k, sid, pos, causal, scale), attn


def _rows(sample, attn, points=None):
    rows = np.arange(len(sample.q)) if points is None else np.asarray(points)
    joint = JointSet.of(sample.q[rows], sample.k[rows], rows)
    return QueryRows.of(sample, joint, attn), joint


@pytest.mark.parametrize("causal", [True, False])
def test_padded_space_ranks_every_query_exactly(causal: bool) -> None:
    sample, attn = _softmax_head([12, 7, 20, 3, 15], causal=causal, scale=16 ** -0.5)
    rows, joint = _rows(sample, attn)
    hd = highdim_faithfulness(rows, joint, metric="cosine")
    assert hd["padded"]["query_rank_corr"] == pytest.approx(1.0, abs=1e-12)
    assert hd["padded"]["nearest_key_share"] == pytest.approx(1.0, abs=1e-12)
    assert -1.0 <= hd["normalised"]["query_rank_corr"] < 1.0
    # A "layout" identical to the padded space is exact too; every point is on the unit sphere and the padded
    # distance is 2 − 2·q·k/(‖q‖·M), M the largest key length.
    x = padded_space(sample.q, sample.k)
    assert layout_faithfulness(rows, x) == hd["padded"]
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0)
    m, kmax = len(sample.q), np.linalg.norm(sample.k, axis=1).max()
    d2 = ((x[0] - x[m + 1]) ** 2).sum()
    assert d2 == pytest.approx(2 - 2 * sample.q[0] @ sample.k[1] / (np.linalg.norm(sample.q[0]) * kmax))
    # the normalization (q' = c·q, k' = k/c + t) shifts each row's dot products by one constant: the padded space of
    # the normalised points, which faithful-2d is computed from, ranks every query's keys exactly too
    qn, kn, _ = normalize(sample, metric="cosine")
    assert layout_faithfulness(rows, padded_space(qn, kn)) == pytest.approx(hd["padded"], abs=1e-12)


def test_padded_space_of_degenerate_points() -> None:
    q = np.array([[0.0, 0.0], [3.0, 4.0]])
    x = padded_space(q, np.zeros((2, 2)))  # no key has a length: M = 1, every key at the pad axis's pole
    np.testing.assert_array_equal(x, [[0, 0, 0], [0.6, 0.8, 0], [0, 0, 1], [0, 0, 1]])
    assert np.isfinite(padded_space(q, np.array([[1.0, 0.0], [0.0, 2.0]]))).all()
    with pytest.raises(ValueError, match="one d"):
        padded_space(q, np.zeros((2, 3)))


def test_random_layout_is_near_zero_and_seeded_runs_agree() -> None:
    sample, attn = _softmax_head([30] * 60, seed=1, scale=0.25)
    rows, _ = _rows(sample, attn)
    coords = np.random.default_rng(2).normal(size=(2 * len(sample.q), 2))
    got = layout_faithfulness(rows, coords)
    assert abs(got["query_rank_corr"]) < 0.03
    # Nearest key at random: its share is the mean of attention / row max, well below 1.
    assert 0.1 < got["nearest_key_share"] < 0.7
    assert layout_faithfulness(_rows(sample, attn)[0], coords.copy()) == got


def test_hand_computed_row() -> None:
    """One bidirectional 3-token sentence: query 0 sees keys at distances 1, 2, 3 with attention 0.3, 0.5, 0.2."""
    sample = HeadSample(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3, int), np.arange(3), False, 1.0)
    attn = {0: np.array([[0.3, 0.5, 0.2], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 0.0]])}
    rows, _ = _rows(sample, attn)
    coords = np.array([[0, 0], [10, 0], [20, 0], [1, 0], [2, 0], [3, 0]], float)
    got = layout_faithfulness(rows, coords)
    # Row 1 (uniform) has no ranking; row 2 (fully masked) has neither measure.
    # Row 0: −distance ranks (3, 2, 1) against attention ranks (2, 3, 1): Spearman 0.5; nearest key share 0.3/0.5.
    # Row 1: nearest key share 1.
    assert got["query_rank_corr"] == pytest.approx(0.5)
    assert got["nearest_key_share"] == pytest.approx((0.6 + 1.0) / 2)


def test_nearest_key_share_is_one_when_the_nearest_key_is_the_argmax() -> None:
    """A "look at self" head: each query's top key is its own, and the layout puts each query on its own key."""
    sample, _ = _softmax_head([9, 14, 6], seed=3)
    rng = np.random.default_rng(0)
    attn = {}
    for s, n in enumerate((9, 14, 6)):
        rest = np.tril(rng.uniform(0.1, 1, (n, n)), -1)
        rest = np.where(rest.sum(axis=1, keepdims=True) > 0, rest / np.maximum(rest.sum(1, keepdims=True), 1e-9), 0)
        attn[s] = 0.5 * np.eye(n) + 0.49 * rest
    rows, _ = _rows(sample, attn)
    m = len(sample.q)
    spots = rng.normal(size=(m, 2)) * 100
    got = layout_faithfulness(rows, np.concatenate([spots, spots]))
    assert got["nearest_key_share"] == 1.0
    moved = np.concatenate([spots, np.roll(spots, 1, axis=0)])  # each query now sits on the previous token's key
    assert layout_faithfulness(rows, moved)["nearest_key_share"] < 0.9


@pytest.mark.parametrize("causal", [True, False])
def test_measures_equal_a_row_by_row_reference(causal: bool) -> None:
    """The one-pass kernel against the definition, query by query (scipy's Spearman with average ranks), on a
    picture with many tied distances and in the cosine space."""
    from scipy import stats

    sample, attn = _softmax_head([9, 2, 17, 30, 5], seed=4, causal=causal, scale=0.3)
    rows, joint = _rows(sample, attn)
    m = len(sample.q)

    def reference(dist):
        corr, share = [], []
        for s, a in attn.items():
            tok = np.flatnonzero(sample.sentence_id == s)
            for i in range(len(tok)):
                keys = np.arange(i + 1) if causal else np.arange(len(tok))
                d = np.array([dist(tok[i], m + tok[j]) for j in keys])
                w = a[i, keys]
                if len(keys) < 2 or np.all(d == d.min()):
                    continue
                share.append(w[d == d.min()].mean() / w.max())
                if np.ptp(w) > 0:
                    corr.append(stats.spearmanr(-d, w).statistic)
        return {"query_rank_corr": np.mean(corr), "nearest_key_share": np.mean(share)}

    coords = np.round(np.random.default_rng(5).normal(size=(2 * m, 2)) * 2) / 2  # many ties
    want = reference(lambda i, j: np.linalg.norm(coords[i] - coords[j]))
    got = layout_faithfulness(rows, coords)
    assert got == pytest.approx(want, abs=1e-12)
    unit = joint.x / np.linalg.norm(joint.x, axis=1, keepdims=True)
    want = reference(lambda i, j: 1.0 - unit[i] @ unit[j])
    assert space_faithfulness(rows, joint.x, "cosine") == pytest.approx(want, abs=1e-12)


def test_degenerate_heads_say_not_defined() -> None:
    # One-token sentences: no row covers two keys.
    sample, attn = _softmax_head([1] * 8, seed=4)
    assert _rows(sample, attn)[0].blocks == ()
    # Fully masked rows (all zero or NaN): nothing to measure.
    sample, attn = _softmax_head([6, 5], seed=5)
    masked = {0: np.zeros((6, 6)), 1: np.full((5, 5), np.nan)}
    rows, joint = _rows(sample, masked)
    assert highdim_faithfulness(rows, joint, metric="cosine") == {"normalised": {}, "padded": {}}
    # Uniform attention: no ranking, but every nearest key gets the top attention.
    uniform = {s: np.full_like(a, 1 / a.shape[1]) for s, a in _softmax_head([6, 5], seed=5, causal=False)[1].items()}
    flat = HeadSample(sample.q, sample.k, sample.sentence_id, sample.position, False, 1.0)
    got = layout_faithfulness(QueryRows.of(flat, joint, uniform), np.random.default_rng(0).normal(size=(22, 2)))
    assert got == {"nearest_key_share": 1.0}
    # A collapsed layout (every point in one place): no nearest key, no ranking.
    assert layout_faithfulness(_rows(sample, attn)[0], np.zeros((22, 2))) == {}


def test_all_weight_on_one_key() -> None:
    """A sink head (one-hot on position 0): defined where a row covers two keys, exact numbers by construction."""
    sample, _ = _softmax_head([5, 7], seed=6)
    sink = {s: np.eye(n)[np.zeros(n, int)] for s, n in ((0, 5), (1, 7))}
    rows, _ = _rows(sample, sink)
    m = len(sample.q)
    near = np.zeros((2 * m, 1))
    near[m:, 0] = 1 + sample.position  # key j at distance 1 + j from every query: position 0 nearest
    got = layout_faithfulness(rows, near)
    assert got["nearest_key_share"] == 1.0
    far = near.copy()
    far[m:, 0] = 100 - sample.position
    assert layout_faithfulness(rows, far)["nearest_key_share"] == 0.0
    assert layout_faithfulness(rows, far)["query_rank_corr"] == pytest.approx(-got["query_rank_corr"])


def test_image_prefix_tokens_without_points() -> None:
    """All attention on prefix (CLS/register) tokens that carry no points: the covered keys get none of it."""
    sample, _ = _softmax_head([10, 10], seed=7, causal=False)
    prefix = {s: np.tile(np.r_[0.6, 0.4, np.zeros(8)], (10, 1)) for s in (0, 1)}
    points = np.flatnonzero(sample.position >= 2)
    rows, joint = _rows(sample, prefix, points)
    assert highdim_faithfulness(rows, joint, metric="euclidean") == {"normalised": {}, "padded": {}}
    task = HeadTask(0, 0, 0, sample, prefix, None, np.ones(20), ("pca-2d",), ProjectionParams(), points=points)
    res = run_head(task)
    assert res.layouts["pca-2d"].shape == (2 * len(points), 2)
    assert not set(MEASURES) & set(res.trust["pca-2d"]) and res.highdim == {"normalised": {}, "padded": {}}


def test_run_head_records_and_saves_the_measures(tmp_path) -> None:
    sample, attn = _softmax_head([12, 9, 15, 1], seed=8, scale=0.25)
    res = run_head(HeadTask(1, 2, 0, sample, attn, None, np.ones(37), ("pca-2d", "pca-3d"), ProjectionParams()))
    for name in ("pca-2d", "pca-3d"):
        assert set(MEASURES) <= set(res.trust[name])
    assert res.highdim["padded"] == {"nearest_key_share": 1.0, "query_rank_corr": 1.0}
    assert set(res.highdim["normalised"]) == set(MEASURES)
    res.save(tmp_path)
    assert HeadResult.load(tmp_path).highdim == res.highdim
    again = run_head(HeadTask(1, 2, 0, sample, attn, None, np.ones(37), ("pca-2d", "pca-3d"), ProjectionParams()))
    assert again.trust == res.trust and again.highdim == res.highdim


def test_pages_print_not_defined_never_nan() -> None:
    table = faithfulness_table({"pca-2d": {"query_rank_corr": 0.5}, "tsne-2d": {"nearest_key_share": float("nan")}},
                               {"normalised": {}, "padded": {"query_rank_corr": 1.0, "nearest_key_share": 1.0}})
    assert "nan" not in table.lower() and table.count(NOT_DEFINED) == 5
    assert "| layout pca\\-2d | 0.5 | not defined |" in table
    manifest = {"model": {"name": "m", "title": "M", "causal": True}, "layouts": ["pca-2d"],
                "heads": [{"layer": 0, "head": 0, "label": "mixed", "thumbs": {}, "metrics": {},
                           "norm": {"spearman_cosine_dot": -0.5, "mean_q_norm": 1.0, "mean_k_norm": 1.0},
                           "trust": {"pca-2d": {"trustworthiness": 0.9}}, "highdim": {}}]}
    assert model_summary(manifest)["highdim"]["padded"]["query_rank_corr"] != model_summary(manifest)["highdim"][
        "padded"]["query_rank_corr"]  # NaN: no head defines it
    page = findings_page([manifest])
    assert "nan" not in page.lower() and "| pca-2d | not defined | 0.900 | 0.900 | not defined | not defined |" in page


def test_worked_example_measures_both_layouts_against_both_spaces() -> None:
    """The How-to-read example gives faithful-2d's trustworthiness against its own (padded) space and against the
    normalised joint set, where the classic layout's one number is both."""
    from atlas_build.site.faithful_example import faithful_example

    trust = {"tsne-2d": {"query_rank_corr": 0.2, "nearest_key_share": 0.3, "trustworthiness": 0.95},
             "faithful-2d": {"query_rank_corr": 0.8, "nearest_key_share": 0.9, "trustworthiness": 0.91,
                             "trustworthiness_normalised": 0.84}}
    model = {"name": "m", "title": "M", "layouts": ["tsne-2d", "faithful-2d"], "model": {"num_heads": 2},
             "thumbnails": {"layouts": ["tsne-2d", "faithful-2d"], "strips": "t/L{layer}-{layout}.png"},
             "heads": [{"layer": 0, "head": 1, "trust": trust}]}
    text = faithful_example([model])
    assert "| trustworthiness@10 (against the space the layout is computed from) | 0.95 | 0.91 |" in text
    assert "| trustworthiness@10 against the normalised joint set | 0.95 | 0.84 |" in text
    assert "| ranking (query_rank_corr) | 0.20 | 0.80 |" in text
    summary = model_summary({"heads": [{"layer": 0, "head": 1, "label": "broad", "trust": trust,
                                        "norm": {"spearman_cosine_dot": -0.5, "mean_q_norm": 1, "mean_k_norm": 1},
                                        "metrics": {}, "highdim": {}}], "layouts": ["tsne-2d", "faithful-2d"]})
    assert summary["trust"]["tsne-2d"]["trustworthiness_normalised"] == 0.95
    assert summary["trust"]["faithful-2d"]["trustworthiness_normalised"] == 0.84
