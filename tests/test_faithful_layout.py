"""The attention-aware layout: its edges (normalize.pairs), rank images, the t-SNE it extends, and what it buys."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_build.metrics import trust_scores
from atlas_build.metrics.faithfulness import QueryRows, layout_faithfulness
from atlas_build.normalize import HeadSample, normalize
from atlas_build.normalize.joint import JointSet
from atlas_build.normalize.padded import padded_space
from atlas_build.normalize.pairs import attention_pairs
from atlas_build.pipeline.heads import HeadTask, run_head
from atlas_build.project import LAYOUTS, ProjectionParams, project
from atlas_build.project import methods
from atlas_build.project.faithful import TRUST_STEPS, StressWeight, TrustSample, faithful_terms, faithful_tsne
from atlas_build.project.knn import exact_knn, prepare

from test_faithfulness import _softmax_head


def test_edges_cover_each_row_in_attention_order() -> None:
    sample, attn = _softmax_head([5, 1, 4], causal=True)
    joint = JointSet.of(sample.q, sample.k)
    pairs = attention_pairs(sample, joint, attn)
    m = joint.m
    # causal rows: query at position p covers positions 0..p; the one-token sentence and first positions have < 2
    assert len(pairs) == sum(p + 1 for p in range(1, 5)) + sum(p + 1 for p in range(1, 4))
    assert (pairs.query < m).all() and (pairs.key >= m).all()
    assert (np.diff(pairs.query) >= 0).all()
    for q in np.unique(pairs.query):
        sel = pairs.query == q
        keys = pairs.key[sel] - m
        assert (sample.sentence_id[keys] == sample.sentence_id[q]).all()
        assert (sample.position[keys] <= sample.position[q]).all()
        assert (np.diff(pairs.attention[sel]) <= 0).all()
        np.testing.assert_array_equal(pairs.attention[sel],
                                      attn[sample.sentence_id[q]][sample.position[q], sample.position[keys]])


def test_long_rows_keep_the_top_key_and_span_the_ranking() -> None:
    sample, attn = _softmax_head([40], causal=False)
    joint = JointSet.of(sample.q, sample.k)
    pairs = attention_pairs(sample, joint, attn, max_keys=5)
    assert len(pairs) == 40 * 5
    row = attn[0][0]
    kept = pairs.attention[pairs.query == 0]
    ranked = np.sort(row)[::-1]
    np.testing.assert_array_equal(kept, ranked[[0, 10, 20, 29, 39]])  # evenly spaced ranks of 40, rounded


def test_degenerate_rows_give_no_edges_and_the_layout_still_exists() -> None:
    sample, attn = _softmax_head([6, 6, 1], causal=False)
    attn[0] = np.zeros_like(attn[0])  # fully masked rows
    attn[1] = np.full_like(attn[1], np.nan)  # not finite
    joint = JointSet.of(sample.q, sample.k)
    assert len(attention_pairs(sample, joint, attn)) == 0
    task = HeadTask(0, 0, 0, sample, attn, None, np.ones(len(sample.q)), ("faithful-2d",),
                    ProjectionParams(tsne_perplexity=2.0))
    res = run_head(task)
    assert res.layouts["faithful-2d"].shape == (2 * len(sample.q), 2)
    assert "query_rank_corr" not in res.trust["faithful-2d"]  # not defined, not NaN


def test_points_subset_maps_edges_to_joint_ids() -> None:
    sample, attn = _softmax_head([6, 6], causal=False)
    rows = np.array([0, 2, 3, 7, 8, 11])
    joint = JointSet.of(sample.q[rows], sample.k[rows], rows)
    pairs = attention_pairs(sample, joint, attn)
    assert set(pairs.query.tolist()) == set(range(6))
    for q, k, a in zip(pairs.query, pairs.key, pairs.attention):
        tq, tk = rows[q], rows[k - 6]
        assert sample.sentence_id[tq] == sample.sentence_id[tk]
        assert a == attn[sample.sentence_id[tq]][sample.position[tq], sample.position[tk]]


def test_rank_images_reassign_each_rows_distances_in_attention_order() -> None:
    sample, attn = _softmax_head([7, 9], causal=True, seed=3)
    joint = JointSet.of(*normalize(sample, metric="cosine")[:2])
    pairs = attention_pairs(sample, joint, attn)
    x = prepare(joint.x.astype(np.float32), "cosine")
    terms = faithful_terms(x, pairs, "cosine")
    dist = 1.0 - (x[pairs.query].astype(np.float64) * x[pairs.key]).sum(axis=1)
    for q in np.unique(pairs.query):
        sel = pairs.query == q
        np.testing.assert_allclose(terms.target[sel], np.sort(np.maximum(dist[sel], 0)))
    assert terms.p_attn.sum() == pytest.approx(1.0)
    assert (terms.p_attn - terms.p_attn.T).count_nonzero() == 0


def _terms_and_picture(causal: bool, seed: int, max_keys: int, picture_seed: int):
    """A small softmax head's edges and faithful terms, and a random picture of its points."""
    sample, attn = _softmax_head([7, 9, 5], causal=causal, seed=seed)
    joint = JointSet.of(*normalize(sample, metric="cosine")[:2])
    pairs = attention_pairs(sample, joint, attn, max_keys=max_keys)
    terms = faithful_terms(prepare(joint.x.astype(np.float32), "cosine"), pairs, "cosine")
    return pairs, terms, np.random.default_rng(picture_seed).normal(size=(len(joint.x), 2)) * 3.0


