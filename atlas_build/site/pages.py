"""Markdown for the generated pages. Every manifest- or dataset-derived string goes through `markup`: `md_text` in
Markdown, `html.escape` in raw HTML blocks, `html_text` in front matter titles, `http_url` for URLs."""

from __future__ import annotations

import importlib.resources
import math
import re
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Mapping, Sequence

from ..export import head_path, layout_file
from ..export.thumbnails import preview_layout
from ..fsutil import dumps_json
from .markup import html_text, http_url, md_text

HEAD_URL = "L{layer}/H{head}/"
#: Head pages of a block whose scores add a position bias to q·k (T5's encoder and decoder self-attention).
BIAS_NOTE = ("This block adds a learned position bias to q·k before the softmax, so its attention is not a function "
             "of the query–key distance alone: every score here is computed from the model's own attention.\n")
#: Score tables stay on the page but out of the search index, which every page loads (label, layer, head and
#: model remain searchable).
SEARCH_EXCLUDE = "{ data-search-exclude }"
VIEWS_DIR = Path(str(importlib.resources.files("atlas_build.site_templates"))) / "assets" / "atlas"
STATIC_IMPORT = re.compile(r'^\s*(?:import|export)\s[^;]*?\sfrom\s+"\./([\w.-]+\.js)"', re.M)


@lru_cache(maxsize=None)
def module_graph(entry: str) -> tuple[str, ...]:
    """The view module `entry` and every module it imports statically (what the page can preload at once)."""
    seen: list[str] = []
    todo = [entry]
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        todo += STATIC_IMPORT.findall((VIEWS_DIR / name).read_text("utf-8"))
    return tuple(seen)


def _preload(root: str, view: str, data: list[str]) -> dict:
    """Front matter the theme turns into <link rel=modulepreload/preload>: the view's modules and the data files
    the page reads when it opens (a head page: also its default layout, unused only when the URL names another),
    fetched while the page is still parsing."""
    return {"modules": [f"{root}assets/atlas/{m}" for m in module_graph(view)], "fetch": [f"{root}{d}" for d in data]}


def _front_matter(meta: Mapping[str, object]) -> str:
    # JSON is valid YAML: quoting stays correct whatever the strings contain.
    return "---\n" + "\n".join(f"{k}: {dumps_json(v)}" for k, v in sorted(meta.items())) + "\n---\n\n"


def site_root(slug: str, below: int = 0) -> str:
    """From a unit's page under ``models/<slug>/`` (`below` folders deeper) back to the site root."""
    return "../" * (2 + slug.count("/") + below)


def dataset_links(datasets: Sequence[str], manifest: Mapping, target: str) -> tuple[str, str]:
    """(the view's ``data-datasets`` attribute, an HTML line) for a unit of a model on several datasets: every
    dataset with the relative URL of the same page in it (`target` after ``../<dataset>/``); ("", "") for one."""
    if not datasets:
        return "", ""
    current = manifest["dataset"]["name"]
    up = "../" * (target.count("/") + 1)
    links = [{"name": d, "href": f"{up}{d}/{target}"} for d in datasets]
    attr = f' data-dataset="{escape(current)}" data-datasets="{escape(dumps_json(links))}"'
    line = "dataset: " + " · ".join(f"<strong>{html_text(d)}</strong>" if d == current else
                                    f'<a class="atlas-dataset-link" href="{escape(x["href"])}">{html_text(d)}</a>'
                                    for d, x in zip(datasets, links))
    return attr, f'<p class="atlas-datasets">{line}</p>\n'


def block_links(blocks: Sequence[tuple[str, int, int]], current: str, layer: int | None = None,
                head: int | None = None) -> tuple[str, str]:
    """(the view's ``data-blocks`` attribute, an HTML line) of an encoder–decoder unit: every block with the
    relative URL of the same page in it (a head page: the same layer and head, the block's last when it has
    fewer); ("", "") for a single-stack unit."""
    if not blocks:
        return "", ""
    links = []
    for b, layers, heads in blocks:
        if layer is None or head is None:
            links.append({"name": b, "href": f"../{b}/"})
        else:
            links.append({"name": b, "href": f"../../../{b}/L{min(layer, layers - 1)}/H{min(head, heads - 1)}/"})
    attr = f' data-block="{escape(current)}" data-blocks="{escape(dumps_json(links))}"'
    line = "block: " + " · ".join(f"<strong>{html_text(b)}</strong>" if b == current else
                                  f'<a class="atlas-block-link" href="{escape(x["href"])}">{html_text(b)}</a>'
                                  for (b, _, _), x in zip(blocks, links))
    return attr, f'<p class="atlas-blocks">{line}</p>\n'


def default_2d(manifest: Mapping) -> str | None:
    """The 2D layout static pages show (the one whose thumbnails are files of their own, `preview_layout`)."""
    return preview_layout(manifest["layouts"], manifest.get("default_layout"))


