"""Where each per-head file lives under data/<model>/: path templates written once into manifest.json."""

from __future__ import annotations

from typing import Mapping

HEAD_FILES = {
    "head": "heads/L{layer}H{head}.json",
    "coords": "coords/L{layer}H{head}_{layout}.bin.gz",
    "norms": "norms/L{layer}H{head}.arrow",
    "aggregate": "aggregate/L{layer}H{head}.json",
    "thumb": "thumbs/L{layer}H{head}_{layout}.png",
    "tiles": "tiles/L{layer}H{head}_{layout}",
}


def head_path(kind: str, layer: int, head: int, layout: str | None = None,
              templates: dict[str, str] | None = None) -> str:
    """Relative path of one per-head file (`templates` defaults to this version's HEAD_FILES)."""
    template = (templates or HEAD_FILES)[kind]
    if "{layout}" in template and not layout:
        raise ValueError(f"the {kind} file of a head needs a layout")
    return template.format(layer=int(layer), head=int(head), layout=layout or "")


def layout_file(manifest: Mapping, layout: str) -> tuple[str, int | None]:
    """The layout whose coordinates file holds ``layout`` (manifest.json's `nested_layouts`: its host) and the number
    of that file's first axes it is, or None when the file is its own."""
    nested = manifest.get("nested_layouts", {}).get(layout)
    return (nested["layout"], int(nested["dims"])) if nested else (layout, None)
