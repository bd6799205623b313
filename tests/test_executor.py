"""Executors: in-process, spawn process pool and Dask LocalCluster give the same results, in input order."""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest

from atlas_build.executor import DaskExecutor, LocalExecutor, PoolExecutor, make_executor
from atlas_build.project import ProjectionParams, project

FAST = ProjectionParams(tsne_early_iter=40, tsne_iter=80, umap_n_epochs=60)
LAYS = ("pca-2d", "tsne-2d", "umap-2d")
work = functools.partial(project, layouts=LAYS, params=FAST)  # picklable by reference


def heads(n_heads: int = 3, n: int = 240) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(6, 16)) * 3
    return [
        (centers[rng.integers(0, 6, n)] + rng.normal(size=(n, 16))).astype(np.float32) for _ in range(n_heads)
    ]


@pytest.fixture(scope="module")
def local_results() -> list[dict[str, np.ndarray]]:
    with make_executor(1) as ex:
        return list(ex.map(work, heads(), desc="heads", progress=True))


def same(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def test_make_executor_kinds() -> None:
    assert isinstance(make_executor(1), LocalExecutor)
    with pytest.raises(ValueError):
        make_executor(0)
    with pytest.raises(ValueError):
        PoolExecutor(2, None, start_method="fork")


def test_local_order_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    ex = make_executor(1)
    assert list(ex.map(operator.neg, [3, 1, 2], desc="neg", progress=True)) == [-3, -1, -2]
    assert "neg" in capsys.readouterr().err
    ex.close()


def test_pool_matches_local(local_results: list[dict[str, np.ndarray]]) -> None:
    with make_executor(2) as ex:
        assert isinstance(ex, PoolExecutor)
        assert list(ex.map(operator.neg, list(range(20)))) == [-i for i in range(20)]
        assert same(list(ex.map(work, heads(), desc="heads")), local_results)


def test_pool_propagates_errors() -> None:
    with PoolExecutor(2, initializer=None) as ex:
        with pytest.raises(ZeroDivisionError):
            list(ex.map(functools.partial(operator.truediv, 1), [1, 0, 2]))


def test_dask_matches_local(local_results: list[dict[str, np.ndarray]]) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        with make_executor(scheduler=cluster.scheduler_address) as ex:
            assert isinstance(ex, DaskExecutor)
            assert list(ex.map(operator.neg, [5, 4, 3])) == [-5, -4, -3]
            assert same(list(ex.map(work, heads(), desc="heads", progress=True)), local_results)
