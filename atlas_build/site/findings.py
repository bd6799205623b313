"""The findings page: numbers measured by this build, set beside the AttentionViz paper's."""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean
from typing import Mapping, Sequence

from .findings_vision import vision_section
from .markup import md_text
from .pages import HIGHDIM_ROWS, NOT_DEFINED, against_normalised, default_2d

# Paper values (Yeh et al. 2023): Spearman(distance, dot) and mean ‖q‖ − ‖k‖, per model family.
PAPER = {
    "encoder": {"name": "BERT", "spearman": -0.938, "norm_gap": 0.41},
    "decoder": {"name": "GPT-2", "spearman": -0.792, "norm_gap": -4.59},
}
TRUST = ("spearman_layout_dot", "trustworthiness", "trustworthiness_normalised", "query_rank_corr",
         "nearest_key_share")
FAITHFUL_MEASURES = TRUST[3:]  # the per-query measures, defined for the high-dimensional spaces too
LABEL_ORDER = ("previous-token", "first-token sink", "self", "same-token", "positional", "semantic", "broad",
               "mixed")


def _mean(values: Sequence[float]) -> float:
    return fmean(values) if values else float("nan")


def model_summary(manifest: Mapping) -> dict:
    """The per-model numbers the findings page shows, computed from an exported manifest.json."""
    heads = manifest["heads"]
    by_layer: dict[int, list[Mapping]] = defaultdict(list)
    for h in heads:
        by_layer[h["layer"]].append(h)
    layouts = manifest["layouts"]
    return {
        "spearman": _mean([h["norm"]["spearman_cosine_dot"] for h in heads]),
        "norm_gap": _mean([h["norm"]["mean_q_norm"] - h["norm"]["mean_k_norm"] for h in heads]),
        "norm_gap_by_layer": {l: _mean([h["norm"]["mean_q_norm"] - h["norm"]["mean_k_norm"] for h in hs])
                              for l, hs in sorted(by_layer.items())},
        "first_token_by_layer": {l: _mean([h["metrics"].get("first_token", 0.0) for h in hs])
                                 for l, hs in sorted(by_layer.items())},
        "labels": {label: [(h["layer"], h["head"]) for h in heads if h["label"] == label]
                   for label in sorted({h["label"] for h in heads})},
        "trust": {name: _means([against_normalised(h.get("trust", {}).get(name, {})) for h in heads], TRUST)
                  for name in layouts},
        "highdim": {space: _means([h.get("highdim", {}).get(space, {}) for h in heads], FAITHFUL_MEASURES)
                    for space in HIGHDIM_ROWS},
    }


def _means(records: Sequence[Mapping], names: Sequence[str]) -> dict[str, float]:
    """Mean of each measure over the records that define it (NaN when none does)."""
    return {m: _mean([r[m] for r in records if m in r]) for m in names}


