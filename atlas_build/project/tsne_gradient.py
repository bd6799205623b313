"""t-SNE's gradient for openTSNE's optimiser: the repulsive forces (FFT-interpolated in 2D by `tsne_fft`, Barnes-Hut
in 3D by `tsne_bh`, both openTSNE's methods) plus the attractive forces of the affinities P from a numba kernel
specialised to 2 and 3 dimensions.

The attraction loops over every stored P_ij each iteration (1.4M at 10k points and perplexity 30) and was 60% of a
2D iteration in openTSNE's generic kernel; this one keeps a point's coordinates and force in registers. A 2D
iteration at 10k points takes about 11 instead of 17 ms with both kernels (benchmarks/bench_layout_kernels.py).
Same arithmetic as openTSNE's (no fast-math: the sums run in P's stored order), so a layout is deterministic; it
differs from openTSNE's own in the last bits, where the compilers and FFT round differently. `kl_fft` and `kl_bh`
take openTSNE's objective-function arguments and are passed to it as `negative_gradient_method`.
"""

from __future__ import annotations

from typing import Any, Callable

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(nogil=True, cache=False)
def _attract_2d(indptr, indices, data, emb, grad, dof):
    scale = 1.0 / dof  # one division per affinity, not two
    for i in range(emb.shape[0]):
        x0, x1 = emb[i, 0], emb[i, 1]
        g0, g1 = grad[i, 0], grad[i, 1]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d0 = x0 - emb[j, 0]
            d1 = x1 - emb[j, 1]
            w = data[k] / (1.0 + (d0 * d0 + d1 * d1) * scale)
            g0 += w * d0
            g1 += w * d1
        grad[i, 0], grad[i, 1] = g0, g1


@numba.njit(nogil=True, cache=False)
def _attract_3d(indptr, indices, data, emb, grad, dof):
    scale = 1.0 / dof
    for i in range(emb.shape[0]):
        x0, x1, x2 = emb[i, 0], emb[i, 1], emb[i, 2]
        g0, g1, g2 = grad[i, 0], grad[i, 1], grad[i, 2]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d0 = x0 - emb[j, 0]
            d1 = x1 - emb[j, 1]
            d2 = x2 - emb[j, 2]
            w = data[k] / (1.0 + (d0 * d0 + d1 * d1 + d2 * d2) * scale)
            g0 += w * d0
            g1 += w * d1
            g2 += w * d2
        grad[i, 0], grad[i, 1], grad[i, 2] = g0, g1, g2


_ATTRACT = {2: _attract_2d, 3: _attract_3d}


def attract(p: sp.csr_matrix, emb: np.ndarray, grad: np.ndarray, dof: float) -> None:
    """Add the attractive forces Σ_j p_ij q_ij (y_i − y_j) to `grad` [n, dims] in place (q_ij the unnormalised
    Student-t kernel with `dof` degrees of freedom; `emb` float64 C-ordered, 2 or 3 columns)."""
    kernel = _ATTRACT.get(emb.shape[1])
    if kernel is None:
        raise ValueError(f"attractive forces are for 2 or 3 dimensions, got {emb.shape[1]}")
    kernel(p.indptr, p.indices, p.data, emb, grad, max(float(dof), 1e-8))


@numba.njit(nogil=True, cache=False)
def _kl(indptr, indices, data, emb, dof):
    """Σ p_ij and Σ p_ij log(p_ij / q_ij) over the stored affinities, q_ij unnormalised (openTSNE's terms)."""
    eps = np.finfo(np.float64).eps
    sum_p = 0.0
    kl = 0.0
    for i in range(emb.shape[0]):
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d = 0.0
            for c in range(emb.shape[1]):
                d += (emb[i, c] - emb[j, c]) ** 2
            q = 1.0 / (1.0 + d / dof)
            if dof != 1.0:
                q = q ** dof
            sum_p += data[k]
            kl += data[k] * np.log(data[k] / (q + eps) + eps)
    return sum_p, kl


def kl_error(P: sp.csr_matrix, emb: np.ndarray, dof: float, sum_q: float) -> float:
    """t-SNE's KL divergence as openTSNE reports it, given the repulsion's normaliser Z = Σ_{i≠j} q_ij."""
    sum_p, kl = _kl(P.indptr, P.indices, P.data, emb, max(float(dof), 1e-8))
    return float(kl + sum_p * np.log(sum_q + np.finfo(np.float64).eps))


def _start(embedding: np.ndarray, reference_embedding: Any) -> np.ndarray:
    if reference_embedding is not None:
        raise ValueError("the t-SNE gradient here embeds a layout on its own (no reference embedding)")
    return np.zeros_like(embedding, dtype=np.float64, order="C")


def kl_fft(embedding: np.ndarray, P: sp.csr_matrix, dof: float, fft_params: dict, reference_embedding: Any = None,
           should_eval_error: bool = False, n_jobs: int = 1, **_: Any) -> tuple[float, np.ndarray]:
    """openTSNE's `kl_divergence_fft` (2D): the repulsion of `tsne_fft.repulsion_2d`, the attraction of `attract`;
    the error only when the optimiser asks (callbacks, the end of a phase): the layout does not depend on it."""
    from .tsne_fft import repulsion_2d

    grad = _start(embedding, reference_embedding)
    sum_q = repulsion_2d(embedding, grad, dof=dof, **fft_params)
    attract(P, embedding, grad, dof)
    return (kl_error(P, embedding, dof, sum_q) if should_eval_error else 0.0), grad


def kl_bh(embedding: np.ndarray, P: sp.csr_matrix, dof: float, bh_params: dict, reference_embedding: Any = None,
          should_eval_error: bool = False, n_jobs: int = 1, **_: Any) -> tuple[float, np.ndarray]:
    """openTSNE's `kl_divergence_bh` (2D or 3D): the Barnes-Hut repulsion of `tsne_bh.repulsion`, the attraction
    of `attract`."""
    from .tsne_bh import repulsion

    grad = _start(embedding, reference_embedding)
    sum_q = repulsion(embedding, grad, dof=dof, **bh_params)
    attract(P, embedding, grad, dof)
    return (kl_error(P, embedding, dof, sum_q) if should_eval_error else 0.0), grad


def for_layout(objective: Callable[..., tuple[float, np.ndarray]]) -> Callable[..., tuple[float, np.ndarray]]:
    """`objective` as a layout run passes it to openTSNE's optimiser. After its last step openTSNE evaluates the
    objective once more only to report the KL divergence (the one call that asks for the error, with no callbacks
    and not verbose); its gradient is discarded and the atlas never reads the error, so that call is answered with
    zeros instead of a full gradient and a logarithm over every affinity (a test checks the layouts are
    unchanged)."""

    def run(embedding: np.ndarray, P: sp.csr_matrix, dof: float, *args: Any, should_eval_error: bool = False,
            **kwargs: Any) -> tuple[float, np.ndarray]:
        if should_eval_error:
            return 0.0, np.zeros_like(embedding, dtype=np.float64)
        return objective(embedding, P, dof, *args, **kwargs)

    return run
