"""Joint query/key normalization of one attention head (AttentionViz, DESIGN.md §1).

Two transformations leave every attention row softmax(q·kᵀ·scaling + mask) unchanged:

* scaling   q → c·q, k → k/c          (every dot product is unchanged), applied first;
* translation k → k + v               (each row's scores shift by the constant q_i·v; softmax is shift-invariant),
  with v chosen so that mean(K') = mean(Q').

So ``q' = c·q`` and ``k' = k/c + t`` with ``t = c·mean(q) − mean(k)/c``. Writing q̃ = q − mean(q), k̃ = k − mean(k),
the query–key distance about the common centroid is

    ‖q'_i − k'_j‖² = c²‖q̃_i‖² + ‖k̃_j‖²/c² − 2 q̃_i·k̃_j .

**Objective.** c is chosen per head to maximise the weighted Pearson correlation between −‖q'_i − k'_j‖ (Euclidean,
in the space where scaling and translation are defined) and the dot product q_i·k_j over same-sentence query–key
pairs (causal models: key position ≤ query position), weights ``w = exp(−dist / median(dist))`` favouring near pairs.
The two norm terms are noise for the proxy and move in opposite directions with c (queries' spread ∝ c, keys'
∝ 1/c), so the optimum trades them off: as c → 0 the key term dominates, as c → ∞ the query term does, and the
objective falls at both ends. The objective is the same whatever ``metric`` the layouts use: with the cosine
distance about the origin, c only moves the *keys'* directions (q' = c·q keeps every query direction), the correlation
then rises monotonically as c → 0 on most real heads (keys become centred directions) while queries and keys separate
into two regions of the picture — a boundary optimum, not a faithful picture (see docs/reference/head-labels.md).

The search is a log₂ grid over [1/16, 16] (step 2^¼, so c = 1 is a grid point; ties go to the grid point nearest
c = 1) followed by a bounded refinement around the best grid point; a refined value is kept only if it beats the
grid. Hence, on the (seeded) pair sample used, ``corr_after ≥ corr_c1`` exactly, where ``corr_c1`` is the objective at
c = 1 *with* translation. ``corr_before`` is the same correlation for the raw vectors (c = 1, no translation); it is
reported, not optimised. ``spearman_cosine_dot`` (the paper's measure) uses the cosine distance of q', k'.

All per-pair distances are evaluated in closed form from a few precomputed per-pair scalars, so each candidate c costs
O(pairs) and a head of 5 000 tokens takes a few tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from ..fsutil import round6
from ..project.layouts import METRICS

__all__ = [
    "C_MAX",
    "C_MIN",
    "MAX_PAIRS",
    "PAIR_SEED",
    "HeadSample",
    "Normalization",
    "apply_normalization",
    "cover",
    "normalize",
    "same_sentence_pairs",
    "sample_pairs",
    "weighted_corr",
]

MAX_PAIRS = 20_000   #: pairs used for the c search and the Spearman correlation (seeded subsample beyond this)
PAIR_SEED = 0        #: seed of that subsample
C_MIN, C_MAX = 1.0 / 16.0, 16.0
_GRID_LOG2 = np.arange(-4.0, 4.0 + 1e-9, 0.25)  # includes 0 → c = 1
_EPS = 1e-12


@dataclass(frozen=True)
class HeadSample:
    """One head's query and key vectors over a token sample."""

    q: np.ndarray            #: [N, d] query vectors (post-RoPE), one per token
    k: np.ndarray            #: [N, d] key vectors of the kv head this query head reads
    sentence_id: np.ndarray  #: [N] int, sentence of each token
    position: np.ndarray     #: [N] int, position within the sentence
    causal: bool
    scaling: float           #: the model multiplies q·k by this (usually d**-0.5)
    #: [N] uint8 or None. Cross-attention: 0 = a query-side token (its q row is the query), 1 = a key-side token
    #: (its k row is the key), each sentence holding its query-side tokens first (positions 0..n_q − 1), then its
    #: key-side tokens; rows of the other side are unused. None: self-attention, every token has both.
    side: np.ndarray | None = None

    def query_rows(self) -> np.ndarray:
        """Rows whose q is a query (every row for self-attention)."""
        return np.arange(len(self.q)) if self.side is None else np.flatnonzero(np.asarray(self.side) == 0)

    def key_rows(self) -> np.ndarray:
        """Rows whose k is a key (every row for self-attention)."""
        return np.arange(len(self.k)) if self.side is None else np.flatnonzero(np.asarray(self.side) == 1)

    def key_starts(self) -> dict[int, int] | None:
        """Cross-attention: sentence id → the position of its first key-side token; None for self-attention."""
        return None if self.side is None else key_starts(self.sentence_id, self.position, self.side)

    def side_position(self) -> np.ndarray:
        """[N] each token's position within its own side's sequence (`position` for self-attention)."""
        pos = np.asarray(self.position)
        starts = self.key_starts()
        if starts is None:
            return pos
        offset = np.array([starts[int(s)] for s in np.asarray(self.sentence_id)])
        return np.where(np.asarray(self.side) == 1, pos - offset, pos)


