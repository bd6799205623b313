"""Exact k-nearest-neighbour graph by blocked BLAS matrix products (no tree, no approximation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

_BLOCK = 1024


@dataclass(frozen=True)
class KnnGraph:
    """Neighbours of every row, nearest first; column 0 is the row itself (distance 0).

    `indices` is int32 [n, k+1]; `distances` float32 [n, k+1] in the chosen metric
    (cosine: 1 - cos; euclidean: L2). Ties are broken by the lower index, so the graph is deterministic.
    """

    indices: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        """Number of neighbours excluding the row itself."""
        return self.indices.shape[1] - 1


def prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """Rows as float32 in the space where `metric` is Euclidean-like: unit rows for cosine."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0).astype(np.float32)
    elif metric != "euclidean":
        raise ValueError(f"metric must be 'cosine' or 'euclidean', not {metric!r}")
    return x


def exact_knn(xp: np.ndarray, k: int, metric: str) -> KnnGraph:
    """Exact kNN of the prepared rows `xp` (see `prepare`), k neighbours plus self.

    BLAS runs single-threaded here so the products (and so the graph) never depend on the thread count.
    """
    n = xp.shape[0]
    k = int(min(k, n - 1))
    sq = np.einsum("ij,ij->i", xp, xp) if metric == "euclidean" else None
    out_i = np.empty((n, k + 1), dtype=np.int32)
    out_d = np.empty((n, k + 1), dtype=np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            rows = np.arange(start, stop)
            g = xp[start:stop] @ xp.T  # [b, n] inner products
            if metric == "cosine":
                dist = 1.0 - g
            else:
                dist = sq[start:stop, None] + sq[None, :] - 2.0 * g
            dist[rows - start, rows] = -np.inf  # self first, whatever duplicates exist
            part = np.argpartition(dist, k, axis=1)[:, : k + 1]
            dpart = np.take_along_axis(dist, part, axis=1)
            order = np.lexsort((part, dpart), axis=1)  # by distance, then index
            idx = np.take_along_axis(part, order, axis=1)
            d = np.take_along_axis(dpart, order, axis=1)
            d[:, 0] = 0.0
            np.maximum(d, 0.0, out=d)
            if metric == "euclidean":
                np.sqrt(d, out=d)
            out_i[start:stop] = idx
            out_d[start:stop] = d
    return KnnGraph(out_i, out_d)
