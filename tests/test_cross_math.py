"""Cross-attention heads (queries on one side of a pair, keys on the other; `HeadSample.side`): the pairs, the
normalization's invariants, the scores on synthetic heads whose answers are known, and the per-head unit."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_build.metrics.related import attention_signature, signature_plan
from atlas_build.metrics.scores import attention_scores, head_scores
from atlas_build.metrics.values import value_scores, values_by_sentence
from atlas_build.normalize import HeadSample, cover, normalize, same_sentence_pairs
from atlas_build.pipeline.heads import HeadTask, run_head
from atlas_build.project import LAYOUTS, ProjectionParams

N_Q, N_K = (4, 6, 3), (5, 3, 7)  # per pair: decoder tokens, encoder tokens


def _layout() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sentence id, position, side) of three pairs, each its decoder tokens then its encoder tokens."""
    sid, pos, side = [], [], []
    for s, (nq, nk) in enumerate(zip(N_Q, N_K)):
        sid += [s] * (nq + nk)
        pos += list(range(nq + nk))
        side += [0] * nq + [1] * nk
    return np.array(sid), np.array(pos), np.array(side, np.uint8)


def _sample(seed: int = 0, d: int = 8) -> HeadSample:
    rng = np.random.default_rng(seed)
    sid, pos, side = _layout()
    q, k = rng.normal(size=(len(sid), d)), rng.normal(size=(len(sid), d)) + 2.0
    q[side == 1] = 0.0  # rows of the other side are never read
    k[side == 0] = 0.0
    return HeadSample(q=q, k=k, sentence_id=sid, position=pos, causal=False, scaling=d ** -0.5, side=side)


def _softmax_attention(s: HeadSample) -> dict[int, np.ndarray]:
    """The model's own attention of a cross head: softmax(q·k·scaling) of each decoder row over its encoder keys."""
    out = {}
    for sid in np.unique(s.sentence_id):
        rows = np.flatnonzero(s.sentence_id == sid)
        n, start = len(rows), int((s.side[rows] == 0).sum())
        a = np.zeros((n, n))
        logits = s.q[rows[:start]] @ s.k[rows[start:]].T * s.scaling
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        a[:start, start:] = e / e.sum(axis=1, keepdims=True)
        out[int(sid)] = a
    return out


def test_pairs_and_cover_run_from_the_query_side_to_the_key_side_of_the_same_pair() -> None:
    sid, pos, side = _layout()
    qi, kj = same_sentence_pairs(sid, pos, causal=True, side=side)  # causal is ignored across sides
    assert len(qi) == sum(nq * nk for nq, nk in zip(N_Q, N_K))
    assert (side[qi] == 0).all() and (side[kj] == 1).all() and (sid[qi] == sid[kj]).all()
    c = cover(7, False, 3)
    assert c[:3, 3:].all() and not c[3:].any() and not c[:, :3].any()


def test_normalization_keeps_every_decoder_rows_softmax_and_meets_the_centroids() -> None:
    s = _sample()
    qn, kn, info = normalize(s, metric="cosine")
    qr, kr = s.query_rows(), s.key_rows()
    assert np.allclose(qn[qr].mean(axis=0), kn[kr].mean(axis=0), atol=1e-5)
    assert info.scale_c > 0 and info.n_pairs == sum(nq * nk for nq, nk in zip(N_Q, N_K))
    for sid in range(3):
        rows = np.flatnonzero(s.sentence_id == sid)
        qrows, krows = rows[s.side[rows] == 0], rows[s.side[rows] == 1]
        shift = qn[qrows] @ kn[krows].T - s.q[qrows] @ s.k[krows].T  # constant along each row: softmax unchanged
        assert np.allclose(shift, shift[:, :1], atol=1e-4)


def test_cross_scores_on_heads_whose_answers_are_known() -> None:
    sid, pos, side = _layout()
    starts = {s: nq for s, nq in enumerate(N_Q)}
    sink, uniform = {}, {}
    for s, (nq, nk) in enumerate(zip(N_Q, N_K)):
        n = nq + nk
        sink[s], uniform[s] = np.zeros((n, n)), np.zeros((n, n))
        sink[s][:nq, nq] = 1.0  # every decoder token reads the first encoder token
        uniform[s][:nq, nq:] = 1.0 / nk
    got = attention_scores(sink, False, key_starts=starts)
    assert got["first_token"] == pytest.approx(1.0) and got["entropy"] == pytest.approx(0.0)
    assert not {"previous_token", "self", "mean_distance", "locality"} & set(got)
    got = attention_scores(uniform, False, key_starts=starts)
    assert got["entropy"] == pytest.approx(1.0)
    assert got["first_token"] == pytest.approx(np.mean([1.0 / nk for nq, nk in zip(N_Q, N_K) for _ in range(nq)]))
    # a copy head: decoder token i reads the encoder token with its vocabulary id
    vocab = {0: {0: 7, 1: 8, 2: 9, 3: 10, 4: 10, 5: 9, 6: 8, 7: 7, 8: 11}}
    copy = np.zeros((9, 9))
    copy[0, 7] = copy[1, 6] = copy[2, 5] = copy[3, 4] = 1.0
    got = attention_scores({0: copy}, False, vocab, key_starts={0: 4})
    assert got["same_token"] == pytest.approx(1.0) and got["first_token"] == pytest.approx(0.25)


