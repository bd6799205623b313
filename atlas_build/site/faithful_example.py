"""The How-to-read page's worked example: one head of this build in a classic layout and in the faithful layout, side
by side, with both layouts' faithfulness numbers (the head where the faithful layout gains most)."""

from __future__ import annotations

from typing import Mapping, Sequence

from .markup import md_text
from .pages import NOT_DEFINED, against_normalised

FAITHFUL = "faithful-2d"
CLASSIC = ("tsne-2d", "umap-2d", "pca-2d")  # the picture compared with, in this order of preference
_ROWS = (("query_rank_corr", "ranking (query_rank_corr)"), ("nearest_key_share", "nearest key (nearest_key_share)"),
         ("trustworthiness", "trustworthiness@10 (against the space the layout is computed from)"),
         ("trustworthiness_normalised", "trustworthiness@10 against the normalised joint set"))


def _pick(models: Sequence[Mapping]) -> tuple[Mapping, Mapping, str] | None:
    """(model, head, classic layout) with the largest gain in query_rank_corr; None when no head has both."""
    best, best_gain = None, None
    for m in models:
        classic = next((name for name in CLASSIC if name in m["layouts"]), None)
        if FAITHFUL not in m["layouts"] or classic is None:
            continue
        for h in m["heads"]:
            t = h.get("trust", {})
            a, b = t.get(FAITHFUL, {}).get("query_rank_corr"), t.get(classic, {}).get("query_rank_corr")
            if a is None or b is None or not {FAITHFUL, classic} <= set((m.get("thumbnails") or {}).get("layouts", [])):
                continue
            if best_gain is None or a - b > best_gain:
                best, best_gain = (m, h, classic), a - b
    return best


def _picture(m: Mapping, h: Mapping, layout: str) -> str:
    """The head's thumbnail of `layout`: its part of its layer's strip (one picture per head, side by side)."""
    strip = m["thumbnails"]["strips"].replace("{layer}", str(h["layer"])).replace("{layout}", layout)
    x = 100 * h["head"] / max(1, int(m["model"]["num_heads"]) - 1)
    return (f"![{layout}](data/{m['name']}/{strip}){{ width=\"240\" height=\"240\" "
            f"style=\"object-fit:cover;object-position:{x:g}% 0\" }}")


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else NOT_DEFINED


def faithful_example(models: Sequence[Mapping]) -> str:
    """Markdown for the worked example, or "" when this build has no faithful layout beside a classic one."""
    picked = _pick(models)
    if picked is None:
        return ""
    m, h, classic = picked
    layer, head, name = h["layer"], h["head"], m["name"]
    title = md_text(m.get("title") or name)
    trust = h["trust"]
    out = ["", "## One head, two pictures", "",
           f"[{title}, layer {layer} head {head}](models/{name}/L{layer}/H{head}.md) in this atlas, drawn by {classic} "
           f"(left) and by the faithful layout (right): the same points, queries and keys. {classic} is computed "
           f"from the normalised vectors; the faithful layout from the same vectors with every key padded to one "
           f"length (the padded space, where a key is nearer a query exactly when it gets more attention), by "
           f"t-SNE with more terms: each query's attention pulls its keys in, and the distances from a query to "
           f"the keys of its sentence are fitted to the ranks of its attention. It is the head of this atlas where "
           f"the ranking gains most.", "",
           f"{_picture(m, h, classic)} {_picture(m, h, FAITHFUL)}", "",
           f"| | {classic} | {FAITHFUL} |", "|---|---|---|"]
    classic_t, faithful_t = against_normalised(trust[classic]), against_normalised(trust[FAITHFUL])
    out += [f"| {label} | {_fmt(classic_t.get(key))} | {_fmt(faithful_t.get(key))} |" for key, label in _ROWS]
    out += ["", "The faithful layout keeps the neighbourhoods of the padded space it is computed from, less of the "
            "normalised set's (the last row), for a picture in which a query's nearby keys are the ones it attends "
            "to; the classic layouts are kept for the paper's pictures. The findings page has these numbers for "
            "every layout, averaged over each model's heads.", ""]
    return "\n".join(out)
