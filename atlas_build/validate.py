"""`atlas validate`: every problem of a manifest, whether its files and model sources resolve (no weights are
loaded), and an estimate of what a build of it will cost."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .datasets import check_source
from .errors import InputError, ManifestError
from .featured import check_featured
from .manifest import DatasetSpec, Manifest, ModelSpec, load_manifest

#: Measured CPU-seconds per layout for one head of 10k points (benchmarks/bench_projections.py, 2-core machine;
#: 3D t-SNE/UMAP: what they add to the 2D layout they continue; faithful-2d: 1.22x t-SNE, with its own kNN graph and
#: PCA in the padded space, the median over the demo's 414 heads, docs/reference/faithfulness.md), scaled by the
#: layout kernels' measured ratios (benchmarks/bench_layout_kernels.py: t-SNE 2D 0.75 then 0.81 of that, its 3D
#: refinement 0.93 then 0.61 then 0.87 (the packed Barnes-Hut traversal), UMAP's SGD 0.64 then 0.5, the kNN graph
#: unchanged). Other sizes scale as n·log n. With these `head_seconds` gives the 512-head benchmark model's seven
#: layouts 14.55 CPU-s per head (14.75 before the packed traversal, 14.35 before the padded space, 14.05 before the
#: order term; measured then, with the value layouts where due: 13.95; on 5 December's faster-running machine 9.29,
#: docs/reference/projections.md).
LAYOUT_SECONDS_10K = {"pca-2d": 0.02, "pca-3d": 0.03, "tsne-2d": 4.3, "tsne-3d": 1.2, "umap-2d": 2.3,
                      "umap-3d": 0.4, "faithful-2d": 5.3}
HEAD_OVERHEAD_SECONDS_10K = 1.0  # normalisation, scores and trust measures of one head (trust ranks shared)
CAPTURE_FLOPS = 8e10  # measured capture throughput on 2 cores (MiniLM and SmolLM2 both ~0.8-1e11 FLOP/s)
LARGE_HEAD_POINTS = 100_000
#: Site bytes, measured on the demo's all-MiniLM-L6-v2 (72 heads, 9,940 points each): what a head's files other than
#: its coordinates take per point (norms, thumbnails, head record, its share of the per-input attention files and
#: pages; schema version 6 stores the attention once: 22.9 before, less 8.9 of attention files and thumbnails), and
#: the value files per token (schema version 7, measured on the demo's MiniLM and SmolLM2): ‖v‖ of its key/value
#: head and ‖o‖, Σ a‖v‖ of the head itself, 3.2-3.4 bytes per float32 column (id + float in byte planes, gzip); each
#: value layout of its key/value head two coordinates at the head's bits plus 0.2 bytes of token id.
OTHER_BYTES_PER_POINT = 14.0
NORM_BYTES, VALUE_ID_BYTES = 3.25, 0.2
#: Stored bytes per coordinate at a number of bits (gzip over byte planes, schema version 6), measured on the same
#: heads' seven layouts; other bit counts are taken at bits / 8.
COORD_BYTES = {16: 1.946, 12: 1.500}
#: The coordinate precision the size warning suggests (export.coordinate_bits).
SMALL_COORDINATE_BITS = 12
#: DESIGN.md's size budget, 100 MB per model of 144 heads × 10k points, as bytes per point per head.
BUDGET_BYTES_PER_POINT = 100e6 / (144 * 10_000)


@dataclass
class Validation:
    problems: list[str] = field(default_factory=list)
    estimate: list[str] = field(default_factory=list)


def validate(path: str | Path) -> Validation:
    """Check a manifest fully; the problems are one line each, naming the key or source at fault."""
    result = Validation()
    try:
        manifest = load_manifest(path)
        configs = resolve_sources(manifest)
    except ManifestError as e:
        result.problems = [str(p) for p in e.problems]
        return result
    result.problems = [str(p) for p in memory_problems(manifest, configs)]
    if not result.problems:
        result.estimate = estimate(manifest, configs)
    return result


def check_memory(manifest: Manifest, configs: dict[str, Any], machine: int | None = None) -> None:
    """Raise one ManifestError listing every `memory_problems` line (a build calls this before it starts)."""
    problems = memory_problems(manifest, configs, machine)
    if problems:
        raise ManifestError.collect(problems)


def jobs_that_fit(manifest: Manifest, configs: dict[str, Any], jobs: int, machine: int | None = None) -> int:
    """The most worker processes, up to `jobs`, whose head units fit in this machine's memory (`machine` bytes,
    default: `memory.machine_bytes`) all at once, each at the manifest's largest head; at least 1."""
    from .memory import head_bytes, machine_bytes

    memory = machine_bytes() if machine is None else machine
    largest = max(head_bytes(points) for _, _, _, points in _units(manifest, configs))
    return max(1, min(jobs, memory // largest))


def memory_problems(manifest: Manifest, configs: dict[str, Any], machine: int | None = None) -> list[ManifestError]:
    """One problem per model whose heads have more points than one head unit can hold in this machine's memory
    (`machine` bytes, default: `memory.machine_bytes`), with the estimate and the point count that would fit."""
    from .memory import gib, head_bytes, machine_bytes, points_that_fit

    memory = machine_bytes() if machine is None else machine
    fit = points_that_fit(memory)
    problems = []
    for i, _, spec, points in _units(manifest, configs):
        if head_bytes(points) <= memory:
            continue
        data = manifest.dataset(spec.dataset)
        j = [d.name for d in manifest.datasets].index(data.name)
        if data.kind == "images":
            per_image = points // max(1, min(len(data.images) if data.images else data.max_images, data.max_images))
            advice = f"datasets[{j}].max_images to {fit // per_image:,}"
        else:
            advice = f"datasets[{j}].max_tokens to {fit // 2:,}"
        problems.append(ManifestError(str(manifest.path), f"models[{i}]", (
            f"up to {points:,} points per head need about {gib(head_bytes(points))} of memory for one head's "
            f"projections and scores, and this machine has {gib(memory)}; lower {advice} or less")))
    return problems


def resolve_sources(manifest: Manifest, read_configs: bool = True) -> dict[str, Any]:
    """Check that every dataset and model source resolves, without loading weights, and that every featured input
    names an input of its dataset's sample; returns each model's config (None where unknown before loading, or not
    read: ``read_configs=False`` only locates the files of a stored model, which a build does before every run).
    Raises one ManifestError listing every problem."""
    problems: list[ManifestError] = []

    def collect(key: str, check: Callable[[], Any]) -> Any:
        try:
            return check()
        except InputError as e:
            problems.append(ManifestError(str(manifest.path), key, str(e)))
            return None

    unresolved = set()
    for i, d in enumerate(manifest.datasets):
        before = len(problems)
        collect(f"datasets[{i}].source", lambda: check_source(d, manifest.base_dir))
        if len(problems) > before:
            unresolved.add(d.name)
    configs = {}
    for i, m in enumerate(manifest.models):
        configs[m.name] = collect(f"models[{i}].source", lambda: model_config(m, manifest.base_dir, read_configs))
        if m.tokenizer:
            collect(f"models[{i}].tokenizer", lambda: check_tokenizer(m, manifest.base_dir, read_configs))
    problems += check_featured(manifest, skip=unresolved)
    from .capture.encdec_checks import encdec_problems  # pairs and audio for encoder–decoder models

    problems += [ManifestError(str(manifest.path), k, m) for k, m in encdec_problems(manifest, configs)]
    if problems:
        raise ManifestError.collect(problems)
    return configs


def model_config(spec: ModelSpec, base_dir: Path, read: bool = True) -> Any:
    """The model's transformers config, read without weights (None for an ONNX import, whose shape is read at
    load, and for a stored model when not ``read``); SourceError when the source does not resolve."""
    from transformers import AutoConfig, CONFIG_MAPPING

    from .capture import onnx_import
    from .capture.sources import _from_pretrained, resolve, unknown_model_type
    from .errors import SourceError

    if spec.source.startswith("random:"):
        model_type = spec.source[len("random:"):]
        if model_type not in CONFIG_MAPPING:
            raise SourceError(spec.source, unknown_model_type(model_type))
        try:
            return AutoConfig.for_model(model_type, **spec.config_dict())
        except (ValueError, TypeError) as e:
            raise SourceError(spec.source, f"invalid config: {str(e).splitlines()[0][:200]}") from None
    if onnx_import.resolve_onnx(spec.source, base_dir) is not None:
        return None
    where = resolve(spec.source, base_dir, spec.gguf_file, spec.revision)
    return _from_pretrained(spec.source, where, AutoConfig) if read else None


def check_tokenizer(spec: ModelSpec, base_dir: Path, load: bool = True) -> None:
    """Load the model's separate tokenizer (it has no weights: a broken tokenizer file is found before a build), or
    without `load` only locate its files."""
    from .capture.sources import load_tokenizer, resolve

    if load:
        load_tokenizer(spec.tokenizer, base_dir)
    else:
        resolve(spec.tokenizer, base_dir, tokenizer=True)


def _heads(config: Any) -> tuple[int, int, int] | None:
    """(layers, query heads, hidden size) from a config, or None; encoder–decoder models count the layers of all
    three blocks (encoder, decoder, cross)."""
    from .capture.encdec_checks import block_shape
    from .capture.facts import text_config

    if getattr(config, "is_encoder_decoder", False):
        return block_shape(config)
    c = text_config(config)
    layers, heads, hidden = (getattr(c, a, None) for a in ("num_hidden_layers", "num_attention_heads", "hidden_size"))
    return (layers, heads, hidden) if all(isinstance(v, int) for v in (layers, heads, hidden)) else None


def _units(manifest: Manifest, configs: dict[str, Any]) -> Iterator[tuple[int, ModelSpec, ModelSpec, int]]:
    """(model index, model entry, its entry on one of its datasets, points per head) for every atlas of `manifest`."""
    for i, model in enumerate(manifest.models):
        for d in model.all_datasets:
            spec = model.on(d)
            yield i, model, spec, _points(manifest, spec, configs.get(spec.name))


def _points(manifest: Manifest, spec: ModelSpec, config: Any) -> int:
    data = manifest.dataset(spec.dataset)
    if data.kind != "images":
        if data.source == "inline":  # a known text: about 1.5 tokens a word plus two special tokens a sentence
            return 2 * min(data.max_tokens, sum(int(1.5 * len(s.split())) + 2 for s in data.sentences))
        return 2 * data.max_tokens
    patch = getattr(config, "patch_size", 14) if config is not None else 14
    per_image = (data.image_size // patch) ** 2 + 1
    count = len(data.images) if data.images else data.max_images
    return 2 * per_image * min(count, data.max_images)


def head_seconds(points: int, layouts: tuple[str, ...]) -> float:
    """Estimated CPU-seconds of one head's per-head work at ``points`` points."""
    scale = points * math.log(max(points, 2)) / (10_000 * math.log(10_000))
    return scale * (HEAD_OVERHEAD_SECONDS_10K + sum(LAYOUT_SECONDS_10K[name] for name in layouts))


def head_site_bytes(points: int, layouts: tuple[str, ...], values: bool = False, kv_share: float = 1.0,
                    value_layouts: int = 0, coordinate_bits: int = 16) -> float:
    """Estimated bytes of one head's site files at ``points`` points (the coordinates files at ``coordinate_bits``:
    a nested layout has none, `stored_layouts`; plus `OTHER_BYTES_PER_POINT`) and, with ``values``, its output norms
    and its share ``kv_share`` (key/value heads ÷ query heads) of its key/value head's value files (one token per
    two points)."""
    from .project.layouts import LAYOUTS, stored_layouts

    per_coordinate = COORD_BYTES.get(coordinate_bits, coordinate_bits / 8)
    coords = sum(per_coordinate * LAYOUTS[name].dims for name in stored_layouts(layouts))
    value_layout = 2 * per_coordinate + VALUE_ID_BYTES
    value_bytes = ((points // 2) * (2 * NORM_BYTES + kv_share * (NORM_BYTES + value_layout * value_layouts))
                   if values else 0.0)
    return points * (coords + OTHER_BYTES_PER_POINT) + value_bytes


def size_lines(name: str, heads: int, points: int, layouts: tuple[str, ...], values: bool, kv_share: float,
               value_layouts: int, coordinate_bits: int = 16) -> list[str]:
    """The site-size estimate of one model and, when it is over DESIGN.md's budget (scaled to its heads and
    points), a warning naming what brings it down: ``values = false``, ``coordinate_bits = 12``, or both."""
    def size(with_values: bool, bits: int) -> float:
        return heads * head_site_bytes(points, layouts, with_values, kv_share, value_layouts, bits)

    total, budget = size(values, coordinate_bits), heads * points * BUDGET_BYTES_PER_POINT
    lines = [f"  site data: about {total / 1e6:.0f} MB (budget {budget / 1e6:.0f} MB for {heads} heads × "
             f"{points:,} points)"]
    if total <= budget:
        return lines
    fixes = []
    if values:
        fixes.append(f"`[projections] values = false` brings it to about {size(False, coordinate_bits) / 1e6:.0f} MB "
                     "(value scores are kept)")
    if coordinate_bits > SMALL_COORDINATE_BITS:
        fixes.append(f"`[export] coordinate_bits = {SMALL_COORDINATE_BITS}` to about "
                     f"{size(values, SMALL_COORDINATE_BITS) / 1e6:.0f} MB (its grid shows beyond about 6x zoom)")
    if len(fixes) == 2:
        fixes.append(f"both to about {size(False, SMALL_COORDINATE_BITS) / 1e6:.0f} MB")
    if fixes:
        lines.append(f"  warning: {name} is over the size budget; " + "; ".join(fixes))
    return lines


def estimate(manifest: Manifest, configs: dict[str, Any]) -> list[str]:
    """What a build of the manifest will do, one line per model and a total (upper bounds: the token budgets)."""
    from .capture.facts import text_config
    from .memory import gib, head_bytes
    from .normalize.values import value_layout_names

    lines = []
    total = 0.0
    layouts = manifest.projections.layouts
    for _, model, spec, points in _units(manifest, configs):  # an atlas per dataset
        name = f"{spec.name} on {spec.dataset}" if model.datasets else spec.name
        config = configs.get(spec.name)
        shape = _heads(config) if config is not None else None
        if shape is None:
            lines.append(f"{name}: up to {points:,} points per head; head count known once the model loads")
            continue
        layers, heads, hidden = shape
        per_head = head_seconds(points, layouts)
        kv = getattr(text_config(config), "num_key_value_heads", None) or heads
        value_layouts = len(value_layout_names(layouts))
        if manifest.projections.values:  # value layouts on half the points; an upper bound (once per kv head)
            per_head += head_seconds(points // 2, value_layout_names(layouts)) - head_seconds(points // 2, ())
        capture = 2 * 12 * layers * hidden**2 * (points // 2) / CAPTURE_FLOPS
        seconds = capture + layers * heads * per_head
        total += seconds
        lines.append(f"{name}: {layers} layers × {heads} heads = {layers * heads} heads, up to {points:,} "
                     f"points per head; about {_duration(seconds)} of CPU time ({_duration(per_head)} per head); "
                     f"about {gib(head_bytes(points))} of memory per head running at once")
        lines += size_lines(name, layers * heads, points, layouts, manifest.projections.values, kv / heads,
                            value_layouts, manifest.export.coordinate_bits)
        if points > LARGE_HEAD_POINTS:
            lines.append(f"  warning: {points:,} points per head is large: t-SNE and UMAP time grows faster than "
                         f"the point count, and heads over {manifest.export.tile_threshold:,} points get tile pyramids")
    lines.append(f"total: about {_duration(total)} of CPU time (divide by --jobs for wall time); estimates from "
                 "the benchmarks of a 2-core machine")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