def test_cross_value_scores_read_the_encoder_values() -> None:
    sid, pos, side = _layout()
    rng = np.random.default_rng(3)
    values = rng.normal(size=(len(sid), 4))
    values[side == 0] = 0.0
    starts = {s: nq for s, nq in enumerate(N_Q)}
    attn = {}
    for s, (nq, nk) in enumerate(zip(N_Q, N_K)):
        attn[s] = np.zeros((nq + nk, nq + nk))
        attn[s][:nq, nq:nq + 2] = 0.5  # half on the first encoder token, half on the second
    got = value_scores(attn, values_by_sentence(sid, pos, values), False, starts)
    want = []
    for s, (nq, nk) in enumerate(zip(N_Q, N_K)):
        v = values[(sid == s)][nq:nq + 2]
        n0, n1 = np.linalg.norm(v, axis=1)
        want += [n0 / (n0 + n1)] * nq
    assert got["first_token_output_share"] == pytest.approx(np.mean(want))


def test_signature_reads_decoder_rows_over_encoder_columns_only() -> None:
    sid, pos, side = _layout()
    starts = {s: nq for s, nq in enumerate(N_Q)}
    plan = signature_plan(sid, pos, np.arange(len(sid)), False, key_starts=starts)
    attn = {s: np.zeros((nq + nk, nq + nk)) for s, (nq, nk) in enumerate(zip(N_Q, N_K))}
    sig = attention_signature(attn, plan)
    assert len(sig) == sum(nq * nk for nq, nk in zip(N_Q, N_K))
    # entries relative to uniform attention over each row's encoder keys (sentences in the plan's seeded order)
    assert [s for s, _ in plan.sentences] != [] and all(rows == tuple(range(N_Q[s])) for s, rows in plan.sentences)
    assert np.allclose(np.sort(sig), np.sort(np.concatenate([np.full(nq * nk, -1.0 / nk) for nq, nk in zip(N_Q, N_K)])))


def test_a_cross_head_unit_lays_out_decoder_queries_and_encoder_keys() -> None:
    s = _sample(seed=5)
    attn = _softmax_attention(s)
    v = np.where((s.side == 1)[:, None], np.random.default_rng(1).normal(size=(len(s.q), 4)), 0.0)
    task = HeadTask(0, 0, 0, s, attn, None, np.linalg.norm(v, axis=1), tuple(LAYOUTS), ProjectionParams(), values=v,
                    lays_out_values=True)
    res = run_head(task)  # every layout, the attention-aware one included
    n_q, n_k = sum(N_Q), sum(N_K)
    assert {name: c.shape for name, c in res.layouts.items()} == {
        name: (n_q + n_k, 3 if name.endswith("-3d") else 2) for name in LAYOUTS}
    assert res.norms.shape == (n_q + n_k,)
    assert np.allclose(res.norms[:n_q], np.linalg.norm(s.q[s.side == 0], axis=1), rtol=1e-5)
    assert np.allclose(res.norms[n_q:], np.linalg.norm(s.k[s.side == 1], axis=1), rtol=1e-5)
    assert res.value_layouts["pca-2d"].shape == (n_k, 2)  # one value point per encoder token
    # attention is softmax(q·k): the padded space ranks each decoder row's encoder keys exactly
    assert res.highdim["padded"]["query_rank_corr"] == pytest.approx(1.0)
    assert res.highdim["padded"]["nearest_key_share"] == pytest.approx(1.0)
    assert all({"query_rank_corr", "nearest_key_share", "trustworthiness"} <= set(t) for t in res.trust.values())
    scores = head_scores(s, attn)
    assert res.metrics["first_token"] == pytest.approx(scores["first_token"], rel=1e-5)
    assert res.metrics["value_norm"] == pytest.approx(np.linalg.norm(v[s.side == 1], axis=1).mean(), rel=1e-5)
