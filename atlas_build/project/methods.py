"""The three projection methods on a shared, precomputed kNN graph: PCA, t-SNE (openTSNE) and UMAP (own SGD kernel).

3D t-SNE and UMAP continue the 2D solution: `lift` adds a third axis (the third principal component, `diffuse`d over
the method's graph) and `tsne_3d` / `umap_layout(..., keep_scale=True)` optimise briefly in 3D. Everything here
is deterministic for a given input: no randomness except seeded generators, BLAS kept to one thread by the caller,
t-SNE affinities copied per run (openTSNE exaggerates P in place), UMAP's SGD sequential.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import umap_sgd
from .knn import KnnGraph

_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3

#: 3D from the 2D solution (benchmarks/bench_projections.py --real, docs/reference/projections.md): the third axis
#: starts as the third principal component diffused this many steps over the method's own graph, so neighbours start
#: at nearly one depth (the 2D neighbourhoods survive), at this share of the 2D layout's spread (a round start: a
#: small raw third component gives a flat disc that a short 3D run never opens);
LIFT_SMOOTHING = 100
LIFT_DEPTH = 1.0
#: then t-SNE runs this share of its main iterations in 3D: Barnes-Hut with this opening angle, the standard Cauchy
#: kernel (openTSNE's fast path for 1 degree of freedom: half the cost of 0.8), this exaggeration (the 2D
#: settings, 0.8 and 1.2, lose 0.002 trustworthiness in 3D; 2 and 2.5 gain on samples but lose up to 0.005 on
#: whole-set neighbourhoods) and a learning rate of this many times the number of points: openTSNE's own rule,
#: n / exaggeration, moves the lifted layout too little in so few iterations (2 n: trustworthiness@10 +0.0010 in
#: the mean of the nine benchmark heads, whole-set neighbourhoods unchanged; docs/reference/projections.md),
TSNE_3D_SHARE = 0.3
TSNE_3D_THETA = 1.2
TSNE_3D_DOF = 1.0
TSNE_3D_EXAGGERATION = 1.5
TSNE_3D_LEARNING_RATE = 2.0
#: and UMAP this share of its epochs.
UMAP_3D_SHARE = 0.4


def share(count: int, fraction: float) -> int:
    """`fraction` of `count` iterations, at least one."""
    return max(1, int(round(count * fraction)))


def pca_basis(xp: np.ndarray, dims: int = 3) -> np.ndarray:
    """Top-`dims` PCA coordinates of `xp` [n, d] as float64 [n, dims], sign-fixed (largest loading positive)."""
    x64 = xp.astype(np.float64)
    xc = x64 - x64.mean(axis=0)
    cov = xc.T @ xc
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:dims]
    vecs = vecs[:, order]
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(vecs.shape[1])])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    out = xc @ vecs
    if out.shape[1] < dims:  # fewer features than dims: pad with zeros
        out = np.hstack([out, np.zeros((out.shape[0], dims - out.shape[1]))])
    return out


def diffuse(graph: sp.spmatrix, v: np.ndarray, steps: int) -> np.ndarray:
    """`v` [n] averaged over each row's graph neighbours (weighted) `steps` times: a random walk's smoothing, which
    keeps the slow variations of `v` across the graph and removes the fast ones. Sequential sparse products:
    deterministic."""
    w = sp.csr_matrix(graph, dtype=np.float64)
    deg = np.asarray(w.sum(axis=1)).ravel()
    w = sp.diags(1.0 / np.where(deg > 0, deg, 1.0)) @ w
    out = np.asarray(v, dtype=np.float64)
    for _ in range(steps):
        out = w @ out
    return out


def lift(base: np.ndarray, depth: np.ndarray, scale: float) -> np.ndarray:
    """A 3D start from a 2D layout `base` [n, 2]: its axes plus `depth` [n] centred and scaled to `scale` times the
    layout's standard deviation (all zeros when `depth` is constant)."""
    z = np.asarray(depth, dtype=np.float64) - np.mean(depth)
    sd = float(z.std())
    z = z * (scale * float(np.std(base)) / sd) if sd > 0 else z
    return np.column_stack([np.asarray(base, dtype=np.float64), z])


# ----------------------------------------------------------------------------- t-SNE