@dataclass(frozen=True)
class Normalization:
    """What `normalize` chose and measured for one head."""

    scale_c: float
    translation: np.ndarray  #: [d] vector added to the scaled keys
    mean_q_norm: float       #: mean ‖q‖ before normalization
    mean_k_norm: float       #: mean ‖k‖ before normalization
    corr_before: float       #: weighted corr(−Euclidean distance, dot), raw vectors (c = 1, no translation)
    corr_after: float        #: same, at the chosen c with translation (the maximised objective)
    spearman_cosine_dot: float  #: Spearman(cosine distance of q'/k', dot) over same-sentence pairs
    corr_c1: float = float("nan")  #: objective at c = 1 with translation (corr_after ≥ corr_c1 by construction)
    metric: str = "cosine"   #: layout metric the vectors are meant for (does not change c)
    n_pairs: int = 0         #: pairs actually used (after subsampling)

    def to_json(self) -> dict:
        """Plain-float summary (6 significant digits); non-finite values become 0.0."""
        vals = {
            "scale_c": self.scale_c,
            "translation_norm": float(np.linalg.norm(self.translation)),
            "mean_q_norm": self.mean_q_norm,
            "mean_k_norm": self.mean_k_norm,
            "norm_gap": self.mean_q_norm - self.mean_k_norm,
            "corr_before": self.corr_before,
            "corr_c1": self.corr_c1,
            "corr_after": self.corr_after,
            "spearman_cosine_dot": self.spearman_cosine_dot,
        }
        return {k: _round6(v) for k, v in vals.items()}


def _round6(v: float) -> float:
    return round6(v) if np.isfinite(v) else 0.0


def key_starts(sentence_id: np.ndarray, position: np.ndarray, side: np.ndarray) -> dict[int, int]:
    """sentence id → position of its first key-side token (`HeadSample.side`; the sentence's length when none)."""
    pos, key = np.asarray(position, np.int64), np.asarray(side) == 1
    ids, row_sentence = np.unique(np.asarray(sentence_id), return_inverse=True)
    ends = np.zeros(len(ids), np.int64)
    np.maximum.at(ends, row_sentence, pos + 1)
    starts = ends.copy()
    np.minimum.at(starts, row_sentence[key], pos[key])
    return dict(zip(ids.tolist(), starts.tolist()))


def cover(n: int, causal: bool, key_start: int | None = None) -> np.ndarray:
    """[n, n] bool, by position: the keys each query row's attention covers. Self-attention: all (causal: j ≤ i);
    cross-attention (``key_start``): the query-side rows (i < key_start) cover the key-side columns (j ≥ key_start)."""
    i = np.arange(n)
    if key_start is not None:
        return (i[:, None] < key_start) & (i[None, :] >= key_start)
    return (i[None, :] <= i[:, None]) if causal else np.ones((n, n), bool)


