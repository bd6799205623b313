"""Per-head throughput on a Dask cluster of 1, 2 and 4 workers, beside the local executors (not a test).

The work is the build's per-head unit (`run_head`: normalize, project into ``--layouts``, every score) over
``--heads`` synthetic heads of ``--points`` points (benchmarks/bench_large_head.py's synthetic head, 25-token
sentences). Each Dask run starts a `distributed.LocalCluster` on this machine (one thread per worker process,
workers may share the cores) and submits through the build's `DaskExecutor`; cluster start and the per-worker
warm-up (imports, numba compile) are timed apart from the heads. Every result is checked equal to the in-process
one. Prints wall seconds, heads per minute and CPU seconds per head summed over every process (on a shared machine
the wall figures depend on the cores others leave free; the CPU figures do not); asserts nothing.

    python benchmarks/bench_dask.py [--workers 1,2,4] [--heads 8] [--points 10000] [--layouts pca-2d,tsne-2d,umap-2d]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_large_head import synthetic_task  # noqa: E402


def same(a, b) -> bool:
    return all(np.array_equal(a.layouts[k], b.layouts[k]) for k in a.layouts) and a.metrics == b.metrics


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and every process it started (pool or cluster workers)."""
    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def timed_map(executor, tasks, reference=None) -> tuple[float, float, list]:
    """Wall seconds, CPU seconds of every process and the results of running the heads."""
    from atlas_build.pipeline.heads import run_head

    t0, c0 = time.perf_counter(), cpu_seconds()
    results = list(executor.map(run_head, tasks))
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if reference is not None and not all(same(a, b) for a, b in zip(results, reference)):
        raise SystemExit("a result differs from the in-process one")
    return wall, cpu, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--layouts", default="pca-2d,tsne-2d,umap-2d")
    ap.add_argument("--skip-local", action="store_true", help="Dask runs only (ratios then to the first of them)")
    args = ap.parse_args()
    from distributed import LocalCluster

    from atlas_build.executor import DaskExecutor, LocalExecutor, PoolExecutor, default_initializer

    layouts = tuple(args.layouts.split(","))
    tasks = [synthetic_task(args.points, layouts) for _ in range(args.heads)]
    print(f"{args.heads} heads of {args.points:,} points, layouts {', '.join(layouts)}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    rows = []
    default_initializer()  # this process as a pool worker: one BLAS thread, kernels compiled
    wall, cpu, reference = timed_map(LocalExecutor(), tasks[:1] if args.skip_local else tasks)
    if not args.skip_local:
        rows.append(("in-process (--jobs 1)", 0.0, wall, cpu))
        print(f"  {rows[-1][0]}: {wall:.1f} s", flush=True)
        with PoolExecutor(2) as pool:
            t0 = time.perf_counter()
            list(pool.map(abs, [0, 0]))  # workers started and warmed up
            start = time.perf_counter() - t0
            wall, cpu, _ = timed_map(pool, tasks, reference)
        rows.append(("process pool (--jobs 2)", start, wall, cpu))
        print(f"  {rows[-1][0]}: {wall:.1f} s", flush=True)
    reference = reference * len(tasks) if args.skip_local else reference  # the heads are equal
    for n in (int(w) for w in args.workers.split(",")):
        t0 = time.perf_counter()
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, DaskExecutor(cluster.scheduler_address) as ex:
            start = time.perf_counter() - t0
            wall, cpu, _ = timed_map(ex, tasks, reference)
            ran = ex.client.run(lambda dask_worker: dask_worker.state.executed_count)
        rows.append((f"Dask LocalCluster, {n} worker{'s' if n > 1 else ''}", start, wall, cpu))
        print(f"  {rows[-1][0]}: {wall:.1f} s (heads per worker: {sorted(ran.values())})", flush=True)
    base = rows[0][2]
    print(f"\n{'executor':<30} {'start s':>8} {'heads s':>8} {'heads/min':>10} {'vs first':>9} {'CPU s/head':>11}")
    for name, start, wall, cpu in rows:
        print(f"{name:<30} {start:>8.1f} {wall:>8.1f} {60 * args.heads / wall:>10.1f} {base / wall:>8.2f}x "
              f"{cpu / args.heads:>11.1f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
