"""Featured inputs: the few sentences (or images) of a model whose query and key vectors the site exports for the
neuron view, listed on the model page. The manifest names them by input id or by text (a case-insensitive
substring of the sentence, or of the image name); without a `featured` list a seeded handful is taken.

An entry must match an input of the dataset's sample (checked by `atlas validate` and before a build starts) and
one the capture kept (the token budget may stop before it; checked after the capture)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import InputError, ManifestError
from .manifest import DatasetSpec, Manifest, ModelSpec

DEFAULT_FEATURED = 4


@dataclass(frozen=True)
class SampleInput:
    input_id: int
    text: str  # a sentence, or an image's name


def sample_inputs(data: DatasetSpec, base_dir: Path) -> list[SampleInput]:
    """The dataset's sample in input id order: its sentences, or its images' names (pixels are not kept)."""
    if data.kind == "images":
        from .datasets.images import load_images

        return [SampleInput(im.image_id, im.name) for im in load_images(data, base_dir)]
    from .datasets import load_sentences

    return [SampleInput(s.sentence_id, s.text) for s in load_sentences(data, base_dir)]


def _what(data: DatasetSpec) -> str:
    return "image" if data.kind == "images" else "sentence"


def _entry(entry: int | str) -> str:
    text = repr(entry)
    return text if len(text) <= 60 else text[:57] + "..."


def match(entry: int | str, inputs: Sequence[SampleInput]) -> int | None:
    """The input an entry names: the id itself, or the first input whose text contains the entry (any case)."""
    if isinstance(entry, int):
        return entry if any(i.input_id == entry for i in inputs) else None
    needle = entry.casefold()
    return next((i.input_id for i in inputs if needle in i.text.casefold()), None)


def resolve(entries: Sequence[int | str], inputs: Sequence[SampleInput], data: DatasetSpec,
            key: str) -> tuple[list[int], list[tuple[str, str]]]:
    """(input ids in the order given, problems as (key, message)): an entry that matches nothing, or the same input
    as an earlier entry, is a problem naming ``key[i]``."""
    ids: list[int] = []
    problems = []
    what = _what(data)
    for i, entry in enumerate(entries):
        found = match(entry, inputs)
        if found is None:
            span = f"{what}s 0–{len(inputs) - 1}" if inputs else f"no {what}s"
            how = "names no" if isinstance(entry, int) else "matches no"
            problems.append((f"{key}[{i}]", f"{_entry(entry)} {how} {what} of dataset {data.name!r} (its sample has "
                                            f"{span}; a text matches any part of a {what}"
                                            f"{' name' if what == 'image' else ''}, in any case)"))
        elif found in ids:
            problems.append((f"{key}[{i}]", f"{_entry(entry)} names {what} {found} again "
                                            f"(featured[{ids.index(found)}])"))
        else:
            ids.append(found)
    return ids, problems


def check_featured(manifest: Manifest, skip: set[str] = frozenset()) -> list[ManifestError]:
    """Every problem of the models' explicit featured lists against their datasets' samples (datasets named in
    ``skip`` did not resolve and are not read)."""
    problems: list[ManifestError] = []
    samples: dict[str, list[SampleInput]] = {}
    for m, spec in enumerate(manifest.models):
        for data in map(manifest.dataset, spec.all_datasets):  # a model on several datasets: each must match
            if not spec.featured or data.name in skip:
                continue
            if data.name not in samples:
                try:
                    samples[data.name] = sample_inputs(data, manifest.base_dir)
                except InputError:
                    continue  # the dataset's own problem: the build reports it where it reads the data
            _, found = resolve(spec.featured, samples[data.name], data, f"models[{m}].featured")
            problems += [ManifestError(str(manifest.path), k, msg) for k, msg in found]
    return problems


def featured_ids(manifest: Manifest, spec: ModelSpec, captured: Sequence[int], seed: int) -> list[int]:
    """The model's featured input ids among the ``captured`` ones: the manifest's entries (each must name an input
    the capture kept, else a ManifestError naming the entry) or a seeded sample of DEFAULT_FEATURED."""
    kept = sorted({int(i) for i in captured})
    if spec.featured is None:
        return sorted(random.Random(seed).sample(kept, min(DEFAULT_FEATURED, len(kept))))
    if not spec.featured:
        return []
    data = manifest.dataset(spec.dataset)
    key = f"models[{[m.name for m in manifest.models].index(spec.name)}].featured"
    inputs = sample_inputs(data, manifest.base_dir)
    ids, problems = resolve(spec.featured, inputs, data, key)
    what = _what(data)
    for i, entry in enumerate(spec.featured):
        found = match(entry, inputs)
        if found is not None and found not in kept and not any(k == f"{key}[{i}]" for k, _ in problems):
            problems.append((f"{key}[{i}]", f"{_entry(entry)} names {what} {found}, which the capture left out (the "
                                            f"token budget, datasets[].max_tokens = {data.max_tokens}, kept "
                                            f"{len(kept)} {what}s); raise the budget or feature another {what}"))
    if problems:
        raise ManifestError.collect([ManifestError(str(manifest.path), k, msg) for k, msg in problems])
    return ids
