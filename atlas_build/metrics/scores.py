"""Per-head behaviour scores computed from attention matrices, query/key geometry and weights.

Every score is a plain float; a score that cannot be computed (e.g. ``same_token`` without token ids) is *omitted*
from the returned dict rather than set to NaN. All averages are over query rows, each row weighing 1, pooled over
sentences; they do not depend on the order of sentences or tokens.

| score | range | meaning |
|---|---|---|
| ``first_token`` | [0, 1] | mean attention to position 0 (rows at position ≥ 2, where first ≠ previous) |
| ``previous_token`` | [0, 1] | mean attention to position i − 1 (rows at position ≥ 2) |
| ``self`` | [0, 1] | mean attention to position i (rows at position ≥ 1) |
| ``same_token`` | [0, 1] | mean attention to *other* allowed positions with the same vocabulary id (rows having one) |
| ``mean_distance`` | [0, n) | mean Σ_j A_ij·|i − j|, in tokens (rows at position ≥ 1); images: see below |
| ``locality`` | [−1, 1] | 1 − mean_distance / mean distance of uniform attention over the same allowed keys |
| ``entropy`` | [0, 1] | mean row entropy / log(number of allowed keys) (rows with ≥ 2 allowed keys) |
| ``position_concentration`` | [−1, 1] | how much more similar (cosine, centred) same-position tokens are than random |
| ``token_concentration`` | [−1, 1] | the same for tokens with the same vocabulary id ("search hits") |
| ``positional_vs_semantic`` | [−1, 1] | (pos − tok)/(|pos| + |tok|): +1 positional, −1 semantic |
| ``wq_wk_correlation`` | [−1, 1] | Pearson correlation of the flattened W_Q and W_K of the head |
| ``value_norm`` | [0, ∞) | mean ‖v‖ of the value vectors |

The scores that weigh attention by the value vectors (``first_token_output_share``, ``output_norm_ratio``,
``attended_value_norm``) are in `metrics.values`.

Cross-attention (queries on one side of a pair, keys on the other; ``key_starts``): ``first_token`` is the attention
to the first key-side token, over every query row; ``same_token`` counts keys with the query's vocabulary id (a
copy); the position scores (``previous_token``, ``self``, ``mean_distance``, ``locality``) compare positions of one
sequence and are omitted.

For image tokens (a patch grid per image), ``mean_distance`` is the Euclidean distance between patch centres in
patch units, over patch queries and patch keys only (prefix tokens such as CLS dropped, rows re-normalised over
patches), and ``locality`` compares it with uniform attention over the image's patches.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..normalize import HeadSample, cover
from .registry import SCORE_NAMES, ordered
from .vision import attention_distance

__all__ = ["head_scores", "attention_scores", "concentration", "SCORE_NAMES"]


def _vocab_by_sentence(sample: HeadSample, tokens_vocab: np.ndarray) -> dict[int, dict[int, int]]:
    out: dict[int, dict[int, int]] = {}
    for s, p, v in zip(np.asarray(sample.sentence_id).tolist(), np.asarray(sample.position).tolist(),
                       np.asarray(tokens_vocab).tolist()):
        out.setdefault(int(s), {})[int(p)] = int(v)
    return out


def _grid_by_sentence(sample: HeadSample, grid: np.ndarray) -> dict[int, np.ndarray]:
    """sentence id → [n, 2] (patch row, patch column) by position; -1 for prefix tokens and unknown positions."""
    out: dict[int, np.ndarray] = {}
    sid, pos = np.asarray(sample.sentence_id), np.asarray(sample.position)
    for s in np.unique(sid):
        rows = np.flatnonzero(sid == s)
        g = np.full((int(pos[rows].max()) + 1, 2), -1.0)
        g[pos[rows]] = grid[rows]
        out[int(s)] = g
    return out


def attention_scores(attention: Mapping[int, np.ndarray], causal: bool,
                     vocab: Mapping[int, Mapping[int, int]] | None = None,
                     grids: Mapping[int, np.ndarray] | None = None,
                     key_starts: Mapping[int, int] | None = None) -> dict[str, float]:
    """Attention-pattern scores (first/previous/self/same token, distance, locality, entropy).

    ``vocab`` maps sentence id → {position → vocabulary id}; without it ``same_token`` is omitted. ``grids`` maps
    sentence (image) id → [n, 2] patch (row, column) by position, -1 for prefix tokens: distances are then 2D.
    ``key_starts`` (cross-attention) maps sentence id → position of its first key-side token (`normalize.cover`).
    Rows that are all zero or non-finite (padding) are ignored; other rows are rescaled to sum to 1.
    """
    if key_starts is not None:
        return _cross_scores(attention, key_starts, vocab)
    acc = {name: [0.0, 0] for name in ("first_token", "previous_token", "self", "same_token", "mean_distance",
                                         "uniform_distance", "entropy")}

    def add(name: str, values: np.ndarray) -> None:
        acc[name][0] += float(values.sum())
        acc[name][1] += int(values.size)

    for sid in sorted(attention):
        a = np.asarray(attention[sid], np.float64)
        n = a.shape[0]
        if a.ndim != 2 or a.shape[1] != n:
            raise ValueError(f"attention for sentence {sid} must be square, got {a.shape}")
        if n < 2:
            continue
        i = np.arange(n)
        rsum = a.sum(axis=1)
        valid = np.isfinite(a).all(axis=1) & (rsum > 0)
        allowed = (i[None, :] <= i[:, None]) if causal else np.ones((n, n), bool)
        n_allowed = allowed.sum(axis=1)
        a = np.where(valid[:, None], np.nan_to_num(a) / np.where(valid, rsum, 1.0)[:, None], 0.0)  # rows sum to 1
        r1 = valid & (i >= 1)
        r2 = valid & (i >= 2)
        add("first_token", a[r2, 0])
        add("previous_token", a[i[r2], i[r2] - 1])
        add("self", a[i[r1], i[r1]])
        grid = None if grids is None else grids.get(sid)
        if grid is None:
            dist = np.abs(i[:, None] - i[None, :]).astype(np.float64)
            add("mean_distance", (a * dist).sum(axis=1)[r1])
            add("uniform_distance", ((dist * allowed).sum(axis=1) / n_allowed)[r1])
        else:
            row, col = np.full(n, -1.0), np.full(n, -1.0)
            m = min(n, len(grid))
            row[:m], col[:m] = grid[:m, 0], grid[:m, 1]
            patch = (row >= 0) & (col >= 0)
            attended = (a * allowed)[:, patch].sum(axis=1) > 0
            for name, weights in (("mean_distance", a * allowed), ("uniform_distance", allowed * attended[:, None])):
                total, count = attention_distance(weights, row, col)
                acc[name][0] += total
                acc[name][1] += count
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)
        re = valid & (n_allowed >= 2)
        add("entropy", np.clip(-plogp.sum(axis=1)[re] / np.log(n_allowed[re]), 0.0, 1.0))
        if vocab is not None and sid in vocab:
            vmap = vocab[sid]
            v = np.array([vmap.get(p, -1 - p) for p in range(n)])  # unknown positions never match
            same = (v[:, None] == v[None, :]) & allowed & ~np.eye(n, dtype=bool)
            rs = r1 & same.any(axis=1)
            add("same_token", (a * same).sum(axis=1)[rs])

    out = {name: s / c for name, (s, c) in acc.items() if c > 0}
    if "mean_distance" in out and out.get("uniform_distance", 0) > 0:
        out["locality"] = float(np.clip(1.0 - out["mean_distance"] / out["uniform_distance"], -1.0, 1.0))
    out.pop("uniform_distance", None)
    if vocab is None:
        out.pop("same_token", None)
    return {k: float(v) for k, v in out.items()}


def _cross_scores(attention: Mapping[int, np.ndarray], key_starts: Mapping[int, int],
                  vocab: Mapping[int, Mapping[int, int]] | None) -> dict[str, float]:
    """`attention_scores` of a cross-attention head: first key-side token, same token, entropy."""
    acc = {name: [0.0, 0] for name in ("first_token", "same_token", "entropy")}
    for sid in sorted(attention):
        a = np.asarray(attention[sid], np.float64)
        n, start = a.shape[0], key_starts[sid]
        if a.ndim != 2 or a.shape[1] != n:
            raise ValueError(f"attention for sentence {sid} must be square, got {a.shape}")
        allowed = cover(n, False, start)
        a = np.where(allowed, np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), 0.0)[:start, start:]
        rsum = a.sum(axis=1)
        valid = np.isfinite(np.asarray(attention[sid], np.float64)[:start, start:]).all(axis=1) & (rsum > 0)
        if a.shape[1] < 1 or not valid.any():
            continue
        a = a[valid] / rsum[valid, None]
        acc["first_token"][0] += float(a[:, 0].sum())
        acc["first_token"][1] += int(a.shape[0])
        if a.shape[1] >= 2:
            with np.errstate(divide="ignore", invalid="ignore"):
                plogp = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)
            ent = np.clip(-plogp.sum(axis=1) / np.log(a.shape[1]), 0.0, 1.0)
            acc["entropy"][0] += float(ent.sum())
            acc["entropy"][1] += int(ent.size)
        if vocab is not None and sid in vocab:
            vmap = vocab[sid]
            qv = np.array([vmap.get(p, -1 - p) for p in range(start)])[valid]
            kv = np.array([vmap.get(p, -1 - p) for p in range(start, n)])
            same = qv[:, None] == kv[None, :]
            rs = same.any(axis=1)
            acc["same_token"][0] += float((a * same).sum(axis=1)[rs].sum())
            acc["same_token"][1] += int(rs.sum())
    return {name: s / c for name, (s, c) in acc.items() if c > 0}


def concentration(x: np.ndarray, groups: np.ndarray) -> float | None:
    """Mean cosine similarity of centred vectors within groups minus that over all pairs, in [−1, 1].

    Only groups with ≥ 2 members count; None when there is no such group. O(N·d).
    """
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    nrm = np.linalg.norm(x, axis=1)
    keep = nrm > 1e-12 * max(float(nrm.max(initial=0.0)), 1e-300)
    u, g = x[keep] / nrm[keep, None], np.asarray(groups)[keep]
    n = len(u)
    if n < 2:
        return None
    _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    if counts.max() < 2:
        return None
    sums = np.zeros((len(counts), u.shape[1]))
    np.add.at(sums, inv.ravel(), u)
    multi = counts >= 2
    sq, cm = np.einsum("gd,gd->g", sums, sums)[multi], counts[multi]
    within = (sq - cm).sum() / (cm * (cm - 1)).sum()  # mean cosine over ordered same-group pairs a ≠ b
    total = u.sum(axis=0)
    baseline = (float(np.dot(total, total)) - n) / (n * (n - 1))
    return float(np.clip(within - baseline, -1.0, 1.0))


def _geometry_scores(sample: HeadSample, tokens_vocab: np.ndarray | None) -> dict[str, float]:
    out: dict[str, float] = {}
    pos = sample.side_position()
    qr, kr = sample.query_rows(), sample.key_rows()
    q, k = np.asarray(sample.q)[qr], np.asarray(sample.k)[kr]
    for name, groups in (("position_concentration", pos),
                         ("token_concentration", None if tokens_vocab is None else np.asarray(tokens_vocab))):
        if groups is None:
            continue
        # a side without vocabulary (audio frames: -1) has no token groups
        vals = [c for x, g in ((q, groups[qr]), (k, groups[kr]))
                if (name == "position_concentration" or (g >= 0).any()) and (c := concentration(x, g)) is not None]
        if vals:
            out[name] = float(np.mean(vals))
    if "position_concentration" in out and "token_concentration" in out:
        p, t = out["position_concentration"], out["token_concentration"]
        out["positional_vs_semantic"] = float((p - t) / (abs(p) + abs(t))) if abs(p) + abs(t) > 1e-12 else 0.0
    return out


def _weight_corr(w_q: np.ndarray, w_k: np.ndarray) -> float:
    a, b = np.asarray(w_q, np.float64).ravel(), np.asarray(w_k, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"W_Q and W_K must have the same shape, got {np.shape(w_q)} and {np.shape(w_k)}")
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.einsum("i,i->", a, a) * np.einsum("i,i->", b, b)))
    return float(np.clip(np.einsum("i,i->", a, b) / den, -1, 1)) if den > 0 else 0.0


def head_scores(sample: HeadSample, attention: Mapping[int, np.ndarray], *, v_norms: np.ndarray | None = None,
                tokens_vocab: np.ndarray | None = None, w_q: np.ndarray | None = None,
                w_k: np.ndarray | None = None, grid: np.ndarray | None = None) -> dict[str, float]:
    """All behaviour scores of one head (see the module docstring for names and ranges).

    ``attention`` maps sentence id → that sentence's [n, n] probability matrix (rows = queries, index = position);
    ``tokens_vocab`` is the [N] vocabulary id of each sample token; ``w_q``/``w_k`` the head's projection weights;
    ``grid`` the [N, 2] patch (row, column) of each sample token of an image model (-1 for prefix tokens).
    """
    vocab = None if tokens_vocab is None else _vocab_by_sentence(sample, tokens_vocab)
    grids = None if grid is None else _grid_by_sentence(sample, np.asarray(grid, np.float64))
    out = attention_scores(attention, sample.causal, vocab, grids, sample.key_starts())
    out.update(_geometry_scores(sample, tokens_vocab))
    if w_q is not None and w_k is not None:
        out["wq_wk_correlation"] = _weight_corr(w_q, w_k)
    if v_norms is not None and np.size(v_norms):  # the key side's values (cross-attention: the other rows have none)
        out["value_norm"] = float(np.mean(np.asarray(v_norms, np.float64)[sample.key_rows()]))
    return ordered(out)
