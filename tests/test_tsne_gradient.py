"""The t-SNE gradient (`project.tsne_gradient`, `project.tsne_fft`, `project.tsne_bh`) against openTSNE's own: the
attraction kernel, the FFT and Barnes-Hut repulsions, the whole objective in 2D (FFT) and 3D (Barnes-Hut), the error when asked, and a short
optimisation; plus the UMAP kernel's power tables against the exact power."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from atlas_build.project import methods, tsne_bh, tsne_fft, tsne_gradient, umap_sgd
from atlas_build.project.knn import exact_knn, prepare

FFT = {"n_interpolation_points": 3, "min_num_intervals": 30, "ints_in_interval": 2}
BH = {"theta": 1.2}


@pytest.fixture(scope="module")
def affinities() -> sp.csr_matrix:
    x = prepare(np.random.default_rng(3).normal(size=(600, 16)).astype(np.float32), "cosine")
    return methods.tsne_affinities(exact_knn(x, 90, "cosine"), 30.0)


def layout(n: int, dims: int, seed: int = 0) -> np.ndarray:
    return np.ascontiguousarray(np.random.default_rng(seed).normal(scale=8.0, size=(n, dims)))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("dof", [1.0, 0.8])
def test_attraction_equals_opentsnes(affinities: sp.csr_matrix, dims: int, dof: float) -> None:
    from openTSNE import _tsne

    emb = layout(affinities.shape[0], dims)
    start = np.random.default_rng(1).normal(size=emb.shape)  # the repulsion already in the gradient
    ref, ours = start.copy(), start.copy()
    _tsne.estimate_positive_gradient_nn(affinities.indices, affinities.indptr, affinities.data, emb, emb, ref, dof,
                                        num_threads=1)
    tsne_gradient.attract(affinities, emb, ours, dof)
    assert np.abs(ref - start).max() > 1e-4  # the attraction is not negligible here
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("scale", [1e-4, 3.0, 40.0])
@pytest.mark.parametrize("dof", [1.0, 0.8])
@pytest.mark.parametrize("points, intervals", [(3, 30), (2, 10)])
def test_fft_repulsion_equals_opentsnes(scale: float, dof: float, points: int, intervals: int) -> None:
    """Same grid, same nodes, same forces and normaliser: a tight start, a mid-run and a spread layout (the last
    with more boxes than the minimum), clustered so the grid is unevenly filled."""
    from openTSNE import _tsne

    rng = np.random.default_rng(5)
    centres = rng.normal(scale=scale, size=(12, 2))
    emb = np.ascontiguousarray(centres[rng.integers(0, 12, 3000)] + rng.normal(scale=scale / 10, size=(3000, 2)))
    params = {"n_interpolation_points": points, "min_num_intervals": intervals, "ints_in_interval": 2.0, "dof": dof}
    force = np.zeros_like(emb)
    _tsne.estimate_negative_gradient_fft_2d(emb, force, **params)
    start = rng.normal(scale=np.abs(force).max(), size=emb.shape)  # the forces are subtracted from a gradient
    ref, ours = start.copy(), start.copy()
    z_ref = _tsne.estimate_negative_gradient_fft_2d(emb, ref, **params)
    z = tsne_fft.repulsion_2d(emb, ours, **params)
    assert z == pytest.approx(z_ref, rel=1e-12)
    np.testing.assert_allclose(ours - start, ref - start, rtol=1e-9, atol=1e-11 * np.abs(force).max())


@pytest.mark.parametrize("dims, theta, dof", [(3, 1.2, 1.0), (3, 0.5, 0.8), (2, 0.5, 1.0), (1, 0.5, 1.0)])
def test_barnes_hut_repulsion_equals_opentsnes(dims: int, theta: float, dof: float) -> None:
    """Same tree and opening test as openTSNE's QuadTree: equal forces and normaliser, duplicates and near
    duplicates (merged into one cell below 1e-6) included."""
    from openTSNE import _tsne
    from openTSNE.quad_tree import QuadTree

    rng = np.random.default_rng(dims)
    centres = rng.normal(scale=20.0, size=(25, dims))
    emb = np.ascontiguousarray(centres[rng.integers(0, 25, 2500)] + rng.normal(scale=2.0, size=(2500, dims)))
    emb[5] = emb[7]
    emb[9] = emb[7] + 1e-8
    force = np.zeros_like(emb)
    z_ref = _tsne.estimate_negative_gradient_bh(QuadTree(emb), emb, force, theta=theta, dof=dof, num_threads=1)
    start = rng.normal(scale=np.abs(force).max(), size=emb.shape)
    ours = start.copy()
    z = tsne_bh.repulsion(emb, ours, theta=theta, dof=dof)
    assert z == pytest.approx(z_ref, rel=1e-13)
    np.testing.assert_allclose(ours - start, force, rtol=0, atol=1e-12 * np.abs(force).max())


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_barnes_hut_visits_every_point_once(dims: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The traversal's order (the tree's depth-first order) holds every point exactly once, also points merged into
    a cell as duplicates, and runs along the tree: consecutive points are near each other."""
    orders = []
    forces = tsne_bh._forces
    monkeypatch.setattr(tsne_bh, "_forces", lambda emb, order, *a: orders.append(order.copy()) or forces(emb, order,
                                                                                                          *a))
    rng = np.random.default_rng(dims)
    emb = np.ascontiguousarray(rng.normal(scale=20.0, size=(2000, dims)))
    emb[100:300] = emb[50]
    emb[9] = emb[7] + 1e-8
    tsne_bh.repulsion(emb, np.zeros_like(emb))
    (order,) = orders
    assert np.array_equal(np.sort(order), np.arange(len(emb)))
    step = np.linalg.norm(np.diff(emb[order], axis=0), axis=1)
    assert np.median(step) < 0.2 * np.median(np.linalg.norm(np.diff(emb, axis=0), axis=1))


