"""The kNN graph: the approximate graph of large heads against the exact one (recall on a sample), determinism."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from atlas_build.project import knn

K = 90  # the graph size the default projection parameters ask for (3 × perplexity 30)


def head_like(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    """[n, d] rows with a head's kinds of structure: token clusters of Zipf sizes, a smooth position curve, noise
    and exact duplicates (a repeated special token)."""
    rng = np.random.default_rng(seed)
    vocab = 300
    freq = 1.0 / np.arange(1, vocab + 1) ** 1.1
    tok = rng.choice(vocab, size=n, p=freq / freq.sum())
    pos = rng.integers(0, 40, n)
    t = pos[:, None] / 40 * np.pi * np.arange(1, 4)[None, :]
    curve = np.hstack([np.sin(t), np.cos(t)]) @ rng.normal(size=(6, d))
    x = rng.normal(size=(vocab, d))[tok] + 1.5 * curve + 0.5 * rng.normal(size=(n, d))
    x[rng.choice(n, 150, replace=False)] = x[0]
    return x.astype(np.float32)


def exact_rows(xp: np.ndarray, rows: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force neighbours of `rows` (float64 distances, nearest first, ties to the lower index)."""
    x = xp.astype(np.float64)
    if metric == "cosine":
        d = 1.0 - x[rows] @ x.T
    else:
        d = np.sqrt(np.maximum(((x[rows, None, :] - x[None, :, :]) ** 2).sum(-1), 0.0))
    d[np.arange(len(rows)), rows] = -1.0
    order = np.lexsort((np.broadcast_to(np.arange(len(x)), d.shape), d), axis=1)[:, : k + 1]
    return order, np.take_along_axis(d, order, axis=1)


def recall(graph: knn.KnnGraph, rows: np.ndarray, truth: np.ndarray) -> float:
    k = graph.k
    return float(np.mean([len(np.intersect1d(graph.indices[r, 1:], t[1:k + 1])) / k for r, t in zip(rows, truth)]))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_approximate_graph_recall_against_exact_on_a_sample(metric: str) -> None:
    n = 8000
    xp = knn.prepare(head_like(n), metric)
    # small cells so that most of the set is out of every row's search (30 cells, 3 probed)
    graph = knn.approx_knn(xp, K, metric, seed=0, cell_points=n // 30)
    rows = np.sort(np.random.default_rng(5).choice(n, 300, replace=False))
    truth, tdist = exact_rows(xp, rows, K, metric)
    assert recall(graph, rows, truth) >= 0.95
    assert graph.indices.shape == (n, K + 1) and graph.indices.dtype == np.int32
    assert np.array_equal(graph.indices[:, 0], np.arange(n)) and not graph.distances[:, 0].any()
    d = graph.distances
    assert (np.diff(d, axis=1) >= 0).all()  # nearest first
    # every distance is the true distance of the pair it names (only the neighbour set is approximate)
    x = xp.astype(np.float64)
    pair = x[rows, None, :] - x[graph.indices[rows]]
    true = 1.0 - np.einsum("rd,rkd->rk", x[rows], x[graph.indices[rows]]) if metric == "cosine" else \
        np.linalg.norm(pair, axis=-1)
    np.testing.assert_allclose(d[rows, 1:], np.maximum(true[:, 1:], 0), atol=2e-5 if metric == "cosine" else 2e-4)
    # the k-th neighbour found is never nearer than the true k-th neighbour
    assert (d[rows, -1] >= tdist[:, -1] * (1 - 1e-5) - 1e-5).all()


@pytest.mark.parametrize("m", [1, 5, 91, 250, 1000])
def test_exact_search_keeps_the_m_smallest_by_distance_then_index(m: int) -> None:
    """The exact search's selection against a full sort of the same rows: the m smallest, ordered by distance, a
    tie across the m-th place kept by the lower index, on rows with many exact ties (values in steps of 1/8, a
    -inf where the row's own point is) and rows of a head's distances."""
    rng = np.random.default_rng(m)
    rows = (np.round(rng.normal(size=(60, 1000)) * 8) / 8).astype(np.float32)
    rows[np.arange(60), rng.integers(0, 1000, 60)] = -np.inf
    xp = knn.prepare(head_like(1000, seed=3), "cosine")
    rows = np.concatenate([rows, 1.0 - xp[:40] @ xp.T])
    cols, dist = knn._smallest(rows, m)
    want = np.lexsort((np.broadcast_to(np.arange(rows.shape[1]), rows.shape), rows), axis=1)[:, :m]
    assert np.array_equal(cols, want)
    assert np.array_equal(dist, np.take_along_axis(rows, want, axis=1))


def test_duplicates_find_each_other() -> None:
    xp = knn.prepare(head_like(6000), "cosine")
    graph = knn.approx_knn(xp, 20, "cosine", cell_points=200)
    dup = np.flatnonzero((xp == xp[0]).all(axis=1))
    assert len(dup) > 21
    assert np.isin(graph.indices[dup, 1:], dup).all() and (graph.distances[dup] < 1e-6).all()


def test_graph_switches_to_approximate_at_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    xp = knn.prepare(head_like(3000), "cosine")
    exact = knn.exact_knn(xp, 30, "cosine")
    assert np.array_equal(knn.knn_graph(xp, 30, "cosine").indices, exact.indices)
    monkeypatch.setattr(knn, "APPROX_MIN_POINTS", 3000)
    monkeypatch.setattr(knn, "CELL_POINTS", 300)
    approx = knn.knn_graph(xp, 30, "cosine", seed=1)
    assert np.array_equal(approx.indices, knn.approx_knn(xp, 30, "cosine", seed=1, cell_points=300).indices)
    assert not np.array_equal(approx.indices, exact.indices)


SCRIPT = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_knn import head_like
from atlas_build.project import knn
g = knn.approx_knn(knn.prepare(head_like(5000), "cosine"), 40, "cosine", seed=3, cell_points=250)
print(hashlib.sha256(g.indices.tobytes() + g.distances.tobytes()).hexdigest())
"""


def test_approximate_graph_is_byte_identical_across_thread_counts_and_processes() -> None:
    xp = knn.prepare(head_like(5000), "cosine")
    runs = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            runs.append(knn.approx_knn(xp, 40, "cosine", seed=3, cell_points=250))
    assert all(np.array_equal(a, b) for a, b in [(runs[0].indices, runs[1].indices),
                                                 (runs[0].distances, runs[1].distances)])
    digest = hashlib.sha256(runs[0].indices.tobytes() + runs[0].distances.tobytes()).hexdigest()
    tests = str(Path(__file__).parent)
    for threads in ("1", "2"):
        env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=tests)], capture_output=True, text=True,
                             check=True, env=env)
        assert out.stdout.strip() == digest
    other = knn.approx_knn(xp, 40, "cosine", seed=4, cell_points=250)
    assert not np.array_equal(other.indices, runs[0].indices)  # the seed is what varies it


def test_cells_with_too_few_rows_around_search_the_nearest_cells() -> None:
    xp = knn.prepare(head_like(600), "cosine")
    graph = knn.approx_knn(xp, 60, "cosine", cell_points=10, probes=1)  # each cell alone holds ~10 rows
    assert np.array_equal(graph.indices[:, 0], np.arange(600))
    assert all(len(set(row)) == 61 for row in graph.indices.tolist())
    rows = np.arange(0, 600, 7)
    truth, _ = exact_rows(xp, rows, 60, "cosine")
    assert recall(graph, rows, truth) >= 0.8
