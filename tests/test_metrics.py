"""Numerical tests of per-head scores, labels, trust measures and related heads (atlas_build.metrics)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from atlas_build.metrics import (
    LABEL_RULES, LABELS, SCORE_NAMES, attention_signature, concentration, head_scores, head_similarity, label_head,
    LayoutTrust, related_heads, signature_plan, similarity_matrix, trust_scores,
)
from atlas_build.normalize import HeadSample, normalize
from atlas_build.normalize.joint import JointSet

DOC = Path(__file__).resolve().parents[1] / "docs" / "reference" / "head-labels.md"


def _sample(lengths, d=8, seed=0, causal=True, vocab_size=50):
    rng = np.random.default_rng(seed)
    sid = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.concatenate([np.arange(n) for n in lengths])
    n = len(sid)
    vocab = rng.integers(0, vocab_size, size=n)
    return HeadSample(rng.normal(size=(n, d)), rng.normal(size=(n, d)), sid, pos, causal, d**-0.5), vocab


def _pattern(kind: str, n: int, causal: bool, strength: float = 0.9) -> np.ndarray:
    """Rows = queries. The target gets `strength`; the rest is spread uniformly over the other allowed keys."""
    i = np.arange(n)
    allowed = (i[None, :] <= i[:, None]) if causal else np.ones((n, n), bool)
    a = allowed / allowed.sum(axis=1, keepdims=True)
    if kind == "uniform":
        return a
    target = {"previous": np.maximum(i - 1, 0), "self": i, "sink": np.zeros(n, int)}[kind]
    out = np.zeros((n, n))
    for r in range(n):
        others = allowed[r].copy()
        others[target[r]] = False
        if others.any():
            out[r, others] = (1 - strength) / others.sum()
            out[r, target[r]] = strength
        else:
            out[r, target[r]] = 1.0
    return out


LENGTHS = [12, 7, 20, 15, 9]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kind,label", [("previous", "previous-token"), ("self", "self"),
                                        ("sink", "first-token sink"), ("uniform", "broad")])
def test_synthetic_heads_get_their_label(kind, label, causal):
    sample, vocab = _sample(LENGTHS, causal=causal)
    attn = {s: _pattern(kind, n, causal) for s, n in enumerate(LENGTHS)}
    scores = head_scores(sample, attn, tokens_vocab=vocab, v_norms=np.ones(len(vocab)))
    assert label_head(scores) == label
    key = {"previous": "previous_token", "self": "self", "sink": "first_token"}.get(kind)
    if key:
        assert scores[key] == pytest.approx(0.9, abs=1e-12)
    else:
        assert scores["entropy"] == pytest.approx(1.0, abs=1e-12)
        assert scores["locality"] == pytest.approx(0.0, abs=1e-12)


def test_exact_values_for_uniform_causal_head():
    lengths = [5, 3]
    sample, vocab = _sample(lengths)
    s = head_scores(sample, {k: _pattern("uniform", n, True) for k, n in enumerate(lengths)},
                    v_norms=np.arange(8.0))
    rows = [i for n in lengths for i in range(1, n)]            # rows ≥ 1
    assert s["mean_distance"] == pytest.approx(np.mean([i / 2 for i in rows]))
    assert s["self"] == pytest.approx(np.mean([1 / (i + 1) for i in rows]))
    rows2 = [i for n in lengths for i in range(2, n)]           # rows ≥ 2
    assert s["first_token"] == pytest.approx(np.mean([1 / (i + 1) for i in rows2]))
    assert s["previous_token"] == pytest.approx(s["first_token"])
    assert s["value_norm"] == pytest.approx(3.5)
    assert "same_token" not in s and "wq_wk_correlation" not in s   # not computable without inputs
    assert all(type(v) is float for v in s.values())


def test_same_token_head():
    rng = np.random.default_rng(5)
    lengths = [30, 30, 30]
    sample, _ = _sample(lengths)
    vocab = rng.integers(0, 6, size=sum(lengths))              # many repeats
    attn, start = {}, 0
    for s, n in enumerate(lengths):
        v = vocab[start:start + n]
        start += n
        i = np.arange(n)
        same = (v[:, None] == v[None, :]) & (i[None, :] < i[:, None])
        a = np.where(same, 1.0, 0.0)
        a[~same.any(axis=1), :] = 0
        a[~same.any(axis=1), i[~same.any(axis=1)]] = 1.0      # no earlier occurrence: attend to self
        attn[s] = a / a.sum(axis=1, keepdims=True)
    scores = head_scores(sample, attn, tokens_vocab=vocab)
    assert scores["same_token"] == pytest.approx(1.0)
    assert label_head(scores) == "same-token"


def test_local_window_head_is_positional():
    lengths = [40, 40]
    sample, vocab = _sample(lengths)
    attn = {}
    for s, n in enumerate(lengths):
        i = np.arange(n)
        win = (i[None, :] <= i[:, None]) & (i[None, :] >= i[:, None] - 3)
        attn[s] = win / win.sum(axis=1, keepdims=True)
    scores = head_scores(sample, attn, tokens_vocab=vocab)
    assert scores["locality"] > 0.8 and scores["previous_token"] < 0.5 and scores["self"] < 0.5
    assert label_head(scores) == "positional"


def _semantic_or_positional_sample(by: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = [25] * 12
    sid = np.repeat(np.arange(12), 25)
    pos = np.tile(np.arange(25), 12)
    vocab = rng.integers(0, 10, size=len(sid))
    d = 16
    proto_tok, proto_pos = rng.normal(size=(10, d)), rng.normal(size=(25, d))
    base = proto_tok[vocab] if by == "token" else proto_pos[pos]
    q = base + 0.3 * rng.normal(size=base.shape)
    k = base + 0.3 * rng.normal(size=base.shape)
    return HeadSample(q, k, sid, pos, True, d**-0.5), vocab, lengths


@pytest.mark.parametrize("by,label,sign", [("token", "semantic", -1), ("position", "positional", 1)])
def test_geometry_decides_semantic_vs_positional(by, label, sign):
    sample, vocab, lengths = _semantic_or_positional_sample(by)
    rng = np.random.default_rng(1)
    attn = {}
    for s, n in enumerate(lengths):  # peaked but not on first/previous/self: entropy well below "broad"
        logits = 4 * rng.normal(size=(n, n))
        logits[np.triu_indices(n, 1)] = -np.inf
        a = np.exp(logits - logits.max(axis=1, keepdims=True))
        attn[s] = a / a.sum(axis=1, keepdims=True)
    scores = head_scores(sample, attn, tokens_vocab=vocab)
    assert sign * scores["positional_vs_semantic"] > 0.5
    assert scores["entropy"] < 0.75 and scores["locality"] < 0.3
    assert label_head(scores) == label


def test_concentration_values():
    x = np.repeat(np.eye(4), 5, axis=0)                   # 4 tight groups of 5 orthogonal directions
    g = np.repeat(np.arange(4), 5)
    assert concentration(x, g) > 0.9
    assert concentration(x, np.arange(20)) is None        # no group with 2 members
    rng = np.random.default_rng(0)
    assert abs(concentration(rng.normal(size=(2000, 8)), rng.integers(0, 5, 2000))) < 0.02


def test_weight_correlation_and_ranges():
    sample, vocab = _sample(LENGTHS)
    rng = np.random.default_rng(3)
    w = rng.normal(size=(32, 8))
    attn = {s: _pattern("previous", n, True) for s, n in enumerate(LENGTHS)}
    s1 = head_scores(sample, attn, tokens_vocab=vocab, w_q=w, w_k=2 * w + 1)
    assert s1["wq_wk_correlation"] == pytest.approx(1.0)
    s2 = head_scores(sample, attn, tokens_vocab=vocab, w_q=w, w_k=rng.normal(size=(32, 8)))
    assert abs(s2["wq_wk_correlation"]) < 0.2
    for name in ("first_token", "previous_token", "self", "same_token", "entropy"):
        assert 0 <= s1[name] <= 1
    for name in ("locality", "position_concentration", "token_concentration", "positional_vs_semantic"):
        assert -1 <= s1[name] <= 1
    assert list(s1) == [n for n in SCORE_NAMES if n in s1]


@pytest.mark.parametrize("causal", [True, False])
def test_scores_stable_under_sentence_reordering(causal):
    rng = np.random.default_rng(7)
    lengths = [9, 14, 5, 11, 20, 3]
    sample, vocab = _sample(lengths, causal=causal, vocab_size=8)
    attn = {}
    for s, n in enumerate(lengths):
        a = rng.random((n, n)) ** 4
        if causal:
            a = np.tril(a)
        attn[s] = a / a.sum(axis=1, keepdims=True)
    vn = rng.random(len(vocab))
    ref = head_scores(sample, attn, tokens_vocab=vocab, v_norms=vn)
    # new sentence ids, sentences and tokens in a different order
    new_id = {s: int(v) for s, v in zip(range(len(lengths)), rng.permutation(len(lengths)) * 3 + 100)}
    perm = rng.permutation(len(vocab))
    s2 = HeadSample(sample.q[perm], sample.k[perm], np.array([new_id[s] for s in sample.sentence_id[perm]]),
                    sample.position[perm], causal, sample.scaling)
    attn2 = {new_id[s]: attn[s] for s in reversed(list(attn))}
    got = head_scores(s2, attn2, tokens_vocab=vocab[perm], v_norms=vn[perm])
    assert got.keys() == ref.keys()
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-9, rel=0), key


def test_padding_rows_are_ignored():
    sample, vocab = _sample([6])
    a = _pattern("previous", 6, True)
    padded = np.zeros((8, 8))
    padded[:6, :6] = a
    s_ref = head_scores(sample, {0: a})
    s_pad = head_scores(sample, {0: padded[:6, :6]})
    assert s_ref == s_pad


def test_label_rules_edge_cases():
    assert label_head({}) == "mixed"
    assert label_head({"first_token": float("nan"), "entropy": 0.2}) == "mixed"
    assert label_head({"first_token": 0.6, "previous_token": 0.7}) == "first-token sink"  # rule order
    assert set(LABELS) >= {"previous-token", "first-token sink", "self", "positional", "semantic", "broad"}


def test_doc_table_matches_label_rules():
    text = DOC.read_text(encoding="utf-8")
    rows = [r for r in text.splitlines() if r.startswith("| ") and re.match(r"\| \d+ \|", r)]
    assert len(rows) == len(LABEL_RULES) + 1, "one doc row per rule plus the fallback"
    for row, rule in zip(rows, LABEL_RULES):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"`{rule.label}`"
        for cond in rule.any_of:
            assert f"`{cond.score}` {cond.op.replace('>=', '≥').replace('<=', '≤')} {cond.threshold:g}" in cells[2]
    assert "`mixed`" in rows[-1]


def _circle_head(n_sent=20, length=15, seed=0):
    """Unit vectors in a random 2-D plane of R^16: the plane coordinates are a perfect layout."""
    rng = np.random.default_rng(seed)
    n = n_sent * length
    basis = np.linalg.qr(rng.normal(size=(16, 2)))[0].T          # [2, 16] orthonormal rows
    ang_q, ang_k = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    pq = np.stack([np.cos(ang_q), np.sin(ang_q)], 1)
    pk = np.stack([np.cos(ang_k), np.sin(ang_k)], 1)
    sample = HeadSample(pq @ basis, pk @ basis, np.repeat(np.arange(n_sent), length),
                        np.tile(np.arange(length), n_sent), True, 0.25)
    return sample, np.concatenate([pq, pk])


def test_trust_perfect_layout_beats_random():
    sample, perfect = _circle_head()
    good = trust_scores(sample, JointSet.of(sample.q, sample.k), perfect, metric="cosine")
    bad = trust_scores(sample, JointSet.of(sample.q, sample.k), np.random.default_rng(1).normal(size=perfect.shape),
                       metric="cosine")
    assert good["spearman_layout_dot"] == pytest.approx(-1.0)
    assert abs(bad["spearman_layout_dot"]) < 0.15
    assert good["trustworthiness"] > 0.99 and good["trustworthiness"] > bad["trustworthiness"] + 0.3


def test_trust_pca_of_low_rank_normalized_head():
    rng = np.random.default_rng(2)
    n, d = 400, 32
    z_q, z_k = rng.normal(size=(n, 3)), rng.normal(size=(n, 3)) + 0.5
    mix = rng.normal(size=(3, d))
    sample = HeadSample(z_q @ mix, z_k @ mix, np.repeat(np.arange(20), 20), np.tile(np.arange(20), 20), True, d**-0.5)
    qn, kn, _ = normalize(sample, metric="euclidean")
    x = np.concatenate([qn, kn])
    xc = x - x.mean(0)
    pca = xc @ np.linalg.svd(xc, full_matrices=False)[2][:3].T   # rank 3 → 3-D PCA is exact
    good = trust_scores(sample, JointSet.of(qn, kn), pca, metric="euclidean", sample_size=500)
    bad = trust_scores(sample, JointSet.of(qn, kn), rng.normal(size=pca.shape), metric="euclidean", sample_size=500)
    assert good["trustworthiness"] == pytest.approx(1.0, abs=1e-9)
    assert good["trustworthiness"] > bad["trustworthiness"] + 0.3
    assert good["spearman_layout_dot"] < bad["spearman_layout_dot"] - 0.2


def test_trust_is_seeded_and_validates_shape():
    sample, perfect = _circle_head()
    noisy = perfect + np.random.default_rng(3).normal(scale=0.3, size=perfect.shape)
    a = trust_scores(sample, JointSet.of(sample.q, sample.k), noisy, metric="cosine", sample_size=100, seed=4)
    assert a == trust_scores(sample, JointSet.of(sample.q, sample.k), noisy, metric="cosine", sample_size=100, seed=4)
    with pytest.raises(ValueError):
        trust_scores(sample, JointSet.of(sample.q, sample.k), perfect[:-1], metric="cosine")


def test_layout_trust_is_sklearns_number_for_every_layout():
    """One `LayoutTrust` scores several layouts (ties in the picture included) exactly as scikit-learn's
    trustworthiness on the same sample, and as a fresh `trust_scores` call per layout."""
    from sklearn.manifold import trustworthiness

    sample, perfect = _circle_head()
    joint = JointSet.of(sample.q, sample.k)
    rng = np.random.default_rng(5)
    layouts = [perfect, perfect + rng.normal(scale=0.4, size=perfect.shape), rng.normal(size=(len(perfect), 3)),
               np.round(perfect * 2) / 2]  # the last has many tied distances
    scorer = LayoutTrust(sample, joint, metric="cosine", sample_size=150, seed=2)
    x = np.asarray(joint.x, np.float64)[scorer.idx]
    for coords in layouts:
        got = scorer(coords)
        assert got == trust_scores(sample, joint, coords, metric="cosine", sample_size=150, seed=2)
        # its distances are rounded otherwise than scikit-learn's: a near-tie may order differently on some CPU
        want = trustworthiness(x, coords[scorer.idx], n_neighbors=10, metric="cosine")
        assert got["trustworthiness"] == pytest.approx(want, abs=1e-9)
    with pytest.raises(ValueError):
        scorer(perfect[:-1])


def test_layout_trust_against_another_space_equals_a_fresh_one():
    """`against` shares the sampled pairs and the trust sample and only ranks the other space: its numbers are a
    fresh `LayoutTrust`'s on that space (here the padded space of a random head, whose neighbourhoods differ), and it
    refuses a space of other points."""
    from atlas_build.normalize.padded import padded_space

    rng = np.random.default_rng(6)
    q, k = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) * rng.uniform(0.2, 3.0, size=(200, 1))
    sample = HeadSample(q, k, np.repeat(np.arange(20), 10), np.tile(np.arange(10), 20), True, 1.0)
    joint = JointSet.of(sample.q, sample.k)
    first_axes = np.asarray(joint.x)[:, :3]
    padded = JointSet(padded_space(joint.queries, joint.keys), joint.token_rows, joint.key_rows)
    scorer = LayoutTrust(sample, joint, metric="cosine", sample_size=150, seed=2)
    shared, fresh = scorer.against(padded, metric="euclidean"), LayoutTrust(sample, padded, metric="euclidean",
                                                                            sample_size=150, seed=2)
    noisy = first_axes + rng.normal(scale=0.4, size=first_axes.shape)
    for coords in (first_axes, noisy):
        assert shared(coords) == fresh(coords)
    assert shared(noisy)["trustworthiness"] != scorer(noisy)["trustworthiness"]
    assert shared(noisy)["spearman_layout_dot"] == scorer(noisy)["spearman_layout_dot"]
    with pytest.raises(ValueError, match="points"):
        scorer.against(JointSet.of(sample.q[:-1], sample.k[:-1]), metric="cosine")


def test_layout_trust_ties_in_high_dimension_share_the_smallest_rank():
    """Duplicated vectors (a first token repeated in every sentence of a causal model): a point tied with a true
    neighbour is not a trustworthiness error, whatever order a sort leaves the tie in."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=(30, 6))
    q = np.concatenate([base, base[:10]])  # rows 30-39 repeat rows 0-9
    sample = HeadSample(q, rng.normal(size=q.shape), np.repeat(np.arange(8), 5), np.tile(np.arange(5), 8), True, 1.0)
    joint = JointSet.of(sample.q, sample.k)
    scorer = LayoutTrust(sample, joint, metric="euclidean", k=3)
    x = np.asarray(joint.x, np.float64)
    coords = rng.normal(size=(len(x), 2))
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    e = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(e, np.inf)
    n, k = len(x), 3
    penalty = 0
    for i in range(n):
        for j in np.argsort(e[i], kind="stable")[:k]:
            penalty += max(0, 1 + int((d[i] < d[i, j]).sum()) - k)  # rank: 1 + the points strictly nearer
    assert (d == 0).sum() > 0
    assert scorer(coords)["trustworthiness"] == pytest.approx(1 - 2 / (n * k * (2 * n - 3 * k - 1)) * penalty,
                                                              abs=1e-12)