def tsne_affinities(graph: KnnGraph, perplexity: float) -> sp.csr_matrix:
    """Symmetric, normalised t-SNE affinities P from the kNN graph (openTSNE's perplexity calibration)."""
    from openTSNE.affinity import joint_probabilities_nn

    k = min(graph.k, int(3 * perplexity))
    perp = min(float(perplexity), max(1.0, (graph.k - 1) / 3.0))
    idx = np.ascontiguousarray(graph.indices[:, 1 : k + 1])
    dist = np.ascontiguousarray(graph.distances[:, 1 : k + 1], dtype=np.float64)
    return joint_probabilities_nn(idx, dist, [perp], symmetrize=True, n_jobs=1)


def tsne_start(init: np.ndarray) -> np.ndarray:
    """openTSNE's start from a layout: scaled so its first axis has std 1e-4. A layout without spread (every point
    in one place, as for a head whose points coincide) is kept as it is instead of divided by zero."""
    from openTSNE.initialization import rescale

    x = np.array(init, dtype=np.float64, order="C")
    return rescale(x, target_std=1e-4) if len(x) and np.std(x[:, 0]) > 0 else x


def tsne_layout(
    p: sp.csr_matrix,
    init: np.ndarray,
    *,
    seed: int,
    early_iter: int,
    n_iter: int,
    exaggeration: float = 1.0,
    dof: float = 1.0,
    threads: int = 1,
) -> np.ndarray:
    """t-SNE from affinities `p` and an initial layout (rescaled to std 1e-4); FFT in 2D, Barnes-Hut in 3D
    (`tsne_gradient`: our FFT repulsion and attraction, openTSNE's Barnes-Hut repulsion).

    `exaggeration` multiplies P after the early-exaggeration phase; `dof` is the Student-t kernel's degrees of
    freedom (1 = standard t-SNE, < 1 heavier tails, tighter clusters).
    """
    from openTSNE import TSNE
    from openTSNE.affinity import PrecomputedAffinities

    from .tsne_gradient import for_layout, kl_bh, kl_fft

    dims = init.shape[1]
    init = tsne_start(init)
    tsne = TSNE(
        n_components=dims,
        early_exaggeration_iter=early_iter,
        n_iter=n_iter,
        exaggeration=exaggeration,
        dof=dof,
        negative_gradient_method=for_layout(kl_fft if dims <= 2 else kl_bh),
        # Coarser interpolation grid: far fewer FFT boxes once clusters spread out (2x faster at 10k points),
        # same trustworthiness.
        ints_in_interval=2,
        min_num_intervals=30,
        random_state=seed,
        n_jobs=threads,
        verbose=False,
    )
    emb = tsne.fit(affinities=PrecomputedAffinities(p.copy(), normalize=False), initialization=init)
    return np.asarray(emb, dtype=np.float64)


def tsne_refine(
    p: sp.csr_matrix,
    init: np.ndarray,
    *,
    seed: int,
    n_iter: int,
    theta: float,
    exaggeration: float = 1.0,
    dof: float = 1.0,
    learning_rate: float | None = None,
    threads: int = 1,
) -> np.ndarray:
    """`n_iter` t-SNE iterations (Barnes-Hut with opening angle `theta`, no early exaggeration) from a layout
    already at t-SNE's scale, such as a lifted 2D solution; openTSNE's momentum, and its learning rate (n /
    exaggeration) unless `learning_rate` is given."""
    from openTSNE import TSNEEmbedding
    from openTSNE.affinity import PrecomputedAffinities

    from .tsne_gradient import for_layout, kl_bh

    emb = TSNEEmbedding(np.array(init, dtype=np.float64, order="C"), PrecomputedAffinities(p.copy(), normalize=False),
                        dof=dof, negative_gradient_method=for_layout(kl_bh), theta=theta, random_state=seed,
                        n_jobs=threads, verbose=False)
    rate = "auto" if learning_rate is None else float(learning_rate)
    return np.asarray(emb.optimize(n_iter, exaggeration=exaggeration, momentum=0.8, learning_rate=rate),
                      dtype=np.float64)


def tsne_3d(p: sp.csr_matrix, lifted: np.ndarray, *, seed: int, main_iter: int, threads: int = 1) -> np.ndarray:
    """t-SNE's 3D phase with this module's 3D settings (`TSNE_3D_SHARE` of `main_iter` iterations, opening angle,
    kernel, exaggeration, learning rate) from a lifted 2D solution (`lift`)."""
    return tsne_refine(p, lifted, seed=seed, n_iter=share(main_iter, TSNE_3D_SHARE), theta=TSNE_3D_THETA,
                       exaggeration=TSNE_3D_EXAGGERATION, dof=TSNE_3D_DOF,
                       learning_rate=TSNE_3D_LEARNING_RATE * len(lifted), threads=threads)


