"""How faithful a head's layout is, and how alike two heads' attention patterns are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats
from sklearn.manifold import trustworthiness

from ..normalize import MAX_PAIRS, HeadSample, same_sentence_pairs

__all__ = ["trust_scores", "head_similarity", "similarity_matrix"]


def trust_scores(sample: HeadSample, qn: np.ndarray, kn: np.ndarray, coords: np.ndarray, *, k: int = 10,
                 sample_size: int = 2000, seed: int = 0, metric: str = "cosine") -> dict[str, float]:
    """Faithfulness of one layout ``coords`` ([2N, dims]: queries then keys, same token order as the sample).

    * ``spearman_layout_dot``: Spearman between layout distance ‖x_qi − x_kj‖ and the dot product q_i·k_j over
      same-sentence pairs (causal: j ≤ i; seeded subsample of at most ``MAX_PAIRS``). Negative = faithful
      (close in the picture ⇔ high attention score).
    * ``trustworthiness``: sklearn trustworthiness@k of the layout against the joint set [q'; k'] (``metric`` in the
      high-dimensional space), on a seeded sample of ``sample_size`` points.

    A measure that cannot be computed (too few points or pairs, constant input) is omitted.
    """
    qn, kn, coords = np.asarray(qn, np.float64), np.asarray(kn, np.float64), np.asarray(coords, np.float64)
    n = qn.shape[0]
    if coords.shape[0] != 2 * n or kn.shape[0] != n:
        raise ValueError(f"coords must have 2N = {2 * n} rows (queries then keys); got {coords.shape[0]}")
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    qi, kj = same_sentence_pairs(sample.sentence_id, sample.position, sample.causal)
    if qi.size > MAX_PAIRS:
        sel = np.sort(rng.choice(qi.size, size=MAX_PAIRS, replace=False))
        qi, kj = qi[sel], kj[sel]
    if qi.size >= 3:
        q, kk = np.asarray(sample.q, np.float64), np.asarray(sample.k, np.float64)
        dot = np.einsum("pd,pd->p", q[qi], kk[kj])
        dist = np.linalg.norm(coords[qi] - coords[n + kj], axis=1)
        if np.ptp(dot) > 0 and np.ptp(dist) > 0:
            out["spearman_layout_dot"] = float(stats.spearmanr(dist, dot).statistic)
    joint = np.concatenate([qn, kn])
    m = joint.shape[0]
    idx = np.sort(rng.choice(m, size=sample_size, replace=False)) if m > sample_size else np.arange(m)
    k_eff = min(k, (len(idx) - 1) // 2)
    if k_eff >= 1:
        x = joint[idx]
        if metric == "cosine":  # zero vectors have no direction: nudge them so cosine stays defined
            x = np.where(np.linalg.norm(x, axis=1, keepdims=True) > 0, x, 1e-12)
        out["trustworthiness"] = float(trustworthiness(x, coords[idx], n_neighbors=k_eff, metric=metric))
    return out


def _pattern_vector(attn: Mapping[int, np.ndarray], sids: Sequence[int]) -> np.ndarray:
    """Concatenated attention entries of the given sentences, lower triangle incl. diagonal, rows ≥ 1.

    Row 0 and the strictly-upper triangle are dropped: they are fixed (1 / 0) in causal models and would inflate
    the correlation; for bidirectional models this keeps the comparison well-defined and symmetric in usage.
    """
    parts = []
    for s in sids:
        a = np.asarray(attn[s], np.float64)
        r, c = np.tril_indices(a.shape[0])
        keep = r >= 1
        parts.append(a[r[keep], c[keep]])
    return np.concatenate(parts) if parts else np.zeros(0)


def _shared(heads: Sequence[Mapping[int, np.ndarray]]) -> list[int]:
    common = set(heads[0])
    for h in heads[1:]:
        common &= set(h)
    shapes_ok = [s for s in sorted(common) if len({np.shape(h[s]) for h in heads}) == 1]
    return shapes_ok


def head_similarity(attn_a: Mapping[int, np.ndarray], attn_b: Mapping[int, np.ndarray]) -> float:
    """Pearson correlation of two heads' attention patterns over the sentences both have (same shape).

    Uses the lower triangle (incl. diagonal) of rows ≥ 1 of every shared sentence. NaN when nothing is shared or
    a pattern is constant.
    """
    sids = _shared([attn_a, attn_b])
    a, b = _pattern_vector(attn_a, sids), _pattern_vector(attn_b, sids)
    if a.size < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.einsum("i,i->", a, a) * np.einsum("i,i->", b, b)))
    return float(np.clip(np.einsum("i,i->", a, b) / den, -1.0, 1.0)) if den > 0 else float("nan")


def similarity_matrix(heads: Sequence[Mapping[int, np.ndarray]]) -> np.ndarray:
    """[H, H] matrix of `head_similarity` over the sentences shared by *all* heads (NaN for constant patterns)."""
    if not heads:
        return np.zeros((0, 0))
    sids = _shared(heads)
    x = np.stack([_pattern_vector(h, sids) for h in heads])
    if x.shape[1] < 2:
        return np.full((len(heads), len(heads)), np.nan)
    x = x - x.mean(axis=1, keepdims=True)
    nrm = np.linalg.norm(x, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = (x @ x.T) / np.outer(nrm, nrm)
    return np.clip(sim, -1.0, 1.0)
