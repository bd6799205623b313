"""What a stage's output depends on beyond the manifest: the bytes of its data and model files and the versions of
the libraries that compute its numbers. Each becomes a named part of the stage's cache key, so a changed input
recomputes exactly the units it feeds, and the build can say which input changed."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import stat
from pathlib import Path
from typing import Iterable, Mapping

from .errors import SourceError
from .fsutil import write_json

CHUNK = 1 << 20
#: Libraries whose versions change the numbers of each cached stage.
LIBRARIES = {
    "capture": ("torch", "transformers", "tokenizers", "safetensors", "gguf", "onnx", "numpy", "pillow",
                "scikit-image", "scikit-learn"),
    "heads": ("numpy", "scipy", "scikit-learn", "openTSNE", "umap-learn", "numba"),
}
SKIPPED_PARTS = ("__pycache__",)


def library_versions(stage: str) -> dict[str, str]:
    """``{distribution: version}`` for the stage's libraries ("absent" when not installed)."""
    out = {}
    for name in LIBRARIES[stage]:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


class DigestMemo:
    """File digests remembered by (path, size, mtime, inode) in a JSON file, so a rebuild does not rehash unchanged
    weights; a file whose size, time or inode changed is hashed again."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, str] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                loaded = json.loads(path.read_text("utf-8"))
                self.entries = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.entries = {}

    def file(self, path: Path, source: str) -> str:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise SourceError(source, f"file not found: {path}") from None
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(source, f"{path} is not a regular file")
        ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        if ident not in self.entries:
            self.entries[ident] = _sha256(path)
            self.dirty = True
        return self.entries[ident]

    def tree(self, root: Path, source: str) -> str:
        """Digest of every regular file under ``root`` (relative paths and contents; caches of bytecode skipped)."""
        digest = hashlib.sha256()
        for path in _files(root):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(self.file(path, source).encode())
        return digest.hexdigest()[:16]

    def save(self) -> None:
        if self.path is not None and self.dirty:
            write_json(self.path, self.entries)
            self.dirty = False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_PARTS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                yield path


def path_digest(path: Path, source: str, memo: DigestMemo) -> str:
    """Digest of a file, or of every file in a folder."""
    if path.is_dir():
        return memo.tree(path, source)
    return memo.file(path, source)


def hub_revision(repo_id: str, revision: str) -> str:
    """The commit a hub id's revision points at in the local Hugging Face cache ("" when not cached)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return ""
    ref = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / revision
    try:
        return ref.read_text("utf-8").strip()
    except OSError:
        return revision if len(revision) == 40 else ""


def explain_change(old: Mapping[str, object], new: Mapping[str, object]) -> str:
    """Which named inputs differ between two keys' parts, in words ("" when none does)."""
    changed = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            inner = [f"{k} {a.get(k, 'absent')}→{b.get(k, 'absent')}" for k in sorted(set(a) | set(b))
                     if a.get(k) != b.get(k)]
            changed.append(f"{name} ({', '.join(inner)})")
        else:
            changed.append(name)
    return ", ".join(changed)