def _model_heads(lengths, causal, seed=0):
    """Eight heads: pairs sharing a pattern (previous, sink, self) at two strengths, plus two random heads."""
    rng = np.random.default_rng(seed)
    heads = {}
    for h, (kind, strength) in enumerate([("previous", 0.9), ("sink", 0.9), ("self", 0.9), ("previous", 0.6),
                                           ("sink", 0.6), ("self", 0.7)]):
        heads[(h // 3, h % 3)] = {s: _pattern(kind, n, causal, strength) for s, n in enumerate(lengths)}
    for h in (6, 7):
        attn = {}
        for s, n in enumerate(lengths):
            a = rng.random((n, n)) ** 6 * (np.tril(np.ones((n, n))) if causal else 1)
            attn[s] = a / a.sum(axis=1, keepdims=True)
        heads[(h // 3, h % 3)] = attn
    return heads


def _related(sample, vocab, heads, **plan_kw):
    plan = signature_plan(sample.sentence_id, sample.position, vocab, sample.causal, **plan_kw)
    ids = sorted(heads)
    sigs = [attention_signature(heads[lh], plan) for lh in ids]
    return ids, sigs, related_heads(ids, sigs)


@pytest.mark.parametrize("causal", [True, False])
def test_heads_with_the_same_pattern_are_each_others_top_related(causal):
    sample, vocab = _sample(LENGTHS, causal=causal)
    ids, sigs, rel = _related(sample, vocab, _model_heads(LENGTHS, causal))
    partner = {(0, 0): (1, 0), (0, 1): (1, 1), (0, 2): (1, 2)}
    partner.update({v: k for k, v in partner.items()})
    for lh, r in zip(ids, rel):
        assert len(r) == 5 and all(set(e) == {"layer", "head", "similarity"} for e in r)
        assert (r[0]["layer"], r[0]["head"]) != lh and lh not in [(e["layer"], e["head"]) for e in r]
        sims = [e["similarity"] for e in r]
        assert sims == sorted(sims, reverse=True)
        if lh in partner:
            assert (r[0]["layer"], r[0]["head"]) == partner[lh]
            assert r[0]["similarity"] > 0.9 and r[0]["similarity"] > r[1]["similarity"] + 0.3
    m = similarity_matrix(sigs)
    assert np.array_equal(m, m.T) and np.allclose(np.diag(m), 1.0)
    assert abs(m[ids.index((2, 0)), ids.index((2, 1))]) < 0.2  # unrelated heads: row lengths alone do not correlate
    listed = {(a, (e["layer"], e["head"])): e["similarity"] for a, r in zip(ids, rel) for e in r}
    for (a, b), v in listed.items():  # symmetric: a lists b with the same similarity as b lists a (when it does)
        assert listed.get((b, a), v) == v
        assert v == float(f"{m[ids.index(a), ids.index(b)]:.6g}")


@pytest.mark.parametrize("causal", [True, False])
def test_related_heads_stable_under_sentence_reordering(causal):
    rng = np.random.default_rng(3)
    lengths = [9, 14, 5, 11, 20, 3, 16, 8]
    sample, vocab = _sample(lengths, causal=causal, vocab_size=20)
    heads = _model_heads(lengths, causal)
    kw = {"max_sentences": 5, "max_entries": 400}  # a subset of sentences, long ones thinned
    ids, sigs, rel = _related(sample, vocab, heads, **kw)
    new_id = {s: int(v) for s, v in zip(range(len(lengths)), rng.permutation(len(lengths)) * 7 + 50)}
    perm = rng.permutation(len(vocab))
    s2 = HeadSample(sample.q[perm], sample.k[perm], np.array([new_id[s] for s in sample.sentence_id[perm]]),
                    sample.position[perm], causal, sample.scaling)
    heads2 = {lh: {new_id[s]: a for s, a in reversed(list(attn.items()))} for lh, attn in heads.items()}
    ids2, sigs2, rel2 = _related(s2, vocab[perm], heads2, **kw)
    assert ids2 == ids and rel2 == rel
    assert all(np.array_equal(a, b) for a, b in zip(sigs, sigs2))
    plan = signature_plan(sample.sentence_id, sample.position, vocab, causal, **kw)
    assert len(plan.sentences) == 5 and 0 < sigs[0].size <= 400 + max(lengths)
    assert sigs[0].dtype == np.float32


def test_signature_plan_thins_long_sentences_evenly():
    sid, pos = np.repeat([0, 1], 257), np.tile(np.arange(257), 2)
    plan = signature_plan(sid, pos, None, False, max_entries=2 * 257 * 10)
    assert [len(rows) for _, rows in plan.sentences] == [10, 10]
    assert plan.sentences[0][1] == tuple(int(r) for r in np.linspace(0, 256, 10).round())
    attn = {s: np.full((257, 257), 1 / 257) for s in (0, 1)}
    assert attention_signature(attn, plan).size == 2 * 10 * 257


def test_related_ties_missing_and_constant_signatures():
    base = np.random.default_rng(0).random(50).astype(np.float32)
    ids = [(0, h) for h in range(7)] + [(1, 0), (1, 1)]
    sigs = [base] * 7 + [np.ones(50, np.float32), None]
    rel = related_heads(ids, sigs)
    assert rel[3] == [{"layer": 0, "head": h, "similarity": 1.0} for h in (0, 1, 2, 4, 5)]  # ties: (layer, head)
    assert rel[7] == [] and rel[8] == []
    assert all((1, 0) not in [(e["layer"], e["head"]) for e in r] for r in rel)
    assert head_similarity(base, 2 * base + 1) == pytest.approx(1.0)
    assert head_similarity(base, np.ones(50)) != head_similarity(base, np.ones(50))  # constant → NaN
    assert related_heads([], []) == []


def test_image_distances_are_2d_over_patches():
    """CLS + a 2x2 patch grid per image: every patch gives half its attention to CLS and half to the diagonally
    opposite patch. Distances are patch-centre distances over patches only (rows re-normalised), not |i - j|."""
    grid_one = np.array([[-1, -1], [0, 0], [0, 1], [1, 0], [1, 1]])
    sample, _ = _sample([5, 5], causal=False)
    a = np.zeros((5, 5))
    a[0] = 0.2
    for i, j in ((1, 4), (2, 3), (3, 2), (4, 1)):
        a[i, 0] = a[i, j] = 0.5
    scores = head_scores(sample, {0: a, 1: a}, grid=np.vstack([grid_one, grid_one]))
    uniform = (0 + 1 + 1 + np.sqrt(2)) / 4
    assert scores["mean_distance"] == pytest.approx(np.sqrt(2), abs=1e-12)
    assert scores["locality"] == pytest.approx(1 - np.sqrt(2) / uniform, abs=1e-12)
    flat = head_scores(sample, {0: a, 1: a})  # the same attention read as a 1D sequence
    assert flat["mean_distance"] != pytest.approx(scores["mean_distance"])
