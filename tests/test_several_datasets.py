"""A model on several datasets (``datasets = [...]``): manifest checks, one load and one capture per dataset, one
atlas unit per dataset with its own related heads and findings, and incremental builds when datasets come and go."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import atlas_build.pipeline as pipeline
from atlas_build.cli import main
from atlas_build.errors import ManifestError
from atlas_build.export import read_head_detail
from atlas_build.manifest import parse_manifest
from atlas_build.metrics import related_heads
from atlas_build.outdir import MARKER
from atlas_build.pipeline.heads import HeadResult
from atlas_build.site.findings import label_changes
from test_incremental import tree
from two_datasets import FIRST, MODEL, SECOND, TINY, counting_build, two_dataset_build, two_dataset_manifest

TEXT = {"source": "inline", "sentences": ["One sentence here."]}
DOC = {"datasets": [{"name": "a", **TEXT}, {"name": "b", **TEXT},
                    {"name": "im", "kind": "images", "source": "probes"}],
       "models": [{"name": "m", "source": "random:bert", "tokenizer": "package:tok", "datasets": ["a", "b"]}]}


def _model(**entry) -> dict:
    return {**DOC, "models": [{"name": "m", "source": "random:bert", "tokenizer": "package:tok", **entry}]}


def _problems(doc: dict) -> list[str]:
    with pytest.raises(ManifestError) as e:
        parse_manifest(doc, "m.toml")
    return [str(p) for p in e.value.problems]


def test_a_list_of_datasets_parses_and_one_element_is_the_single_case() -> None:
    m = parse_manifest(DOC, "m.toml").models[0]
    assert (m.dataset, m.datasets, m.all_datasets) == ("a", ("a", "b"), ("a", "b"))
    assert m.on("b").dataset == "b" and m.on("b").all_datasets == ("a", "b") and m.on("a") == m
    one = parse_manifest(_model(datasets=["b"]), "m.toml").models[0]
    assert one == parse_manifest(_model(dataset="b"), "m.toml").models[0]
    assert one.all_datasets == ("b",) and one.datasets == ()


@pytest.mark.parametrize("entry, key, words", [
    ({"datasets": ["a", "nope"]}, "models[0].datasets[1]", "expected one of the datasets (a, b, im), got 'nope'"),
    ({"datasets": ["a", "b", "a"]}, "models[0].datasets[2]", "lists 'a' twice (first at models[0].datasets[0])"),
    ({"datasets": []}, "models[0].datasets", "expected a non-empty list of dataset names, got []"),
    ({"datasets": "a"}, "models[0].datasets", "expected a non-empty list of dataset names"),
    ({"datasets": ["a"], "dataset": "a"}, "models[0].datasets", "give either dataset or datasets, not both"),
    ({}, "models[0].dataset", "required key is missing (or datasets = [...])"),
    ({"datasets": ["a", "im"]}, "models[0].datasets", "mixes kinds of dataset; a model reads one kind of input (a: text, im: images)"),
])
def test_bad_dataset_lists_name_the_entry(entry: dict, key: str, words: str) -> None:
    problems = _problems(_model(**entry))
    assert len(problems) == 1 and problems[0].startswith(f"m.toml: {key}: ") and words in problems[0], problems


def test_every_problem_of_every_model_is_reported() -> None:
    doc = {**DOC, "models": [{"name": "m", "source": "random:bert", "tokenizer": "package:tok", "datasets": ["x", "y"]},
                             {"name": "n", "source": "random:bert", "tokenizer": "package:tok", "datasets": []}]}
    keys = [p.split(": ")[1] for p in _problems(doc)]
    assert keys == ["models[1].datasets", "models[0].datasets[0]", "models[0].datasets[1]"]


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(pipeline, "load_model", refuse)
    monkeypatch.setattr("atlas_build.capture.load_model", refuse)


@pytest.mark.parametrize("bad, key", [('["tiny-sentences", "tiny-missing"]', "models[0].datasets[1]"),
                                      ('["tiny-sentences", "tiny-sentences"]', "models[0].datasets[1]"),
                                      ("[]", "models[0].datasets")])
def test_validate_and_build_exit_2_naming_the_entry_without_loading_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_weights: None, bad: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.read_text().replace('dataset = "tiny-sentences"', f"datasets = {bad}"))
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if key in line]
    assert len(lines) == 1 and str(path) in lines[0], out
    assert main(["build", str(path), "-o", str(tmp_path / "out"), "--no-progress", "-q"]) == 2
    err = capsys.readouterr().err
    assert key in err and not (tmp_path / "out" / "cache").exists()


def test_validate_estimates_each_dataset_without_loading_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_weights: None) -> None:
    assert main(["validate", str(two_dataset_manifest(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert f"{MODEL} on {FIRST}: 2 layers × 4 heads = 8 heads" in out
    assert f"{MODEL} on {SECOND}: 2 layers × 4 heads = 8 heads" in out


# --- the build ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two(tiny_build: Path, tmp_path_factory: pytest.TempPathFactory):
    return two_dataset_build(tiny_build, tmp_path_factory)


def _heads(n: int = 2, h: int = 4) -> list[str]:
    return [f"L{layer}H{head}" for layer in range(n) for head in range(h)]


def test_adding_a_dataset_loads_once_and_reuses_every_unit_of_the_first(two) -> None:
    assert two.loads == 1
    assert two.report.reused == [f"{MODEL}/{FIRST}/capture"] + [f"{MODEL}/{FIRST}/{h}" for h in _heads()]
    assert two.report.rebuilt == [f"{MODEL}/{SECOND}/capture"] + [f"{MODEL}/{SECOND}/{h}" for h in _heads()]
    # the first dataset's units moved under the model's dataset folder, nothing of it was recomputed
    cache = two.out / "cache" / MODEL
    assert sorted(p.name for p in cache.iterdir()) == [SECOND, FIRST]


def test_one_matrix_per_dataset_and_the_first_exports_what_it_did_alone(two, tiny_build: Path) -> None:
    site = two.out / "site"
    counts = {}
    for d in (FIRST, SECOND):
        doc = json.loads((site / "data" / MODEL / d / "manifest.json").read_text())
        assert doc["dataset"]["name"] == d and len(doc["heads"]) == 8
        counts[d] = doc["dataset"]["num_sentences"]
        page = (site / "models" / MODEL / d / "index.html").read_text()
        assert f'data-data="../../../data/{MODEL}/{d}/"' in page and f'data-dataset="{d}"' in page
        assert (site / "models" / MODEL / d / "L1" / "H3" / "index.html").is_file()
    assert counts == {FIRST: 6, SECOND: 5}
    # the same units give the same files: the first dataset's data equals the one-dataset build's, but for the
    # unit's path manifest.json names (the model view links with it)
    several, alone = tree(site / "data" / MODEL / FIRST), tree(tiny_build / "site" / "data" / MODEL)
    assert several.pop("manifest.json") != alone.pop("manifest.json") and several == alone
    docs = [json.loads((d / "manifest.json").read_text()) for d in (site / "data" / MODEL / FIRST,
                                                                    tiny_build / "site" / "data" / MODEL)]
    assert (docs[0].pop("unit"), docs[1].pop("unit")) == (f"{MODEL}/{FIRST}", MODEL) and docs[0] == docs[1]
    overview = (site / "models" / MODEL / "index.html").read_text()
    assert f'href="{FIRST}/"' in overview and f'href="{SECOND}/"' in overview
    moved = (site / "models" / MODEL / "L1" / "H2" / "index.html").read_text()
    assert f'location.replace("../../{FIRST}/L1/H2/" + location.hash)' in moved


def test_related_heads_are_each_datasets_own(two) -> None:
    signatures = {}
    for d in (FIRST, SECOND):
        unit = next((two.out / "cache" / MODEL / d).glob("heads-*"))
        results = [HeadResult.load(unit / name) for name in _heads()]
        signatures[d] = np.concatenate([r.signature for r in results])
        expected = related_heads([(r.layer, r.head) for r in results], [r.signature for r in results])
        data = two.out / "site" / "data" / MODEL / d
        related = [read_head_detail(data, r.layer, r.head)["related"] for r in results]
        assert related == json.loads(json.dumps(expected)) and any(related)
    a, b = signatures[FIRST], signatures[SECOND]
    assert a.shape != b.shape or not np.allclose(a, b), "the datasets give the heads other signatures"


def test_label_changes_lists_exactly_the_heads_whose_label_differs() -> None:
    def unit(d: str, labels: list[str]) -> tuple[str, dict]:
        heads = [{"layer": i // 2, "head": i % 2, "label": lab} for i, lab in enumerate(labels)]
        return f"m/{d}", {"dataset": {"name": d}, "heads": heads}

    units = [unit("a", ["self", "broad", "mixed", "semantic"]), unit("b", ["self", "positional", "mixed", "broad"]),
             unit("c", ["self", "broad", "mixed", "semantic"])]
    assert label_changes(units) == (["a", "b", "c"], [(0, 1, ["broad", "positional", "broad"]),
                                                      (1, 1, ["semantic", "broad", "semantic"])])


def test_findings_compare_labels_and_keep_each_dataset_apart(two) -> None:
    site = two.out / "site"
    docs = [(f"{MODEL}/{d}", json.loads((site / "data" / MODEL / d / "manifest.json").read_text()))
            for d in (FIRST, SECOND)]
    _, rows = label_changes(docs)
    html = (site / "findings" / "index.html").read_text()
    assert "labels across datasets" in html
    assert f"{8 - len(rows)} of 8 heads keep their label on all 2 datasets" in html
    for layer, head, labels in rows:
        for d, label in zip((FIRST, SECOND), labels):
            assert f'href="../models/{MODEL}/{d}/L{layer}/H{head}/">{label}</a>' in html
    for d in (FIRST, SECOND):
        assert f"Tiny random BERT on {d}" in html
        assert f'href="../models/{MODEL}/{d}/L0/H0/"' in html  # the per-dataset "heads by behaviour" links


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
def test_rebuilds_are_byte_identical_and_reuse_everything(two, tmp_path: Path) -> None:
    again = tmp_path / "again"
    shutil.copytree(two.out / "cache", again / "cache")
    shutil.copy(two.out / MARKER, again / MARKER)
    report, loads = counting_build(two.manifest, again)
    assert report.rebuilt == [] and len(report.reused) == 18 and loads == 0
    assert tree(again / "site") == tree(two.out / "site")
    clean, _ = counting_build(two.manifest, tmp_path / "clean")
    assert len(clean.rebuilt) == 18 and tree(tmp_path / "clean" / "site") == tree(two.out / "site")


def test_dropping_back_to_one_dataset_reuses_its_units(two, tiny_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "one"
    shutil.copytree(two.out / "cache", out / "cache")
    shutil.copy(two.out / MARKER, out / MARKER)
    report, loads = counting_build(TINY, out)
    assert report.rebuilt == [] and report.reused == [f"{MODEL}/capture"] + [f"{MODEL}/{h}" for h in _heads()]
    assert loads == 0 and tree(out / "site") == tree(tiny_build / "site")


def test_the_notebook_writes_a_list_of_datasets_back(tmp_path: Path) -> None:
    from atlas_build.manifest import load_manifest, tomllib  # tomli on Python 3.10
    from atlas_build.notebook import manifest_dict, manifest_toml

    m = load_manifest(two_dataset_manifest(tmp_path))
    entry = manifest_dict(m)["models"][0]
    assert entry["datasets"] == [FIRST, SECOND] and "dataset" not in entry
    assert parse_manifest(tomllib.loads(manifest_toml(manifest_dict(m))), m.path).models == m.models
