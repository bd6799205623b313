"""Model-view pages: one page per input (sentence or image) with every head's attention on it, and the model
page's lists of featured and all inputs. Dataset text goes in through `markup` (`html_text` in HTML blocks,
`md_text` in Markdown)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from ..export.inputs import input_path
from .markup import html_text, md_text
from .pages import SEARCH_EXCLUDE, _front_matter, _preload, site_root

if TYPE_CHECKING:
    from ..pipeline.export_inputs import InputRecord

INPUT_DIR = "inputs"
SHORT = 140


def _kind(manifest: Mapping) -> str:
    return "image" if manifest["model"].get("input_kind") == "image" else "sentence"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHORT else text[:SHORT - 1].rstrip() + "…"


def input_page(name: str, title: str, manifest: Mapping, rec: "InputRecord", prev: "InputRecord | None",
               nxt: "InputRecord | None") -> str:
    """One input: the model view (every layer × head on it) and the input's text, which search finds."""
    kind = _kind(manifest)
    root = site_root(name, 2)  # from models/<name>/inputs/<id>/
    data = [f"data/{name}/manifest.json", f"data/{name}/{manifest['tokens']['file']}"]
    data += [f"data/{name}/{input_path('attention', input=rec.input_id, layer=layer)}"
             for layer in range(int(manifest["model"]["num_layers"]))]
    data += [f"data/{name}/{im['file']}" for im in manifest.get("images", []) if im["image_id"] == rec.input_id]
    meta = {"title": html_text(f"{title} · {kind} {rec.input_id}"),
            "description": html_text(f"Every attention head of {title} on {kind} {rec.input_id}: {_short(rec.text)}"),
            "hide": ["toc"], "atlas_preload": _preload(root, "model-view.js", data)}
    nav = []
    if prev:
        nav.append(f'<a class="atlas-prev" rel="prev" href="../{prev.input_id}/">← {kind} {prev.input_id}</a>')
    nav.append('<a class="atlas-up" href="../../">all heads</a>')
    if nxt:
        nav.append(f'<a class="atlas-next" rel="next" href="../{nxt.input_id}/">{kind} {nxt.input_id} →</a>')
    facts = [f"{rec.length} tokens" if kind == "sentence" else f"{rec.length} tokens (patches and prefix tokens)"]
    if rec.featured:
        facts.append("featured" + (": its query and key vectors are in the neuron view of every head page"
                                   if rec.input_id in manifest.get("inputs", {}).get("vectors", []) else ""))
    body = [
        f"# {kind.capitalize()} {rec.input_id} <small class=\"atlas-label\">{md_text(title)}: every head</small>\n",
        f'<nav class="atlas-headnav">{" · ".join(nav)}</nav>\n',
        f'<p class="atlas-input-text">{html_text(rec.text)}</p>\n',
        f'<div class="atlas-view" data-view="model" data-data="{root}data/{name}/" data-input="{rec.input_id}">'
        "</div>\n",
        f"Model: [{md_text(title)}](../index.md) · {md_text('; '.join(facts))}\n",
    ]
    return _front_matter(meta) + "\n".join(body)


def inputs_section(manifest: Mapping, records: Sequence["InputRecord"]) -> str:
    """The model page's featured inputs (Markdown links, searchable) and every input (a collapsed list kept out of
    the search index, which every page loads)."""
    if not records:
        return ""
    kind = _kind(manifest)
    featured = [r for r in records if r.featured]
    out = []
    if featured:
        vectors = bool(manifest.get("inputs", {}).get("vectors"))
        out += ["## Featured inputs\n",
                f"Each opens the model view: every head's attention on that {kind} at once."
                + (" Their query and key vectors are also in the neuron view of the head pages (select one of "
                   "these sentences in a head's embedding)." if vectors else "") + "\n"]
        out += [f"- [{kind.capitalize()} {r.input_id}]({INPUT_DIR}/{r.input_id}.md): {md_text(_short(r.text))}"
                for r in featured]
        out.append("")
    items = "\n".join(f'<li value="{r.input_id}"><a href="{INPUT_DIR}/{r.input_id}/">{html_text(_short(r.text))}</a>'
                      "</li>" for r in records)
    out += [f"## Every {kind} {SEARCH_EXCLUDE}\n",
            f'<details class="atlas-inputs"><summary>{len(records)} {kind}s, each with its model view</summary>\n'
            f'<ol class="atlas-input-list" start="0">\n{items}\n</ol>\n</details>\n']
    return "\n" + "\n".join(out)


def input_pages(name: str, title: str, manifest: Mapping, records: Sequence["InputRecord"]) -> dict[str, str]:
    """Relative path under models/<name>/ → page text, for every input."""
    out = {}
    for i, rec in enumerate(records):
        prev = records[i - 1] if i > 0 else None
        nxt = records[i + 1] if i + 1 < len(records) else None
        out[f"{INPUT_DIR}/{rec.input_id}.md"] = input_page(name, title, manifest, rec, prev, nxt)
    return out
