"""The attention-aware t-SNE ("faithful" layouts; docs/reference/faithfulness.md).

Classic t-SNE only sees the kNN graph of the joint set, so a query's far keys land anywhere and the picture ranks
them unlike attention. Two terms are added to t-SNE's objective, both built from the head's attention edges
(`normalize.pairs.AttentionPairs`):

* **attention affinities**: P = (1 − mix)·P_kNN + mix·P_attn, P_attn the symmetrised query→key attention of the
  edges (normalised to sum 1): attended keys attract their queries as kNN neighbours do;
* **rank stress** (weight ``stress``): for every edge, a target distance taken from the row's own high-dimensional
  query→key distances, reassigned in attention order (the most attended key gets the row's smallest distance, and
  so on: Kruskal's rank images). The stress Σ (d − s_q·δ)² / E, with s_q the least-squares scale of query q's row,
  pulls each query's keys into attention order with the ratios of the distances of the space the layout is
  computed from, at whatever scale t-SNE gives that query's surroundings.

A third term (``order``; measured in docs/reference/faithfulness.md) asks for the measure itself on heads whose
picture reaches the trust floor at one of its checks: each row's soft Spearman correlation between −distance and
attention, with soft ranks σ((u_l − u_j)/τ) summed over the row's kept keys (u: the row's distances over their
mean), averaged over rows.

The optimiser is openTSNE's gradient descent (gains, momentum, early exaggeration) with the stress gradient added
to its FFT gradient, so the cost is one t-SNE plus a pass over the edges per iteration. The stress weight may follow
a trustworthiness floor (`StressWeight`): raised while the picture's trustworthiness@10, estimated on a seeded
sample (`TrustSample`), stays above the floor and lowered when it falls below, so each head gets as much ranking as
its neighbourhoods allow. Deterministic: no random step beyond the PCA start and the seeded sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from .knn import SampleRanks

__all__ = ["FaithfulTerms", "StressWeight", "TrustSample", "faithful_terms", "faithful_tsne"]


@dataclass(frozen=True)
class FaithfulTerms:
    """The edges' point ids (grouped by query) and rank-image target distances, P_attn, `target_sq` (Σ δ² of each
    point's row, 1e-300 for a point that is no query), the rows' edge offsets and each edge's attention rank in its
    row (average ranks, centred and scaled to norm 1 per row; 0 in a row whose attention is constant)."""

    query: np.ndarray
    key: np.ndarray
    target: np.ndarray
    p_attn: sp.csr_matrix
    target_sq: np.ndarray
    row_start: np.ndarray
    order_rank: np.ndarray

    @cached_property
    def order_rows(self) -> int:
        """How many rows have an attention ranking (the order term's mean is over these)."""
        if not len(self.order_rank):
            return 0
        return int(np.count_nonzero(np.add.reduceat(self.order_rank ** 2, self.row_start[:-1]) > 0))


def _rank_images(query: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Each row's distances sorted ascending and laid onto its edges in their (attention-descending) order."""
    return distance[np.lexsort((distance, query))]


def _order_ranks(query: np.ndarray, attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets of edges grouped by query (each row by attention, descending), and each edge's average rank of
    attention in its row, centred and scaled to norm 1 per row (0 in a row whose attention is constant)."""
    e = len(query)
    if not e:
        return np.zeros(1, np.int64), np.zeros(0)
    new_row = np.r_[True, query[1:] != query[:-1]]
    starts = np.r_[np.flatnonzero(new_row), e].astype(np.int64)
    row = np.cumsum(new_row) - 1
    size = np.diff(starts)[row]
    pos = np.arange(e) - starts[row]
    new_tie = new_row | np.r_[True, attention[1:] != attention[:-1]]
    tie_start = np.flatnonzero(new_tie)
    tie = np.cumsum(new_tie) - 1
    lo, hi = pos[tie_start][tie], pos[np.r_[tie_start[1:], e] - 1][tie]
    ranks = size - (lo + hi) / 2.0 - (size + 1) / 2.0  # ascending average rank, centred
    norm = np.sqrt(np.bincount(row, ranks * ranks))[row]
    return starts, np.divide(ranks, norm, out=np.zeros(e), where=norm > 0)


def faithful_terms(x: np.ndarray, pairs: Any, metric: str) -> FaithfulTerms:
    """Targets and P_attn of `pairs` (grouped by query, attention descending) on the prepared joint set `x`."""
    q, k = pairs.query, pairs.key
    xq, xk = x[q].astype(np.float64), x[k].astype(np.float64)
    dist = 1.0 - (xq * xk).sum(axis=1) if metric == "cosine" else np.linalg.norm(xq - xk, axis=1)
    n = len(x)
    pa = sp.csr_matrix((np.asarray(pairs.attention, np.float64), (q, k)), shape=(n, n))
    pa = (pa + pa.T).tocsr()
    total = pa.sum()
    target = _rank_images(q, np.maximum(dist, 0.0))
    target_sq = np.maximum(np.bincount(q, weights=target * target, minlength=n), 1e-300)
    starts, ranks = _order_ranks(np.asarray(q), np.asarray(pairs.attention, np.float64))
    return FaithfulTerms(np.asarray(q, np.int64), np.asarray(k, np.int64), target, pa / total if total > 0 else pa,
                         target_sq, starts, ranks)


@numba.njit(nogil=True, cache=False)
def _stress_kernel(emb, query, key, target, target_sq, factor, grad):
    """The two passes over the edges: each row's least-squares scale s_q = Σ d·δ / Σ δ², then the forces."""
    num = np.zeros(emb.shape[0])
    dist = np.empty(len(query))
    for e in range(len(query)):
        a, b = query[e], key[e]
        d0 = emb[a, 0] - emb[b, 0]
        d1 = emb[a, 1] - emb[b, 1]
        dist[e] = np.sqrt(d0 * d0 + d1 * d1) + 1e-12
        num[a] += dist[e] * target[e]
    for e in range(len(query)):
        a, b = query[e], key[e]
        c = factor * (1.0 - num[a] / target_sq[a] * target[e] / dist[e])
        g0 = c * (emb[a, 0] - emb[b, 0])
        g1 = c * (emb[a, 1] - emb[b, 1])
        grad[a, 0] += g0
        grad[a, 1] += g1
        grad[b, 0] -= g0
        grad[b, 1] -= g1


#: Temperature of the order term's soft ranks, in units of a row's mean distance.
ORDER_TAU = 0.1


#: A row's soft ranks are computed in float32 from e_j = exp((u_j − min u)/τ) when its spread (max u − min u)/τ is
#: below this (σ of a pair is then e_l / (e_l + e_j): one exponential per key, not per pair, and no overflow), and
#: pair by pair in float64 otherwise; σ(1 − σ) and the gradient's pair loop are float32 on both paths. Reassociated
#: sums (no NaN/inf assumptions): the wide path may overflow exp.
ORDER_FAST_SPREAD = 80.0


@numba.njit(nogil=True, cache=False, fastmath={"reassoc", "contract", "arcp"})
def _order_kernel(emb, query, key, row_start, rank, tau, factor, grad):
    """Add −factor·∇ Σ_rows corr_r: corr_r the Pearson correlation of a row's soft ranks of −distance,
    s_j = Σ_l σ((u_l − u_j)/τ) with u = d / mean(d), and its attention ranks (centred, norm 1)."""
    top = 0
    for r in range(len(row_start) - 1):
        top = max(top, row_start[r + 1] - row_start[r])
    d, u, s, g, gu = np.empty(top), np.empty(top), np.empty(top), np.empty(top), np.empty(top)
    ex, gf = np.empty(top, np.float32), np.empty(top, np.float32)
    dv = np.empty(top * top, np.float32)  # σ'(row j, column l) = σ·(1 − σ), full and symmetric
    for r in range(len(row_start) - 1):
        a, b = row_start[r], row_start[r + 1]
        m = b - a
        if m < 2:
            continue
        nr = 0.0
        for e in range(a, b):
            nr += rank[e] * rank[e]
        if nr == 0.0:
            continue
        mean = 0.0
        for j in range(m):
            x0 = emb[query[a + j], 0] - emb[key[a + j], 0]
            x1 = emb[query[a + j], 1] - emb[key[a + j], 1]
            d[j] = np.sqrt(x0 * x0 + x1 * x1) + 1e-12
            mean += d[j]
        mean /= m
        lo, hi = np.inf, -np.inf
        for j in range(m):
            u[j] = d[j] / mean
            lo = min(lo, u[j])
            hi = max(hi, u[j])
        if (hi - lo) / tau < ORDER_FAST_SPREAD:
            for j in range(m):
                ex[j] = np.exp(np.float32((u[j] - lo) / tau))
            for j in range(m):
                acc, xj, o = np.float32(0.0), ex[j], j * top
                for lk in range(m):
                    v = ex[lk] / (ex[lk] + xj)
                    acc += v
                    dv[o + lk] = v * (np.float32(1.0) - v)
                s[j] = acc
        else:
            for j in range(m):
                acc, o = 0.0, j * top
                for lk in range(m):
                    v = 1.0 / (1.0 + np.exp(-(u[lk] - u[j]) / tau))
                    acc += v
                    dv[o + lk] = v * (1.0 - v)
                s[j] = acc
        sm = 0.0
        for j in range(m):
            sm += s[j]
        nc = 0.0
        for j in range(m):
            s[j] -= sm / m
            nc += s[j] * s[j]
        nc = np.sqrt(nc)
        if nc < 1e-12:
            continue
        corr = 0.0
        for j in range(m):
            corr += s[j] * rank[a + j]
        corr /= nc
        for j in range(m):
            g[j] = (rank[a + j] / nc - corr * s[j] / (nc * nc)) / tau
            gf[j] = g[j]
        ug = 0.0
        for lk in range(m):  # ∂/∂u_l = Σ_j σ'_lj (g_j − g_l)
            acc, row, o = np.float32(0.0), np.float32(0.0), lk * top
            for j in range(m):
                acc += dv[o + j] * gf[j]
                row += dv[o + j]
            gu[lk] = acc - row * g[lk]
            ug += gu[lk] * u[lk]
        for k in range(m):
            gd = -factor * (gu[k] - ug / m) / mean
            e = a + k
            c = gd / d[k]
            x0 = c * (emb[query[e], 0] - emb[key[e], 0])
            x1 = c * (emb[query[e], 1] - emb[key[e], 1])
            grad[query[e], 0] += x0
            grad[query[e], 1] += x1
            grad[key[e], 0] -= x0
            grad[key[e], 1] -= x1


def _stress_gradient(emb: np.ndarray, terms: FaithfulTerms, weight: float, grad: np.ndarray,
                     order: float = 0.0) -> None:
    """Add weight·∇ Σ_e (d_e − s_q·δ_e)² / E to `grad` [n, 2] in place (s_q: the least-squares scale of query q's
    row) and, with ``order``, −weight·order·∇ of the rows' mean soft Spearman correlation (`_order_kernel`)."""
    if len(terms.target):
        _stress_kernel(emb, terms.query, terms.key, terms.target, terms.target_sq, 2.0 * weight / len(terms.target),
                       grad)
        if order > 0 and terms.order_rows:
            _order_kernel(emb, terms.query, terms.key, terms.row_start, terms.order_rank, ORDER_TAU,
                          weight * order / terms.order_rows, grad)


class TrustSample:
    """trustworthiness@k of a 2D picture of the prepared joint set, on a seeded sample of its points (as
    `metrics.trust_scores` computes it, with the high-dimensional ranks of `knn.SampleRanks`)."""

    def __init__(self, x: np.ndarray, *, k: int = 10, size: int = 2000, seed: int = 0):
        n = len(x)
        self.idx = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)) if n > size \
            else np.arange(n)
        self.ranks = SampleRanks(np.asarray(x, np.float64)[self.idx])
        self.k = min(k, (len(self.idx) - 1) // 2)

    def __call__(self, emb: np.ndarray) -> float:
        """The estimate for coordinates ``emb`` of every point (rows as the joint set)."""
        from scipy.spatial import cKDTree

        e = np.asarray(emb, np.float64)[self.idx]
        return self.ranks.trustworthiness(cKDTree(e).query(e, self.k + 1)[1][:, 1:])


#: Relative steps of the stress weight at the trust checks of the main phase, finer as the picture settles.
TRUST_STEPS = (2.0, 2.0, 2.0 ** 0.5, 2.0 ** 0.5, 2.0 ** 0.25, 2.0 ** 0.25)


class StressWeight:
    """The stress weight over the run: ``start`` throughout, or, with ``trust`` and ``floor``, adapted at evenly
    spaced checks of the main phase (the first after a quarter of it, the last an eighth before its end): raised by
    the check's step while the picture's estimated trustworthiness is at least ``floor``, lowered otherwise. The
    order term (`faithful_tsne`'s ``order``) joins at the first check that finds the picture at the floor and stays
    to the end (taking it away later leaves a worse picture); a head that never reaches the floor never gets it."""

    def __init__(self, start: float, *, early_iter: int, n_iter: int, trust: TrustSample | None = None,
                 floor: float = 0.0):
        self.value = start
        every = max(1, n_iter // (len(TRUST_STEPS) + 2))
        self.checks = {early_iter + every * (j + 2): step for j, step in enumerate(TRUST_STEPS)} \
            if trust is not None and trust.k >= 1 and floor > 0 and start > 0 else {}
        self.trust, self.floor = trust, floor
        #: the iteration the order term joined at: with checks, the first that finds the picture at the floor
        self.order_from: int | None = None if self.checks else 0
        self.history: list[tuple[int, float, float]] = []  #: (iteration, estimated trust, weight after the check)

    @property
    def order_share(self) -> float:
        """The order term's share: 1 from the iteration it joined at, 0 before (or without it)."""
        return 0.0 if self.order_from is None else 1.0

    def at(self, iteration: int, emb: np.ndarray) -> float:
        """The weight for ``iteration`` (counted over both phases) of the picture ``emb``."""
        step = self.checks.get(iteration)
        if step is not None:
            estimate = self.trust(emb)
            if self.order_from is None and estimate >= self.floor:
                self.order_from = iteration
            self.value *= step if estimate >= self.floor else 1.0 / step
            self.history.append((iteration, estimate, self.value))
        return self.value


def faithful_tsne(p_knn: sp.csr_matrix, terms: FaithfulTerms | None, init: np.ndarray, *,
                  stress: float | StressWeight, mix: float, early_iter: int, n_iter: int, exaggeration: float,
                  dof: float, order: float = 0.0, threads: int = 1) -> np.ndarray:
    """The 2D layout: t-SNE on the mixed affinities plus the rank stress (a fixed weight or a `StressWeight`) and,
    with ``order``, the soft-Spearman term at ``order`` times the stress weight, from `init` (rescaled to std
    1e-4)."""
    from openTSNE.tsne import gradient_descent

    from .methods import tsne_start

    from .tsne_gradient import kl_fft

    if init.shape[1] != 2:
        raise ValueError(f"the faithful t-SNE is 2D (FFT gradients), got {init.shape[1]} dimensions")
    fft = {"n_interpolation_points": 3, "min_num_intervals": 30, "ints_in_interval": 2}
    use = terms is not None and len(terms.target) > 0
    p = ((1.0 - mix) * p_knn + mix * terms.p_attn).tocsr() if use and mix > 0 else p_knn.copy()
    weight = stress if isinstance(stress, StressWeight) else \
        StressWeight(stress, early_iter=early_iter, n_iter=n_iter)
    iteration = [0]

    def objective(embedding: np.ndarray, P: sp.csr_matrix, dof: float, **_: Any) -> tuple[float, np.ndarray]:
        kl, grad = kl_fft(embedding, P, dof, fft, n_jobs=threads)
        w = weight.at(iteration[0], embedding) if use else 0.0
        if w > 0:
            _stress_gradient(embedding, terms, w, grad, order * weight.order_share)
        iteration[0] += 1
        return kl, grad

    emb = tsne_start(init)
    n = len(emb)
    opt = gradient_descent()
    for iters, exag, momentum in ((early_iter, 12.0, 0.8), (n_iter, exaggeration, 0.8)):
        if iters > 0:
            _, emb = opt(emb, p, iters, objective, learning_rate=n / exag, momentum=momentum, exaggeration=exag,
                         dof=dof, n_jobs=threads, **fft)
    return np.asarray(emb, dtype=np.float64)
