"""Every supported Python (3.10-3.12, pyproject's requires-python) can compile the package, and 3.10 reads TOML
through the `tomli` fallback that pyproject declares for it."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted((REPO / "atlas_build").rglob("*.py")) + [REPO / "setup.py"]
COMPILE_ALL = "import sys\nfor f in sys.argv[1:]:\n    compile(open(f, encoding='utf-8').read(), f, 'exec')\n"


def _python(version: str) -> str | None:
    """A working `pythonX.Y`: on PATH, else a pyenv installation (whose shims need a selected version)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    installed = sorted(map(str, pyenv.glob(f"versions/{version}.*/bin/python{version}")))
    for exe in [shutil.which(f"python{version}"), *installed]:
        if exe and subprocess.run([exe, "-c", "pass"], capture_output=True).returncode == 0:
            return exe
    return None


def test_every_module_parses_as_python_3_10() -> None:
    for path in MODULES:
        ast.parse(path.read_text("utf-8"), str(path), feature_version=(3, 10))


@pytest.mark.parametrize("version", ["3.10", "3.12"])
def test_every_module_compiles_on_the_interpreter(version: str) -> None:
    exe = _python(version)
    if exe is None:
        pytest.skip(f"no python{version} on this machine")
    run = subprocess.run([exe, "-c", COMPILE_ALL, *map(str, MODULES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_python_3_10_reads_toml_through_tomli(tmp_path: Path) -> None:
    """The manifest's TOML import, run on 3.10 with a stand-in `tomli`, binds `tomllib` to it; pyproject declares
    tomli for exactly the Pythons without tomllib."""
    source = (REPO / "atlas_build/manifest.py").read_text("utf-8")
    block = next(n for n in ast.parse(source).body if isinstance(n, ast.Try)
                 and any(isinstance(s, ast.Import) and s.names[0].name == "tomllib" for s in n.body))
    pyproject = (REPO / "pyproject.toml").read_text("utf-8")
    assert "\"tomli>=2.0; python_version < '3.11'\"" in pyproject
    exe = _python("3.10")
    if exe is None:
        pytest.skip("no python3.10 on this machine")
    (tmp_path / "tomli").mkdir()
    (tmp_path / "tomli/__init__.py").write_text("class TOMLDecodeError(ValueError):\n    pass\n\n"
                                                 "def loads(text):\n    return {}\n")
    check = f"{ast.get_source_segment(source, block)}\nprint(tomllib.__name__, tomllib.loads(''), " \
            "issubclass(tomllib.TOMLDecodeError, ValueError))"
    run = subprocess.run([exe, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n{check}"],
                         capture_output=True, text=True)
    assert run.stdout.split() == ["tomli", "{}", "True"], run.stderr
