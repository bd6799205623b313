"""Atlas units: one per (model, dataset). A model on one dataset keeps its plain name (`models/<model>/`,
`data/<model>/`, cache `<model>/`); a model on several datasets has one unit per dataset under `<model>/<dataset>/`
in each of them. The model's weights are loaded once for all its datasets (see `pipeline._capture_model`).

An encoder–decoder model (a dataset of kind ``pairs`` or ``audio``) has one unit per attention block on each
dataset (`BlockSpec`): ``<model>/<block>/`` or ``<model>/<dataset>/<block>/``, each its own matrix of heads; the
capture is the (model, dataset)'s, shared by its blocks (`capture_spec`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from ..capture.encdec import BLOCKS
from ..cache import INPUTS_FILE, UNIT_RE
from ..datasets import ENCDEC_KINDS
from ..manifest import Manifest, ModelSpec


@dataclass(frozen=True)
class BlockSpec(ModelSpec):
    """An encoder–decoder model on one dataset and one attention block (`capture.encdec.BLOCKS`)."""

    block: str = ""


def with_block(spec: ModelSpec, block: str) -> BlockSpec:
    return BlockSpec(**{f.name: getattr(spec, f.name) for f in fields(ModelSpec)}, block=block)


def block_of(spec: ModelSpec) -> str:
    """The unit's attention block ("" for a single-stack model)."""
    return getattr(spec, "block", "")


def capture_spec(spec: ModelSpec) -> ModelSpec:
    """The (model, dataset) whose capture the unit reads: the unit itself, or its block's model."""
    return ModelSpec(**{f.name: getattr(spec, f.name) for f in fields(ModelSpec)}) if block_of(spec) else spec


def units(manifest: Manifest) -> list[ModelSpec]:
    """Every (model, dataset[, block]) unit of the manifest in build order: the models in order, each on its
    datasets, an encoder–decoder model's dataset once per block."""
    return [with_block(model.on(d), b) if manifest.dataset(d).kind in ENCDEC_KINDS else model.on(d)
            for model in manifest.models for d in model.all_datasets
            for b in (BLOCKS if manifest.dataset(d).kind in ENCDEC_KINDS else ("",))]


def is_first_unit(spec: ModelSpec) -> bool:
    """Whether the unit is its model's first (the one that captures the model on all its datasets)."""
    return spec.dataset == spec.all_datasets[0] and block_of(spec) in ("", BLOCKS[0])


def slug_of(name: str, dataset: str, several_datasets: bool, block: str = "") -> str:
    """A unit's path: ``model``, ``model/dataset`` when the model has several datasets, plus ``/block`` for an
    encoder–decoder block."""
    base = f"{name}/{dataset}" if several_datasets else name
    return f"{base}/{block}" if block else base


def unit_slug(spec: ModelSpec) -> str:
    """The unit's path in the site, the data folder and the stage cache (`slug_of`)."""
    return slug_of(spec.name, spec.dataset, bool(spec.datasets), block_of(spec))


def unit_title(spec: ModelSpec) -> str:
    """How pages and logs name the unit: the model's title, the dataset when the model has several, the block."""
    title = spec.title or spec.name
    title = f"{title} ({spec.dataset})" if spec.datasets else title
    return f"{title} · {block_of(spec)}" if block_of(spec) else title


def _inputs(unit: Path) -> dict:
    try:
        found = json.loads((unit / INPUTS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def adopt_units(cache_root: Path, spec: ModelSpec) -> list[str]:
    """Move a dataset's cached units to where this manifest keeps them when the model gained or lost datasets
    (``<model>/`` ↔ ``<model>/<dataset>/``), so that neither recomputes anything; returns the moved unit names.

    A capture unit is the dataset's when its recorded dataset entry names it; a heads unit when its recorded capture
    key is one of those captures'. A unit already present at the destination is left where it is."""
    top = cache_root / spec.name
    src, dst = (top, top / spec.dataset) if spec.datasets else (top / spec.dataset, top)
    if not src.is_dir() or src.is_symlink():
        return []
    found = {d: _inputs(d) for d in sorted(src.iterdir())
             if UNIT_RE.match(d.name) and d.is_dir() and not d.is_symlink()}
    entry = lambda inputs: inputs.get("dataset entry")  # noqa: E731
    captures = {UNIT_RE.match(d.name)["key"] for d, inputs in found.items()
                if d.name.startswith("capture-") and isinstance(entry(inputs), dict)
                and entry(inputs).get("name") == spec.dataset}
    moved = []
    for d, inputs in found.items():
        if (UNIT_RE.match(d.name)["key"] in captures or inputs.get("capture") in captures) \
                and not (dst / d.name).exists():
            dst.mkdir(parents=True, exist_ok=True)
            d.rename(dst / d.name)
            moved.append(d.name)
    return moved
