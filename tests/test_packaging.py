"""The package as a user gets it: a wheel (templates inside) installed into a fresh venv builds the tiny atlas from
outside the repository, and the workflow `atlas init` writes runs its shell steps to a deployable site."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from atlas_build.cli import main
from atlas_build.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "data_manifests" / "tiny.toml"
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "atlas_build", "site_templates")
HEAD_PAGE = Path("models/tiny-bert/L0/H0/index.html")


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "HF_HUB_OFFLINE": "1", "CI": "1"}


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel (--no-deps); the dependencies come from this venv via a .pth line.

    The wheel is built from a copy of the package's sources, so the checkout gets no build/ or egg-info."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(src)],
                   check=True, cwd=root)
    wheel = next((root / "dist").glob("attention_atlas-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)], check=True)
    site = subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_atlas_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
def test_wheel_carries_the_templates_and_builds_outside_the_repository(wheel_venv: Path, tmp_path: Path) -> None:
    env = _env(wheel_venv)
    where = subprocess.run(["python", "-c", "import atlas_build.site as s; print(s.__file__); print(s.TEMPLATES)"],
                           check=True, capture_output=True, text=True, env=env, cwd=tmp_path).stdout.split()
    assert all(str(wheel_venv) in p and str(REPO) not in p for p in where), where
    shutil.copy2(TINY, tmp_path / "tiny.toml")
    run = subprocess.run(["atlas", "build", "tiny.toml", "-o", "out", "--no-progress", "-q"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out/site/index.html").is_file()
    assert (tmp_path / "out/site" / HEAD_PAGE).is_file()


def _workflow_run_steps(repo: Path) -> tuple[list[dict], str]:
    """The build job's `run:` steps and the folder its upload-pages-artifact step uploads."""
    jobs = yaml.safe_load((repo / ".github/workflows/atlas.yml").read_text())["jobs"]
    steps = jobs["build"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in jobs["deploy"]["steps"])
    return [s for s in steps if "run" in s], upload["with"]["path"]


@pytest.mark.slow  # ~65 s: validate and build in fresh processes
def test_init_workflow_steps_build_the_pages_artifact(wheel_venv: Path, tmp_path: Path) -> None:
    """The scaffold's shell steps, in order, with the wheel's venv on PATH in place of the Install step (which needs
    PyPI) and the tiny manifest in place of atlas.toml (whose hub model needs the network; it is only validated)."""
    repo = tmp_path / "my-atlas"
    assert main(["init", str(repo)]) == 0
    assert load_manifest(repo / "atlas.toml").models[0].source == "sentence-transformers/all-MiniLM-L6-v2"
    steps, artifact = _workflow_run_steps(repo)
    install = next(s for s in steps if s["name"] == "Install")
    assert "pip install \"attention-atlas==" in install["run"] and "/whl/cpu" in install["run"]
    assert "pip install -e" not in (repo / ".github/workflows/atlas.yml").read_text()
    shutil.copy2(TINY, repo / "atlas.toml")
    for step in steps:
        if step is install:
            continue
        run = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=repo, env=_env(wheel_venv),
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{step['name']}: {run.stderr}"
    assert (repo / artifact / "index.html").is_file()
    assert (repo / artifact / HEAD_PAGE).is_file()