def _central_differences(f, emb: np.ndarray, points: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """∂f/∂emb by central differences at the rows ``points`` (0 elsewhere)."""
    numeric = np.zeros_like(emb)
    for i in np.unique(points):
        for axis in range(emb.shape[1]):
            up, down = emb.copy(), emb.copy()
            up[i, axis] += h
            down[i, axis] -= h
            numeric[i, axis] = (f(up) - f(down)) / (2 * h)
    return numeric


def test_stress_gradient_is_the_derivative_of_the_row_scaled_stress() -> None:
    """The gradient the layout adds is weight·∇ Σ_e (d_e − s_q·δ_e)² / E with s_q each row's least-squares scale
    (recomputed at every point, so the envelope theorem makes it the total derivative): central differences agree."""
    from atlas_build.project.faithful import _stress_gradient

    _, terms, emb = _terms_and_picture(causal=False, seed=4, max_keys=16, picture_seed=0)

    def stress(e: np.ndarray) -> float:
        d = np.linalg.norm(e[terms.query] - e[terms.key], axis=1)
        n = len(e)
        s = np.bincount(terms.query, d * terms.target, n) / np.bincount(terms.query, terms.target ** 2, n).clip(1e-300)
        return float(((d - s[terms.query] * terms.target) ** 2).sum() / len(d))

    grad = np.zeros_like(emb)
    _stress_gradient(emb, terms, 0.7, grad)
    numeric = 0.7 * _central_differences(stress, emb, np.r_[terms.query, terms.key])
    assert np.abs(grad).max() > 1e-3
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("wide", [False, True])
def test_order_gradient_is_the_derivative_of_the_rows_mean_soft_spearman(wide: bool) -> None:
    """The order term adds −weight·order·∇ mean_r corr_r, corr_r the Pearson correlation of row r's soft ranks of
    −distance (σ((u_l − u_j)/τ) summed over its keys, u = d / mean d) with its attention ranks: central differences
    of that objective, written out with numpy, agree (to float32, the kernel's precision for rows of ordinary
    spread; ``wide``: a key far off, so some rows take the pair-by-pair path, its soft ranks in float64); and the
    gradient raises the rows' correlation."""
    from atlas_build.project.faithful import ORDER_FAST_SPREAD, ORDER_TAU, _stress_gradient

    pairs, terms, emb = _terms_and_picture(causal=not wide, seed=5, max_keys=16 if wide else 6, picture_seed=1)
    rows = list(zip(terms.row_start[:-1], terms.row_start[1:]))
    if wide:  # a key of the longest rows far off: its u nears the row's length, the others' 0
        emb[terms.key[max(rows, key=lambda r: r[1] - r[0])[0]]] += 1e4
    spread = max(np.ptp(d / d.mean()) / ORDER_TAU for d in
                 (np.linalg.norm(emb[terms.query[a:b]] - emb[terms.key[a:b]], axis=1) for a, b in rows))
    assert (spread >= ORDER_FAST_SPREAD) == wide

    def mean_corr(e: np.ndarray) -> float:
        corrs = []
        for a, b in rows:
            rank = terms.order_rank[a:b]
            if not (rank ** 2).sum():
                continue
            d = np.linalg.norm(e[terms.query[a:b]] - e[terms.key[a:b]], axis=1) + 1e-12
            u = d / d.mean()
            s = (1.0 / (1.0 + np.exp(-(u[None, :] - u[:, None]) / ORDER_TAU))).sum(axis=1)
            s -= s.mean()
            corrs.append((s * rank).sum() / np.sqrt((s * s).sum()))
        return float(np.mean(corrs))

    grad, stress_only = np.zeros_like(emb), np.zeros_like(emb)
    _stress_gradient(emb, terms, 0.7, grad, order=2.0)
    _stress_gradient(emb, terms, 0.7, stress_only)
    grad -= stress_only
    numeric = -0.7 * 2.0 * _central_differences(mean_corr, emb, np.r_[terms.query, terms.key])
    assert np.abs(grad).max() > 1e-4
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6 * np.abs(grad).max())
    assert mean_corr(emb - 0.05 * grad / np.abs(grad).max()) > mean_corr(emb)
    # rows rank with average ranks (a row whose attention ties shares the rank, a constant row has none)
    from scipy.stats import rankdata

    from atlas_build.project.faithful import _order_ranks

    rows, attention = np.repeat(np.arange(4), 5), np.array([.5, .2, .2, .1, 0., .3, .3, .3, .1, 0.,
                                                             .2, .2, .2, .2, .2, .9, .05, .03, .01, .01])
    starts, ranks = _order_ranks(rows, attention)
    assert starts.tolist() == [0, 5, 10, 15, 20]
    for a in range(0, 20, 5):
        want = rankdata(attention[a:a + 5]) - 3.0
        np.testing.assert_allclose(ranks[a:a + 5], want / np.sqrt((want ** 2).sum()) if want.any() else 0.0)
    for a, b in zip(terms.row_start[:-1], terms.row_start[1:]):
        want = rankdata(pairs.attention[a:b]) - (b - a + 1) / 2.0
        np.testing.assert_allclose(terms.order_rank[a:b], want / np.sqrt((want ** 2).sum()), atol=1e-12)


