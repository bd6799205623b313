"""Installed Python packages as model or data sources, located without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import SourceError


def package_dir(name: str, source: str) -> Path:
    """The directory of installed package `name`; SourceError naming `source` if it is not installed."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(source, f"Python package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))
