"""k-nearest-neighbour graph of a head's joint set: exact by blocked BLAS products up to `APPROX_MIN_POINTS` rows,
above it approximate (seeded k-means cells, each searched exactly against the cells its rows lie closest to).

Both are deterministic and independent of the thread count: BLAS runs single-threaded here, the only randomness
is a seeded generator, and every row's neighbours are sorted by distance then index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from threadpoolctl import threadpool_limits

#: Heads of at least this many points get the approximate graph. Measured (benchmarks/bench_large_head.py, k = 90,
#: CPU seconds exact / approximate): 1.45 / 1.49 at 10k points, 5.3 / 2.6 at 20k, 22 / 4.2 at 40k; the exact graph
#: grows with n², so at 250k points it would take about 860 s against 53 s (recall@90 0.998).
APPROX_MIN_POINTS = 20_000
CELL_POINTS = 1000  #: mean k-means cell size of the approximate graph
PROBES = 3  #: cells each row is searched in (its nearest centroids)
_KMEANS_ITER = 8
_KMEANS_SAMPLE = 40  #: k-means runs on a seeded sample of this many rows per centroid
_BLOCK_VALUES = 1 << 22  #: distance-matrix entries per block (16 MB of float32)


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


def knn_graph(xp: np.ndarray, k: int, metric: str, seed: int = 0) -> KnnGraph:
    """The head's kNN graph: `exact_knn` below `APPROX_MIN_POINTS` rows, `approx_knn` from there on."""
    if xp.shape[0] < APPROX_MIN_POINTS:
        return exact_knn(xp, k, metric)
    return approx_knn(xp, k, metric, seed=seed)