def test_without_its_terms_it_is_the_classic_tsne_exactly() -> None:
    x = prepare(np.random.default_rng(0).normal(size=(300, 12)).astype(np.float32), "cosine")
    p = ProjectionParams()
    affinities = methods.tsne_affinities(exact_knn(x, 90, "cosine"), p.tsne_perplexity)
    init = methods.pca_basis(x, 2)
    classic = methods.tsne_layout(affinities, init, seed=0, early_iter=p.tsne_early_iter, n_iter=p.tsne_iter,
                                  exaggeration=p.tsne_exaggeration, dof=p.tsne_dof)
    ours = faithful_tsne(affinities, None, init, stress=0.5, mix=0.5, early_iter=p.tsne_early_iter,
                         n_iter=p.tsne_iter, exaggeration=p.tsne_exaggeration, dof=p.tsne_dof)
    np.testing.assert_array_equal(ours, classic)
    assert LAYOUTS["faithful-2d"].needs_graph and LAYOUTS["faithful-2d"].dims == 2
    from atlas_build.validate import LAYOUT_SECONDS_10K
    assert set(LAYOUT_SECONDS_10K) == set(LAYOUTS)  # validate's estimate knows every layout


def _synthetic_head(seed: int = 0, rank: int = 4, d: int = 16, n: int = 24, sentences: int = 40):
    """q and k from one rank-4 latent per token plus noise (structure a 2D picture can keep partly); attention =
    softmax(q·k/√d) within each sentence."""
    rng = np.random.default_rng(seed)
    sid, pos = np.repeat(np.arange(sentences), n), np.tile(np.arange(n), sentences)
    z = rng.normal(size=(sentences * n, rank))
    q = z @ rng.normal(size=(rank, d)) + 0.3 * rng.normal(size=(sentences * n, d))
    k = z @ rng.normal(size=(rank, d)) + 0.3 * rng.normal(size=(sentences * n, d))
    attn = {}
    for s in range(sentences):
        rows = np.flatnonzero(sid == s)
        scores = q[rows] @ k[rows].T / np.sqrt(d)
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        attn[s] = e / e.sum(axis=1, keepdims=True)
    return HeadSample(q, k, sid, pos, False, d ** -0.5), attn