def matrix_page(name: str, title: str, manifest: Mapping, datasets: Sequence[str] = (),
                blocks: Sequence[tuple[str, int, int]] = ()) -> str:
    """All heads of a model (`name`: its unit's slug): a static thumbnail grid (never blank) that the matrix view
    enhances; `datasets`: the model's datasets when it has several (a switcher); `blocks`: (block, layers, heads)
    of an encoder–decoder model's blocks (a switcher)."""
    model = manifest["model"]
    root = site_root(name)
    block = model.get("block", "")
    switch, switch_line = dataset_links(datasets, manifest, f"{block}/" if block else "")
    block_attr, block_line = block_links(blocks, block)
    switch, switch_line = switch + block_attr, switch_line + block_line
    layout = default_2d(manifest)
    strips, n_heads = (manifest.get("thumbnails") or {}).get("strips"), int(model["num_heads"])
    rows = []
    by_layer: dict[int, list[Mapping]] = {}
    for h in manifest["heads"]:
        by_layer.setdefault(h["layer"], []).append(h)
    for layer, heads in sorted(by_layer.items()):
        cells = []
        for h in heads:
            label = escape(h["label"])
            src, style = (h["thumbs"].get(layout) if layout else None), ""
            if src and strips:  # the head's part of its layer's strip: one file per layer
                src = strips.replace("{layer}", str(layer)).replace("{layout}", layout)
                style = f' style="object-fit:cover;object-position:{100 * h["head"] / max(1, n_heads - 1):g}% 0"'
            img = (f'<img src="{escape(root + "data/" + name + "/" + src)}" alt="layer {layer} head {h["head"]}" '
                   f'loading="lazy" width="96" height="96"{style}>' if src else "")
            cells.append(f'<a class="atlas-thumb" href="{HEAD_URL.format(**h)}" data-layer="{layer}" '
                         f'data-head="{h["head"]}" title="L{layer} H{h["head"]}: {label}">{img}'
                         f'<span class="atlas-thumb-label">H{h["head"]} · {label}</span></a>')
        rows.append(f'<div class="atlas-matrix-row" data-layer="{layer}"><span class="atlas-matrix-layer">'
                    f'L{layer}</span>{"".join(cells)}</div>')
    facts = (f"{model['num_layers']} layers × {model['num_heads']} heads"
             + (f" ({model['num_kv_heads']} key/value heads)" if model["num_kv_heads"] != model["num_heads"] else "")
             + f", head dimension {model['head_dim']}, {'causal' if model['causal'] else 'bidirectional'}"
             + f"; {manifest['dataset']['num_tokens']} tokens from {manifest['dataset']['num_sentences']} "
             + ("pairs." if block else "sentences."))
    body = (f"# {md_text(title)}\n\n{switch_line}<p class=\"atlas-facts\">{escape(facts)}</p>\n\n"
            f'<div class="atlas-view" data-view="matrix" data-data="{root}data/{name}/"{switch}>\n'
            f'<div class="atlas-matrix-static">\n{chr(10).join(rows)}\n</div>\n</div>\n')
    meta = {"title": html_text(title), "description": html_text(f"Every attention head of {title}"),
            "hide": ["navigation", "toc"],
            "atlas_preload": _preload(root, "matrix-view.js", [f"data/{name}/manifest.json"])}
    return _front_matter(meta) + body


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else md_text(v)


def _table(rows: Mapping[str, object]) -> str:
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {md_text(k.replace('_', ' '))} | {_fmt(v)} |" for k, v in sorted(rows.items())]
    return "\n".join(lines) + "\n"


#: The per-query faithfulness measures (metrics.faithfulness) in plain words, as the head pages label them.
FAITHFULNESS = {
    "query_rank_corr": "ranks each query's keys like attention (Spearman, 1 = exactly)",
    "nearest_key_share": "attention on the nearest key ÷ the row's top attention (1 = the nearest key is the top one)",
}
NOT_DEFINED = "not defined"
HIGHDIM_ROWS = {"normalised": "high-dimensional: the joint set PCA, t-SNE and UMAP are computed from",
                "padded": "high-dimensional: keys padded to one norm, queries normalised (exact ranking by q·k; "
                          "faithful-2d is computed from it)"}
def against_normalised(t: Mapping) -> dict:
    """A layout's trust record with ``trustworthiness_normalised`` set: a layout computed from the normalised joint
    set (no such key of its own) has its ``trustworthiness`` there."""
    if "trustworthiness_normalised" in t or "trustworthiness" not in t:
        return dict(t)
    return {**t, "trustworthiness_normalised": t["trustworthiness"]}


TRUST_NOTE = ("Trustworthiness is against the space each layout is computed from: the normalised joint set, or "
              "the padded space for faithful-2d, whose `trustworthiness_normalised` is against the normalised joint "
              "set like the others'.\n")


