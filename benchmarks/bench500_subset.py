"""The subset stage of benchmarks/bench_500_heads.py: every head of a few layers computed in a worker pool as a
build's heads stage computes them, with each head's CPU seconds and the bytes of its per-layout files (not a test)."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _capture(out: Path):
    """The capture unit of the benchmark model, from the site stage's build cache (same key for any layout set)."""
    from atlas_build.cache import StageCache, stage_key
    from atlas_build.capture import load_capture
    from atlas_build.fingerprint import DigestMemo
    from atlas_build.manifest import load_manifest
    from atlas_build.pipeline import capture_inputs

    manifest = load_manifest(out / "cheap.toml")
    spec = manifest.models[0]
    cache = StageCache(out / "cheap" / "cache")
    key = stage_key("capture", capture_inputs(manifest, spec, DigestMemo(cache.root / "_digests.json")))
    unit = cache.unit_dir(spec.name, "capture", key)
    if not cache.is_done(unit):
        # the capture code changed since the site stage (the key names it): its tokens and vectors still serve
        done = sorted((u for u in unit.parent.glob("capture-*") if cache.is_done(u)), key=lambda u: u.stat().st_mtime)
        if not done:
            raise SystemExit(f"no finished capture in {unit.parent}: run --stage site first")
        print(f"  capture {unit.name} not built (its inputs changed since); using {done[-1].name}", flush=True)
        unit = done[-1]
    return manifest, load_capture(unit)


def head_tasks(manifest, cap, layers: list[int], layouts: tuple[str, ...], values: bool = True) -> list:
    """The per-head tasks of the given layers, made by the build's own `layer_tasks` (with `values`, value vectors
    included: the first query head of each key/value head lays out its values, as in a build; without, as a build
    with `[projections] values = false`)."""
    import dataclasses

    from atlas_build.datasets.repeats import repeat_cap_mask
    from atlas_build.pipeline.tasks import layer_tasks
    from atlas_build.project import ProjectionParams

    data = manifest.dataset(manifest.models[0].dataset)
    has_point = repeat_cap_mask(cap.tokens.vocab_id, data.max_token_repeats)
    params = ProjectionParams.from_spec(manifest.projections, seed=manifest.build.seed)
    tasks = [t for layer in layers for t in layer_tasks(cap, layer, cap.layer(layer), has_point, layouts, params, None)]
    return tasks if values else [dataclasses.replace(t, values=None, lays_out_values=False) for t in tasks]


def timed_head(item: tuple) -> dict:
    """Run one head in a worker: its CPU and wall seconds, and the bytes of each layout's per-head files."""
    from atlas_build.export.thumbnails import preview_layout, thumbnail_png
    from atlas_build.export.writer import write_coords
    from atlas_build.normalize.joint import is_key
    from atlas_build.pipeline.heads import run_head

    task, thumb_size, bits = item
    cpu, wall = time.process_time(), time.perf_counter()
    res = run_head(task)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    files, export_cpu = {}, time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        for name, coords in res.layouts.items():
            path = Path(tmp) / f"{name}.bin.gz"
            write_coords(path, coords, task.layer, task.head, name, bits)
            files[f"coords:{name}"] = path.stat().st_size
            if coords.shape[1] == 2:
                files[f"thumbs:{name}"] = len(thumbnail_png(coords, is_key(len(coords)), thumb_size))
        for name, coords in res.value_layouts.items():  # its key/value head's value layouts, when it lays them out
            path = Path(tmp) / f"values_{name}.bin.gz"
            ids = np.arange(len(coords)) if task.points is None else task.points  # the point tokens' ids
            write_coords(path, coords, task.layer, task.kv_head, name, bits, token_ids=ids)
            files[f"values:{name}"] = path.stat().st_size
    # what the head adds to manifest.json that grows with its layouts (its thumbnail path, scores per layout)
    preview = preview_layout(task.layouts, task.layouts[0])
    thumbs = {preview: f"thumbs/L{task.layer}H{task.head}_{preview}.png"}
    files["manifest.json"] = len(json.dumps({"thumbs": thumbs, "trust": res.trust}, separators=(",", ":")))
    return {"layer": task.layer, "head": task.head, "cpu": cpu, "wall": wall, "files": files,
            "export_cpu": time.process_time() - export_cpu}


def stage_subset(out: Path, n_layers: int, seed: int, jobs: int, sets: dict[str, tuple[str, ...]],
                 without_values: frozenset[str] = frozenset()) -> dict:
    """CPU seconds per head and the bytes of its files for each named layout set, over every head of ``n_layers``
    layers drawn with ``seed``, computed by ``jobs`` workers from the capture of the site stage in ``out``; the sets
    named in ``without_values`` without the value view."""
    from atlas_build.executor import default_initializer, make_executor

    manifest, cap = _capture(out)
    layers = sorted(np.random.default_rng(seed).choice(cap.facts.num_layers, n_layers, replace=False).tolist())
    print(f"subset: layers {layers} of {cap.facts.num_layers} (seed {seed}), {cap.facts.num_heads} heads each, "
          f"{jobs} workers; load {os.getloadavg()[0]:.2f}", flush=True)
    subset = {"layers": layers, "seed": seed, "jobs": jobs, "sets": {}}
    if jobs == 1:  # in this process: one BLAS thread and the projection warm-up, as a pool worker has
        default_initializer()
    executor = make_executor(jobs=jobs)
    try:
        for label, layouts in sets.items():
            tasks = [(t, manifest.export.thumbnail_size, manifest.export.coordinate_bits)
                     for t in head_tasks(manifest, cap, layers, layouts, values=label not in without_values)]
            start = time.perf_counter()
            rows = list(executor.map(timed_head, tasks, desc=label, progress=False))
            wall = time.perf_counter() - start
            cpu = [r["cpu"] for r in rows]
            kinds = sorted({k for r in rows for k in r["files"]})
            subset["sets"][label] = {
                "layouts": list(layouts), "values": label not in without_values, "heads": len(rows),
                "cpu_median": statistics.median(cpu),
                "cpu_quartiles": [float(q) for q in np.percentile(cpu, [25, 75])], "wall_total": wall,
                "export_cpu_median": statistics.median(r["export_cpu"] for r in rows),
                # a mean over every head (value files: one head per key/value head has them, the others 0)
                "cpu_mean": statistics.fmean(cpu),
                "file_bytes_mean": {k: float(np.mean([r["files"].get(k, 0) for r in rows])) for k in kinds},
                "file_bytes_max": {k: int(max(r["files"].get(k, 0) for r in rows)) for k in kinds},
                "load": os.getloadavg()[0]}
            print(f"  {label} ({len(layouts)} layouts): {len(rows)} heads, CPU median "
                  f"{subset['sets'][label]['cpu_median']:.2f} s per head, wall {wall:.0f} s", flush=True)
    finally:
        executor.close()
    return subset