def test_it_orders_keys_like_attention_better_than_tsne_and_keeps_neighbourhoods() -> None:
    sample, attn = _synthetic_head()
    qn, kn, _ = normalize(sample, metric="cosine")
    joint = JointSet.of(qn, kn)
    pairs = attention_pairs(sample, joint, attn)
    params = ProjectionParams()
    padded = JointSet(padded_space(qn, kn).astype(np.float32), joint.token_rows, joint.key_rows)
    out = project(joint.x.astype(np.float32), ("tsne-2d", "faithful-2d"), params, pairs=pairs,
                  spaces={"padded": padded.x})
    rows = QueryRows.of(sample, joint, attn)
    classic, faithful = (layout_faithfulness(rows, out[name]) for name in ("tsne-2d", "faithful-2d"))
    # measured: t-SNE 0.13 / 0.08, faithful 0.68 / 0.46 at trustworthiness 0.997 / 0.908 (floor 0.91; with a fixed
    # weight 0.61 / 0.37 at 0.984: the floor spends the neighbourhoods this head can spare on the ranking)
    assert faithful["query_rank_corr"] > classic["query_rank_corr"] + 0.5
    assert faithful["nearest_key_share"] > classic["nearest_key_share"] + 0.3
    # the trust floor holds against the space the layout is computed from, the padded one
    trust = trust_scores(sample, padded, out["faithful-2d"], metric="cosine")["trustworthiness"]
    assert params.faithful_trust - 0.01 < trust < params.faithful_trust + 0.03
    again = project(joint.x.astype(np.float32), ("faithful-2d",), params, pairs=pairs,
                    spaces={"padded": padded.x})["faithful-2d"]
    assert again.tobytes() == out["faithful-2d"].tobytes()
    with pytest.raises(ValueError, match="computed from the padded space"):
        project(joint.x.astype(np.float32), ("faithful-2d",), params, pairs=pairs)
    with pytest.raises(ValueError, match="rows"):
        project(joint.x.astype(np.float32), ("faithful-2d",), params, pairs=pairs, spaces={"padded": padded.x[1:]})


def test_run_head_measures_each_layout_against_its_own_space() -> None:
    """faithful-2d's trustworthiness is against the padded space it is computed from; its
    trustworthiness_normalised, and every classic layout's trustworthiness, against the normalised joint set."""
    sample, attn = _synthetic_head(sentences=12)
    params = ProjectionParams(tsne_early_iter=20, tsne_iter=60)
    res = run_head(HeadTask(0, 0, 0, sample, attn, None, np.ones(len(sample.q)), ("tsne-2d", "faithful-2d"), params))
    qn, kn, _ = normalize(sample, metric="cosine")
    joint = JointSet.of(qn, kn)
    padded = JointSet(padded_space(qn, kn).astype(np.float32), joint.token_rows, joint.key_rows)

    def trust(points, name):
        return round(trust_scores(sample, points, res.layouts[name], metric="cosine")["trustworthiness"], 6)

    assert res.trust["faithful-2d"]["trustworthiness"] == pytest.approx(trust(padded, "faithful-2d"), abs=1e-6)
    assert res.trust["faithful-2d"]["trustworthiness_normalised"] == pytest.approx(trust(joint, "faithful-2d"),
                                                                                   abs=1e-6)
    assert res.trust["faithful-2d"]["trustworthiness"] != res.trust["faithful-2d"]["trustworthiness_normalised"]
    assert res.trust["tsne-2d"]["trustworthiness"] == pytest.approx(trust(joint, "tsne-2d"), abs=1e-6)
    assert "trustworthiness_normalised" not in res.trust["tsne-2d"]


