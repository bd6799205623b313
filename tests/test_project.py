"""Layouts: shapes, byte-identical determinism (in-process, across processes, any thread count), Procrustes
alignment, quality on clustered data, and the shared kNN graph / UMAP graph against their references."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from atlas_build.normalize.padded import padded_space
from atlas_build.project import LAYOUTS, ProjectionParams, align, align_sequence, parse_layout, project
from atlas_build.project import umap_sgd
from atlas_build.project.knn import exact_knn, prepare
from atlas_build.project.methods import diffuse, lift

FAST = ProjectionParams(tsne_early_iter=60, tsne_iter=120, umap_n_epochs=100)


def clustered(n: int = 600, d: int = 32, k: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Joint [queries; keys] set with cluster structure, like one attention head (n rows in total)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 4.0
    lab = rng.integers(0, k, size=n // 2)
    q = centers[lab] + rng.normal(size=(n // 2, d))
    kk = centers[lab] * 0.9 + rng.normal(size=(n // 2, d)) * 1.1
    return np.vstack([q, kk]).astype(np.float32), np.concatenate([lab, lab])


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(400)[0]


def padded(x: np.ndarray) -> dict[str, np.ndarray]:
    """`project`'s ``spaces`` for a joint set `x` of queries then keys (faithful-2d is computed from the padded one)."""
    m = len(x) // 2
    return {"padded": padded_space(x[:m], x[m:]).astype(np.float32)}


@pytest.fixture(scope="module")
def layouts(data: np.ndarray) -> dict[str, np.ndarray]:
    return project(data, LAYOUTS, FAST, spaces=padded(data))


def test_shapes_and_dtype(data: np.ndarray, layouts: dict[str, np.ndarray]) -> None:
    assert list(layouts) == list(LAYOUTS)
    for lay, emb in layouts.items():
        _, dims = parse_layout(lay)
        assert emb.shape == (data.shape[0], dims)
        assert emb.dtype == np.float32 and emb.flags.c_contiguous
        assert np.isfinite(emb).all()
        assert np.ptp(emb, axis=0).min() > 0


def test_deterministic_in_process(data: np.ndarray, layouts: dict[str, np.ndarray]) -> None:
    again = project(data.copy(), LAYOUTS, FAST, spaces=padded(data))
    for lay in LAYOUTS:
        assert np.array_equal(layouts[lay], again[lay]), lay


def test_thread_count_does_not_change_tsne() -> None:
    x = clustered(200)[0]
    params = ProjectionParams(tsne_early_iter=30, tsne_iter=60)
    one = project(x, ("tsne-2d", "tsne-3d"), params, threads=1)
    two = project(x, ("tsne-2d", "tsne-3d"), params, threads=2)
    for lay in one:
        assert np.array_equal(one[lay], two[lay]), lay


