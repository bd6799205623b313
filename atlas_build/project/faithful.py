"""The attention-aware t-SNE ("faithful" layouts; docs/reference/faithfulness.md).

Classic t-SNE only sees the kNN graph of the joint set, so a query's far keys land anywhere and the picture ranks
them unlike attention. Two terms are added to t-SNE's objective, both built from the head's attention edges
(`normalize.pairs.AttentionPairs`):

* **attention affinities**: P = (1 − mix)·P_kNN + mix·P_attn, P_attn the symmetrised query→key attention of the
  edges (normalised to sum 1): attended keys attract their queries as kNN neighbours do;
* **rank stress** (weight ``stress``): for every edge, a target distance taken from the row's own high-dimensional
  query→key distances, reassigned in attention order (the most attended key gets the row's smallest distance, and
  so on: Kruskal's rank images). The stress Σ (d − s·δ)² / E, with s the least-squares scale, pulls each query's
  keys into attention order while keeping the distances' spread of the space the layout is computed from.

The optimiser is openTSNE's gradient descent (gains, momentum, early exaggeration) with the stress gradient added
to its FFT gradient, so the cost is one t-SNE plus a pass over the edges per iteration. Deterministic: no random
step beyond the PCA start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["FaithfulTerms", "faithful_terms", "faithful_tsne"]


@dataclass(frozen=True)
class FaithfulTerms:
    """The edges' point ids and rank-image target distances, and P_attn."""

    query: np.ndarray
    key: np.ndarray
    target: np.ndarray
    p_attn: sp.csr_matrix


def _rank_images(query: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Each row's distances sorted ascending and laid onto its edges in their (attention-descending) order."""
    return distance[np.lexsort((distance, query))]


def faithful_terms(x: np.ndarray, pairs: Any, metric: str) -> FaithfulTerms:
    """Targets and P_attn of `pairs` (grouped by query, attention descending) on the prepared joint set `x`."""
    q, k = pairs.query, pairs.key
    xq, xk = x[q].astype(np.float64), x[k].astype(np.float64)
    dist = 1.0 - (xq * xk).sum(axis=1) if metric == "cosine" else np.linalg.norm(xq - xk, axis=1)
    n = len(x)
    pa = sp.csr_matrix((np.asarray(pairs.attention, np.float64), (q, k)), shape=(n, n))
    pa = (pa + pa.T).tocsr()
    total = pa.sum()
    return FaithfulTerms(q, k, _rank_images(q, np.maximum(dist, 0.0)), pa / total if total > 0 else pa)


def _stress_gradient(emb: np.ndarray, terms: FaithfulTerms, weight: float, grad: np.ndarray) -> None:
    """Add weight·∇ Σ_e (d_e − s·δ_e)² / E to `grad` in place (s: the least-squares scale of the targets)."""
    diff = emb[terms.query] - emb[terms.key]
    d = np.sqrt((diff ** 2).sum(axis=1)) + 1e-12
    t = terms.target
    s = float(d @ t) / max(float(t @ t), 1e-300)
    coef = (2.0 * weight / len(t)) * (d - s * t) / d
    n = len(emb)
    for axis in range(emb.shape[1]):
        c = coef * diff[:, axis]
        grad[:, axis] += np.bincount(terms.query, c, minlength=n) - np.bincount(terms.key, c, minlength=n)


def faithful_tsne(p_knn: sp.csr_matrix, terms: FaithfulTerms | None, init: np.ndarray, *, stress: float, mix: float,
                  early_iter: int, n_iter: int, exaggeration: float, dof: float, threads: int = 1) -> np.ndarray:
    """The 2D layout: t-SNE on the mixed affinities plus the rank stress, from `init` (rescaled to std 1e-4)."""
    from openTSNE.initialization import rescale
    from openTSNE.tsne import gradient_descent, kl_divergence_fft

    if init.shape[1] != 2:
        raise ValueError(f"the faithful t-SNE is 2D (FFT gradients), got {init.shape[1]} dimensions")
    fft = {"n_interpolation_points": 3, "min_num_intervals": 30, "ints_in_interval": 2}
    use = terms is not None and len(terms.target) > 0
    p = ((1.0 - mix) * p_knn + mix * terms.p_attn).tocsr() if use and mix > 0 else p_knn.copy()

    def objective(embedding: np.ndarray, P: sp.csr_matrix, dof: float, **_: Any) -> tuple[float, np.ndarray]:
        kl, grad = kl_divergence_fft(embedding, P, dof, fft, n_jobs=threads)
        if use and stress > 0:
            _stress_gradient(embedding, terms, stress, grad)
        return kl, grad

    emb = rescale(np.array(init, dtype=np.float64, order="C"), target_std=1e-4)
    n = len(emb)
    opt = gradient_descent()
    for iters, exag, momentum in ((early_iter, 12.0, 0.8), (n_iter, exaggeration, 0.8)):
        if iters > 0:
            _, emb = opt(emb, p, iters, objective, learning_rate=n / exag, momentum=momentum, exaggeration=exag,
                         dof=dof, n_jobs=threads, **fft)
    return np.asarray(emb, dtype=np.float64)
