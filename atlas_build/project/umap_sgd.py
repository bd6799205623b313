"""UMAP's layout optimisation (umap-learn's SGD schedule) as one single-precision numba kernel.

Same algorithm as umap-learn's `optimize_layout_euclidean`: every edge of the fuzzy graph is sampled in proportion to
its weight, moves both ends together (clipped gradient), and each sample is followed by `negative_sample_rate`
repulsive samples from uniformly drawn vertices; the step size decays linearly to 0. Three differences, all for
speed: arithmetic is float32 (umap-learn promotes every distance and power to float64); one sequential xorshift
stream draws the negative samples (umap-learn keeps one per vertex so that it can run in parallel); and a sample's
repulsive steps are all computed from where its attractive step left the vertex and applied as one sum (umap-learn
moves the vertex after each, so each waited on the last: the kernel was latency-bound). That last change halves the
kernel's time (200 epochs on a 9,948-point MiniLM head: 2.8 → 1.4 CPU-s) with trustworthiness@10 within the
seed-to-seed spread on nine real heads (2D and 3D, mean +0.0005; benchmarks/bench_layout_kernels.py). Compiled once
per process (~1 s), never cached on disk.

The kernel's power d²ᵇ (one per sample, half the kernel's time with `powf`) is read from two tables built for b:
2^(b·e) for each float32 exponent e, and m^b for 1,024 steps of the mantissa m ∈ [1, 2), linearly interpolated. It
is within 4e-7 of the exact power (a few float32 steps; `pow_tables`), and the kernel runs 1.5x faster.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
from numba import types
from numba.extending import intrinsic

_CLIP = 4.0
_NEG_EPS = 0.001  # umap-learn's softening of the repulsive gradient at distance 0
_INIT_SPAN = 10.0  # umap-learn rescales every initial layout to [0, 10] per axis
_MANTISSA_BITS = 10  # the mantissa table's steps: 2**10 over [1, 2)
_LOW_BITS = 23 - _MANTISSA_BITS  # float32 mantissa bits below a table step, the interpolation fraction


@intrinsic
def _float_bits(typingctx, x):  # noqa: ARG001 - numba's intrinsic signature
    """The IEEE bits of a float32 as an int32 (a bit cast, no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int32))
    return types.int32(types.float32), codegen


def pow_tables(b: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tables for x**b over positive float32 x (`_pow`): 2^(b·(e − 127)) for each exponent field e (0 for zero and
    subnormal x, inf for inf), (1 + i/1024)^b and its steps to the next entry; float32, from float64 powers."""
    field = np.arange(256, dtype=np.float64)
    by_exponent = np.where(field == 0, 0.0, np.where(field == 255, np.inf, np.exp2(b * (field - 127.0))))
    mantissa = (1.0 + np.arange(2 ** _MANTISSA_BITS + 1) / 2.0 ** _MANTISSA_BITS) ** b
    with np.errstate(over="ignore"):  # powers beyond float32 (b > 1, large exponents) are inf, as powf's
        by_exponent = by_exponent.astype(np.float32)
    return by_exponent, mantissa[:-1].astype(np.float32), np.diff(mantissa).astype(np.float32)


@numba.njit(fastmath=True, nogil=True, inline="always")
def _pow(x, by_exponent, mantissa, step):
    """x**b for a float32 x > 0 from `pow_tables(b)`: the exponent's power times the mantissa's, interpolated."""
    bits = _float_bits(x)
    i = (bits >> _LOW_BITS) & (2 ** _MANTISSA_BITS - 1)
    frac = np.float32(bits & (2 ** _LOW_BITS - 1)) * np.float32(2.0 ** -_LOW_BITS)
    return by_exponent[(bits >> 23) & 255] * (mantissa[i] + frac * step[i])


@numba.njit(fastmath=True, nogil=True, inline="always")
def _clip(x, clip):
    return min(max(x, -clip), clip)


@numba.njit(fastmath=True, nogil=True, cache=False)
def _sgd(emb, head, tail, epochs_per_sample, n_epochs, a, b, gamma, learning_rate, negative_sample_rate, seed,
         by_exponent, mantissa, step, exact_power):
    n = emb.shape[0]
    three = emb.shape[1] == 3
    a = np.float32(a)
    b = np.float32(b)
    two_ab = np.float32(2.0 * a * b)
    two_gb = np.float32(2.0 * gamma * b)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    clip = np.float32(_CLIP)
    neg_eps = np.float32(_NEG_EPS)
    eps_neg = epochs_per_sample / max(negative_sample_rate, 1.0)
    next_sample = epochs_per_sample.copy()
    next_neg = eps_neg.copy()
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x2545F4914F6CDD1D)
    nv = np.uint64(n)
    for epoch in range(n_epochs):
        alpha = np.float32(learning_rate * (1.0 - epoch / n_epochs))
        for i in range(head.shape[0]):
            if next_sample[i] > epoch:
                continue
            j = head[i]
            k = tail[i]
            d0 = emb[j, 0] - emb[k, 0]
            d1 = emb[j, 1] - emb[k, 1]
            d2 = emb[j, 2] - emb[k, 2] if three else zero
            dd = d0 * d0 + d1 * d1 + d2 * d2
            if dd > 0.0:
                pb = dd**b if exact_power else _pow(dd, by_exponent, mantissa, step)
                coeff = -two_ab * pb / (dd * (a * pb + one))
                g0 = _clip(coeff * d0, clip) * alpha
                g1 = _clip(coeff * d1, clip) * alpha
                emb[j, 0] += g0
                emb[k, 0] -= g0
                emb[j, 1] += g1
                emb[k, 1] -= g1
                if three:
                    g2 = _clip(coeff * d2, clip) * alpha
                    emb[j, 2] += g2
                    emb[k, 2] -= g2
            next_sample[i] += epochs_per_sample[i]
            n_neg = int((epoch - next_neg[i]) / eps_neg[i]) if negative_sample_rate > 0 else 0
            # the repulsive samples all see j where the attractive step left it and their steps are summed: they
            # are independent of each other, so the CPU overlaps them (one after another, each waited on the last)
            x0 = emb[j, 0]
            x1 = emb[j, 1]
            x2 = emb[j, 2] if three else zero
            s0 = zero
            s1 = zero
            s2 = zero
            for _ in range(n_neg):
                state ^= state >> np.uint64(12)
                state ^= state << np.uint64(25)
                state ^= state >> np.uint64(27)
                r = (state * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(32)
                k = np.int64((r * nv) >> np.uint64(32))
                if k == j:
                    continue
                d0 = x0 - emb[k, 0]
                d1 = x1 - emb[k, 1]
                d2 = x2 - emb[k, 2] if three else zero
                dd = d0 * d0 + d1 * d1 + d2 * d2
                if dd > 0.0:
                    pb = dd**b if exact_power else _pow(dd, by_exponent, mantissa, step)
                    coeff = two_gb / ((neg_eps + dd) * (a * pb + one))
                    s0 += _clip(coeff * d0, clip)
                    s1 += _clip(coeff * d1, clip)
                    s2 += _clip(coeff * d2, clip)
            emb[j, 0] = x0 + s0 * alpha
            emb[j, 1] = x1 + s1 * alpha
            if three:
                emb[j, 2] = x2 + s2 * alpha
            next_neg[i] += n_neg * eps_neg[i]
    return emb


def curve_params(min_dist: float, spread: float = 1.0) -> tuple[float, float]:
    """(a, b) of the low-dimensional kernel 1 / (1 + a d^2b) fitted to UMAP's offset exponential (as umap-learn)."""
    from scipy.optimize import curve_fit

    xv = np.linspace(0.0, spread * 3.0, 300)
    yv = np.where(xv < min_dist, 1.0, np.exp(-(xv - min_dist) / spread))
    params, _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2.0 * b)), xv, yv)
    return float(params[0]), float(params[1])


