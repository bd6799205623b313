"""t-SNE's gradient for openTSNE's optimiser: openTSNE's repulsive forces (FFT in 2D, Barnes-Hut in 3D) plus the
attractive forces of the affinities P from a numba kernel specialised to 2 and 3 dimensions.

The attraction loops over every stored P_ij each iteration (1.4M at 10k points and perplexity 30) and was 60% of a
2D iteration in openTSNE's generic kernel; this one keeps a point's coordinates and force in registers. A 2D
iteration at 10k points takes 14 instead of 17 ms, a whole 2D layout 0.75 of the CPU
(benchmarks/bench_layout_kernels.py). Same arithmetic as openTSNE's (no fast-math: the sums run
in P's stored order), so a layout is deterministic; it differs from openTSNE's own in the last bits, where the
compilers round differently. `kl_fft` and `kl_bh` take openTSNE's objective-function arguments and are passed to it
as `negative_gradient_method`.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(nogil=True, cache=False)
def _attract_2d(indptr, indices, data, emb, grad, dof):
    for i in range(emb.shape[0]):
        x0, x1 = emb[i, 0], emb[i, 1]
        g0, g1 = grad[i, 0], grad[i, 1]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d0 = x0 - emb[j, 0]
            d1 = x1 - emb[j, 1]
            q = 1.0 / (1.0 + (d0 * d0 + d1 * d1) / dof)
            w = q * data[k]
            g0 += w * d0
            g1 += w * d1
        grad[i, 0], grad[i, 1] = g0, g1


@numba.njit(nogil=True, cache=False)
def _attract_3d(indptr, indices, data, emb, grad, dof):
    for i in range(emb.shape[0]):
        x0, x1, x2 = emb[i, 0], emb[i, 1], emb[i, 2]
        g0, g1, g2 = grad[i, 0], grad[i, 1], grad[i, 2]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d0 = x0 - emb[j, 0]
            d1 = x1 - emb[j, 1]
            d2 = x2 - emb[j, 2]
            q = 1.0 / (1.0 + (d0 * d0 + d1 * d1 + d2 * d2) / dof)
            w = q * data[k]
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


def _objective(exact: Any, embedding: np.ndarray, P: sp.csr_matrix, dof: float, params: dict,
               reference_embedding: Any, should_eval_error: bool, n_jobs: int) -> tuple[float, np.ndarray]:
    if reference_embedding is not None:
        raise ValueError("the t-SNE gradient here embeds a layout on its own (no reference embedding)")
    empty = sp.csr_matrix(P.shape, dtype=np.float64)
    _, grad = exact(embedding, empty, dof, params, n_jobs=n_jobs)  # openTSNE's repulsion alone
    attract(P, embedding, grad, dof)
    # openTSNE's own error when its optimiser asks (callbacks, verbose): the layout does not depend on it
    error = exact(embedding, P, dof, params, should_eval_error=True, n_jobs=n_jobs)[0] if should_eval_error else 0.0
    return error, grad


def kl_fft(embedding: np.ndarray, P: sp.csr_matrix, dof: float, fft_params: dict, reference_embedding: Any = None,
           should_eval_error: bool = False, n_jobs: int = 1, **_: Any) -> tuple[float, np.ndarray]:
    """openTSNE's `kl_divergence_fft` (2D) with the attraction of `attract`."""
    from openTSNE.tsne import kl_divergence_fft

    return _objective(kl_divergence_fft, embedding, P, dof, fft_params, reference_embedding, should_eval_error,
                      n_jobs)


def kl_bh(embedding: np.ndarray, P: sp.csr_matrix, dof: float, bh_params: dict, reference_embedding: Any = None,
          should_eval_error: bool = False, n_jobs: int = 1, **_: Any) -> tuple[float, np.ndarray]:
    """openTSNE's `kl_divergence_bh` (2D or 3D) with the attraction of `attract`."""
    from openTSNE.tsne import kl_divergence_bh

    return _objective(kl_divergence_bh, embedding, P, dof, bh_params, reference_embedding, should_eval_error, n_jobs)