# ----------------------------------------------------------------------------- UMAP


def _smooth_knn_dist(dist: np.ndarray, k: int, n_iter: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised umap `smooth_knn_dist` (local_connectivity=1, bandwidth=1): per-row sigma and rho.

    Same semantics as umap-learn's numba kernel, without its ~12 s per-process JIT compile.
    """
    n = dist.shape[0]
    target = np.log2(k)
    masked = np.where(dist > 0.0, dist, np.inf)
    rho = masked.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0
    rest = dist[:, 1:] - rho[:, None]
    lo = np.zeros(n)
    hi = np.full(n, np.inf)
    mid = np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(n_iter):
        if not active.any():
            break
        psum = np.where(rest > 0, np.exp(-np.maximum(rest, 0.0) / mid[:, None]), 1.0).sum(axis=1)
        done = np.abs(psum - target) < _SMOOTH_K_TOLERANCE
        active &= ~done
        up = active & (psum > target)
        down = active & ~(psum > target)
        hi = np.where(up, mid, hi)
        lo = np.where(down, mid, lo)
        mid = np.where(up, (lo + hi) / 2.0, mid)
        mid = np.where(down, np.where(np.isinf(hi), mid * 2.0, (lo + hi) / 2.0), mid)
    floor = np.where(rho > 0.0, dist.mean(axis=1), dist.mean()) * _MIN_K_DIST_SCALE
    return np.maximum(mid, floor), rho


def umap_graph(graph: KnnGraph, n_neighbors: int) -> sp.coo_matrix:
    """UMAP's fuzzy simplicial set (fuzzy union) from the first `n_neighbors` columns of the kNN graph."""
    k = int(min(n_neighbors, graph.indices.shape[1]))
    idx = graph.indices[:, :k]
    dist = graph.distances[:, :k].astype(np.float64)
    sigma, rho = _smooth_knn_dist(dist, k)
    n = idx.shape[0]
    rows = np.repeat(np.arange(n), k)
    d = dist - rho[:, None]
    vals = np.where(d <= 0.0, 1.0, np.exp(-np.maximum(d, 0.0) / sigma[:, None]))
    vals[idx == np.arange(n)[:, None]] = 0.0
    g = sp.coo_matrix((vals.ravel().astype(np.float32), (rows, idx.ravel())), shape=(n, n)).tocsr()
    g.eliminate_zeros()
    gt = g.T.tocsr()
    out = (g + gt - g.multiply(gt)).tocoo()
    out.eliminate_zeros()
    return out


def umap_epochs(n_epochs: int | None, n: int) -> int:
    """Epochs of a UMAP run over `n` points: `n_epochs`, or for None umap-learn's default (500 up to 10k, 200 above)."""
    return n_epochs if n_epochs is not None else (500 if n <= 10000 else 200)


def umap_layout(
    g: sp.coo_matrix,
    init: np.ndarray,
    *,
    seed: int,
    min_dist: float,
    n_epochs: int | None,
    learning_rate: float = 1.0,
    negative_sample_rate: int = 5,
    keep_scale: bool = False,
) -> np.ndarray:
    """UMAP layout of the fuzzy graph `g` from an initial layout (umap-learn's SGD schedule, see `umap_sgd`).

    `learning_rate` is the SGD's initial step (decaying linearly to 0); `negative_sample_rate` the repulsive
    samples per attractive edge sample (umap-learn's defaults: 1.0 and 5); `n_epochs` None = umap-learn's default
    (500 up to 10k points, 200 above). `keep_scale`: the start is already a UMAP layout (such as a lifted 2D
    solution); it is not rescaled to umap-learn's [0, 10] per axis.
    """
    a, b = umap_sgd.curve_params(min_dist)
    epochs = umap_epochs(n_epochs, g.shape[0])
    emb = umap_sgd.optimize(g, init, a=a, b=b, n_epochs=epochs, learning_rate=learning_rate,
                            negative_sample_rate=negative_sample_rate, seed=seed, rescale=not keep_scale)
    return np.asarray(emb, dtype=np.float64)
