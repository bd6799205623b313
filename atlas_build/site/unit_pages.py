"""Pages of a model on several datasets (one atlas unit per dataset under ``models/<model>/<dataset>/``): the
model's page listing its datasets, and redirects from the URLs its heads had while it had one dataset."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from ..fsutil import dumps_json, write_bytes
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


def block_facts(units: Sequence["ExportedModel"], m: "ExportedModel") -> list[tuple[str, int, int]]:
    """(block, layers, heads) of every block built for `m`'s model on `m`'s dataset, in block order."""
    return [(u.block, int(u.manifest["model"]["num_layers"]), int(u.manifest["model"]["num_heads"]))
            for u in units if u.block and u.name == m.name and u.dataset == m.dataset]


#: What each block of an encoder–decoder model attends, as its overview page says.
BLOCK_TEXT = {"encoder": "encoder tokens attend to the encoder tokens of the same input",
              "decoder": "decoder tokens attend to the earlier decoder tokens of the same target (causal)",
              "cross": "decoder tokens attend to the encoder tokens of the same pair"}


def model_blocks_page(m: "ExportedModel", units: Sequence["ExportedModel"], top: bool) -> str:
    """An encoder–decoder model's page listing its blocks, each linking to its matrix of heads: ``models/<model>/``
    (`top`: every dataset's blocks) or, for a model on several datasets, ``models/<model>/<dataset>/``."""
    mine = [u for u in units if u.block and u.name == m.name and (top or u.dataset == m.dataset)]
    link = lambda u: f"{u.dataset}/{u.block}" if top and u.datasets else u.block  # noqa: E731
    rows = [f"| [{md_text(u.block)}]({link(u)}/index.md) | {md_text(u.dataset)} | "
            f"{u.manifest['model']['num_layers']} × {u.manifest['model']['num_heads']} | "
            f"{md_text(BLOCK_TEXT.get(u.block, ''))} |" for u in mine]
    body = [f"# {md_text(m.title)}\n",
            "An encoder–decoder model: each attention block is its own matrix of heads, and every matrix and head "
            "page switches to the same view of another block (a block with fewer layers or heads opens its last "
            "one).\n",
            "| block | dataset | layers × heads | queries → keys |", "|---|---|---|---|", *rows, ""]
    meta = {"title": html_text(m.title), "description": html_text(f"{m.title}: the attention blocks of an "
                                                                  "encoder–decoder model"), "hide": ["toc"]}
    return _front_matter(meta) + "\n".join(body)
