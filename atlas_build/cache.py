"""Content-keyed stage cache: a unit's key hashes its named inputs (manifest section, upstream keys, data and model
file digests, library versions, code version); each unit records those inputs so a rebuild can say what changed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .fingerprint import explain_change
from .fsutil import dumps_json, write_bytes, write_json

DONE_MARKER = "DONE"
INPUTS_FILE = "INPUTS.json"
#: A unit directory's name: only names of this form are ever pruned (a user's folder in the cache is left alone).
UNIT_RE = re.compile(r"^(?P<stage>[a-z]+)-(?P<key>[0-9a-f]{16})$")
# Caches third-party libraries would otherwise create outside the build directory, and where they go under the stage
# cache: torch makes its compile-cache directory (in TMPDIR) whenever torch._dynamo is imported; the build compiles
# nothing, so the directory stays empty.
CONFINED_CACHES = {"TORCHINDUCTOR_CACHE_DIR": "_torch"}


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _plain(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


PACKAGE_DIR = Path(__file__).resolve().parent


def code_hash(*paths: str) -> str:
    """Hash of the source files under the given package-relative paths (files or folders), so editing a stage's
    code invalidates its cached units even when the version number did not change."""
    digest = hashlib.sha256()
    for rel in sorted(paths):
        target = PACKAGE_DIR / rel
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for f in files:
            digest.update(str(f.relative_to(PACKAGE_DIR)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def stage_key(stage: str, inputs: dict[str, Any]) -> str:
    """A short hex key over named inputs; identical inputs (and package version) give identical keys."""
    payload = dumps_json({"stage": stage, "version": __version__, "inputs": _plain(inputs)})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class StageCache:
    """Directories `root/<model>/<stage>-<key>/`; a unit counts as done only once its DONE marker exists."""

    def __init__(self, root: Path):
        self.root = root

    def unit_dir(self, model: str, stage: str, key: str) -> Path:
        return self.root / model / f"{stage}-{key}"

    def record_inputs(self, unit: Path, inputs: dict[str, Any]) -> None:
        """Keep the named inputs of a unit beside it (what `why` compares a later key against)."""
        unit.mkdir(parents=True, exist_ok=True)
        write_json(unit / INPUTS_FILE, _plain(inputs))

    def why(self, model: str, stage: str, key: str, inputs: dict[str, Any]) -> str:
        """Why a unit is computed: resuming it, the inputs that differ from the newest other unit of the same
        stage, or a plain reason when there is none to compare with."""
        if (self.unit_dir(model, stage, key) / INPUTS_FILE).is_file():
            return "resuming an interrupted run"
        base = self.root / model
        units = [d for d in base.glob(f"{stage}-*") if UNIT_RE.match(d.name) and (d / INPUTS_FILE).is_file()] \
            if base.is_dir() else []
        if not units:
            return "not built before"
        newest = max(units, key=lambda d: (d / INPUTS_FILE).stat().st_mtime_ns)
        try:
            old = json.loads((newest / INPUTS_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return "earlier inputs unreadable"
        return f"changed: {explain_change(old, _plain(inputs)) or 'package version'}"

    def is_done(self, path: Path) -> bool:
        return (path / DONE_MARKER).exists()

    def mark_done(self, path: Path) -> None:
        write_bytes(path / DONE_MARKER, b"ok\n")

    def fresh(self, path: Path) -> Path:
        """An empty directory for a unit about to be (re)computed."""
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def resumable(self, path: Path, force: bool = False) -> Path:
        """The directory of a unit about to be computed by a stage that resumes from its own partial outputs (capture
        keeps its committed batches); emptied first when ``force``."""
        if force:
            return self.fresh(path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prune(self, model: str, stage: str, keep: str) -> None:
        """Drop other units of the same stage so the cache does not grow per rebuild (unit directories only)."""
        base = self.root / model
        if base.is_dir():
            for d in base.glob(f"{stage}-*"):
                m = UNIT_RE.match(d.name)
                if m and m["stage"] == stage and m["key"] != keep and d.is_dir() and not d.is_symlink():
                    shutil.rmtree(d, ignore_errors=True)


def _installed_tree_writable(package: str) -> bool:
    spec = importlib.util.find_spec(package)
    return spec is not None and spec.origin is not None and os.access(Path(spec.origin).parents[1], os.W_OK)


def confine_caches(cache_root: Path) -> None:
    """Point the third-party caches of `CONFINED_CACHES` under ``cache_root`` unless the user chose a place (takes
    effect for the libraries that have not yet read them in this process).

    numba keeps compiled functions beside the installed packages (like ``__pycache__``) and only falls back to a
    per-user directory in HOME when it cannot write there: in that case its cache goes under ``cache_root`` too."""
    root = Path(cache_root).resolve()
    for var, sub in CONFINED_CACHES.items():
        os.environ.setdefault(var, str(root / sub))
    if not _installed_tree_writable("numba"):
        os.environ.setdefault("NUMBA_CACHE_DIR", str(root / "_numba"))