def test_deterministic_across_processes(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_project import clustered, FAST
        from atlas_build.project import project
        out = project(clustered(300)[0], ("tsne-2d", "umap-2d", "pca-3d"), FAST)
        np.savez(sys.argv[1], **out)
        """
    )
    path = tmp_path / "out.npz"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120)
    other = np.load(path)
    here = project(clustered(300)[0], ("tsne-2d", "umap-2d", "pca-3d"), FAST)
    for lay, emb in here.items():
        assert np.array_equal(emb, other[lay]), lay


def test_seed_changes_stochastic_layouts(data: np.ndarray, layouts: dict[str, np.ndarray]) -> None:
    other = project(data, ("umap-2d", "pca-2d"), ProjectionParams(**{**FAST.__dict__, "seed": 1}))
    assert not np.array_equal(other["umap-2d"], layouts["umap-2d"])
    assert np.array_equal(other["pca-2d"], layouts["pca-2d"])


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("reflect", [False, True])
def test_align_recovers_rotation_and_reflection(dims: int, reflect: bool) -> None:
    rng = np.random.default_rng(dims)
    ref = rng.normal(size=(200, dims))
    q, _ = np.linalg.qr(rng.normal(size=(dims, dims)))
    if (np.linalg.det(q) < 0) != reflect:
        q[:, 0] *= -1
    moved = ref @ q + rng.normal(size=dims) * 5.0
    out = align(moved, ref)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # Scale is kept: a shrunken copy stays shrunken (only rotated/translated).
    small = align(0.5 * moved, ref)
    np.testing.assert_allclose(small - small.mean(0), 0.5 * (ref - ref.mean(0)), atol=1e-5)


def test_project_aligns_to_reference(data: np.ndarray, layouts: dict[str, np.ndarray]) -> None:
    rot = np.array([[0.0, -1.0], [-1.0, 0.0]])  # a reflection
    ref = {"umap-2d": layouts["umap-2d"] @ rot, "pca-2d": layouts["pca-2d"] @ rot}
    out = project(data, ("umap-2d", "pca-2d"), FAST, reference=ref)
    for lay, emb in out.items():
        np.testing.assert_allclose(emb, ref[lay], atol=1e-3)
        # distances within the layout are unchanged by alignment
        d0 = np.linalg.norm(layouts[lay][:50, None] - layouts[lay][None, :50], axis=-1)
        d1 = np.linalg.norm(emb[:50, None] - emb[None, :50], axis=-1)
        np.testing.assert_allclose(d0, d1, rtol=1e-4, atol=1e-4)


def test_align_sequence_chains_heads(layouts: dict[str, np.ndarray]) -> None:
    flip = np.array([[-1.0, 0.0], [0.0, 1.0]])
    base = layouts["umap-2d"]
    heads = [{"umap-2d": base}, {"umap-2d": base @ flip + 3.0}, {"umap-2d": base @ flip @ flip.T @ flip}]
    out = align_sequence(heads)
    assert np.array_equal(out[0]["umap-2d"], base)
    for head in out[1:]:
        np.testing.assert_allclose(head["umap-2d"], base, atol=1e-3)


def test_warm_start_is_deterministic(data: np.ndarray, layouts: dict[str, np.ndarray]) -> None:
    params = ProjectionParams(**{**FAST.__dict__, "warm_start": True})
    names = ("tsne-2d", "umap-2d", "tsne-3d", "umap-3d")
    ref = {lay: layouts[lay] for lay in names}
    a = project(data, names, params, reference=ref)
    b = project(data, names, params, reference=ref)
    for lay in a:
        assert np.array_equal(a[lay], b[lay])
        assert not np.array_equal(a[lay], layouts[lay]), "a warm start starts from the reference, not from PCA"


def test_3d_continues_the_same_2d_solution(data: np.ndarray, layouts: dict[str, np.ndarray]) -> None:
    """3D t-SNE/UMAP start from the 2D solution: byte-identical whether the 2D layout is asked for in the same call
    (and computed once) or not, in any order; asking for 3D never changes the 2D layouts."""
    alone = project(data, ("umap-3d", "tsne-3d"), FAST)
    two_d = project(data, ("umap-2d", "tsne-2d"), FAST)
    for method in ("tsne", "umap"):
        assert np.array_equal(alone[f"{method}-3d"], layouts[f"{method}-3d"]), method
        assert np.array_equal(two_d[f"{method}-2d"], layouts[f"{method}-2d"]), method


def test_lift_keeps_the_2d_axes_and_scales_the_depth() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 2)) * [3.0, 1.0]
    out = lift(base, rng.normal(size=60) * 7.0 + 2.0, 0.5)
    assert out.shape == (60, 3) and np.array_equal(out[:, :2], base)
    assert abs(out[:, 2].mean()) < 1e-12
    np.testing.assert_allclose(out[:, 2].std(), 0.5 * base.std())
    assert (lift(base, np.full(60, 4.0), 1.0)[:, 2] == 0).all()


def test_diffuse_evens_out_neighbours_and_keeps_slow_variation() -> None:
    """Two cliques joined by one weak edge: many steps leave nearly one value per clique, the cliques apart."""
    import scipy.sparse as sp

    n = 10
    block = np.ones((n, n)) - np.eye(n)
    adj = np.block([[block, np.zeros((n, n))], [np.zeros((n, n)), block]])
    adj[0, n] = adj[n, 0] = 0.01
    v = np.r_[np.linspace(0.0, 2.0, n), np.linspace(5.0, 7.0, n)]
    out = diffuse(sp.csr_matrix(adj), v, 60)
    assert np.ptp(out[:n]) < 0.01 and np.ptp(out[n:]) < 0.01  # the bridge's ends lag a little
    assert out[n:].mean() - out[:n].mean() > 3.0
    np.testing.assert_allclose(diffuse(sp.csr_matrix(adj), np.full(2 * n, 3.0), 5), 3.0)
    assert np.array_equal(diffuse(sp.csr_matrix(adj), v, 0), v)


def test_umap_keeps_the_scale_of_a_start_that_is_already_a_layout() -> None:
    import scipy.sparse as sp

    init = np.random.default_rng(1).normal(size=(30, 3)) * [40.0, 2.0, 0.5]
    graph = sp.coo_matrix(np.eye(30, k=1) + np.eye(30, k=-1))
    kept = umap_sgd.optimize(graph, init, a=1.6, b=0.9, n_epochs=0, learning_rate=1.0, negative_sample_rate=5, seed=0,
                             rescale=False)
    assert kept.dtype == np.float32 and np.array_equal(kept, init.astype(np.float32))
    scaled = umap_sgd.optimize(graph, init, a=1.6, b=0.9, n_epochs=0, learning_rate=1.0, negative_sample_rate=5,
                               seed=0)
    np.testing.assert_allclose(np.ptp(scaled, axis=0), 10.0, rtol=1e-5)


def test_quality_trustworthiness() -> None:
    """Every t-SNE/UMAP layout keeps neighbourhoods; the 3D ones at least as well as the 2D they start from, and
    they are round, not the flat 2D disc they start from."""
    x, _ = clustered(1200, d=48, k=12, seed=3)
    out = project(x, ("tsne-2d", "umap-2d", "tsne-3d", "umap-3d"), ProjectionParams())
    xp = prepare(x, "cosine")
    tw = {lay: trustworthiness(xp, emb, n_neighbors=10) for lay, emb in out.items()}
    for lay in out:
        assert tw[lay] > 0.9, (lay, tw[lay])
    for method in ("tsne", "umap"):
        assert tw[f"{method}-3d"] >= tw[f"{method}-2d"], (method, tw)
        spread = np.linalg.svd(out[f"{method}-3d"] - out[f"{method}-3d"].mean(0), compute_uv=False)
        assert spread[2] / spread[0] > 0.3, (method, spread)


def test_exact_knn_matches_brute_force() -> None:
    from sklearn.neighbors import NearestNeighbors

    x, _ = clustered(400)
    for metric in ("cosine", "euclidean"):
        g = exact_knn(prepare(x, metric), 20, metric)
        assert (g.indices[:, 0] == np.arange(len(x))).all() and (g.distances[:, 0] == 0).all()
        d, i = NearestNeighbors(n_neighbors=21, metric=metric, algorithm="brute").fit(x).kneighbors(x)
        np.testing.assert_allclose(g.distances[:, 1:], d[:, 1:], atol=1e-4)
        assert (np.sort(g.indices[:, 1:], 1) == np.sort(i[:, 1:], 1)).mean() > 0.99


def test_duplicates_and_tiny_inputs() -> None:
    x = np.repeat(np.random.default_rng(0).normal(size=(20, 8)), 10, axis=0).astype(np.float32)
    out = project(x, ("tsne-2d", "umap-2d"), FAST)
    assert all(np.isfinite(v).all() for v in out.values())
    tiny = project(np.eye(4, dtype=np.float32), LAYOUTS, FAST, spaces=padded(np.eye(4, dtype=np.float32)))
    assert tiny["tsne-3d"].shape == (4, 3)
    one = project(np.ones((1, 8), dtype=np.float32), ("pca-2d", "umap-2d"), FAST)
    assert one["umap-2d"].shape == (1, 2)
    # every point in one place: the t-SNE start has no spread to scale (it crashed the process before)
    same = project(np.ones((40, 8), dtype=np.float32), ("tsne-2d", "tsne-3d", "faithful-2d"), FAST,
                   spaces=padded(np.ones((40, 8), dtype=np.float32)))
    assert all(np.isfinite(v).all() and v.shape == (40, int(k[-2])) for k, v in same.items())


def test_bad_input() -> None:
    x = np.ones((10, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="unknown layout"):
        project(x, ("mds-2d",), FAST)
    with pytest.raises(ValueError, match="reference"):
        project(x, ("pca-2d",), FAST, reference={"pca-2d": np.zeros((9, 2))})
    with pytest.raises(ValueError, match="NaN"):
        project(np.full((10, 4), np.nan), ("pca-2d",), FAST)
    with pytest.raises(ValueError, match="metric"):
        project(x, ("pca-2d",), ProjectionParams(metric="manhattan"))
