"""The findings page's section for image models: which heads sort probe patches by hue, brightness, grating
frequency and grating angle, mean 2D attention distance by layer, and the head whose W_Q and W_K correlate most.
Every number comes from the heads' ``vision`` and ``metrics`` entries of an exported manifest.json."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from statistics import fmean

from ..metrics.vision import NEIGHBOURS, VISION_ATTRIBUTES, sorting_metric
from .markup import md_text

LABELS = {"hue": "mean hue (hue gradients)", "brightness": "mean brightness (brightness gradients)",
          "grating_frequency": "spatial frequency (gratings)", "grating_angle": "angle (gratings)"}
TOP = 3
PAPER_WQ_WK = 0.94  # AttentionViz: a ViT head whose W_Q and W_K correlate at 0.94


def _layouts(manifest: Mapping) -> list[str]:
    """The 2D layouts the heads were scored on, in the manifest's layout order."""
    scored = {name for h in manifest["heads"] for name in h.get("vision", {}).get("sorting", {})}
    return [name for name in manifest["layouts"] if name in scored]


def top_heads(manifest: Mapping, attribute: str,
              top: int = TOP) -> list[tuple[int, int, list[float | None], float]]:
    """(layer, head, score per layout, mean) of the ``top`` heads by mean sorting score, best first."""
    layouts, key = _layouts(manifest), sorting_metric(attribute)
    rows = []
    for h in manifest["heads"]:
        if key in h.get("metrics", {}):
            sorting = h.get("vision", {}).get("sorting", {})
            scores = [sorting.get(name, {}).get(attribute) for name in layouts]
            rows.append((h["layer"], h["head"], scores, h["metrics"][key]))
    return sorted(rows, key=lambda r: (-r[3], r[0], r[1]))[:top]


def distance_by_layer(manifest: Mapping) -> dict[int, tuple[float, float, float]]:
    """layer → (mean, min, max) attention distance over its heads, in patch-grid units."""
    by_layer: dict[int, list[float]] = defaultdict(list)
    for h in manifest["heads"]:
        if "mean_distance" in h.get("metrics", {}):
            by_layer[h["layer"]].append(h["metrics"]["mean_distance"])
    return {layer: (fmean(v), min(v), max(v)) for layer, v in sorted(by_layer.items())}


def best_wq_wk(manifest: Mapping) -> tuple[int, int, float] | None:
    """(layer, head, correlation) of the head with the highest W_Q–W_K correlation."""
    rows = [(h["layer"], h["head"], h["metrics"]["wq_wk_correlation"]) for h in manifest["heads"]
            if "wq_wk_correlation" in h.get("metrics", {})]
    return max(rows, key=lambda r: (r[2], -r[0], -r[1])) if rows else None


def _f(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _link(name: str, layer: int, head: int) -> str:
    return f"[L{layer} H{head}](models/{name}/L{layer}/H{head}.md)"


def vision_section(model: Mapping, slug: str | None = None) -> list[str]:
    """Markdown lines for one image model (nothing for a model without ``vision`` entries); `slug`: its path under
    models/ (default its name)."""
    if not any("vision" in h for h in model["heads"]):
        return []
    name, layouts = slug or model["model"]["name"], _layouts(model)
    out = ["### Heads that sort probe patches", "",
           "Sorting score per 2D layout: 1 − mean |Δattribute| between each query (key) patch point and its "
           f"{NEIGHBOURS} nearest layout neighbours from *other* probe images ÷ the same over random pairs "
           "(1: sorted, 0: chance; queries and keys scored apart, then averaged). Heads ranked by the mean over the "
           "layouts (the `<attribute>_sorting` metrics the matrix view sorts by).", "",
           "| attribute | head | " + " | ".join(md_text(x) for x in layouts) + " | mean |",
           "|---|---|" + "---|" * (len(layouts) + 1)]
    for attribute in VISION_ATTRIBUTES:
        label = LABELS.get(attribute, attribute)
        for layer, head, scores, mean in top_heads(model, attribute):
            out.append(f"| {label} | {_link(name, layer, head)} | " + " | ".join(_f(s) for s in scores)
                       + f" | {_f(mean)} |")
    distance = distance_by_layer(model)
    if distance:
        out += ["", "### Attention distance by layer", "",
                "Attention-weighted mean distance from each query patch to the key patches, in patch-grid units "
                "([CLS]/register tokens dropped, rows re-normalised), over the heads of each layer "
                "(the `mean_distance` score).", "",
                "| layer | mean distance | min over heads | max over heads |", "|---|---|---|---|"]
        out += [f"| {layer} | {_f(m, 2)} | {_f(lo, 2)} | {_f(hi, 2)} |" for layer, (m, lo, hi) in distance.items()]
    best = best_wq_wk(model)
    if best:
        layer, head, corr = best
        out += ["", f"**Highest W_Q–W_K correlation:** {_link(name, layer, head)} at {_f(corr)} "
                f"(paper: a ViT head at {PAPER_WQ_WK:.2f})."]
    return out + [""]
