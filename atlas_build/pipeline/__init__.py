"""Orchestrates the stages for every model of a manifest, reusing cached units, and publishes the site atomically.

Each cached unit's key names its inputs: the manifest entries, the upstream unit's key, the digests of the data and
model files it reads, the versions of the libraries that compute it, and the code of its stages. A changed input
recomputes exactly the units it feeds, and the log says which input changed."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partialmethod
from pathlib import Path
from typing import Callable

import numpy as np

from ..cache import StageCache, code_hash, confine_caches, stage_key
from ..capture import CaptureResult, capture, capture_images, load_capture, load_model, read_layer
from ..capture.sources import source_digest
from ..datasets import dataset_digest, dataset_info, load_sentences
from ..datasets.images import load_images
from ..datasets.repeats import repeat_cap_mask
from ..executor import ItemFailed, make_executor
from ..featured import featured_ids
from ..fingerprint import DigestMemo, library_versions
from ..manifest import DatasetSpec, Manifest, ModelSpec, load_manifest
from ..metrics.vision import capture_patch_attributes
from ..normalize import HeadSample
from ..outdir import CACHE, NEW_SITE, SITE, STAGING, claim, publish
from ..project import ProjectionParams, align_sequence
from ..site import build_site
from ..validate import check_memory, resolve_sources
from .export_model import export_model
from .heads import HeadResult, HeadTask, add_related, run_head

Log = Callable[[str], None]


@dataclass
class BuildReport:
    site_dir: Path
    reused: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  #: heads whose unit failed (their model is left out)
    seconds: float = 0.0


@contextmanager
def _library_bars(progress: bool) -> Iterator[None]:
    """Without progress, silence the libraries' own bars while models load (transformers' and its GGUF reader's)."""
    if progress:
        yield
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from tqdm import std

    init = std.tqdm.__init__
    # Bars that do not choose `disable` themselves (the GGUF reader's) default to off; explicit choices still win.
    std.tqdm.__init__ = partialmethod(init, disable=True)
    try:
        yield
    finally:
        std.tqdm.__init__ = init


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(manifest_path: str | Path, out_dir: str | Path, *, jobs: int = 1, scheduler: str | None = None,
          force: bool = False, progress: bool = False, device: str | None = None, log: Log = _stderr,
          on_publish: Callable[[Path], None] | None = None) -> BuildReport:
    """Build the whole site for a manifest into `out_dir/site`; stage caches live in `out_dir/cache`.

    Per-head work runs on a Dask cluster when `scheduler` (or else the manifest's `[build] scheduler`) names one.
    With several models, the site is published after each model (atomically, like the final one) with a note of
    the models still to come, so a first look does not wait for the whole manifest; ``on_publish(site)`` is called
    after every publish.
    """
    start = time.monotonic()
    manifest = load_manifest(manifest_path)
    # every unresolvable source and every head too large for this machine's memory, before anything is written
    check_memory(manifest, resolve_sources(manifest, read_configs=False))
    with claim(Path(out_dir)) as out:
        cache = StageCache(out / CACHE)
        memo = DigestMemo(cache.root / "_digests.json")
        staging = out / STAGING
        if staging.exists():
            shutil.rmtree(staging)
        report = BuildReport(site_dir=out / SITE)
        exported = []
        executor = make_executor(jobs=jobs, scheduler=scheduler or manifest.build.scheduler or None)
        finished = False
        try:
            for i, spec in enumerate(manifest.models):
                cap, cap_key = _capture_stage(manifest, spec, cache, memo, report, force, progress, device, log)
                # A featured input the token budget left out stops the build before the per-head work.
                featured_ids(manifest, spec, np.unique(cap.tokens.sentence_id).tolist(), manifest.build.seed)
                has_point = _point_mask(cap, manifest.dataset(spec.dataset))
                results = _heads_stage(manifest, spec, cap, cap_key, has_point, cache, report, force, progress,
                                       executor, log)
                if results is None:
                    log(f"[{spec.name}] left out of the site: a head failed")
                    continue
                data_dir = staging / "docs" / "data" / spec.name
                exported.append(export_model(manifest, spec, cap, results, data_dir, has_point=has_point))
                log(f"[{spec.name}] exported {len(results)} heads")
                pending = [m.title or m.name for m in manifest.models[i + 1:]]
                if pending:
                    build_site(manifest, exported, staging, out / NEW_SITE, pending)
                    publish(out)
                    log(f"[site] published with {len(exported)} of {len(manifest.models)} models; still coming: "
                        f"{', '.join(pending)}")
                    if on_publish is not None:
                        on_publish(report.site_dir)
            finished = True
        finally:
            executor.close(abort=not finished)
            memo.save()
        build_site(manifest, exported, staging, out / NEW_SITE)
        publish(out)
        shutil.rmtree(staging, ignore_errors=True)
        if on_publish is not None:
            on_publish(report.site_dir)
    report.seconds = time.monotonic() - start
    log(f"site written to {report.site_dir} ({len(report.reused)} units reused, {len(report.rebuilt)} rebuilt, "
        f"{report.seconds:.1f} s)")
    if report.failed:
        log(f"{len(report.failed)} head{'s' * (len(report.failed) > 1)} failed: {', '.join(report.failed)}; rerun "
            "to retry (every finished unit is reused)")
    return report