class _Search:
    """Exact top-k of rows among candidate rows, one block of the distance matrix at a time."""

    def __init__(self, xp: np.ndarray, k: int, metric: str):
        self.xp, self.metric = xp, metric
        self.k = int(min(k, xp.shape[0] - 1))
        self.sq = np.einsum("ij,ij->i", xp, xp) if metric == "euclidean" else None
        n = xp.shape[0]
        self.indices = np.empty((n, self.k + 1), dtype=np.int32)
        self.distances = np.empty((n, self.k + 1), dtype=np.float32)

    def run(self, rows: np.ndarray, cand: np.ndarray) -> None:
        """Neighbours of `rows` among `cand` (sorted ids, containing every row and at least k + 1 ids)."""
        xc = self.xp[cand]
        step = max(1, min(1024, _BLOCK_VALUES // len(cand)))
        for start in range(0, len(rows), step):
            r = rows[start:start + step]
            g = self.xp[r] @ xc.T  # [b, c] inner products
            dist = 1.0 - g if self.metric == "cosine" else self.sq[r, None] + self.sq[None, cand] - 2.0 * g
            dist[np.arange(len(r)), np.searchsorted(cand, r)] = -np.inf  # self first, whatever duplicates exist
            cols, d = _smallest(dist, self.k + 1)  # by distance, then index (cand is sorted)
            d[:, 0] = 0.0
            np.maximum(d, 0.0, out=d)
            if self.metric == "euclidean":
                np.sqrt(d, out=d)
            self.indices[r] = cand[cols]
            self.distances[r] = d

    def graph(self) -> KnnGraph:
        return KnnGraph(self.indices, self.distances)


@numba.njit(nogil=True, cache=False)
def _smallest(dist, m):
    """The `m` smallest entries of each row of `dist` ([b, c]) and their columns, ordered by distance, then column
    (a tie at the m-th place keeps the lower columns). One pass per row: entries below a threshold are appended to
    a buffer, in column order; when it fills, the threshold drops to the buffer's m-th smallest and the buffer keeps
    its m first entries by (distance, column). About 3x faster than a full partition of each row."""
    b, c = dist.shape
    cols = np.empty((b, m), np.int64)
    out = np.empty((b, m), dist.dtype)
    cap = 4 * m
    bd = np.empty(cap, dist.dtype)
    bc = np.empty(cap, np.int64)
    for r in range(b):
        row = dist[r]
        n = 0
        thr = np.inf
        for j in range(c):
            v = row[j]
            if v < thr or thr == np.inf:  # an entry equal to the threshold comes after those kept at it
                if n == cap:
                    thr = np.partition(bd[:n], m - 1)[m - 1]
                    ties = m - np.sum(bd[:n] < thr)  # entries at the threshold still kept, lowest columns first
                    kept = 0
                    for t in range(n):
                        if bd[t] < thr or (bd[t] == thr and ties > 0):
                            ties -= bd[t] == thr
                            bd[kept], bc[kept] = bd[t], bc[t]
                            kept += 1
                    n = kept
                    if not v < thr:
                        continue
                bd[n], bc[n] = v, j
                n += 1
        order = np.argsort(bd[:n], kind="mergesort")[:m]  # stable: equal distances stay in column order
        out[r], cols[r] = bd[order], bc[order]
    return cols, out


def exact_knn(xp: np.ndarray, k: int, metric: str) -> KnnGraph:
    """Exact kNN of the prepared rows `xp` (see `prepare`), k neighbours plus self."""
    search = _Search(xp, k, metric)
    every = np.arange(xp.shape[0])
    with threadpool_limits(limits=1, user_api="blas"):
        search.run(every, every)
    return search.graph()


def _nearest_centroids(xp: np.ndarray, centroids: np.ndarray, count: int) -> np.ndarray:
    """[n, count] ids of each row's nearest centroids (Euclidean), nearest first, ties to the lower id."""
    half_sq = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
    out = np.empty((xp.shape[0], count), dtype=np.int64)
    step = max(1, _BLOCK_VALUES // len(centroids))
    for start in range(0, xp.shape[0], step):
        score = half_sq[None, :] - xp[start:start + step] @ centroids.T  # |x - c|²/2 - |x|²/2
        part = np.argpartition(score, count - 1, axis=1)[:, :count] if count < len(centroids) else \
            np.broadcast_to(np.arange(len(centroids)), score.shape)
        order = np.lexsort((part, np.take_along_axis(score, part, axis=1)), axis=1)
        out[start:start + step] = np.take_along_axis(part, order, axis=1)
    return out


def _kmeans(xp: np.ndarray, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means (float64 means) on a seeded sample of rows, at most `cells` centroids (fewer when the sample
    has fewer distinct rows); an emptied cell keeps its centroid."""
    n = xp.shape[0]
    sample = xp[np.sort(rng.choice(n, size=min(n, _KMEANS_SAMPLE * cells), replace=False))]
    distinct = np.sort(np.unique(sample, axis=0, return_index=True)[1])  # no two cells start at one point
    centroids = sample[np.sort(rng.choice(distinct, size=min(cells, len(distinct)), replace=False))].copy()
    cells = len(centroids)
    for _ in range(_KMEANS_ITER):
        label = _nearest_centroids(sample, centroids, 1)[:, 0]
        sums = np.zeros(centroids.shape, dtype=np.float64)
        np.add.at(sums, label, sample)
        count = np.bincount(label, minlength=cells)
        full = count > 0
        centroids[full] = (sums[full] / count[full, None]).astype(np.float32)
    return centroids


def approx_knn(xp: np.ndarray, k: int, metric: str, *, seed: int = 0, cell_points: int | None = None,
               probes: int | None = None) -> KnnGraph:
    """Approximate kNN of the prepared rows `xp`: k-means cells of about `cell_points` rows (seeded); the rows of
    each cell are searched exactly among every row of the cells any of them has among its `probes` nearest
    centroids (defaults: `CELL_POINTS`, `PROBES`), so a cell's rows see the cells all around it. Cost grows with
    n · cell_points · (cells around a cell) instead of n²; the distances are exact."""
    n = xp.shape[0]
    cells = max(1, n // max(cell_points or CELL_POINTS, 1))
    search = _Search(xp, k, metric)
    with threadpool_limits(limits=1, user_api="blas"):
        centroids = _kmeans(xp, cells, np.random.default_rng(seed))
        cells = len(centroids)
        near = _nearest_centroids(xp, centroids, min(probes or PROBES, cells))
        by_cell = np.argsort(near[:, 0], kind="stable")
        bounds = np.searchsorted(near[by_cell, 0], np.arange(cells + 1))
        members = [by_cell[bounds[c]:bounds[c + 1]] for c in range(cells)]
        for c, rows in enumerate(members):
            if not len(rows):
                continue
            cand = np.sort(np.concatenate([members[j] for j in np.unique(near[rows])]))
            if len(cand) <= search.k:  # too few rows around: take the nearest cells until k + 1 are in
                order = _nearest_centroids(centroids[c:c + 1], centroids, cells)[0]
                order = np.concatenate([[c], order[order != c]])  # its own cell first, whatever ties
                picked = np.cumsum([len(members[j]) for j in order]).searchsorted(search.k + 1)
                cand = np.sort(np.concatenate([members[j] for j in order[:picked + 1]]))
            search.run(rows, cand)
    return search.graph()


class SampleRanks:
    """The high-dimensional side of trustworthiness on a sample of rows: each row's squared distances to the other
    rows (float64, ``xs`` as given: unit rows for cosine) sorted once, so a picture's neighbours are ranked by binary
    search instead of a full ranking per row (scikit-learn's ``trustworthiness`` argsorts every row). Rank 1 is the
    nearest; tied distances share the smallest rank, so the number does not depend on how a sort orders ties."""

    def __init__(self, xs: np.ndarray):
        xs = np.asarray(xs, np.float64)
        sq = (xs ** 2).sum(axis=1)
        self.d2 = sq[:, None] + sq[None, :] - 2.0 * xs @ xs.T
        np.fill_diagonal(self.d2, -np.inf)  # the point itself sorts first, so a count of the entries below is 1-based
        self.sorted = np.sort(self.d2, axis=1)

    def ranks(self, near: np.ndarray) -> np.ndarray:
        """[s, k] ranks of row i's neighbours ``near[i]`` (sample indices) among all of row i's neighbours."""
        return _sorted_ranks(self.sorted, np.take_along_axis(self.d2, near, axis=1))

    def trustworthiness(self, near: np.ndarray) -> float:
        """trustworthiness@k of a picture whose k nearest neighbours of sample row i are ``near[i]`` ([s, k])."""
        s, k = near.shape
        penalty = float(np.maximum(self.ranks(near) - k, 0).sum())
        return 1.0 - 2.0 / (s * k * (2 * s - 3 * k - 1)) * penalty


@numba.njit(nogil=True, cache=False)
def _sorted_ranks(rows, values):
    """[s, k]: for each row i and value v of values[i], the number of entries of the sorted rows[i] below v."""
    out = np.empty(values.shape, np.int64)
    for i in range(values.shape[0]):
        out[i] = np.searchsorted(rows[i], values[i])
    return out
