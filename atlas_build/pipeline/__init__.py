"""Orchestrates the stages for every model of a manifest, reusing cached units, and publishes the site atomically.

Each cached unit's key names its inputs: the manifest entries, the upstream unit's key, the digests of the data and
model files it reads, the versions of the libraries that compute it, and the code of its stages. A changed input
recomputes exactly the units it feeds, and the log says which input changed."""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partialmethod
from pathlib import Path
from typing import Callable

import numpy as np

from .. import memory
from ..cache import StageCache, code_hash, confine_caches, stage_key
from ..capture import CaptureResult, capture, capture_images, load_capture, load_model
from ..capture.encdec_blocks import unit_capture
from ..capture.encdec_run import capture_pairs
from ..capture.encdec_sources import load_encdec
from ..capture.encdec_store import EncDecCapture, load_encdec_capture
from ..capture.sources import source_digest
from ..datasets import ENCDEC_KINDS, dataset_digest, dataset_info, load_sentences
from ..datasets.audio import load_clips
from ..datasets.images import load_images
from ..datasets.pairs import load_pairs
from ..datasets.repeats import repeat_cap_mask
from ..executor import ItemFailed, make_executor
from ..featured import featured_ids
from ..fingerprint import DigestMemo, library_versions
from ..manifest import DatasetSpec, Manifest, ModelSpec, load_manifest
from ..metrics.vision import capture_patch_attributes
from ..outdir import CACHE, NEW_SITE, SITE, STAGING, claim, publish
from ..project import ProjectionParams
from ..site import build_site
from ..validate import check_memory, jobs_that_fit, resolve_sources
from .export_model import export_model
from .units import adopt_units, block_of, capture_spec, is_first_unit, unit_slug, unit_title, units
from .heads import HeadResult, add_related, run_head
from .preview import publish_first_look, worthwhile
from .tasks import align_results, has_vocabulary, model_tasks

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
    configs, ram = resolve_sources(manifest, read_configs=False), memory.machine_bytes()
    check_memory(manifest, configs, ram)
    fit = jobs if scheduler or manifest.build.scheduler else jobs_that_fit(manifest, configs, jobs, ram)
    if fit < jobs:
        log(f"--jobs {jobs}: {jobs} heads at once would need more than this machine's {memory.gib(ram)} of memory; "
            f"running {fit} worker{'s' * (fit > 1)}")
        jobs = fit
    with claim(Path(out_dir)) as out:
        cache = StageCache(out / CACHE)
        memo = DigestMemo(cache.root / "_digests.json")
        staging = out / STAGING
        if staging.exists():
            shutil.rmtree(staging)
        report = BuildReport(site_dir=out / SITE)
        exported = []
        executor = make_executor(jobs=jobs, scheduler=scheduler or manifest.build.scheduler or None)
        # a first build of OUT publishes a first look (linear layouts) before the first model's graph layouts
        first_look = not (out / SITE).exists()
        finished = False
        try:
            todo = units(manifest)
            for i, spec in enumerate(todo):
                if is_first_unit(spec):  # a model's first unit: capture it on all its datasets
                    captured = _capture_model(manifest, capture_spec(spec), cache, memo, report, force, progress,
                                              device, log)
                cap, cap_key = captured[spec.dataset]
                if block_of(spec):
                    cap = unit_capture(cap, block_of(spec))
                # A featured input the token budget left out stops the build before the per-head work.
                featured_ids(manifest, spec, np.unique(cap.tokens.sentence_id).tolist(), manifest.build.seed)
                has_point = _point_mask(cap, manifest.dataset(spec.dataset))
                data_dir = staging / "docs" / "data" / unit_slug(spec)
                pending = [unit_title(u) for u in todo[i + 1:]]
                if (first_look and worthwhile(manifest.projections.layouts)
                        and not _heads_started(manifest, spec, cap_key, cache)):
                    first_look = False
                    if publish_first_look(manifest, spec, unit_title(spec), cap, has_point, exported, pending,
                                          data_dir, staging, out, executor, progress, log) and on_publish is not None:
                        on_publish(report.site_dir)
                results = _heads_stage(manifest, spec, cap, cap_key, has_point, cache, report, force, progress,
                                       executor, log)
                if results is None:
                    log(f"[{unit_slug(spec)}] left out of the site: a head failed")
                    continue
                exported.append(export_model(manifest, spec, cap, results, data_dir, has_point=has_point))
                log(f"[{unit_slug(spec)}] exported {len(results)} heads")
                first_look = False
                if pending:
                    build_site(manifest, exported, staging, out / NEW_SITE, pending)
                    publish(out)
                    log(f"[site] published with {len(exported)} of {len(todo)} atlases; still coming: "
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
    """The named inputs of a model's capture unit on `spec.dataset`."""
    data = manifest.dataset(spec.dataset)
    base = manifest.base_dir
    return {
        # Featured inputs only choose what is exported: changing them recaptures nothing.
        # The model on this dataset: its other datasets are other units.
        "model entry": {k: v for k, v in asdict(spec).items() if k not in ("featured", "datasets")},
        # The Zipf cap only picks which tokens get points (heads stage): it does not change what the model computes.
        "dataset entry": replace(data, max_token_repeats=0),
        "dataset files": dataset_digest(data, base, memo),
        "model files": source_digest(spec.source, base, memo, spec.gguf_file, spec.revision),
        "tokenizer files": source_digest(spec.tokenizer, base, memo) if spec.tokenizer else "",
        "batching": [manifest.build.batch_size, manifest.build.capture_dtype],
        "libraries": library_versions("capture"),
        "code": code_hash("capture", "datasets"),
    }


def _capture_model(manifest: Manifest, model: ModelSpec, cache: StageCache, memo: DigestMemo, report: BuildReport,
                   force: bool, progress: bool, device: str | None,
                   log: Log) -> dict[str, tuple[CaptureResult | EncDecCapture, str]]:
    """The model's capture on each of its datasets, by dataset name: cached units are reused, and the weights are
    loaded once, by the first dataset that needs them, for all the others."""
    loaded: list = []

    def load() -> object:
        if not loaded:
            log(f"[{model.name}] loading {model.source}")
            with _library_bars(progress):
                loaded.append(load_model(model, manifest.base_dir, device or manifest.build.device,
                                         cache_dir=cache.root / "_models"))
        return loaded[0]

    def load_pair_model() -> object:
        if not loaded:
            log(f"[{model.name}] loading {model.source}")
            with _library_bars(progress):
                loaded.append(load_encdec(model, manifest.base_dir, device or manifest.build.device))
        return loaded[0]

    return {d: _capture_stage(manifest, model.on(d), cache, memo, report, force, progress, log,
                              load_pair_model if manifest.dataset(d).kind in ENCDEC_KINDS else load)
            for d in model.all_datasets}


def _capture_stage(manifest: Manifest, spec: ModelSpec, cache: StageCache, memo: DigestMemo, report: BuildReport,
                   force: bool, progress: bool, log: Log,
                   load: Callable[[], object]) -> tuple[CaptureResult | EncDecCapture, str]:
    """One (model, dataset) capture unit; `load()` gives the loaded model."""
    data = manifest.dataset(spec.dataset)
    inputs = capture_inputs(manifest, spec, memo)
    key = stage_key("capture", inputs)
    slug = unit_slug(spec)
    adopt_units(cache.root, spec)
    unit = cache.unit_dir(slug, "capture", key)
    name = f"{slug}/capture"
    if cache.is_done(unit) and not force:
        log(f"[{slug}] capture: reused ({key})")
        report.reused.append(name)
        return (load_encdec_capture(unit) if data.kind in ENCDEC_KINDS else load_capture(unit)), key
    reason = "--force" if force else cache.why(slug, "capture", key, inputs)
    log(f"[{slug}] capture: computing ({reason})")
    build = manifest.build
    confine_caches(cache.root)
    if data.kind == "images":
        items = load_images(data, manifest.base_dir)
        loaded = load()
        cache.resumable(unit, force)
        cache.record_inputs(unit, inputs)
        result = capture_images(loaded, items, unit, image_size=data.image_size, batch_size=build.batch_size,
                                dtype=build.capture_dtype, progress=progress)
        unit_name = "images"
    elif data.kind in ENCDEC_KINDS:
        items = load_clips(data, manifest.base_dir) if data.kind == "audio" else load_pairs(data, manifest.base_dir)
        loaded = load()
        cache.resumable(unit, force)
        cache.record_inputs(unit, inputs)
        result = capture_pairs(loaded, items, unit, token_budget=data.max_tokens, max_length=spec.max_tokens,
                               max_target_tokens=data.max_target_tokens, batch_size=build.batch_size,
                               dtype=build.capture_dtype)
        unit_name = "pairs"
    else:
        sentences = load_sentences(data, manifest.base_dir)
        loaded = load()
        cache.resumable(unit, force)
        cache.record_inputs(unit, inputs)
        result = capture(loaded, sentences, unit, token_budget=data.max_tokens, max_length=spec.max_tokens,
                         batch_size=build.batch_size, dtype=build.capture_dtype, progress=progress)
        unit_name = "sentences"
    cache.mark_done(unit)
    cache.prune(slug, "capture", key)
    report.rebuilt.append(name)
    tables = result.tokens.values() if isinstance(result.tokens, dict) else [result.tokens]  # encoder–decoder: 2
    log(f"[{slug}] capture: {sum(len(t) for t in tables)} tokens from "
        f"{len(np.unique(next(iter(tables)).sentence_id))} {unit_name} "
        f"({result.batches_reused} of {result.batches_total} batches reused)")
    return result, key


def _point_mask(cap: CaptureResult, data: DatasetSpec) -> np.ndarray:
    """Which tokens carry query/key points: all, or the first `max_token_repeats` of each vocab id (text; image
    patches and audio frames have no vocabulary)."""
    tok = cap.tokens
    cap_at = data.max_token_repeats if has_vocabulary(tok) else 0
    if tok.side is None:
        return repeat_cap_mask(tok.vocab_id, cap_at)
    mask = np.zeros(len(tok), bool)  # cross-attention: each side capped on its own, as in its self-attention block
    for side in (0, 1):
        rows = np.flatnonzero(tok.side == side)
        mask[rows] = repeat_cap_mask(tok.vocab_id[rows], cap_at if (tok.vocab_id[rows] >= 0).any() else 0)
    return mask


def _heads_unit(manifest: Manifest, spec: ModelSpec, cap_key: str, cache: StageCache) -> tuple[dict, str, Path]:
    """The named inputs, key and directory of a model's heads unit."""
    # the default layout only chooses what pages open with: changing it recomputes no head
    inputs = {"capture": cap_key, **({"block": block_of(spec)} if block_of(spec) else {}),
              "projections": replace(manifest.projections, default_layout=None),
              "seed": manifest.build.seed,
              "max_token_repeats": manifest.dataset(spec.dataset).max_token_repeats,
              "libraries": library_versions("heads"),
              "code": code_hash("normalize", "project", "metrics", "pipeline/heads.py", "pipeline/tasks.py")}
    key = stage_key("heads", inputs)
    return inputs, key, cache.unit_dir(unit_slug(spec), "heads", key)


def _heads_started(manifest: Manifest, spec: ModelSpec, cap_key: str, cache: StageCache) -> bool:
    """Whether any head of the model's heads unit is already computed (a resumed or cached build)."""
    unit = _heads_unit(manifest, spec, cap_key, cache)[2]
    return unit.is_dir() and any(cache.is_done(d) for d in unit.iterdir() if d.is_dir())


def _heads_stage(manifest: Manifest, spec: ModelSpec, cap: CaptureResult, cap_key: str, has_point: np.ndarray,
                 cache: StageCache, report: BuildReport, force: bool, progress: bool, executor,
                 log: Log) -> list[HeadResult] | None:
    """Every head's result, or None when a head's unit ran out of memory (one log line; the others still run)."""
    p = manifest.projections
    params = ProjectionParams.from_spec(p, seed=manifest.build.seed)
    inputs, key, unit = _heads_unit(manifest, spec, cap_key, cache)
    slug = unit_slug(spec)
    if force or not cache.is_done(unit):
        log(f"[{slug}] heads: computing ({'--force' if force else cache.why(slug, 'heads', key, inputs)})")
    cache.record_inputs(unit, inputs)
    facts = cap.facts
    results: dict[tuple[int, int], HeadResult] = {}
    for layer in range(facts.num_layers):
        for head in range(facts.num_heads):
            d = unit / f"L{layer}H{head}"
            if cache.is_done(d) and not force:
                results[(layer, head)] = HeadResult.load(d)
    n_reused = len(results)
    if n_reused:
        log(f"[{slug}] heads: {n_reused} reused")
        report.reused.extend(f"{slug}/L{lh[0]}H{lh[1]}" for lh in sorted(results))
    todo = [(layer, head) for layer in range(facts.num_layers) for head in range(facts.num_heads)
            if (layer, head) not in results]
    left = Counter(layer for layer, _ in todo)  # heads still to come per layer, for the "layer done" lines
    patches = capture_patch_attributes(cap) if todo else None  # None for text models
    tasks = model_tasks(cap, sorted(left), has_point, p.layouts, params, patches, skip=frozenset(results))
    runs = executor.map(run_head, tasks, desc=f"{slug} heads", progress=progress, contain=(MemoryError,),
                        total=len(todo))
    for (layer, head), res in zip(todo, runs):
        if isinstance(res, ItemFailed):  # one line; the other heads go on
            report.failed.append(f"{slug}/L{layer}H{head}")
            log(f"[{slug}] L{layer}H{head} failed: {res.error}")
        else:
            d = cache.fresh(unit / f"L{res.layer}H{res.head}")
            res.save(d)
            cache.mark_done(d)
            results[(res.layer, res.head)] = res
            report.rebuilt.append(f"{slug}/L{res.layer}H{res.head}")
        left[layer] -= 1
        if not left[layer]:
            log(f"[{slug}] heads: layer {layer} done")
    if len(results) < facts.num_layers * facts.num_heads:
        return None
    cache.mark_done(unit)
    cache.prune(slug, "heads", key)
    ordered = [results[k] for k in sorted(results)]
    return add_related(align_results(ordered))


__all__ = ["BuildReport", "build", "dataset_info"]
