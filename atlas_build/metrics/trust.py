"""How faithful a head's layout is to its query/key vectors."""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.manifold import trustworthiness

from ..normalize import MAX_PAIRS, HeadSample, same_sentence_pairs

__all__ = ["trust_scores"]


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
