"""Numerical tests of the AttentionViz joint normalization (atlas_build.normalize)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from atlas_build.normalize import (
    C_MAX,
    C_MIN,
    HeadSample,
    Normalization,
    apply_normalization,
    normalize,
    same_sentence_pairs,
    weighted_corr,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _softmax_rows(q: np.ndarray, k: np.ndarray, scaling: float, allowed: np.ndarray) -> np.ndarray:
    s = np.where(allowed, q @ k.T * scaling, -np.inf)
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def _mask(sid: np.ndarray, pos: np.ndarray, causal: bool, pad: np.ndarray) -> np.ndarray:
    """Same sentence, key not padding, and (causal) key position ≤ query position; self always allowed."""
    m = (sid[:, None] == sid[None, :]) & ~pad[None, :]
    if causal:
        m &= pos[None, :] <= pos[:, None]
    m |= np.eye(len(sid), dtype=bool)
    return m


@st.composite
def heads(draw, max_n: int = 24):
    n_sent = draw(st.integers(1, 4))
    lengths = [draw(st.integers(1, max_n // n_sent)) for _ in range(n_sent)]
    d = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    sid = np.repeat(rng.permutation(n_sent) * 7 + 3, lengths)
    pos = np.concatenate([np.arange(n) for n in lengths])
    perm = rng.permutation(len(sid))  # tokens in arbitrary order
    n = len(sid)
    q = rng.normal(size=(n, d)) * draw(st.floats(0.1, 5)) + rng.normal(size=d) * draw(st.floats(0, 5))
    k = rng.normal(size=(n, d)) * draw(st.floats(0.1, 5)) + rng.normal(size=d) * draw(st.floats(0, 5))
    causal = draw(st.booleans())
    pad = rng.random(n) < draw(st.floats(0, 0.5))
    return HeadSample(q, k, sid[perm], pos[perm], causal, d**-0.5), pad


@SETTINGS
@given(heads(), st.floats(C_MIN, C_MAX))
def test_scaling_and_translation_leave_attention_unchanged(hp, c):
    sample, pad = hp
    allowed = _mask(sample.sentence_id, sample.position, sample.causal, pad)
    ref = _softmax_rows(sample.q, sample.k, sample.scaling, allowed)
    qn, kn, _ = apply_normalization(sample.q, sample.k, c)
    np.testing.assert_allclose(_softmax_rows(qn, kn, sample.scaling, allowed), ref, rtol=1e-5, atol=1e-300)
    qn, kn, info = normalize(sample)
    np.testing.assert_allclose(_softmax_rows(qn, kn, sample.scaling, allowed), ref, rtol=1e-5, atol=1e-300)
    np.testing.assert_allclose(qn, info.scale_c * sample.q, rtol=1e-12)
    np.testing.assert_allclose(kn, sample.k / info.scale_c + info.translation, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(heads())
def test_centroids_coincide_and_c_in_range(hp):
    sample, _ = hp
    qn, kn, info = normalize(sample)
    scale = 1 + np.abs(qn).max() + np.abs(kn).max()
    np.testing.assert_allclose(kn.mean(axis=0), qn.mean(axis=0), atol=1e-12 * scale)
    assert C_MIN - 1e-12 <= info.scale_c <= C_MAX + 1e-12
    for v in (info.corr_before, info.corr_c1, info.corr_after, info.spearman_cosine_dot):
        assert np.isfinite(v) and -1 - 1e-12 <= v <= 1 + 1e-12


def _brute_objective(q, k, qi, kj, dot):
    """The objective from explicit vectors: weighted corr(−‖q'−k'‖, dot), w = exp(−dist/median dist)."""
    dist = np.linalg.norm(q[qi] - k[kj], axis=1)
    if np.ptp(dist) <= 1e-9 * max(dist.max(), 1e-12):
        return 0.0  # same convention as the library: all-equal distances have no correlation
    med = np.median(dist)
    w = np.exp(-dist / med) if med > 1e-12 else np.ones_like(dist)
    return weighted_corr(-dist, dot, w)


@SETTINGS
@given(heads(), st.sampled_from(["cosine", "euclidean"]))
def test_chosen_c_never_lowers_the_correlation(hp, metric):
    """Definition tested: corr_after (chosen c, with translation) ≥ the objective at c = 1 with translation
    (`corr_c1`) and ≥ the objective at every grid value of c; all three numbers equal brute-force recomputations.
    The objective (Euclidean distance about the common centroid) and c do not depend on the layout metric."""
    sample, _ = hp
    q, k = sample.q, sample.k
    qi, kj = same_sentence_pairs(sample.sentence_id, sample.position, sample.causal)
    qn, kn, info = normalize(sample, metric=metric)
    if len(qi) < 3:
        return
    dot = (q[qi] * k[kj]).sum(1)

    def brute(qq, kk):
        return _brute_objective(qq, kk, qi, kj, dot)

    other = normalize(sample, metric="euclidean" if metric == "cosine" else "cosine")[2]
    assert other.scale_c == info.scale_c and other.corr_after == info.corr_after

    assert info.corr_after >= info.corr_c1 - 1e-9
    q1, k1, _ = apply_normalization(q, k, 1.0)
    assert info.corr_c1 == pytest.approx(brute(q1, k1), abs=1e-7)
    assert info.corr_before == pytest.approx(brute(q, k), abs=1e-7)
    assert info.corr_after == pytest.approx(brute(qn, kn), abs=1e-7)
    for c in 2.0 ** np.arange(-4, 4.01, 1.0):
        qc, kc, _ = apply_normalization(q, k, c)
        assert info.corr_after >= brute(qc, kc) - 1e-7


def test_scale_search_finds_a_better_c_than_one():
    """Keys far from queries with a big norm gap: c = 1 is not optimal and the search improves on it."""
    rng = np.random.default_rng(3)
    n, d = 400, 16
    sid, pos = np.repeat(np.arange(20), 20), np.tile(np.arange(20), 20)
    q = rng.normal(size=(n, d)) * 4 + 10
    k = rng.normal(size=(n, d)) * 0.2 - 1
    _, _, info = normalize(HeadSample(q, k, sid, pos, True, d**-0.5))
    assert info.scale_c != 1.0
    assert info.corr_after > info.corr_c1 + 0.01


def test_spearman_strongly_negative_for_unit_vectors():
    rng = np.random.default_rng(0)
    n, d = 600, 8
    q = rng.normal(size=(n, d))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = rng.normal(size=(n, d))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    sid, pos = np.repeat(np.arange(30), 20), np.tile(np.arange(20), 30)
    _, _, info = normalize(HeadSample(q, k, sid, pos, False, d**-0.5))
    assert info.spearman_cosine_dot < -0.95
    # for exactly-unit vectors cosine distance is 1 − dot at c = 1 without translation
    qi, kj = same_sentence_pairs(sid, pos, False)
    cos = 1 - (q[qi] * k[kj]).sum(1)
    assert stats.spearmanr(cos, (q[qi] * k[kj]).sum(1)).statistic == pytest.approx(-1.0)


def test_norm_means_and_json():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(50, 4)).astype(np.float32)
    k = (3 * rng.normal(size=(50, 4))).astype(np.float32)
    sid, pos = np.repeat(np.arange(5), 10), np.tile(np.arange(10), 5)
    qn, kn, info = normalize(HeadSample(q, k, sid, pos, True, 0.5))
    assert qn.dtype == np.float32 and kn.dtype == np.float32
    assert info.mean_q_norm == pytest.approx(np.linalg.norm(q.astype(np.float64), axis=1).mean(), rel=1e-6)
    assert info.mean_k_norm == pytest.approx(np.linalg.norm(k.astype(np.float64), axis=1).mean(), rel=1e-6)
    js = info.to_json()
    assert set(js) >= {"scale_c", "translation_norm", "mean_q_norm", "mean_k_norm", "corr_before", "corr_after",
                       "spearman_cosine_dot"}
    assert all(type(v) is float and np.isfinite(v) for v in js.values())
    assert json.loads(json.dumps(js)) == js
    assert js["mean_q_norm"] == float(f"{info.mean_q_norm:.6g}")


def test_same_sentence_pairs_matches_brute_force():
    rng = np.random.default_rng(2)
    sid = rng.integers(0, 4, size=30)
    pos = np.zeros(30, int)
    for s in np.unique(sid):
        idx = np.flatnonzero(sid == s)
        pos[idx] = rng.permutation(len(idx))
    for causal in (False, True):
        qi, kj = same_sentence_pairs(sid, pos, causal)
        want = [(i, j) for i in range(30) for j in range(30)
                if sid[i] == sid[j] and (not causal or pos[j] <= pos[i])]
        assert list(zip(qi.tolist(), kj.tolist())) == want


def test_subsampling_is_seeded_and_bounded():
    rng = np.random.default_rng(4)
    n, d = 3000, 8
    sid, pos = np.repeat(np.arange(30), 100), np.tile(np.arange(100), 30)
    s = HeadSample(rng.normal(size=(n, d)), rng.normal(size=(n, d)) + 1, sid, pos, True, d**-0.5)
    _, _, a = normalize(s, max_pairs=2000)
    _, _, b = normalize(s, max_pairs=2000)
    assert a.n_pairs == 2000 and a.to_json() == b.to_json()


def test_degenerate_inputs_give_finite_numbers():
    z = np.zeros((3, 4))
    for sid in (np.array([0, 1, 2]), np.array([0, 0, 0])):
        qn, kn, info = normalize(HeadSample(z, z, sid, np.array([0, 1, 2]) * (sid == 0), True, 0.5))
        assert np.isfinite(qn).all() and np.isfinite(kn).all()
        assert all(np.isfinite(v) for v in info.to_json().values())
    with pytest.raises(ValueError):
        normalize(HeadSample(z, z, np.zeros(3, int), np.arange(3), True, 0.5), metric="manhattan")
    assert isinstance(info, Normalization)


def _grid_step_inside(c: float) -> bool:
    """c is at least one grid step (2^¼) away from both bounds."""
    return C_MIN * 2 ** 0.25 < c < C_MAX / 2 ** 0.25


def test_equal_spread_gets_an_interior_c_near_one():
    """Queries and keys drawn alike (equal spread, same centroid offset): nothing to rebalance, c ≈ 1."""
    rng = np.random.default_rng(5)
    n, d = 600, 16
    sid, pos = np.repeat(np.arange(30), 20), np.tile(np.arange(20), 30)
    for causal in (False, True):
        shift = rng.normal(size=d)
        q = rng.normal(size=(n, d)) + shift
        k = rng.normal(size=(n, d)) - shift
        _, _, info = normalize(HeadSample(q, k, sid, pos, causal, d**-0.5))
        assert _grid_step_inside(info.scale_c)
        assert 0.7 < info.scale_c < 1.4


def _key_norm_artefact_head(seed: int = 6) -> HeadSample:
    """The shape of most real heads (MiniLM): queries share a large mean direction with a small spread, keys are
    spread widely with varying norms. The old objective (cosine distance, and the pooled correlation generally) was
    maximal at the lower bound c = 1/16 here, where the key offsets (k − mean k)/c dominate every distance and the
    queries collapse onto one point of the picture."""
    rng = np.random.default_rng(seed)
    n, d = 800, 16
    sid, pos = np.repeat(np.arange(40), 20), np.tile(np.arange(20), 40)
    w = rng.normal(size=(d, d)) / np.sqrt(d)
    x = rng.normal(size=(n, d))
    q = 0.5 * x @ w + 6.0 * rng.normal(size=d)
    k = 3.0 * (x @ w.T + 0.5 * rng.normal(size=(n, d))) * rng.lognormal(0, 0.4, size=(n, 1)) + rng.normal(size=d)
    return HeadSample(q, k, sid, pos, False, d**-0.5)


def test_key_norm_artefact_head_gets_an_interior_c():
    s = _key_norm_artefact_head()
    qn, kn, info = normalize(s)
    assert _grid_step_inside(info.scale_c)
    assert info.corr_after >= info.corr_c1
    # neither side collapses: mean centred norms of q' and k' within a factor 4 of each other
    spread_q = np.linalg.norm(qn - qn.mean(0), axis=1).mean()
    spread_k = np.linalg.norm(kn - kn.mean(0), axis=1).mean()
    assert 0.25 < spread_q / spread_k < 4
    # the old artefact: the cosine-distance correlation keeps rising towards the lower bound on this head
    qi, kj = same_sentence_pairs(s.sentence_id, s.position, s.causal)
    dot = (s.q[qi] * s.k[kj]).sum(1)

    def cos_corr(c):
        a, b, _ = apply_normalization(s.q, s.k, c)
        a, b = a[qi], b[kj]
        return np.corrcoef(-(1 - (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))), dot)[0, 1]

    assert cos_corr(C_MIN) > cos_corr(1.0)


def test_scale_is_symmetric_under_swapping_queries_and_keys():
    """Swapping the roles of q and k (the dot products are symmetric for a non-causal head) inverts c."""
    rng = np.random.default_rng(7)
    n, d = 400, 8
    sid, pos = np.repeat(np.arange(20), 20), np.tile(np.arange(20), 20)
    q, k = rng.normal(size=(n, d)) * 3 + 1, rng.normal(size=(n, d)) * 0.5 - 2
    _, _, a = normalize(HeadSample(q, k, sid, pos, False, d**-0.5))
    _, _, b = normalize(HeadSample(k, q, sid, pos, False, d**-0.5))
    assert _grid_step_inside(a.scale_c)
    assert a.scale_c * b.scale_c == pytest.approx(1.0, rel=1e-2)