def _initial_layout(init: np.ndarray, seed: int, rescale: bool = True) -> np.ndarray:
    """umap-learn's treatment of an initial layout: jitter duplicate rows apart, then (`rescale`) scale each axis to
    [0, 10]."""
    emb = np.array(init, dtype=np.float64)
    if np.unique(emb, axis=0).shape[0] < emb.shape[0]:
        from sklearn.neighbors import KDTree

        dist, _ = KDTree(emb).query(emb, k=2)
        scale = 0.001 * float(np.mean(dist[:, 1])) or 1e-6
        emb = emb + np.random.default_rng(seed).normal(scale=scale, size=emb.shape)
    if not rescale:
        return np.ascontiguousarray(emb, dtype=np.float32)
    span = emb.max(axis=0) - emb.min(axis=0)
    emb = _INIT_SPAN * (emb - emb.min(axis=0)) / np.where(span > 0, span, 1.0)
    return np.ascontiguousarray(emb, dtype=np.float32)


def schedule(graph: sp.spmatrix, n_epochs: int) -> tuple[sp.coo_matrix, np.ndarray]:
    """umap-learn's sampling schedule: the edges of `graph` (duplicates summed) without those lighter than
    max/n_epochs, and each kept edge's epochs per sample, max/w."""
    g = sp.coo_matrix(graph, copy=True)
    g.sum_duplicates()
    if g.nnz and n_epochs > 0:
        g.data[g.data < g.data.max() / float(n_epochs)] = 0.0
        g.eliminate_zeros()
    return g, (g.data.max() / g.data.astype(np.float64) if g.nnz else np.empty(0))


def optimize(
    graph: sp.spmatrix,
    init: np.ndarray,
    *,
    a: float,
    b: float,
    n_epochs: int,
    learning_rate: float,
    negative_sample_rate: int,
    seed: int,
    rescale: bool = True,
    exact_power: bool = False,
) -> np.ndarray:
    """Layout of the fuzzy `graph` [n, n] from `init` [n, dims]: float32 [n, dims], deterministic for a seed.

    Edges lighter than max/n_epochs are dropped and the rest sampled every max/w epochs (`schedule`). 2 or 3
    dimensions.
    `rescale`: scale each axis of `init` to [0, 10] first (umap-learn's treatment of any start); without it the
    start is taken at its own scale (a layout that is already UMAP's, continued in more dimensions).
    `exact_power`: d²ᵇ from `powf` instead of the tables (the reference the tables are measured against).
    """
    if np.ndim(init) != 2 or np.shape(init)[1] not in (2, 3):
        raise ValueError(f"the UMAP kernel lays out 2 or 3 dimensions, got a start of shape {np.shape(init)}")
    g, epochs_per_sample = schedule(graph, n_epochs)
    emb = _initial_layout(init, seed, rescale)
    if g.nnz == 0 or n_epochs <= 0:
        return emb
    return _sgd(emb, g.row.astype(np.int64), g.col.astype(np.int64), epochs_per_sample, int(n_epochs),
                float(a), float(b), 1.0, float(learning_rate), float(negative_sample_rate), int(seed) % 2**63,
                *pow_tables(float(b)), bool(exact_power))