def test_default_layout_is_chosen_validated_and_exported(tmp_path) -> None:
    from atlas_build.errors import ManifestError
    from atlas_build.manifest import parse_manifest
    from atlas_build.site.pages import default_2d

    base = {"site": {"title": "t"},
            "datasets": [{"name": "d", "source": "inline", "sentences": ["One sentence."]}],
            "models": [{"name": "m", "source": "random:bert", "tokenizer": "package:tok", "dataset": "d"}]}

    def parse(**projections):
        return parse_manifest({**base, "projections": projections}, "x.toml").projections

    assert parse(layouts=["pca-2d", "tsne-2d", "faithful-2d"]).default == "faithful-2d"
    assert parse(layouts=["pca-3d", "umap-2d", "tsne-2d"]).default == "umap-2d"
    assert parse(layouts=["pca-3d"]).default == "pca-3d"
    assert parse(layouts=["tsne-2d", "faithful-2d"], default_layout="tsne-2d").default == "tsne-2d"
    with pytest.raises(ManifestError, match=r"x.toml: projections.default_layout: 'umap-2d' is not one of the "
                                            r"layouts built \(pca-2d, faithful-2d\)"):
        parse(layouts=["pca-2d", "faithful-2d"], default_layout="umap-2d")
    with pytest.raises(ManifestError, match="projections.default_layout: expected one of"):
        parse(default_layout="best")
    # static pages (thumbnails are 2D) show the default when it is 2D, else the first 2D layout
    assert default_2d({"layouts": ["pca-2d", "faithful-2d"], "default_layout": "faithful-2d"}) == "faithful-2d"
    assert default_2d({"layouts": ["pca-3d", "pca-2d"], "default_layout": "pca-3d"}) == "pca-2d"
    assert default_2d({"layouts": ["pca-2d", "tsne-2d"]}) == "pca-2d"


def test_trust_sample_is_sklearns_trustworthiness_on_its_sample() -> None:
    from sklearn.manifold import trustworthiness

    x = prepare(np.random.default_rng(0).normal(size=(500, 12)).astype(np.float32), "cosine")
    est = TrustSample(x, size=300, seed=1)
    assert len(est.idx) == 300 and est.k == 10
    for emb in (methods.pca_basis(x, 2), np.random.default_rng(2).normal(size=(500, 2))):
        # in float64, as the estimate ranks: float32 distances near-tie differently on another CPU's BLAS kernels
        expected = trustworthiness(x[est.idx].astype(np.float64), emb[est.idx], n_neighbors=10, metric="cosine")
        assert est(emb) == pytest.approx(expected, abs=1e-9)
    assert TrustSample(x[:30]).k == 10 and len(TrustSample(x[:15]).idx) == 15 and TrustSample(x[:15]).k == 7


def test_stress_weight_follows_the_trust_floor() -> None:
    sample, attn = _synthetic_head()
    joint = JointSet.of(*normalize(sample, metric="cosine")[:2])
    x = prepare(joint.x.astype(np.float32), "cosine")
    terms = faithful_terms(x, attention_pairs(sample, joint, attn), "cosine")
    p = ProjectionParams()
    affinities = methods.tsne_affinities(exact_knn(x, 90, "cosine"), p.tsne_perplexity)
    init = methods.pca_basis(x, 2)
    rows = QueryRows.of(sample, joint, attn)
    est = TrustSample(x, seed=0)
    runs = {}
    for floor in (0.0, 0.5, 0.999):
        weight = StressWeight(0.03, early_iter=p.tsne_early_iter, n_iter=p.tsne_iter, trust=est, floor=floor)
        emb = faithful_tsne(affinities, terms, init, stress=weight, mix=p.faithful_mix, early_iter=p.tsne_early_iter,
                            n_iter=p.tsne_iter, exaggeration=p.tsne_exaggeration, dof=p.tsne_dof)
        runs[floor] = (weight, layout_faithfulness(rows, emb)["query_rank_corr"], est(emb))
    fixed, easy, hard = runs[0.0], runs[0.5], runs[0.999]
    assert fixed[0].value == 0.03 and fixed[0].history == []  # no floor: the weight is fixed
    # checks at main iterations 50, 75, ..., 175 (a quarter of the 200 to an eighth before the end)
    assert [h[0] for h in easy[0].history] == [p.tsne_early_iter + 25 * j for j in range(2, 8)]
    assert easy[0].value == pytest.approx(0.03 * np.prod(TRUST_STEPS))  # always above 0.5: raised at every check
    assert hard[0].value == pytest.approx(0.03 / np.prod(TRUST_STEPS))  # never reaches 0.999: lowered every time
    # a larger weight orders keys more like attention and keeps fewer neighbourhoods; a smaller one the reverse
    assert easy[1] > fixed[1] > hard[1]
    assert easy[2] < fixed[2] < hard[2]


class _ScriptedTrust:
    """A stand-in for `TrustSample` that answers each check with the next of a fixed list of estimates."""

    k = 10

    def __init__(self, estimates: list[float]) -> None:
        self.estimates = iter(estimates)

    def __call__(self, emb: np.ndarray) -> float:
        return next(self.estimates)


