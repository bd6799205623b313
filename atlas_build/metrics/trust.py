"""How faithful a head's layout is to its query/key vectors."""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.manifold import trustworthiness

from ..normalize import HeadSample, sample_pairs
from ..normalize.joint import JointSet

__all__ = ["trust_scores"]


def trust_scores(sample: HeadSample, joint: JointSet, coords: np.ndarray, *, metric: str, k: int = 10,
                 sample_size: int = 2000, seed: int = 0) -> dict[str, float]:
    """Faithfulness of one layout ``coords`` of the normalised ``joint`` set (same rows; its tokens are the
    ``sample``'s rows), in the layout's ``metric``.

    * ``spearman_layout_dot``: Spearman between layout distance ‖x_qi − x_kj‖ and the dot product q_i·k_j over
      same-sentence pairs (causal: j ≤ i; cross-attention: query side → key side; the seeded subsample of
      `sample_pairs`). Negative = faithful (close in the picture ⇔ high attention score).
    * ``trustworthiness``: sklearn trustworthiness@k of the layout against the joint set [q'; k'] (``metric`` in the
      high-dimensional space), on a seeded sample of ``sample_size`` points.

    A measure that cannot be computed (too few points or pairs, constant input) is omitted.
    """
    coords = np.asarray(coords, np.float64)
    q_rows, k_rows = sample.query_rows(), sample.key_rows()
    if coords.shape[0] != joint.x.shape[0] or joint.m != len(q_rows) or len(joint.key_rows) != len(k_rows):
        raise ValueError(f"coords must have {len(q_rows) + len(k_rows)} rows (queries then keys); "
                         f"got {coords.shape[0]}")
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    qi, kj = sample_pairs(sample, rng=rng)
    if qi.size >= 3:
        q, kk = np.asarray(sample.q, np.float64), np.asarray(sample.k, np.float64)
        dot = np.einsum("pd,pd->p", q[qi], kk[kj])
        at_q, at_k = joint.halves(coords)
        point = np.full(len(sample.q), -1)  # sample row → its query (key) point's index within its half
        point[q_rows] = np.arange(len(q_rows))
        kpoint = point.copy() if sample.side is None else np.full(len(sample.q), -1)
        kpoint[k_rows] = np.arange(len(k_rows))
        dist = np.linalg.norm(at_q[point[qi]] - at_k[kpoint[kj]], axis=1)
        if np.ptp(dot) > 0 and np.ptp(dist) > 0:
            out["spearman_layout_dot"] = float(stats.spearmanr(dist, dot).statistic)
    x_all = np.asarray(joint.x, np.float64)
    m = x_all.shape[0]
    idx = np.sort(rng.choice(m, size=sample_size, replace=False)) if m > sample_size else np.arange(m)
    k_eff = min(k, (len(idx) - 1) // 2)
    if k_eff >= 1:
        x = x_all[idx]
        if metric == "cosine":  # zero vectors have no direction: nudge them so cosine stays defined
            x = np.where(np.linalg.norm(x, axis=1, keepdims=True) > 0, x, 1e-12)
        out["trustworthiness"] = float(trustworthiness(x, coords[idx], n_neighbors=k_eff, metric=metric))
    return out
