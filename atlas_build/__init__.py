"""Attention Atlas: build static, browsable atlases of transformer attention heads (AttentionViz).

The notebook API (docs/notebook.md) is importable from here: `build`, `load_manifest`, `parse_manifest`,
`Manifest`, `show_head`, `show_sentence`. Those names load their modules on first use, so importing the package
stays cheap."""

import importlib

__version__ = "0.1.0"
SCHEMA_VERSION = 8

_API = {"build": "notebook", "show_head": "notebook", "show_sentence": "notebook", "AtlasHTML": "notebook",
        "load_manifest": "manifest", "parse_manifest": "manifest", "Manifest": "manifest"}
__all__ = ["SCHEMA_VERSION", "__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
