"""Where each per-head file lives under data/<model>/: path templates written once into manifest.json."""

from __future__ import annotations

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
