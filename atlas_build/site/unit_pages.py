"""Pages of a model on several datasets (one atlas unit per dataset under ``models/<model>/<dataset>/``): the
model's page listing its datasets, and redirects from the URLs its heads had while it had one dataset."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from ..fsutil import write_bytes
from .markup import html_text, md_text
from .pages import _front_matter

if TYPE_CHECKING:
    from ..pipeline.export_model import ExportedModel


def model_datasets_page(m: "ExportedModel", units: Sequence["ExportedModel"]) -> str:
    """``models/<model>/``: the model's facts and one row per dataset built, each linking to its matrix."""
    model = m.manifest["model"]
    mine = [u for u in units if u.name == m.name]
    rows = [f"| [{md_text(u.dataset)}]({u.dataset}/index.md) | {u.manifest['dataset']['num_sentences']} | "
            f"{u.manifest['dataset']['num_tokens']} | {md_text(u.manifest['dataset']['source'])} |" for u in mine]
    body = [f"# {md_text(m.title)}\n",
            f"{model['num_layers']} layers × {model['num_heads']} heads, captured on {len(mine)} datasets: each has "
            "its own matrix of heads, and every matrix and head page switches to the same view of another dataset. "
            "The [findings](../../findings.md) compare each head's label across the datasets.\n",
            "| dataset | sentences | tokens | source |", "|---|---|---|---|", *rows, ""]
    meta = {"title": html_text(m.title), "description": html_text(f"{m.title} on {len(mine)} datasets"),
            "hide": ["toc"]}
    return _front_matter(meta) + "\n".join(body)


def write_redirects(model_dir: Path, dataset: str, heads: Sequence[Mapping]) -> None:
    """``L<layer>/H<head>/index.html`` under `model_dir`: the head's URL while the model had one dataset, sending
    the reader (view state in the hash included) to the same head on `dataset`."""
    for h in heads:
        target = f"../../{dataset}/L{h['layer']}/H{h['head']}/"
        page = ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Moved</title>\n'
                f'<meta http-equiv="refresh" content="0; url={escape(target)}">\n'
                f"<script>location.replace({json.dumps(target)} + location.hash)</script></head>\n"
                f'<body><a href="{escape(target)}">layer {h["layer"]} head {h["head"]} on {escape(dataset)}</a>'
                "</body></html>\n")
        write_bytes(model_dir / f"L{h['layer']}" / f"H{h['head']}" / "index.html", page.encode("utf-8"))
