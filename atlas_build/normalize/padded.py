"""The padded joint space: every key gets one more coordinate so that all keys have one length M, every query is
scaled to that length, and everything is divided by M (all points on the unit sphere). For a query q and key k,

    ‖q' − k'‖² = 2 − 2·q·k / (‖q‖·M),

so within one query's row distance falls exactly as q·k rises (Bachrach et al. 2014; Neyshabur & Srebro 2015):
wherever attention is softmax(q·k) (no position biases), nearer means more attended. The normalization's scaling
and key translation shift each row's dot products by one constant, so the normalised vectors give the same order as
the raw ones. Queries of zero length stay at the origin (they rank no key); a set whose keys are all zero gets M = 1.

`faithful-2d` is computed from this space (the layout registry's ``space``), and the per-query ceiling ``padded``
of the head pages is measured in it (docs/reference/faithfulness.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["padded_space"]


def padded_space(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Joint [q'; k'] [len(q) + len(k), d + 1] float64 on the unit sphere: q' = [q/‖q‖, 0],
    k' = [k, √(M² − ‖k‖²)]/M with M the largest key length."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    if q.ndim != 2 or k.ndim != 2 or q.shape[1] != k.shape[1]:
        raise ValueError(f"queries and keys must be [n, d] with one d, got {q.shape} and {k.shape}")
    qn = np.linalg.norm(q, axis=1, keepdims=True)
    kn2 = (k ** 2).sum(axis=1, keepdims=True)
    m2 = float(kn2.max(initial=0.0))
    m = np.sqrt(m2) if m2 > 0 else 1.0
    pad = np.sqrt(np.maximum(m * m - kn2, 0.0))
    queries = np.hstack([q / np.where(qn > 0, qn, 1.0), np.zeros((len(q), 1))])
    return np.concatenate([queries, np.hstack([k, pad]) / m])