def test_order_term_joins_at_the_first_check_at_the_floor_and_stays() -> None:
    """Below the floor at the first checks, the picture gets the order term from the check that finds it at the floor
    (a head whose stress weight first overshoots and then recovers), and keeps it when a later check dips below."""
    p = ProjectionParams()
    weight = StressWeight(0.03, early_iter=p.tsne_early_iter, n_iter=p.tsne_iter,
                          trust=_ScriptedTrust([0.88, 0.905, 0.912, 0.90, 0.93, 0.95]), floor=0.91)
    checks = sorted(weight.checks)
    emb = np.zeros((4, 2))
    shares = []
    for it in range(p.tsne_early_iter + p.tsne_iter):
        weight.at(it, emb)
        shares.append(weight.order_share)
    assert weight.order_from == checks[2]
    assert shares[checks[2] - 1] == 0.0 and set(shares[checks[2]:]) == {1.0}
    assert [h[1] for h in weight.history] == [0.88, 0.905, 0.912, 0.90, 0.93, 0.95]
    fixed = StressWeight(0.03, early_iter=p.tsne_early_iter, n_iter=p.tsne_iter)
    assert fixed.order_share == 1.0 and fixed.order_from == 0  # a fixed weight: the term throughout


def test_order_term_raises_the_ranking_and_a_head_never_at_the_floor_runs_without_it() -> None:
    """The soft-Spearman term joins at the first trust check if the picture is then at the floor, and raises the
    ranking; a head that never reaches the floor never gets it (the same picture, bit for bit, as without it)."""
    sample, attn = _synthetic_head()
    joint = JointSet.of(*normalize(sample, metric="cosine")[:2])
    x = prepare(joint.x.astype(np.float32), "cosine")
    terms = faithful_terms(x, attention_pairs(sample, joint, attn), "cosine")
    p = ProjectionParams()
    affinities = methods.tsne_affinities(exact_knn(x, 90, "cosine"), p.tsne_perplexity)
    init, rows, est = methods.pca_basis(x, 2), QueryRows.of(sample, joint, attn), TrustSample(x, seed=0)

    def run(floor: float, order: float) -> tuple[StressWeight, np.ndarray]:
        weight = StressWeight(0.03, early_iter=p.tsne_early_iter, n_iter=p.tsne_iter, trust=est, floor=floor)
        return weight, faithful_tsne(affinities, terms, init, stress=weight, mix=p.faithful_mix,
                                     early_iter=p.tsne_early_iter, n_iter=p.tsne_iter,
                                     exaggeration=p.tsne_exaggeration, dof=p.tsne_dof, order=order)

    (w_on, with_order), (_, without) = run(0.5, 25.0), run(0.5, 0.0)
    assert w_on.order_share == 1.0 and w_on.order_from == min(w_on.checks)
    # measured: 0.71 without the term, 0.83 with it (floor 0.5; at the default 0.91, 0.68 → 0.78 at trust 0.908 → 0.928)
    assert layout_faithfulness(rows, with_order)["query_rank_corr"] > \
        layout_faithfulness(rows, without)["query_rank_corr"] + 0.03
    (w_off, hard_order), (_, hard) = run(0.999, 25.0), run(0.999, 0.0)
    assert w_off.order_share == 0.0 and w_off.order_from is None
    assert hard_order.tobytes() == hard.tobytes()


def test_edges_and_measured_rows_group_the_same_keys() -> None:
    sample, attn = _softmax_head([9, 1, 12, 5], causal=True, seed=4)
    attn[3] = np.zeros_like(attn[3])  # a masked sentence: no edges, no measured rows
    rows = np.array([0, 1, 2, 4, 5, 7, 8, 9, 10, 13, 14, 15, 17, 19, 20, 22, 23, 25])
    joint = JointSet.of(sample.q[rows], sample.k[rows], rows)
    pairs = attention_pairs(sample, joint, attn, max_keys=100)
    measured = QueryRows.of(sample, joint, attn)
    covered = {(int(b.points[i]), joint.m + int(b.points[j]))
               for b in measured.blocks for i, j in zip(*np.nonzero(b.cover)) if b.share_ok[i]}
    assert covered == set(zip(pairs.query.tolist(), pairs.key.tolist())) and len(covered) == len(pairs)
    assert len(pairs) == 2 * (2 + 3 + 4 + 5 + 6 + 7)  # seven causal points in each of sentences 0 and 2