def capture_inputs(manifest: Manifest, spec: ModelSpec, memo: DigestMemo) -> dict:
    """The named inputs of a model's capture unit."""
    data = manifest.dataset(spec.dataset)
    base = manifest.base_dir
    return {
        # Featured inputs only choose what is exported: changing them recaptures nothing.
        "model entry": {k: v for k, v in asdict(spec).items() if k != "featured"},
        # The Zipf cap only picks which tokens get points (heads stage): it does not change what the model computes.
        "dataset entry": replace(data, max_token_repeats=0),
        "dataset files": dataset_digest(data, base, memo),
        "model files": source_digest(spec.source, base, memo, spec.gguf_file, spec.revision),
        "tokenizer files": source_digest(spec.tokenizer, base, memo) if spec.tokenizer else "",
        "batching": [manifest.build.batch_size, manifest.build.capture_dtype],
        "libraries": library_versions("capture"),
        "code": code_hash("capture", "datasets"),
    }


def _capture_stage(manifest: Manifest, spec: ModelSpec, cache: StageCache, memo: DigestMemo, report: BuildReport,
                   force: bool, progress: bool, device: str | None, log: Log) -> tuple[CaptureResult, str]:
    data = manifest.dataset(spec.dataset)
    inputs = capture_inputs(manifest, spec, memo)
    key = stage_key("capture", inputs)
    unit = cache.unit_dir(spec.name, "capture", key)
    name = f"{spec.name}/capture"
    if cache.is_done(unit) and not force:
        log(f"[{spec.name}] capture: reused ({key})")
        report.reused.append(name)
        return load_capture(unit), key
    reason = "--force" if force else cache.why(spec.name, "capture", key, inputs)
    log(f"[{spec.name}] capture: computing ({reason}); loading {spec.source}")
    build = manifest.build
    confine_caches(cache.root)
    if data.kind == "images":
        items = load_images(data, manifest.base_dir)
        with _library_bars(progress):
            loaded = load_model(spec, manifest.base_dir, device or build.device, cache_dir=cache.root / "_models")
        cache.resumable(unit, force)
        cache.record_inputs(unit, inputs)
        result = capture_images(loaded, items, unit, image_size=data.image_size, batch_size=build.batch_size,
                                dtype=build.capture_dtype, progress=progress)
        unit_name = "images"
    else:
        sentences = load_sentences(data, manifest.base_dir)
        with _library_bars(progress):
            loaded = load_model(spec, manifest.base_dir, device or build.device, cache_dir=cache.root / "_models")
        cache.resumable(unit, force)
        cache.record_inputs(unit, inputs)
        result = capture(loaded, sentences, unit, token_budget=data.max_tokens, max_length=spec.max_tokens,
                         batch_size=build.batch_size, dtype=build.capture_dtype, progress=progress)
        unit_name = "sentences"
    cache.mark_done(unit)
    cache.prune(spec.name, "capture", key)
    report.rebuilt.append(name)
    log(f"[{spec.name}] capture: {len(result.tokens.token_id)} tokens from "
        f"{len(np.unique(result.tokens.sentence_id))} {unit_name} "
        f"({result.batches_reused} of {result.batches_total} batches reused)")
    return result, key


def _point_mask(cap: CaptureResult, data: DatasetSpec) -> np.ndarray:
    """Which tokens carry query/key points: all, or the first `max_token_repeats` of each vocab id (text)."""
    tok = cap.tokens
    return repeat_cap_mask(tok.vocab_id, 0 if tok.is_image else data.max_token_repeats)


