"""Nothing is written outside the output directory: a whole tiny build run with its working directory, HOME,
XDG_CACHE_HOME, HF_HOME and TMPDIR in separate empty directories leaves all of them (and the manifest's directory)
exactly as they were; manifests with hostile names or sources exit 2 and write nothing at all."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data_manifests" / "tiny.toml"
PLACES = ("cwd", "home", "xdg-cache", "hf-home", "tmp", "manifest")
# Only these are passed on: no cache location inherited from the test process may hide a write.
KEPT_ENV = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: directories as "dir", files by content hash."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def _places(tmp_path: Path, manifest_text: str) -> dict[str, Path]:
    places = {name: tmp_path / name for name in PLACES}
    for d in places.values():
        d.mkdir()
    (places["manifest"] / "atlas.toml").write_text(manifest_text)
    return places


def _atlas(places: dict[str, Path], *args: str) -> subprocess.CompletedProcess:
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    env.update(HOME=str(places["home"]), XDG_CACHE_HOME=str(places["xdg-cache"]), HF_HOME=str(places["hf-home"]),
               TMPDIR=str(places["tmp"]), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", CI="1")
    return subprocess.run([sys.executable, "-m", "atlas_build.cli", "build", str(places["manifest"] / "atlas.toml"),
                           *args], cwd=places["cwd"], env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
def test_full_build_writes_only_under_its_output_directory(tmp_path: Path) -> None:
    places = _places(tmp_path, TINY.read_text())
    before = {name: snapshot(d) for name, d in places.items()}
    out = tmp_path / "out"
    run = _atlas(places, "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert (out / "site" / "models" / "tiny-bert" / "L1" / "H3" / "index.html").is_file()
    assert {name: snapshot(d) for name, d in places.items()} == before
    assert before["tmp"] == {} and before["home"] == {}
    assert sorted(p.name for p in out.iterdir()) == [".atlas-build.json", ".atlas.lock", "cache", "site"]


HOSTILE = {
    "model name climbs out": ('name = "tiny-bert"', 'name = "../../etc"'),
    "model name is absolute": ('name = "tiny-bert"', 'name = "/tmp/atlas-hostile"'),
    "dataset name climbs out": ('"tiny-sentences"', '"../../etc"'),
    "dataset name is absolute": ('"tiny-sentences"', '"/tmp/atlas-hostile"'),
    "model source climbs out": ('source = "random:bert"', 'source = "' + "../" * 32 + 'etc"'),
    "model source is an absolute directory": ('source = "random:bert"', 'source = "/etc"'),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_manifest_exits_2_and_writes_nothing(tmp_path: Path, case: str) -> None:
    old, new = HOSTILE[case]
    text = TINY.read_text()
    assert old in text
    places = _places(tmp_path, text.replace(old, new))
    before = {name: snapshot(d) for name, d in places.items()}
    run = _atlas(places)  # default output directory: build/atlas under the working directory
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines()[-1].startswith("error: ") and "Traceback" not in run.stderr
    assert {name: snapshot(d) for name, d in places.items()} == before
    assert not Path("/tmp/atlas-hostile").exists()


def test_caches_are_confined_unless_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atlas_build import cache

    for var in ("TORCHINDUCTOR_CACHE_DIR", "NUMBA_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(cache, "_installed_tree_writable", lambda package: True)
    cache.confine_caches(tmp_path / "cache")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "_torch")
    assert "NUMBA_CACHE_DIR" not in os.environ  # numba writes beside its installed packages
    monkeypatch.setattr(cache, "_installed_tree_writable", lambda package: False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    cache.confine_caches(tmp_path / "cache")
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "cache" / "_numba")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")
