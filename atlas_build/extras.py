"""Optional dependencies: each belongs to an extra of attention-atlas, named in the one-line message shown when a
manifest or option needs it and it is missing."""

from __future__ import annotations

import importlib.util


def missing(extra: str, what: str) -> str:
    """The message for `what` (a feature) whose extra is not installed."""
    return f"{what} needs attention-atlas[{extra}]: pip install 'attention-atlas[{extra}]'"


def installed(module: str) -> bool:
    """Whether `module` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