def test_barnes_hut_refuses_other_shapes() -> None:
    with pytest.raises(ValueError, match="1 to 3 dimensions"):
        tsne_bh.repulsion(np.zeros((5, 4)), np.zeros((5, 4)))


@pytest.mark.parametrize("dims", [2, 3])
def test_repulsion_of_coincident_points_is_zero_and_nan_is_refused(dims: int) -> None:
    """Points all in one place (a head whose points coincide) repel with zero force: FFT with Z = n(n − 1) (where
    openTSNE divides by zero), Barnes-Hut as openTSNE's tree does (one cell, which skips itself: Z = 0). A layout
    with a NaN is refused with a message, not read out of bounds."""
    from openTSNE import _tsne
    from openTSNE.quad_tree import QuadTree

    emb = np.full((30, dims), 0.25)
    grad = np.zeros_like(emb)
    if dims == 2:
        assert tsne_fft.repulsion_2d(emb, grad, **FFT, dof=0.8) == pytest.approx(30 * 29, rel=1e-6)
    else:
        ref = np.zeros_like(emb)
        z_ref = _tsne.estimate_negative_gradient_bh(QuadTree(emb), emb, ref, **BH, dof=1.0, num_threads=1)
        assert tsne_bh.repulsion(emb, grad, **BH) == z_ref == 0.0 and np.array_equal(grad, ref)
    assert np.isfinite(grad).all() and np.abs(grad).max() < 1e-9
    emb[3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        (tsne_fft.repulsion_2d(emb, grad, **FFT) if dims == 2 else tsne_bh.repulsion(emb, grad, **BH))


def test_fft_boxes_are_opentsnes_sizes() -> None:
    assert [tsne_fft.box_count(span, 30, 2) for span in (0.0, 59.9, 60.0, 62.0, 98.0, 1e4)] == [30, 30, 30, 32, 49,
                                                                                               1000]
    assert tsne_fft.box_count(91.0, 10, 1) == 91  # 7 · 13
    assert tsne_fft.box_count(142, 10, 1) == 144  # 143 = 11 · 13: only one of the two is allowed
    assert tsne_fft.box_count(241, 10, 1) == 243  # 242 = 2 · 11², not allowed; 3⁵ is next


def test_fft_repulsion_refuses_other_shapes() -> None:
    with pytest.raises(ValueError, match="2D"):
        tsne_fft.repulsion_2d(np.zeros((5, 3)), np.zeros((5, 3)))


@pytest.mark.parametrize("dims, ours, theirs, params, tolerance", [
    (2, tsne_gradient.kl_fft, "kl_divergence_fft", FFT, 1e-10), (3, tsne_gradient.kl_bh, "kl_divergence_bh", BH, 1e-13)])
def test_objective_equals_opentsnes(affinities: sp.csr_matrix, dims: int, ours, theirs: str, params: dict,
                                    tolerance: float) -> None:
    from openTSNE import tsne

    emb = layout(affinities.shape[0], dims)
    error_ref, grad_ref = getattr(tsne, theirs)(emb, affinities, 0.8, params, should_eval_error=True)
    error, grad = ours(emb, affinities, 0.8, params, should_eval_error=True)
    np.testing.assert_allclose(grad, grad_ref, rtol=0, atol=tolerance * np.abs(grad_ref).max())
    assert error == pytest.approx(error_ref, rel=tolerance) and error > 0
    assert ours(emb, affinities, 0.8, params)[0] == 0.0  # no error unless asked, as openTSNE


def test_a_short_run_follows_opentsnes(affinities: sp.csr_matrix) -> None:
    """Same start, same schedule: the layout stays on openTSNE's own trajectory (it differs in the last bits of a
    sum, not in the method)."""
    from openTSNE import TSNE
    from openTSNE.affinity import PrecomputedAffinities

    init = layout(affinities.shape[0], 2) * 1e-5
    runs = []
    for method in (tsne_gradient.kl_fft, "fft"):
        tsne = TSNE(early_exaggeration_iter=10, n_iter=15, negative_gradient_method=method, ints_in_interval=2,
                    min_num_intervals=30, random_state=0, n_jobs=1, verbose=False)
        runs.append(np.asarray(tsne.fit(affinities=PrecomputedAffinities(affinities.copy(), normalize=False),
                                        initialization=init.copy())))
    assert np.abs(runs[1] - init).max() > 1e-2
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-6 * np.abs(runs[1]).max())