def measure_text(v: object) -> str:
    """A measure's value, or "not defined" when it is missing or not a finite number."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return _fmt(float(v)) if ok else NOT_DEFINED


def faithfulness_table(trust: Mapping[str, Mapping], highdim: Mapping[str, Mapping]) -> str:
    """One row per layout and per high-dimensional space; a missing measure reads "not defined"."""
    rows = [(f"layout {md_text(name)}", t) for name, t in sorted(trust.items())]
    rows += [(label, highdim[space]) for space, label in HIGHDIM_ROWS.items() if space in highdim]
    lines = ["| space | " + " | ".join(f"{text} (`{key}`)" for key, text in FAITHFULNESS.items()) + " |",
             "|---|" + "---|" * len(FAITHFULNESS)]
    lines += [f"| {label} | " + " | ".join(measure_text(vals.get(k)) for k in FAITHFULNESS) + " |"
              for label, vals in rows]
    return "\n".join(lines) + "\n"


def head_page(name: str, title: str, manifest: Mapping, h: Mapping, prev: Mapping | None, nxt: Mapping | None,
              base_url: str, datasets: Sequence[str] = (), blocks: Sequence[tuple[str, int, int]] = ()) -> str:
    """One head (`name`: its unit's slug; `datasets`: the model's datasets when it has several, a switcher;
    `blocks`: an encoder–decoder model's blocks, a switcher): the interactive view plus its numbers as text
    (searchable: label, layer, head)."""
    layer, head = h["layer"], h["head"]
    root = site_root(name, 2)
    block = manifest["model"].get("block", "")
    switch, switch_line = dataset_links(datasets, manifest, f"{block}/L{layer}/H{head}/" if block
                                        else f"L{layer}/H{head}/")
    block_attr, block_line = block_links(blocks, block, layer, head)
    switch, switch_line = switch + block_attr, switch_line + block_line
    layout = default_2d(manifest)
    thumb = f"{root}data/{name}/{h['thumbs'][layout]}" if layout and layout in h["thumbs"] else ""
    base_url = http_url(base_url)
    og = f"{base_url.rstrip('/')}/data/{name}/{h['thumbs'][layout]}" if base_url and thumb else thumb
    meta = {"title": html_text(f"{title} · layer {layer} · head {head}"),
            "description": html_text(f"{title} layer {layer} head {head}: {h['label']} head"),
            "og_image": og, "hide": ["toc"],
            "atlas_preload": _preload(root, "head-view.js", [
                f"data/{name}/manifest.json", f"data/{name}/{head_path('head', layer, head)}",
                f"data/{name}/{manifest['tokens']['file']}"]
                + ([f"data/{name}/{head_path('coords', layer, head, layout_file(manifest, layout)[0])}"]
                   if layout else []))}
    nav = []
    if prev:
        nav.append(f'<a class="atlas-prev" rel="prev" href="../../L{prev["layer"]}/H{prev["head"]}/">'
                   f'← L{prev["layer"]} H{prev["head"]}</a>')
    nav.append('<a class="atlas-up" href="../../">all heads</a>')
    if nxt:
        nav.append(f'<a class="atlas-next" rel="next" href="../../L{nxt["layer"]}/H{nxt["head"]}/">'
                   f'L{nxt["layer"]} H{nxt["head"]} →</a>')
    trust = {f"{layout_name} {k}": v for layout_name, t in h.get("trust", {}).items() for k, v in t.items()
             if k not in FAITHFULNESS}
    body = [
        f"# Layer {layer} · Head {head} <small class=\"atlas-label\">{md_text(h['label'])}</small>\n",
        f'<nav class="atlas-headnav">{" ".join(nav)}</nav>\n',
        *([switch_line] if switch_line else []),
        f'<div class="atlas-view" data-view="head" data-data="{root}data/{name}/" '
        f'data-layer="{layer}" data-head="{head}"{switch}>'
        + (f'<img class="atlas-fallback" src="{thumb}" alt="layer {layer} head {head}" width="320">' if thumb else "")
        + "</div>\n",
        f"Model: [{md_text(title)}](../index.md) · key/value head {h['kv_head']} · label **{md_text(h['label'])}**\n",
        *([BIAS_NOTE] if block and manifest["model"].get("has_position_bias") else []),
        f"## Behaviour scores {SEARCH_EXCLUDE}\n", _table(h["metrics"]),
        f"## Normalization {SEARCH_EXCLUDE}\n", _table(h["norm"]),
    ]
    if trust:
        note = [TRUST_NOTE] if any(k.endswith("trustworthiness_normalised") for k in trust) else []
        body += [f"## Trust {SEARCH_EXCLUDE}\n", *note, _table(trust)]
    if h.get("trust") or h.get("highdim"):
        body += [f"## Faithfulness per query {SEARCH_EXCLUDE}\n",
                 "For each query, over the keys its attention row covers: does distance from the query rank the keys "
                 "as the model's attention does, and does the nearest key get the most attention?\n",
                 faithfulness_table(h.get("trust", {}), h.get("highdim", {}))]
    return _front_matter(meta) + "\n".join(body)
