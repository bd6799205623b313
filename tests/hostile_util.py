"""Helpers of the hostile suites: run the CLI in-process in a sandbox of folders and snapshot what changed."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = (ROOT / "data_manifests" / "tiny.toml").read_text()


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """Every entry under ``root`` (but ``skip``): folders as "dir", special files by kind, files by content."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in dirnames:
            out[str((here / name).relative_to(root))] = "dir"
        for name in filenames:
            p = here / name
            mode = p.lstat().st_mode
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(mode)
                                             else f"special {stat.S_IFMT(mode)}")
    return out


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def last(self) -> str:
        return self.err.strip().splitlines()[-1] if self.err.strip() else ""


class Sandbox:
    """A working directory, HOME and manifest folder under one temporary root."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.cwd, self.home, self.mdir = root / "cwd", root / "home", root / "m"
        for d in (self.cwd, self.home, self.mdir):
            d.mkdir()
        self.mp = monkeypatch
        monkeypatch.chdir(self.cwd)
        monkeypatch.setenv("HOME", str(self.home))
        # The build confines these under its default OUT; set here so the process-wide values are restored after.
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(self.cwd / "build" / "atlas" / "cache" / "_torch"))
        if "NUMBA_CACHE_DIR" in os.environ:
            monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ["NUMBA_CACHE_DIR"])

    def manifest(self, text: str = TINY, name: str = "atlas.toml") -> Path:
        path = self.mdir / name
        path.write_text(text)
        return path

    def atlas(self, *args: str) -> Run:
        from atlas_build import cli

        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main([str(a) for a in args])
        return Run(code, out.getvalue(), err.getvalue())


def copy_build(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
