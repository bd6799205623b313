"""`atlas init` (a repository that builds and publishes an atlas) and `atlas deploy` (push a built site to gh-pages)."""

from __future__ import annotations

import importlib.resources
import subprocess
from pathlib import Path
from typing import Callable

from . import __version__
from .errors import AtlasError, InputError
from .outdir import servable

#: Scaffold file (in atlas_build/scaffold/) -> where `atlas init` writes it.
SCAFFOLD = {
    "atlas.toml": "atlas.toml",
    "sentences.txt": "data/sentences.txt",
    "README.md": "README.md",
    "gitignore": ".gitignore",
    "atlas.yml": ".github/workflows/atlas.yml",
}


def _scaffold_text(name: str, target: Path) -> str:
    text = (importlib.resources.files("atlas_build") / "scaffold" / name).read_text("utf-8")
    return text.replace("@version@", __version__).replace("@name@", target.resolve().name)


def init_repo(target: Path, force: bool = False, log: Callable[[str], None] = print) -> list[Path]:
    """Write the scaffold into `target` (created if missing); returns the files written.

    A non-empty `target` (anything besides `.git`) is refused unless `force`; every replaced file is logged."""
    if target.exists() and not target.is_dir():
        raise InputError(f"{target}: exists and is not a directory")
    existing = [p.name for p in target.iterdir() if p.name != ".git"] if target.is_dir() else []
    if existing and not force:
        raise InputError(f"{target}: directory is not empty ({', '.join(sorted(existing)[:3])}"
                         f"{', …' if len(existing) > 3 else ''}); use --force to write the scaffold into it anyway")
    dests = [target / dest for dest in SCAFFOLD.values()]
    for dest in dests:
        if dest.is_dir() and not dest.is_symlink():
            raise InputError(f"{dest}: is a directory; move it away first")
    written = []
    for (name, _), dest in zip(SCAFFOLD.items(), dests):
        text = _scaffold_text(name, target)
        if dest.is_symlink() or dest.exists():
            log(f"overwrote {dest}")
            dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, "utf-8")
        written.append(dest)
    return written


def _git(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise InputError("git is not installed") from None


def deploy(out: Path, remote: str = "origin", branch: str = "gh-pages", message: str | None = None) -> Path:
    """Commit the built site of `out` to `branch` of the current directory's git repository and push it to
    `remote` (force, as `mkdocs gh-deploy`); returns the site folder."""
    from ghp_import import GhpError, ghp_import

    site = servable(out) or (out if (out / "index.html").is_file() else None)
    if site is None:
        raise InputError(f"{out}: no built site here (expected site/index.html or index.html); "
                         "run `atlas build MANIFEST -o OUT` first")
    top = _git("rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise InputError(f"{Path.cwd()}: not inside a git repository; run atlas deploy from the repository to publish")
    if _git("remote", "get-url", remote).returncode != 0:
        raise InputError(f"git remote {remote!r} is not set; add it (git remote add {remote} URL) or pick one "
                         "with --remote")
    dirty = _git("status", "--porcelain", "--untracked-files=no").stdout.splitlines()
    if dirty:
        raise InputError(f"{top.stdout.strip()}: uncommitted changes ({len(dirty)} file{'s' * (len(dirty) != 1)}); "
                         "commit them first so the deployed site matches a commit")
    head = _git("rev-parse", "--short", "HEAD").stdout.strip() or "no commit"
    try:
        ghp_import(str(site), mesg=message or f"Deploy attention atlas from {head}", remote=remote, branch=branch,
                   push=True, force=True, nojekyll=True)
    except (GhpError, subprocess.CalledProcessError) as e:
        raise AtlasError(f"pushing {branch} to {remote} failed: {e}") from None
    return site