def same_sentence_pairs(sentence_id: np.ndarray, position: np.ndarray, causal: bool,
                        side: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All (query index, key index) pairs of tokens in the same sentence; causal keeps key position ≤ query position;
    with ``side`` (cross-attention, `HeadSample.side`) only query-side → key-side pairs.

    Pairs are sorted by query index, then key index.
    """
    sid = np.asarray(sentence_id)
    pos = np.asarray(position)
    if sid.shape != pos.shape or sid.ndim != 1:
        raise ValueError("sentence_id and position must be 1-D arrays of equal length")
    order = np.argsort(sid, kind="stable")
    bounds = np.flatnonzero(np.diff(sid[order])) + 1
    qs, ks = [], []
    for grp in np.split(order, bounds):
        if grp.size == 0:
            continue
        qi, kj = np.meshgrid(grp, grp, indexing="ij")
        qi, kj = qi.ravel(), kj.ravel()
        if side is not None:
            keep = (np.asarray(side)[qi] == 0) & (np.asarray(side)[kj] == 1)
            qi, kj = qi[keep], kj[keep]
        elif causal:
            keep = pos[kj] <= pos[qi]
            qi, kj = qi[keep], kj[keep]
        qs.append(qi)
        ks.append(kj)
    if not qs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    qi, kj = np.concatenate(qs).astype(np.int64), np.concatenate(ks).astype(np.int64)
    o = np.lexsort((kj, qi))
    return qi[o], kj[o]


def _wsum(w: np.ndarray, x: np.ndarray) -> float:
    # einsum, not BLAS: threaded 1-D BLAS dots cost milliseconds each on a busy 2-core machine
    return float(np.einsum("i,i->", w, x))


def weighted_corr(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Weighted Pearson correlation; 0.0 when either variable is (numerically) constant or < 3 pairs."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.size < 3:
        return 0.0
    w = np.ones_like(x) if w is None else np.asarray(w, np.float64)
    sw = w.sum()
    if not sw > 0:
        return 0.0
    w = w / sw
    dx = x - _wsum(w, x)
    dy = y - _wsum(w, y)
    vx, vy = _wsum(w, dx * dx), _wsum(w, dy * dy)
    scale_x = max(float(np.max(np.abs(x))), _EPS)
    scale_y = max(float(np.max(np.abs(y))), _EPS)
    if vx <= (1e-12 * scale_x) ** 2 or vy <= (1e-12 * scale_y) ** 2:
        return 0.0
    r = float(_wsum(w, dx * dy) / np.sqrt(vx * vy))
    return float(np.clip(r, -1.0, 1.0))


class _PairGeometry:
    """Distances between c·q_i and k_j/c + t(c) for a fixed set of pairs, without forming the pair vectors.

    q'·k' = q·k + c²·q·m_q − q·m_k (m = centroid) is linear in precomputed per-pair scalars; ‖k'‖ is evaluated
    per token (O(N·d) per c, no cancellation), so one candidate c costs O(pairs + N·d).
    """

    def __init__(self, q: np.ndarray, k: np.ndarray, qi: np.ndarray, kj: np.ndarray, mq: np.ndarray,
                 mk: np.ndarray) -> None:
        self.k, self.qi, self.kj = k, qi, kj
        self.mq, self.mk = mq, mk
        self.qk = np.einsum("pd,pd->p", q[qi], k[kj])
        self.qq = np.einsum("nd,nd->n", q, q)[qi]
        self.q_mq, self.q_mk = np.dot(q, self.mq)[qi], np.dot(q, self.mk)[qi]
        # centred terms for ‖q'−k'‖² = c²‖q̃‖² + ‖k̃‖²/c² − 2 q̃·k̃ (translated case; no cancellation)
        qc, kc = q - self.mq, k - self.mk
        self.qcqc = np.einsum("nd,nd->n", qc, qc)[qi]
        self.kckc = np.einsum("nd,nd->n", kc, kc)[kj]
        self.qckc = np.einsum("pd,pd->p", qc[qi], kc[kj])

    def distance(self, c: float, metric: str, translate: bool = True) -> np.ndarray:
        if translate and metric == "euclidean":
            return np.sqrt(np.maximum(c * c * self.qcqc + self.kckc / (c * c) - 2.0 * self.qckc, 0.0))
        if translate:
            qk = self.qk + c * c * self.q_mq - self.q_mk
            kp = self.k / c + (c * self.mq - self.mk / c)
        else:
            qk, kp = self.qk, self.k / c
        qq = c * c * self.qq
        kk = np.einsum("nd,nd->n", kp, kp)[self.kj]
        if metric == "cosine":
            cos = qk / np.maximum(np.sqrt(qq * kk), _EPS)
            return 1.0 - np.clip(cos, -1.0, 1.0)
        return np.sqrt(np.maximum(qq + kk - 2 * qk, 0.0))


def _objective(dist: np.ndarray, dot: np.ndarray, metric: str = "euclidean") -> float:
    """Weighted corr(−dist, dot) with w = exp(−dist / median dist); 0.0 when the distances are all equal.

    `normalize` always passes Euclidean distances; `metric` only sets the all-equal tolerance.
    """
    if dist.size < 3:
        return 0.0
    spread = float(np.ptp(dist))
    if spread <= 1e-9 * (1.0 if metric == "cosine" else max(float(dist.max()), _EPS)):
        return 0.0  # closed-form round-off would otherwise produce a spurious correlation
    med = float(np.median(dist))
    w = np.exp(-np.minimum(dist / med, 700.0)) if med > _EPS else np.ones_like(dist)
    return weighted_corr(-dist, dot, w)


def sample_pairs(sample: HeadSample, max_pairs: int = MAX_PAIRS,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The head's same-sentence (query, key) pairs (causal: key position ≤ query position), a seeded subsample of
    ``max_pairs`` when there are more (``rng``, default seeded with `PAIR_SEED`)."""
    qi, kj = same_sentence_pairs(sample.sentence_id, sample.position, sample.causal, sample.side)
    if qi.size > max_pairs:
        rng = np.random.default_rng(PAIR_SEED) if rng is None else rng
        sel = np.sort(rng.choice(qi.size, size=max_pairs, replace=False))
        qi, kj = qi[sel], kj[sel]
    return qi, kj


def apply_normalization(q: np.ndarray, k: np.ndarray, c: float, q_rows: np.ndarray | None = None,
                        k_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(c·q, k/c + t, t)`` with ``t = c·mean(q) − mean(k)/c`` so both centroids coincide; the means are
    over ``q_rows`` / ``k_rows`` (default every row: cross-attention's query and key tokens are different rows)."""
    mq = (q if q_rows is None else q[q_rows]).mean(axis=0)
    mk = (k if k_rows is None else k[k_rows]).mean(axis=0)
    t = c * mq - mk / c
    return c * q, k / c + t, t


def normalize(sample: HeadSample, *, metric: str = "cosine",
              max_pairs: int = MAX_PAIRS) -> tuple[np.ndarray, np.ndarray, Normalization]:
    """Scale and translate one head's queries and keys; return ``(q', k', Normalization)``.

    ``q' = c·q`` and ``k' = k/c + t`` with ``mean(k') = mean(q')``; see the module docstring for how c is chosen
    (Euclidean objective whatever ``metric``, the layout metric, which is validated and recorded).
    Outputs keep the input float precision (at least float32).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    q = np.asarray(sample.q, np.float64)
    k = np.asarray(sample.k, np.float64)
    if q.ndim != 2 or q.shape != k.shape:
        raise ValueError(f"q and k must both be [N, d]; got {q.shape} and {k.shape}")
    if len(sample.sentence_id) != q.shape[0] or len(sample.position) != q.shape[0]:
        raise ValueError("sentence_id and position must have one entry per token")
    if not (np.isfinite(q).all() and np.isfinite(k).all()):
        raise ValueError("q and k must be finite; they hold NaN or infinite values")
    out_dtype = np.result_type(np.asarray(sample.q).dtype, np.float32)
    qi, kj = sample_pairs(sample, max_pairs)
    q_rows, k_rows = sample.query_rows(), sample.key_rows()
    geo = _PairGeometry(q, k, qi, kj, q[q_rows].mean(axis=0), k[k_rows].mean(axis=0))
    dot = geo.qk

    def f(log2c: float) -> float:
        return _objective(geo.distance(2.0 ** log2c, "euclidean"), dot)

    corr_before = _objective(geo.distance(1.0, "euclidean", translate=False), dot)
    if qi.size >= 3:
        grid = np.array([f(x) for x in _GRID_LOG2])
        # ties (flat objective, e.g. constant vectors) resolve to the grid point nearest c = 1, never to a bound
        best = int(np.flatnonzero(grid >= grid.max())[np.argmin(np.abs(_GRID_LOG2[grid >= grid.max()]))])
        x_best, f_best = float(_GRID_LOG2[best]), float(grid[best])
        step = float(_GRID_LOG2[1] - _GRID_LOG2[0])
        lo, hi = max(x_best - step, _GRID_LOG2[0]), min(x_best + step, _GRID_LOG2[-1])
        res = optimize.minimize_scalar(lambda x: -f(x), bounds=(lo, hi), method="bounded",
                                       options={"xatol": 1e-3})
        if res.success and -res.fun > f_best:
            x_best, f_best = float(res.x), float(-res.fun)
        corr_c1 = float(grid[int(np.argmin(np.abs(_GRID_LOG2)))])
    else:
        x_best, f_best, corr_c1 = 0.0, 0.0, 0.0
    c = float(2.0 ** x_best)
    qn, kn, t = apply_normalization(q, k, c, q_rows, k_rows)
    if qi.size >= 3:
        cos = geo.distance(c, "cosine")
        rho = stats.spearmanr(cos, dot).statistic if np.ptp(cos) > 0 and np.ptp(dot) > 0 else 0.0
    else:
        rho = 0.0
    info = Normalization(
        scale_c=c, translation=t.astype(out_dtype), mean_q_norm=float(np.linalg.norm(q[q_rows], axis=1).mean()),
        mean_k_norm=float(np.linalg.norm(k[k_rows], axis=1).mean()), corr_before=float(corr_before),
        corr_after=float(f_best), spearman_cosine_dot=float(rho) if np.isfinite(rho) else 0.0,
        corr_c1=corr_c1, metric=metric, n_pairs=int(qi.size))
    return qn.astype(out_dtype), kn.astype(out_dtype), info
