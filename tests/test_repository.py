"""`atlas init` refuses to clobber, `atlas deploy` pushes gh-pages to a local bare repository and refuses bad
repositories in one line, and every optional dependency names its extra when missing."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from atlas_build.cli import main
from atlas_build.errors import InputError, SourceError
from atlas_build.repository import SCAFFOLD

REPO = Path(__file__).resolve().parents[1]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Atlas Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "atlas@example.org")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))


def _one_error_line(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert all(w in err[0] for w in words), err


def test_init_refuses_a_non_empty_directory_and_names_each_overwrite(tmp_path: Path, capsys) -> None:
    target = tmp_path / "repo"
    (target / ".git").mkdir(parents=True)  # a fresh `git init` counts as empty
    assert main(["init", str(target)]) == 0
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == sorted(SCAFFOLD.values())
    capsys.readouterr()
    (target / "README.md").write_text("mine")
    (target / "notes.txt").write_text("mine")
    assert main(["init", str(target)]) == 2
    _one_error_line(capsys, "not empty", "--force")
    assert (target / "README.md").read_text() == "mine"
    assert main(["init", str(target), "--force"]) == 0
    err = capsys.readouterr().err
    assert f"overwrote {target / 'README.md'}" in err and err.count("overwrote") == len(SCAFFOLD)
    assert (target / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    assert main(["init", str(tmp_path / "file")]) == 2
    _one_error_line(capsys, "not a directory")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A committed repository with a local bare remote `origin`, and a built site at build/site."""
    _git(tmp_path, "init", "-q", "--bare", "remote.git")
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / ".gitignore").write_text("build/\n")
    (work / "atlas.toml").write_text("")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "start")
    _git(work, "remote", "add", "origin", str(tmp_path / "remote.git"))
    (work / "build/site/models").mkdir(parents=True)
    (work / "build/site/index.html").write_text("<h1>atlas</h1>")
    (work / "build/site/models/page.html").write_text("page")
    return work


def test_deploy_pushes_the_site_to_gh_pages(work: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(work)
    assert main(["deploy", "build"]) == 0
    files = _git(work.parent / "remote.git", "ls-tree", "-r", "--name-only", "gh-pages").split()
    assert sorted(files) == [".nojekyll", "index.html", "models/page.html"]
    head = _git(work, "rev-parse", "--short", "HEAD").strip()
    assert head in _git(work.parent / "remote.git", "log", "-1", "--format=%s", "gh-pages")
    (work / "build/site/index.html").write_text("<h1>atlas v2</h1>")
    assert main(["deploy", "build"]) == 0
    assert _git(work.parent / "remote.git", "show", "gh-pages:index.html") == "<h1>atlas v2</h1>"
    assert _git(work, "status", "--porcelain") == ""


def test_deploy_refuses_no_repository_no_remote_and_a_dirty_tree(work: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(work)
    assert main(["deploy", "nowhere"]) == 2
    _one_error_line(capsys, "no built site")
    (work / "atlas.toml").write_text("changed")
    assert main(["deploy", "build"]) == 2
    _one_error_line(capsys, "uncommitted changes")
    _git(work, "checkout", "-q", "atlas.toml")
    assert main(["deploy", "build", "--remote", "upstream"]) == 2
    _one_error_line(capsys, "'upstream'", "git remote add")
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert main(["deploy", str(work / "build")]) == 2
    _one_error_line(capsys, "not inside a git repository")
    assert "gh-pages" not in _git(tmp_path / "remote.git", "branch", "--list")


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        """Distribution names; `dask[distributed]` counts as dask and distributed."""
        out = set()
        for r in reqs:
            name = r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower().replace("_", "-")
            base, _, extra = name.partition("[")
            out |= {base} | ({extra.rstrip("]")} if base == "dask" else set())
        return out
    return names(project["dependencies"]), {k: names(v) for k, v in project["optional-dependencies"].items()}


def test_every_imported_distribution_is_declared_and_optional_ones_are_extras() -> None:
    import importlib.metadata

    core, extras = _declared()
    every = core.union(*extras.values())
    dists = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    for path in (REPO / "atlas_build").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported - set(sys.stdlib_module_names) if m not in ("atlas_build", "tomli")}
    for module in sorted(third_party):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        assert names & every, f"{module} (from {names}) is imported by atlas_build but not declared in pyproject"
    assert "pandas" in core and "torch" in core
    for optional in ("onnx", "onnxruntime", "dask", "gguf", "scikit-image", "umap-learn", "datasets"):
        assert optional not in core and any(optional in v for v in extras.values()), optional


def test_missing_optional_dependencies_name_their_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from atlas_build.capture import onnx_import, sources
    from atlas_build.datasets import images
    from atlas_build.executor import DaskExecutor

    for module in ("distributed", "onnx", "skimage", "skimage.data"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(InputError, match=r"pip install 'attention-atlas\[dask\]'"):
        DaskExecutor("tcp://127.0.0.1:1")
    with pytest.raises(SourceError, match=r"pip install 'attention-atlas\[onnx\]'"):
        onnx_import._load_graph(tmp_path / "model.onnx")
    with pytest.raises(SourceError, match=r"pip install 'attention-atlas\[images\]'"):
        images._skimage_entries()
    monkeypatch.setattr(sources, "installed", lambda module: False)
    with pytest.raises(SourceError, match=r"pip install 'attention-atlas\[gguf\]'"):
        sources._from_pretrained("m.gguf", sources._Resolved(str(tmp_path), "m.gguf"), object)
    _, extras = _declared()
    assert {"dask", "onnx", "images", "gguf", "hf", "umap-ref"} <= set(extras)
