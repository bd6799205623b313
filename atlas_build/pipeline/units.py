"""Atlas units: one per (model, dataset). A model on one dataset keeps its plain name (`models/<model>/`,
`data/<model>/`, cache `<model>/`); a model on several datasets has one unit per dataset under `<model>/<dataset>/`
in each of them. The model's weights are loaded once for all its datasets (see `pipeline._capture_model`)."""

from __future__ import annotations

import json
from pathlib import Path

from ..cache import INPUTS_FILE, UNIT_RE
from ..manifest import Manifest, ModelSpec


def units(manifest: Manifest) -> list[ModelSpec]:
    """Every (model, dataset) unit of the manifest in build order: the models in order, each on its datasets."""
    return [model.on(d) for model in manifest.models for d in model.all_datasets]


def unit_slug(spec: ModelSpec) -> str:
    """The unit's path in the site, the data folder and the stage cache (``model`` or ``model/dataset``)."""
    return f"{spec.name}/{spec.dataset}" if spec.datasets else spec.name


def unit_title(spec: ModelSpec) -> str:
    """How pages and logs name the unit: the model's title, and the dataset when the model has several."""
    title = spec.title or spec.name
    return f"{title} ({spec.dataset})" if spec.datasets else title


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
