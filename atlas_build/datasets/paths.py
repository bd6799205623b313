"""Where a dataset source points on disk."""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from ..packages import package_dir


def resolve_path(source: str, base_dir: Path) -> Path:
    """`package:PKG/rel/path` → a file inside an installed package (found without importing it); else a path."""
    if source.startswith("package:"):
        pkg, _, rel = source[len("package:"):].partition("/")
        root = package_dir(pkg, source)
        path = (root / rel).resolve()
        if root.resolve() not in path.parents:
            raise SourceError(source, "path escapes the package directory")
        return path
    path = Path(source).expanduser()
    return path if path.is_absolute() else (base_dir / path)