def _heads_stage(manifest: Manifest, spec: ModelSpec, cap: CaptureResult, cap_key: str, has_point: np.ndarray,
                 cache: StageCache, report: BuildReport, force: bool, progress: bool, executor,
                 log: Log) -> list[HeadResult] | None:
    """Every head's result, or None when a head's unit ran out of memory (one log line; the others still run)."""
    p = manifest.projections
    params = ProjectionParams.from_spec(p, seed=manifest.build.seed)
    # the default layout only chooses what pages open with: changing it recomputes no head
    inputs = {"capture": cap_key, "projections": replace(p, default_layout=None),
              "seed": manifest.build.seed,
              "max_token_repeats": manifest.dataset(spec.dataset).max_token_repeats,
              "libraries": library_versions("heads"),
              "code": code_hash("normalize", "project", "metrics", "pipeline/heads.py")}
    key = stage_key("heads", inputs)
    unit = cache.unit_dir(spec.name, "heads", key)
    if force or not cache.is_done(unit):
        log(f"[{spec.name}] heads: computing ({'--force' if force else cache.why(spec.name, 'heads', key, inputs)})")
    cache.record_inputs(unit, inputs)
    facts = cap.facts
    results: dict[tuple[int, int], HeadResult] = {}
    todo_layers = []
    for layer in range(facts.num_layers):
        for head in range(facts.num_heads):
            d = unit / f"L{layer}H{head}"
            if cache.is_done(d) and not force:
                results[(layer, head)] = HeadResult.load(d)
        if any((layer, h) not in results for h in range(facts.num_heads)):
            todo_layers.append(layer)
    n_reused = len(results)
    if n_reused:
        log(f"[{spec.name}] heads: {n_reused} reused")
        report.reused.extend(f"{spec.name}/L{lh[0]}H{lh[1]}" for lh in sorted(results))
    tok = cap.tokens
    # Image tokens have no vocabulary: token-identity scores (same_token, token_concentration) are omitted.
    vocab = None if tok.is_image else tok.vocab_id
    points = None if has_point.all() else np.flatnonzero(has_point)
    grid = np.stack([tok.patch_row, tok.patch_col], axis=1).astype(np.int16) if tok.is_image else None
    patches = capture_patch_attributes(cap) if todo_layers else None  # None for text models
    for layer in todo_layers:
        lc = read_layer(cap.directory, layer)
        attn = {int(s): lc.attention(int(s)) for s in np.unique(tok.sentence_id)}
        weights = cap.qk_weights(layer)
        tasks = []
        for head in range(facts.num_heads):
            if (layer, head) in results:
                continue
            kv = facts.kv_head_of_query[head]
            sample = HeadSample(q=lc.q[:, head], k=lc.k[:, kv], sentence_id=tok.sentence_id.astype(np.int64),
                                position=tok.position.astype(np.int64), causal=facts.causal, scaling=facts.scaling)
            tasks.append(HeadTask(layer, head, kv, sample, {s: a[head] for s, a in attn.items()},
                                  vocab, np.linalg.norm(lc.v[:, kv], axis=1), p.layouts, params,
                                  w_q=None if weights is None else weights[0][head],
                                  w_k=None if weights is None else weights[1][kv], points=points, grid=grid,
                                  patches=patches))
        runs = executor.map(run_head, tasks, desc=f"{spec.name} L{layer}", progress=progress, contain=(MemoryError,))
        for task, res in zip(tasks, runs):
            if isinstance(res, ItemFailed):  # one line; the other heads go on
                report.failed.append(f"{spec.name}/L{task.layer}H{task.head}")
                log(f"[{spec.name}] L{task.layer}H{task.head} failed: {res.error}")
                continue
            d = cache.fresh(unit / f"L{res.layer}H{res.head}")
            res.save(d)
            cache.mark_done(d)
            results[(res.layer, res.head)] = res
            report.rebuilt.append(f"{spec.name}/L{res.layer}H{res.head}")
        log(f"[{spec.name}] heads: layer {layer} done")
    if len(results) < facts.num_layers * facts.num_heads:
        return None
    cache.mark_done(unit)
    cache.prune(spec.name, "heads", key)
    ordered = [results[k] for k in sorted(results)]
    return add_related(_align_sequence(ordered))


def _align_sequence(results: list[HeadResult]) -> list[HeadResult]:
    """Rotate/reflect each head's layouts onto the previous head's (Procrustes) so stepping heads does not flip."""
    for res, layouts in zip(results, align_sequence([r.layouts for r in results])):
        res.layouts = {name: coords.astype(np.float32) for name, coords in layouts.items()}
    return results


__all__ = ["BuildReport", "build", "dataset_info"]
