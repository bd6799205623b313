"""Layouts of one head's joint query-key set: PCA, t-SNE and UMAP in 2D and 3D.

One kNN graph (blocked BLAS, cosine by default; exact, or approximate above `knn.APPROX_MIN_POINTS` points) is
built per head and shared by t-SNE (openTSNE affinities, FFT gradients in 2D) and UMAP (fuzzy simplicial set from
the same graph, optimised by `umap_sgd`); both start from the PCA layout.
Every layout is seeded and deterministic: the same input gives byte-identical output in any process and with any
thread count. With `reference` (the adjacent head's layouts), each layout is Procrustes-aligned to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .align import align, align_head, nested_layouts
from .knn import prepare
from .layouts import LAYOUT_NAMES, LAYOUTS, METRICS, MIN_GRAPH_POINTS, Layout, Shared

__all__ = ["LAYOUTS", "LAYOUT_NAMES", "METRICS", "Layout", "ProjectionParams", "align", "align_head", "align_sequence",
           "nested_layouts", "parse_layout", "project", "warm_up"]


@dataclass(frozen=True)
class ProjectionParams:
    """Parameters of every layout; part of the cache key (they change the coordinates).

    `metric`: "cosine" (rows L2-normalised first, for PCA too) or "euclidean".
    `tsne_early_iter`/`tsne_iter`: early-exaggeration and main iterations. With PCA init, 50/200 instead of
    openTSNE's 250/500 gives equal trustworthiness and a better distance-vs-dot-product correlation (on three real
    MiniLM heads 50 early iterations are as good as 100 and 0 is worse).
    `tsne_exaggeration`/`tsne_dof`: main-phase exaggeration and Student-t degrees of freedom; 1.2 and 0.8 (instead
    of 1 and 1) raise trustworthiness@10 above scikit-learn's default t-SNE on the benchmark head
    (benchmarks/bench_projections.py) and improve the distance-vs-dot-product correlation, at no cost.
    `umap_n_epochs`: None = umap-learn's default (500 up to 10k points, 200 above).
    `umap_learning_rate`/`umap_negative_sample_rate`: 0.35 and 8 (umap-learn: 1 and 5) with 200 epochs give a
    trustworthiness@10 at or above umap-learn's default runs on the benchmark head and on three real MiniLM heads,
    and keep more of the PCA start's global structure (better distance-vs-dot-product correlation). Fewer negative
    samples or epochs lose 0.01-0.02 trustworthiness on real heads.
    `faithful_stress`/`faithful_mix`/`faithful_keys`: the faithful layout's rank-stress weight (its start, with a
    trust floor), attention share of its affinities and keys kept per query row (`faithful`; chosen by
    benchmarks/bench_faithfulness.py). `faithful_trust`: the trustworthiness@10 floor the stress weight follows
    during the run (estimated on a seeded 2,000-point sample); 0 = a fixed weight. `faithful_order`: the weight of
    the faithful layout's soft-Spearman term relative to its stress weight (25; it joins at the first trust check
    where the picture is at the floor; 0 = off; measured in docs/reference/faithfulness.md).
    `warm_start`: when a reference is given, start t-SNE/UMAP from it instead of from PCA (makes a head depend on
    its neighbour: heads then run in order).
    `values`: also lay out each key/value head's value vectors (`normalize.values`; the value view).
    """

    metric: str = "cosine"
    tsne_perplexity: float = 30.0
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    seed: int = 0
    tsne_early_iter: int = 50
    tsne_iter: int = 200
    tsne_exaggeration: float = 1.2
    tsne_dof: float = 0.8
    umap_n_epochs: int | None = 200
    umap_learning_rate: float = 0.35
    umap_negative_sample_rate: int = 8
    warm_start: bool = False
    faithful_stress: float = 0.03
    faithful_mix: float = 0.1
    faithful_keys: int = 16
    faithful_trust: float = 0.91
    faithful_order: float = 25.0
    values: bool = True

    @classmethod
    def from_spec(cls, spec: Any, seed: int) -> "ProjectionParams":
        """The parameters a manifest's `[projections]` table sets (fields of the same name), with the build seed."""
        names = {f.name for f in fields(cls)}
        return cls(seed=seed, **{f.name: getattr(spec, f.name) for f in fields(spec) if f.name in names})


