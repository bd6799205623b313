"""A first look: before a fresh build spends minutes per head on its graph layouts (t-SNE, UMAP, faithful), the
first model is laid out with its linear layouts only (PCA: a few milliseconds per head, with every score) and
published, so a newcomer reads an atlas within minutes. Nothing of it is cached; the full build replaces it."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

from ..capture import CaptureResult
from ..executor import ItemFailed
from ..manifest import Manifest, ModelSpec
from ..metrics.vision import capture_patch_attributes
from ..outdir import NEW_SITE, publish
from ..project import LAYOUTS, ProjectionParams
from ..site import build_site
from .export_model import ExportedModel, export_model
from .heads import add_related, run_head
from .tasks import align_results, model_tasks

FALLBACK = ("pca-2d",)  #: the first look's layout when a manifest lists no linear one


def preview_layouts(layouts: Sequence[str]) -> tuple[str, ...]:
    """The manifest's layouts that need no kNN graph, in its order (PCA 2D when it lists none)."""
    return tuple(name for name in layouts if not LAYOUTS[name].needs_graph) or FALLBACK


def worthwhile(layouts: Sequence[str]) -> bool:
    """A first look only pays when some layout needs the graph (those are the minutes per head)."""
    return any(LAYOUTS[name].needs_graph for name in layouts)


def publish_first_look(manifest: Manifest, spec: ModelSpec, title: str, cap: CaptureResult, has_point,
                       exported: list[ExportedModel], later: list[str], data_dir: Path, staging: Path, out: Path,
                       executor, progress: bool, log: Callable[[str], None]) -> bool:
    """Lay out every head of `spec` (named `title`) with the linear layouts, export it into `data_dir`, publish the
    site with it beside the finished atlases `exported` and a note of what is to come (its other layouts, then
    `later`), and clear `data_dir` for the full export. False (nothing published) when a head fails."""
    layouts = preview_layouts(manifest.projections.layouts)
    params = ProjectionParams.from_spec(manifest.projections, seed=manifest.build.seed)
    patches = capture_patch_attributes(cap)
    log(f"[{title}] first look: {', '.join(layouts)} for every head before the other layouts")
    facts = cap.facts
    tasks = model_tasks(cap, range(facts.num_layers), has_point, layouts, params, patches)
    results = []
    with closing(executor.map(run_head, tasks, desc=f"{title} first look", progress=progress,
                              contain=(MemoryError,), total=facts.num_layers * facts.num_heads)) as runs:
        for res in runs:
            if isinstance(res, ItemFailed):
                log(f"[{title}] first look skipped: a head failed")
                return False
            results.append(res)
    first = export_model(manifest, spec, cap, add_related(align_results(results)), data_dir, has_point=has_point)
    coming = [name for name in manifest.projections.layouts if name not in layouts]
    pending = [f"the {', '.join(coming)} layouts of {title}", *later]
    build_site(manifest, [*exported, first], staging, out / NEW_SITE, pending)
    publish(out)
    shutil.rmtree(data_dir)
    log(f"[site] published a first look at {title} ({', '.join(layouts)}); still coming: {'; '.join(pending)}")
    return True
