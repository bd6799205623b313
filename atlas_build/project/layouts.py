"""The layout registry: every layout a manifest may name, with its dimensions, cost class and the function that
computes it. Adding a layout is one entry in `LAYOUTS` (plus its function and test); manifest validation, the
per-head work and `atlas validate`'s estimate all read this table.

A layout function takes the head's `Shared` state (the prepared joint set and what is built from it once per head:
PCA basis, kNN graph, t-SNE affinities, UMAP graph), the initial coordinates, the number of dimensions and the
`ProjectionParams`, and returns [2N, dims] coordinates. Heavy libraries are imported inside the functions, so this
table is cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from . import ProjectionParams

#: Distances a layout (and trustworthiness) may use in the high-dimensional space.
METRICS = ("cosine", "euclidean")


@dataclass
class Shared:
    """Per-head state the layouts share, built on first use."""

    x: np.ndarray  #: the prepared joint set (rows L2-normalised for cosine)
    params: "ProjectionParams"
    basis: np.ndarray  #: PCA coordinates, 3 columns
    threads: int = 1  #: openTSNE's thread count (does not change the output)
    pairs: Any = None  #: the head's attention edges (`normalize.pairs.AttentionPairs`); None: not known
    cache: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self.cache:
            self.cache[name] = make()
        return self.cache[name]

    def graph(self) -> Any:
        from .knn import knn_graph

        p = self.params
        return self.get("knn", lambda: knn_graph(self.x, max(int(3 * p.tsne_perplexity), p.umap_n_neighbors),
                                                 p.metric, seed=p.seed))


def pca(shared: Shared, init: np.ndarray, dims: int) -> np.ndarray:
    return shared.basis[:, :dims]


def _pca_start(shared: Shared, init: np.ndarray) -> bool:
    """Whether `init` is the PCA start (not a warm start from a reference layout)."""
    return np.array_equal(init, shared.basis[:, :init.shape[1]])


def tsne(shared: Shared, init: np.ndarray, dims: int) -> np.ndarray:
    """From the PCA start, 2D is one t-SNE run and 3D continues that same 2D solution, lifted by the third principal
    component diffused over the affinities (`methods.lift`), for a share of its iterations; a warm start runs the
    whole optimisation from `init`."""
    from . import methods

    p = shared.params
    affinities = shared.get("tsne", lambda: methods.tsne_affinities(shared.graph(), p.tsne_perplexity))

    def run(start: np.ndarray) -> np.ndarray:
        return methods.tsne_layout(affinities, start, seed=p.seed, early_iter=p.tsne_early_iter, n_iter=p.tsne_iter,
                                   exaggeration=p.tsne_exaggeration, dof=p.tsne_dof, threads=shared.threads)

    if not _pca_start(shared, init):
        return run(init)
    flat = shared.get("tsne-2d", lambda: run(shared.basis[:, :2]))
    if dims == 2:
        return flat
    depth = methods.diffuse(affinities, shared.basis[:, 2], methods.LIFT_SMOOTHING)
    return methods.tsne_3d(affinities, methods.lift(flat, depth, methods.LIFT_DEPTH), seed=p.seed,
                           main_iter=p.tsne_iter, threads=shared.threads)


def umap(shared: Shared, init: np.ndarray, dims: int) -> np.ndarray:
    """From the PCA start, 2D is one UMAP run and 3D continues that same 2D solution, lifted by the third principal
    component diffused over the fuzzy graph (`methods.lift`), for a share of its epochs; a warm start runs the
    whole optimisation from `init`."""
    from . import methods

    p = shared.params
    fuzzy = shared.get("umap", lambda: methods.umap_graph(shared.graph(), p.umap_n_neighbors))

    def run(start: np.ndarray, epochs: int | None, keep_scale: bool = False) -> np.ndarray:
        return methods.umap_layout(fuzzy, start, seed=p.seed, min_dist=p.umap_min_dist, n_epochs=epochs,
                                   learning_rate=p.umap_learning_rate,
                                   negative_sample_rate=p.umap_negative_sample_rate, keep_scale=keep_scale)

    if not _pca_start(shared, init):
        return run(init, p.umap_n_epochs)
    flat = shared.get("umap-2d", lambda: run(shared.basis[:, :2], p.umap_n_epochs))
    if dims == 2:
        return flat
    epochs = methods.share(methods.umap_epochs(p.umap_n_epochs, fuzzy.shape[0]), methods.UMAP_3D_SHARE)
    depth = methods.diffuse(fuzzy, shared.basis[:, 2], methods.LIFT_SMOOTHING)
    return run(methods.lift(flat, depth, methods.LIFT_DEPTH), epochs, keep_scale=True)


def faithful(shared: Shared, init: np.ndarray, dims: int) -> np.ndarray:
    """t-SNE with the head's attention edges in its affinities and a rank stress on them (`faithful`); without
    edges, the classic t-SNE objective."""
    from . import methods
    from .faithful import StressWeight, TrustSample, faithful_terms, faithful_tsne

    p = shared.params
    affinities = shared.get("tsne", lambda: methods.tsne_affinities(shared.graph(), p.tsne_perplexity))
    pairs = shared.pairs
    terms = faithful_terms(shared.x, pairs, p.metric) if pairs is not None and len(pairs) else None
    trust = TrustSample(shared.x, seed=p.seed) if terms is not None and p.faithful_trust > 0 else None
    weight = StressWeight(p.faithful_stress, early_iter=p.tsne_early_iter, n_iter=p.tsne_iter, trust=trust,
                          floor=p.faithful_trust)
    return faithful_tsne(affinities, terms, init, stress=weight, mix=p.faithful_mix, early_iter=p.tsne_early_iter,
                         n_iter=p.tsne_iter, exaggeration=p.tsne_exaggeration, dof=p.tsne_dof, order=p.faithful_order,
                         threads=shared.threads)


@dataclass(frozen=True)
class Layout:
    """One layout: ``name`` as manifests spell it, ``method`` family, ``dims``, ``cost`` class (``linear``: a
    projection; ``graph``: needs the head's kNN graph), whether it needs at least `MIN_GRAPH_POINTS` points, and the
    function. ``nested``: its coordinates are the first axes of the same method's layouts with more axes.
    ``space``: the high-dimensional points it is computed from (and its trustworthiness measured against):
    ``normalised``, the joint set, or ``padded``, the same points in `normalize.padded`'s space."""

    name: str
    method: str
    dims: int
    cost: str
    compute: Callable[..., np.ndarray]
    doc: str
    nested: bool = False
    space: str = "normalised"

    @property
    def needs_graph(self) -> bool:
        return self.cost == "graph"


MIN_GRAPH_POINTS = 8  # below this t-SNE/UMAP are meaningless: they fall back to PCA coordinates
_DOCS = {"pca": "principal components of the joint set (linear, global distances)",
         "tsne": "t-SNE on the shared kNN graph (openTSNE affinities, local neighbourhoods)",
         "umap": "UMAP on the shared kNN graph (fuzzy simplicial set, own SGD kernel)"}
_METHODS = {"pca": (pca, "linear"), "tsne": (tsne, "graph"), "umap": (umap, "graph")}
LAYOUTS: dict[str, Layout] = {
    f"{m}-{d}d": Layout(f"{m}-{d}d", m, d, cost, fn, f"{_DOCS[m]}, {d}D", nested=fn is pca)
    for m, (fn, cost) in _METHODS.items() for d in (2, 3)
}
LAYOUTS["faithful-2d"] = Layout("faithful-2d", "faithful", 2, "graph", faithful,
                                "t-SNE of the padded space (nearer = more attended, per query) with the head's "
                                "attention edges in its affinities and a rank stress that orders each query's keys "
                                "as its attention does, 2D", space="padded")
LAYOUT_NAMES: tuple[str, ...] = tuple(LAYOUTS)


def stored_layouts(names: Sequence[str]) -> tuple[str, ...]:
    """The layouts of ``names`` with a coordinates file of their own: a nested layout is stored in the file of its
    method's layout with the most axes when that one is in ``names`` too (what export finds in the data,
    `project.nested_layouts`)."""
    def hosted(layout: Layout) -> bool:
        return layout.nested and any(LAYOUTS[n].method == layout.method and LAYOUTS[n].dims > layout.dims
                                     for n in names)
    return tuple(n for n in names if not hosted(LAYOUTS[n]))