def parse_layout(layout: str) -> tuple[str, int]:
    """'tsne-2d' -> ('tsne', 2); raises ValueError for an unknown id."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUT_NAMES)}")
    return LAYOUTS[layout].method, LAYOUTS[layout].dims


def project(
    x: np.ndarray,
    layouts: Sequence[str],
    params: ProjectionParams = ProjectionParams(),
    *,
    reference: Mapping[str, np.ndarray] | None = None,
    threads: int = 1,
    pairs: Any = None,
    spaces: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Project the joint set `x` [2N, d] into each of `layouts`; returns layout id -> float32 [2N, dims].

    `reference` maps layout ids to the adjacent head's coordinates (same rows); matching layouts are aligned to it
    by orthogonal Procrustes (and used as initialisation if `params.warm_start`). `threads` is passed on to openTSNE
    (the gradient kernels here run on one thread; a build runs heads in parallel instead); it does not change the
    output. `pairs` (`normalize.pairs.AttentionPairs`, joint ids of `x`): the
    head's attention edges, read by the faithful layout. `spaces`: the same points in the other spaces layouts are
    computed from (`Layout.space`; ``padded``: `normalize.padded.padded_space` of `x`'s queries and keys); `x` is
    the ``normalised`` one.
    """
    parsed = {lay: parse_layout(lay) for lay in dict.fromkeys(layouts)}
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty [n, d] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    n = x.shape[0]
    reference = dict(reference or {})
    for lay, ref in reference.items():
        if lay in parsed and np.shape(ref) != (n, parsed[lay][1]):
            raise ValueError(f"reference[{lay!r}] has shape {np.shape(ref)}, expected {(n, parsed[lay][1])}")
    points = {"normalised": x, **dict(spaces or {})}
    for lay in parsed:
        space = LAYOUTS[lay].space
        if space not in points:
            raise ValueError(f"layout {lay!r} is computed from the {space} space: pass it as spaces[{space!r}]")
        if np.shape(points[space])[0] != n:
            raise ValueError(f"spaces[{space!r}] has {np.shape(points[space])[0]} rows, x has {n}")
    with threadpool_limits(limits=1, user_api="blas"):
        from . import methods

        states: dict[str, Shared] = {}

        def state(space: str) -> Shared:
            if space not in states:
                xp = prepare(np.asarray(points[space]), params.metric)
                states[space] = Shared(xp, params, methods.pca_basis(xp, 3), threads, pairs)
            return states[space]

        out: dict[str, np.ndarray] = {}
        for lay in parsed:
            layout = LAYOUTS[lay]
            shared = state(layout.space)
            init = shared.basis[:, :layout.dims]
            ref = reference.get(lay)
            if params.warm_start and ref is not None:
                init = np.asarray(ref, dtype=np.float64)
            if layout.needs_graph and n < MIN_GRAPH_POINTS:
                emb = shared.basis[:, :layout.dims]
            else:
                emb = layout.compute(shared, init, layout.dims)
            out[lay] = align(emb, ref) if ref is not None else np.ascontiguousarray(emb, dtype=np.float32)
    return out


def align_sequence(heads: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Align each head's layouts to the previous (already aligned) head's, layout by layout (same rows; `align_head`).

    A cheap post-pass for heads projected in parallel: the first head is kept, every later one is rotated/reflected
    onto its predecessor, so stepping through adjacent heads never flips the picture. Layouts missing from the
    predecessor (or with other shapes) are kept as they are.
    """
    out: list[dict[str, np.ndarray]] = []
    for head in heads:
        out.append(align_head(head, out[-1] if out else {}))
    return out


def warm_up() -> None:
    """Import the projection libraries and compile the numba kernels, 2D and 3D (once per worker process)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    project(x, ("tsne-2d", "tsne-3d", "umap-2d"), ProjectionParams(tsne_perplexity=5.0, tsne_early_iter=5,
                                                                   tsne_iter=5, umap_n_epochs=5))
    from .faithful import _stress_kernel

    _stress_kernel(np.zeros((2, 2)), np.zeros(1, np.int64), np.ones(1, np.int64), np.ones(1), np.ones(2), 1.0,
                   np.zeros((2, 2)))
