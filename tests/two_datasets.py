"""A tiny model on two datasets, built once per session (shared by tests/test_several_datasets.py and the browser
test): data_manifests/tiny.toml's random BERT on its sentences and on a second small text dataset.

The build starts from the cache of the one-dataset tiny build (tests/conftest.py's `tiny_build`), so it is also the
incremental case: adding a dataset to a model must reuse every unit of its first dataset and load the weights once."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import atlas_build.pipeline as pipeline

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data_manifests" / "tiny.toml"
MODEL = "tiny-bert"
FIRST, SECOND = "tiny-sentences", "tiny-reviews"
REVIEWS = f'''
[[datasets]]
name = "{SECOND}"
source = "inline"
license = "CC0-1.0"
attribution = "Written for the Attention Atlas tests."
sentences = [
  "This film was a delight from start to finish.",
  "The plot was dull and the acting was worse.",
  "I would watch it again with friends.",
  "A waste of two hours, sadly.",
  "Brilliant music, weak story.",
]
'''


def two_dataset_manifest(directory: Path) -> Path:
    """tiny.toml with a second dataset and ``datasets = [FIRST, SECOND]`` on its model."""
    text = TINY.read_text().replace(f'dataset = "{FIRST}"', f'datasets = ["{FIRST}", "{SECOND}"]')
    text = text.replace("[[models]]", REVIEWS.lstrip() + "\n[[models]]", 1)
    path = directory / "two.toml"
    path.write_text(text)
    return path


@dataclass
class TwoBuild:
    out: Path
    manifest: Path
    report: pipeline.BuildReport
    loads: int  # how many times the build loaded the model's weights


_built: dict[str, TwoBuild] = {}


def counting_build(manifest: Path, out: Path) -> tuple[pipeline.BuildReport, int]:
    """Build, counting the calls of the pipeline's `load_model`."""
    calls = []
    real = pipeline.load_model

    def counted(*args, **kwargs):
        calls.append(args[0].name)
        return real(*args, **kwargs)

    pipeline.load_model = counted
    try:
        report = pipeline.build(manifest, out, jobs=1, log=lambda msg: None)
    finally:
        pipeline.load_model = real
    return report, len(calls)


def two_dataset_build(tiny_build: Path, tmp_path_factory) -> TwoBuild:
    """The session's two-dataset build, started from a copy of the one-dataset build's cache."""
    if "build" not in _built:
        work = tmp_path_factory.mktemp("two-datasets")
        out = work / "out"
        shutil.copytree(tiny_build / "cache", out / "cache")
        manifest = two_dataset_manifest(work)
        report, loads = counting_build(manifest, out)
        _built["build"] = TwoBuild(out, manifest, report, loads)
    return _built["build"]
