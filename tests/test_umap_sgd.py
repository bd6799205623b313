"""UMAP pieces against umap-learn: the fuzzy graph, the kernel's curve parameters, and the SGD kernel's layout
quality on the same graph and start; plus the kernel's schedule, determinism and duplicate handling."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from atlas_build.project import methods, umap_sgd
from atlas_build.project.knn import exact_knn, prepare
from tests.test_project import clustered


@pytest.fixture(scope="module")
def head() -> tuple[np.ndarray, object, np.ndarray]:
    x, _ = clustered(1500, d=48, k=12, seed=5)
    xp = prepare(x, "cosine")
    graph = methods.umap_graph(exact_knn(xp, 15, "cosine"), 15)
    return xp, graph, methods.pca_basis(xp, 2)


@pytest.mark.parametrize("min_dist", [0.05, 0.1, 0.5])
def test_curve_params_match_umap_learn(min_dist: float) -> None:
    from umap.umap_ import find_ab_params

    np.testing.assert_allclose(umap_sgd.curve_params(min_dist), find_ab_params(1.0, min_dist), rtol=1e-6)


def test_fuzzy_graph_matches_umap_learn(head: tuple) -> None:
    from umap.umap_ import fuzzy_simplicial_set

    xp, graph, _ = head
    knn = exact_knn(xp, 15, "cosine")
    ref, _, _ = fuzzy_simplicial_set(xp, 15, np.random.RandomState(0), "cosine",
                                     knn_indices=knn.indices[:, :15], knn_dists=knn.distances[:, :15])
    diff = abs(graph.tocsr() - ref.tocsr())
    assert graph.nnz == ref.nnz
    assert diff.max() < 1e-4


def test_layout_quality_equals_umap_learn_kernel(head: tuple) -> None:
    """Same graph and start: trustworthiness@10 within 0.005 of umap-learn's own optimiser (seed-to-seed spread)."""
    from umap.umap_ import simplicial_set_embedding

    xp, graph, init = head
    a, b = umap_sgd.curve_params(0.1)
    ours = [umap_sgd.optimize(graph, init, a=a, b=b, n_epochs=200, learning_rate=1.0, negative_sample_rate=5,
                              seed=s) for s in (0, 1)]
    ref = [simplicial_set_embedding(None, graph.copy(), 2, 1.0, a, b, 1.0, 5, 200, init.astype(np.float32),
                                    np.random.RandomState(s), "euclidean", {}, False, {}, False, parallel=False,
                                    verbose=False)[0] for s in (0, 1)]
    tw_ours = np.mean([trustworthiness(xp, e, n_neighbors=10) for e in ours])
    tw_ref = np.mean([trustworthiness(xp, e, n_neighbors=10) for e in ref])
    assert tw_ref > 0.9
    assert tw_ours > tw_ref - 0.005, (tw_ours, tw_ref)


def test_zero_epochs_return_the_scaled_start() -> None:
    init = np.array([[0.0, 2.0], [1.0, 4.0], [4.0, 3.0]])
    graph = np.ones((3, 3)) - np.eye(3)
    out = umap_sgd.optimize(graph, init, a=1.6, b=0.9, n_epochs=0, learning_rate=1.0, negative_sample_rate=5, seed=0)
    np.testing.assert_allclose(out, [[0.0, 0.0], [2.5, 10.0], [10.0, 5.0]])


def test_weak_edges_are_never_sampled() -> None:
    """An edge lighter than max/n_epochs is dropped (umap-learn's schedule): its ends feel only repulsion."""
    init = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [5.0, 6.0]])
    graph = np.zeros((4, 4))
    graph[0, 1] = graph[1, 0] = 1.0
    graph[2, 3] = graph[3, 2] = 0.001
    out = umap_sgd.optimize(graph, init, a=1.6, b=0.9, n_epochs=50, learning_rate=1.0, negative_sample_rate=0, seed=0)
    start = umap_sgd.optimize(graph, init, a=1.6, b=0.9, n_epochs=0, learning_rate=1.0, negative_sample_rate=0, seed=0)
    np.testing.assert_array_equal(out[2:], start[2:])
    assert np.linalg.norm(out[0] - out[1]) < np.linalg.norm(start[0] - start[1])


def test_deterministic_and_seeded(head: tuple) -> None:
    _, graph, init = head
    run = [umap_sgd.optimize(graph, init, a=1.6, b=0.9, n_epochs=30, learning_rate=1.0, negative_sample_rate=5,
                             seed=s) for s in (3, 3, 4)]
    assert run[0].dtype == np.float32
    assert run[0].tobytes() == run[1].tobytes()
    assert not np.array_equal(run[0], run[2])


def test_duplicate_starts_are_pulled_apart() -> None:
    init = np.repeat(np.arange(10.0)[:, None] * [1.0, 0.5], 3, axis=0)
    graph = np.ones((30, 30)) - np.eye(30)
    out = umap_sgd.optimize(graph, init, a=1.6, b=0.9, n_epochs=20, learning_rate=1.0, negative_sample_rate=5, seed=0)
    assert np.unique(out, axis=0).shape[0] == 30


def test_power_tables_keep_the_exact_powers_layout(head: tuple) -> None:
    """The kernel's tabled d^2b against `powf` (`exact_power`), same graph, start and seeds: the pictures start on
    the same path (the first epochs agree closely) and end at the same trustworthiness@10."""
    xp, graph, init = head
    a, b = umap_sgd.curve_params(0.1)

    def run(epochs: int, exact: bool, seed: int = 0) -> np.ndarray:
        return umap_sgd.optimize(graph, init, a=a, b=b, n_epochs=epochs, learning_rate=1.0, negative_sample_rate=5,
                                 seed=seed, exact_power=exact)

    early = run(2, False), run(2, True)
    assert not np.array_equal(*early)
    np.testing.assert_allclose(early[0], early[1], atol=1e-3 * float(np.ptp(early[1])))
    tw = {exact: np.mean([trustworthiness(xp, run(200, exact, s), n_neighbors=10) for s in (0, 1)])
          for exact in (False, True)}
    assert tw[True] > 0.9
    assert abs(tw[False] - tw[True]) < 0.005, tw


@pytest.mark.parametrize("dims", [1, 4])
def test_only_two_or_three_dimensions(dims: int) -> None:
    """The kernel is written for 2 and 3 axes: any other start is refused, not laid out in part."""
    graph = np.ones((5, 5)) - np.eye(5)
    with pytest.raises(ValueError, match="2 or 3 dimensions"):
        umap_sgd.optimize(graph, np.zeros((5, dims)), a=1.6, b=0.9, n_epochs=5, learning_rate=1.0,
                          negative_sample_rate=5, seed=0)


def test_schedule_drops_light_edges_and_spaces_samples_by_weight() -> None:
    graph = np.zeros((3, 3))
    graph[0, 1], graph[1, 2], graph[0, 2] = 1.0, 0.5, 0.001
    g, epochs_per_sample = umap_sgd.schedule(graph, n_epochs=100)
    assert sorted(zip(g.row.tolist(), g.col.tolist())) == [(0, 1), (1, 2)]
    assert dict(zip(zip(g.row.tolist(), g.col.tolist()), epochs_per_sample.tolist())) == {(0, 1): 1.0, (1, 2): 2.0}