def test_layouts_skip_only_the_final_error(affinities: sp.csr_matrix, monkeypatch: pytest.MonkeyPatch) -> None:
    """`for_layout` answers openTSNE's closing error evaluation without computing it: the 2D layout (both phases)
    and the 3D refinement are bit for bit those of the plain objective, which is evaluated once per iteration and
    then once more per phase for the error."""
    calls: list[bool] = []

    def counted(objective):
        def run(*args, should_eval_error=False, **kwargs):
            calls.append(should_eval_error)
            return objective(*args, should_eval_error=should_eval_error, **kwargs)
        return run

    init = layout(affinities.shape[0], 3)
    runs = {}
    for name, wrap in (("plain", lambda f: f), ("layout", tsne_gradient.for_layout)):
        calls.clear()
        monkeypatch.setattr(tsne_gradient, "for_layout", lambda f, wrap=wrap: counted(wrap(f)))
        flat = methods.tsne_layout(affinities, init[:, :2], seed=0, early_iter=12, n_iter=20, exaggeration=1.2)
        deep = methods.tsne_refine(affinities, methods.lift(flat, init[:, 2], 1.0), seed=0, n_iter=9, theta=1.2,
                                   exaggeration=1.5)
        runs[name] = flat, deep
        assert calls == [False] * 12 + [True] + [False] * 20 + [True] + [False] * 9 + [True]
    assert np.abs(runs["plain"][1] - methods.lift(runs["plain"][0], init[:, 2], 1.0)).max() > 1e-3
    for plain, ours in zip(runs["plain"], runs["layout"]):
        assert np.array_equal(plain, ours)


def test_bad_calls(affinities: sp.csr_matrix) -> None:
    with pytest.raises(ValueError, match="2 or 3 dimensions"):
        tsne_gradient.attract(affinities, layout(affinities.shape[0], 1), np.zeros((affinities.shape[0], 1)), 1.0)
    emb = layout(affinities.shape[0], 2)
    with pytest.raises(ValueError, match="reference"):
        tsne_gradient.kl_fft(emb, affinities, 1.0, FFT, reference_embedding=emb)


@pytest.mark.parametrize("b", [0.5, 0.7915, 1.0, 1.5, 1.93])
def test_umap_power_tables_are_within_a_few_float32_steps(b: float) -> None:
    import numba

    @numba.njit
    def kernel(x, by_exponent, mantissa, step):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = umap_sgd._pow(x[i], by_exponent, mantissa, step)
        return out

    def powers(x, tables):
        return kernel(x, *tables)

    rng = np.random.default_rng(0)
    x = (10.0 ** rng.uniform(-12, 12, 200_000)).astype(np.float32)
    x[:4] = [1.0, 2.0, 0.5, 1.0 + 2.0 ** -23]
    exact = x.astype(np.float64) ** b
    got = powers(x, umap_sgd.pow_tables(b)).astype(np.float64)
    assert np.abs(got / exact - 1.0).max() < 5e-7
    assert powers(np.array([0.0, 1e-45], dtype=np.float32), umap_sgd.pow_tables(b)).tolist() == [0.0, 0.0]