def _f(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if v == v else NOT_DEFINED


def label_changes(units: Sequence[tuple[str, Mapping]]) -> tuple[list[str], list[tuple[int, int, list[str]]]]:
    """(datasets, rows) for one model's units ``(slug, manifest)``: (layer, head, label per dataset) of every head
    whose label is not the same on all the datasets, in layer/head order ("–" where a dataset lacks the head)."""
    datasets = [m["dataset"]["name"] for _, m in units]
    labels = [{(h["layer"], h["head"]): h["label"] for h in m["heads"]} for _, m in units]
    heads = sorted(set().union(*labels))
    rows = [(layer, head, [lab.get((layer, head), "–") for lab in labels]) for layer, head in heads]
    return datasets, [r for r in rows if len(set(r[2])) > 1]


def _compare_section(units: Sequence[tuple[str, Mapping]]) -> list[str]:
    """The label comparison of a model on several datasets."""
    datasets, rows = label_changes(units)
    total = len({(h["layer"], h["head"]) for _, m in units for h in m["heads"]})
    model = units[0][1]["model"]
    title = md_text(model["title"]) + (f" · {md_text(model['block'])}" if model.get("block") else "")
    out = [f"## {title}: labels across datasets", "",
           f"{total - len(rows)} of {total} heads keep their label on all {len(datasets)} datasets "
           f"({', '.join(md_text(d) for d in datasets)}); the label of each head that changes, per dataset:", ""]
    if rows:
        out += ["| head | " + " | ".join(md_text(d) for d in datasets) + " |", "|---|" + "---|" * len(datasets)]
        out += [f"| L{layer} H{head} | " + " | ".join(
            f"[{md_text(lab)}](models/{slug}/L{layer}/H{head}.md)" if lab != "–" else lab
            for (slug, _), lab in zip(units, labels)) + " |" for layer, head, labels in rows]
    return out + [""]


def findings_page(models: Sequence[Mapping], slugs: Sequence[str] | None = None) -> str:
    """Markdown for every model, from the models' exported manifest.json documents; `slugs`: each one's path under
    models/ and data/ (default its model name); a model on several datasets has a section per dataset and a
    comparison of its heads' labels across them (per attention block of an encoder–decoder model)."""
    slugs = [m["model"]["name"] for m in models] if slugs is None else list(slugs)
    out = ["# Findings", "",
           "Every number on this page is measured by the build from the exported `manifest.json` files and set "
           "beside the value the AttentionViz paper reports for the closest model family.", ""]
    by_model: dict[tuple[str, str], list[tuple[str, Mapping]]] = defaultdict(list)  # (model, block) → its datasets
    for name, m in zip(slugs, models):
        by_model[(m["model"]["name"], m["model"].get("block", ""))].append((name, m))
    for name, m in zip(slugs, models):
        s = model_summary(m)
        block = m["model"].get("block", "")
        # the paper measured self-attention only: a cross-attention block has no reference
        ref = None if block == "cross" else PAPER["decoder" if m["model"]["causal"] else "encoder"]
        title = md_text(m["model"]["title"]) + (f" · {md_text(block)}" if block else "")
        group = by_model[(m["model"]["name"], block)]
        if len(group) > 1 and group[0][0] == name:  # before the first dataset of a model on several
            out += _compare_section(group)
        if len(group) > 1:  # one dataset of a model on several (models/<model>/<dataset>/)
            title += f" on {md_text(m['dataset']['name'])}"
        paper = (lambda key, digits=3: f"{_f(ref[key], digits)} ({ref['name']})") if ref else (lambda *_: "–")
        out += [f"## {title}", "",
                "| measure | this atlas | paper |", "|---|---|---|",
                f"| mean Spearman(distance, dot product) over heads | {_f(s['spearman'])} | {paper('spearman')} |",
                f"| mean ‖q‖ − ‖k‖ over heads | {_f(s['norm_gap'], 2)} | {paper('norm_gap', 2)} |",
                ""]
        out += ["### Query/key norm gap and attention to the first token by layer", "",
                "| layer | mean ‖q‖ − ‖k‖ | share of attention to the first token"
                + (" (of the encoder)" if block == "cross" else "") + " |", "|---|---|---|"]
        out += [f"| {l} | {_f(g, 2)} | {_f(s['first_token_by_layer'][l])} |" for l, g in s["norm_gap_by_layer"].items()]
        out += ["", "### Trust of the layouts", "", "| layout | mean Spearman(layout distance, dot) | "
                "mean trustworthiness@10 (its own space) | mean trustworthiness@10 (normalised joint set) | "
                "mean query_rank_corr | mean nearest_key_share |", "|---|---|---|---|---|---|"]
        out += [f"| {lay} | " + " | ".join(_f(t[k]) for k in TRUST) + " |" for lay, t in s["trust"].items()]
        out += [f"| {HIGHDIM_ROWS[space]} | – | – | – | " + " | ".join(_f(t[k]) for k in FAITHFUL_MEASURES) + " |"
                for space, t in s["highdim"].items()]
        out += ["", "Trustworthiness is measured against the space a layout is computed from: the normalised joint "
                "set for PCA, t-SNE and UMAP, the padded space for faithful-2d; the next column measures every "
                "layout against the normalised joint set. "
                "`query_rank_corr`: how well distance from a query ranks the keys its attention row covers, as the "
                "model's attention does (mean Spearman over queries, 1 = exactly); `nearest_key_share`: attention on "
                "the key nearest to the query ÷ the row's top attention. The high-dimensional rows measure the "
                "spaces the pictures stand for: what a perfect picture of each would score (see How to read)."]
        out += ["", "### Heads by behaviour", ""]
        thumbs = {(h["layer"], h["head"]): h["thumbs"] for h in m["heads"]}
        layout = default_2d(m)
        for label in sorted(s["labels"], key=lambda x: (LABEL_ORDER.index(x) if x in LABEL_ORDER else 99, x)):
            heads = s["labels"][label]
            links = ", ".join(f"[L{l} H{h}](models/{name}/L{l}/H{h}.md)" for l, h in heads)
            out.append(f"**{md_text(label)}** ({len(heads)} heads): {links}")
            l0, h0 = heads[0]
            if layout and layout in thumbs[(l0, h0)]:
                out.append(f"\n![{md_text(label)} example: layer {l0} head {h0}](data/{name}/"
                           f"{thumbs[(l0, h0)][layout]}){{ width=\"160\" }}")
            out.append("")
        out += vision_section(m, name)
    return "\n".join(out) + "\n"
